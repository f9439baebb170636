"""The exporter's collectors for one real server, in the test's process: refreshed when the test
says, on a clock of their own, so that rates and TTLs do not depend on how fast the test runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fastnats.collector import ServerCollector
from fastnats.collectors import Collector
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target


class InProcess:
    """``collectors`` (name -> options) of the server at ``monitor``; a refresh moves the clock
    of each of them on by ``step`` seconds and returns the server's published samples."""

    def __init__(self, monitor: str, collectors: Mapping[str, object]) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        self.server = ServerCollector(Target("nats", monitor),
                                      MonitorClient(monitor, self.session, 10.0), collectors)
        self.now = 1_000.0
        for name in collectors:
            self.collector(name).clock = lambda: self.now  # type: ignore[attr-defined]

    def collector(self, name: str) -> Collector:
        found = self.server.collector(name)
        assert found is not None, name
        return found

    @staticmethod
    async def _session():
        return new_session()

    def refresh(self, step: float = 5.0) -> dict[str, list]:
        self.now += step
        self.loop.run_until_complete(self.server.refresh())
        assert not self.server.problems, self.server.problems
        return self.server.snapshot

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()
