"""The exporter process with ``--web.config.file``: TLS, basic auth on every path, reloads on
SIGHUP and on a file change (a certificate swap seen by a new client), a reload that fails
keeping the last good config, and a malformed file refused at start with exit status 2."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme

from tests.support.process import Exporter, exporting, require_tool, running_nats, wait_until

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def nats() -> Iterator:
    with running_nats() as server:
        yield server


@pytest.fixture()
def ca() -> trustme.CA:
    return trustme.CA()


def issue(ca: trustme.CA, folder: Path, name: str) -> Path:
    """A certificate for 127.0.0.1 with its key, in one file."""
    path = folder / f"{name}.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(path))
    return path


def write_config(path: Path, cert: str | None, users: dict[str, str] | None = None) -> None:
    config: dict = {}
    if cert is not None:
        config["tls_server_config"] = {"cert_file": cert, "key_file": cert}
    if users:
        config["basic_auth_users"] = users
    path.write_text(json.dumps(config))


def address(exporter: Exporter) -> tuple[str, int]:
    netloc = urllib.parse.urlsplit(exporter.url).netloc
    host, _, port = netloc.rpartition(":")
    return host, int(port)


def request(exporter: Exporter, ca: trustme.CA | None, path: str,
            auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new connection: status, headers (lowercased names), body."""
    host, port = address(exporter)
    sock: socket.socket = socket.create_connection((host, port), timeout=10)
    if ca is not None:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        sock = context.wrap_socket(sock, server_hostname=host)
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        head += f"Authorization: Basic {token}\r\n"
    with sock:
        sock.sendall(head.encode() + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = header.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body


def served_certificate(exporter: Exporter) -> str:
    """The SHA-256 of the certificate a new TLS connection is served."""
    host, port = address(exporter)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_basic_auth_guards_every_path_and_401_holds_no_metrics(nats, tmp_path, ca):
    cert = issue(ca, tmp_path, "server")
    config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    write_config(config, cert.name, {"prometheus": hashed})
    with exporting(nats.monitor_url, "--web.listen-address", "127.0.0.1:0",
                   "--web.config.file", str(config)) as exporter:
        assert exporter.url.startswith("https://127.0.0.1:")
        for path in ("/metrics", "/healthz", "/", "/nowhere"):
            for auth in (None, ("prometheus", "wrong"), ("nobody", PASSWORD)):
                status, headers, body = request(exporter, ca, path, auth)
                assert status == 401, (path, auth)
                assert headers["www-authenticate"] == "Basic"
                assert b"nats_" not in body and b"fastnats" not in body and b"ok" not in body
        status, _, body = request(exporter, ca, "/metrics", ("prometheus", PASSWORD))
        assert status == 200 and b"nats_up 1" in body
        status, _, body = request(exporter, ca, "/healthz", ("prometheus", PASSWORD))
        assert (status, body) == (200, b"ok\n")
        log = "".join(exporter.log)
        assert PASSWORD not in log and hashed not in log and "wrong" not in log
        assert "TLS on" in log and "basic auth for 1 user" in log


def test_curl_scrapes_over_tls_with_basic_auth(nats, tmp_path, ca):
    curl = require_tool("curl")
    cert = issue(ca, tmp_path, "server")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = tmp_path / "web.yml"
    write_config(config, str(cert),
                 {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()})
    with exporting(nats.monitor_url, "--web.listen-address", "127.0.0.1:0",
                   "--web.config.file", str(config)) as exporter:
        base = ["--silent", "--show-error", "--cacert", str(tmp_path / "ca.pem"),
                "--compressed", "--max-time", "10"]
        ok = subprocess.run([curl, *base, "--user", f"prometheus:{PASSWORD}", exporter.url],
                            capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        assert "nats_up 1" in ok.stdout
        refused = subprocess.run([curl, *base, "--write-out", "%{http_code}", exporter.url],
                                 capture_output=True, text=True, timeout=30)
        assert refused.stdout.endswith("401") and "nats_up" not in refused.stdout
        plain = subprocess.run(
            [curl, "--silent", "--max-time", "10", exporter.url.replace("https", "http", 1)],
            capture_output=True, text=True, timeout=30)
        assert "Client sent an HTTP request to an HTTPS server" in plain.stdout
        # And the TLS port still serves.
        again = subprocess.run([curl, *base, "--user", f"prometheus:{PASSWORD}", exporter.url],
                               capture_output=True, text=True, timeout=30)
        assert "nats_up 1" in again.stdout


def test_sighup_and_a_file_change_reload_the_certificate(nats, tmp_path, ca):
    first, second, third = (issue(ca, tmp_path, name) for name in ("one", "two", "three"))
    config = tmp_path / "web.yml"
    write_config(config, first.name)
    with exporting(nats.monitor_url, "--web.listen-address", "127.0.0.1:0",
                   "--web.config.file", str(config)) as exporter:
        fingerprint = served_certificate(exporter)
        # Keep-alive connection opened before the swap; it must keep working.
        host, port = address(exporter)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        kept = context.wrap_socket(socket.create_connection((host, port), timeout=10),
                                   server_hostname=host)

        # SIGHUP: the config names another certificate.
        write_config(config, second.name)
        exporter.process.send_signal(signal.SIGHUP)
        after_hup = wait_until(lambda: (f := served_certificate(exporter)) != fingerprint and f)

        # The file rewritten in place (same config, new certificate bytes): the modification
        # time alone reloads it, as cert-manager's rotation would.
        third_bytes = third.read_bytes()
        second.write_bytes(third_bytes)
        wait_until(lambda: served_certificate(exporter) not in (fingerprint, after_hup))

        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 OK")
        kept.close()
        log = "".join(exporter.log)
        assert log.count("web config reloaded") >= 2, log


def test_a_reload_that_fails_keeps_the_last_good_config(nats, tmp_path, ca):
    cert = issue(ca, tmp_path, "server")
    config = tmp_path / "web.yml"
    write_config(config, cert.name)
    with exporting(nats.monitor_url, "--web.listen-address", "127.0.0.1:0",
                   "--web.config.file", str(config)) as exporter:
        fingerprint = served_certificate(exporter)
        config.write_text("tls_server_config:\n  cert_file: missing.pem\n  key_file: x\n")
        exporter.process.send_signal(signal.SIGHUP)
        wait_until(lambda: any("missing.pem" in line for line in exporter.log))
        assert served_certificate(exporter) == fingerprint
        status, _, body = request(exporter, ca, "/metrics")
        assert status == 200 and b"nats_up 1" in body
        assert exporter.process.poll() is None


@pytest.mark.parametrize(("text", "expected"), [
    ("tls_server_config:\n  cert_fil: x.pem\n", "web.yml:2"),
    ("basic_auth_users:\n  alice: plain-text\n", "web.yml:2"),
    ("rate_limit: [1, 2]\n", "web.yml:1"),
    ("tls_server_config: {cert_file: nope.pem, key_file: nope.pem}\n", "nope.pem"),
])
def test_a_malformed_web_config_exits_2_naming_the_place(tmp_path, text, expected):
    config = tmp_path / "web.yml"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "fastnats", "http://127.0.0.1:1", "--web.config.file", str(config)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "--web.config.file" in result.stderr
    assert "plain-text" not in result.stderr
