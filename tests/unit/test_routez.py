"""The /routez collector without a network: pooled and per-account routes summed per peer,
counters monotonic across reconnects, a server restart, the peer TTL on a simulated clock, and
decode errors that keep the last good samples. Recorded bodies are from a 3-server nats-server
2.15 cluster with pool_size 3 (three pooled routes and one SYS account route per peer)."""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collector import ServerCollector
from fastnats.collectors import ALL, RoutezCollector, ServerContext, ServerInfo
from fastnats.collectors.base import DECODE
from fastnats.collectors.peers import PeerFold, PeerOptions, PeerTotals
from fastnats.errors import ScrapeError
from fastnats.target import Target
from tests.support.bodysource import CollectorRun

DATA = Path(__file__).resolve().parents[1] / "data"
A2 = ("A2", "NA2")
A3 = ("A3", "NA3")


def route(rid: int, peer: tuple[str, str] = A2, **fields) -> dict:
    entry = {"rid": rid, "remote_id": peer[1], "remote_name": peer[0], "did_solicit": True,
             "is_configured": True, "ip": "127.0.0.1", "port": 16222,
             "start": "2026-11-29T19:03:51Z", "last_activity": "2026-11-29T19:03:51Z",
             "rtt": "255µs", "uptime": "2s", "idle": "2s", "pending_size": 0, "in_msgs": 0,
             "out_msgs": 0, "in_bytes": 0, "out_bytes": 0, "subscriptions": 0,
             "compression": "off"}
    entry.update(fields)
    return entry


def body(*routes: dict) -> bytes:
    return orjson.dumps({"server_id": "NA1", "server_name": "A1",
                         "now": "2026-11-29T19:03:52Z", "num_routes": len(routes),
                         "routes": list(routes)})


def info(server_id: str = "NA1", cluster: str = "A") -> ServerInfo:
    return ServerInfo(server_id, "2026-11-29T19:00:00Z", connections=0, total_connections=0,
                      listeners={}, cluster=cluster)


class Run(CollectorRun):
    """A RoutezCollector on a simulated clock, refreshed from bodies the test sets."""

    def __init__(self, ttl: float = 3600.0) -> None:
        collector = RoutezCollector(ServerContext("a1", "127.0.0.1"), PeerOptions(ttl))
        super().__init__(collector, info(), body())


def test_pooled_and_account_routes_are_summed_per_peer():
    data = (DATA / "routez_pooled.json").read_bytes()
    doc = orjson.loads(data)
    got = Run().refresh(data)
    peers = {(r["remote_name"], r["remote_id"]) for r in doc["routes"]}
    assert len(peers) == 2 and len(doc["routes"]) == 8
    for peer in peers:
        mine = [r for r in doc["routes"] if (r["remote_name"], r["remote_id"]) == peer]
        assert got[m.NATS_ROUTE_CONNECTIONS.name][peer] == len(mine) == 4
        assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name][peer] == sum(r["in_msgs"] for r in mine)
        assert got[m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name][peer] == sum(r["out_msgs"] for r in mine)
        assert got[m.NATS_ROUTE_IN_BYTES_TOTAL.name][peer] == sum(r["in_bytes"] for r in mine)
        assert got[m.NATS_ROUTE_OUT_BYTES_TOTAL.name][peer] == sum(r["out_bytes"] for r in mine)
        assert got[m.NATS_ROUTE_PENDING_BYTES.name][peer] == sum(r["pending_size"] for r in mine)
        assert got[m.NATS_ROUTE_SUBSCRIPTIONS.name][peer] == sum(
            r["subscriptions"] for r in mine)
        assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][peer] == 0
    a2 = next(p for p in peers if p[0] == "A2")
    assert got[m.NATS_ROUTE_RTT_SECONDS.name][a2] == pytest.approx(173e-6)
    assert got[m.NATS_ROUTE_PEERS.name] == {(): 2}
    assert got[m.NATS_CLUSTER_SIZE.name] == {("A",): 3}


def test_every_family_is_exported_and_owned():
    got = Run().refresh(body(route(1)))
    assert set(got) == {metric.name for metric in m.ROUTEZ}
    assert RoutezCollector in ALL and RoutezCollector.families == m.ROUTEZ


