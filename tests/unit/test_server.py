"""The HTTP server, spoken to over raw sockets so every byte it sends is checked.

Each server runs on its own event loop thread (uvloop, and the stdlib loop as well) on an
ephemeral port; the test thread is the client (tests.support.liveserver, tests.support.httpclient).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import re
import resource
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastnats.server import (
    FEED_BYTES,
    MAX_PENDING_ANSWERS,
    Payload,
    Routes,
    accepts_gzip,
    default_max_connections,
    parse_listen_address,
    start_server,
)
from tests.support.httpclient import RECV_TIMEOUT, Client, Connect, Response, opened_clients
from tests.support.liveserver import (
    BIG,
    EVENT_LOOPS,
    HEALTHZ,
    METRICS,
    METRICS_TEXT,
    METRICS_TYPE,
    LiveServer,
    NewLoop,
    Servers,
    loop_errors,
)
from tests.support.process import wait_until

DATE = re.compile(rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                  rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT")


class Slot:
    """Holds the current payload the way the cache does: swapped by one assignment."""

    def __init__(self, payload: Payload | None) -> None:
        self.payload = payload

    def __call__(self) -> Payload | None:
        return self.payload


Serve = Callable[..., LiveServer]


def fetch(port: int, path: bytes = b"/metrics", **options: Any) -> Response:
    """One request on a fresh connection."""
    with Client(port) as c:
        return c.request(path, **options)


@pytest.fixture(params=list(EVENT_LOOPS))
def new_loop(request: pytest.FixtureRequest) -> NewLoop:
    return EVENT_LOOPS[request.param]


@pytest.fixture
def serve(new_loop: NewLoop) -> Iterator[Serve]:
    servers = Servers(new_loop, {"/metrics": lambda: METRICS, "/healthz": lambda: HEALTHZ})
    yield servers.start
    servers.stop_all()


@pytest.fixture
def live(serve: Serve) -> LiveServer:
    return serve()


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Opens clients that are closed at teardown, whatever the test's outcome."""
    with opened_clients() as open_client:
        yield open_client


@pytest.fixture
def client(live: LiveServer, connect: Connect) -> Client:
    return connect(live.port)


@pytest.fixture(autouse=True)
def no_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """An exception escaping a protocol callback is reported by the loop; none may happen."""
    yield
    assert not loop_errors(caplog.records)


# --- the 200 response ---

def test_get_sends_exact_headers_and_body(client: Client) -> None:
    response = client.request()
    assert response.status_line == b"HTTP/1.1 200 OK"
    assert response.header_names() == [b"Date", b"Content-Type", b"Content-Length", b"Vary"]
    assert DATE.fullmatch(response.header(b"Date") or b"")
    assert response.without_date() == [
        (b"Content-Type", METRICS_TYPE),
        (b"Content-Length", str(len(METRICS_TEXT)).encode()),
        (b"Vary", b"Accept-Encoding"),
    ]
    assert response.body == METRICS_TEXT


def test_page_without_gzip_body_has_no_vary(client: Client) -> None:
    response = client.request(b"/healthz", headers=b"Accept-Encoding: gzip\r\n")
    assert response.without_date() == [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"3"),
    ]
    assert response.body == b"ok\n"


@pytest.mark.parametrize(("accept_encoding", "gzipped"), [
    (b"gzip", True),
    (b"GZip", True),
    (b"x-gzip", True),
    (b"deflate, gzip, br, zstd", True),
    (b"br;q=1.0, gzip;q=0.5", True),
    (b"gzip;q=0.001", True),
    (b"gzip ; q=1.000", True),
    (b"*", True),
    (b"*;q=0.1", True),
    (b"gzip;q=0", False),
    (b"gzip; Q=0.000", False),
    (b"gzip;q=0, *", False),  # an explicit refusal beats the wildcard
    (b"*;q=0", False),
    (b"identity", False),
    (b"identity, *;q=0", False),
    (b"br", False),
    (b"gzipx", False),
    (b"gzip;q=2", False),  # not a qvalue; identity is the safe reading
    (b"gzip;q=abc", False),
    (b"", False),
    (None, False),
])
def test_gzip_negotiation(client: Client, accept_encoding: bytes | None, gzipped: bool) -> None:
    header = b"" if accept_encoding is None else b"Accept-Encoding: %s\r\n" % accept_encoding
    response = client.request(headers=header)
    assert response.status == 200
    assert response.header(b"Vary") == b"Accept-Encoding"
    assert response.header(b"Content-Length") == str(len(response.body)).encode()
    assert accepts_gzip(accept_encoding or b"") is gzipped
    if gzipped:
        assert response.header(b"Content-Encoding") == b"gzip"
        assert response.body == METRICS.gzip_body
        assert gzip.decompress(response.body) == METRICS_TEXT
    else:
        assert response.header(b"Content-Encoding") is None
        assert response.body == METRICS_TEXT


