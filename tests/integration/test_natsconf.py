"""The nats-server.conf reader against the real nats-server: does it accept the confs the
reader reads and the translations it writes, and does a -1 port really give a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastnats.nats import launcher, natsconf
from tests.support.process import http_get, require_tool, wait_until

pytestmark = pytest.mark.integration

CONFS = Path(__file__).parents[1] / "unit" / "conf"
SEED = CONFS / "seed.conf"


def nats_check(path: Path) -> subprocess.CompletedProcess[str]:
    exe = require_tool("nats-server")
    return subprocess.run([exe, "-t", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)


def assert_nats_accepts(path: Path) -> None:
    result = nats_check(path)
    assert result.returncode == 0, result.stdout + result.stderr + path.read_text()
    assert "is valid" in result.stdout + result.stderr


def test_nats_server_rejects_article_conf_as_is():
    result = nats_check(SEED)
    assert result.returncode != 0
    assert 'unknown field "server"' in result.stdout + result.stderr


def test_translated_article_conf_passes_nats_server(tmp_path: Path):
    translated = natsconf.translate(natsconf.load(SEED), tmp_path / "out")
    assert translated.path == tmp_path / "out" / "nats-server.conf"
    assert translated.warnings == (
        f"{SEED}:5: dropped http.debug: nats-server has no such monitoring setting",
        f"{SEED}:6: dropped http.pprof: nats-server has no such monitoring setting",
    )
    assert_nats_accepts(translated.path)
    again = natsconf.load(translated.path)
    assert again.tree == {"listen": ":4222", "http": ":8222"}
    assert not again.is_article_dialect
    assert again.monitor_url == "http://127.0.0.1:8222"
    assert again.metrics_port is None


def test_a_translated_dialect_conf_starts_a_real_server_on_free_ports(tmp_path: Path):
    require_tool("nats-server")
    source = tmp_path / "seed.conf"
    source.write_text(SEED.read_text().replace('":4222"', '"127.0.0.1:-1"')
                      .replace('":8222"', '"127.0.0.1:-1"'))
    translated = natsconf.translate(natsconf.load(source), tmp_path / "out")
    assert natsconf.load(translated.path).tree == {"listen": "127.0.0.1:-1",
                                                   "http": "127.0.0.1:-1"}
    server = launcher.start(["-c", str(translated.path)])
    try:
        assert server.ports["client"] not in (0, 4222)
        assert server.ports["http"] not in (0, 8222)
        varz = json.loads(http_get(f"http://127.0.0.1:{server.ports['http']}/varz"))
        # /varz reports the real client port (but http_port stays -1, as configured).
        assert varz["port"] == server.ports["client"]
        assert varz["host"] == "127.0.0.1"
    finally:
        server.stop()


@pytest.mark.parametrize("text, tree", [
    ("port: 4222", {"port": 4222}),
    ("listen: 127.0.0.1:4222", {"listen": "127.0.0.1:4222"}),
    ("http: 8222", {"http": 8222}),
    ('http: "localhost:8222"', {"http": "localhost:8222"}),
    ("http_port: 8222", {"http_port": 8222}),
    ("https_port: 8443", {"https_port": 8443}),
    ("monitor_port: 8222", {"monitor_port": 8222}),
    ("http_port: -1", {"http_port": -1}),
    ('http: "[::1]:8222"', {"http": "[::1]:8222"}),
    ("http: 8222\nhost: 127.0.0.1\nport: -1", {"http": 8222, "host": "127.0.0.1", "port": -1}),
])
def test_real_confs_pass_nats_server_before_and_after_translation(write, tmp_path: Path,
                                                                  text: str, tree: dict):
    original = write(text + "\n")
    assert_nats_accepts(original)
    # Written out, not read back with the reader under test: a key it drops must fail here.
    assert natsconf.load(original).tree == tree
    translated = natsconf.translate(natsconf.load(original), tmp_path / "out")
    assert translated.warnings == ()
    assert_nats_accepts(translated.path)
    assert natsconf.load(translated.path).tree == tree


def test_translation_inlines_includes_and_resolves_variables(write, tmp_path: Path,
                                                             monkeypatch):
    monkeypatch.setenv("FASTNATS_TEST_NAME", "from-env")
    # An included file is parsed alone, so it includes the password variable itself.
    write("include pass.conf\nMONITOR = 8222\n"
          "accounts {\n  A { users = [ {user: a, password: $PASS} ] }\n}\n",
          "sub/accounts.conf")
    write("PASS: secret\n", "sub/pass.conf")
    main = write("""\
