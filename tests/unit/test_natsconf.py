"""The nats-server.conf reader: syntax, includes, variables, errors, derived settings, translation.

Where nats-server's own behaviour is the question (does it accept the translated conf, does a
-1 port really give a free port), the real nats-server answers it in
tests/integration/test_natsconf.py.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import tracemalloc
import weakref
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnats.errors import ConfError
from fastnats.nats import natsconf

SEED = Path(__file__).parent / "conf" / "seed.conf"

# The article's conf, byte for byte; the fixture file must stay exactly this.
ARTICLE = """\
server: {
listen: ":4222"
http: {
addr: ":8222"
debug: true
pprof: true
}
# Enable Prometheus metrics endpoint
metrics: {
port: 9100
}
}
"""


@pytest.fixture
def parse(write):
    """Parse conf text and return its tree."""
    return lambda text: natsconf.load(write(text)).tree


def conf_error(path: Path, line: int, fragment: str) -> str:
    """A pytest.raises ``match`` for ``path:line: ...fragment...``."""
    return "^" + re.escape(f"{path}:{line}: ") + ".*" + re.escape(fragment)


# -- the article's conf


def test_seed_fixture_is_the_article_conf_verbatim():
    assert SEED.read_text(encoding="utf-8") == ARTICLE


def test_article_conf_parses():
    conf = natsconf.load(SEED)
    assert conf.tree == {"server": {
        "listen": ":4222",
        "http": {"addr": ":8222", "debug": True, "pprof": True},
        "metrics": {"port": 9100},
    }}
    assert conf.is_article_dialect
    assert conf.monitor_url == "http://127.0.0.1:8222"
    assert conf.monitor == natsconf.MonitorAddr("http", "", 8222, f"{SEED}:3")
    assert conf.metrics_port == 9100
    assert conf.metrics_host is None


# -- syntax


@pytest.mark.parametrize("line", [
    "port = 4222", "port: 4222", "port 4222", "port\t4222", "port=4222", "port:4222",
    "  port  =  4222  ", "port 4222;", "port: 4222,",
])
def test_key_value_separators(parse, line: str):
    assert parse(line + "\n") == {"port": 4222}


@pytest.mark.parametrize("opening", ["server: {", "server {", "server = {", "server{",
                                     "server:{", "server\n{", "server =\n\n{"])
def test_block_separators(parse, opening: str):
    assert parse(opening + "\n  a: 1\n}\n") == {"server": {"a": 1}}


def test_one_line_blocks_and_terminators(parse):
    assert parse("a: 1; b: 2, c: 3\nd { x: 1, y: 2; z: 3 }\ne {}\n") == {
        "a": 1, "b": 2, "c": 3, "d": {"x": 1, "y": 2, "z": 3}, "e": {}}


def test_comments_of_both_kinds(parse):
    text = """\
# hash comment
// slash comment
a: 1 # after a value
b: 2 // after a value
c {  # after an opening brace
  // inside a block
  d: 3
}
e: [ # inside an array
  1, // after an item
  # between items
  2
]
"""
    assert parse(text) == {"a": 1, "b": 2, "c": {"d": 3}, "e": [1, 2]}


def test_comment_markers_inside_strings_are_text(parse):
    text = """\
a: "x # not a comment"
b: 'y // not a comment'
url: nats://user@host:4222
c: "z" # but this is
"""
    assert parse(text) == {"a": "x # not a comment", "b": "y // not a comment",
                           "url": "nats://user@host:4222", "c": "z"}


def test_nesting_and_case_insensitive_keys(parse):
    tree = parse("Cluster {\n  Name: c1\n  Authorization { User: u, Timeout: 2 }\n"
                 "  routes: [\n    nats://a:6222\n    nats://b:6222\n  ]\n}\n")
    assert list(tree) == ["Cluster"]
    assert tree["cluster"]["AUTHORIZATION"]["user"] == "u"
    assert tree["CLUSTER"]["authorization"]["timeout"] == 2
    assert tree["cluster"]["Routes"] == ["nats://a:6222", "nats://b:6222"]
    entry = tree["cluster"].entry("authorization")
    assert entry is not None and entry.key == "Authorization" and entry.line == 3
    assert "cluster" in tree and "nope" not in tree


def test_a_key_written_twice_keeps_the_last_value(parse):
    assert parse("port: 1\nhost: h\nport: 2\n") == {"port": 2, "host": "h"}


def test_keys_differing_in_case_are_distinct(parse):
    tree = parse("PORT = 4222\nport: $PORT\nHost: a\nHOST: b\nx: $PORT\n")
    assert list(tree) == ["PORT", "port", "Host", "HOST", "x"]
    assert tree["port"] == 4222 and tree["x"] == 4222
    assert tree["Host"] == "a" and tree["host"] == "b"


def test_arrays(parse):
    text = """\
