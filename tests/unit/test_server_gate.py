"""The HTTP server behind a gate: rate limit, authorization (quick and slow), extra headers.

A fake gate makes every decision the test asks for; its slow check waits until the test
releases it, so the order of events is the test's, not the clock's. Servers run on their own
loop thread (uvloop and the stdlib loop) and are spoken to over raw sockets, as in
test_server.py; the gate, the server and the client are in tests.support.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastnats.server import REFUSAL_REASONS
from tests.support.httpclient import Client, Connect, opened_clients
from tests.support.liveserver import (
    BAD,
    EVENT_LOOPS,
    GOOD,
    HEALTHZ,
    METRICS,
    METRICS_TEXT,
    SLOW,
    SLOW_TOO,
    FakeGate,
    GatedServer,
    LiveServer,
    NewLoop,
    Servers,
    loop_errors,
)
from tests.support.process import wait_until

UNAUTHORIZED_BODY = b"401 Unauthorized\n"
Serve = Callable[..., GatedServer]


@pytest.fixture(params=list(EVENT_LOOPS))
def new_loop(request: pytest.FixtureRequest) -> NewLoop:
    return EVENT_LOOPS[request.param]


@pytest.fixture
def serve(new_loop: NewLoop) -> Iterator[Serve]:
    servers = Servers(new_loop, {"/metrics": lambda: METRICS, "/healthz": lambda: HEALTHZ,
                                 "/later": lambda: None})

    def start(gate: FakeGate | None = None, routes: Any = None, **options: Any) -> GatedServer:
        return servers.start_gated(FakeGate() if gate is None else gate, routes, **options)

    yield start
    servers.stop_all()


@pytest.fixture
def gated(serve: Serve) -> GatedServer:
    return serve()


@pytest.fixture
def connect() -> Iterator[Connect]:
    with opened_clients() as open_client:
        yield open_client


@pytest.fixture(autouse=True)
def no_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing escapes to the loop's exception handler, and no task is left pending."""
    yield
    assert not loop_errors(caplog.records)


def auth(header: bytes | None) -> bytes:
    return b"" if header is None else b"Authorization: %s\r\n" % header


def get(path: bytes = b"/metrics", header: bytes | None = GOOD, method: bytes = b"GET",
        more: bytes = b"") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: t\r\n%s%s\r\n" % (method, path, auth(header), more)


def nothing_to_read(c: Client) -> bool:
    """No byte arrives within a short guard interval (the server is waiting on a check)."""
    return not c.buf and not select.select([c.sock], [], [], 0.2)[0]


def security_headers(response: Any) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in response.headers
            if n in (b"X-Content-Type-Options", b"X-Frame-Options")]


EXPECTED_SECURITY_HEADERS = [(b"X-Content-Type-Options", b"nosniff"),
                             (b"X-Frame-Options", b"deny")]


# --- admitted requests ---

def test_admitted_request_is_served_with_the_gate_headers(gated: GatedServer,
                                                          connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(more=b"Accept-Encoding: gzip\r\n"))
    response = c.read_response()
    assert response.status == 200
    assert response.body == METRICS.gzip_body
    assert response.header_names() == [
        b"Date", b"Content-Type", b"Content-Length", b"Content-Encoding", b"Vary",
        b"X-Content-Type-Options", b"X-Frame-Options"]
    assert gated.asked("authorize") == [GOOD]
    assert gated.refused() == dict.fromkeys(REFUSAL_REASONS, 0)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (get(b"/nope"), 404),
    (get(b"/later"), 503),
    (get(method=b"POST", more=b"Content-Length: 0\r\n"), 405),
    (get(b"/healthz", method=b"HEAD"), 200),
])
def test_every_answer_to_a_request_carries_the_gate_headers(
        gated: GatedServer, connect: Connect, request_bytes: bytes,
        status: int) -> None:
    c = connect(gated.port)
    c.send(request_bytes)
    response = c.read_response(head_only=request_bytes.startswith(b"HEAD"))
    assert response.status == status
    assert security_headers(response) == EXPECTED_SECURITY_HEADERS
    if status == 405:
        assert response.header(b"Allow") == b"GET, HEAD"


