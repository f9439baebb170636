"""The refresh loop: each server on its own schedule, polls in between, one render per change."""

from __future__ import annotations

import asyncio
import re
import selectors
import time
from dataclasses import dataclass

import pytest

from fastnats import metrics as m
from fastnats.refresher import Refresher, _next_tick


@dataclass
class FakeTarget:
    name: str


class FakeServer:
    """Records refreshes and polls; a refresh waits for the ``hang`` event when there is one."""

    def __init__(self, name: str, poll_interval: float | None = None) -> None:
        self.target = FakeTarget(name)
        self.poll_interval = poll_interval
        self.hang: asyncio.Event | None = None
        self.events: list[str] = []
        self.busy = False
        self.fail = False
        self.refreshed_at: float | None = None

    async def refresh(self) -> None:
        assert not self.busy, "a refresh overlapped other work"
        self.busy = True
        self.events.append("refresh")
        await (self.hang.wait() if self.hang is not None else asyncio.sleep(0))
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


class VirtualTime(selectors.BaseSelector):
    """The selector of a ``VirtualTimeLoop``: when nothing is ready and no worker thread is
    busy, the clock jumps to the next timer instead of waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0
        #: Worker thread jobs whose results the loop has not taken yet; the clock stands still
        #: while there are any, so a render in a thread takes no time.
        self.busy = 0
        self._real = selectors.DefaultSelector()

    def select(self, timeout=None):
        if self.busy and timeout != 0:
            return self._real.select(None)      # until a worker thread's result comes
        if not timeout:
            return self._real.select(timeout)
        ready = self._real.select(0)
        if not ready:
            self.now += timeout
        return ready

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_map(self):
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a simulated clock: every timer fires exactly when it is due, however
    loaded the machine is."""

    def __init__(self) -> None:
        self.clock = VirtualTime()
        super().__init__(self.clock)

    def time(self) -> float:
        return self.clock.now

    def run_in_executor(self, executor, func, *args):
        future = super().run_in_executor(executor, func, *args)
        self.clock.busy += 1

        def taken(_: object) -> None:
            self.clock.busy -= 1

        future.add_done_callback(taken)
        return future


def test_polls_run_between_refreshes_in_the_server_loop():
    server = FakeServer("a", poll_interval=0.02)
    refresher = Refresher(FakeCollector(server), 0.1)  # type: ignore[arg-type]

    async def main() -> None:
        await refresher.start()
        while server.events.count("refresh") < 4:
            await asyncio.sleep(0.01)
        await refresher.stop()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(asyncio.wait_for(main(), 30))
    events = server.events
    assert events[0] == "refresh"
    # Every gap between two refreshes holds the polls of the poll grid (at 20, 40, 60 and
    # 80 ms: the last at least half a poll interval before the refresh), and none overlapped a
    # refresh (FakeServer asserts it).
    gaps = "".join("R" if e == "refresh" else "p" for e in events).split("R")[1:-1]
    assert gaps == ["pppp"] * 3, events
    assert refresher.payload is not None and b"nats_up" in refresher.payload.body


def test_no_polls_without_a_shorter_poll_interval():
    for poll_interval in (None, 0.05, 1.0):
        server = FakeServer("a", poll_interval=poll_interval)
        refresher = Refresher(FakeCollector(server), 0.05)  # type: ignore[arg-type]
        run_until(refresher, lambda s=server: s.events.count("refresh") >= 3)
        assert set(server.events) == {"refresh"}, poll_interval


def rendered_refreshes(refresher: Refresher, server: str) -> int:
    """The refreshes of ``server`` in the last render (FakeCollector's nats_up counts them)."""
    assert refresher.payload is not None
    found = re.search(rb'^nats_up\{server="%s"\} (\d+)' % server.encode(), refresher.payload.body,
                      re.M)
    assert found is not None
    return int(found[1])


def test_a_slow_server_does_not_hold_back_the_others_or_the_render():
    slow = FakeServer("slow")
    fast = FakeServer("fast")
    refresher = Refresher(FakeCollector(slow, fast), 0.05)  # type: ignore[arg-type]

    async def main() -> None:
        await refresher.start()
        slow.hang = asyncio.Event()  # its next refresh never ends
        while fast.events.count("refresh") < 8:
            await asyncio.sleep(0.01)
        # The fast server kept its schedule, and its results go on being published: a render
        # of a later refresh of it comes while the slow one still hangs.
        assert slow.events.count("refresh") == 2
        count = fast.events.count("refresh")
        while rendered_refreshes(refresher, "fast") <= count:
            await asyncio.sleep(0.01)
        assert slow.events.count("refresh") == 2
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
