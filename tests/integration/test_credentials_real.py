"""Credentials toward NATS and the exporter's own defaults, with real processes.

A monitoring port behind an authenticating proxy (a small one here, in front of a real
nats-server) is read with the credentials of its URL, and the password shows nowhere: not in the
exporter's log, nor in /metrics. ``--demo`` listens on loopback only.
"""

from __future__ import annotations

import base64
import errno
import http.server
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.monitor import serving
from tests.support.process import exporting, require_tool, running_nats, start_exporter, wait_until

pytestmark = pytest.mark.integration

USER, PASSWORD, WRONG = "u", "secret", "wrongpass"


@contextmanager
def authenticating_proxy(upstream: str) -> Iterator[int]:
    """An HTTP proxy on a free loopback port that answers 401 without ``USER:PASSWORD`` in
    Basic authentication, and forwards every other GET to ``upstream``."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401, "Unauthorized")
                self.send_header("WWW-Authenticate", 'Basic realm="nats"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            try:
                with urllib.request.urlopen(upstream + self.path, timeout=10) as resp:
                    status, body = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as port:
        yield port


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for metric in text_string_to_metric_families(text)
            for sample in metric.samples if sample.name == family}


ARGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2s", "--timeout", "2s")


def test_url_credentials_are_sent_and_shown_nowhere(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    with running_nats() as nats, authenticating_proxy(nats.monitor_url) as port:
        good = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"
        from_file = f"http://{USER}@127.0.0.1:{port}"
        wrong = f"http://{USER}:{WRONG}@127.0.0.1:{port}"
        for argv in ([good], [from_file, "--monitor.password-file", str(password_file)]):
            with exporting(*argv, *ARGS) as exporter:
                text = wait_until(lambda: (t := exporter.scrape()) and
                                  samples(t, "nats_up").get(()) == 1 and t)
                assert "nats_server_version{" in text
                log = "".join(exporter.log)
                assert f"http://{USER}:***@127.0.0.1:{port}" in log
                assert PASSWORD not in log and PASSWORD not in text

        with exporting(wrong, *ARGS) as exporter:
            refused = (("endpoint", "varz"), ("reason", "http_status"))
            text = wait_until(lambda: (t := exporter.scrape()) and
                              samples(t, "fastnats_refresh_errors_total").get(refused, 0) > 0
                              and t)
            assert samples(text, "nats_up")[()] == 0
            wait_until(lambda: any("is down" in line for line in exporter.log))
            log = "".join(exporter.log)
            assert "HTTP 401" in log and f"http://{USER}:***@127.0.0.1:{port}" in log
            for secret in (PASSWORD, WRONG):
                assert secret not in log and secret not in text


def _outward_address() -> str | None:
    """An address of this host that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))     # TEST-NET-1: no packet is sent
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _listening_addresses(pid: int, port: int) -> set[str]:
    """Local IPv4 addresses ``pid``'s namespace listens on at ``port`` (from /proc)."""
    found = set()
    with open(f"/proc/{pid}/net/tcp") as table:
        next(table)
        for row in table:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_demo_listens_on_loopback_only():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", 7777))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                pytest.skip("port 7777, --demo's default, is taken on this host")
            raise
    require_tool("nats-server")
    exporter = start_exporter("--demo", "--demo.clients", "0")
    try:
        assert exporter.url == "http://127.0.0.1:7777/metrics"
        assert "Metrics: http://127.0.0.1:7777/metrics" in "".join(
            wait_until(lambda: any("Metrics:" in line for line in exporter.log)
                       and exporter.log))
        assert _listening_addresses(exporter.process.pid, 7777) == {"127.0.0.1"}
        assert "nats_up" in exporter.scrape()
        outward = _outward_address()
        if outward is not None:
            with pytest.raises(ConnectionRefusedError), \
                    socket.create_connection((outward, 7777), timeout=5):
                pass
    finally:
        exporter.stop()