a: [1, 2, 3]
b: [
  x
  y, z,
]
c: []
d: [[1, 2], ["s", true], {k: v}]
e: [
  { name: one, port: 1 }
  { name: two, port: 2 }
]
"""
    assert parse(text) == {
        "a": [1, 2, 3], "b": ["x", "y", "z"], "c": [],
        "d": [[1, 2], ["s", True], {"k": "v"}],
        "e": [{"name": "one", "port": 1}, {"name": "two", "port": 2}],
    }


def test_json_style_file(parse):
    assert parse('{\n  "port": 4222,\n  "http": "127.0.0.1:8222",\n  "x": [1, 2]\n}\n') == {
        "port": 4222, "http": "127.0.0.1:8222", "x": [1, 2]}


def test_strings(parse):
    text = r"""a: "tab\tnl\ncr\rquote\"backslash\\hex\x41"
b: 'single \t stays, "double" too'
c: localhost:4222
d: 127.0.0.1
e: "multi
line"
f: bare\x42escaped
g: (
-----BEGIN X-----
abc )
-----END X-----
)
h: ""
i: "caf\xc3\xa9 \x63afé"
"""
    assert parse(text) == {
        "a": 'tab\tnl\ncr\rquote"backslash\\hexA',
        "b": 'single \\t stays, "double" too',
        "c": "localhost:4222", "d": "127.0.0.1", "e": "multi\nline", "f": "bareBescaped",
        "g": "\n-----BEGIN X-----\nabc )\n-----END X-----\n", "h": "",
        "i": "caf\u00e9 caf\u00e9",
    }


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("4222", 4222), ("007", 7), ("-1", -1),
    ("1k", 1000), ("1K", 1000), ("1kb", 1024), ("1KB", 1024), ("1Ki", 1024), ("1KiB", 1024),
    ("2M", 2_000_000), ("2MB", 2 * 1024**2), ("2mi", 2 * 1024**2),
    ("3G", 3 * 10**9), ("3GB", 3 * 1024**3), ("1T", 10**12), ("1TB", 1024**4),
    ("1P", 10**15), ("1PiB", 1024**5), ("8E", 8 * 10**18), ("-2k", -2000),
    ("9223372036854775807", 2**63 - 1), ("-9223372036854775808", -(2**63)),
    ("1.5", 1.5), ("-0.25", -0.25), ("10.0", 10.0),
    ("true", True), ("TRUE", True), ("yes", True), ("on", True), ("On", True),
    ("false", False), ("no", False), ("off", False), ("NO", False),
    # Durations stay strings, except that a bare 2m is 2 million, as in nats-server.
    ("10s", "10s"), ('"2m"', "2m"), ("1h30m", "1h30m"), ("2m", 2_000_000),
    ('"4222"', "4222"), ('"true"', "true"), ("'off'", "off"), ("1.2.3.4", "1.2.3.4"),
    ("0x10", "0x10"), ("truely", "truely"),
])
def test_scalar_values(parse, text: str, value: object):
    parsed = parse(f"v: {text}\n")["v"]
    assert parsed == value
    assert type(parsed) is type(value)


def test_crlf_line_ends(write):
    path = write("a: 1\r\n# c\r\nb {\r\n  c: x\r\n}\r\nd: [1\r\n2]\r\ne: 'oops\r\n")
    with pytest.raises(ConfError, match=conf_error(path, 8, "unterminated string")):
        natsconf.load(path)
    assert natsconf.load(write("a: 1\r\n# c\r\nb {\r\n  c: x\r\n}\r\nd: [1\r\n2]\r\n")).tree \
        == {"a": 1, "b": {"c": "x"}, "d": [1, 2]}


# -- errors name the file and the line


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('a: 1\nb: "abc\nc: 2\n', 2, "unterminated string"),
    ("a: 1\nb: 'abc\n", 2, "unterminated string"),
    ("a {\n  b: 1\n", 1, "unterminated block"),
    ("a {\n  b {\n    c: 1\n  }\n", 1, "unterminated block"),
    ("a: 1\n}\n", 2, "stray '}'"),
    ("a {\n  b: 1\n}\n}\n", 4, "stray '}'"),
    ("a: [1,\n  2\n", 1, "unterminated array"),
    ("a: [1, }\n", 1, "stray '}' inside an array"),
    ("a:\nb: 2\n", 1, "missing value after the key"),
    ("a: 1\nb =", 2, "missing value after the key"),
    ("x {\n  a:\n}\n", 2, "missing value after the key"),
    ("a: # comment\n", 1, "missing value after the key"),
    ("a: 1\nb: ;\n", 2, "missing value after the key"),
    ("a: 1 2\n", 1, "unexpected text after a value"),
    ("a: [1 2]\n", 1, "expected ',' or ']'"),
    ("a: [, 1]\n", 1, "unexpected ','"),
    ("a: [1,, 2]\n", 1, "unexpected ','"),
    ('a: 1\nb: "bad \\q escape"\n', 2, "invalid escape (allowed:"),
    ('a: "\\x4"\n', 1, "\\x needs two hexadecimal digits"),
    ('a: "ok"\nb: "\\xff"\n', 2, "\\x escapes do not form UTF-8"),
    ("\n\na: -abc\n", 3, "invalid number"),
    ("a: 9223372036854775808\n", 1, "out of range"),
    ("a: 10E\n", 1, "out of range"),
    ("= 1\n", 1, "expected a key"),
    ('"a: 1\n', 1, "unterminated quoted key"),
    ("a: (\nno end\n", 1, "unterminated ( ) string"),
    ("{\n a: 1\n}\nb: 2\n", 4, "after the closing '}'"),
])
def test_syntax_errors_name_file_and_line(write, text: str, line: int, fragment: str):
    path = write(text)
    with pytest.raises(ConfError, match=conf_error(path, line, fragment)):
        natsconf.load(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfError, match=re.escape(f"{tmp_path / 'nope.conf'}: cannot read")):
        natsconf.load(tmp_path / "nope.conf")


def test_invalid_utf8_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.conf"
    path.write_bytes(b"a: 1\nb: \"\xff\"\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, "not valid UTF-8")):
        natsconf.load(path)


# -- includes


def test_include_is_relative_to_the_including_file(write, tmp_path: Path):
    write("users = [ {user: a, password: p} ]\ninclude 'deeper/limits.conf'\n",
          "sub/auth.conf")
    write("max_payload: 1MB\n", "sub/deeper/limits.conf")
    write("timeout: 5\n", "sub/block.conf")
    main = write('port: 4222\ninclude ./sub/auth.conf\nauthorization {\n'
                 '  include "sub/block.conf"\n  token: t\n}\n', "main.conf")
    conf = natsconf.load(main)
    assert conf.tree == {
        "port": 4222,
        "users": [{"user": "a", "password": "p"}],
        "max_payload": 1024 * 1024,
        "authorization": {"timeout": 5, "token": "t"},
    }
    entry = conf.tree.entry("max_payload")
    assert entry is not None and entry.where == f"{tmp_path / 'sub/deeper/limits.conf'}:1"


def test_include_cycle_is_an_error_with_the_line(write, tmp_path: Path):
    write("x: 1\ninclude b.conf\n", "a.conf")
    b = write("y: 2\n\ninclude ./a.conf\n", "b.conf")
    with pytest.raises(ConfError, match=conf_error(b, 3, "include cycle")) as info:
        natsconf.load(tmp_path / "a.conf")
    assert str((tmp_path / "a.conf").resolve()) in str(info.value)


def test_self_include_is_a_cycle(write):
    path = write("include nats.conf\n")
    with pytest.raises(ConfError, match=conf_error(path, 1, "include cycle")):
        natsconf.load(path)


@pytest.mark.parametrize("target", ["missing.conf", "."])
def test_bad_include_path(write, target: str):
    path = write(f"a: 1\ninclude {target}\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, "cannot read include")):
        natsconf.load(path)


def test_include_without_a_name(write):
    path = write("a: 1\ninclude   # nothing\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, "include needs a file name")):
        natsconf.load(path)


def test_errors_inside_an_include_name_the_included_file(write, tmp_path: Path):
    write("a: 1\nb: [1\n", "inc.conf")
    main = write("include inc.conf\n")
    with pytest.raises(ConfError, match=conf_error(tmp_path / "inc.conf", 2, "unterminated")):
        natsconf.load(main)


# -- variables


def test_variables_scope_and_shadowing(parse):
    tree = parse("""\