def test_the_header_is_handed_to_the_gate_as_sent(gated: GatedServer,
                                                 connect: Connect) -> None:
    c = connect(gated.port)
    for header in (b"Basic dXNlcjpwYXNz", b"bearer x y", b""):
        c.send(get(header=header))
        assert c.read_response().status == 401
    c.send(b"GET /metrics HTTP/1.1\r\nAUTHORIZATION: %s\r\n\r\n" % GOOD)
    assert c.read_response().status == 200
    assert gated.asked("authorize") == [b"Basic dXNlcjpwYXNz", b"bearer x y", b"", GOOD]


# --- refused requests ---

@pytest.mark.parametrize("header", [None, BAD])
@pytest.mark.parametrize(("request_line", "head_only"), [
    (b"GET /metrics", False), (b"HEAD /metrics", True), (b"GET /nope", False),
    (b"POST /metrics", False)])
def test_refused_request_gets_401_and_no_payload(
        gated: GatedServer, connect: Connect, header: bytes | None,
        request_line: bytes, head_only: bool) -> None:
    c = connect(gated.port)
    c.send(b"%s HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n%s\r\n"
           % (request_line, auth(header)))
    response = c.read_response(head_only=head_only)
    assert response.status_line == b"HTTP/1.1 401 Unauthorized"
    assert response.without_date() == [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(UNAUTHORIZED_BODY)),
        (b"WWW-Authenticate", b"Basic"),
        *EXPECTED_SECURITY_HEADERS,
    ]
    assert response.body == (b"" if head_only else UNAUTHORIZED_BODY)
    # The connection stays usable, and the next request is judged on its own header.
    c.send(get(b"/healthz"))
    assert c.read_response().body == b"ok\n"
    assert gated.refused()["unauthorized"] == 1


def test_authorization_does_not_carry_over_to_the_next_request(
        gated: GatedServer, connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get() + get(header=None))
    assert c.read_response().status == 200
    assert c.read_response().status == 401
    assert gated.asked("authorize") == [GOOD, None]


@pytest.mark.parametrize("second", [GOOD, BAD])
def test_repeated_authorization_is_refused_without_asking_the_gate(
        gated: GatedServer, connect: Connect, second: bytes) -> None:
    c = connect(gated.port)
    c.send(get(more=b"Authorization: %s\r\n" % second))
    response = c.read_response()
    assert response.status == 401 and response.body == UNAUTHORIZED_BODY
    assert gated.asked("authorize") == []


def test_rate_limited_request_gets_429_without_the_gate_headers(
        gated: GatedServer, connect: Connect) -> None:
    gated.gate.allow = False
    c = connect(gated.port)
    for request_bytes in (get(), get(header=BAD), get(b"/healthz", method=b"HEAD")):
        c.send(request_bytes)
        response = c.read_response(head_only=request_bytes.startswith(b"HEAD"))
        assert response.status_line == b"HTTP/1.1 429 Too Many Requests"
        assert response.header_names() == [b"Date", b"Content-Type", b"Content-Length"]
        assert response.body == (b"" if request_bytes.startswith(b"HEAD")
                                 else b"429 too many requests\n")
    # The limit comes first: the gate was not asked about the credentials.
    assert gated.asked("authorize") == []
    gated.gate.allow = True
    c.send(get())
    assert c.read_response().body == METRICS_TEXT
    assert gated.refused() == {**dict.fromkeys(REFUSAL_REASONS, 0), "rate_limited": 3}


@pytest.mark.parametrize("garbage", [b"GARBAGE\r\n\r\n",
                                     b"GET /metrics?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"])
def test_parser_rejections_carry_no_gate_headers(gated: GatedServer,
                                                 connect: Connect,
                                                 garbage: bytes) -> None:
    c = connect(gated.port)
    c.send(garbage)
    response = c.read_response()
    assert response.status in (400, 414)
    assert security_headers(response) == []
    c.assert_closed()


