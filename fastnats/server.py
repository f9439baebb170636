"""The exporter's HTTP/1.1 server: answers a few fixed paths with bytes prepared elsewhere.

The cache builds a ``Payload`` once per refresh (plain and gzip bodies with their header block);
serving a request is a dict lookup, an Accept-Encoding check and one write, however many series
the payload holds. Nothing is rendered or fetched per request, and this module knows nothing
about NATS. It is built on httptools' parser and ``asyncio.Protocol`` and runs on whatever loop
is running; the CLI installs uvloop.

At most ``max_connections`` connections are open at once, so that idle clients cannot take the
file descriptors the rest of the process needs. A connection beyond the cap is accepted and the
connection that has been quiet longest (no request answered since it was, or since it opened)
is closed to make room: an idle keep-alive connection, a client that never finished its request
or one that stopped reading, long before a scrape in progress. A new scraper is therefore always
served, and a flood of idle connections only shortens how long each of them stays open.
A client that pipelines requests without reading the answers has at most
``MAX_PENDING_ANSWERS`` (and one read's requests, unparsed) held for it: past that the server
stops reading from it until it reads, so what each connection holds stays bounded too.

A ``Gate`` (``HttpServer.gate``; ``fastnats.webconfig`` builds them from ``--web.config.file``)
decides who is served. Without one (None) the server is plain HTTP with no checks at all, and a
request costs one attribute check more than it would without gates. With one, every request is
rate-limited first (429, without the gate's headers) and then authorized before it is routed,
so unknown paths are behind the password too; a refusal is a 401 with ``WWW-Authenticate:
Basic`` and never carries a payload. A password that needs the slow check (bcrypt) is verified
off the connection's path: its answer keeps its place among pipelined answers, and the
connection is not read until it is known, so a client that hangs up meanwhile is noticed when
its answer is written (a connection the server closes meanwhile cancels the check). The gate's
header lines go on every answer to a request (200, 401, 404, 405, 500, 503) but not on 429, nor
on 400/414/431, which refuse bytes that never became a request. The gate is read afresh for
each connection and each request, so assigning a new one (a reload) applies to the next of each.

When the gate has an ``ssl_context`` at start, the listener speaks TLS for its whole life (and
one that started without stays plain). It binds its own sockets and accepts in a loop: the
first byte of each connection says whether it is a TLS handshake, and anything else (plain HTTP
to the TLS port) gets a short 400 and a clean close. The handshake uses the context of the gate
current at that moment (the last one seen, if the gate has none), so a renewed certificate
serves the next connection while established ones carry on; after it, the gate checks the
client's certificate. Connections still waiting for their first byte or their handshake count
against ``max_connections`` and are the first to go when it is reached, so a flood of silent
connections cannot take the descriptors; they time out after 10 seconds (or the keep-alive
timeout, if shorter). ``HttpServer.refused`` counts what was turned away.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import re
import resource
import socket
import ssl
import struct
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Protocol, cast

import httptools

__all__ = [
    "Gate",
    "HttpServer",
    "Payload",
    "REFUSAL_REASONS",
    "Route",
    "Routes",
    "accepts_gzip",
    "default_max_connections",
    "parse_listen_address",
    "start_server",
]

log = logging.getLogger("fastnats.http")

# Abuse limits. A Prometheus scrape request is a few hundred bytes; these leave room for proxies
# and browsers while keeping what one connection can make the server hold small.
MAX_URL_BYTES = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024  # request line plus header lines
MAX_HEADERS = 100
# Answers held back per connection (its client not reading them, or behind a password check)
# before the server stops parsing its pipelined requests; a read is parsed FEED_BYTES at a time
# so that one read of tiny requests cannot queue more than FEED_BYTES // 18 beyond this.
MAX_PENDING_ANSWERS = 32
FEED_BYTES = 1024
# How long a server-initiated close waits for the client to finish sending, so that unread
# request bytes do not turn the close into a reset that destroys the response in flight.
LINGER_SECONDS = 2.0
# The default connection cap takes half the open-file limit, and leaves the other half to the
# rest of the process (monitoring requests, netlink sockets, a nats-server child); a handful of
# Prometheus servers never come near this ceiling, which bounds the memory idle clients can hold.
MAX_CONNECTIONS_CEILING = 4096
# How long an accepted TLS-port connection may take to send its first byte, and then to finish
# its handshake (the keep-alive timeout, if shorter).
TLS_HANDSHAKE_SECONDS = 10.0
# After accept() failed for want of descriptors or memory, pause before accepting again rather
# than spin on the same error.
ACCEPT_RETRY_SECONDS = 1.0
#: Keys of ``HttpServer.refused``, stable names for a metric's label.
REFUSAL_REASONS = ("unauthorized", "rate_limited", "tls_handshake", "plain_http",
                   "client_certificate", "busy")


def default_max_connections() -> int:
    """The connection cap for the current open-file limit: half of it, at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(1, min(soft // 2, MAX_CONNECTIONS_CEILING))


@dataclass(frozen=True, slots=True)
class Payload:
    """One response body, prepared once and served as-is until the route returns another.

    ``gzip_body`` holds the same content gzip-encoded, or None for a page never served gzipped.
    """

    body: bytes
    gzip_body: bytes | None
    content_type: bytes
    # Header lines that depend only on the payload, built here so requests only join bytes.
    _head: bytes = field(init=False, repr=False, compare=False)
    _gzip_head: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError(f"Payload.body must be bytes, not {type(self.body).__name__}")
        if self.gzip_body is not None and not isinstance(self.gzip_body, bytes):
            raise TypeError(
                f"Payload.gzip_body must be bytes or None, not {type(self.gzip_body).__name__}")
        if not isinstance(self.content_type, bytes):
            raise TypeError(
                f"Payload.content_type must be bytes, not {type(self.content_type).__name__}")
        if not self.content_type or any(c < 0x20 or c == 0x7F for c in self.content_type):
            raise ValueError(f"invalid Content-Type for a header: {self.content_type!r}")
        # Vary goes on both encodings: a cache must not hand the identity copy to a gzip client.
        vary = b"" if self.gzip_body is None else b"Vary: Accept-Encoding\r\n"
        object.__setattr__(self, "_head", b"Content-Type: %s\r\nContent-Length: %d\r\n%s" % (
            self.content_type, len(self.body), vary))
        object.__setattr__(self, "_gzip_head", b"" if self.gzip_body is None else (
            b"Content-Type: %s\r\nContent-Length: %d\r\nContent-Encoding: gzip\r\n%s" % (
                self.content_type, len(self.gzip_body), vary)))


class Gate(Protocol):
    """Who may be served, and how: TLS, authentication, rate limit and extra headers.

    The server reads ``HttpServer.gate`` afresh for each connection and each request, so a
    reload swaps in a whole new gate in one assignment (``fastnats.webconfig`` builds them).
    """

    #: Wraps new connections, or None for plain HTTP. Fixed for the life of a listener:
    #: a listener that started with TLS keeps TLS, whatever gate replaces this one.
    ssl_context: ssl.SSLContext | None
    #: Header lines (``b"Name: value\r\n"`` each) added to every response after the rate limit.
    headers: bytes

    def allow_request(self) -> bool:
        """Take a token from the rate limiter; False is answered 429."""

    def check_peer(self, peercert: dict[str, Any] | None) -> bool:
        """Whether a TLS client's verified certificate may connect (``client_allowed_sans``)."""

    def authorize(self, authorization: bytes | None) -> bool | None:
        """The cheap decision on an Authorization header (None when absent): True admits (no
        users configured, or a cached success), False refuses with 401, and None means the
        password must be checked by ``verify()``."""

    async def verify(self, authorization: bytes) -> bool | None:
        """The slow check (bcrypt, off the event loop); remembers a success. None refuses
        without checking: too many checks are already waiting."""


#: Returns the current payload, cheaply, so its owner can swap it atomically; None while there
#: is nothing to serve yet (answered with 503).
Route = Callable[[], Payload | None]
Routes = Mapping[bytes, Route] | Mapping[str, Route]


_QVALUE = re.compile(rb"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _weight(params: bytes) -> float:
    for param in params.split(b";"):
        name, eq, value = param.partition(b"=")
        if eq and name.strip().lower() == b"q":
            value = value.strip()
            # A malformed weight is read as "not acceptable": identity is always safe to send.
            return float(value) if _QVALUE.fullmatch(value) else 0.0
    return 1.0


@functools.lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether an Accept-Encoding value admits gzip (RFC 9110 section 12.5.3).

    An explicit ``gzip`` (or ``x-gzip``) entry decides; otherwise ``*`` does; q=0 refuses.
    """
    gzip_weight: float | None = None
    star_weight: float | None = None
    for item in accept_encoding.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip().lower()
        if coding == b"gzip" or coding == b"x-gzip":
            gzip_weight = max(gzip_weight or 0.0, _weight(params))
        elif coding == b"*":
            star_weight = _weight(params)
    if gzip_weight is not None:
        return gzip_weight > 0
    return star_weight is not None and star_weight > 0


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split a ``--web.listen-address`` value into (host, port).

    Accepts ``:PORT``, ``HOST:PORT`` and ``[IPv6]:PORT``; host ``""`` means every interface.
    Raises ValueError naming the problem.
    """
    def invalid(why: str) -> ValueError:
        return ValueError(f"invalid listen address {address!r}: {why}")

    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise invalid("missing ']' after the IPv6 address")
        host, rest = address[1:end], address[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(f"{host!r} in brackets is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise invalid("expected ':PORT' after ']'")
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise invalid("expected [HOST]:PORT, e.g. :7777")
        if ":" in host:
            raise invalid(f"write an IPv6 address in brackets, as [{host}]:{port_text}")
        if host and not _HOSTNAME.fullmatch(host):
            raise invalid(f"{host!r} is not a host name or IPv4 address")
    if not port_text:
        raise invalid("missing port")
    # isdigit() alone admits non-ASCII digits that int() would quietly accept.
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise invalid(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def _page(text: bytes) -> Payload:
    return Payload(text, None, b"text/plain; charset=utf-8")


_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
_STATUS_401 = b"HTTP/1.1 401 Unauthorized\r\n"
_STATUS_404 = b"HTTP/1.1 404 Not Found\r\n"
_STATUS_405 = b"HTTP/1.1 405 Method Not Allowed\r\n"
_STATUS_429 = b"HTTP/1.1 429 Too Many Requests\r\n"
_STATUS_500 = b"HTTP/1.1 500 Internal Server Error\r\n"
_STATUS_503 = b"HTTP/1.1 503 Service Unavailable\r\n"
_NOT_FOUND = _page(b"404 page not found\n")
_NOT_ALLOWED = _page(b"405 method not allowed; use GET or HEAD\n")
_INTERNAL_ERROR = _page(b"500 internal server error\n")
_NOT_READY = _page(b"503 nothing to serve yet\n")
_UNAUTHORIZED = _page(b"401 Unauthorized\n")
_TOO_MANY_REQUESTS = _page(b"429 too many requests\n")
_PLAIN_HTTP_TO_TLS = _page(b"Client sent an HTTP request to an HTTPS server.\n")
_WWW_AUTHENTICATE = b"WWW-Authenticate: Basic\r\n"
# Stands for an Authorization header sent more than once, which is refused; httptools never
# hands over a header value holding CR LF, so no real header can be this value.
_REPEATED = b"\r\n"
_ALLOW = b"Allow: GET, HEAD\r\n"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, zero seconds


@dataclass(frozen=True, slots=True)
class _Rejection:
    status_line: bytes
    page: Payload


_BAD_REQUEST = _Rejection(b"HTTP/1.1 400 Bad Request\r\n", _page(b"400 bad request\n"))
_URL_TOO_LONG = _Rejection(b"HTTP/1.1 414 URI Too Long\r\n", _page(b"414 URI too long\n"))
_HEAD_TOO_LARGE = _Rejection(b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                             _page(b"431 request header fields too large\n"))


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""


def _route_key(path: bytes | str) -> bytes:
    key = path.encode("ascii") if isinstance(path, str) else path
    if not isinstance(key, bytes) or not key.startswith(b"/"):
        raise ValueError(f"a route path must start with '/': {path!r}")
    return key


class HttpServer:
    """A running server: its bound addresses, counters, gate and shutdown.

    ``gate`` is read for each new connection and each request; assign another to reload.
    ``refused`` counts, since start, what was turned away (keys in ``REFUSAL_REASONS``):

    - ``unauthorized``: requests answered 401 (no, wrong or repeated Authorization header);
    - ``rate_limited``: requests answered 429;
    - ``tls_handshake``: connections to a TLS listener closed before their handshake completed
      (a failed handshake, e.g. an unknown or missing client certificate; no first byte or no
      finished handshake in time; or closed to make room). A client that closes (or resets)
      before sending a byte is not counted: a TCP probe asks for nothing;
    - ``plain_http``: connections to a TLS listener that spoke plain HTTP (answered 400);
    - ``client_certificate``: TLS connections whose verified certificate the gate refused;
    - ``busy``: requests answered 401 unchecked, because too many password checks were waiting
      (a flood of guesses, told apart from a wrong password).
    """

    def __init__(self, routes: Routes, keepalive_timeout: float, max_connections: int,
                 gate: Gate | None = None) -> None:
        if not keepalive_timeout > 0:
            raise ValueError(f"keepalive_timeout must be positive, not {keepalive_timeout!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) \
                or max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer, not "
                             f"{max_connections!r}")
        self.routes: dict[bytes, Route] = {}
        for path, route in routes.items():
            if not callable(route):
                raise TypeError(f"the route for {path!r} must be a callable returning a Payload")
            self.routes[_route_key(path)] = route
        self.keepalive_timeout = keepalive_timeout
        self.max_connections = max_connections
        self.linger = min(LINGER_SECONDS, keepalive_timeout)
        self.handshake_timeout = min(TLS_HANDSHAKE_SECONDS, keepalive_timeout)
        self.gate = gate
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self.shutting_down = False
        self._route_failure_logged = False
        self._gate_failure_logged = False
        self._cap_logged = False
        self._accept_failure_logged = False
        self._listener: asyncio.Server | None = None
        # A TLS listener's own sockets (as bound), accept loops, and the context last used.
        self._bound: list[tuple[str, int]] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._ssl_context: ssl.SSLContext | None = None
        # Accepted TLS-port sockets before their handshake completes, the oldest first.
        self._admitting: OrderedDict[_Admission, None] = OrderedDict()
        # Handshakes and password checks in flight, awaited by wait_closed().
        self._tasks: set[asyncio.Task[Any]] = set()
        # Open connections, the one quiet longest first.
        self._connections: OrderedDict[_Connection, None] = OrderedDict()
        self._all_closed: asyncio.Future[None] | None = None
        self._date_second = -1
        self._date_line = b""

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket; with host "" and port 0 ports may differ."""
        if self._listener is None:
            return list(self._bound)
        return [sock.getsockname()[:2] for sock in self._listener.sockets]

    @property
    def port(self) -> int:
        """The port of the first listening socket."""
        return self.addresses[0][1]

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS."""
        return self._ssl_context is not None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        """Stop listening and close every connection, after its pending response is flushed.

        Connections still before their TLS handshake are closed at once.
        """
        if self.shutting_down:
            return
        self.shutting_down = True
        if self._listener is not None:
            self._listener.close()
        for task in self._accepting:
            task.cancel()
        for admission in list(self._admitting):
            admission.close()
        if self._connections:
            self._all_closed = asyncio.get_running_loop().create_future()
            for conn in list(self._connections):
                conn.shut_down()

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed; call close() first."""
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        if self._all_closed is not None:
            await self._all_closed
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> HttpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    def _date_line_now(self) -> bytes:
        # Formatting a date per request would be rendering on the request path; it changes once
        # a second, so build the header line once a second.
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode("ascii")
        return self._date_line

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _log_gate_failure(self, what: str, exc: BaseException) -> None:
        # A bug in the gate: refuse (never serve on an error), say so once, count every one.
        if not self._gate_failure_logged:
            self._gate_failure_logged = True
            log.error("the gate failed to %s; refusing", what, exc_info=exc)

    def _log_cap(self) -> None:
        if not self._cap_logged:
            self._cap_logged = True
            log.warning("%d connections are open, the most allowed (--web.max-connections); "
                        "from now on a new connection closes the one quiet longest",
                        len(self._connections) + len(self._admitting))

    def _connection_opened(self, conn: _Connection) -> None:
        connections = self._connections
        if len(connections) >= self.max_connections:
            self._log_cap()
            quietest, _ = connections.popitem(last=False)
            quietest.evict()
        connections[conn] = None

    def _connection_active(self, conn: _Connection) -> None:
        if conn in self._connections:
            self._connections.move_to_end(conn)

    def _connection_closed(self, conn: _Connection) -> None:
        self._connections.pop(conn, None)
        if not self._connections and self._all_closed is not None and not self._all_closed.done():
            self._all_closed.set_result(None)

    # --- the TLS listener ---

    def _serve_tls(self, sockets: list[socket.socket], context: ssl.SSLContext) -> None:
        self._ssl_context = context
        self._bound = [sock.getsockname()[:2] for sock in sockets]
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept(sock)) for sock in sockets]

    def _current_ssl_context(self) -> ssl.SSLContext:
        # A listener that started with TLS keeps it: a gate without a context (or no gate)
        # leaves the last one in use.
        gate = self.gate
        if gate is not None and gate.ssl_context is not None:
            self._ssl_context = gate.ssl_context
        assert self._ssl_context is not None
        return self._ssl_context

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    sock, peer = await loop.sock_accept(listening)
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as exc:
                    if listening.fileno() < 0:
                        return
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        if not self._accept_failure_logged:
                            self._accept_failure_logged = True
                            log.warning("cannot accept connections: %s; retrying every %gs",
                                        exc.strerror or exc, ACCEPT_RETRY_SECONDS)
                        await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                    else:
                        log.debug("accept failed: %s", exc)
                    continue
                self._admit(sock, peer)
        finally:
            listening.close()

    def _admit(self, sock: socket.socket, peer: Any) -> None:
        waiting = self._admitting
        if len(self._connections) + len(waiting) >= self.max_connections:
            self._log_cap()
            if waiting:
                # Still silent or mid-handshake: cheaper to lose than an established client.
                next(iter(waiting)).evict()
            else:
                quietest, _ = self._connections.popitem(last=False)
                quietest.evict()
        sock.setblocking(False)
        waiting[_Admission(self, sock, peer)] = None

    def _plain_http_answer(self) -> bytes:
        page = _PLAIN_HTTP_TO_TLS
        return b"".join((_BAD_REQUEST.status_line, self._date_line_now(), page._head, _CLOSE,
                         b"\r\n", page.body))


async def _bind(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for host:port as ``loop.create_server`` would bind them: one per
    address the host resolves to (every interface, IPv4 and IPv6, for ""/None), IPv6 ones
    IPv6-only, SO_REUSEADDR, non-blocking."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, family=socket.AF_UNSPEC,
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this host cannot open, such as IPv6 when it is disabled
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Otherwise the IPv6 socket would also take IPv4 and collide with the IPv4 one.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"error while attempting to bind on address "
                                         f"{address!r}: {exc.strerror}") from None
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets:
            raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for {host!r}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Admission:
    """A socket accepted by a TLS listener, until its handshake completes.

    Its first byte decides: a TLS handshake record goes to the loop's TLS transport (with the
    current gate's context), anything else is plain HTTP and gets a 400. Until then it waits
    for that byte with a reader and a deadline, not a task, so silent connections cost little.
    """

    __slots__ = ("_server", "_loop", "_sock", "_fd", "peer", "_timer", "_task", "_handed",
                 "_answered", "_closed")

    def __init__(self, server: HttpServer, sock: socket.socket, peer: Any) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self.peer = peer
        self._task: asyncio.Task[None] | None = None
        self._handed = False  # the loop's transport owns the socket
        self._answered = False  # plain HTTP, answered; draining until the client closes
        self._closed = False
        self._loop.add_reader(self._fd, self._readable)
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            server.handshake_timeout, self._expired)

    def _readable(self) -> None:
        if self._answered:
            if self._drain():
                self.close()
            return
        try:
            first = self._sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc, counted=False)
            return
        if not first:
            # A TCP probe (a load balancer's, Kubernetes' tcpSocket) or a port check: it asked
            # for nothing, so nothing was refused.
            self._fail("closed before sending anything", counted=False)
        elif first == b"\x16":  # a TLS handshake record
            self._loop.remove_reader(self._fd)
            if self._timer is not None:
                self._timer.cancel()  # the handshake has its own timeout
                self._timer = None
            self._task = self._loop.create_task(self._handshake())
            self._server._track(self._task)
        else:
            self._refuse_plain_http()

    async def _handshake(self) -> None:
        self._handed = True
        server = self._server
        loop = self._loop
        options: dict[str, Any] = {"ssl_handshake_timeout": server.handshake_timeout}
        if sys.version_info >= (3, 11) or not isinstance(loop, asyncio.BaseEventLoop):
            options["ssl_shutdown_timeout"] = server.linger  # uvloop, or asyncio from 3.11
        try:
            await loop.connect_accepted_socket(
                lambda: _TlsConnection(server, self), self._sock,
                ssl=server._current_ssl_context(), **options)
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            # Clients with the wrong certificate, scanners, timeouts: routine, so no traceback.
            if not self._closed:
                server.refused["tls_handshake"] += 1
                log.debug("TLS handshake with %s failed: %s: %s", self.peer,
                          type(exc).__name__, exc)
        except Exception as exc:
            if not self._closed:
                server.refused["tls_handshake"] += 1
                server._log_gate_failure("set up a TLS connection", exc)
        finally:
            self.handed_over()

    def handed_over(self) -> None:
        """The handshake is over (either way): leave the waiting set; the loop owns the socket."""
        self._closed = True
        self._server._admitting.pop(self, None)

    def _refuse_plain_http(self) -> None:
        server = self._server
        server.refused["plain_http"] += 1
        log.debug("answering 400 to %s: plain HTTP sent to the TLS port", self.peer)
        closed = self._drain()
        try:
            # A fresh socket's send buffer takes this short answer whole.
            self._sock.send(server._plain_http_answer())
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            closed = True
        if closed:
            self.close()
            return
        # Keep reading (and discarding) until the client closes, so unread bytes cannot make
        # the close a reset that destroys the answer.
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(server.linger, self._expired)

    def _drain(self) -> bool:
        """Discard what the client sent; True once it closed its side (or broke)."""
        for _ in range(64):  # a bounded turn, so that a fast sender cannot hold the loop
            try:
                if not self._sock.recv(65536):
                    return True
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
        return False

    def _expired(self) -> None:
        self._timer = None
        if not self._answered:
            self._fail(f"no TLS handshake within {self._server.handshake_timeout:g}s")
        else:
            self.close()

    def evict(self) -> None:
        """Close to make room for a newer connection."""
        if self._answered:
            self.close()  # already counted as plain HTTP
        else:
            self._fail("closed before its handshake, to make room")

    def _fail(self, why: object, counted: bool = True) -> None:
        if counted:
            self._server.refused["tls_handshake"] += 1
        log.debug("TLS handshake with %s failed: %s", self.peer, why)
        self.close()

    def close(self) -> None:
        """Close the socket, or cancel its handshake, and leave the waiting set."""
        if self._closed:
            return
        self._closed = True
        self._server._admitting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()  # the transport closes the socket if it has it
            if self._handed:
                return
        else:
            self._loop.remove_reader(self._fd)
        self._sock.close()


# (header block, body or None for no body, close the connection after it)
_Response = tuple[bytes, bytes | None, bool]


class _Check:
    """A request whose password is being verified, holding its answer's place in the queue.

    Both possible answers are built when the request completes, from what it asked for then
    (method, path, Accept-Encoding, keep-alive, HTTP version): the routed one is queued right
    behind this placeholder, and ``refused`` (the 401) replaces it if the password is wrong.
    """

    __slots__ = ("authorization", "task", "verdict", "refused")

    def __init__(self, authorization: bytes, task: asyncio.Task[bool | None]) -> None:
        self.authorization = authorization
        self.task = task
        self.verdict: bool | None = None  # None while the check is in flight
        self.refused: _Response = (b"", None, True)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers each as soon as it is complete.

    Answers are written in the order requests complete, which is what pipelining requires,
    including answers that wait for a password check.
    """

    __slots__ = (
        "_server", "_routes", "_loop", "_parser", "_transport", "_url", "_accept_encoding",
        "_authorization", "_headers", "_head_bytes", "_head_chunk_bytes", "_in_head", "_began",
        "_rejection", "_expects_continue", "_has_body", "_pending", "_write_paused", "_closing",
        "_lingering", "_deadline", "_timer", "_timer_when", "_stall_mark", "_unparsed",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._routes = server.routes
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._accept_encoding: bytes | None = None
        self._authorization: bytes | None = None
        self._headers = 0
        self._head_bytes = 0  # exact, from completed request-line and header callbacks
        self._head_chunk_bytes = 0  # whole reads that fell inside one unfinished head
        self._in_head = False
        self._began = False  # a request began during the current feed_data()
        self._rejection: _Rejection | None = None
        self._expects_continue = False  # Expect: 100-continue
        self._has_body = False  # Content-Length above 0, or Transfer-Encoding
        # Responses held back while the transport is over its high-water mark, or behind a
        # password check.
        self._pending: deque[_Response | _Check] = deque()
        self._write_paused = False
        self._closing = False  # the last response is decided; input is discarded from here on
        self._lingering = False
        # One lazily re-armed timer per connection instead of one call_later per request.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._stall_mark = -1  # write buffer size when the deadline last passed
        # Pipelined request bytes read but not yet parsed, held while too many answers wait.
        self._unparsed = b""

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self._server._connection_opened(self)
        self._extend_deadline(self._server.keepalive_timeout)
        if self._server.shutting_down:
            self.shut_down()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._drop_pending()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server._connection_closed(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._unparsed:
            self._unparsed += data  # read before pause_reading() took effect: keep the order
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Parse ``data`` a slice at a time; past MAX_PENDING_ANSWERS held-back answers, keep
        the rest unparsed and stop reading until they are written (``_flush``)."""
        if len(data) <= FEED_BYTES:
            self._feed(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), FEED_BYTES):
            if self._closing:
                return
            if len(self._pending) >= MAX_PENDING_ANSWERS:
                self._unparsed = bytes(view[start:])
                if self._transport is not None:
                    self._transport.pause_reading()
                return
            self._feed(view[start:start + FEED_BYTES])

    def _feed(self, data: bytes | memoryview) -> None:
        self._began = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return  # already answered with Connection: close by on_message_complete()
        except httptools.HttpParserError as exc:
            if self._closing:
                return  # bytes after a request that asked to close
            rejection = self._rejection
            if rejection is None:
                if isinstance(exc, httptools.HttpParserCallbackError):
                    raise  # a bug in a callback here, not a bad request: let the loop report it
                rejection = _BAD_REQUEST
            log.debug("answering %s to %s: %s", rejection.status_line[9:12].decode(),
                      self._transport and self._transport.get_extra_info("peername"), exc)
            self._respond(rejection.status_line, rejection.page, False, False)
            return
        if self._in_head and not self._began:
            # httptools buffers an unfinished header line itself, beyond what the callbacks
            # see, so also count reads that carried nothing but head bytes.
            self._head_chunk_bytes += len(data)
            if self._head_chunk_bytes > MAX_HEAD_BYTES:
                self._respond(_HEAD_TOO_LARGE.status_line, _HEAD_TOO_LARGE.page, False, False)

    def pause_writing(self) -> None:
        self._write_paused = True
        if not self._closing and self._transport is not None:
            # Stop taking requests from a client that does not read its responses. This also
            # holds back its EOF, so the default eof_received() (close once flushed) never
            # drops a held-back response.
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flush()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._began = True
        self._in_head = True
        self._url = b""
        self._accept_encoding = None
        self._authorization = None
        self._expects_continue = False
        self._has_body = False
        self._headers = 0
        self._head_bytes = 0
        self._head_chunk_bytes = 0

    def on_url(self, fragment: bytes) -> None:
        self._url += fragment
        self._head_bytes += len(fragment)
        if len(self._url) > MAX_URL_BYTES:
            self._reject(_URL_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._headers > MAX_HEADERS or self._head_bytes > MAX_HEAD_BYTES:
            self._reject(_HEAD_TOO_LARGE)
        # The length first: most headers are none of these, and are not lowercased.
        size = len(name)
        if size == 15 and name.lower() == b"accept-encoding":
            # Repeated fields combine into one list (RFC 9110 section 5.3).
            self._accept_encoding = (value if self._accept_encoding is None
                                     else self._accept_encoding + b"," + value)
        elif size == 6 and name.lower() == b"expect":
            self._expects_continue = value.strip().lower() == b"100-continue"
        elif size == 14 and name.lower() == b"content-length":
            self._has_body = self._has_body or value.strip() not in (b"", b"0")
        elif size == 17 and name.lower() == b"transfer-encoding":
            self._has_body = True
        elif size == 13 and name.lower() == b"authorization":
            # Two credentials are ambiguous: refuse rather than pick one.
            self._authorization = value if self._authorization is None else _REPEATED

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._expects_continue and self._has_body:
            # No route takes a body, so the answer is known now (RFC 9110 section 10.1.1);
            # waiting for the body would leave the client waiting for a 100 Continue. The client
            # may send the body or not, so the connection cannot carry another request.
            self._answer(False)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        parser = self._parser
        # Upgrade (websocket, h2c, CONNECT) is not offered; what follows such a request on the
        # wire is not HTTP/1.1, so answer it as a plain request and close.
        self._answer(parser.should_keep_alive() and not parser.should_upgrade())

    def _answer(self, keep_alive: bool) -> None:
        server = self._server
        parser = self._parser
        keep_alive = keep_alive and not server.shutting_down
        method = parser.get_method()
        head_only = method == b"HEAD"
        extra = b""
        gate = server.gate
        if gate is not None:
            # Before routing, so that even a 404 says nothing to a client not let in.
            gated = self._pass_gate(gate, head_only, keep_alive)
            if gated is None:
                return
            extra = gated
        path = self._path()
        route = None if path is None else self._routes.get(path)
        if route is None:
            self._respond(_STATUS_404, _NOT_FOUND, head_only, keep_alive, extra)
            return
        if method != b"GET" and not head_only:
            self._respond(_STATUS_405, _NOT_ALLOWED, False, keep_alive, _ALLOW + extra)
            return
        try:
            payload = route()
            if payload is None:
                self._respond(_STATUS_503, _NOT_READY, head_only, keep_alive, extra)
                return
            if not isinstance(payload, Payload):
                raise TypeError(f"the route returned {type(payload).__name__}, not a Payload")
        except Exception:
            # A bug in the owner of the route; say so once, count every occurrence.
            if not server._route_failure_logged:
                server._route_failure_logged = True
                log.exception("a route failed to produce its payload; answering 500")
            self._respond(_STATUS_500, _INTERNAL_ERROR, head_only, keep_alive, extra)
            return
        self._respond(_STATUS_200, payload, head_only, keep_alive, extra)

    # --- the gate ---

    def _pass_gate(self, gate: Gate, head_only: bool, keep_alive: bool) -> bytes | None:
        """The header lines the answer to this request carries, or None if it was refused here.

        A request whose password needs the slow check passes too: it is routed as usual, but
        its answer waits behind a placeholder (see ``_Check``).
        """
        server = self._server
        if not gate.allow_request():
            server.refused["rate_limited"] += 1
            self._respond(_STATUS_429, _TOO_MANY_REQUESTS, head_only, keep_alive)
            return None
        authorization = self._authorization
        verdict = False if authorization is _REPEATED else gate.authorize(authorization)
        if verdict is True:
            return gate.headers
        if verdict is None and authorization is not None:
            self._check(gate, authorization, head_only, keep_alive)
            return gate.headers
        server.refused["unauthorized"] += 1
        self._respond(_STATUS_401, _UNAUTHORIZED, head_only, keep_alive,
                      _WWW_AUTHENTICATE + gate.headers)
        return None

    def _check(self, gate: Gate, authorization: bytes, head_only: bool, keep_alive: bool) -> None:
        pending = self._pending
        # An earlier check of the same credentials on this connection (pipelined requests)
        # decides this one too.
        task = None
        for entry in reversed(pending):
            if isinstance(entry, _Check):
                if entry.verdict is None and entry.authorization == authorization:
                    task = entry.task
                break
        if task is None:
            task = self._loop.create_task(gate.verify(authorization))
            self._server._track(task)
        check = _Check(authorization, task)
        # With the placeholder queued, _respond() queues behind it instead of writing.
        pending.append(check)
        self._respond(_STATUS_401, _UNAUTHORIZED, head_only, keep_alive,
                      _WWW_AUTHENTICATE + gate.headers)
        check.refused = cast(_Response, pending.pop())
        task.add_done_callback(functools.partial(self._checked, check))
        if self._transport is not None:
            # No more requests until this one is decided (pipelined ones already read queue
            # up). The loop then no longer watches the socket, so a client that hangs up
            # meanwhile is noticed when its answer is written.
            self._transport.pause_reading()

    def _checked(self, check: _Check, task: asyncio.Task[bool | None]) -> None:
        if check.verdict is not None or task.cancelled() or self._transport is None:
            return  # the connection went away meanwhile
        exc = task.exception()
        if exc is not None:
            self._server._log_gate_failure("verify a password", exc)
        result = None if exc is not None else task.result()
        check.verdict = result is True
        if not check.verdict:
            busy = exc is None and result is None
            self._server.refused["busy" if busy else "unauthorized"] += 1
        self._flush()

    # --- internals ---

    def _path(self) -> bytes | None:
        url = self._url
        if url[:1] == b"/":
            return url.partition(b"?")[0]
        try:
            # absolute-form ("GET http://host/metrics"), which servers must accept
            return httptools.parse_url(url).path
        except httptools.HttpParserInvalidURLError:
            return None

    def _reject(self, rejection: _Rejection) -> None:
        self._rejection = rejection
        raise _Rejected

    def _respond(self, status_line: bytes, payload: Payload, head_only: bool, keep_alive: bool,
                 extra: bytes = b"") -> None:
        accept_encoding = self._accept_encoding
        if (payload.gzip_body is not None and accept_encoding is not None
                and accepts_gzip(accept_encoding)):
            head, body = payload._gzip_head, payload.gzip_body
        else:
            head, body = payload._head, payload.body
        if not keep_alive:
            connection = _CLOSE
        elif self._parser.get_http_version() == "1.0":
            connection = _KEEP_ALIVE
        else:
            connection = b""
        response = (b"".join((status_line, self._server._date_line_now(), head, extra, connection,
                              b"\r\n")),
                    None if head_only or not body else body,
                    not keep_alive)
        if not keep_alive:
            self._closing = True
        self._server._connection_active(self)
        self._extend_deadline(self._server.keepalive_timeout)
        if self._pending or self._write_paused:
            self._pending.append(response)
        else:
            self._write(*response)

    def _flush(self) -> None:
        """Write held-back answers in order, up to a check still in flight."""
        pending = self._pending
        while pending and not self._write_paused:
            entry = pending.popleft()
            if isinstance(entry, _Check):
                if entry.verdict is None:
                    pending.appendleft(entry)
                    return
                if not entry.verdict:
                    pending[0] = entry.refused  # instead of the routed answer behind it
                continue
            self._write(*entry)
        if pending or self._write_paused or self._transport is None:
            return
        if self._closing:
            self._finish()
            return
        unparsed = self._unparsed
        if unparsed:
            self._unparsed = b""
            self._parse(unparsed)
            if (self._unparsed or self._pending or self._write_paused or self._closing
                    or self._transport is None):
                return  # paused again, or closing (_finish has its own reading)
        self._transport.resume_reading()

    def _drop_pending(self) -> None:
        self._unparsed = b""
        for entry in self._pending:
            if isinstance(entry, _Check) and entry.verdict is None:
                entry.verdict = False
                entry.task.cancel()
        self._pending.clear()

    def _write(self, header: bytes, body: bytes | None, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if body is None:
            transport.write(header)
        else:
            # writev on uvloop: the body is shared with every other request, never copied.
            transport.writelines((header, body))
        if close:
            self._finish()

    def _finish(self) -> None:
        """Close after the last response: flush it, then half-close and drain the client."""
        self._closing = True
        transport = self._transport
        if self._lingering or transport is None or transport.is_closing():
            return
        if self._pending:
            return  # resume_writing() finishes once the held-back responses are written
        if not transport.can_write_eof():
            transport.close()  # TLS: close_notify, bounded by the linger deadline
            self._extend_deadline(self._server.linger, force=True)
            return
        self._lingering = True
        transport.write_eof()
        # Keep reading (and discarding) until the client closes, so its unread bytes cannot
        # make the kernel reset the connection under the response.
        transport.resume_reading()
        self._extend_deadline(self._server.linger, force=True)

    def evict(self) -> None:
        """Close at once, to make room for a new connection; unsent bytes are dropped."""
        self._closing = True
        self._drop_pending()
        if self._transport is not None:
            self._transport.abort()

    def shut_down(self) -> None:
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        self._drop_pending()
        transport.close()
        # close() waits for the write buffer to drain; bound that for clients that never read.
        self._extend_deadline(self._server.linger, force=True)

    def _extend_deadline(self, seconds: float, force: bool = False) -> None:
        if self._closing and not force:
            return  # a closing connection keeps its shorter linger deadline
        deadline = self._deadline = self._loop.time() + seconds
        if self._timer is None or deadline < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        if self._loop.time() < self._deadline:
            self._arm(self._deadline)
            return
        buffered = transport.get_write_buffer_size()
        if not buffered:
            if transport.is_closing():
                transport.abort()  # a TLS close the client never completed
            else:
                transport.close()  # idle, or done lingering
        elif buffered != self._stall_mark:
            # Still sending a large response to a slow reader: give it another period.
            self._stall_mark = buffered
            server = self._server
            self._extend_deadline(server.linger if self._closing else server.keepalive_timeout,
                                  force=True)
        else:
            # The client stopped reading. Reset rather than close: a close would leave the kernel
            # holding the unsent bytes, retrying a window that never opens.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            transport.abort()


class _TlsConnection(_Connection):
    """A connection from a TLS listener: made once the handshake is done, if the gate then
    accepts the client's certificate."""

    __slots__ = ("_admission",)

    def __init__(self, server: HttpServer, admission: _Admission) -> None:
        super().__init__(server)
        self._admission = admission

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._admission.handed_over()  # before it counts as open, so it is not counted twice
        server = self._server
        gate = server.gate
        if gate is not None:
            peercert = transport.get_extra_info("peercert")
            try:
                allowed = gate.check_peer(peercert) is True
            except Exception as exc:
                server._log_gate_failure("check a client certificate", exc)
                allowed = False
            if not allowed:
                server.refused["client_certificate"] += 1
                log.debug("refusing %s: the gate does not accept its certificate",
                          transport.get_extra_info("peername"))
                self._closing = True
                cast(asyncio.Transport, transport).abort()
                return
        super().connection_made(transport)


async def start_server(routes: Routes, host: str | None, port: int, *,
                       keepalive_timeout: float = 75.0, backlog: int = 1024,
                       max_connections: int | None = None,
                       gate: Gate | None = None) -> HttpServer:
    """Listen on host:port and serve ``routes`` until the returned server is closed.

    ``host`` "" or None listens on every interface; ``port`` 0 picks a free port (see
    ``HttpServer.addresses``). Idle keep-alive connections close after ``keepalive_timeout``.
    At most ``max_connections`` are open at once (default: :func:`default_max_connections`);
    a new one beyond that closes the connection quiet longest. ``gate`` (see ``Gate``) decides
    who is served; if it has an ``ssl_context`` now, the listener speaks TLS until closed.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, not {port}")
    if max_connections is None:
        max_connections = default_max_connections()
    server = HttpServer(routes, keepalive_timeout, max_connections, gate)
    if gate is not None and gate.ssl_context is not None:
        server._serve_tls(await _bind(host, port, backlog), gate.ssl_context)
        return server
    loop = asyncio.get_running_loop()
    server._listener = await loop.create_server(
        lambda: _Connection(server), host or None, port, backlog=backlog, reuse_address=True)
    return server
