"""HTTP client for a nats-server monitoring port (/varz, /connz, ...), returning raw bodies.

Every request is bounded. In time: ``timeout`` covers the connection, the headers, the body and
its inflation together, so a server that drips its body cannot hold a refresh. In size: a reply
may hold no more than its endpoint's limit (``BodyLimits``), counted on the wire and again after
a gzip or deflate body is inflated, which this module does itself, in steps that never produce
more than the limit, so a decompression bomb costs the limit and not what it would inflate to.

An https:// URL is read with the session's TLS context (``new_session``); a handshake that fails
is a ScrapeError with reason ``tls`` and a detail that says why (``sources.tls``). Plain http://
URLs never touch it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import zlib
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError

from ..errors import ScrapeError
from ..target import parse_target, shown_url
from .tls import PROBE_WAIT, describe_failure, dropped_hint, refusal, speaks_no_tls

# What a NATS client port says first, where an HTTP server would send a status line.
_NATS_GREETING = "INFO {"
# nats-server greets a connection as it accepts it; no reply comes sooner from anything else.
_GREETING_WAIT = 0.5

KiB = 1 << 10
MiB = 1 << 20

#: Endpoints whose reply lists one entry per connection, up to the ``limit`` query parameter.
_PER_CONNECTION = frozenset({"connz"})

#: ``BodyLimits.document`` by default.
DEFAULT_DOCUMENT = 16 * MiB
#: The documents smaller than the rest, at the default ``document``; each scales with it.
#: /raftz?group=_meta_: room for 4,000 peers (about 220 bytes each, as nats-server indents
#: them), where a meta group has dozens. /jsz: its server part, before any entry.
DOCUMENT_BYTES: Mapping[str, int] = {"raftz": 1 * MiB, "jsz": 1 * MiB}
#: ``BodyLimits.per_connection`` by default: the allowance of one /connz entry.
DEFAULT_PER_CONNECTION = 8 * KiB
#: The allowance of one entry of a listing, by endpoint and kind of entry, at the default
#: ``per_connection``; each scales with it, so that one flag bounds every listing.
ENTRY_BYTES: Mapping[str, Mapping[str, int]] = {
    # An entry is under 1 KiB; what a client chooses (name, JWT, tags) comes from its CONNECT
    # line, which nats-server caps at 4 KiB by default (max_control_line).
    "connz": {"connections": DEFAULT_PER_CONNECTION},
    # Under 512 bytes; its name and account come from the leafnode's CONNECT, as above.
    "leafz": {"leafnodes": DEFAULT_PER_CONNECTION},
    # About 900 bytes with two 56-character public keys, pretty-printed; room for long names.
    "accstatz": {"accounts": DEFAULT_PER_CONNECTION // 4},
    # Pretty-printed: an account; a stream, with its config (subjects, metadata, sources); a
    # consumer, with its config and cluster.
    "jsz": {"accounts": DEFAULT_PER_CONNECTION // 8, "streams": DEFAULT_PER_CONNECTION * 2,
            "consumers": DEFAULT_PER_CONNECTION // 2},
}
#: Listings that expect the counts of their own last reply, asked again ``GROWTH`` times larger
#: after a reply over its limit, ``GROW_ATTEMPTS`` requests in all: those counts can be
#: outgrown (the first refresh, a jump), and the new count is learnt only from a reply. /connz
#: and /leafz expect what this refresh's /varz reports.
_GROWING = frozenset({"accstatz", "jsz"})
GROWTH = 4
GROW_ATTEMPTS = 3

# nats-server never compresses; a proxy in front of it may, and only in a coding we can bound.
_ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_INFLATE_STEP = 1 * MiB

# The deadline is the one around the whole request (``MonitorClient.get``), not aiohttp's.
_NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The largest reply accepted from an endpoint, on the wire and inflated.

    Every endpoint's reply may hold ``document`` bytes (``--monitor.max-body-size``), or the
    share of it ``DOCUMENT_BYTES`` gives. A listing may hold, for each entry the request
    expects, that entry's allowance more: ``ENTRY_BYTES`` scaled by ``per_connection``
    (``--monitor.max-body-size-per-connection``), which a /connz entry gets whole. /connz
    expects the connections it asks for (``limit=N``); the other listings say what they expect
    (``expect``). /accstatz and /jsz over their limit are asked again ``GROWTH`` times larger
    (``bounds``). So both flags bound every endpoint, and the defaults are the limits the
    collectors used to set themselves.
    """

    document: int = DEFAULT_DOCUMENT
    per_connection: int = DEFAULT_PER_CONNECTION

    def __post_init__(self) -> None:
        if self.document < 1 or self.per_connection < 0:
            raise ValueError(f"body limits must be positive: {self}")

    def for_request(self, endpoint: str, params: Mapping[str, str | int] | None,
                    expect: Mapping[str, int] | None = None) -> int:
        """The limit of one request, from what it asks for and the entries it expects, by
        kind (``expect``, kinds of ``ENTRY_BYTES``)."""
        counts = dict(expect or {})
        if endpoint in _PER_CONNECTION and params is not None and "limit" in params:
            counts["connections"] = int(params["limit"])
        own = DOCUMENT_BYTES.get(endpoint)
        limit = self.document if own is None else max(own * self.document // DEFAULT_DOCUMENT, 1)
        for kind, count in counts.items():
            size = ENTRY_BYTES.get(endpoint, {}).get(kind)
            if size is None:
                raise ValueError(f"{endpoint} lists no entries of kind {kind!r}")
            limit += size * self.per_connection // DEFAULT_PER_CONNECTION * max(count, 0)
        return limit

    def bounds(self, endpoint: str, params: Mapping[str, str | int] | None,
               expect: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The limit of each request in turn, the next made only when a reply passes the one
        before: one, or for a listing that expects its last reply's counts, ``GROW_ATTEMPTS``
        growing ones."""
        limit = self.for_request(endpoint, params, expect)
        if not expect or endpoint not in _GROWING:
            return (limit,)
        return tuple(limit * GROWTH ** attempt for attempt in range(GROW_ATTEMPTS))


#: What a reply over its limit tells the operator, from either source.
TOO_LARGE_HINT = ("raise --monitor.max-body-size (or --monitor.max-body-size-per-connection "
                  "for a listing: /connz, /leafz, /accstatz, /jsz) if this server is really "
                  "that large")

_T = TypeVar("_T")


async def read_within(bounds: Sequence[int], read: Callable[[int], Awaitable[_T]]) -> _T:
    """``read(limit)`` under each of ``bounds`` in turn, the next only after a ``too_large``."""
    for limit in bounds[:-1]:
        try:
            return await read(limit)
        except ScrapeError as exc:
            if exc.reason != "too_large":
                raise
    return await read(bounds[-1])


class MonitorClient:
    """Reads monitoring endpoints of one server, each request bounded by ``timeout`` (seconds,
    body included) and by ``limits``.

    With ``user`` (or a user in ``base_url``, which is then taken out of it), requests carry
    HTTP Basic authentication. The URL requested never holds the credentials, and every error
    names the server by its redacted form (``fastnats.target.shown_url``).

    ``tls`` is the context the session's https connections use (``new_session``); it serves
    here only to tell why a server dropped a connection after the handshake.
    """

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float,
                 limits: BodyLimits | None = None, *, user: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        if urlsplit(base_url).username is not None:
            target = parse_target(base_url)
            base_url, user = target.url, target.user
            password = target.password if password is None else password
        self.base_url = base_url.rstrip("/")
        self.shown_url = shown_url(self.base_url, user)
        self._headers = {"Accept-Encoding": _ACCEPT_ENCODING}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._session = session
        self._tls = tls
        self.timeout = timeout
        self.limits = limits or BodyLimits()

    async def get(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                  expect: Mapping[str, int] | None = None,
                  statuses: Collection[int] = (200,)) -> bytearray:
        """GET ``/endpoint`` and return the body; any failure raises :class:`ScrapeError`.

        ``expect`` is the entries a listing expects, by kind, which its limit follows
        (``BodyLimits.bounds``); ``statuses`` are the HTTP statuses whose body is the answer
        (/healthz answers 503).
        """
        return await read_within(self.limits.bounds(endpoint, params, expect),
                                 lambda limit: self._get_within(endpoint, params, limit,
                                                                statuses))

    async def _get_within(self, endpoint: str, params: Mapping[str, str | int] | None,
                          limit: int, statuses: Collection[int]) -> bytearray:
        url = f"{self.base_url}/{endpoint}"
        reply = _Reply(endpoint, url, limit, statuses, shown=f"{self.shown_url}/{endpoint}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            return await asyncio.wait_for(self._get(reply, params), self.timeout)
        except asyncio.TimeoutError:
            raise ScrapeError(endpoint, "timeout", f"no complete answer from {reply.shown} within "
                                                   f"{self.timeout:g}s ({reply.progress()})"
                              ) from None
        except aiohttp.ClientError as exc:
            raise await self._failure(reply, exc, deadline - loop.time()) from None
        finally:
            # The error's traceback keeps this frame, and so the reply, until the server's next
            # refresh, or longer in a reference cycle: it must not keep the body too.
            reply.body = bytearray()

    async def _failure(self, reply: _Reply, exc: aiohttp.ClientError,
                       within: float) -> ScrapeError:
        """What an aiohttp error means: ``connect``, ``tls`` for a failed handshake, or ``body``
        once the server answered."""
        endpoint, url = reply.endpoint, reply.shown
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        # Connected, then dropped before any reply.
        dropped = (isinstance(exc, aiohttp.ClientConnectionError)
                   and not isinstance(exc, aiohttp.ClientConnectorError) and not reply.answered)
        cause: BaseException = exc
        hint = ""
        if dropped and describe_failure(exc) is None:
            alert = await self._tls_refusal(within)
            cause = alert or exc
            if alert is None and urlsplit(self.base_url).scheme == "https":
                hint = f" ({dropped_hint(None)})"
        tls = None if reply.answered else describe_failure(cause)
        if tls is not None:
            if not speaks_no_tls(cause):
                return ScrapeError(endpoint, "tls", f"{url}: {tls}")
            # Plain text where a handshake was due: the NATS client port, or plain HTTP.
            if not await self._greets_in_nats(deadline - loop.time()):
                return ScrapeError(endpoint, "tls", f"{url}: {tls}; a plain monitoring port is "
                                                    f"read with http://")
        if _NATS_GREETING in str(exc) or tls is not None or (
                # A NATS greeting may have come first and closed the connection before the
                # request was written.
                dropped and await self._greets_in_nats(deadline - loop.time())):
            return ScrapeError(
                endpoint, "connect", f"{self.shown_url} is the NATS client port, not the "
                f"monitoring port; point fastnats at the monitoring port (nats-server -m "
                f"PORT, or http: PORT in the conf)")
        if reply.answered:
            # The server answered, and the reply broke (cut short, reset, bad chunks).
            return ScrapeError(endpoint, "body",
                               f"{url}: {_describe(exc)} ({reply.progress()})")
        if _body_error(exc):
            return ScrapeError(endpoint, "body", f"{url}: {_describe(exc)}")
        return ScrapeError(endpoint, "connect", f"{url}: {_describe(exc)}{hint}")

    async def _tls_refusal(self, within: float) -> BaseException | None:
        """The TLS error that ends a connection that asks nothing, if the server sends one
        (``tls.refusal``)."""
        url = urlsplit(self.base_url)
        if url.scheme != "https" or url.hostname is None:
            return None
        return await refusal(url.hostname, url.port or 443,
                             self._tls or ssl.create_default_context(),
                             min(within, PROBE_WAIT))

    async def _greets_in_nats(self, within: float) -> bool:
        """Whether the port says ``INFO {`` unasked, as a NATS client port does."""
        url = urlsplit(self.base_url)
        if url.hostname is None:
            return False

        async def greeting(host: str, port: int) -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                return await reader.read(len(_NATS_GREETING))
            finally:
                writer.close()

        try:
            said = await asyncio.wait_for(greeting(url.hostname, url.port or 80),
                                          min(within, _GREETING_WAIT))
        except (OSError, ValueError, asyncio.TimeoutError):
            return False
        return said == _NATS_GREETING.encode()

    async def _get(self, reply: _Reply, params: Mapping[str, str | int] | None) -> bytearray:
        async with self._session.get(
                reply.url, params=params, timeout=_NO_CLIENT_TIMEOUT, allow_redirects=False,
                headers=self._headers) as resp:
            # Leaving early, by an error or over a limit, closes the connection, not pools it.
            reply.answered = True
            reply.check_head(resp)
            with _body_fails_on_close(resp):
                # Chunks go into one growing buffer: read() would join them into a second
                # whole copy, and the /connz body of 100k connections is 60 MB.
                async for chunk in resp.content.iter_any():
                    reply.feed(chunk)
            return reply.finish()


class _Reply:
    """One reply as it arrives: its limit, the bytes so far on the wire and inflated."""

    def __init__(self, endpoint: str, url: str, limit: int,
                 statuses: Collection[int] = (200,), *, shown: str | None = None) -> None:
        self.endpoint = endpoint
        self.url = url
        #: ``url`` as errors name it, credentials masked.
        self.shown = url if shown is None else shown
        self.limit = limit
        self.statuses = statuses
        self.answered = False
        self.wire = 0
        self.body = bytearray()
        self._inflate: zlib._Decompress | None = None

    def progress(self) -> str:
        if not self.answered:
            return "no response headers"
        inflated = f", {len(self.body)} inflated" if self._inflate is not None else ""
        return f"{self.wire} bytes of body received{inflated}"

    def check_head(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status not in self.statuses:
            reason = f" {resp.reason}" if resp.reason else ""
            detail = f"HTTP {resp.status}{reason} from {self.shown}"
            if 300 <= resp.status < 400:
                location = resp.headers.get("Location", "")
                detail += (f", redirecting to {location!r}; a nats-server monitoring port never "
                           f"redirects: give fastnats the monitoring URL itself")
            raise ScrapeError(self.endpoint, "http_status", detail, status=resp.status)
        if resp.content_length is not None and resp.content_length > self.limit:
            raise self._too_large(f"announces {resp.content_length} bytes (Content-Length)")
        coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("", "identity"):
            wbits = _WBITS.get(coding)
            if wbits is None:
                raise ScrapeError(self.endpoint, "body",
                                  f"{self.shown}: unsupported Content-Encoding {coding!r} "
                                  f"(fastnats asks for {_ACCEPT_ENCODING} or none)")
            self._inflate = zlib.decompressobj(wbits)

    def feed(self, chunk: bytes) -> None:
        self.wire += len(chunk)
        if self.wire > self.limit:
            raise self._too_large(f"sent more than {self.limit} bytes")
        if self._inflate is None:
            self.body += chunk
            return
        # In steps, so that a chunk never inflates to more than a step past the body; one byte
        # more than the room left tells the limit was passed, and no more is inflated.
        data = chunk
        while True:
            step = min(_INFLATE_STEP, self.limit - len(self.body) + 1)
            try:
                out = self._inflate.decompress(data, step)
            except zlib.error as exc:
                raise self._bad_coding(str(exc)) from None
            self.body += out
            if len(self.body) > self.limit:
                raise self._too_large(f"inflates to more than {self.limit} bytes "
                                      f"from {self.wire} on the wire")
            data = self._inflate.unconsumed_tail
            if not data and len(out) < step:
                return

    def finish(self) -> bytearray:
        if self._inflate is not None:
            if not self._inflate.eof:
                raise self._bad_coding("the compressed stream ends early")
            if self._inflate.unused_data:
                raise self._bad_coding("data after the end of the compressed stream")
        return self.body

    def _too_large(self, what: str) -> ScrapeError:
        return ScrapeError(self.endpoint, "too_large",
                           f"{self.shown} {what}, over its limit of {self.limit} bytes; "
                           f"{TOO_LARGE_HINT}")

    def _bad_coding(self, what: str) -> ScrapeError:
        return ScrapeError(self.endpoint, "body", f"{self.shown}: bad compressed body: {what} "
                                                  f"({self.progress()})")


@contextlib.contextmanager
def _body_fails_on_close(resp: aiohttp.ClientResponse) -> Iterator[None]:
    """Fail the body's reader when the connection closes before the body ends.

    aiohttp's compiled parser, failing on bad chunking after the headers, closes the connection
    without a word to the body's reader: it would wait for the deadline and report a timeout,
    or, arriving after the close, raise RuntimeError.
    """
    protocol = resp.connection.protocol if resp.connection is not None else None
    closed = protocol.closed if protocol is not None else None
    if closed is None:
        yield
        return
    body = resp.content

    def on_close(future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()      # retrieved here, so never reported as unretrieved
        if not body.is_eof() and body.exception() is None:
            why = protocol.exception() if protocol is not None else None
            body.set_exception(aiohttp.ClientPayloadError(
                "connection closed before the end of the body" +
                (f": {_first_line(why.message)}" if isinstance(why, HttpProcessingError) else "")))

    closed.add_done_callback(on_close)
    try:
        yield
    finally:
        # A pooled connection outlives this reply.
        closed.remove_done_callback(on_close)


def _body_error(exc: BaseException) -> bool:
    """Whether the server answered in HTTP but broke its reply (bad headers, bad chunks).

    aiohttp raises those as a response error when they come in the same read as the status
    line; a status line that is not HTTP at all is another service, not a broken reply.
    """
    chain = []
    seen: BaseException | None = exc
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return (any(isinstance(e, HttpProcessingError) for e in chain)
            and not any(isinstance(e, BadStatusLine) for e in chain))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError) and exc.message:
        # Its str() repeats the URL.
        return f"malformed HTTP reply: {_first_line(exc.message)}"
    # Some aiohttp errors have no message of their own.
    return str(exc) or type(exc).__name__


def _first_line(message: str) -> str:
    # aiohttp's parser messages go on with a multi-line pointer at the bad byte.
    return message.strip().splitlines()[0].rstrip(":") if message.strip() else message


def new_session(tls: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """The session of every MonitorClient; ``tls`` (``sources.tls.client_context``) is how
    https:// URLs are checked, by default against the system's trust store."""
    # One pooled session for all servers; nats-server serves each endpoint on a short-lived
    # request, so a small per-host limit is enough and keeps a hung server from hoarding sockets.
    # Bodies are inflated by MonitorClient, within their limit.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit_per_host=4, ttl_dns_cache=60,
                                       ssl=True if tls is None else tls),
        auto_decompress=False,
        raise_for_status=False,
    )