def test_rtt_is_the_highest_measured_and_absent_until_measured():
    run = Run()
    got = run.refresh(body(route(1, rtt="1.5ms"), route(2, rtt="255µs"), route(3, rtt="0s"),
                           route(4, A3, rtt="0s"), route(5, A3)))
    rtt = got[m.NATS_ROUTE_RTT_SECONDS.name]
    assert rtt[A2] == pytest.approx(0.0015)
    assert rtt[A3] == pytest.approx(255e-6)
    unmeasured = route(6, A3)
    del unmeasured["rtt"]
    got = run.refresh(body(route(1, rtt="0s"), unmeasured))
    assert got[m.NATS_ROUTE_RTT_SECONDS.name] == {}
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {A2: 1, A3: 1}


def test_a_reconnected_route_keeps_the_peer_counters_monotonic():
    run = Run()
    run.refresh(body(route(1, in_msgs=100, out_bytes=7000), route(2, in_msgs=5)))
    # rid 1 closed and came back as rid 3, from zero.
    got = run.refresh(body(route(2, in_msgs=6), route(3, in_msgs=1, out_bytes=10)))
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name][A2] == 100 + 6 + 1
    assert got[m.NATS_ROUTE_OUT_BYTES_TOTAL.name][A2] == 7000 + 10
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][A2] == 1
    assert got[m.NATS_ROUTE_CONNECTIONS.name][A2] == 2
    # Both close; a later refresh still counts them.
    got = run.refresh(body(route(4, in_msgs=2)))
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name][A2] == 100 + 6 + 1 + 2
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][A2] == 3


def test_a_server_restart_starts_afresh():
    run = Run()
    run.refresh(body(route(1, in_msgs=100), route(2, A3, in_msgs=50)))
    run.refresh(body(route(2, A3, in_msgs=60)))
    got = run.refresh(body(route(1, in_msgs=3)), info(server_id="NA1-restarted"))
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name] == {A2: 3}
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name] == {A2: 0}
    assert got[m.NATS_ROUTE_PEERS.name] == {(): 1}


def test_a_peer_without_routes_is_kept_for_its_ttl_then_dropped():
    run = Run(ttl=60.0)
    run.refresh(body(route(1, in_msgs=10, subscriptions=4, pending_size=9),
                     route(2, A3, in_msgs=20)))
    run.now += 5
    got = run.refresh(body(route(1, in_msgs=11)))
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {A2: 1, A3: 0}
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name] == {A2: 11, A3: 20}
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][A3] == 1
    assert got[m.NATS_ROUTE_SUBSCRIPTIONS.name][A3] == 0
    assert got[m.NATS_ROUTE_PENDING_BYTES.name][A3] == 0
    assert A3 not in got[m.NATS_ROUTE_RTT_SECONDS.name]
    assert got[m.NATS_ROUTE_PEERS.name] == {(): 1}
    assert got[m.NATS_CLUSTER_SIZE.name] == {("A",): 2}
    run.now += 59.9
    assert run.refresh(body(route(1)))[m.NATS_ROUTE_CONNECTIONS.name] == {A2: 1, A3: 0}
    run.now += 0.1
    got = run.refresh(body(route(1)))
    for metric in m.ROUTEZ:
        if metric.labels == m.PEER_LABELS:
            assert A3 not in got[metric.name], metric.name


def test_a_peer_back_within_its_ttl_continues_its_counters():
    run = Run(ttl=60.0)
    run.refresh(body(route(1, A3, out_msgs=40)))
    run.now += 30
    run.refresh(body())
    run.now += 29
    got = run.refresh(body(route(9, A3, out_msgs=1)))
    assert got[m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name] == {A3: 41}
    # The TTL starts again from the next time the peer has no route.
    run.now += 59
    run.refresh(body())
    run.now += 59
    assert run.refresh(body())[m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name] == {A3: 41}


