"""Monitoring sources in this process, for the unit tests of the collectors: one answers every
request with the body a test sets, and a collector is refreshed from it on a simulated clock;
another serves canned bodies per endpoint, the recorded /varz among them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

#: The recorded /varz (tests/data/varz.json), parsed.
VARZ = orjson.loads((Path(__file__).parents[1] / "data" / "varz.json").read_bytes())
#: What /connz?state=closed lists when nothing closed.
NO_CLOSED = b'{"now": "2026-11-25T07:57:14Z", "num_connections": 0, "total": 0, "offset": 0, ' \
            b'"limit": 1024, "connections": []}'


class FakeClient:
    """Serves canned bodies per endpoint (closed /connz listings empty), or raises the
    ScrapeError it was given."""

    def __init__(self, bodies):
        self.bodies = bodies

    async def get(self, endpoint, params=None, **_):
        if endpoint == "connz" and (params or {}).get("state") == "closed":
            return NO_CLOSED
        body = self.bodies[endpoint]
        if isinstance(body, Exception):
            raise body
        return body


class BodySource:
    """Answers every GET with ``body``, in a fresh bytearray as the real source does, and lists
    the (endpoint, params) asked for in ``requests``."""

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.requests: list[tuple[str, object]] = []

    async def get(self, endpoint, params=None, **_):
        self.requests.append((endpoint, params))
        return bytearray(self.body)


class CollectorRun:
    """A collector on a simulated clock (``now``), refreshed from bodies the test sets; a refresh
    is told of ``server`` unless given another."""

    def __init__(self, collector, server: object, body: bytes) -> None:
        self.now = 1000.0
        self.source = BodySource(body)
        self.server = server
        self.collector = collector
        self.collector.clock = lambda: self.now

    def refresh(self, data: bytes, server: object = None) -> dict[str, dict]:
        self.source.body = data
        asyncio.run(self.collector.refresh(self.source, server or self.server))
        return self.exported()

    def exported(self) -> dict[str, dict]:
        return {name: dict(samples) for name, samples in self.collector.samples().items()}
