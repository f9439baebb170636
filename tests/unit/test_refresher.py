"""The refresh loop: each server on its own schedule, polls in between, one render per change."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from fastnats import metrics as m
from fastnats.refresher import Refresher, _next_tick


@dataclass
class FakeTarget:
    name: str


class FakeServer:
    """Records refreshes and polls; each refresh takes ``refresh_time`` seconds."""

    def __init__(self, name: str, poll_interval: float | None = None,
                 refresh_time: float = 0.0) -> None:
        self.target = FakeTarget(name)
        self.poll_interval = poll_interval
        self.refresh_time = refresh_time
        self.events: list[str] = []
        self.busy = False
        self.fail = False
        self.refreshed_at: float | None = None

    async def refresh(self) -> None:
        assert not self.busy, "a refresh overlapped other work"
        self.busy = True
        self.events.append("refresh")
        await asyncio.sleep(self.refresh_time)
        self.busy = False
        if self.fail:
            raise RuntimeError("a bug")
        self.refreshed_at = time.monotonic()

    async def poll(self) -> None:
        assert not self.busy, "a poll overlapped a refresh"
        self.events.append("poll")


class FakeCollector:
    def __init__(self, *servers: FakeServer) -> None:
        self.servers = list(servers)

    def families(self):
        return [(m.NATS_UP, ("server",),
                 [((s.target.name,), s.events.count("refresh")) for s in self.servers])]


def run_until(refresher: Refresher, done) -> None:
    async def main() -> None:
        await refresher.start()
        while not done():
            await asyncio.sleep(0.01)
        await refresher.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_polls_run_between_refreshes_in_the_server_loop():
    server = FakeServer("a", poll_interval=0.02)
    refresher = Refresher(FakeCollector(server), 0.1)  # type: ignore[arg-type]
    run_until(refresher, lambda: server.events.count("refresh") >= 4)
    events = server.events
    assert events[0] == "refresh"
    # Every gap between two refreshes holds polls, and none overlapped a refresh.
    gaps = "".join("R" if e == "refresh" else "p" for e in events).split("R")[1:-1]
    assert gaps and all(gap for gap in gaps), events
    assert refresher.payload is not None and b"nats_up" in refresher.payload.body


def test_no_polls_without_a_shorter_poll_interval():
    for poll_interval in (None, 0.05, 1.0):
        server = FakeServer("a", poll_interval=poll_interval)
        refresher = Refresher(FakeCollector(server), 0.05)  # type: ignore[arg-type]
        run_until(refresher, lambda s=server: s.events.count("refresh") >= 3)
        assert set(server.events) == {"refresh"}, poll_interval


def test_a_slow_server_does_not_hold_back_the_others_or_the_render():
    slow = FakeServer("slow", refresh_time=0.0)
    fast = FakeServer("fast")
    refresher = Refresher(FakeCollector(slow, fast), 0.05)  # type: ignore[arg-type]

    async def main() -> None:
        await refresher.start()
        slow.refresh_time = 5.0  # its next refresh hangs far past the interval
        while fast.events.count("refresh") < 8:
            await asyncio.sleep(0.01)
        # The fast server kept its schedule, and its results were published meanwhile.
        assert slow.events.count("refresh") <= 2
        rendered = refresher.rendered_at
        count = fast.events.count("refresh")
        await asyncio.sleep(0.2)
        assert refresher.rendered_at != rendered
        assert refresher.payload is not None
        assert b'nats_up{server="fast"} ' in refresher.payload.body
        assert fast.events.count("refresh") > count
        # The hung server's refreshes stopped completing: /healthz says so, in time.
        while refresher.healthy():
            await asyncio.sleep(0.05)
        await refresher.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_failed_refresh_keeps_the_loop():
    server = FakeServer("a")
    refresher = Refresher(FakeCollector(server), 0.02)  # type: ignore[arg-type]

    async def main() -> None:
        await refresher.start()
        assert refresher.healthy()
        server.fail = True
        while server.events.count("refresh") < 4:
            await asyncio.sleep(0.01)
        await refresher.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("last, interval, now, tick", [
    (0.0, 1.0, 0.5, 1.0),       # on time
    (0.0, 1.0, 2.5, 3.0),       # late: skip to the next tick of the grid
    (10.0, 0.5, 10.0, 10.5),
])
def test_next_tick_keeps_a_fixed_grid(last, interval, now, tick):
    assert _next_tick(last, interval, now) == pytest.approx(tick)
