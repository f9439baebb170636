"""The one refresh loop: refreshes the collector every interval, renders once, keeps the result.

Scrapes read ``Refresher.payload``, an immutable object swapped in one assignment after each
refresh, so a scrape never waits for a refresh and never sees half of one. Collectors that read
more often than the refresh interval (the wire counter's ``--wire.poll-interval``) are polled
by the same loop between refreshes.
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
        poll = collector.poll_interval
        self.poll_interval = poll if poll is not None and poll < interval else None
        self.payload: Payload | None = None
        self.refreshed_at: float | None = None  # monotonic time of the last completed refresh
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """One refresh: read every server, render once, publish the result."""
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

    async def poll(self) -> None:
        try:
            await self.collector.poll()
        except Exception:
            log.exception("poll between refreshes failed")

    async def start(self) -> None:
        """Refresh once, so the first scrape has data, then keep refreshing in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="fastnats-refresh")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = next_poll = loop.time()
        while True:
            # Fixed-rate ticks; work slower than its interval skips ticks instead of queueing.
            next_refresh = _next_tick(next_refresh, self.interval, loop.time())
            if self.poll_interval is not None:
                next_poll = _next_tick(next_poll, self.poll_interval, loop.time())
                while next_poll < next_refresh - self.poll_interval / 2:
                    await asyncio.sleep(max(next_poll - loop.time(), 0))
                    await self.poll()
                    next_poll = _next_tick(next_poll, self.poll_interval, loop.time())
            await asyncio.sleep(max(next_refresh - loop.time(), 0))
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


def _next_tick(last: float, interval: float, now: float) -> float:
    """The first tick of the grid ``last + k * interval`` after ``now``, k >= 1."""
    tick = last + interval
    if tick < now:
        tick = now + interval - (now - tick) % interval
    return tick
