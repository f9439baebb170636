"""The refresh loop: refreshes the collector every interval and keeps the last rendered payload.

Scrapes read ``Refresher.payload``, an immutable object swapped in one assignment after each
refresh, so a scrape never waits for a refresh and never sees half of one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .collector import NatsCollector
from .exposition import CONTENT_TYPE, render
from .server import Payload

log = logging.getLogger("fastnats.scrape")


class Refresher:
    def __init__(self, collector: NatsCollector, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be positive")
        self.collector = collector
        self.interval = interval
        self.payload: Payload | None = None
        self.refreshed_at: float | None = None  # monotonic time of the last completed refresh
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """One refresh: poll every server, render once, publish the result."""
        try:
            await self.collector.refresh()
        except Exception:
            # A bug, not a server failure (those are counted per server): keep the last good
            # payload and keep the loop alive.
            log.exception("refresh failed; serving the previous metrics")
            return
        text, gz = await asyncio.to_thread(render, self.collector.families())
        self.payload = Payload(text, gz, CONTENT_TYPE)
        self.refreshed_at = time.monotonic()

    async def start(self) -> None:
        """Refresh once, so the first scrape has data, then keep refreshing in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="fastnats-refresh")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # Fixed-rate ticks; a refresh slower than the interval skips ticks instead of
            # queueing them.
            next_at += self.interval
            now = loop.time()
            if next_at < now:
                next_at = now + self.interval - (now - next_at) % self.interval
            await asyncio.sleep(next_at - now)
            await self.refresh()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def healthy(self) -> bool:
        """True while refreshes keep completing; stale after three missed intervals."""
        return (self.refreshed_at is not None
                and time.monotonic() - self.refreshed_at < 3 * self.interval + 1)