def test_repeated_accept_encoding_fields_are_combined(client: Client) -> None:
    response = client.request(headers=b"Accept-Encoding: br\r\naccept-encoding: gzip\r\n")
    assert response.header(b"Content-Encoding") == b"gzip"


@pytest.mark.parametrize("accept_encoding", [b"", b"Accept-Encoding: gzip\r\n"])
def test_head_sends_get_headers_and_no_body(client: Client, accept_encoding: bytes) -> None:
    # HEAD and GET in one send: if HEAD carried a body, the GET response would not parse.
    client.send(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n%s\r\n"
                b"GET /metrics HTTP/1.1\r\nHost: t\r\n%s\r\n" % (accept_encoding, accept_encoding))
    head = client.read_response(head_only=True)
    get = client.read_response()
    assert head.status_line == get.status_line == b"HTTP/1.1 200 OK"
    assert head.without_date() == get.without_date()
    assert int(head.header(b"Content-Length") or b"") == len(get.body)
    assert client.request(b"/healthz").body == b"ok\n"


@pytest.mark.parametrize("path", [b"/metrics?x=1", b"/metrics?", b"/?a=b&c",
                                  b"http://exporter:7777/metrics?x=1"])
def test_query_string_is_ignored_for_routing(serve: Serve, path: bytes, connect: Connect) -> None:
    live = serve({b"/metrics": lambda: METRICS, "/": lambda: HEALTHZ})
    with_query = connect(live.port)
    response = with_query.request(path)
    assert response.status == 200
    assert response.body == (HEALTHZ.body if path.startswith(b"/?") else METRICS_TEXT)


def test_payload_swap_is_seen_by_the_next_request(serve: Serve, connect: Connect) -> None:
    slot = Slot(METRICS)
    live = serve({"/metrics": slot})
    c = connect(live.port)
    assert c.request().body == METRICS_TEXT
    slot.payload = Payload(b"m 2\n", gzip.compress(b"m 2\n"), METRICS_TYPE)
    assert c.request().body == b"m 2\n"
    response = c.request(headers=b"Accept-Encoding: gzip\r\n")
    assert gzip.decompress(response.body) == b"m 2\n"
    assert response.header(b"Content-Length") == str(len(response.body)).encode()


# --- errors ---

@pytest.mark.parametrize("path", [b"/nope", b"/metricsx", b"/metrics/", b"/healthz/x", b"*"])
def test_unknown_path_is_404(client: Client, path: bytes) -> None:
    response = client.request(path)
    assert response.status_line == b"HTTP/1.1 404 Not Found"
    assert response.without_date() == [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(response.body)).encode()),
    ]
    assert response.body == b"404 page not found\n"
    assert client.request().status == 200  # and the connection is still good


def test_head_on_unknown_path_has_no_body(client: Client) -> None:
    client.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    response = client.read_response(head_only=True)
    assert response.status == 404
    assert response.header(b"Content-Length") == b"%d" % len(b"404 page not found\n")
    assert client.read_response().body == b"ok\n"


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
def test_other_method_on_known_path_is_405(client: Client, method: bytes) -> None:
    client.send(b"%s /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nx=1&y=2" % method)
    response = client.read_response()
    assert response.status_line == b"HTTP/1.1 405 Method Not Allowed"
    assert response.header(b"Allow") == b"GET, HEAD"
    assert response.header(b"Content-Length") == str(len(response.body)).encode()
    # The request body was consumed, not read as the next request.
    assert client.request().body == METRICS_TEXT


