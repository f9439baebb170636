"""The refresh loop: each server refreshes on its own schedule, and every result is rendered
once and published as it arrives. A collector whose servers come and go (fleet mode, where
discovery decides them) gets one loop instead: refresh everything, then render.

Scrapes read ``Refresher.payload``, an immutable object swapped in one assignment after each
render, so a scrape never waits for a refresh and never sees half of one. One server that hangs
delays only its own series. Collectors that read more often than the refresh interval (the wire
counter's ``--wire.poll-interval``) are polled by their server's loop between refreshes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .collector import NatsCollector, ServerCollector
from .exposition import CONTENT_TYPE, render
from .server import Payload

log = logging.getLogger("fastnats.scrape")


class Refresher:
    def __init__(self, collector: NatsCollector, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be positive")
        self.collector = collector
        self.interval = interval
        #: The collector's servers come and go (fleet mode): one loop refreshes them all.
        self.dynamic = getattr(collector, "dynamic", False)
        self.payload: Payload | None = None
        self.rendered_at: float | None = None  # monotonic time of the last render
        #: Monotonic time the last refresh of a dynamic collector (fleet mode) ended.
        self.refreshed_at: float | None = None
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def refresh(self) -> None:
        """One refresh of every server at once, then one render: the first one, and tests."""
        if self.dynamic:
            await self._refresh_all()
        else:
            await asyncio.gather(*(self._refresh(server) for server in self.collector.servers))
        await self.render()

    async def _refresh_all(self) -> None:
        try:
            await self.collector.refresh()
        except Exception:
            log.exception("refresh failed; serving the previous metrics")
        else:
            self.refreshed_at = time.monotonic()

    async def _refresh(self, server: ServerCollector) -> None:
        try:
            await server.refresh()
        except Exception:
            # A bug, not a server failure (those are counted per server): keep the last good
            # state and keep the loop alive.
            log.exception("refresh of %s failed; serving its previous metrics",
                          server.target.name)

    async def _poll(self, server: ServerCollector) -> None:
        try:
            await server.poll()
        except Exception:
            log.exception("poll of %s between refreshes failed", server.target.name)

    async def render(self) -> None:
        text, gz = await asyncio.to_thread(render, self.collector.families())
        self.payload = Payload(text, gz, CONTENT_TYPE)
        self.rendered_at = time.monotonic()

    async def start(self) -> None:
        """Refresh once, so the first scrape has data, then keep refreshing in the background."""
        await self.refresh()
        if self.dynamic:
            self._tasks = [asyncio.create_task(self._run_all(), name="fastnats-refresh")]
            return
        self._tasks = [asyncio.create_task(self._render_changes(), name="fastnats-render")]
        self._tasks += [
            asyncio.create_task(self._run(server), name=f"fastnats-refresh-{server.target.name}")
            for server in self.collector.servers]

    async def _render_changes(self) -> None:
        # Renders coalesce: results that arrive during a render are rendered together next.
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.render()
            except Exception:
                log.exception("render failed; serving the previous metrics")

    async def _run_all(self) -> None:
        # A collector whose servers come and go (fleet mode) refreshes them all itself, under
        # its own deadline: one loop of refresh then render.
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            next_refresh = _next_tick(next_refresh, self.interval, loop.time())
            await asyncio.sleep(max(next_refresh - loop.time(), 0))
            await self._refresh_all()
            try:
                await self.render()
            except Exception:
                log.exception("render failed; serving the previous metrics")

    async def _run(self, server: ServerCollector) -> None:
        loop = asyncio.get_running_loop()
        poll_interval = server.poll_interval
        if poll_interval is not None and poll_interval >= self.interval:
            poll_interval = None
        next_refresh = next_poll = loop.time()
        while True:
            # Fixed-rate ticks; work slower than its interval skips ticks instead of queueing.
            next_refresh = _next_tick(next_refresh, self.interval, loop.time())
            if poll_interval is not None:
                next_poll = _next_tick(next_poll, poll_interval, loop.time())
                while next_poll < next_refresh - poll_interval / 2:
                    await asyncio.sleep(max(next_poll - loop.time(), 0))
                    await self._poll(server)
                    self._changed.set()
                    next_poll = _next_tick(next_poll, poll_interval, loop.time())
            await asyncio.sleep(max(next_refresh - loop.time(), 0))
            await self._refresh(server)
            self._changed.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

    def healthy(self) -> bool:
        """True while every server's refreshes keep completing; stale after three missed
        intervals of any one of them (of the whole refresh, for a dynamic collector)."""
        now = time.monotonic()
        if self.dynamic:
            return (self.payload is not None and self.refreshed_at is not None
                    and now - self.refreshed_at < 3 * self.interval + 1)
        return self.payload is not None and all(
            server.refreshed_at is not None and now - server.refreshed_at < 3 * self.interval + 1
            for server in self.collector.servers)


def _next_tick(last: float, interval: float, now: float) -> float:
    """The first tick of the grid ``last + k * interval`` after ``now``, k >= 1."""
    tick = last + interval
    if tick < now:
        tick = now + interval - (now - tick) % interval
    return tick