server {
  CLIENT_PORT = 4222
  port: $CLIENT_PORT
  server_name: $FASTNATS_TEST_NAME
  include ./sub/accounts.conf
  http { port: $MONITOR, pprof: on }
  max_payload: 2MB
  ping_interval: "2m"
  server_tags: ["a:b", 'c d']
}
metrics { port: 9100 }
""")
    conf = natsconf.load(main)
    assert conf.monitor_url == "http://127.0.0.1:8222"
    translated = natsconf.translate(conf, tmp_path / "out")
    assert translated.warnings == (
        f"{main}:6: dropped http.pprof: nats-server has no such monitoring setting",)
    assert_nats_accepts(translated.path)
    text = translated.path.read_text()
    assert "$" not in text and "include" not in text
    assert natsconf.load(translated.path).tree == {
        "port": 4222,
        "server_name": "from-env",
        "accounts": {"A": {"users": [{"user": "a", "password": "secret"}]}},
        "http": ":8222",
        "max_payload": 2 * 1024**2,
        "ping_interval": "2m",
        "server_tags": ["a:b", "c d"],
    }


def test_realistic_conf_survives_translation(tmp_path: Path):
    original = CONFS / "realistic" / "nats-server.conf"
    assert_nats_accepts(original)
    conf = natsconf.load(original)
    assert conf.monitor_url == "http://127.0.0.1:8222"
    assert conf.tree["accounts"]["SYS"]["users"][0]["password"] == "pw"
    assert conf.tree["jetstream"]["max_file_store"] == 10 * 1024**3
    assert conf.tree["max_connections"] == 64_000
    assert conf.tree["ping_interval"] == "2m0s"
    translated = natsconf.translate(conf, tmp_path)
    assert_nats_accepts(translated.path)
    # Only the variable definition is gone; everything else means the same.
    expected = {key: value for key, value in conf.tree.items() if key != "SYS_PASS"}
    assert natsconf.load(translated.path).tree == expected


def test_unused_variable_definitions_are_kept(write, tmp_path: Path):
    # nats-server rejects an unreferenced non-option key; translation must not hide that.
    conf = natsconf.load(write("port: 4222\nUNUSED = 5\n"))
    translated = natsconf.translate(conf, tmp_path / "out")
    assert natsconf.load(translated.path).tree == {"port": 4222, "UNUSED": 5}
    result = nats_check(translated.path)
    assert result.returncode != 0
    assert 'unknown field "UNUSED"' in result.stdout + result.stderr




# -- confs that used to crash, hang or leak, as the command line reports them

SECRET = "Zq9sEcReT"


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastnats", *argv], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)


def _deep_blocks(tmp_path: Path) -> Path:
    path = tmp_path / "deep.conf"
    path.write_text("a {\n" * 300 + "}\n" * 300)
    return path


def _deep_arrays(tmp_path: Path) -> Path:
    path = tmp_path / "deep.conf"
    path.write_text("a: " + "[" * 500 + "]" * 500 + "\n")
    return path


def _including(target: str):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "includes.conf"
        path.write_text(f'http: 8222\ninclude "{target}"\n')
        return path
    return make


def _including_a_fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return _including(str(tmp_path / "fifo"))(tmp_path)


@pytest.mark.parametrize(("make", "line", "message"), [
    pytest.param(_deep_blocks, 65, "nested more than 64 deep", id="300 blocks"),
    pytest.param(_deep_arrays, 1, "nested more than 64 deep", id="500 arrays"),
    pytest.param(_including("/dev/zero"), 2, "not a regular file (a character device)",
                 id="/dev/zero"),
    pytest.param(_including_a_fifo, 2, "not a regular file (a FIFO)", id="FIFO"),
    pytest.param(_including("/proc/self/environ"), 1, "unexpected text after a value",
                 id="environ"),
])
def test_hostile_confs_exit_2_with_one_line(tmp_path: Path, make, line: int, message: str):
    conf = make(tmp_path)
    # First in the child's environment, so that the error lands on it.
    env = {f"FASTNATS_TEST_{SECRET}": f"{SECRET} hunter2", **os.environ}
    result = run_cli("--config", str(conf), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [error] = result.stderr.splitlines()
    assert error.startswith("fastnats-exporter: error: ")
    assert f":{line}: " in error and message in error, error
    assert "Traceback" not in result.stderr
    assert SECRET not in error and "hunter2" not in error


def _big_conf(path: Path, accounts: int) -> None:
    with path.open("w") as out:
        out.write('http: "127.0.0.1:8222"\naccounts {\n')
        for a in range(accounts):
            out.write(f"  A{a} {{\n    users: [\n")
            out.writelines(f'      {{user: "u{a}_{u}", password: "p{a}x{u}", permissions: '
                           f'{{publish: ["a.{u}.>"], subscribe: ["_INBOX.>"]}}}}\n'
                           for u in range(100))
            out.write("    ]\n  }\n")
        out.write("}\n")


_RSS_PROBE = """
import gc, json, resource, sys
from fastnats import cli

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