# --- the slow check ---

def test_slow_checks_keep_pipelined_answers_in_order(gated: GatedServer,
                                                    connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW, more=b"Accept-Encoding: gzip\r\n")
           + get(b"/healthz", header=GOOD)
           + get(header=SLOW_TOO, method=b"HEAD"))
    wait_until(lambda: gated.asked("verify") == [SLOW, SLOW_TOO])
    assert nothing_to_read(c)
    gated.release(SLOW_TOO, False)  # the last one decided first: still nothing may be sent
    assert nothing_to_read(c)
    gated.release(SLOW, True)
    first = c.read_response()
    assert first.status == 200 and first.body == METRICS.gzip_body
    assert security_headers(first) == EXPECTED_SECURITY_HEADERS
    assert c.read_response().body == b"ok\n"
    third = c.read_response(head_only=True)
    assert third.status == 401 and third.header(b"Content-Encoding") is None
    assert third.header(b"Content-Length") == b"%d" % len(UNAUTHORIZED_BODY)
    # Reading resumed once nothing was left to decide.
    c.send(get(b"/healthz"))
    assert c.read_response().body == b"ok\n"
    assert gated.refused()["unauthorized"] == 1


def test_pipelined_requests_with_the_same_credentials_are_verified_once(
        gated: GatedServer, connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW) * 3)
    wait_until(lambda: len(gated.asked("authorize")) == 3)
    gated.release(SLOW, True)
    assert [c.read_response().body for _ in range(3)] == [METRICS_TEXT] * 3
    assert gated.asked("verify") == [SLOW]


def test_nothing_is_read_while_a_check_is_in_flight(gated: GatedServer,
                                                   connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW))
    wait_until(lambda: gated.asked("verify") == [SLOW])

    def reading() -> list[bool]:
        return [conn._transport.is_reading()  # type: ignore[union-attr]
                for conn in gated.server._connections]

    assert gated.call(reading) == [False]
    c.send(get(b"/healthz", header=GOOD))
    gated.release(SLOW, True)
    assert c.read_response().body == METRICS_TEXT
    assert c.read_response().body == b"ok\n"
    assert gated.call(reading) == [True]
    # The second request was parsed only once the first was decided.
    events = gated.call(lambda: list(gated.gate.events))
    assert events.index(("authorize", GOOD)) > events.index(("release", SLOW))


def test_a_closing_request_waits_for_its_check_then_closes(
        gated: GatedServer, connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW, more=b"Connection: close\r\n") + get(b"/healthz"))
    wait_until(lambda: gated.asked("verify") == [SLOW])
    gated.release(SLOW, False)
    response = c.read_response()
    assert response.status == 401 and response.header(b"Connection") == b"close"
    c.assert_closed()


def test_expect_100_continue_with_a_slow_check(gated: GatedServer,
                                               connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW, more=b"Expect: 100-continue\r\nContent-Length: 5\r\n"))
    wait_until(lambda: gated.asked("verify") == [SLOW])
    gated.release(SLOW, True)
    response = c.read_response()
    assert response.body == METRICS_TEXT and response.header(b"Connection") == b"close"
    c.send(b"hello")
    c.assert_closed()


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_gone_while_its_check_is_in_flight(gated: GatedServer,
                                                  connect: Connect,
                                                  how: str) -> None:
    # The connection is not read while the check runs, so the hang-up is noticed when the
    # answer is written; that write must be harmless.
    c = connect(gated.port)
    c.send(get(header=SLOW) + get(b"/healthz"))
    wait_until(lambda: gated.asked("verify") == [SLOW])
    if how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    gated.release(SLOW, True)
    wait_until(lambda: gated.live.open_connections() == 0)
    assert gated.call(lambda: len(gated.server._tasks)) == 0
    other = connect(gated.port)
    other.send(get(b"/healthz"))
    assert other.read_response().body == b"ok\n"


