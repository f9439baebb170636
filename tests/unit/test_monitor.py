"""The monitoring HTTP client against a loopback server in this process that answers with exact
bytes: body limits on the wire and inflated, the deadline, and the reason each failure gets."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest

from fastnats import cli
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits, KiB, MiB, MonitorClient, new_session
from tests.support.faultproxy import gzip_bomb

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"server_id": "N1", "connections": 0}'


def head(*headers: str, status: str = "200 OK") -> bytes:
    return "\r\n".join([f"HTTP/1.1 {status}", *headers, "Connection: close", "", ""]).encode()


def sends(*parts: bytes) -> Answer:
    """An answer written part by part, each part reaching the client on its own."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
    return answer


def with_length(body: bytes, *headers: str, status: str = "200 OK") -> Answer:
    return sends(head(f"Content-Length: {len(body)}", *headers, status=status), body)


def chunked(body: bytes, *headers: str) -> Answer:
    return sends(head("Transfer-Encoding: chunked", *headers),
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


def until_close(body: bytes) -> Answer:
    return sends(head(), body)


FRAMINGS = [with_length, chunked, until_close]


async def fetch(answer: Answer, *, endpoint: str = "varz", params=None, timeout: float = 5.0,
                limits: BodyLimits | None = None, expect: dict[str, int] | None = None,
                requests: list[bytes] | None = None, greeting: bytes = b"") -> bytearray:
    handlers: set[asyncio.Task] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            if greeting:
                writer.write(greeting)
                await writer.drain()
            request = await reader.readuntil(b"\r\n\r\n")
            if requests is not None:
                requests.append(request)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass    # the client left, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    session = new_session()
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return await MonitorClient(url, session, timeout, limits).get(
            endpoint, params, expect=expect)
    finally:
        await session.close()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()


def get(answer: Answer, *, guard: float = 60.0, **kwargs) -> bytearray:
    """``fetch()``, failing on its own if it has not ended after ``guard`` seconds."""
    async def guarded() -> bytearray:
        try:
            return await asyncio.wait_for(fetch(answer, **kwargs), guard)
        except asyncio.TimeoutError:
            pytest.fail(f"the request had not ended after {guard}s: nothing bounded it")
    return asyncio.run(guarded())


def failure(answer: Answer, **kwargs) -> ScrapeError:
    with pytest.raises(ScrapeError) as info:
        get(answer, **kwargs)
    assert info.value.detail.strip(), "every failure says what happened"
    return info.value


# Limits.

def test_each_endpoint_has_its_limit_and_connz_grows_with_the_connections_asked_for():
    limits = BodyLimits()
    assert limits.for_request("varz", None) == 16 * MiB
    assert limits.for_request("connz", {"state": "open"}) == 16 * MiB
    assert limits.for_request("connz", {"limit": 1000}) == 16 * MiB + 1000 * 8 * 1024
    assert BodyLimits(1000, 10).for_request("connz", {"limit": "5"}) == 1050
    with pytest.raises(ValueError):
        BodyLimits(0)


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f.__name__)
def test_a_body_at_the_limit_passes_and_one_byte_more_is_too_large(framing):
    limits = BodyLimits(document=len(BODY))
    assert get(framing(BODY), limits=limits) == BODY
    error = failure(framing(BODY + b" "), limits=limits)
    assert error.reason == "too_large"
    assert "--monitor.max-body-size" in error.detail


