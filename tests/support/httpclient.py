"""A raw HTTP/1.1 client over a blocking socket, for the tests that check every byte the
exporter's HTTP server sends: requests go out as given, responses are parsed just enough to
check them."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

RECV_TIMEOUT = 5.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [ -~]+")


@dataclasses.dataclass
class Response:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(values) <= 1, f"{name!r} repeated"
        return values[0] if values else None

    def header_names(self) -> list[bytes]:
        return [n for n, _ in self.headers]

    def without_date(self) -> list[tuple[bytes, bytes]]:
        return [(n, v) for n, v in self.headers if n != b"Date"]


class Client:
    """A raw HTTP/1.1 client: bytes in, responses parsed just enough to check them."""

    def __init__(self, port: int, host: str = "127.0.0.1", family: int = socket.AF_INET,
                 rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(RECV_TIMEOUT)
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(f"connection closed with {bytes(self.buf[:200])!r} unparsed")
        self.buf += chunk

    def read_response(self, head_only: bool = False) -> Response:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        status_line, *lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[:end + 4]
        assert STATUS_LINE.fullmatch(status_line), f"bad status line {status_line!r}"
        headers = []
        for line in lines:
            name, sep, value = line.partition(b": ")
            assert sep and name and value, f"bad header line {line!r}"
            headers.append((name, value))
        response = Response(status_line, headers, b"")
        length = 0 if head_only else int(response.header(b"Content-Length") or b"0")
        while len(self.buf) < length:
            self._fill()
        response.body = bytes(self.buf[:length])
        del self.buf[:length]
        return response

    def request(self, path: bytes = b"/metrics", method: bytes = b"GET",
                headers: bytes = b"") -> Response:
        self.send(b"%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method, path, headers))
        return self.read_response(head_only=method == b"HEAD")

    def assert_closed(self) -> None:
        """The server closed cleanly: no stray bytes, then EOF (not a reset)."""
        assert bytes(self.buf) == b""
        assert self.sock.recv(65536) == b""


Connect = Callable[..., Client]


@contextmanager
def opened_clients() -> Iterator[Connect]:
    """Opens clients (``Client``'s arguments) that are all closed on the way out."""
    with ExitStack() as opened:
        def open_client(port: int, **options: Any) -> Client:
            return opened.enter_context(Client(port, **options))

        yield open_client