@pytest.mark.parametrize("closed_by", ["eviction", "idle timeout"])
def test_check_is_abandoned_when_the_server_closes_the_connection(
        serve: Serve, connect: Connect,
        closed_by: str) -> None:
    if closed_by == "eviction":
        gated = serve(max_connections=1)
    else:
        gated = serve(keepalive_timeout=0.3)
    c = connect(gated.port)
    c.send(get(header=SLOW) + get(b"/healthz"))
    wait_until(lambda: gated.asked("verify") == [SLOW])
    if closed_by == "eviction":
        newcomer = connect(gated.port)
        newcomer.send(get(b"/healthz"))
        assert newcomer.read_response().body == b"ok\n"
    # Closed without an answer, and the check was cancelled rather than left running.
    with pytest.raises((EOFError, ConnectionResetError)):
        c.read_response()
    wait_until(lambda: gated.asked("cancelled") == [SLOW])
    assert gated.call(lambda: len(gated.server._tasks)) == 0
    gated.release(SLOW, True)  # too late: must not write anywhere
    assert gated.live.open_connections() == (1 if closed_by == "eviction" else 0)


def test_shutdown_with_a_check_in_flight(gated: GatedServer,
                                         connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW))
    wait_until(lambda: gated.asked("verify") == [SLOW])
    gated.live.shut_down()
    c.assert_closed()
    assert gated.gate.asked("cancelled") == [SLOW]
    assert not gated.server._tasks


def test_failing_check_refuses_and_is_logged_once(gated: GatedServer,
                                                  connect: Connect,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    gated.gate.verify_error = RuntimeError("bcrypt is broken")
    c = connect(gated.port)
    for header in (SLOW, SLOW_TOO):
        c.send(get(header=header))
        assert c.read_response().status == 401
    logged = [r for r in caplog.records if r.name == "fastnats.http"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert gated.refused()["unauthorized"] == 2


def test_a_check_refused_busy_is_counted_apart_from_a_wrong_password(
        gated: GatedServer, connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=SLOW) + get(header=SLOW_TOO))
    wait_until(lambda: gated.asked("verify") == [SLOW, SLOW_TOO])
    gated.release(SLOW, None)  # the gate had too many checks waiting
    gated.release(SLOW_TOO, False)
    for _ in range(2):
        response = c.read_response()
        assert response.status == 401 and response.body == UNAUTHORIZED_BODY
    assert gated.refused() == {**dict.fromkeys(REFUSAL_REASONS, 0), "busy": 1,
                               "unauthorized": 1}


# --- swapping gates ---

def test_a_new_gate_applies_from_the_next_request(gated: GatedServer,
                                                  connect: Connect) -> None:
    c = connect(gated.port)
    c.send(get(header=None))
    assert c.read_response().status == 401
    gated.set_gate(None)
    c.send(get(header=None))
    plain = c.read_response()
    assert plain.status == 200 and security_headers(plain) == []
    stricter = FakeGate(headers=b"X-Frame-Options: sameorigin\r\n")
    stricter.verdicts[GOOD] = False
    gated.set_gate(stricter)
    c.send(get())
    response = c.read_response()
    assert response.status == 401
    assert response.header(b"X-Frame-Options") == b"sameorigin"


def test_without_a_gate_nothing_is_checked_or_counted(
        new_loop: NewLoop, connect: Connect) -> None:
    live = LiveServer(new_loop, {"/metrics": lambda: METRICS})
    try:
        assert live.server.gate is None
        c = connect(live.port)
        c.send(get(header=BAD) + get(header=BAD, method=b"HEAD"))
        response = c.read_response()
        assert response.status == 200 and response.header(b"WWW-Authenticate") is None
        assert c.read_response(head_only=True).status == 200
        assert live.server.refused == dict.fromkeys(REFUSAL_REASONS, 0)
        assert not live.server.tls
    finally:
        live.stop()


def test_refusal_reasons_are_stable() -> None:
    # A metric's label values: renaming one breaks dashboards.
    assert REFUSAL_REASONS == ("unauthorized", "rate_limited", "tls_handshake", "plain_http",
                               "client_certificate", "busy")
