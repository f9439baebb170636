"""The refresh loop: one loop refreshes, renders, publishes, and polls in between."""

from __future__ import annotations

import asyncio

import pytest

from fastnats import metrics as m
from fastnats.refresher import Refresher, _next_tick


class FakeCollector:
    """Records refreshes and polls; each refresh takes ``refresh_time`` seconds."""

    def __init__(self, poll_interval: float | None, refresh_time: float = 0.0) -> None:
        self.poll_interval = poll_interval
        self.refresh_time = refresh_time
        self.events: list[str] = []
        self.busy = False
        self.fail = False

    async def refresh(self) -> None:
        assert not self.busy, "a refresh overlapped other work"
        self.busy = True
        self.events.append("refresh")
        await asyncio.sleep(self.refresh_time)
        self.busy = False
        if self.fail:
            raise RuntimeError("a bug")

    async def poll(self) -> None:
        assert not self.busy, "a poll overlapped a refresh"
        self.events.append("poll")

    def families(self):
        return [(m.NATS_UP, (), [((), len(self.events))])]


def run_for(refresher: Refresher, refreshes: int) -> None:
    async def main() -> None:
        await refresher.start()
        while refresher.collector.events.count("refresh") < refreshes:
            await asyncio.sleep(0.01)
        await refresher.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_polls_run_between_refreshes_in_the_same_loop():
    collector = FakeCollector(poll_interval=0.02)
    refresher = Refresher(collector, 0.1)  # type: ignore[arg-type]
    run_for(refresher, 4)
    events = collector.events
    assert events[0] == "refresh"
    # Every gap between two refreshes holds polls, and none overlapped a refresh.
    gaps = "".join("R" if e == "refresh" else "p" for e in events).split("R")[1:-1]
    assert gaps and all(gap for gap in gaps), events
    assert refresher.payload is not None and b"nats_up" in refresher.payload.body


def test_no_polls_without_a_shorter_poll_interval():
    for poll_interval in (None, 0.1, 1.0):
        collector = FakeCollector(poll_interval=poll_interval)
        run_for(Refresher(collector, 0.05), 3)  # type: ignore[arg-type]
        assert set(collector.events) == {"refresh"}, poll_interval


def test_a_failed_refresh_keeps_the_last_payload_and_the_loop():
    collector = FakeCollector(poll_interval=None)
    refresher = Refresher(collector, 0.02)  # type: ignore[arg-type]

    async def main() -> None:
        await refresher.start()
        first = refresher.payload
        collector.fail = True
        while collector.events.count("refresh") < 4:
            await asyncio.sleep(0.01)
        assert refresher.payload is first
        await refresher.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("last, interval, now, tick", [
    (0.0, 1.0, 0.5, 1.0),       # on time
    (0.0, 1.0, 2.5, 3.0),       # late: skip to the next tick of the grid
    (10.0, 0.5, 10.0, 10.5),
])
def test_next_tick_keeps_a_fixed_grid(last, interval, now, tick):
    assert _next_tick(last, interval, now) == pytest.approx(tick)
