"""A fake nats-server monitoring port on loopback: serves the bodies a test sets, or fails on
purpose, for the tests of broken and slow servers and for the benchmarks' replayed bodies; and
``serving``, any handler of a test's own on a free port."""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.support import connzgen

MODES = ("serve", "hang", "garbage", "status", "cut")
GARBAGE = b'{"server_id": "N1", "version": '


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], *, host: str = "127.0.0.1",
            context: ssl.SSLContext | None = None) -> Iterator[int]:
    """``handler`` served on a free port of ``host`` (TLS with ``context``) until the block
    ends; yields the port."""
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    # A short poll interval: shutdown() waits for the serving loop to notice.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class FakeMonitor:
    """A monitoring port that answers every request as ``mode`` says, which may change any time:

    ``serve`` answers /varz and /connz with the bodies set (404 elsewhere); ``hang`` reads the
    request and never answers; ``garbage`` answers 200 with a body that is not JSON; ``status``
    answers 500; ``cut`` closes the connection as soon as the request arrives.

    It serves ``varz`` at /varz and ``open_body`` or ``closed_body`` at /connz by ``state``
    (open unless the query says closed; by default the closed listing is empty). After
    ``hold_next_open()``, the next open /connz answer sends its headers and half its body, sets
    ``holding`` and sends the rest only once ``release`` is set. ``served`` counts the answers
    (``varz``, ``connz-open``, ``connz-closed``); ``held`` lists the paths of hanging requests.
    """

    def __init__(self, varz: dict | None = None, open_body: bytes = b"", *,
                 closed_body: bytes | None = None, mode: str = "serve") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.varz = None if varz is None else orjson.dumps(varz)
        self.open_body = open_body
        self.closed_body = connzgen.render_body([]) if closed_body is None else closed_body
        self.served: Counter[str] = Counter()
        self.held: list[str] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._closing = threading.Event()
        self._hold = False
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: close() waits for the serving loop to notice.
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="fake-monitor",
                         daemon=True).start()

    def hold_next_open(self) -> None:
        with self._lock:
            self._hold = True

    def _answer(self, path: str) -> tuple[str, bytes | None, bool]:
        url = urlsplit(path)
        if url.path == "/varz":
            return "varz", self.varz, False
        if url.path == "/connz":
            state = parse_qs(url.query).get("state", ["open"])[0]
            if state == "closed":
                return "connz-closed", self.closed_body, False
            with self._lock:
                hold, self._hold = self._hold, False
            return "connz-open", self.open_body, hold
        return "", None, False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go in two writes; without this, delayed ACK adds 40 ms to each.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                mode = monitor.mode
                if mode in ("hang", "cut"):
                    if mode == "hang":
                        monitor.held.append(self.path)
                        monitor._closing.wait()
                    self.close_connection = True
                    return
                if mode == "garbage":
                    self.answer(200, GARBAGE)
                elif mode == "status":
                    self.answer(500, b"")
                else:
                    what, body, hold = monitor._answer(self.path)
                    if body is None:
                        self.send_error(404)
                        return
                    self.answer(200, body, hold)
                    with monitor._lock:
                        monitor.served[what] += 1

            def answer(self, status: int, body: bytes, hold: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if hold:
                    self.wfile.write(body[:len(body) // 2])
                    monitor.holding.set()
                    monitor.release.wait(120)
                    self.wfile.write(body[len(body) // 2:])
                else:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self._closing.set()
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
