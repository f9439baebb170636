"""The /connz collector's reads against a simulated nats-server (tests.support.connzgen), without
a network: closed connections paged back to the watermark, a closed list that turns over between
two refreshes, closes filed late. Every group's totals are checked against the simulator's own
count of what every connection did, under the name each listing showed it with.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from fastnats.collectors import ConnzCollector, ConnzOptions, ServerContext, ServerInfo
from fastnats.collectors.connz import CLOSED_FIRST, CLOSED_PAGE
from fastnats.metrics import UNKNOWN_GROUP
from tests.support import connzgen

IN_MSGS = "nats_client_in_messages_total"
LOST = "nats_client_connections_lost_total"
COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")


class SimSource:
    """/connz of a simulated server as nats-server pages it: the open listing whole, the closed
    one sorted by stop, the most recent first, cut by offset and limit."""

    def __init__(self, sim: connzgen.Server) -> None:
        self.sim = sim
        self.requests: list[dict] = []

    async def get(self, endpoint: str, params=None) -> bytearray:
        assert endpoint == "connz"
        self.requests.append(dict(params))
        if params["state"] == "open":
            return bytearray(self.sim.open_body())
        assert params["sort"] == "stop"
        return bytearray(self.sim.closed_listing(int(params["offset"]), int(params["limit"])))

    def info(self) -> ServerInfo:
        sim = self.sim
        return ServerInfo("SIM", "start", connections=len(sim.open),
                          total_connections=sim.next_cid - 1, listeners={})


class Run:
    """A collector refreshed from a simulator, and everything every connection did, by group.

    A connection listed before its CONNECT was read has no name yet: what it did up to a
    listing belongs to the group that listing shows it in, as no reader of /connz can tell
    more. So each step credits what every listed connection did since it was last listed to
    the name it is listed with now.
    """

    def __init__(self, sim: connzgen.Server, **options) -> None:
        self.sim = sim
        self.source = SimSource(sim)
        self.collector = ConnzCollector(ServerContext("sim", "127.0.0.1"),
                                        ConnzOptions(group_by=("name",), **options))
        self.collector.clock = lambda: sim.now
        self.listed: dict[int, dict[str, int]] = {}
        self.counted: dict[str, Counter[str]] = {key: Counter() for key in COUNTERS}

    def step(self, **changes) -> list[dict]:
        """Advance the simulator, refresh, and return the closed requests of the refresh."""
        self.sim.step(**changes)
        for conn in (*self.sim.open.values(), *self.sim.closed):
            last = self.listed.get(conn["cid"], {})
            for key in COUNTERS:
                self.counted[key][conn.get("name", "")] += conn[key] - last.get(key, 0)
            self.listed[conn["cid"]] = {key: conn[key] for key in COUNTERS}
        before = len(self.source.requests)
        asyncio.run(self.collector.refresh(self.source, self.source.info()))
        return [r for r in self.source.requests[before:] if r["state"] == "closed"]

    def families(self) -> dict[str, list]:
        return self.collector.samples()

    def exported(self, name: str = IN_MSGS) -> dict[str, int]:
        return {labels[0]: value for labels, value in self.families()[name]
                if labels[0] != UNKNOWN_GROUP}

    def expected(self, key: str = "in_msgs") -> dict[str, int]:
        return dict(self.counted[key])

    def forget(self) -> None:
        """After a restart: cids count from 1 again and the collector reads afresh."""
        self.listed.clear()
        for counted in self.counted.values():
            counted.clear()


def test_closed_connections_are_paged_back_to_the_watermark():
    print("connzgen seed 11")
    run = Run(connzgen.Server(11, names=30))
    run.step(opens=200)
    assert run.step(closes=50) == [
        {"state": "closed", "sort": "stop", "auth": "true", "offset": 0, "limit": 120}]
    # 2,600 closes between two refreshes: the first page is sized from /varz, then whole pages.
    requests = run.step(opens=100, closes=100, flashes=2500)
    assert [(r["offset"], r["limit"]) for r in requests] == [
        (0, CLOSED_PAGE), (1000, CLOSED_PAGE), (2000, CLOSED_PAGE)]
    run.step(closes=30, flashes=10)
    assert run.exported() == run.expected()
    assert run.exported("nats_client_out_bytes_total") == run.expected(key="out_bytes")
    assert (run.collector.aggregator.lost_known, run.collector.aggregator.lost_unknown) == (0, 0)


def test_a_quiet_refresh_asks_for_one_small_page():
    run = Run(connzgen.Server(5, names=10))
    run.step(opens=20)
    for _ in range(3):
        assert [(r["offset"], r["limit"]) for r in run.step()] == [(0, 64)]
    assert CLOSED_FIRST <= 64 <= CLOSED_PAGE


@pytest.mark.parametrize("seen_open", [False, True], ids=["unseen", "seen-open"])
def test_a_closed_list_that_turns_over_counts_what_it_dropped_and_logs_once(seen_open, caplog):
    # max_closed_clients 100, and 2,000 connections that publish and close between two
    # refreshes: the server keeps the last 100 closes only.
    print("connzgen seed 7")
    sim = connzgen.Server(7, names=5, closed_max=100)
    run = Run(sim)
    run.step(opens=10)
    run.step(closes=3, flashes=3)
    caplog.set_level(logging.WARNING, "fastnats.scrape")
    if seen_open:
        run.step(opens=2000)
        run.step(closes=2000)
    else:
        run.step(flashes=2000)
    assert len(sim.closed) == 100
    # The floor settles two refreshes later; the loss shows then.
    for _ in range(3):
        run.step()
    aggregator = run.collector.aggregator
    assert aggregator.lost_known + aggregator.lost_unknown == 1900
    lost = dict(run.families()[LOST])
    if seen_open:
        # Counted in their groups, with the counters last seen (none: opened, then closed).
        assert aggregator.lost_known == 1900 and lost[(UNKNOWN_GROUP,)] == 0
        assert sum(v for k, v in lost.items() if k != (UNKNOWN_GROUP,)) == 1900
    else:
        assert aggregator.lost_unknown == 1900 and lost[(UNKNOWN_GROUP,)] == 1900
        # The 100 the server kept, and every connection before, are counted exactly.
        assert run.exported() == run.expected()
    warnings = [r for r in caplog.records if "left nats-server's list" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "1900 connections" in warnings[0].getMessage()


def test_closes_filed_late_still_count():
    # Half the closes reach the closed list only after a later close and a refresh.
    print("connzgen seed 23")
    run = Run(connzgen.Server(23, names=20, late=0.5, unconnected=0.2), group_ttl=1e9)
    run.step(opens=300, seconds=1)
    for _ in range(25):
        run.step(opens=40, closes=40, flashes=20, seconds=1)
    for _ in range(4):
        run.step(seconds=1)
    assert run.exported() == run.expected()
    assert run.exported("nats_client_out_bytes_total") == run.expected(key="out_bytes")
    assert run.collector.aggregator.lost_known == run.collector.aggregator.lost_unknown == 0


def test_a_restarted_server_is_read_afresh():
    sim = connzgen.Server(3, names=5)
    run = Run(sim)
    run.step(opens=10)
    run.step(closes=5)
    sim.restart()
    run.source.info = lambda: ServerInfo(  # type: ignore[method-assign]
        "SIM", "restarted", connections=len(sim.open), total_connections=sim.next_cid - 1,
        listeners={})
    run.forget()
    run.step(opens=4)
    assert run.step(closes=2)[0]["limit"] >= CLOSED_FIRST
    assert run.exported() == run.expected()