def test_a_listing_s_limit_follows_the_entries_it_expects_within_the_flags():
    limits = BodyLimits()
    # The defaults: what /leafz, /accstatz and /jsz set themselves before the flags bound them.
    assert limits.for_request("leafz", None, {"leafnodes": 626}) == 16 * MiB + 626 * 8 * KiB
    assert limits.for_request("accstatz", {"unused": "true"},
                              {"accounts": 100}) == 16 * MiB + 100 * 2 * KiB
    assert limits.for_request("jsz", {"offset": 0, "limit": 1024},
                              {"accounts": 10, "streams": 20, "consumers": 30}) == (
        1 * MiB + 10 * KiB + 20 * 16 * KiB + 30 * 4 * KiB)
    assert limits.for_request("raftz", {"group": "_meta_"}) == 1 * MiB
    # Every document scales with its flag, and each entry's allowance with the per-entry flag.
    small = BodyLimits(1000, 4 * KiB)
    assert small.for_request("leafz", None, {"leafnodes": 3}) == 1000 + 3 * 4 * KiB
    assert small.for_request("jsz", None, {"accounts": 8, "streams": 1}) == (
        1000 // 16 + 8 * 512 + 8 * KiB)
    assert BodyLimits(64 * MiB).for_request("raftz", None) == 4 * MiB
    assert BodyLimits(1).for_request("raftz", None) == 1
    assert BodyLimits(1000, 0).for_request("accstatz", None, {"accounts": 10**6}) == 1000
    with pytest.raises(ValueError):
        limits.for_request("varz", None, {"accounts": 1})
    with pytest.raises(ValueError):
        limits.for_request("jsz", None, {"leafnodes": 1})


def test_the_flags_reach_the_limits_of_every_server_read():
    argv = ["--monitor.max-body-size", "1MiB", "--monitor.max-body-size-per-connection", "2KiB",
            "http://127.0.0.1:8222", "http://127.0.0.1:8223"]
    settings = cli.resolve(cli.build_parser().parse_args(argv))
    assert settings.body_limits == BodyLimits(1 * MiB, 2 * KiB)
    collector = cli._collector(settings, session=None, tls=None)
    assert [server.source.limits for server in collector.servers] == [settings.body_limits] * 2
    assert cli.resolve(cli.build_parser().parse_args([])).body_limits == BodyLimits()


def test_only_a_listing_sized_by_what_it_expects_is_asked_again_larger():
    limits = BodyLimits(1000, 8 * KiB)
    assert limits.bounds("varz", None) == (1000,)
    assert limits.bounds("connz", {"limit": 5}) == (1000 + 5 * 8 * KiB,)
    # /leafz expects what this refresh's /varz reports: no reply of its own to learn from.
    assert limits.bounds("leafz", None, {"leafnodes": 2}) == (1000 + 2 * 8 * KiB,)
    first = 1000 + 3 * 2 * KiB
    assert limits.bounds("accstatz", None, {"accounts": 3}) == (first, 4 * first, 16 * first)
    first = 1000 // 16 + 3 * KiB
    assert limits.bounds("jsz", {}, {"accounts": 3}) == (first, 4 * first, 16 * first)


def test_a_listing_over_its_limit_grows_twice_then_fails_with_its_last_limit():
    limits = BodyLimits(1000, 8 * KiB)
    first = 1000 + 2 * KiB
    asked = {"endpoint": "accstatz", "expect": {"accounts": 1}, "limits": limits}
    requests: list[bytes] = []
    body = b"x" * (4 * first)
    assert get(chunked(body), requests=requests, **asked) == body
    assert len(requests) == 2
    requests.clear()
    error = failure(with_length(b"x" * (16 * first + 1)), requests=requests, **asked)
    assert len(requests) == 3
    assert error.reason == "too_large"
    assert f"over its limit of {16 * first} bytes" in error.detail
    assert "--monitor.max-body-size-per-connection" in error.detail
    # A document is asked once.
    requests.clear()
    assert failure(with_length(b"x" * 1001), limits=limits, requests=requests).reason == (
        "too_large")
    assert len(requests) == 1


def test_connz_limit_follows_the_limit_parameter():
    body = b"x" * 1050
    limits = BodyLimits(1000, 10)
    assert get(chunked(body), endpoint="connz", params={"limit": 5}, limits=limits) == body
    assert failure(chunked(body), endpoint="connz", params={"limit": 4},
                   limits=limits).reason == "too_large"


def test_a_content_length_over_the_limit_fails_before_the_body_is_read():
    sent = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head("Content-Length: 1073741824"))
        await writer.drain()
        # Nothing of the announced body ever comes: only the header can have failed it.
        await asyncio.sleep(30)
        sent.set()

    # Waiting for the body would have ended in reason="timeout", after 10 s.
    error = failure(answer, timeout=10, guard=20)
    assert error.reason == "too_large"
    assert "announces 1073741824 bytes" in error.detail
    assert not sent.is_set()


# Compressed bodies.

