"""The /leafz collector against a simulated hub (tests.support.leafzgen), without a network:
what it requests and when, the closed leafnodes' final counters read from /connz, closes filed
late or dropped, a restarted server, failures, and its flags. Totals are checked against the
simulator's own count of what every leafnode did.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.collector import ServerCollector
from fastnats.collectors import ALL, ServerContext, ServerInfo
from fastnats.collectors.connz import CLOSED_HELD, closed_most
from fastnats.collectors.leafz import LeafzCollector, LeafzOptions
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits, KiB, MiB
from fastnats.sources.system import SystemSource
from fastnats.target import Target
from tests.support import leafzgen

IN_MSGS = "nats_leafnode_in_messages_total"


class HubSource:
    """/leafz and closed /connz pages of a simulated hub, as nats-server serves them."""

    def __init__(self, hub: leafzgen.Hub) -> None:
        self.hub = hub
        #: Each request: its endpoint, its query and the entries it expected.
        self.requests: list[tuple[str, dict, dict | None]] = []
        self.fail: dict[str, Exception] = {}
        self.server_id = "HUB"

    async def get(self, endpoint: str, params=None, *, expect=None, statuses=(200,)):
        self.requests.append((endpoint, dict(params or {}), expect))
        if endpoint in self.fail:
            raise self.fail[endpoint]
        if endpoint == "leafz":
            assert params is None
            return bytearray(self.hub.leafz_body())
        assert endpoint == "connz" and params["state"] == "closed" and params["sort"] == "stop"
        return bytearray(self.hub.closed_listing(int(params["offset"]), int(params["limit"])))

    def info(self) -> ServerInfo:
        return ServerInfo(self.server_id, "start", connections=0, total_connections=0,
                          listeners={}, leafnodes=len(self.hub.open))


class Run:
    """A collector refreshed from a simulated hub, and every leafnode a listing showed."""

    def __init__(self, hub: leafzgen.Hub, **options) -> None:
        self.hub = hub
        self.source = HubSource(hub)
        self.collector = LeafzCollector(ServerContext("hub", "127.0.0.1"),
                                        LeafzOptions(group_by=("name",), **options))
        self.collector.clock = lambda: hub.now
        self.listed: dict[int, dict] = {}

    def step(self, **changes) -> list[dict]:
        """Advance the hub, refresh, and return the /connz requests of the refresh."""
        self.hub.step(**changes)
        before = len(self.source.requests)
        asyncio.run(self.collector.refresh(self.source, self.source.info()))
        self.listed.update(self.hub.open)
        return [params for endpoint, params, _ in self.source.requests[before:]
                if endpoint == "connz"]

    def exported(self, name: str = IN_MSGS) -> dict[str, int]:
        return {labels[0]: value for labels, value in self.collector.samples()[name]}

    def expected(self, key: str = "in_msgs") -> dict[str, int]:
        """Each group's total: the closed entry of every listed leafnode that closed, else what
        it shows now."""
        final = {c["cid"]: c for c in self.hub.closed if c["kind"] == "Leafnode"}
        out: Counter[str] = Counter()
        for ident, leaf in self.listed.items():
            out[leaf["name"]] += final[ident][key] if ident in final else leaf[key]
        return dict(out)


def test_a_refresh_with_no_leafnode_gone_reads_only_leafz():
    run = Run(leafzgen.Hub(3, names=5))
    run.step(opens=30)
    assert run.step(opens=5) == []
    assert [endpoint for endpoint, _, _ in run.source.requests] == ["leafz", "leafz"]
    assert run.exported() == run.expected()


def test_closed_leafnodes_take_their_final_counters_from_connz():
    print("leafzgen seed 11")
    run = Run(leafzgen.Hub(11, names=8))
    run.step(opens=300)
    requests = run.step(closes=20, reconnects=30, clients=40)
    assert requests == [{"state": "closed", "sort": "stop", "auth": "true", "offset": 0,
                         "limit": 120}]
    for _ in range(4):
        run.step(closes=5, reconnects=10, clients=500, opens=3)
    for key in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
        metric = f"nats_leafnode_{key.replace('msgs', 'messages')}_total"
        assert run.exported(metric) == run.expected(key), key
    aggregator = run.collector.aggregator
    assert aggregator.lost == 0 and aggregator.closed == 20 + 30 + 4 * 15
    closes = run.exported("nats_leafnode_connections_closed_total")
    assert sum(closes.values()) == aggregator.closed


def test_the_closed_read_pages_until_it_passes_the_last_listing():
    # 2,500 client closes after the leafnode's: it is on the third page.
    run = Run(leafzgen.Hub(5, names=3))
    run.step(opens=4)
    run.hub.step(closes=1)
    requests = run.step(clients=2500)
    assert [(r["offset"], r["limit"]) for r in requests] == [(0, 65), (65, 1000), (1065, 1000),
                                                             (2065, 1000)]
    assert run.exported() == run.expected()


def test_a_close_filed_late_is_found_at_the_next_refresh():
    hub = leafzgen.Hub(8, names=3, late=1.0)
    run = Run(hub)
    run.step(opens=10)
    run.step(closes=3)            # the three entries are filed only at the next step
    assert run.collector.aggregator.lost == 0
    run.step()
    assert run.exported() == run.expected()
    assert run.collector.aggregator.lost == 0


def test_closes_dropped_from_the_closed_list_are_lost_and_logged_once(caplog):
    hub = leafzgen.Hub(9, names=3, closed_max=5)
    run = Run(hub)
    run.step(opens=20)
    caplog.set_level(logging.WARNING, "fastnats.scrape")
    run.step(closes=4, clients=50)
    run.step(seconds=15)
    aggregator = run.collector.aggregator
    assert aggregator.lost == 4
    assert sum(run.exported("nats_leafnode_connections_lost_total").values()) == 4
    assert [r.message.split(":")[1].split(" (")[0] for r in caplog.records] == [
        " 4 leafnodes closed and their final counters were not found in nats-server's list of "
        "closed connections"]
    run.step()
    assert len(caplog.records) == 1


def test_the_request_limit_grows_with_the_leafnodes():
    run = Run(leafzgen.Hub(2))
    run.step(opens=50_000 // 100)
    endpoint, _, expect = run.source.requests[-1]
    assert (endpoint, expect) == ("leafz", {"leafnodes": 500 + 500 // 8 + 64})
    # Under the default flags, the limit it had before the flags bounded it, and room for
    # 50,000 leafnodes of 4 KiB CONNECT lines.
    limits = BodyLimits()
    assert limits.for_request("leafz", None, expect) == 16 * MiB + 8 * KiB * (500 + 500 // 8 + 64)
    assert limits.for_request("leafz", None, {"leafnodes": 50_000}) >= 50_000 * 4096
    # The flags bound it: a leafnode's allowance is --monitor.max-body-size-per-connection.
    assert BodyLimits(1 * MiB, 1 * KiB).for_request("leafz", None, expect) == (
        1 * MiB + 1 * KiB * (500 + 500 // 8 + 64))


def test_a_restarted_server_starts_afresh():
    run = Run(leafzgen.Hub(4, names=2))
    run.step(opens=10)
    run.step(opens=1)
    run.hub.restart()
    run.source.server_id = "HUB2"
    run.listed.clear()
    run.step(opens=3)
    assert run.exported() == run.expected()
    assert run.collector.aggregator.closed == 0


def test_a_bad_body_keeps_the_last_aggregates_and_a_failed_request_drops_them():
    run = Run(leafzgen.Hub(6, names=2))
    run.step(opens=10)
    good = run.collector.samples()
    run.hub.leafz_body = lambda **fmt: b'{"leafs": [{"id": -1}]}'  # type: ignore[method-assign]
    with pytest.raises(ScrapeError) as err:
        asyncio.run(run.collector.refresh(run.source, run.source.info()))
    assert (err.value.endpoint, err.value.reason) == ("leafz", "decode")
    run.collector.failed(err.value)
    assert run.collector.samples() is good
    run.source.fail["leafz"] = ScrapeError("leafz", "timeout", "slow")
    run.collector.failed(ScrapeError("leafz", "timeout", "slow"))
    assert run.collector.samples() == {}


def test_a_failed_closed_read_is_a_leafz_error_and_the_leafnodes_are_looked_for_again():
    run = Run(leafzgen.Hub(12, names=2))
    run.step(opens=10)
    run.source.fail["connz"] = ScrapeError("connz", "http_status", "503", status=503)
    with pytest.raises(ScrapeError) as err:
        run.step(closes=2)
    assert (err.value.endpoint, err.value.reason, err.value.status) == (
        "leafz", "http_status", None)
    del run.source.fail["connz"]
    run.step()
    assert run.exported() == run.expected()
    assert run.collector.aggregator.lost == 0


def test_flags_and_label_names():
    assert LeafzCollector in ALL and LeafzCollector.default is True
    assert LeafzCollector.families == m.LEAFZ
    parser = argparse.ArgumentParser()
    LeafzCollector.add_arguments(parser.add_argument_group("leafz"))
    args = parser.parse_args([])
    assert LeafzCollector.configure(args, 15.0) == LeafzOptions()
    args = parser.parse_args(["--leafz.group-by", "account, is_spoke", "--leafz.max-groups", "5",
                              "--leafz.group-ttl", "10m", "--leafz.top-k", "0"])
    options = LeafzCollector.configure(args, 15.0)
    assert options == LeafzOptions(("account", "is_spoke"), 5, 600.0, 0)
    collector = LeafzCollector(ServerContext("s", "h"), options)
    assert collector.label_names(m.NATS_LEAFNODE_CONNECTIONS) == ("account", "is_spoke")
    assert collector.label_names(m.NATS_LEAFNODE_TOP_RTT_SECONDS) == m.CONNECTION_LABELS
    for bad in ("lang", "name,name"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--leafz.group-by", bad])


DATA = Path(__file__).resolve().parents[1] / "data"
#: Requests after which the fake times out, as a server's per-request timeout would end a read
#: that does not stop by itself.
GUARD = 200


class LyingHub(HubSource):
    """``HubSource`` with /varz and /routez, whose closed /connz can say ``total`` = ``lie``
    and serve full pages of the most recent closes at every offset."""

    def __init__(self, hub: leafzgen.Hub) -> None:
        super().__init__(hub)
        self.lie: int | None = None
        self.sent: list[int] = []

    async def get(self, endpoint: str, params=None, *, expect=None, statuses=(200,)):
        if endpoint == "varz":
            varz = orjson.loads((DATA / "varz.json").read_bytes())
            return bytearray(orjson.dumps({**varz, "leafnodes": len(self.hub.open)}))
        if endpoint == "routez":
            return bytearray((DATA / "routez_pooled.json").read_bytes())
        if len(self.requests) > GUARD:
            raise ScrapeError(endpoint, "timeout", "no reply within the timeout")
        if endpoint == "connz" and self.lie is not None:
            self.requests.append((endpoint, dict(params), expect))
            body = self.hub.closed_listing(0, int(params["limit"]))
            body = re.sub(rb'"total": \d+', b'"total": %d' % self.lie, body, count=1)
        else:
            body = await super().get(endpoint, params, expect=expect)
        self.sent.append(len(body))
        return bytearray(body)


def test_a_closed_total_over_what_the_server_can_hold_is_a_leafz_error_after_one_page():
    source = LyingHub(leafzgen.Hub(15, names=3))
    server = ServerCollector(Target("hub", "http://127.0.0.1:1"), source,
                             {"leafz": LeafzOptions(), "routez": None})
    source.hub.step(opens=4)
    asyncio.run(server.refresh())
    # A leafnode closed, then 2,500 clients: the pages served never reach it.
    source.hub.step(closes=1)
    source.hub.step(clients=2500)
    source.lie = 10**12
    before, sent = len(source.requests), len(source.sent)
    asyncio.run(server.refresh())
    closed = [r for r in source.requests[before:] if r[0] == "connz"]
    assert len(closed) == 1, f"{len(closed)} closed pages read"
    assert sum(source.sent[sent:]) < 4 * MiB
    (error,) = server.problems
    assert (error.endpoint, error.reason) == ("leafz", "decode")
    assert "/connz state=closed: /connz state=closed says total=1000000000000" in error.detail
    errors = dict(server.self_samples()[m.FASTNATS_REFRESH_ERRORS_TOTAL.name])
    assert errors[("leafz", "decode")] == 1
    success = dict(server.self_samples()[m.FASTNATS_COLLECTOR_SUCCESS.name])
    assert success == {("varz",): 1, ("leafz",): 0, ("routez",): 1}
    # The truth next time: the closed leafnode is found, nothing lost.
    source.lie = None
    asyncio.run(server.refresh())
    collector = server.collector("leafz")
    assert isinstance(collector, LeafzCollector)
    assert server.problems == [] and collector.aggregator.lost == 0
    assert collector.aggregator.closed == 1
    # What the hub could hold is /varz's closed connections or nats-server's default.
    info = ServerInfo("HUB", "s", connections=0, total_connections=0, listeners={})
    assert CLOSED_HELD < closed_most(info) < 10**12


class HubAccount:
    """A system account over a simulated hub whose replies must fit ``max_payload`` (an
    assertion: a hop that small would close the link)."""

    def __init__(self, hub: leafzgen.Hub, max_payload: int | None) -> None:
        self.hub = hub
        self.max_payload = max_payload
        #: The options of each closed /connz request.
        self.closed: list[dict] = []

    async def request_sized(self, server_id: str, endpoint: str, body: dict | None, *,
                            timeout: float, max_bytes: int | None = None,
                            compress: bool | None = None) -> tuple[bytes, int]:
        options = body or {}
        if endpoint == "leafz":
            data = self.hub.leafz_body(indent=False)
        else:
            assert endpoint == "connz" and options["state"] == 1 and options["sort"] == "stop"
            self.closed.append(options)
            data = self.hub.closed_listing(options["offset"], options["limit"], indent=False)
        reply = b'{"server":{"id":"HUB"},"data":' + data + b"}"
        if self.max_payload is not None:
            assert len(reply) <= self.max_payload, (len(reply), options)
        return reply, len(reply)


def test_the_closed_read_fits_a_small_max_payload_and_equals_an_unbounded_read():
    print("leafzgen seed 17")
    hub = leafzgen.Hub(17, names=4)
    small, whole = HubAccount(hub, 24 * KiB), HubAccount(hub, None)
    runs = []
    for account in (small, whole):
        collector = LeafzCollector(ServerContext("hub", "h"), LeafzOptions(group_by=("name",)))
        collector.clock = lambda: hub.now
        runs.append((collector, SystemSource(account, "HUB", 5)))  # type: ignore[arg-type]

    def step(**changes) -> None:
        hub.step(**changes)
        info = ServerInfo("HUB", "s", connections=0, total_connections=0, listeners={},
                          leafnodes=len(hub.open))
        for collector, source in runs:
            asyncio.run(collector.refresh(source, info))

    step(opens=40)
    hub.step(closes=3, reconnects=2)
    step(clients=2500)
    step(closes=2)
    # Each page of 1,000 was asked for in parts that fit, read as the one page it is.
    assert len(small.closed) > 2 * len(whole.closed) and len(whole.closed) >= 4
    # Each part of a page starts where that page does, or further on.
    assert {r["offset"] for r in whole.closed} <= {r["offset"] for r in small.closed}
    (bounded, _), (unbounded, _) = runs
    assert bounded.samples() == unbounded.samples()
    assert bounded.aggregator.closed == unbounded.aggregator.closed == 7
    assert bounded.aggregator.lost == unbounded.aggregator.lost == 0
