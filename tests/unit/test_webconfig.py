"""The web config: strict parsing with file:line errors, the TLS mapping checked on real
handshakes over memory BIOs, Basic authentication against bcrypt, the rate limiter on a fake
clock, and the reloader watching real files."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import ssl
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from fastnats import webconfig
from fastnats.errors import WebConfigError
from fastnats.webconfig import (
    MAX_PENDING_CHECKS,
    Reloader,
    WebConfig,
    WebGate,
    load,
    parse_duration,
)
from tests.support.certs import handshake, server_certificate

GUARD = 10.0  # seconds; only a guard against hangs

Write = Callable[..., Path]


def make_hash(password: bytes, prefix: bytes = b"2b", rounds: int = 4) -> str:
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds))
    return (b"$" + prefix + hashed[3:]).decode()


def basic(user: str | bytes, password: str | bytes) -> bytes:
    user = user.encode() if isinstance(user, str) else user
    password = password.encode() if isinstance(password, str) else password
    return b"Basic " + base64.b64encode(user + b":" + password)


def load_text(write: Write, text: str) -> WebConfig:
    return load(str(write(text, "web.yml")))


def load_error(write: Write, text: str) -> tuple[int | None, str]:
    """The line and the message of the error that loading ``text`` raises."""
    path = write(text, "web.yml")
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:") or message.startswith(f"{path} "), message
    match = re.match(re.escape(str(path)) + r":(\d+): ", message)
    return (int(match.group(1)) if match else None), message


@dataclass
class Pki:
    folder: Path
    server_cert: Path
    server_key: Path
    client_ca: trustme.CA
    client_ca_file: Path
    client: trustme.LeafCert  # issued by client_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    cert, key, _ = server_certificate(folder, "server", days=30)
    client_ca = trustme.CA()
    client_ca_file = folder / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    client = client_ca.issue_cert("client.example", "alice@example.com", "10.1.2.3",
                                  "2001:db8::1")
    return Pki(folder, cert, key, client_ca, client_ca_file, client)


def tls_yaml(pki: Pki, *extra: str) -> str:
    lines = ["tls_server_config:", f"  cert_file: {pki.server_cert}",
             f"  key_file: {pki.server_key}", *(f"  {line}" for line in extra)]
    return "\n".join(lines) + "\n"


def client_context(pki: Pki, certificate: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    if certificate is not None:
        certificate.configure_cert(context)
    return context


# Parsing: structure, types, lines.


@pytest.mark.parametrize("text", ["", "# nothing\n", "---\n", "{}\n", "~\n",
                                  "tls_server_config:\nbasic_auth_users:\nrate_limit:\n"])
def test_an_empty_config_means_no_tls_no_auth_no_limit(write: Write, text: str):
    config = load_text(write, text)
    assert config.ssl_context is None
    assert config.users == {}
    assert config.headers == b""
    assert config.http2 is True
    assert config.rate_interval == 0
    assert config.files == (config.path,)
    assert config.describe() == "TLS off, no basic auth, no rate limit"
    gate = WebGate(config)
    assert gate.ssl_context is None
    assert gate.authorize(None) is True
    assert all(gate.allow_request() for _ in range(1000))
    assert gate.check_peer(None) is True


def test_every_key_is_read(write: Write, pki: Pki):
    alice, bob = make_hash(b"a-secret"), make_hash(b"b-secret", b"2y")
    config = load_text(write, tls_yaml(
        pki,
        "client_auth_type: RequireAndVerifyClientCert",
        f"client_ca_file: {pki.client_ca_file}",
        "cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]",
        "curve_preferences: [CurveP256]",
        "min_version: TLS12",
        "max_version: TLS13",
        "prefer_server_cipher_suites: false",
        "client_allowed_sans: [client.example, 10.1.2.3]",
    ) + "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Frame-Options: DENY\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "rate_limit:\n"
        "  interval: 100ms\n"
        "  burst: 20\n"
        "basic_auth_users:\n"
        f"  alice: {alice}\n"
        f"  bob: '{bob}'\n")
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.client_auth == "RequireAndVerifyClientCert"
    assert config.allowed_sans == ("client.example", "10.1.2.3")
    assert not config.ssl_context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.http2 is False
    assert config.headers == (b"X-Frame-Options: DENY\r\n"
                              b"Strict-Transport-Security: max-age=31536000\r\n")
    assert config.rate_interval == pytest.approx(0.1)
    assert config.rate_burst == 20
    assert config.users == {"alice": alice.encode(), "bob": bob.encode()}
    assert config.files == (config.path, str(pki.server_cert), str(pki.server_key),
                            str(pki.client_ca_file))
    assert config.describe() == ("TLS on (client certificates required, 2 allowed SANs), "
                                 "basic auth for 2 users, rate limit 10/s burst 20, "
                                 "2 extra headers")


def test_describe_and_repr_hold_nothing_secret(write: Write, pki: Pki):
    hashes = [make_hash(b"pw1"), make_hash(b"pw2")]
    config = load_text(write, tls_yaml(
        pki, "client_auth_type: RequireAndVerifyClientCert",
        f"client_ca_file: {pki.client_ca_file}")
        + f"rate_limit: {{interval: 100ms, burst: 20}}\n"
          f"basic_auth_users: {{alice: '{hashes[0]}', bob: '{hashes[1]}'}}\n")
    assert config.describe() == ("TLS on (client certificates required), basic auth for 2 "
                                 "users, rate limit 10/s burst 20")
    for text in (config.describe(), repr(config)):
        assert not any(h in text or h[7:29] in text for h in hashes)
        assert "PRIVATE" not in text


@pytest.mark.parametrize("text,line,fragment", [
    ("rate_limit: {}\nbogus: 1\n", 2, "unknown key 'bogus'"),
    ("tls_server_config:\n  cert_fil: x\n", 2, "tls_server_config: unknown key 'cert_fil'"),
    ("http_server_config:\n  http2: true\n  http3: true\n", 3,
     "http_server_config: unknown key 'http3'"),
    ("rate_limit:\n  burst: 1\n  bursts: 2\n", 3, "rate_limit: unknown key 'bursts'"),
    ("rate_limit:\n  burst: 1\n  burst: 2\n", 3, "rate_limit: duplicate key 'burst' (first on "
                                                 "line 2)"),
    ("rate_limit: {}\nrate_limit: {}\n", 2, "duplicate key 'rate_limit'"),
    ("tls_server_config:\n  - cert_file\n", 2, "tls_server_config: expected a map, got a list"),
    ("basic_auth_users: alice\n", 1, "basic_auth_users: expected a map, got a string"),
    ("tls_server_config:\n  cert_file: 12\n", 2,
     "tls_server_config: cert_file: expected a string, got an integer"),
    ("tls_server_config:\n  client_auth_type: yes\n", 2,
     "client_auth_type: expected a string, got a boolean"),
    ("tls_server_config:\n  cert_file: {a: b}\n", 2, "cert_file: expected a string, got a map"),
    ("tls_server_config:\n  cipher_suites: TLS_X\n", 2,
     "cipher_suites: expected a list, got a string"),
    ("tls_server_config:\n  client_allowed_sans:\n    - a\n    - [b]\n", 4,
     "client_allowed_sans: expected a string, got a list"),
    ("tls_server_config:\n  prefer_server_cipher_suites: 'no'\n", 2,
     "prefer_server_cipher_suites: expected true or false, got a string"),
    ("http_server_config:\n  http2: 1\n", 2, "http2: expected true or false, got an integer"),
    ("rate_limit:\n  interval: 1s\n  burst: 1.5\n", 3,
     "rate_limit: burst: expected an integer, got a fractional number"),
    ("rate_limit:\n  interval: 1s\n  burst: '10'\n", 3,
     "burst: expected an integer, got a string"),
    ("rate_limit:\n  burst: -1\n", 2, "rate_limit: burst: must not be negative"),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", 3,
     "rate_limit: burst: burst must be at least 1 when interval is set"),
    ("rate_limit:\n  interval: 1s\n", 1, "rate_limit: burst must be at least 1"),
    ("rate_limit:\n  interval: 5\n  burst: 1\n", 2,
     "rate_limit: interval: a duration needs a unit"),
    ("rate_limit:\n  interval: -1s\n  burst: 1\n", 2, "interval: negative duration '-1s'"),
    ("rate_limit:\n  interval: 1x\n  burst: 1\n", 2, "interval: unknown unit 'x'"),
    ("rate_limit:\n  interval: [1s]\n", 2, "interval: expected a string, got a list"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n", 3,
     "http_server_config: headers: header 'X-Powered-By' cannot be configured"),
    ("http_server_config:\n  headers:\n    x-frame-options: deny\n", 3,
     "header 'x-frame-options' cannot be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3,
     "headers: X-Frame-Options: invalid value 'allow'; expected deny or sameorigin"),
    ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", 3,
     "X-Content-Type-Options: invalid value 'sniff'; expected nosniff"),
    ("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
     3, "Content-Security-Policy: a header value must be printable ASCII"),
    ("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\x01\"\n", 3,
     "X-XSS-Protection: a header value must be printable ASCII"),
    ("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\tmode=block\"\n", 3,
     "a header value must be printable ASCII"),
    ("http_server_config:\n  headers:\n    Content-Security-Policy: \"d\u00e9fault\"\n", 3,
     "a header value must be printable ASCII"),
    ("http_server_config:\n  headers:\n    X-XSS-Protection:\n", 3,
     "X-XSS-Protection: expected a string, got null"),
    ("http_server_config:\n  headers: [X-Frame-Options]\n", 2,
     "headers: expected a map, got a list"),
    ("basic_auth_users:\n  alice: secret\n", 2, "basic_auth_users: alice: not a bcrypt hash"),
    ("basic_auth_users:\n  alice: 12\n", 2, "basic_auth_users: alice: expected a string"),
    ("basic_auth_users:\n  alice:\n", 2, "basic_auth_users: alice: not a bcrypt hash"),
    ("basic_auth_users:\n  'al:ice': $2b$04$" + "a" * 53 + "\n", 2,
     "basic_auth_users: al:ice: a user name cannot contain ':'"),
    ("basic_auth_users:\n  12: x\n", 2, "basic_auth_users: keys must be strings, got an integer"),
    ("rate_limit: &x {}\nhttp_server_config:\n  <<: *x\n", 3,
     "http_server_config: merge keys (<<) are not supported"),
    ("rate_limit: {}\n---\nrate_limit: {}\n", 2, "a second YAML document"),
    ("rate_limit:\n  burst: 1\n bad: 2\n", 3, "invalid YAML"),
    ("rate_limit: [1,\n", 2, "invalid YAML"),
    ("- a\n- b\n", 1, "expected a map, got a list"),
    ("just a string\n", 1, "expected a map, got a string"),
    ("tls_server_config:\n  min_version: TLS12\n", 2,
     "tls_server_config: min_version is set but TLS is off"),
    ("tls_server_config:\n  client_allowed_sans: [a]\n", 2,
     "client_allowed_sans is set but TLS is off"),
    ("tls_server_config:\n  prefer_server_cipher_suites: true\n", 2,
     "prefer_server_cipher_suites is set but TLS is off"),
    ("tls_server_config:\n  key_file: k.pem\n", 1,
     "tls_server_config: missing one of cert or cert_file"),
])
def test_invalid_configs_name_the_line_and_the_key(write: Write, text: str, line: int,
                                                   fragment: str):
    got_line, message = load_error(write, text)
    assert fragment in message
    assert got_line == line, message


def test_invalid_bcrypt_hashes_are_refused(write: Write):
    good = make_hash(b"pw")
    bad = {
        "2x prefix": "$2x$" + good[4:],
        "cost below 4": good[:4] + "03" + good[6:],
        "cost above 31": good[:4] + "32" + good[6:],
        "short": good[:-1],
        "long": good + "a",
        "stray salt bits": good[:28] + "/" + good[29:],
        "bad alphabet": good[:40] + "+" + good[41:],
        "non-ASCII": good[:40] + "\u00e9" + good[41:],
    }
    for why, hashed in bad.items():
        line, message = load_error(write, f"basic_auth_users:\n  carol: \"{hashed}\"\n")
        assert line == 2, why
        assert message.endswith("basic_auth_users: carol: not a bcrypt hash (expected $2a$, "
                                "$2b$ or $2y$ with a cost from 04 to 31, 60 characters)"), why
        assert hashed not in message


def test_file_errors_do_not_hang_or_grow(write: Write, tmp_path: Path):
    _, message = load_error(write, "# x\n" * (webconfig.MAX_CONFIG_BYTES // 4 + 1))
    assert "larger than 1 MiB" in message
    with pytest.raises(WebConfigError, match="cannot read: No such file"):
        load(str(tmp_path / "absent.yml"))
    with pytest.raises(WebConfigError, match="cannot read"):
        load(str(tmp_path))
    _, message = load_error(write, "rate_limit: " + "[" * 20000 + "]" * 20000 + "\n")
    assert "nested too deeply" in message
    _, message = load_error(write, "rate_limit: {burst: 1}\n\x01\n")
    assert "invalid YAML" in message
    path = write("", "web.yml")
    path.write_bytes(b"rate_limit:\n  burst: \xff\n")
    with pytest.raises(WebConfigError, match="invalid YAML"):
        load(str(path))


def test_alias_bombs_stay_small(write: Write):
    # Aliases share the node they name, and only string lists are walked: a billion laughs
    # fails on its first item.
    levels = ["  - &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "tls_server_config:\n client_allowed_sans:\n" + "\n".join(
        " " + level for level in levels) + "\n"
    line, message = load_error(write, text)
    assert line == 3
    assert "client_allowed_sans: expected a string, got a list" in message


# Durations.


@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("+0", 0), ("1s", 10**9), ("100ms", 10**8), ("1m30s", 90 * 10**9),
    ("1h1m1s", 3661 * 10**9), ("1.5h", 5400 * 10**9), (".5s", 5 * 10**8), ("1.s", 10**9),
    ("2us", 2000), ("2\u00b5s", 2000), ("2\u03bcs", 2000), ("3ns", 3), ("+1s", 10**9),
    ("1.0000000001s", 10**9), ("2562047h", 2562047 * 3600 * 10**9),
])
def test_go_durations(text: str, ns: int):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text,fragment", [
    ("", "invalid"), ("-1s", "negative"), ("-0", "negative"), ("1", "missing unit"),
    ("s", "invalid"), (".s", "invalid"), ("1x", "unknown unit 'x'"), ("1s2", "missing unit"),
    ("1 s", "unknown unit ' s'"), ("2562048h", "too long"), ("1..5s", "missing unit"),
])
def test_bad_go_durations(text: str, fragment: str):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_duration(text)


def test_interval_zero_disables_the_limit(write: Write):
    for value in ("0", "'0'", "0s", "''"):
        config = load_text(write, f"rate_limit:\n  interval: {value}\n  burst: 0\n")
        assert config.rate_interval == 0
        assert config.describe().endswith("no rate limit")


# TLS.


def test_tls_defaults_on_a_real_handshake(write: Write, pki: Pki):
    config = load_text(write, tls_yaml(pki))
    context = config.ssl_context
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert config.describe().startswith("TLS on, ")
    server, client = handshake(context, client_context(pki))
    assert client.selected_alpn_protocol() == "http/1.1"
    assert server.version() == "TLSv1.3"
    assert server.getpeercert() is None


@pytest.mark.parametrize("value,mode", [
    ("''", ssl.CERT_NONE), ("NoClientCert", ssl.CERT_NONE),
    ("RequestClientCert", ssl.CERT_NONE), ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
    ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
])
def test_client_auth_types(write: Write, pki: Pki, value: str, mode: ssl.VerifyMode):
    ca = f"client_ca_file: {pki.client_ca_file}" if mode != ssl.CERT_NONE else "# no CA"
    config = load_text(write, tls_yaml(pki, f"client_auth_type: {value}", ca))
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == mode
    stranger = trustme.CA().issue_cert("client.example")
    if mode == ssl.CERT_NONE:
        server, _ = handshake(config.ssl_context, client_context(pki, pki.client))
        assert server.getpeercert() is None  # never read, so never trusted
        handshake(config.ssl_context, client_context(pki, stranger))
        return
    server, _ = handshake(config.ssl_context, client_context(pki, pki.client))
    peercert = server.getpeercert()
    assert peercert is not None
    assert ("DNS", "client.example") in peercert["subjectAltName"]
    with pytest.raises(ssl.SSLError):
        handshake(config.ssl_context, client_context(pki, stranger))
    if mode == ssl.CERT_REQUIRED:
        with pytest.raises(ssl.SSLError):
            handshake(config.ssl_context, client_context(pki))
    else:
        server, _ = handshake(config.ssl_context, client_context(pki))
        assert server.getpeercert() is None


def test_request_client_cert_accepts_a_ca(write: Write, pki: Pki):
    config = load_text(write, tls_yaml(pki, "client_auth_type: RequestClientCert",
                                       f"client_ca_file: {pki.client_ca_file}"))
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("extra,line,fragment", [
    (["client_auth_type: RequireAnyClientCert"], 4,
     "client_auth_type: RequireAnyClientCert is not supported: Python's ssl cannot require"),
    (["client_auth_type: RequireClientCert"], 4, "RequireClientCert is not supported"),
    (["client_auth_type: Maybe"], 4, "unknown client_auth_type 'Maybe'; expected one of "
                                     "NoClientCert, RequestClientCert"),
    (["client_auth_type: RequireAndVerifyClientCert"], 4,
     "RequireAndVerifyClientCert needs client_ca_file or client_ca"),
    (["client_auth_type: VerifyClientCertIfGiven"], 4,
     "VerifyClientCertIfGiven needs client_ca_file or client_ca"),
    (["client_ca_file: {ca}"], 4, "client CAs are configured without a client auth policy"),
    (["client_auth_type: NoClientCert", "client_ca_file: {ca}"], 5,
     "without a client auth policy"),
    (["client_auth_type: RequestClientCert", "client_allowed_sans: [a]"], 5,
     "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"),
    (["client_allowed_sans: [a]"], 4, "client_allowed_sans: needs client_auth_type"),
    (["client_auth_type: RequireAndVerifyClientCert", "client_ca_file: {ca}",
      "client_ca: x"], 5, "cannot specify both client_ca_file and client_ca"),
    (["cert: x"], 2, "cannot specify both cert_file and cert"),
    (["key: x"], 3, "cannot specify both key_file and key"),
    (["min_version: TLS14"], 4, "min_version: unknown TLS version 'TLS14'; expected TLS10, "
                                "TLS11, TLS12, TLS13"),
    (["max_version: tls13"], 4, "max_version: unknown TLS version 'tls13'"),
    (["min_version: TLS13", "max_version: TLS12"], 5, "max_version: TLS12 is below "
                                                      "min_version TLS13"),
    (["cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]"], 4,
     "cipher_suites: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite; TLS 1.3 suites cannot be "
     "restricted (Go ignores them"),
    (["cipher_suites:", "  - TLS_CHACHA20_POLY1305_SHA256"], 5, "is a TLS 1.3 suite"),
    (["cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]"], 4,
     "unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256'"),
    (["curve_preferences:", "  - CurveP256", "  - X25519"], 6,
     "curve_preferences: only one curve can be set"),
    (["curve_preferences: [P-256]"], 4, "unknown curve 'P-256'; expected one of CurveP256, "
                                        "CurveP384, CurveP521, X25519"),
])
def test_tls_errors(write: Write, pki: Pki, extra: list[str], line: int, fragment: str):
    got_line, message = load_error(
        write, tls_yaml(pki, *(item.format(ca=pki.client_ca_file) for item in extra)))
    assert fragment in message
    assert got_line == line, message


def test_tls_needs_both_halves(write: Write, pki: Pki):
    line, message = load_error(write, f"rate_limit: {{}}\ntls_server_config:\n"
                                      f"  cert_file: {pki.server_cert}\n")
    assert (line, message.split(": ", 1)[1]) == (
        2, "tls_server_config: missing one of key or key_file")
    line, message = load_error(write, "tls_server_config:\n  client_auth_type: NoClientCert\n")
    assert line == 1 and "missing one of cert or cert_file" in message


@pytest.mark.parametrize("minimum,maximum", [("TLS12", "TLS12"), ("TLS13", "TLS13"),
                                             ("TLS12", "TLS13")])
def test_versions(write: Write, pki: Pki, minimum: str, maximum: str):
    config = load_text(write, tls_yaml(pki, f"min_version: {minimum}",
                                       f"max_version: {maximum}"))
    names = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
    assert config.ssl_context is not None
    assert config.ssl_context.minimum_version == names[minimum]
    assert config.ssl_context.maximum_version == names[maximum]
    server, _ = handshake(config.ssl_context, client_context(pki))
    assert server.version() == {"TLS12": "TLSv1.2", "TLS13": "TLSv1.3"}[maximum]


@pytest.mark.parametrize("version", ["TLS10", "TLS11"])
def test_old_versions_follow_the_local_openssl(write: Write, pki: Pki, version: str):
    text = tls_yaml(pki, f"min_version: {version}")
    refused = ssl.OPENSSL_VERSION_INFO >= (3,) and \
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).security_level >= 1
    if refused:
        line, message = load_error(write, text)
        assert line == 4
        assert f"min_version: {version} cannot be served: the local OpenSSL" in message
    else:
        config = load_text(write, text)
        assert config.ssl_context is not None
        assert config.ssl_context.minimum_version < ssl.TLSVersion.TLSv1_2


def test_cipher_suites_map_to_openssl_names(write: Write, pki: Pki):
    config = load_text(write, tls_yaml(
        pki, "cipher_suites:", "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "  - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "  - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "max_version: TLS12"))
    assert config.ssl_context is not None
    tls12 = {c["name"] for c in config.ssl_context.get_ciphers()
             if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
                     "ECDHE-ECDSA-AES256-GCM-SHA384"}
    server, client = handshake(config.ssl_context, client_context(pki))
    cipher = server.cipher()
    assert cipher is not None
    assert cipher[0] in tls12  # the test certificate is ECDSA


def test_every_mapped_cipher_name_is_known_to_openssl():
    # The table's OpenSSL names are real: each one is either available or refused as unknown
    # by this OpenSSL, and the modern ones are all available.
    for go_name, openssl in webconfig._CIPHERS.items():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if "RC4" in openssl or "DES" in openssl:
            continue
        context.set_ciphers(openssl)
        assert openssl in {c["name"] for c in context.get_ciphers()}, go_name


def test_a_cipher_missing_from_openssl_is_named(write: Write, pki: Pki):
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:RC4-SHA")
        rc4 = "RC4-SHA" in {c["name"] for c in probe.get_ciphers()}
    except ssl.SSLError:
        rc4 = False
    text = tls_yaml(pki, "cipher_suites:", "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                    "  - TLS_RSA_WITH_RC4_128_SHA")
    if rc4:
        assert load_text(write, text).ssl_context is not None
    else:
        line, message = load_error(write, text)
        assert line == 6
        assert "TLS_RSA_WITH_RC4_128_SHA (RC4-SHA) is not available in the local OpenSSL" \
            in message


@pytest.mark.parametrize("curve", ["CurveP256", "CurveP384", "CurveP521", "X25519"])
def test_one_curve(write: Write, pki: Pki, curve: str):
    config = load_text(write, tls_yaml(pki, f"curve_preferences: [{curve}]"))
    assert config.ssl_context is not None
    handshake(config.ssl_context, client_context(pki))


def test_inline_pem_goes_through_private_files_that_are_removed(
        write: Write, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    private = tmp_path / "private-tmp"
    private.mkdir()
    monkeypatch.setattr(webconfig.tempfile, "tempdir", str(private))
    modes = []
    unlink = os.unlink

    def spy(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).startswith(str(private)):
            modes.append(stat.S_IMODE(os.stat(path).st_mode))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", spy)

    def block(text: str) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in text.strip().splitlines())

    config = load_text(write, "tls_server_config:\n"
                              f"  cert: {block(pki.server_cert.read_text())}"
                              f"  key: {block(pki.server_key.read_text())}"
                              "  client_auth_type: RequireAndVerifyClientCert\n"
                              f"  client_ca: {block(pki.client_ca_file.read_text())}")
    assert modes == [0o600, 0o600]
    assert list(private.iterdir()) == []
    assert config.ssl_context is not None
    assert config.files == (config.path,)
    server, _ = handshake(config.ssl_context, client_context(pki, pki.client))
    assert server.getpeercert()


def test_relative_paths_resolve_against_the_config_directory(
        tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "etc" / "tls").mkdir(parents=True)
    for source in (pki.server_cert, pki.server_key, pki.client_ca_file):
        (tmp_path / "etc" / "tls" / source.name).write_bytes(source.read_bytes())
    path = tmp_path / "etc" / "web.yml"
    path.write_text("tls_server_config:\n"
                    f"  cert_file: tls/{pki.server_cert.name}\n"
                    f"  key_file: ./tls/{pki.server_key.name}\n"
                    "  client_auth_type: VerifyClientCertIfGiven\n"
                    f"  client_ca_file: ../etc/tls/{pki.client_ca_file.name}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(os.path.relpath(path))
    assert config.ssl_context is not None
    etc = str(tmp_path / "etc")
    assert config.files == (os.path.relpath(path),
                            os.path.join(etc, "tls", pki.server_cert.name),
                            os.path.join(etc, "./tls", pki.server_key.name),
                            os.path.join(etc, "../etc/tls", pki.client_ca_file.name))


@pytest.fixture
def bad_files(tmp_path: Path, pki: Pki) -> dict[str, Path]:
    other = trustme.CA().issue_cert("localhost")
    files = {"garbage": tmp_path / "garbage.pem", "other-key": tmp_path / "other-key.pem",
             "encrypted": tmp_path / "encrypted.pem", "folder": tmp_path / "folder"}
    files["garbage"].write_text("not a certificate\n")
    other.private_key_pem.write_to_path(str(files["other-key"]))
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    files["encrypted"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    files["folder"].mkdir()
    return files


@pytest.mark.parametrize("cert,key,ca,line,fragment", [
    ("missing", "server", None, 2, "tls_server_config: cert_file: cannot read {missing}: No "
                                   "such file or directory"),
    ("server", "missing", None, 3, "tls_server_config: key_file: cannot read {missing}"),
    ("garbage", "server", None, 2, "tls_server_config: cert_file: {garbage} holds no PEM "
                                   "certificate"),
    ("server-key", "server", None, 2, "holds no PEM certificate"),
    ("server", "other-key", None, 3, "tls_server_config: key_file: {other-key} does not "
                                     "match the certificate in {server}"),
    ("server", "garbage", None, 3, "key_file: cannot load a private key from {garbage}"),
    ("server", "server", None, 3, "key_file: cannot load a private key from {server}"),
    ("server", "encrypted", None, 3, "key_file: {encrypted} is encrypted; an unencrypted key "
                                     "is needed"),
    ("server", "server-key", "garbage", 5, "tls_server_config: client_ca_file: no CA "
                                           "certificate could be read from {garbage}"),
    ("server", "server-key", "server-key", 5, "client_ca_file: no CA certificate"),
    ("server", "server-key", "missing", 5, "client_ca_file: cannot read {missing}"),
    ("server", "server-key", "folder", 5, "client_ca_file: cannot read {folder}: not a "
                                          "regular file (a directory)"),
    ("folder", "server-key", None, 2, "cert_file: cannot read {folder}: not a regular file (a "
                                      "directory)"),
])
def test_certificate_and_key_errors(write: Write, pki: Pki, bad_files: dict[str, Path],
                                    tmp_path: Path, cert: str, key: str, ca: str | None,
                                    line: int, fragment: str):
    files = {**{name: str(path) for name, path in bad_files.items()},
             "server": str(pki.server_cert), "server-key": str(pki.server_key),
             "missing": str(tmp_path / "missing.pem")}
    extra = [] if ca is None else ["client_auth_type: RequireAndVerifyClientCert",
                                   f"client_ca_file: {files[ca]}"]
    text = ("tls_server_config:\n" f"  cert_file: {files[cert]}\n" f"  key_file: {files[key]}\n"
            + "".join(f"  {item}\n" for item in extra))
    got_line, message = load_error(write, text)
    assert fragment.format(**files) in message
    assert got_line == line, message
    assert "BEGIN" not in message and "passphrase" not in message


def test_inline_errors_show_no_key_material(write: Write, pki: Pki, bad_files: dict[str, Path]):
    other_key = bad_files["other-key"].read_text()
    inline = "".join(f"    {line}\n" for line in other_key.strip().splitlines())
    line, message = load_error(write, "tls_server_config:\n"
                                      f"  cert_file: {pki.server_cert}\n"
                                      f"  key: |\n{inline}")
    assert line == 3
    assert f"key: the inline PEM does not match the certificate in {pki.server_cert}" in message
    assert "BEGIN" not in message
    assert not any(chunk in message for chunk in other_key.splitlines()[1:-1])
    line, message = load_error(write, "tls_server_config:\n"
                                      "  cert: not pem\n"
                                      f"  key_file: {pki.server_key}\n")
    assert (line, message.split(": ", 1)[1]) == (
        2, "tls_server_config: cert: the inline PEM holds no PEM certificate")
    line, message = load_error(write, tls_yaml(pki, "client_auth_type: VerifyClientCertIfGiven",
                                               "client_ca: not pem"))
    assert line == 5 and "client_ca: no CA certificate could be read from the inline PEM" \
        in message


# client_allowed_sans.


def test_allowed_sans_against_peercert_shapes():
    gate = WebGate(WebConfig(path="w", allowed_sans=(
        "client.example", "ops@example.com", "10.1.2.3", "2001:db8::1",
        "spiffe://example.org/prometheus")))

    def cert(*sans: tuple[str, str]) -> dict[str, Any]:
        return {"subject": ((("commonName", "x"),),), "subjectAltName": sans}

    assert gate.check_peer(cert(("DNS", "client.example")))
    assert gate.check_peer(cert(("DNS", "other"), ("email", "ops@example.com")))
    assert gate.check_peer(cert(("IP Address", "10.1.2.3")))
    assert gate.check_peer(cert(("IP Address", "2001:DB8:0:0:0:0:0:1\n")))
    assert gate.check_peer(cert(("URI", "spiffe://example.org/prometheus")))
    assert not gate.check_peer(cert(("DNS", "Client.example.")))
    assert not gate.check_peer(cert(("DNS", "evil.example"), ("IP Address", "10.1.2.4")))
    assert not gate.check_peer(cert(("URI", "spiffe://example.org/other")))
    assert not gate.check_peer(cert(("othername", "client.example")))
    assert not gate.check_peer(cert(("DirName", "client.example")))
    assert not gate.check_peer({"subject": ()})
    assert not gate.check_peer({})
    assert not gate.check_peer(None)
    assert WebGate(WebConfig(path="w")).check_peer(None)


def test_allowed_sans_on_a_real_handshake(write: Write, pki: Pki):
    for sans, admitted in (("[client.example]", True), ("[alice@example.com]", True),
                           ("['2001:db8:0::1']", True), ("[10.1.2.3]", True),
                           ("[someone.else, 10.1.2.4]", False)):
        config = load_text(write, tls_yaml(pki, "client_auth_type: RequireAndVerifyClientCert",
                                           f"client_ca_file: {pki.client_ca_file}",
                                           f"client_allowed_sans: {sans}"))
        assert config.ssl_context is not None
        server, _ = handshake(config.ssl_context, client_context(pki, pki.client))
        assert WebGate(config).check_peer(server.getpeercert()) is admitted, sans


# Basic authentication.


def auth_config(write: Write, **users: str) -> WebConfig:
    lines = "".join(f"  {user}: '{hashed}'\n" for user, hashed in users.items())
    return load_text(write, "basic_auth_users:\n" + lines)


class CountingCheck:
    """Stands in for the bcrypt call: counts calls, and can hold them until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: bool = False) -> None:
        self.calls: list[bytes] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = webconfig._checkpw

        def check(password: bytes, hashed: bytes) -> bool:
            self.calls.append(hashed)
            assert self.release.wait(GUARD)
            return real(password, hashed)

        monkeypatch.setattr(webconfig, "_checkpw", check)