def test_a_restarted_peer_replaces_its_old_id_at_once():
    # A restarted nats-server has a new server id; its old series must not stay at
    # connections 0 for the TTL, or NATSRouteDown would fire for a route that is there.
    run = Run(ttl=3600.0)
    run.refresh(body(route(1, A3, in_msgs=10), route(2, in_msgs=5)))
    got = run.refresh(body(route(2, in_msgs=6)))
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {A2: 1, A3: 0}
    a3_again = ("A3", "NA3-restarted")
    got = run.refresh(body(route(2, in_msgs=7), route(3, a3_again, in_msgs=1)))
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {A2: 1, a3_again: 1}
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name] == {A2: 7, a3_again: 1}
    # A peer without a name is never taken for another.
    nameless, other = ("", "NX"), ("", "NY")
    run = Run(ttl=3600.0)
    run.refresh(body(route(1, nameless)))
    got = run.refresh(body(route(2, other)))
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {nameless: 0, other: 1}


def test_no_cluster_no_routes():
    got = Run().refresh(body(), info(cluster=""))
    assert got[m.NATS_ROUTE_PEERS.name] == {(): 0}
    assert got[m.NATS_CLUSTER_SIZE.name] == {}
    assert got[m.NATS_ROUTE_CONNECTIONS.name] == {}
    # A server alone in a named cluster (or one named only by its gateway) is a cluster of 1.
    assert Run().refresh(body(), info(cluster="B"))[m.NATS_CLUSTER_SIZE.name] == {("B",): 1}
    null_routes = orjson.dumps({"server_id": "NA1", "num_routes": 0, "routes": None})
    assert Run().refresh(null_routes)[m.NATS_ROUTE_PEERS.name] == {(): 0}


def _without(key: str) -> dict:
    entry = route(1)
    del entry[key]
    return entry


BAD_BODIES = {
    "not json": b'{"routes": [',
    "not an object": b"[]",
    "no routes": orjson.dumps({"server_id": "NA1"}),
    "routes an object": orjson.dumps({"routes": {"1": route(1)}}),
    "route a list": orjson.dumps({"routes": [[1]]}),
    "rid a string": body(route("1")),
    "rid negative": body(route(-1)),
    "in_msgs negative": body(route(1, in_msgs=-1)),
    "in_msgs a fraction": body(route(1, in_msgs=1.5)),
    "out_msgs a boolean": body(route(1, out_msgs=True)),
    "in_bytes past u64": body(route(1, in_bytes=12345)).replace(
        b'"in_bytes":12345', b'"in_bytes":18446744073709551616'),
    "out_bytes null": body(route(1, out_bytes=None)),
    "pending_size negative": body(route(1, pending_size=-5)),
    "subscriptions a string": body(route(1, subscriptions="3")),
    "remote_id a number": body(route(1, remote_id=7)),
    "remote_name null": body(route(1, remote_name=None)),
    "rtt not a duration": body(route(1, rtt="fast")),
    "rtt negative": body(route(1, rtt="-1ms")),
    "rtt a number": body(route(1, rtt=0.001)),
    "a rid twice": body(route(1), route(1, A3)),
    **{f"no {key}": body(_without(key)) for key in (
        "rid", "remote_id", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "pending_size",
        "subscriptions")},
}


@pytest.mark.parametrize("bad", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_malformed_body_is_a_decode_error_that_keeps_the_last_samples(bad):
    run = Run()
    good = run.refresh(body(route(1, in_msgs=10), route(2, A3)))
    with pytest.raises(ScrapeError) as caught:
        run.refresh(bad)
    assert caught.value.reason == DECODE and caught.value.endpoint == "routez"
    run.collector.failed(caught.value)
    assert run.exported() == good
    # The fold did not move: the next good body continues from the last good one.
    got = run.refresh(body(route(1, in_msgs=12), route(2, A3)))
    assert got[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name][A2] == 12
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][A2] == 0


def test_a_failed_request_drops_the_samples():
    run = Run()
    run.refresh(body(route(1)))
    run.collector.failed(ScrapeError("routez", "timeout", "slow"))
    assert run.exported() == {}


class Server:
    """/varz and /routez of a server, for a ServerCollector."""

    def __init__(self, routez: bytes) -> None:
        self.varz = orjson.loads((DATA / "varz.json").read_bytes())
        self.routez = routez

    async def get(self, endpoint, params=None, **_):
        if endpoint == "varz":
            return bytearray(orjson.dumps(self.varz))
        if endpoint == "routez":
            return bytearray(self.routez)
        raise ScrapeError(endpoint, "http_status", "404", status=404)


