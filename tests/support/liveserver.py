"""The exporter's HTTP server in the test's process, for the tests that speak to it over real
sockets: each server runs on its own event-loop thread (uvloop or the stdlib loop) on an
ephemeral port, and the test thread is the client. With the payloads it serves, and a fake gate
whose every decision the test makes."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from fastnats.server import Gate, HttpServer, Payload, Routes, start_server

NewLoop = Callable[[], asyncio.AbstractEventLoop]
#: The loops every server test runs on, by the name a test's id shows.
EVENT_LOOPS: dict[str, NewLoop] = {"uvloop": uvloop.new_event_loop,
                                   "asyncio": asyncio.SelectorEventLoop}

METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
METRICS_TEXT = b"".join(
    b"# HELP m%d A metric.\n# TYPE m%d gauge\nm%d{server=\"n-%d\"} %d\n" % (i, i, i, i, i * 7)
    for i in range(200))
METRICS = Payload(METRICS_TEXT, gzip.compress(METRICS_TEXT), METRICS_TYPE)
HEALTHZ = Payload(b"ok\n", None, b"text/plain; charset=utf-8")
# Bigger than the transports' 64 KiB high-water mark, so one response pauses writing.
BIG = Payload(os.urandom(96 * 1024), None, b"application/octet-stream")


class LiveServer:
    """A server on its own loop thread, driven from the test thread."""

    def __init__(self, new_loop: NewLoop, routes: Routes, host: str | None = "127.0.0.1",
                 **options: Any) -> None:
        self.loop = new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: HttpServer = self.run(start_server(routes, host, 0, **options))
        self.port = self.server.port

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def open_connections(self) -> int:
        async def count() -> int:
            return self.server.open_connections
        return self.run(count())

    def shut_down(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()
        self.run(close())

    def stop(self) -> None:
        self.shut_down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


GOOD = b"Basic Z29vZDpnb29k"  # admitted at once (a remembered success)
BAD = b"Basic YmFkOmJhZA=="  # refused at once (unknown user, say)
SLOW = b"Basic c2xvdzpzbG93"  # needs the slow check
SLOW_TOO = b"Basic c2xvdzp0d28="
SECURITY_HEADERS = b"X-Content-Type-Options: nosniff\r\nX-Frame-Options: deny\r\n"


class FakeGate:
    """A gate whose answers the test sets, recording what it was asked in ``events``.

    ``authorize`` answers from ``verdicts`` (True, False, or None for the slow check); the
    slow check waits until ``release(header, ok)`` decides it (call it on the server's loop).
    """

    def __init__(self, headers: bytes = SECURITY_HEADERS,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.headers = headers
        self.allow = True
        self.peer_ok = True
        self.verdicts: dict[bytes | None, bool | None] = {
            None: False, GOOD: True, BAD: False, SLOW: None, SLOW_TOO: None}
        self.events: list[tuple[str, Any]] = []
        self.peers: list[dict[str, Any] | None] = []
        self.verify_error: Exception | None = None
        self._decisions: dict[bytes, asyncio.Future[bool | None]] = {}

    def allow_request(self) -> bool:
        self.events.append(("allow_request", self.allow))
        return self.allow

    def check_peer(self, peercert: dict[str, Any] | None) -> bool:
        self.peers.append(peercert)
        return self.peer_ok

    def authorize(self, authorization: bytes | None) -> bool | None:
        self.events.append(("authorize", authorization))
        return self.verdicts.get(authorization, False)

    def _decision(self, authorization: bytes) -> asyncio.Future[bool | None]:
        if authorization not in self._decisions:
            self._decisions[authorization] = asyncio.get_running_loop().create_future()
        return self._decisions[authorization]

    def release(self, authorization: bytes, ok: bool | None) -> None:
        self.events.append(("release", authorization))
        self._decision(authorization).set_result(ok)

    async def verify(self, authorization: bytes) -> bool | None:
        self.events.append(("verify", authorization))
        if self.verify_error is not None:
            raise self.verify_error
        try:
            return await asyncio.shield(self._decision(authorization))
        except asyncio.CancelledError:
            self.events.append(("cancelled", authorization))
            raise

    def asked(self, what: str) -> list[Any]:
        return [value for name, value in self.events if name == what]


class GatedServer:
    """A LiveServer and its gate, with helpers that act on the server's loop thread."""

    def __init__(self, live: LiveServer, gate: FakeGate) -> None:
        self.live = live
        self.gate = gate
        self.port = live.port
        self.server: HttpServer = live.server

    def call(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()
        return self.live.run(call())

    def release(self, authorization: bytes, ok: bool | None) -> None:
        self.call(lambda: self.gate.release(authorization, ok))

    def asked(self, what: str) -> list[Any]:
        return self.call(lambda: self.gate.asked(what))

    def refused(self) -> dict[str, int]:
        return self.call(lambda: dict(self.server.refused))

    def set_gate(self, gate: FakeGate | None) -> None:
        def assign() -> None:
            self.server.gate = gate
        self.call(assign)


class Servers:
    """The servers one test starts, on one kind of loop, serving ``routes`` unless told
    otherwise. ``stop_all`` stops them and checks that none left a connection, a handshake in
    progress or a task behind."""

    def __init__(self, new_loop: NewLoop, routes: Routes) -> None:
        self.new_loop = new_loop
        self.routes = routes
        self.started: list[LiveServer] = []

    def start(self, routes: Routes | None = None, **options: Any) -> LiveServer:
        live = LiveServer(self.new_loop, self.routes if routes is None else routes, **options)
        self.started.append(live)
        return live

    def start_gated(self, gate: FakeGate, routes: Routes | None = None,
                    **options: Any) -> GatedServer:
        checked: Gate = gate  # mypy checks here that the fake has the Gate protocol's shape
        return GatedServer(self.start(routes, gate=checked, **options), gate)

    def stop_all(self) -> None:
        for live in self.started:
            live.stop()
            assert live.server.open_connections == 0
            assert not live.server._admitting and not live.server._tasks


def loop_errors(records: list[logging.LogRecord]) -> list[str]:
    """What the loop reported of exceptions that escaped a protocol callback or a task."""
    return [r.getMessage() for r in records if r.name == "asyncio" and r.levelno >= logging.ERROR]
