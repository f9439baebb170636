"""The HTTP server's TLS listener, with trustme certificates and real TLS clients.

Python's ssl and curl speak to a server on its own loop thread (uvloop, and the stdlib loop as
well); a fake gate supplies the context and the decisions, so these tests need no web config.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from fastnats import server as server_module
from fastnats.server import REFUSAL_REASONS, start_server
from tests.support import certs
from tests.support.httpclient import Client
from tests.support.liveserver import (
    BAD,
    BIG,
    EVENT_LOOPS,
    GOOD,
    HEALTHZ,
    METRICS,
    METRICS_TEXT,
    FakeGate,
    GatedServer,
    LiveServer,
    NewLoop,
    Servers,
)
from tests.support.process import require_tool, wait_until

PLAIN_HTTP_ANSWER = b"Client sent an HTTP request to an HTTPS server.\n"
# What a TLS client sees when the server refuses it during or right after the handshake: with
# TLS 1.3 the client's side of the handshake ends before the server has judged its certificate.
REFUSED = (ssl.SSLError, EOFError, ConnectionResetError, BrokenPipeError)


class Pki:
    """A CA with a server certificate for 127.0.0.1, and client certificates on demand."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost")

    def server_context(self, cert: trustme.LeafCert | None = None,
                       client_ca: trustme.CA | None = None) -> ssl.SSLContext:
        return certs.server_context(cert or self.server_cert, client_ca)

    def client_context(self, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client_cert is not None:
            client_cert.configure_cert(context)
        return context


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def served_certificate(c: Client) -> bytes | None:
    assert isinstance(c.sock, ssl.SSLSocket)
    return c.sock.getpeercert(binary_form=True)


def tls_client(port: int, context: ssl.SSLContext) -> Client:
    """A Client whose socket speaks TLS (the handshake is done on return)."""
    c = Client(port)
    try:
        c.sock = context.wrap_socket(c.sock, server_hostname="127.0.0.1")
    except BaseException:
        c.close()
        raise
    return c


@pytest.fixture(params=list(EVENT_LOOPS))
def new_loop(request: pytest.FixtureRequest) -> NewLoop:
    return EVENT_LOOPS[request.param]


@pytest.fixture
def pki() -> Pki:
    return Pki()


def open_gate(context: ssl.SSLContext, headers: bytes = b"") -> FakeGate:
    """A gate that serves ``context`` and admits every request, as without users."""
    gate = FakeGate(headers=headers, ssl_context=context)
    gate.verdicts[None] = True
    return gate


@pytest.fixture
def serve(new_loop: NewLoop, pki: Pki) -> Iterator[Callable[..., GatedServer]]:
    servers = Servers(new_loop, {"/metrics": lambda: METRICS, "/healthz": lambda: HEALTHZ,
                                 "/big": lambda: BIG})

    def start(gate: FakeGate | None = None, **options: Any) -> GatedServer:
        return servers.start_gated(open_gate(pki.server_context()) if gate is None else gate,
                                   **options)

    yield start
    servers.stop_all()


@pytest.fixture
def tls(serve: Callable[..., GatedServer]) -> GatedServer:
    return serve()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    """Sockets and clients closed at teardown, whatever the test's outcome."""
    opened: list[Any] = []
    yield opened
    for c in opened:
        c.close()


@pytest.fixture(autouse=True)
def quiet_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Refused clients are routine: nothing above debug, no traceback, from any logger."""
    caplog.set_level(logging.DEBUG)
    yield
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG or r.exc_info]
    assert not loud, [(r.name, r.getMessage()) for r in loud]


def assert_served(tls: GatedServer, context: ssl.SSLContext, clients: list[Any]) -> None:
    c = tls_client(tls.port, context)
    clients.append(c)
    assert c.request().body == METRICS_TEXT


# --- serving over TLS ---

def test_metrics_over_tls(tls: GatedServer, pki: Pki, clients: list[Any]) -> None:
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    assert tls.server.tls
    assert served_certificate(c) == der(pki.server_cert)
    for _ in range(3):  # keep-alive
        response = c.request(headers=b"Accept-Encoding: gzip\r\n")
        assert response.status == 200 and response.body == METRICS.gzip_body
    assert c.request(b"/healthz", headers=b"Connection: close\r\n").body == b"ok\n"
    c.assert_closed()
    assert tls.refused() == dict.fromkeys(REFUSAL_REASONS, 0)
    # Without a client certificate asked for, the gate sees none.
    assert tls.call(lambda: tls.gate.peers) == [None]


def test_pipelined_large_answers_over_tls(tls: GatedServer, pki: Pki,
                                         clients: list[Any]) -> None:
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 40)  # well past the write high-water mark
    for _ in range(40):
        assert c.read_response().body == BIG.body


def test_idle_tls_connection_is_closed(serve: Callable[..., GatedServer], pki: Pki,
                                       clients: list[Any]) -> None:
    tls = serve(keepalive_timeout=1.0)
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    assert c.request().status == 200
    c.assert_closed()
    wait_until(lambda: tls.live.open_connections() == 0)


def test_client_that_keeps_its_socket_after_the_last_answer_is_let_go(
        serve: Callable[..., GatedServer], pki: Pki, clients: list[Any]) -> None:
    tls = serve(keepalive_timeout=1.0)
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    assert c.request(headers=b"Connection: close\r\n").body == METRICS_TEXT
    c.assert_closed()  # close_notify arrived; this client never answers it nor closes
    wait_until(lambda: tls.live.open_connections() == 0)


def test_gate_decisions_apply_over_tls(tls: GatedServer, pki: Pki, clients: list[Any]) -> None:
    tls.gate.headers = b"Strict-Transport-Security: max-age=31536000\r\n"
    tls.gate.verdicts[None] = False
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    refused = c.request(headers=b"Authorization: %s\r\n" % BAD)
    assert refused.status == 401 and refused.header(b"WWW-Authenticate") == b"Basic"
    served = c.request(headers=b"Authorization: %s\r\n" % GOOD)
    assert served.body == METRICS_TEXT
    assert served.header(b"Strict-Transport-Security") == b"max-age=31536000"


def test_curl_over_tls(tls: GatedServer, pki: Pki, tmp_path: Path) -> None:
    curl = require_tool("curl")
    ca_file = tmp_path / "ca.pem"
    pki.ca.cert_pem.write_to_path(str(ca_file))
    base = f"://127.0.0.1:{tls.port}/metrics"
    served = subprocess.run([curl, "-sS", "--fail", "--max-time", "20", "--cacert",
                             str(ca_file), "https" + base, "https" + base],
                            capture_output=True, timeout=30)
    assert served.returncode == 0, served.stderr
    assert served.stdout == METRICS_TEXT * 2
    plain = subprocess.run([curl, "-sS", "--max-time", "20", "http" + base],
                           capture_output=True, timeout=30)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == PLAIN_HTTP_ANSWER
    unknown_ca = subprocess.run([curl, "-sS", "--max-time", "20", "https" + base],
                                capture_output=True, timeout=30)
    assert unknown_ca.returncode != 0 and unknown_ca.stdout == b""


# --- client certificates ---

@pytest.fixture
def mutual(serve: Callable[..., GatedServer], pki: Pki) -> GatedServer:
    return serve(open_gate(pki.server_context(client_ca=pki.ca)))


def test_mutual_tls_with_a_good_client_certificate(mutual: GatedServer, pki: Pki,
                                                   clients: list[Any]) -> None:
    client_cert = pki.ca.issue_cert("scraper.example")
    assert_served(mutual, pki.client_context(client_cert), clients)
    peers = mutual.call(lambda: mutual.gate.peers)
    assert len(peers) == 1 and ("DNS", "scraper.example") in peers[0]["subjectAltName"]


@pytest.mark.parametrize("client", ["no certificate", "another CA"])
def test_mutual_tls_refuses_cleanly_and_keeps_serving(mutual: GatedServer, pki: Pki,
                                                      clients: list[Any], client: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    good = pki.client_context(pki.ca.issue_cert("scraper.example"))
    context = pki.client_context(
        None if client == "no certificate" else trustme.CA().issue_cert("scraper.example"))
    for attempt in range(1, 4):
        with pytest.raises(REFUSED):
            c = tls_client(mutual.port, context)
            clients.append(c)
            c.request()
        wait_until(lambda attempt=attempt: mutual.refused()["tls_handshake"] == attempt)
        assert_served(mutual, good, clients)
    assert mutual.refused() == {**dict.fromkeys(REFUSAL_REASONS, 0), "tls_handshake": 3}
    said = [r.getMessage() for r in caplog.records if r.name == "fastnats.http"]
    assert len(said) == 3 and all(m.startswith("TLS handshake with ") for m in said), said
    assert mutual.call(lambda: len(mutual.gate.peers)) == 3  # only the good ones got that far


def test_certificate_refused_by_the_gate_is_closed_at_once(mutual: GatedServer, pki: Pki,
                                                           clients: list[Any]) -> None:
    context = pki.client_context(pki.ca.issue_cert("intruder.example"))
    mutual.gate.peer_ok = False
    with pytest.raises(REFUSED):
        c = tls_client(mutual.port, context)
        clients.append(c)
        c.request()
    wait_until(lambda: mutual.refused()["client_certificate"] == 1)
    assert mutual.refused()["tls_handshake"] == 0
    assert mutual.live.open_connections() == 0
    assert mutual.call(lambda: mutual.gate.asked("authorize")) == []
    mutual.gate.peer_ok = True
    assert_served(mutual, context, clients)


# --- what is not TLS ---

@pytest.mark.parametrize("request_bytes", [
    b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 50,  # more than is read before answering
    b"G",
])
def test_plain_http_to_the_tls_port_gets_a_400(tls: GatedServer, pki: Pki, clients: list[Any],
                                                request_bytes: bytes) -> None:
    for round_ in range(1, 3):
        c = Client(tls.port)
        clients.append(c)
        c.send(request_bytes)
        response = c.read_response()
        assert response.status_line == b"HTTP/1.1 400 Bad Request"
        assert response.header(b"Connection") == b"close"
        assert response.body == PLAIN_HTTP_ANSWER
        c.send(b"more bytes after the answer\r\n")
        c.assert_closed()  # EOF, not a reset that would have destroyed the answer
        assert tls.refused()["plain_http"] == round_
        assert_served(tls, pki.client_context(), clients)


def test_plain_http_answer_survives_bytes_sent_after_it(serve: Callable[..., GatedServer],
                                                      clients: list[Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Lingering for an hour, not 2 s: only the client's close ends the connection, so a
    # stalled machine cannot let the timer decide what is checked below.
    monkeypatch.setattr(server_module, "LINGER_SECONDS", 3600.0)
    tls = serve(keepalive_timeout=3600.0)
    assert tls.server.linger == 3600.0
    c = Client(tls.port)
    clients.append(c)
    c.send(b"GET /metrics HTTP/1.1\r\n")
    assert select.select([c.sock], [], [], 10)[0]  # the answer is here, unread
    # The rest of the request reaches the server after it answered: closing at once would
    # turn these unread bytes into a reset that destroys the answer.
    c.send(b"Host: t\r\nX-Pad: " + b"p" * 60_000 + b"\r\n\r\n")
    assert c.read_response().body == PLAIN_HTTP_ANSWER
    assert tls.call(lambda: len(tls.server._admitting)) == 1  # still reading, until we close
    c.close()
    wait_until(lambda: tls.call(lambda: len(tls.server._admitting)) == 0)


def test_silent_and_stalled_connections_time_out(serve: Callable[..., GatedServer], pki: Pki,
                                                 clients: list[Any]) -> None:
    tls = serve(keepalive_timeout=0.3)
    silent = Client(tls.port)
    stalled = Client(tls.port)
    clients.extend((silent, stalled))
    stalled.send(b"\x16\x03\x01")  # the start of a ClientHello, and nothing more
    silent.assert_closed()
    with pytest.raises((EOFError, ConnectionResetError)):
        stalled.read_response()
    wait_until(lambda: tls.refused()["tls_handshake"] == 2)
    assert_served(tls, pki.client_context(), clients)


def test_connect_and_close_is_a_probe_not_a_refusal(tls: GatedServer) -> None:
    # A TCP probe (Kubernetes tcpSocket, a load balancer) asks for nothing: nothing is refused.
    probe = Client(tls.port)
    wait_until(lambda: tls.call(lambda: len(tls.server._admitting)) == 1)  # accepted, waiting
    probe.close()
    wait_until(lambda: tls.call(lambda: len(tls.server._admitting)) == 0)
    assert tls.refused()["tls_handshake"] == 0
    # One that sent a byte of a handshake and left did ask.
    half = Client(tls.port)
    half.send(b"\x16")
    half.close()
    wait_until(lambda: tls.refused()["tls_handshake"] == 1)


# --- reloads ---

def test_a_new_certificate_serves_the_next_connection(tls: GatedServer, pki: Pki,
                                                      clients: list[Any]) -> None:
    old = tls_client(tls.port, pki.client_context())
    clients.append(old)
    assert old.request().status == 200
    renewed = pki.ca.issue_cert("127.0.0.1", common_name="renewed")
    tls.set_gate(open_gate(pki.server_context(renewed), headers=b"X-Reloaded: yes\r\n"))
    new = tls_client(tls.port, pki.client_context())
    clients.append(new)
    assert served_certificate(new) == der(renewed)
    assert new.request().header(b"X-Reloaded") == b"yes"
    # The established connection keeps its session and follows the new gate's rules.
    assert served_certificate(old) == der(pki.server_cert)
    assert old.request().header(b"X-Reloaded") == b"yes"


def test_a_gate_without_a_context_keeps_the_listener_on_tls(tls: GatedServer, pki: Pki,
                                                            clients: list[Any]) -> None:
    tls.set_gate(None)
    c = tls_client(tls.port, pki.client_context())
    clients.append(c)
    assert served_certificate(c) == der(pki.server_cert)
    assert c.request().body == METRICS_TEXT


# --- floods, the connection cap and shutdown ---

@pytest.mark.parametrize("max_connections", [None, 16])
def test_silent_flood_does_not_keep_a_client_out(serve: Callable[..., GatedServer], pki: Pki,
                                                 clients: list[Any],
                                                 max_connections: int | None) -> None:
    tls = serve(**({} if max_connections is None else {"max_connections": max_connections}))
    keeper = tls_client(tls.port, pki.client_context())  # established before the flood
    clients.append(keeper)
    assert keeper.request().status == 200
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", tls.port))
        clients.append(sock)
    for _ in range(3):
        assert_served(tls, pki.client_context(), clients)
    # Accepted in order, the flood was all taken in before the last client was served.
    waiting = tls.call(lambda: len(tls.server._admitting))
    if max_connections is not None:
        assert waiting + tls.live.open_connections() <= max_connections
        assert tls.refused()["tls_handshake"] >= 200 - max_connections
    # The flood went first; the established connection is still there.
    assert keeper.request().status == 200


def test_shutdown_closes_waiting_sockets_and_stops_listening(tls: GatedServer, pki: Pki,
                                                             clients: list[Any]) -> None:
    served = tls_client(tls.port, pki.client_context())
    clients.append(served)
    assert served.request().status == 200
    silent = Client(tls.port)
    stalled = Client(tls.port)
    clients.extend((silent, stalled))
    stalled.send(b"\x16\x03\x01")
    wait_until(lambda: tls.call(lambda: len(tls.server._admitting)) == 2)
    tls.live.shut_down()
    silent.assert_closed()
    with pytest.raises((EOFError, ConnectionResetError)):
        stalled.read_response()
    served.assert_closed()
    with pytest.raises(ConnectionRefusedError):
        Client(tls.port)
    assert tls.server.refused["tls_handshake"] == 0  # a shutdown refuses nobody


# --- binding ---

def test_every_interface_as_the_plain_listener_binds_it(
        serve: Callable[..., GatedServer], new_loop: NewLoop, pki: Pki,
        clients: list[Any]) -> None:
    tls = serve(host="")
    plain = LiveServer(new_loop, {"/metrics": lambda: METRICS}, host="")
    try:
        plain_hosts = sorted(host for host, _ in plain.server.addresses)
    finally:
        plain.stop()
    assert sorted(host for host, _ in tls.server.addresses) == plain_hosts
    assert "0.0.0.0" in plain_hosts
    port = next(port for host, port in tls.server.addresses if host == "0.0.0.0")
    c = tls_client(port, pki.client_context())
    clients.append(c)
    assert c.request().body == METRICS_TEXT


def test_an_address_in_use_is_an_oserror(pki: Pki) -> None:
    gate = FakeGate(ssl_context=pki.server_context())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError) as excinfo:
            asyncio.run(start_server({"/metrics": lambda: METRICS}, "127.0.0.1",
                                     taken.getsockname()[1], gate=gate))
    assert excinfo.value.errno == errno.EADDRINUSE


def test_ipv6_loopback(serve: Callable[..., GatedServer], pki: Pki, clients: list[Any]) -> None:
    tls = serve(host="::1")
    c = Client(tls.port, host="::1", family=socket.AF_INET6)
    clients.append(c)
    context = pki.client_context()
    context.check_hostname = False  # the certificate names 127.0.0.1, not ::1
    c.sock = context.wrap_socket(c.sock)
    assert c.request().body == METRICS_TEXT