async def until(predicate: Callable[[], object]) -> None:
    deadline = time.monotonic() + GUARD
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.005)


def run(coroutine: Awaitable[Any]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coroutine, GUARD)
    return asyncio.run(guarded())


@pytest.mark.parametrize("prefix", [b"2a", b"2b", b"2y"])
def test_the_three_bcrypt_prefixes(write: Write, prefix: bytes):
    hashed = make_hash(b"s3cret", prefix)
    assert hashed.startswith("$" + prefix.decode() + "$04$")
    gate = WebGate(auth_config(write, alice=hashed))
    assert gate.authorize(basic("alice", "s3cret")) is None
    assert run(gate.verify(basic("alice", "s3cret"))) is True
    assert gate.authorize(basic("alice", "s3cret")) is True
    assert run(gate.verify(basic("alice", "s3creT"))) is False


def test_wrong_user_and_wrong_password_are_both_refused_the_slow_way(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    config = auth_config(write, alice=make_hash(b"pw", rounds=4), bob=make_hash(b"pw", rounds=5))
    assert config.dummy_hash[:7] == b"$2b$05$"
    assert not bcrypt.checkpw(b"pw", config.dummy_hash)
    assert config.dummy_hash not in config.users.values()
    gate = WebGate(config)
    counting = CountingCheck(monkeypatch)
    assert gate.authorize(basic("mallory", "pw")) is None  # no shortcut for unknown users
    assert run(gate.verify(basic("mallory", "pw"))) is False
    assert run(gate.verify(basic("alice", "wrong"))) is False
    assert counting.calls == [config.dummy_hash, config.users["alice"]]
    # An unknown user is never remembered, even if the dummy hash were to match.
    assert gate.authorize(basic("mallory", "pw")) is None
    assert gate.stats.cache_hits == 0


def test_malformed_authorization_is_refused_without_bcrypt(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    gate = WebGate(auth_config(write, alice=make_hash(b"pw")))
    counting = CountingCheck(monkeypatch)
    token = base64.b64encode(b"alice:pw")
    for header in (None, b"", b"Basic", b"Basic ", b"Bearer " + token, b"Basic" + token,
                   b"Basic " + token + b"!", b"Basic " + token[:-1],
                   b"Basic " + base64.b64encode(b"alicepw"),
                   b"Basic " + base64.b64encode(b"\xffalice:pw"),
                   b"Basic " + base64.b64encode(b"alice:\xff"),
                   b"Basic " + base64.b64encode(b"alice:" + b"p" * 4000),
                   b"Digest username=alice"):
        assert gate.authorize(header) is False, header
        if header is not None:
            assert run(gate.verify(header)) is False, header
    assert counting.calls == []
    for header in (b"basic " + token, b"BASIC " + token, b"Basic   " + token + b" "):
        fresh = WebGate(gate.config)  # nothing remembered yet
        assert fresh.authorize(header) is None, header
        assert run(fresh.verify(header)) is True, header
    assert WebGate(WebConfig(path="w")).authorize(None) is True
    assert run(WebGate(WebConfig(path="w")).verify(b"junk")) is True


def test_utf8_credentials_and_long_passwords(write: Write):
    long_password = "p\u00e4ss" * 30  # 150 bytes; bcrypt reads the first 72, as Go does
    gate = WebGate(auth_config(write, **{
        "j\u00fcrgen": make_hash("\u00fc:ber".encode()),
        "long": make_hash(long_password.encode()[:72])}))
    assert run(gate.verify(basic("j\u00fcrgen", "\u00fc:ber"))) is True
    assert run(gate.verify(basic("j\u00fcrgen", "u:ber"))) is False
    assert run(gate.verify(basic("long", long_password))) is True
    assert run(gate.verify(basic("long", long_password[:30]))) is False


def test_cache_hits_skip_bcrypt_and_never_admit_a_wrong_password(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    gate = WebGate(auth_config(write, alice=make_hash(b"right")))
    counting = CountingCheck(monkeypatch)
    assert run(gate.verify(basic("alice", "right"))) is True
    assert len(counting.calls) == 1
    for _ in range(10):
        assert gate.authorize(basic("alice", "right")) is True
    assert run(gate.verify(basic("alice", "right"))) is True
    assert len(counting.calls) == 1
    assert gate.stats.cache_hits == 11
    assert gate.authorize(basic("alice", "wrong")) is None
    assert run(gate.verify(basic("alice", "wrong"))) is False
    assert gate.authorize(basic("alice", "right!")) is None
    assert gate.authorize(basic("alic", "right")) is None
    assert len(counting.calls) == 2
    assert gate.stats.bcrypt_checks == 2


def test_the_cache_survives_a_reload_but_not_a_changed_hash(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    first = WebGate(auth_config(write, alice=make_hash(b"pw"), bob=make_hash(b"pw")))
    assert run(first.verify(basic("alice", "pw"))) is True
    assert run(first.verify(basic("bob", "pw"))) is True
    second = WebGate(auth_config(write, alice=first.config.users["alice"].decode(),
                                 bob=make_hash(b"pw")), previous=first)
    assert second.authorize(basic("alice", "pw")) is True
    assert second.authorize(basic("bob", "pw")) is None
    assert second.stats is first.stats
    third = WebGate(auth_config(write, carol=make_hash(b"pw")), previous=second)
    assert third.authorize(basic("alice", "pw")) is None  # removed users are not remembered
    assert run(third.verify(basic("alice", "pw"))) is False


def test_the_cache_is_bounded_and_least_recent_goes_first(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(webconfig, "CACHE_SIZE", 2)
    gate = WebGate(auth_config(write, a=make_hash(b"1"), b=make_hash(b"2"), c=make_hash(b"3")))
    assert run(gate.verify(basic("a", "1")))
    assert run(gate.verify(basic("b", "2")))
    assert gate.authorize(basic("a", "1")) is True  # a is now the most recent
    assert run(gate.verify(basic("c", "3")))
    assert gate.authorize(basic("b", "2")) is None
    assert gate.authorize(basic("a", "1")) is True
    assert gate.authorize(basic("c", "3")) is True


def test_identical_checks_in_flight_share_one_bcrypt(
        write: Write, monkeypatch: pytest.MonkeyPatch):
    gate = WebGate(auth_config(write, alice=make_hash(b"pw")))
    counting = CountingCheck(monkeypatch, hold=True)

    async def scenario() -> list[bool]:
        waiters = [asyncio.ensure_future(gate.verify(basic("alice", "pw"))) for _ in range(10)]
        await until(lambda: counting.calls)
        # A client that hangs up does not cancel the check the others wait for.
        waiters[0].cancel()
        await asyncio.sleep(0)
        counting.release.set()
        return list(await asyncio.gather(*waiters[1:]))

    assert run(scenario()) == [True] * 9
    assert len(counting.calls) == 1
    assert gate.stats.deduplicated == 9
    assert gate.authorize(basic("alice", "pw")) is True


def test_one_check_at_a_time_and_a_bounded_queue(write: Write, monkeypatch: pytest.MonkeyPatch):
    gate = WebGate(auth_config(write, alice=make_hash(b"pw")))
    counting = CountingCheck(monkeypatch, hold=True)

    async def scenario() -> None:
        guesses = [asyncio.ensure_future(gate.verify(basic("alice", f"guess{i}")))
                   for i in range(MAX_PENDING_CHECKS)]
        await until(lambda: counting.calls)
        await asyncio.sleep(0.05)
        assert len(counting.calls) == 1  # the others wait for the one running
        # The queue is full: a new distinct check is refused at once, an identical one joins.
        # None: refused unchecked, which the server counts as busy, not as a wrong password.
        assert await gate.verify(basic("alice", "pw")) is None
        assert gate.stats.refused_busy == 1
        duplicate = asyncio.ensure_future(gate.verify(basic("alice", "guess5")))
        await asyncio.sleep(0)
        assert gate.stats.deduplicated == 1
        counting.release.set()
        assert await asyncio.gather(*guesses, duplicate) == [False] * (MAX_PENDING_CHECKS + 1)
        assert len(counting.calls) == MAX_PENDING_CHECKS
        # Drained: checks are accepted again.
        assert await gate.verify(basic("alice", "pw")) is True

    run(scenario())


# Rate limit.


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket(write: Write):
    config = load_text(write, "rate_limit:\n  interval: 1s\n  burst: 2\n")
    assert config.describe() == "TLS off, no basic auth, rate limit 1/s burst 2"
    clock = FakeClock()
    gate = WebGate(config, clock=clock)
    assert [gate.allow_request() for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert gate.allow_request() is False
    clock.now += 0.5
    assert [gate.allow_request() for _ in range(2)] == [True, False]
    clock.now += 60
    assert [gate.allow_request() for _ in range(3)] == [True, True, False]
    clock.now -= 5  # a clock that steps back adds nothing
    assert gate.allow_request() is False
    clock.now += 5.25
    assert gate.allow_request() is False  # 0.25s after the last refill: a quarter token
    clock.now += 0.75
    assert gate.allow_request() is True


def test_rate_descriptions(write: Write):
    for interval, burst, text in (("100ms", 20, "10/s"), ("1m30s", 1, "40/h"),
                                  ("2s", 3, "30/min"), ("2h", 1, "0.5/h")):
        config = load_text(write, f"rate_limit: {{interval: {interval}, burst: {burst}}}\n")
        assert config.describe().endswith(f"rate limit {text} burst {burst}")


# Reloader.


class Applied:
    def __init__(self) -> None:
        self.gates: list[WebGate] = []
        self.changed = asyncio.Event()

    def __call__(self, gate: WebGate) -> None:
        self.gates.append(gate)
        self.changed.set()

    async def next(self) -> WebGate:
        await asyncio.wait_for(self.changed.wait(), GUARD)
        self.changed.clear()
        return self.gates[-1]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="fastnats.http")
    yield caplog


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "fastnats.http" and r.levelno == level]


def replace(path: Path, text: str, mtime_ns: int | None = None) -> None:
    """Write ``text`` to ``path`` by rename, as cert-manager and editors do."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    if mtime_ns is not None:
        os.utime(staged, ns=(mtime_ns, mtime_ns))
    os.replace(staged, path)


def test_reload_applies_a_changed_file(write: Write, logs: pytest.LogCaptureFixture):
    path = write("rate_limit: {interval: 1s, burst: 5}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    first = reloader.gate
    path.write_text("rate_limit: {interval: 1s, burst: 7}\n")
    assert run(reloader.reload()) is True
    assert applied.gates == [reloader.gate]
    assert reloader.gate is not first and reloader.config.rate_burst == 7
    assert records(logs, logging.INFO) == [
        "web config reloaded: TLS off, no basic auth, rate limit 1/s burst 7"]


def test_a_broken_file_keeps_the_last_good_config(write: Write, logs: pytest.LogCaptureFixture):
    path = write("rate_limit: {interval: 1s, burst: 5}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    good = reloader.gate
    path.write_text("rate_limit: {interval: 1s, burst: 5}\nbasic_auth_users: {alice: pw}\n")
    assert run(reloader.reload()) is False
    assert run(reloader.reload()) is False  # the same reason is not logged twice
    path.write_text("rate_limit: {interval: 1s, burst: 0}\n")
    assert run(reloader.reload()) is False
    assert applied.gates == [] and reloader.gate is good
    assert records(logs, logging.ERROR) == [
        f"web config not reloaded, keeping the last good one: {path}:2: basic_auth_users: "
        "alice: not a bcrypt hash (expected $2a$, $2b$ or $2y$ with a cost from 04 to 31, 60 "
        "characters)",
        f"web config not reloaded, keeping the last good one: {path}:1: rate_limit: burst: "
        "burst must be at least 1 when interval is set (a burst of 0 would refuse every "
        "request)"]
    path.write_text("rate_limit: {interval: 1s, burst: 6}\n")
    assert run(reloader.reload()) is True
    path.write_text("rate_limit: {interval: 1s, burst: 0}\n")
    assert run(reloader.reload()) is False  # logged again: it is news after a success
    assert len(records(logs, logging.ERROR)) == 3


def test_tls_cannot_be_switched_by_a_reload(write: Write, pki: Pki,
                                            logs: pytest.LogCaptureFixture):
    path = write(tls_yaml(pki), "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    path.write_text("rate_limit: {interval: 1s, burst: 5}\n")
    assert run(reloader.reload()) is False
    assert applied.gates == [] and reloader.config.ssl_context is not None
    assert records(logs, logging.ERROR) == [
        f"web config not reloaded, keeping the last good one: {path}: TLS is on in the running "
        "server and off in the new config; restart to turn TLS on or off"]
    plain = write("", "plain.yml")
    reloader = Reloader(load(str(plain)), applied)
    plain.write_text(tls_yaml(pki))
    assert run(reloader.reload()) is False
    assert "TLS is off in the running server and on in the new config" in \
        records(logs, logging.ERROR)[-1]


def test_run_sees_a_file_replaced_by_rename(write: Write):
    path = write("rate_limit: {interval: 1s, burst: 10}\n", "web.yml")
    before = path.stat()
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)

    async def scenario() -> None:
        watcher = asyncio.ensure_future(reloader.run(interval=0.01))
        await asyncio.sleep(0.05)
        assert applied.gates == []  # nothing changed, nothing reloaded
        # Same size and same mtime: only the inode tells.
        replace(path, "rate_limit: {interval: 1s, burst: 20}\n", before.st_mtime_ns)
        assert (path.stat().st_mtime_ns, path.stat().st_size) == (before.st_mtime_ns,
                                                                  before.st_size)
        gate = await applied.next()
        assert gate.config.rate_burst == 20
        watcher.cancel()

    run(scenario())


def test_run_watches_the_certificates(write: Write, pki: Pki, tmp_path: Path):
    cert, key, _ = server_certificate(tmp_path, "rotating", days=10)
    path = write(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    assert reloader.watched == (str(path), str(cert), str(key))

    async def scenario() -> None:
        watcher = asyncio.ensure_future(reloader.run(interval=0.01))
        staged = tmp_path / "staged"
        staged.mkdir()
        new_cert, new_key, _ = server_certificate(staged, "rotating", days=20)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        gate = await applied.next()
        assert gate.ssl_context is not None
        server, _ = handshake(gate.ssl_context, client_context(pki))
        watcher.cancel()

    run(scenario())


def test_run_reloads_when_a_vanished_file_comes_back(write: Write,
                                                     logs: pytest.LogCaptureFixture):
    path = write("rate_limit: {interval: 1s, burst: 10}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)

    async def scenario() -> None:
        watcher = asyncio.ensure_future(reloader.run(interval=0.01))
        path.unlink()
        await asyncio.sleep(0.1)
        assert applied.gates == [] and records(logs, logging.ERROR) == []
        path.write_text("rate_limit: {interval: 1s, burst: 11}\n")
        gate = await applied.next()
        assert gate.config.rate_burst == 11
        watcher.cancel()

    run(scenario())


def test_a_missing_file_named_by_a_failed_reload_is_watched(write: Write, pki: Pki,
                                                            tmp_path: Path):
    path = write(tls_yaml(pki), "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    later = tmp_path / "later.pem"

    async def scenario() -> None:
        watcher = asyncio.ensure_future(reloader.run(interval=0.01))
        replace(path, f"tls_server_config:\n  cert_file: {later}\n"
                      f"  key_file: {pki.server_key}\n")
        await until(lambda: str(later) in reloader.watched)
        assert applied.gates == []
        later.write_bytes(pki.server_cert.read_bytes())
        gate = await applied.next()
        assert gate.config.files == (str(path), str(later), str(pki.server_key))
        watcher.cancel()

    run(scenario())


def test_reload_requests_coalesce(write: Write):
    path = write("rate_limit: {interval: 1s, burst: 10}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)

    async def scenario() -> None:
        for _ in range(5):
            reloader.request_reload()
        await applied.next()
        await asyncio.sleep(0.05)
        assert len(applied.gates) == 1
        # With run() going, a request is served without any file change.
        watcher = asyncio.ensure_future(reloader.run(interval=GUARD))
        await asyncio.sleep(0)
        reloader.request_reload()
        reloader.request_reload()
        await applied.next()
        await asyncio.sleep(0.05)
        assert len(applied.gates) == 2
        watcher.cancel()

    run(scenario())


def test_a_reload_keeps_remembered_logins(write: Write, monkeypatch: pytest.MonkeyPatch):
    path = write(f"basic_auth_users: {{alice: '{make_hash(b'pw')}'}}\n", "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    assert run(reloader.gate.verify(basic("alice", "pw"))) is True
    path.write_text(path.read_text() + "rate_limit: {interval: 1s, burst: 3}\n")
    counting = CountingCheck(monkeypatch)
    assert run(reloader.reload()) is True
    assert reloader.gate.authorize(basic("alice", "pw")) is True
    assert counting.calls == []


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_a_regular_file_is_read(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "web.yml"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path
    else:
        path = Path("/dev/zero")
    # A FIFO with no writer used to block the start for ever.
    with pytest.raises(webconfig.WebConfigError, match="not a regular file|cannot read"):
        webconfig.load(str(path))


@contextlib.contextmanager
def released(fifo: Path) -> Iterator[None]:
    """Inside, from GUARD seconds on, keeps freeing any reader blocked opening ``fifo``: a
    test of code that blocks then fails instead of hanging."""
    done = threading.Event()

    def pump() -> None:
        if done.wait(GUARD):
            return
        while not done.wait(0.01):
            with contextlib.suppress(OSError):  # ENXIO: nobody is blocked
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield
    finally:
        done.set()


def load_in_a_thread(path: Path) -> BaseException | WebConfig:
    outcome: list[BaseException | WebConfig] = []

    def target() -> None:
        try:
            outcome.append(load(str(path)))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert outcome, "load() is blocked"
    return outcome[0]


@pytest.mark.parametrize("key", ["cert_file", "key_file", "client_ca_file"])
def test_a_fifo_named_by_the_config_is_refused_at_start(write: Write, pki: Pki, tmp_path: Path,
                                                        key: str):
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    files = {"cert_file": pki.server_cert, "key_file": pki.server_key,
             "client_ca_file": pki.client_ca_file, key: fifo}
    path = write("tls_server_config:\n"
                 + "".join(f"  {name}: {value}\n" for name, value in files.items())
                 + "  client_auth_type: RequireAndVerifyClientCert\n", "web.yml")
    with released(fifo):
        outcome = load_in_a_thread(path)
    assert isinstance(outcome, WebConfigError), outcome
    line = list(files).index(key) + 2
    assert str(outcome) == (f"{path}:{line}: tls_server_config: {key}: cannot read {fifo}: "
                            "not a regular file (a FIFO)")


def test_a_fifo_named_by_a_reload_keeps_the_last_good_config(
        write: Write, pki: Pki, tmp_path: Path, logs: pytest.LogCaptureFixture):
    path = write(tls_yaml(pki), "web.yml")
    applied = Applied()
    reloader = Reloader(load(str(path)), applied)
    good = reloader.gate
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    path.write_text(f"tls_server_config:\n  cert_file: {fifo}\n  key_file: {pki.server_key}\n")
    with released(fifo):
        assert run(reloader.reload()) is False
    assert applied.gates == [] and reloader.gate is good
    assert records(logs, logging.ERROR) == [
        f"web config not reloaded, keeping the last good one: {path}:2: tls_server_config: "
        f"cert_file: cannot read {fifo}: not a regular file (a FIFO)"]
    # The lock is free again: the next reload runs.
    path.write_text(tls_yaml(pki))
    assert run(reloader.reload()) is True
