"""A TCP fault proxy on loopback, in front of a real nats-server monitoring port.

Requests to an endpoint given a fault are answered as the fault says; every other request passes
through to the server unchanged. The faults are the ways a monitoring reply goes wrong on the way
to the exporter: a peer that hangs or drips, a connection cut or reset in the middle of the body,
broken chunking, an error status or a redirect, corrupted bytes, and bodies too large to hold
(a gzip bomb, an endless chunked stream, a huge Content-Length).

Everything is bounded: the proxy listens on 127.0.0.1 and only reaches a loopback server, every
loop checks that the proxy is still open and within its ``lifetime``, after which it stops by
itself, and ``close()`` joins every thread it started.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import socket
import struct
import termios
import threading
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Each fault, and the reason the exporter gives when a reply fails that way.
FAULT_REASONS = {
    "close": "connect",            # reads the request, closes without a word
    "hang": "timeout",             # reads the request, never answers
    "drip": "timeout",             # the real headers, then the body one byte at a time
    "reset": "body",               # half the real body, then a TCP reset
    "cut": "body",                 # half the real body, then a clean close
    "bad_chunking": "body",        # a chunk, then a chunk size that is not a number
    "status_500": "http_status",
    "status_404": "http_status",
    "redirect": "http_status",     # 302 to the same endpoint on the server itself
    "redirect_loop": "http_status",  # 302 to the very URL asked for
    "corrupt": "decode",           # the real body with bytes in the middle overwritten
    "gzip_bomb": "too_large",      # Content-Encoding: gzip, a little on the wire, much inflated
    "huge_chunked": "too_large",   # a chunked body that goes on for ``huge_size`` bytes
    "huge_length": "too_large",    # Content-Length: ``huge_size``
}
FAULTS = ("pass", *FAULT_REASONS)

_POLL = 0.05
_MAX_HEAD = 64 * 1024
_STREAM_CHUNK = 64 * 1024


@functools.cache
def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes: about a thousandth of that on the wire."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_RLE)
    block = bytes(1 << 20)
    whole, rest = divmod(inflated, len(block))
    parts = [deflate.compress(block) for _ in range(whole)]
    parts += [deflate.compress(block[:rest]), deflate.flush()]
    return b"".join(parts)


@dataclass
class Exchange:
    """One request through the proxy: its path, the fault it met, and the bytes sent back."""

    path: str
    fault: str
    sent: int = 0
    #: The client went away before the proxy finished its answer.
    abandoned: bool = False


class _Closing(Exception):
    """The proxy is closing or past its lifetime: stop what this thread does."""


class _Gone(Exception):
    """The client closed or reset its connection."""


class FaultProxy:
    """A loopback proxy in front of ``upstream`` (``http://127.0.0.1:PORT``); ``url`` is its own.

    ``fault(endpoint, kind)`` sets how requests to ``/endpoint`` are answered (None: every path),
    ``clear()`` lets everything through again, ``seen()`` lists the requests so far. ``drip``
    sends a byte every ``drip_interval`` seconds, ``gzip_bomb`` inflates to ``bomb_size`` bytes,
    ``huge_*`` send ``huge_size`` bytes. After ``lifetime`` seconds the proxy stops by itself.
    """

    def __init__(self, upstream: str, *, lifetime: float = 300.0, drip_interval: float = 0.02,
                 bomb_size: int = 512 << 20, huge_size: int = 1 << 30) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"not an http://HOST:PORT URL: {upstream!r}")
        address = socket.gethostbyname(parts.hostname)
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"the fault proxy only reaches loopback servers, not {upstream!r}")
        self.upstream = (address, parts.port)
        self.upstream_url = f"http://{address}:{parts.port}"
        self.drip_interval = drip_interval
        self.bomb_size = bomb_size
        self.huge_size = huge_size
        self.exchanges: list[Exchange] = []
        self._faults: dict[str | None, str] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fault(self, endpoint: str | None, kind: str) -> None:
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r}: one of {', '.join(FAULTS)}")
        if kind == "gzip_bomb":
            gzip_bomb(self.bomb_size)      # made now, so that no answer waits for it
        with self._lock:
            self._faults[endpoint] = kind

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def seen(self, fault: str | None = None) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if fault is None or e.fault == fault]

    def close(self) -> None:
        self._closing.set()
        self._acceptor.join(10)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)
        alive = [t.name for t in (self._acceptor, *threads) if t.is_alive()]
        if alive:
            raise AssertionError(f"fault proxy threads still running: {alive}")

    # The threads.

    def _check(self) -> None:
        if self._closing.is_set() or time.monotonic() > self._deadline:
            raise _Closing

    def _accept(self) -> None:
        try:
            while True:
                self._check()
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                thread = threading.Thread(target=self._serve, args=(conn,),
                                          name=f"fault-proxy-{len(self._threads)}", daemon=True)
                with self._lock:
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()
        except (_Closing, OSError):
            pass
        finally:
            # Past its lifetime the proxy refuses connections rather than leave them unanswered.
            self._listener.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(_POLL)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        exchange = None
        try:
            request = self._read_head(conn)
            path = request.split(b" ", 2)[1].decode("latin-1")
            endpoint = urlsplit(path).path.strip("/")
            with self._lock:
                kind = self._faults.get(endpoint, self._faults.get(None, "pass"))
                exchange = Exchange(path, kind)
                self.exchanges.append(exchange)
            getattr(self, f"_answer_{kind}")(conn, exchange, request)
        except _Gone:
            if exchange is not None:
                exchange.abandoned = True
        except (_Closing, OSError, IndexError, ValueError):
            pass
        finally:
            conn.close()

    # Socket helpers, every wait bounded.

    def _read_head(self, sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            self._check()
            try:
                got = sock.recv(4096)
            except TimeoutError:
                continue
            if not got:
                raise _Gone
            data += got
            if len(data) > _MAX_HEAD:
                raise _Gone
        return data[:data.index(b"\r\n\r\n") + 4]

    def _send(self, conn: socket.socket, exchange: Exchange, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._check()
            try:
                n = conn.send(view)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _Gone from None
            exchange.sent += n
            view = view[n:]

    def _fetch(self, request: bytes) -> tuple[bytes, list[bytes], bytes]:
        """The server's reply to ``request``: its status line, its other header lines and its
        whole body (unchunked)."""
        raw = self._relay_to_end(request, None, None)
        head, _, body = raw.partition(b"\r\n\r\n")
        status, *headers = head.split(b"\r\n")
        names = {h.split(b":", 1)[0].strip().lower(): h.split(b":", 1)[1].strip()
                 for h in headers}
        if names.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = _unchunk(body)
        kept = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in
                (b"content-length", b"transfer-encoding", b"connection")]
        return status, kept, body

    def _relay_to_end(self, request: bytes, conn: socket.socket | None,
                      exchange: Exchange | None) -> bytes:
        """Send ``request`` to the server as the only request on its connection; stream the reply
        to ``conn`` if given, else return it."""
        lines = [line for line in request[:-4].split(b"\r\n")
                 if not line.lower().startswith(b"connection:")]
        with socket.create_connection(self.upstream, timeout=10) as upstream:
            upstream.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n")
            upstream.settimeout(_POLL)
            kept = bytearray()
            while True:
                self._check()
                try:
                    got = upstream.recv(_STREAM_CHUNK)
                except TimeoutError:
                    continue
                if not got:
                    return bytes(kept)
                if conn is not None and exchange is not None:
                    self._send(conn, exchange, got)
                else:
                    kept += got

    @staticmethod
    def _head(status: bytes, headers: list[bytes], **framing: int | str) -> bytes:
        extra = [f"{name.replace('_', '-')}: {value}".encode() for name, value in framing.items()]
        return b"\r\n".join([status, *headers, *extra, b"Connection: close"]) + b"\r\n\r\n"

    # The answers, one method for each fault, named after it.

    def _answer_pass(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._relay_to_end(request, conn, exchange)

    def _answer_close(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        pass

    def _answer_hang(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        while True:
            self._check()
            try:
                if not conn.recv(4096):
                    raise _Gone
            except TimeoutError:
                continue

    def _answer_drip(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        status, headers, body = self._fetch(request)
        self._send(conn, exchange, self._head(status, headers, Content_Length=len(body)))
        for i in range(len(body)):
            if self._closing.wait(self.drip_interval):
                raise _Closing
            self._send(conn, exchange, body[i:i + 1])

    def _half(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        status, headers, body = self._fetch(request)
        self._send(conn, exchange, self._head(status, headers, Content_Length=len(body)))
        self._send(conn, exchange, body[:len(body) // 2])

    def _answer_reset(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._half(conn, exchange, request)
        # A reset drops what is still in the send queue: let the client's kernel have it first.
        while _unsent(conn):
            self._check()
            time.sleep(_POLL / 10)
        # Linger 0: close() sends RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _answer_cut(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._half(conn, exchange, request)
        conn.shutdown(socket.SHUT_WR)

    def _answer_bad_chunking(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        status, headers, body = self._fetch(request)
        half = body[:len(body) // 2]
        self._send(conn, exchange, self._head(status, headers, Transfer_Encoding="chunked") +
                   b"%x\r\n%s\r\nzz\r\n" % (len(half), half))
        conn.shutdown(socket.SHUT_WR)

    def _status(self, conn: socket.socket, exchange: Exchange, status: bytes, body: bytes,
                **headers: str) -> None:
        self._send(conn, exchange, self._head(
            b"HTTP/1.1 " + status, [b"Content-Type: text/plain; charset=utf-8"],
            Content_Length=len(body), **headers) + body)

    def _answer_status_500(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._status(conn, exchange, b"500 Internal Server Error", b"boom\n")

    def _answer_status_404(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._status(conn, exchange, b"404 Not Found", b"404 page not found\n")

    def _answer_redirect(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._status(conn, exchange, b"302 Found", b"", Location=self.upstream_url + exchange.path)

    def _answer_redirect_loop(self, conn: socket.socket, exchange: Exchange,
                              request: bytes) -> None:
        self._status(conn, exchange, b"302 Found", b"", Location=self.url + exchange.path)

    def _answer_corrupt(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        status, headers, body = self._fetch(request)
        # 0xff never appears in UTF-8, so no JSON reader can take the body for valid.
        middle = len(body) // 2
        body = body[:middle] + b"\xff" * 16 + body[middle + 16:]
        self._send(conn, exchange, self._head(status, headers, Content_Length=len(body)) + body)

    def _answer_gzip_bomb(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        bomb = gzip_bomb(self.bomb_size)
        self._send(conn, exchange, self._head(
            b"HTTP/1.1 200 OK", [b"Content-Type: application/json"], Content_Encoding="gzip",
            Content_Length=len(bomb)) + bomb)

    def _stream_spaces(self, conn: socket.socket, exchange: Exchange, chunked: bool) -> None:
        block = b" " * _STREAM_CHUNK
        if chunked:
            block = b"%x\r\n%s\r\n" % (len(block), block)
        for _ in range(self.huge_size // _STREAM_CHUNK):
            self._send(conn, exchange, block)
        if chunked:
            self._send(conn, exchange, b"0\r\n\r\n")

    def _answer_huge_chunked(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        self._send(conn, exchange, self._head(
            b"HTTP/1.1 200 OK", [b"Content-Type: application/json"], Transfer_Encoding="chunked"))
        self._stream_spaces(conn, exchange, chunked=True)

    def _answer_huge_length(self, conn: socket.socket, exchange: Exchange, request: bytes) -> None:
        length = self.huge_size // _STREAM_CHUNK * _STREAM_CHUNK
        self._send(conn, exchange, self._head(
            b"HTTP/1.1 200 OK", [b"Content-Type: application/json"], Content_Length=length))
        self._stream_spaces(conn, exchange, chunked=False)


def _unsent(sock: socket.socket) -> int:
    """Bytes in the socket's send queue not yet acknowledged by the peer (Linux SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2:end + 2 + size]
        at = end + 2 + size + 2