def test_a_bad_body_counts_one_decode_error_and_keeps_the_series():
    server = Server(body(route(1, in_msgs=5)))
    collector = ServerCollector(Target("a1", "http://127.0.0.1:8222"), server,
                                {"routez": None})
    asyncio.run(collector.refresh())
    before = copy.deepcopy(collector.snapshot[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name])
    assert before == [(A2, 5)]
    server.routez = b'{"routes": [{"rid": "x"}]}'
    asyncio.run(collector.refresh())
    errors = dict(collector.snapshot[m.FASTNATS_REFRESH_ERRORS_TOTAL.name])
    assert errors[("routez", DECODE)] == 1
    assert errors[("varz", DECODE)] == 0
    assert collector.snapshot[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name] == before
    success = dict(collector.snapshot[m.FASTNATS_COLLECTOR_SUCCESS.name])
    assert success[("routez",)] == 0 and success[("varz",)] == 1


def test_an_endpoint_served_again_after_404_is_logged_once_each_way(caplog):
    server = Server(body(route(1, in_msgs=5)))
    collector = ServerCollector(Target("a1", "http://127.0.0.1:8222"), server,
                                {"routez": None})
    routez, server.routez = server.routez, None
    server_get = server.get

    async def get(endpoint, params=None, **kwargs):
        if endpoint == "routez" and server.routez is None:
            raise ScrapeError(endpoint, "http_status", "404", status=404)
        return await server_get(endpoint, params, **kwargs)

    server.get = get
    with caplog.at_level(logging.INFO, logger="fastnats.scrape"):
        for _ in range(2):
            asyncio.run(collector.refresh())
        assert m.NATS_ROUTE_IN_MESSAGES_TOTAL.name not in collector.snapshot
        server.routez = routez
        for _ in range(2):
            asyncio.run(collector.refresh())
    assert collector.snapshot[m.NATS_ROUTE_IN_MESSAGES_TOTAL.name] == [(A2, 5)]
    said = [r.getMessage() for r in caplog.records if "routez" in r.getMessage()]
    assert said == ["server a1 does not serve /routez; its collector exports nothing for it",
                    "server a1 serves /routez now"]


def test_the_request_is_plain():
    run = Run()
    run.refresh(body())
    assert run.source.requests == [("routez", None)]


def test_peer_ttl_flag():
    parser = build_parser()
    args = parser.parse_args(["--routez.peer-ttl", "90s"])
    assert RoutezCollector.configure(args, 5.0) == PeerOptions(90.0)
    assert RoutezCollector.configure(parser.parse_args([]), 5.0) == PeerOptions(3600.0)
    assert parser.parse_args(["--no-collector.routez"]).collector_routez is False
    assert RoutezCollector.default is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--routez.peer-ttl", "-1s"])


def test_the_fold_alone():
    fold: PeerFold[str] = PeerFold(2, ttl=10.0)
    totals = fold.update([(1, "p", (1, 2)), (2, "p", (3, 4)), (3, "q", (5, 6))], 0.0)
    assert list(totals) == ["p", "q"]
    assert totals["p"] == PeerTotals(connections=2, counts=(4, 6), disconnects=0)
    totals = fold.update([(2, "p", (3, 5))], 1.0)
    assert totals["p"].counts == (4, 7) and totals["p"].connections == 1
    assert totals["p"].disconnects == 1
    assert totals["q"].counts == (5, 6) and totals["q"].connections == 0
    assert fold.update([(2, "p", (3, 5))], 11.0).keys() == {"p"}
    with pytest.raises(ValueError):
        fold.update([(1, "p", (1,))], 12.0)
    fold.clear()
    assert fold.update([], 13.0) == {}


def test_pooled_body_with_one_peer_gone():
    # The recorded listing after A3 stopped: only A2's four routes are left.
    run = Run()
    run.refresh((DATA / "routez_pooled.json").read_bytes())
    got = run.refresh((DATA / "routez_peer_down.json").read_bytes())
    a3 = next(p for p in got[m.NATS_ROUTE_CONNECTIONS.name] if p[0] == "A3")
    assert got[m.NATS_ROUTE_CONNECTIONS.name][a3] == 0
    assert got[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][a3] == 4
    assert got[m.NATS_ROUTE_PEERS.name] == {(): 1}
    assert got[m.NATS_CLUSTER_SIZE.name] == {("A",): 2}