cli.return_freed_memory()  # as main() does before reading --config
before = rss_mb()
settings = cli.resolve(cli.build_parser().parse_args(sys.argv[1:]))
gc.collect()
print(json.dumps({"before": before, "after": rss_mb(),
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "url": settings.targets[0].url}))
"""


def test_a_big_conf_is_freed_once_its_settings_are_taken(tmp_path: Path):
    conf = tmp_path / "big.conf"
    _big_conf(conf, accounts=500)  # about 5 MB
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, "--config", str(conf)],
                            capture_output=True, text=True, timeout=120, check=True)
    rss = json.loads(result.stdout)
    assert rss["url"] == "http://127.0.0.1:8222"
    grown, held = rss["peak"] - rss["before"], rss["after"] - rss["before"]
    # The tree took some 15 times the file at its peak; almost none of it stays.
    assert grown > 50, rss
    assert held < 0.1 * grown, rss


def test_the_launcher_reads_every_listener_port_from_the_log(tmp_path: Path):
    # nats-server logs "gateways" in the plural, and the route listener after "Server is ready".
    require_tool("nats-server")
    conf = tmp_path / "nats.conf"
    conf.write_text('server_name: L\nhost: 127.0.0.1\nport: -1\nhttp: "127.0.0.1:-1"\n'
                    'cluster { name: C, host: 127.0.0.1, port: -1 }\n'
                    'gateway { name: C, host: 127.0.0.1, port: -1 }\n'
                    'leafnodes { host: 127.0.0.1, port: -1 }\n'
                    'accounts { SYS { users [{user: s, password: s}] } }\n'
                    'system_account: SYS\n')
    server = launcher.start(["-c", str(conf)])
    try:
        wait_until(lambda: {"route", "gateway", "leafnode"} <= set(server.ports), timeout=10)
        varz = json.loads(http_get(f"http://127.0.0.1:{server.ports['http']}/varz"))
        assert server.ports["route"] == varz["cluster"]["cluster_port"]
        assert server.ports["gateway"] == varz["gateway"]["port"]
        assert server.ports["leafnode"] == varz["leaf"]["port"]
    finally:
        server.stop()