@pytest.mark.parametrize("coding, compress", [
    ("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)])
@pytest.mark.parametrize("framing", [with_length, chunked])
def test_compressed_bodies_are_inflated(coding, compress, framing):
    assert get(framing(compress(BODY), f"Content-Encoding: {coding}")) == BODY


def test_the_request_asks_only_for_codings_it_can_bound():
    requests: list[bytes] = []
    get(with_length(BODY), requests=requests)
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in requests[0].lower()


def test_a_gzip_bomb_stops_at_the_limit_without_inflating_further():
    bomb = gzip_bomb(256 * MiB)
    limit = 1 * MiB
    tracemalloc.start()
    try:
        error = failure(with_length(bomb, "Content-Encoding: gzip"), limits=BodyLimits(limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason == "too_large"
    assert "inflates to more than" in error.detail
    # The body, the last inflated step and aiohttp's buffers of the compressed bytes.
    assert peak < 4 * limit + 2 * len(bomb), peak


def test_compressed_bytes_count_against_the_limit_on_the_wire():
    noise = gzip.compress(os.urandom(4000))
    assert len(noise) > 4000
    error = failure(chunked(noise, "Content-Encoding: gzip"), limits=BodyLimits(4000))
    assert error.reason == "too_large"
    assert "sent more than 4000 bytes" in error.detail


@pytest.mark.parametrize("body, why", [
    (gzip.compress(BODY)[:-12], "ends early"),
    (gzip.compress(BODY) + b"junk", "after the end"),
    (b"\x1f\x8b not gzip at all", "bad compressed body"),
])
def test_a_broken_compressed_body_is_a_body_error(body, why):
    error = failure(with_length(body, "Content-Encoding: gzip"))
    assert (error.reason, why in error.detail) == ("body", True), error


def test_an_unasked_for_coding_is_a_body_error():
    error = failure(with_length(BODY, "Content-Encoding: br"))
    assert error.reason == "body"
    assert "unsupported Content-Encoding 'br'" in error.detail


# Time.

def test_the_timeout_bounds_a_body_that_drips():
    dripped: list[int] = []

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head("Content-Length: 1000"))
        for _ in range(1000):
            writer.write(b" ")
            await writer.drain()
            dripped.append(1)
            await asyncio.sleep(0.05)

    # The whole drip takes 50 s.
    error = failure(answer, timeout=0.5, guard=20)
    assert error.reason == "timeout"
    assert "within 0.5s" in error.detail
    received = re.search(r"(\d+) bytes of body received", error.detail)
    assert received, error.detail
    # The timeout covers the body: it ended a reply under way, not one not yet started.
    assert 0 < int(received[1]) <= len(dripped) < 1000, (received[1], len(dripped))


def test_the_timeout_bounds_a_server_that_never_answers():
    answered = asyncio.Event()

    async def answer(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        answered.set()

    error = failure(answer, timeout=0.3, guard=20)
    assert error.reason == "timeout"
    assert "no response headers" in error.detail
    assert not answered.is_set()  # the client gave up while the server still said nothing


# Broken replies, and the reason of each.

@pytest.mark.parametrize("answer, reason, says", [
    pytest.param(sends(head("Content-Length: 100"), BODY), "body", "not completed",
                 id="cut-short"),
    pytest.param(sends(head("Transfer-Encoding: chunked"), b"5\r\nabcde\r\nzz\r\n"), "body",
                 "chunk size", id="bad-chunk-after-headers"),
    pytest.param(sends(head("Transfer-Encoding: chunked") + b"5\r\nabcde\r\nzz\r\n"), "body",
                 "chunk size", id="bad-chunk-with-headers"),
    pytest.param(sends(head("Content-Length: 10")), "body", "not completed", id="no-body"),
    pytest.param(sends(), "connect", "disconnected", id="closed-before-answering"),
    pytest.param(sends(b"SSH-2.0-OpenSSH_9.6\r\n"), "connect", "", id="not-http"),
    pytest.param(with_length(b"boom", status="500 Internal Server Error"), "http_status",
                 "HTTP 500 Internal Server Error", id="500"),
])
def test_each_failure_has_its_reason(answer, reason, says):
    error = failure(answer)
    assert error.reason == reason, error
    assert says.lower() in error.detail.lower(), error


INFO = b'INFO {"server_id":"N1"}\r\n'


@pytest.mark.parametrize("greeting, answer", [
    pytest.param(b"", sends(INFO), id="read-as-a-status-line"),
    # The greeting comes on accept and the server hangs up on "GET": aiohttp may fail to write
    # the request before it reads the greeting.
    pytest.param(INFO, sends(b"-ERR 'Unknown Protocol Operation'\r\n"), id="greets-and-hangs-up"),
    pytest.param(INFO, sends(), id="greets-and-closes"),
])
def test_the_nats_client_port_is_named(greeting, answer):
    error = failure(answer, greeting=greeting)
    assert error.reason == "connect"
    assert "is the NATS client port, not the monitoring port" in error.detail


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect"])
def test_a_redirect_is_not_followed_and_names_its_location(status):
    requests: list[bytes] = []
    error = failure(with_length(b"", "Location: http://127.0.0.1:1/varz", status=status),
                    requests=requests)
    assert error.reason == "http_status"
    assert f"HTTP {status}" in error.detail
    assert "redirecting to 'http://127.0.0.1:1/varz'" in error.detail
    assert len(requests) == 1