PORT: 4222
NAME = outer
port: $PORT
cluster {
  NAME: inner
  name: $NAME
  list: [$PORT, $NAME]
}
server_name: $NAME
""")
    assert tree["port"] == 4222
    assert tree["cluster"]["name"] == "inner"
    assert tree["cluster"]["list"] == [4222, "inner"]
    assert tree["server_name"] == "outer"


def test_variable_defined_in_a_block_is_not_visible_outside(write):
    path = write("a {\n  INNER: 1\n}\nb: $INNER\n")
    with pytest.raises(ConfError, match=conf_error(path, 4, "undefined variable")):
        natsconf.load(path)


def test_variable_names_are_case_sensitive(write):
    path = write("foo: 1\nbar: $FOO\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, "undefined variable")):
        natsconf.load(path)


def test_undefined_variable(write, monkeypatch):
    monkeypatch.delenv("FASTNATS_TEST_UNSET", raising=False)
    path = write("a: 1\n\nb: $FASTNATS_TEST_UNSET\n")
    with pytest.raises(ConfError, match=conf_error(path, 3, "undefined variable")):
        natsconf.load(path)


def test_environment_variables_are_parsed_as_values(parse, monkeypatch):
    monkeypatch.setenv("FASTNATS_TEST_PORT", "8222")
    monkeypatch.setenv("FASTNATS_TEST_ADDR", '"127.0.0.1:8222"')
    monkeypatch.setenv("FASTNATS_TEST_WORD", "hello")
    monkeypatch.setenv("FASTNATS_TEST_SIZE", "1MB")
    monkeypatch.setenv("FASTNATS_TEST_BLOCK", "{ a: 1, b: [2] }")
    tree = parse("a: $FASTNATS_TEST_PORT\nb: $FASTNATS_TEST_ADDR\nc: $FASTNATS_TEST_WORD\n"
                 "d: $FASTNATS_TEST_SIZE\ne: $FASTNATS_TEST_BLOCK\n")
    assert tree == {"a": 8222, "b": "127.0.0.1:8222", "c": "hello", "d": 1024**2,
                    "e": {"a": 1, "b": [2]}}


def test_conf_variables_win_over_the_environment(parse, monkeypatch):
    monkeypatch.setenv("FASTNATS_TEST_PORT", "1")
    assert parse("FASTNATS_TEST_PORT: 2\nport: $FASTNATS_TEST_PORT\n")["port"] == 2


@pytest.mark.parametrize(("raw", "fragment"), [
    ('"open', "unterminated string"), ("1 2", "unexpected text"), ("", "empty"),
    ("$FASTNATS_TEST_SELF", "refers to itself"),
])
def test_bad_environment_values(write, monkeypatch, raw: str, fragment: str):
    monkeypatch.setenv("FASTNATS_TEST_SELF", raw)
    path = write("a: 1\nb: $FASTNATS_TEST_SELF\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, fragment)) as info:
        natsconf.load(path)
    assert f"{path}:2: in an environment variable's value:1: " in str(info.value) \
        or fragment == "refers to itself"


def test_included_file_does_not_see_the_includers_variables(write, tmp_path: Path):
    # nats-server parses an included file on its own; checked against nats-server 2.15.
    write("http: $MPORT\n", "inc.conf")
    main = write("MPORT = 8222\ninclude inc.conf\n")
    with pytest.raises(ConfError, match=conf_error(tmp_path / "inc.conf", 1,
                                                   "undefined variable")):
        natsconf.load(main)


def test_includer_sees_variables_of_an_included_file(write):
    write("MPORT = 8222\n", "vars.conf")
    tree = natsconf.load(write("include vars.conf\nhttp_port: $MPORT\n")).tree
    assert tree["http_port"] == 8222


def test_bcrypt_hashes_are_not_variables(parse):
    digest = "$2a$11$PWIFAL8RsWyGI3jVZtO9Nu8.6jOxzxfZo7c/W0eLk017hjgUKWrhy"
    assert parse(f"password: {digest}\n")["password"] == digest


# -- settings fastnats derives


@pytest.mark.parametrize(("text", "url"), [
    ("http: 8222", "http://127.0.0.1:8222"),
    ('http: "localhost:8222"', "http://localhost:8222"),
    ("http: localhost:8222", "http://localhost:8222"),
    ('http: "0.0.0.0:8222"', "http://127.0.0.1:8222"),
    ('http: "[::]:8222"', "http://127.0.0.1:8222"),
    ('http: "[::1]:8222"', "http://[::1]:8222"),
    ('http: ":8222"\nlisten: "10.1.2.3:4222"', "http://10.1.2.3:8222"),
    ("http_port: 8222", "http://127.0.0.1:8222"),
    ("http_port: 8222\nhost: 10.1.2.3", "http://10.1.2.3:8222"),
    ("http_port: 8222\nnet: 10.1.2.4", "http://10.1.2.4:8222"),
    ('http_port: 8222\nlisten: "127.0.0.2:4222"', "http://127.0.0.2:8222"),
    ("monitor_port: 8222", "http://127.0.0.1:8222"),
    ("https_port: 8443", "https://127.0.0.1:8443"),
    ('https: "nats.example:8443"', "https://nats.example:8443"),
    ('HTTP: "127.0.0.1:8222"\nhttp_port: 8222', "http://127.0.0.1:8222"),
    ("http { host: 127.0.0.3, port: 8222 }", "http://127.0.0.3:8222"),
    ("http { port: 8222 }", "http://127.0.0.1:8222"),
    ("http { addr: 8222 }", "http://127.0.0.1:8222"),
    ("http_port: 0\nhttps_port: 8443", "https://127.0.0.1:8443"),
    ("port: 4222", None),
    ('listen: "127.0.0.1:4222"', None),
    ("http_port: 0", None),
])
def test_monitor_url_of_real_confs(write, text: str, url: str | None):
    conf = natsconf.load(write(text + "\n"))
    assert conf.monitor_url == url
    assert conf.is_article_dialect == text.startswith("http {")


def test_random_monitor_port_has_no_url(write):
    path = write("port: 4222\nhttp_port: -1\n")
    conf = natsconf.load(path)
    assert conf.monitor == natsconf.MonitorAddr("http", "", -1, f"{path}:2")
    with pytest.raises(ConfError, match=conf_error(path, 2, "picks a free port")):
        _ = conf.monitor_url


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("http: 8222\nhttp_port: 8223\n", 2, "disagree"),
    ('http: "a:8222"\nhttps: 8443\nhttp_port: 8223\n', 3, "disagree"),
    ('http: "a:8222"\nmonitor_port: 8223\n', 2, "disagree"),
    ('http: "a:8222"\nHTTP: "b:8222"\n', 2, "disagree"),
    ("http_port: 8222\nhttps_port: 8443\n", 2, "both http and https"),
    ('port: 1\nhttp: "localhost"\n', 2, 'http must be "host:port"'),
    ('http: "::1:8222"\n', 1, 'http must be "host:port"'),
    ("http: true\n", 1, "http must be a port number"),
    ("http_port: 70000\n", 1, "http_port must be a port number"),
    ('monitor_port: "8222"\n', 1, "monitor_port must be a port number"),
    ("http {\n  addr: \":8222\"\n  port: 1\n}\n", 2, "addr or host/port"),
    ("http {\n  debug: true\n}\n", 1, "sets no port"),
    ("http { host: 1, port: 8222 }\n", 1, "http.host must be a string"),
    ("http { addr: nowhere }\n", 1, 'http.addr must be "host:port"'),
    ('http_port: 8222\nlisten: "x"\n', 2, 'listen must be "host:port"'),
])
def test_bad_monitoring_settings(write, text: str, line: int, fragment: str):
    path = write(text)
    with pytest.raises(ConfError, match=conf_error(path, line, fragment)):
        natsconf.load(path)


@pytest.mark.parametrize(("block", "host", "port"), [
    ("{ port: 9100 }", None, 9100),
    ('{ port: 9100, host: "0.0.0.0" }', "0.0.0.0", 9100),
    ('{ addr: "127.0.0.1:9200" }', "127.0.0.1", 9200),
    ('{ addr: ":9200" }', None, 9200),
    ("{ addr: localhost, port: 9300 }", "localhost", 9300),
    ('{ host: "::1", port: 9300 }', "::1", 9300),
    ('{ addr: "[::1]:9400" }', "::1", 9400),
    ("{ host: h }", "h", None),
])
def test_metrics_block(write, block: str, host: str | None, port: int | None):
    conf = natsconf.load(write(f"port: 4222\nmetrics {block}\n"))
    assert (conf.metrics_host, conf.metrics_port) == (host, port)
    assert conf.is_article_dialect


@pytest.mark.parametrize(("block", "fragment"), [
    ("metrics: 9100", "metrics must be a block"),
    ("metrics { port: 0 }", "metrics.port must be a port number from 1"),
    ("metrics { port: x }", "metrics.port must be a port number"),
    ("metrics { prot: 9100 }", "unknown metrics setting"),
    ('metrics { addr: ":1", port: 2 }', "has a port and so has metrics.port"),
    ("metrics { addr: a, host: b }", "host or addr, not both"),
    ("metrics { host: 5 }", "metrics.host must be a string"),
])
def test_bad_metrics_block(write, block: str, fragment: str):
    path = write(f"port: 4222\n{block}\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, fragment)):
        natsconf.load(path)


def test_no_metrics_block(write):
    conf = natsconf.load(write("port: 4222\n"))
    assert (conf.metrics_host, conf.metrics_port, conf.is_article_dialect) == (None, None, False)


# -- writing


def test_dump_quotes_and_escapes():
    text = natsconf.dump({
        "plain": "s", "needs quotes": 1, "has\"dq": 2, "ctl": "a\x01\x7fb\"\\\n\t\r",
        "big": 1e20, "small": 1e-7, "neg": -0.5, "flag": False, "empty": {}, "none": [],
        "nested": {"list": [{"a": 1}, [2, 3]]},
    })
    assert text == (
        'plain: "s"\n'
        '"needs quotes": 1\n'
        "'has\"dq': 2\n"
        'ctl: "a\\x01\\x7fb\\"\\\\\\n\\t\\r"\n'
        "big: 100000000000000000000.0\n"
        "small: 0.0000001\n"
        "neg: -0.5\n"
        "flag: false\n"
        "empty: {}\n"
        "none: []\n"
        "nested: {\n"
        "  list: [\n"
        "    {\n"
        "      a: 1\n"
        "    }\n"
        "    [2, 3]\n"
        "  ]\n"
        "}\n"
    )


@pytest.mark.parametrize(("tree", "error"), [
    ({"a": float("nan")}, ValueError), ({"a": 2**63}, ValueError),
    ({"a'\"": 1}, ValueError), ({"a": None}, TypeError), ({"a": b"x"}, TypeError),
])
def test_dump_refuses_what_nats_server_cannot_read(tree, error):
    with pytest.raises(error):
        natsconf.dump(tree)


# Keys may hold anything but a line end and both kinds of quote (nats-server cannot read that).
_keys = st.text(alphabet=st.characters(blacklist_characters="\n\r'", blacklist_categories=("Cs",),
                                        min_codepoint=32),
                max_size=12)
_scalars = (st.text() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False))
_trees = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


def _typed(value: object) -> object:
    """``value`` with every scalar tagged by its type, so 1, 1.0 and True stay apart."""
    if isinstance(value, Mapping):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return type(value).__name__, value


# load() also checks the settings fastnats reads; random values under those keys are errors.
_top_keys = _keys.filter(lambda key: key.lower() not in {
    "http", "https", "http_port", "https_port", "monitor_port", "metrics", "server", "listen",
    "host", "net"})


@settings(max_examples=300, deadline=None)
@given(tree=st.dictionaries(_top_keys, _trees, max_size=6))
def test_dump_round_trips_through_the_reader(tmp_path_factory, tree: dict[str, object]):
    path = tmp_path_factory.mktemp("dump") / "tree.conf"
    path.write_text(natsconf.dump(tree), encoding="utf-8")
    assert _typed(natsconf.load(path).tree) == _typed(tree)


# -- limits: depth, file kinds and sizes


def test_nesting_up_to_the_limit_is_read(parse):
    depth = natsconf.MAX_DEPTH
    tree = parse("a: " + "{ a: " * depth + "1" + " }" * depth + "\n"
                 "b: " + "[" * depth + "]" * depth + "\n")
    inner = tree["a"]
    for _ in range(depth - 1):
        inner = inner["a"]
    assert inner == {"a": 1}


@pytest.mark.parametrize(("opening", "closing"), [("a {\n", "}\n"), ("[\n", "]\n")])
@pytest.mark.parametrize("levels", [natsconf.MAX_DEPTH + 1, 300, 500])
def test_deep_nesting_is_an_error_at_the_first_level_too_deep(write, opening: str, closing: str,
                                                              levels: int):
    # 300 blocks or 500 arrays used to end in a RecursionError.
    text = opening * levels + closing * levels
    path = write(text if opening.startswith("a") else "x: " + text)
    with pytest.raises(ConfError, match=conf_error(path, natsconf.MAX_DEPTH + 1,
                                                   f"nested more than {natsconf.MAX_DEPTH} deep")):
        natsconf.load(path)


def test_includes_count_towards_the_depth(write, tmp_path: Path):
    levels = natsconf.MAX_DEPTH + 5
    for i in range(levels):
        write(f"v{i}: {i}\ninclude {i + 1}.conf\n", f"{i}.conf")
    write("http: 8222\n", f"{levels}.conf")
    too_deep = tmp_path / f"{natsconf.MAX_DEPTH}.conf"
    with pytest.raises(ConfError, match=conf_error(too_deep, 2, "nested more than")):
        natsconf.load(tmp_path / "0.conf")


def test_environment_variables_count_towards_the_depth(write, monkeypatch):
    levels = natsconf.MAX_DEPTH + 5
    for i in range(levels):
        monkeypatch.setenv(f"FASTNATS_TEST_CHAIN_{i}", f"$FASTNATS_TEST_CHAIN_{i + 1}")
    monkeypatch.setenv(f"FASTNATS_TEST_CHAIN_{levels}", "1")
    path = write("a: $FASTNATS_TEST_CHAIN_0\n")
    with pytest.raises(ConfError, match=conf_error(path, 1, "nested more than")):
        natsconf.load(path)


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _socket(tmp_path: Path) -> Path:
    path = tmp_path / "sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays
    return path


@pytest.mark.parametrize(("make", "kind"), [
    (lambda tmp: Path("/dev/zero"), "a character device"),
    (lambda tmp: Path("/dev/null"), "a character device"),
    (lambda tmp: tmp, "a directory"),
    (_fifo, "a FIFO"),
    (_socket, "a socket"),
])
def test_only_regular_files_are_read(write, tmp_path: Path, make, kind: str):
    # /dev/zero used to grow memory without end, a FIFO to block the start for ever; each is
    # refused after a stat(), without being opened.
    special = make(tmp_path)
    path = write(f'a: 1\ninclude "{special}"\n', "main.conf")
    with pytest.raises(ConfError, match=conf_error(path, 2, f"cannot read include '{special}': "
                                                   f"not a regular file ({kind})")):
        natsconf.load(path)
    with pytest.raises(ConfError, match=re.escape(
            f"{special}: cannot read: not a regular file ({kind})")):
        natsconf.load(special)


def test_a_file_over_the_size_limit_is_refused(write, monkeypatch):
    monkeypatch.setattr(natsconf, "MAX_FILE_BYTES", 1000)
    write("a: 1\n" + "# filler\n" * 111, "big.conf")  # 1004 bytes
    path = write("include big.conf\n")
    with pytest.raises(ConfError, match=conf_error(path, 1, "larger than 1000 bytes")):
        natsconf.load(path)
    with pytest.raises(ConfError, match="big.conf: cannot read: larger than 1000 bytes"):
        natsconf.load(path.parent / "big.conf")
    write("a: 1\n" + "# filler\n" * 110, "big.conf")  # 995 bytes
    assert natsconf.load(path).tree == {"a": 1}


def test_a_file_that_reports_no_size_is_still_read_up_to_the_limit(write, monkeypatch):
    # Files under /proc say they are empty; /proc/self/environ is a few KB at least.
    monkeypatch.setattr(natsconf, "MAX_FILE_BYTES", 64)
    assert os.stat("/proc/self/environ").st_size == 0
    path = write('include "/proc/self/environ"\n')
    with pytest.raises(ConfError, match=conf_error(path, 1, "larger than 64 bytes")):
        natsconf.load(path)


def test_includes_together_over_the_total_limit_are_refused(write, monkeypatch):
    monkeypatch.setattr(natsconf, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(natsconf, "MAX_TOTAL_BYTES", 3000)
    write("a: 1\n" + "#" * 894 + "\n", "part.conf")  # 900 bytes, under the file limit
    path = write("include part.conf\n" * 4)  # 72 + 4 * 900 bytes
    with pytest.raises(ConfError, match=conf_error(
            path, 4, "the conf and its includes hold more than 3000 bytes")):
        natsconf.load(path)
    path = write("include part.conf\n" * 3)
    assert natsconf.load(path).tree == {"a": 1}


def test_a_file_of_blank_lines_parses_in_little_more_than_its_size(write):
    # A list of every line end took some 40 times the size of a file of blank lines.
    size = 16 << 20
    path = write("\n" * size + "a: 1\n")
    tracemalloc.start()
    try:
        tree = natsconf.load(path).tree
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tree == {"a": 1}
    assert peak < 4 * size, peak
    path.write_text("\n" * size + "a: {\n")
    with pytest.raises(ConfError, match=conf_error(path, size + 1, "never closed")):
        natsconf.load(path)


def _reference_bomb(levels: int) -> str:
    """``levels`` variables, each an array of ten references to the one before."""
    lines = ["v0 = [" + ", ".join(['"0123456789"'] * 10) + "]"]
    lines += [f"v{i} = [" + ", ".join([f"$v{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nserver_tags: $v{levels - 1}\n"


def test_references_that_expand_past_the_limit_are_refused_before_anything_is_built(
        write, tmp_path: Path):
    # 12 levels would write 10**12 strings; the count is taken on the shared values.
    path = write(_reference_bomb(12))
    conf = natsconf.load(path)
    tracemalloc.start()
    try:
        with pytest.raises(ConfError, match=conf_error(path, 13, "expand the conf past 128 MiB")):
            natsconf.translate(conf, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert not (tmp_path / "out" / "nats-server.conf").exists()


def test_the_expansion_limit_counts_what_the_translation_writes(write, tmp_path: Path,
                                                                 monkeypatch):
    monkeypatch.setattr(natsconf, "MAX_TOTAL_BYTES", 1 << 20)
    # Four levels write 10**4 strings of 12 bytes or more, under 1 MiB; five do not.
    small = natsconf.translate(natsconf.load(write(_reference_bomb(4))), tmp_path / "small")
    expected: object = "0123456789"
    for _ in range(4):
        expected = [expected] * 10
    assert natsconf.load(small.path).tree == {"server_tags": expected}
    path = write(_reference_bomb(5))
    with pytest.raises(ConfError, match=conf_error(path, 6, "expand the conf past 1 MiB")):
        natsconf.translate(natsconf.load(path), tmp_path / "big")


@pytest.mark.parametrize(("levels", "name", "line"), [
    (natsconf.MAX_DEPTH + 1, lambda i: f"v{i}", natsconf.MAX_DEPTH + 2),
    # The first key too deep is named, variable or not.
    (1000, lambda i: f"v{i}", natsconf.MAX_DEPTH + 2),
    # One key defined again and again: its value, now deep, stands where it was first written.
    (1000, lambda i: "v", 1000),
])
def test_references_that_nest_past_the_limit_are_refused(write, tmp_path: Path, levels: int,
                                                         name, line: int):
    # Each reference nests one block deeper without the text nesting at all.
    lines = [f"{name(0)} = 1"] + [f"{name(i)} = {{ x: ${name(i - 1)} }}"
                                   for i in range(1, levels)]
    path = write("\n".join(lines) + f"\nserver_tags: [${name(levels - 1)}]\n")
    with pytest.raises(ConfError, match=conf_error(
            path, line, f"nest this setting more than {natsconf.MAX_DEPTH} deep")):
        natsconf.translate(natsconf.load(path), tmp_path / "out")


def test_references_may_nest_as_deep_as_the_text_may(write, tmp_path: Path):
    levels = natsconf.MAX_DEPTH
    lines = ["v0 = 1"] + [f"v{i} = {{ x: $v{i - 1} }}" for i in range(1, levels + 1)]
    path = write("\n".join(lines) + f"\na: $v{levels}\n")
    translated = natsconf.translate(natsconf.load(path), tmp_path / "out")
    inner = natsconf.load(translated.path).tree["a"]
    for _ in range(levels - 1):
        inner = inner["x"]
    assert inner == {"x": 1}


def test_translation_replaces_the_file_whole(write, tmp_path: Path):
    first = natsconf.translate(natsconf.load(write("port: 4222\n")), tmp_path)
    second = natsconf.translate(natsconf.load(write("port: 4223\n")), tmp_path)
    assert first.path == second.path
    assert [p.name for p in tmp_path.iterdir() if p.name != "nats.conf"] == ["nats-server.conf"]
    assert natsconf.load(second.path).tree == {"port": 4223}


# -- errors say where and what, never what a file holds

SECRET = "Zq9sEcReT"


def test_errors_do_not_quote_an_included_file(write, tmp_path: Path):
    # What include "/proc/self/environ" reads: NUL-separated NAME=value pairs.
    environ = tmp_path / "environ"
    environ.write_bytes(f"{SECRET}_NAME=hunter2 {SECRET}\0PATH=/usr/bin\0".encode())
    path = write(f'include "{environ}"\n')
    with pytest.raises(ConfError, match=conf_error(environ, 1, "unexpected text after a value")) \
            as info:
        natsconf.load(path)
    assert SECRET not in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", [
    f"{SECRET}:\n", f"a: -{SECRET}\n", f"a: 1 {SECRET}\n", f"a: ${SECRET}\n",
    f"a: [1 {SECRET}]\n", f'a: "\\{SECRET}"\n', f"a: {SECRET}\\q\n", f"{{ a: 1 }} {SECRET}\n",
    f"http: {SECRET}\n", f"listen: '{SECRET}'\nhttp_port: 1\n", f"metrics {{ {SECRET}: 1 }}\n",
    f"metrics {{ port: {SECRET} }}\n", f"http {{ addr: {SECRET} }}\n", "a: 99999999999999999999\n",
])
def test_errors_name_the_kind_of_problem_only(write, text: str):
    path = write(text)
    with pytest.raises(ConfError) as info:
        natsconf.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:1: ")
    assert SECRET not in message and "99999" not in message


def test_errors_in_environment_values_quote_neither_name_nor_value(write, monkeypatch):
    monkeypatch.setenv(f"FASTNATS_TEST_{SECRET}", f'"{SECRET} unterminated')
    path = write(f"a: 1\nb: $FASTNATS_TEST_{SECRET}\n")
    with pytest.raises(ConfError, match=conf_error(path, 2, "unterminated string")) as info:
        natsconf.load(path)
    assert SECRET not in str(info.value)


_FRAGMENTS = ["{", "}", "[", "]", ":", "=", " ", "\n", ",", ";", '"', "'", "#", "//", "(", ")",
              "\\", "$", "-", "7", "K", "\0", SECRET, "http", "metrics", "port", "addr", "host",
              "server"]


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(st.sampled_from(_FRAGMENTS), max_size=40))
def test_no_error_quotes_the_file(tmp_path_factory, parts: list[str]):
    path = tmp_path_factory.mktemp("quote") / "nats.conf"
    path.write_text("".join(parts), encoding="utf-8")
    try:
        conf = natsconf.load(path)
        _ = conf.monitor_url
    except ConfError as exc:
        assert str(exc).startswith(f"{path}:")
        assert SECRET not in str(exc)


# -- letting the tree go


def test_without_tree_keeps_the_settings_and_the_translation(tmp_path: Path):
    conf = natsconf.load(SEED)
    light = conf.without_tree(keep_translation=True)
    assert (light.monitor_url, light.metrics_port, light.is_article_dialect) == (
        "http://127.0.0.1:8222", 9100, True)
    with pytest.raises(ValueError, match="without_tree"):
        _ = light.tree
    full = natsconf.translate(conf, tmp_path / "full")
    kept = natsconf.translate(light, tmp_path / "kept")
    assert kept.path.read_text() == full.path.read_text()
    assert kept.warnings == full.warnings
    with pytest.raises(ValueError, match="without_tree"):
        natsconf.translate(conf.without_tree(), tmp_path / "none")


@pytest.mark.parametrize("launch", [False, True])
def test_the_settings_keep_no_tree(write, monkeypatch, launch: bool):
    from fastnats import cli

    trees: list[weakref.ref[natsconf.Section]] = []
    real_load = natsconf.load

    def load(path):
        conf = real_load(path)
        trees.append(weakref.ref(conf.tree))
        return conf

    monkeypatch.setattr(natsconf, "load", load)
    path = write('http: "127.0.0.1:8222"\naccounts { A { users: [ {user: a, password: b} ] } }\n')
    argv = ["--config", str(path)] + (["--nats.launch"] if launch else [])
    settings = cli.resolve(cli.build_parser().parse_args(argv))
    gc.collect()
    assert [tree() for tree in trees] == [None]
    assert settings.conf is not None and settings.conf.monitor_url == "http://127.0.0.1:8222"
    if not launch:
        assert [target.url for target in settings.targets] == ["http://127.0.0.1:8222"]
