"""A monitoring source in this process, for the unit tests of the collectors: it answers every
request with the body a test sets, and a collector is refreshed from it on a simulated clock."""

from __future__ import annotations

import asyncio


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