def test_unknown_method_on_unknown_path_is_404(client: Client) -> None:
    assert client.request(b"/nope", method=b"POST").status == 404


def test_route_with_nothing_yet_answers_503(serve: Serve, connect: Connect) -> None:
    slot = Slot(None)
    live = serve({"/metrics": slot})
    c = connect(live.port)
    response = c.request()
    assert response.status_line == b"HTTP/1.1 503 Service Unavailable"
    assert response.header(b"Content-Length") == b"%d" % len(response.body)
    slot.payload = METRICS
    assert c.request().body == METRICS_TEXT


def test_failing_route_answers_500_and_is_logged_once(
        serve: Serve, connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Payload:
        raise RuntimeError("no payload yet")

    live = serve({"/broken": broken, "/wrong-type": lambda: b"m 1\n"})
    c = connect(live.port)
    for path in (b"/broken", b"/wrong-type", b"/broken"):
        response = c.request(path)
        assert response.status_line == b"HTTP/1.1 500 Internal Server Error"
    logged = [r for r in caplog.records if r.name == "fastnats.http"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR


# --- keep-alive and pipelining ---

def test_http11_keeps_the_connection_open(client: Client) -> None:
    for path in (b"/metrics", b"/healthz", b"/nope", b"/metrics"):
        response = client.request(path)
        assert response.header(b"Connection") is None
    assert client.request(b"/healthz").body == b"ok\n"


def test_http11_connection_close_is_honoured(client: Client) -> None:
    response = client.request(headers=b"Connection: close\r\n")
    assert response.header(b"Connection") == b"close"
    assert response.body == METRICS_TEXT
    client.assert_closed()


def test_http10_closes_by_default(client: Client) -> None:
    client.send(b"GET /metrics HTTP/1.0\r\n\r\n")
    response = client.read_response()
    assert response.status_line == b"HTTP/1.1 200 OK"
    assert response.header(b"Connection") == b"close"
    assert response.body == METRICS_TEXT
    client.assert_closed()


def test_http10_keep_alive_on_request(client: Client) -> None:
    for _ in range(3):
        client.send(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = client.read_response()
        assert response.without_date() == [
            (b"Content-Type", METRICS_TYPE),
            (b"Content-Length", str(len(METRICS_TEXT)).encode()),
            (b"Vary", b"Accept-Encoding"),
            (b"Connection", b"keep-alive"),
        ]
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert client.read_response().body == b"ok\n"
    client.assert_closed()


def test_pipelined_requests_are_answered_in_order(client: Client) -> None:
    client.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
                b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response().body == METRICS_TEXT
    assert client.read_response().status == 404
    assert client.read_response(head_only=True).header(b"Content-Length") == b"3"
    assert gzip.decompress(client.read_response().body) == METRICS_TEXT
    assert client.read_response().body == b"ok\n"


def test_nothing_is_answered_after_a_request_that_closes(client: Client) -> None:
    client.send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response().body == b"ok\n"
    client.assert_closed()


@pytest.mark.parametrize("request_with_body", [
    b"GET /metrics HTTP/1.1\r\nContent-Length: 11\r\n\r\nGET /nope\r\n",
    b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nGET \r\n6\r\n/nope\n\r\n0\r\n\r\n",
])
def test_a_body_on_get_does_not_desync(client: Client, request_with_body: bytes) -> None:
    client.send(request_with_body + b"GET /healthz HTTP/1.1\r\n\r\n")
    assert client.read_response().body == METRICS_TEXT
    assert client.read_response().body == b"ok\n"


def test_upgrade_is_answered_plainly_then_closed(client: Client) -> None:
    client.send(b"GET /metrics HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                b"\x81\x05hello")
    response = client.read_response()
    assert response.status == 200 and response.header(b"Connection") == b"close"
    client.assert_closed()


@pytest.mark.parametrize(("method", "status"), [(b"GET", 200), (b"HEAD", 200), (b"POST", 405)])
@pytest.mark.parametrize("framing", [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"])
def test_expect_100_continue_is_answered_before_the_body(client: Client, method: bytes,
                                                         status: int, framing: bytes) -> None:
    # No route takes a body: the final answer comes at once, instead of after the body that a
    # curl-like client holds back (until its own timeout) while it waits for 100 Continue.
    client.sock.settimeout(1.0)
    client.send(b"%s /metrics HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n%s\r\n"
                % (method, framing))
    response = client.read_response(head_only=method == b"HEAD")
    assert response.status == status
    # The client may send the body now or never: the connection cannot carry another request.
    assert response.header(b"Connection") == b"close"
    client.send(b"hello" if framing.startswith(b"Content") else b"5\r\nhello\r\n0\r\n\r\n")
    client.assert_closed()


def test_expect_100_continue_without_a_body_keeps_the_connection(client: Client) -> None:
    response = client.request(headers=b"Expect: 100-continue\r\n")
    assert response.status == 200 and response.header(b"Connection") is None
    assert client.request(b"/healthz").body == b"ok\n"


PIPELINE = (b"GET /metrics?x=1 HTTP/1.1\r\nHost: exporter:7777\r\nAccept-Encoding: gzip\r\n"
            b"User-Agent: Prometheus/3\r\n\r\n"
            b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"HEAD /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")


def test_every_split_of_a_pipeline_gives_the_same_responses(client: Client) -> None:
    def exchange(chunk_size: int) -> list[list[tuple[bytes, bytes]]]:
        for i in range(0, len(PIPELINE), chunk_size):
            client.send(PIPELINE[i:i + chunk_size])
        return [[(r.status_line, b"")] + r.without_date() + [(b"body", r.body)] for r in (
            client.read_response(), client.read_response(), client.read_response(head_only=True))]

    whole = exchange(len(PIPELINE))
    assert [r[0][0] for r in whole] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 405 Method Not Allowed",
                                        b"HTTP/1.1 200 OK"]
    for chunk_size in range(1, len(PIPELINE)):
        assert exchange(chunk_size) == whole, f"chunk size {chunk_size}"


# --- timeouts ---
# The idle timer starts at accept: a test whose client must be served first gives it a second,
# which a loaded machine needs between connecting and sending.

def test_idle_keep_alive_connection_is_closed(serve: Serve, connect: Connect) -> None:
    live = serve(keepalive_timeout=1.0)
    c = connect(live.port)
    assert c.request().status == 200
    c.assert_closed()  # recv returns only when the server closes (or the recv times out)


@pytest.mark.parametrize("sent", [b"", b"GET /metrics HTTP/1.1\r\nHost: exp"])
def test_silent_or_stalled_client_is_closed(serve: Serve, sent: bytes, connect: Connect) -> None:
    live = serve(keepalive_timeout=0.2)
    c = connect(live.port)
    c.send(sent)
    c.assert_closed()


# --- bad requests ---

@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello: https to a plain port
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /metrics HTTP/9.9\r\n\r\n",
    b"GET /a b HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost t\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nNOT HTTP\r\n\r\n",  # valid, then garbage
])
def test_malformed_request_gets_400_and_others_are_unaffected(
        live: LiveServer, connect: Connect, garbage: bytes) -> None:
    other = connect(live.port)
    assert other.request().status == 200
    other.send(b"GET /healthz HTTP/1.1\r\nHo")  # mid-request while the bad one is handled

    bad = connect(live.port)
    bad.send(garbage)
    if garbage.startswith(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"):
        assert bad.read_response().body == METRICS_TEXT
    response = bad.read_response()
    assert response.status_line == b"HTTP/1.1 400 Bad Request"
    assert response.header(b"Connection") == b"close"
    assert response.body == b"400 bad request\n"
    bad.assert_closed()

    other.send(b"st: t\r\n\r\n")
    assert other.read_response().body == b"ok\n"


@pytest.mark.parametrize(("request_head", "status_line"), [
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
     b"HTTP/1.1 431 Request Header Fields Too Large"),
    (b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
     b"HTTP/1.1 431 Request Header Fields Too Large"),
    (b"GET /metrics?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"HTTP/1.1 414 URI Too Long"),
])
def test_oversized_request_is_refused(live: LiveServer, connect: Connect, request_head: bytes,
                                      status_line: bytes) -> None:
    c = connect(live.port)
    c.send(request_head)
    response = c.read_response()
    assert response.status_line == status_line
    assert response.header(b"Connection") == b"close"
    c.assert_closed()
    assert fetch(live.port).status == 200


def test_endless_header_is_cut_off(live: LiveServer, connect: Connect) -> None:
    c = connect(live.port)
    c.send(b"GET /metrics HTTP/1.1\r\nX-Endless: ")
    # Far beyond the limit, in pieces, never finishing the line: the server must not hold it.
    for _ in range(64):
        c.send(b"a" * 16384)
    response = c.read_response()
    assert response.status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    c.assert_closed()


def test_large_header_in_small_pieces_is_accepted(client: Client) -> None:
    head = b"GET /healthz HTTP/1.1\r\nX-Large: " + b"a" * 12_000 + b"\r\n\r\n"
    for i in range(0, len(head), 1000):
        client.send(head[i:i + 1000])
    assert client.read_response().body == b"ok\n"


# --- flow control and dropped peers ---

def test_client_that_does_not_read_stops_being_read(serve: Serve, connect: Connect) -> None:
    live = serve({"/big": lambda: BIG, "/healthz": lambda: HEALTHZ})
    # Padding makes each request large, so the kernel buffers fill in few requests.
    one = b"GET /big HTTP/1.1\r\nX-Pad: " + b"p" * 15_000 + b"\r\n\r\n"
    slow = connect(live.port, rcvbuf=4096)
    slow.sock.setblocking(False)
    sent = 0
    # If the server kept reading, this would go on until the cap and the server would be
    # holding gigabytes of responses; it must stop reading so that our send blocks.
    while sent < 256 * 1024 * 1024:
        _, writable, _ = select.select([], [slow.sock], [], 1.0)
        if not writable:
            break
        offset = sent % len(one)
        sent += slow.sock.send(one[offset:] + one * 8)
    else:
        pytest.fail(f"the server read {sent} bytes from a client that reads nothing")

    # Others are served while that client is stuck.
    other = connect(live.port)
    assert other.request(b"/healthz").body == b"ok\n"

    slow.sock.settimeout(RECV_TIMEOUT)
    expected = -(-sent // len(one))
    results: list[bool] = []
    reader = threading.Thread(target=lambda: results.extend(
        slow.read_response().body == BIG.body for _ in range(expected)))
    reader.start()
    slow.send(one[len(one) - (-sent) % len(one):])  # finish the request cut off mid-way
    reader.join(timeout=60)
    assert results == [True] * expected
    assert slow.request(b"/healthz", headers=b"Connection: close\r\n").body == b"ok\n"
    slow.assert_closed()


def test_pipelining_client_that_does_not_read_holds_few_answers(serve: Serve,
                                                               connect: Connect) -> None:
    answered: list[int] = []
    padding = b"." * 16 * 1024  # so that the kernel buffers take only a few hundred answers

    def numbered() -> Payload:
        answered.append(len(answered))
        return Payload(b"%d\n" % answered[-1] + padding, None, b"text/plain")

    live = serve({"/n": numbered})
    requests = 4000
    # Every seventh asks for a missing page, so the order shows in the status codes too.
    pipeline = b"".join(b"GET /nope HTTP/1.1\r\n\r\n" if i % 7 == 0 else
                        b"GET /n HTTP/1.1\r\n\r\n" for i in range(requests))
    c = connect(live.port, rcvbuf=4096)
    sender = threading.Thread(target=c.send, args=(pipeline,), daemon=True)
    sender.start()

    async def held_back() -> int | None:
        conn = next(iter(live.server._connections), None)
        transport = None if conn is None else conn._transport
        stuck = transport is not None and conn._write_paused and not transport.is_reading()
        return len(conn._pending) + 1 if stuck else None  # + 1: 0 answers is truthy too

    held = wait_until(lambda: live.run(held_back())) - 1
    # Without the cap this was every request of the read that paused writing: thousands.
    assert held <= MAX_PENDING_ANSWERS + FEED_BYTES // 18, held
    assert len(answered) < requests * 6 // 7, "the server answered every request it was sent"

    n = 0
    for i in range(requests):
        response = c.read_response()
        if i % 7 == 0:
            assert response.status == 404, i
        else:
            assert (response.status, response.body.partition(b"\n")[0]) == (200, b"%d" % n), i
            n += 1
    sender.join(timeout=RECV_TIMEOUT)
    assert not sender.is_alive()
    assert c.request(b"/nope", headers=b"Connection: close\r\n").status == 404
    c.assert_closed()


def test_client_that_stops_reading_is_dropped(serve: Serve, connect: Connect) -> None:
    live = serve({"/big": lambda: BIG}, keepalive_timeout=1.0)
    stuck = connect(live.port, rcvbuf=4096)
    # More response bytes than the kernel buffers on both sides can take.
    stuck.send(b"GET /big HTTP/1.1\r\n\r\n" * 120)
    # Block until the connection is torn down, without reading (reading would be progress).
    poller = select.poll()
    poller.register(stuck.sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    assert poller.poll(RECV_TIMEOUT * 1000), "the server kept a connection nobody reads"
    # A reset, not a clean close: the responses could not be delivered.
    with pytest.raises(ConnectionResetError):
        while stuck.sock.recv(1 << 20):
            pass
    assert fetch(live.port, b"/big").body == BIG.body


def test_half_closed_client_gets_every_answer(serve: Serve, connect: Connect) -> None:
    live = serve({"/big": lambda: BIG})
    c = connect(live.port, rcvbuf=4096)
    c.send(b"GET /big HTTP/1.1\r\n\r\n" * 120)
    c.sock.shutdown(socket.SHUT_WR)  # EOF arrives while most answers are still held back
    for _ in range(120):
        assert c.read_response().body == BIG.body
    c.assert_closed()


def test_shutdown_does_not_wait_for_a_client_that_never_reads(serve: Serve,
                                                              connect: Connect) -> None:
    live = serve({"/big": lambda: BIG}, keepalive_timeout=1.0)
    stuck = connect(live.port, rcvbuf=4096)
    stuck.send(b"GET /big HTTP/1.1\r\n\r\n" * 120)
    assert stuck.sock.recv(1) == b"H"  # the requests are in; now stop reading
    live.shut_down()
    assert live.server.open_connections == 0
    with pytest.raises(ConnectionResetError):
        while stuck.sock.recv(1 << 20):
            pass


def test_reset_by_peer_mid_response_is_harmless(live: LiveServer, connect: Connect) -> None:
    for _ in range(3):
        c = connect(live.port)
        c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST, with responses still on their way
    assert fetch(live.port).body == METRICS_TEXT


def test_open_connections_are_tracked(live: LiveServer, connect: Connect) -> None:
    c = connect(live.port)
    c.request()
    assert live.open_connections() == 1
    c.send(b"BAD\r\n\r\n")
    assert c.read_response().status == 400
    c.assert_closed()
    wait_until(lambda: live.open_connections() == 0)


def test_close_ends_idle_connections(serve: Serve, connect: Connect) -> None:
    live = serve()
    c = connect(live.port)
    assert c.request().status == 200
    live.shut_down()
    c.assert_closed()
    assert live.server.open_connections == 0
    with pytest.raises(ConnectionRefusedError):
        Client(live.port)


# --- the connection cap ---

def test_default_connection_cap_is_half_the_open_file_limit(live: LiveServer) -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert live.server.max_connections == default_max_connections() == min(soft // 2, 4096)


def test_a_new_connection_over_the_cap_closes_the_one_quiet_longest(
        serve: Serve, connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    live = serve(max_connections=4)
    idle = [connect(live.port) for _ in range(4)]
    wait_until(lambda: live.open_connections() == 4)
    # An answered request makes a connection the most recently active.
    assert idle[0].request().status == 200
    newcomers = [connect(live.port) for _ in range(2)]
    idle[1].assert_closed()
    idle[2].assert_closed()
    for c in (*newcomers, idle[3], idle[0]):
        assert c.request().status == 200
    assert live.open_connections() == 4
    warnings = [r for r in caplog.records if r.name == "fastnats.http"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_idle_connections_beyond_the_cap_cannot_keep_a_scrape_out(serve: Serve,
                                                                  connect: Connect) -> None:
    live = serve(max_connections=8)
    crowd = [connect(live.port) for _ in range(40)]
    crowd[-1].send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")  # and a request never finished
    for _ in range(3):
        assert fetch(live.port).body == METRICS_TEXT
    wait_until(lambda: live.open_connections() <= 8)


# --- binding ---

def test_empty_host_listens_on_every_interface(serve: Serve) -> None:
    live = serve(host="")
    hosts = {host for host, _ in live.server.addresses}
    assert "0.0.0.0" in hosts
    ipv4_port = next(port for host, port in live.server.addresses if host == "0.0.0.0")
    assert fetch(ipv4_port).status == 200


def test_ipv6_loopback(serve: Serve, connect: Connect) -> None:
    live = serve(host="::1")
    c = connect(live.port, host="::1", family=socket.AF_INET6)
    assert c.request().body == METRICS_TEXT


# --- parse_listen_address and argument checks ---

@pytest.mark.parametrize(("text", "expected"), [
    (":7777", ("", 7777)),
    ("0.0.0.0:7777", ("0.0.0.0", 7777)),
    ("[::1]:7777", ("::1", 7777)),
    ("[::]:9", ("::", 9)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ("localhost:7777", ("localhost", 7777)),
    ("exporter-1.example.com:443", ("exporter-1.example.com", 443)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    (":65535", ("", 65535)),
    (":007", ("", 7)),
])
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(("text", "complaint"), [
    ("", "expected [HOST]:PORT"),
    ("7777", "expected [HOST]:PORT"),
    ("localhost", "expected [HOST]:PORT"),
    (":", "missing port"),
    ("localhost:", "missing port"),
    (":65536", "not a number from 0 to 65535"),
    (":-1", "not a number from 0 to 65535"),
    (":http", "not a number from 0 to 65535"),
    (":７７７７", "not a number from 0 to 65535"),
    (": 7777", "not a number from 0 to 65535"),
    ("::1:7777", "in brackets, as [::1]:7777"),
    ("[::1]", "expected ':PORT' after ']'"),
    ("[::1]7777", "expected ':PORT' after ']'"),
    ("[::1:7777", "missing ']'"),
    ("[localhost]:80", "is not an IPv6 address"),
    ("bad host:80", "is not a host name or IPv4 address"),
    ("-x:80", "is not a host name or IPv4 address"),
    (" :80", "is not a host name or IPv4 address"),
])
def test_parse_listen_address_errors(text: str, complaint: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_listen_address(text)
    assert complaint in str(excinfo.value)
    assert repr(text) in str(excinfo.value)


def test_payload_is_checked_and_frozen() -> None:
    with pytest.raises(ValueError, match="Content-Type"):
        Payload(b"x", None, b"text/plain\r\nX-Injected: 1")
    with pytest.raises(TypeError, match="body"):
        Payload("text", None, METRICS_TYPE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="content_type"):
        Payload(b"x", None, "text/plain")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS.body = b""  # type: ignore[misc]


@pytest.mark.parametrize(("routes", "options", "error"), [
    ({"metrics": lambda: METRICS}, {}, ValueError),
    ({"/metrics": METRICS}, {}, TypeError),
    ({"/metrics": lambda: METRICS}, {"keepalive_timeout": 0}, ValueError),
    ({"/metrics": lambda: METRICS}, {"max_connections": 0}, ValueError),
])
def test_start_server_rejects_bad_arguments(routes: Routes, options: dict[str, Any],
                                            error: type[Exception]) -> None:
    with pytest.raises(error):
        asyncio.run(start_server(routes, "127.0.0.1", 0, **options))
