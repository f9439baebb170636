"""/routez and /gatewayz against a real supercluster (tests.support.cluster): cluster A of three
servers with pooled routes (pool_size 3, plus the SYS account's own route), cluster B of one,
gateways both ways. The exported families are checked against the very bodies the exporter read,
traffic across a route and the gateway raises the counters, and stopping and restarting a route
peer touches only the series of the routes and gateway connections to it, and no counter goes
back.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from fastnats._reference.durations import parse_go_duration
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors.peers import PeerOptions
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.cluster import Node, Supercluster
from tests.support.process import exporting, wait_until

pytestmark = pytest.mark.integration

ROUTE_COUNTERS = {
    m.NATS_ROUTE_IN_MESSAGES_TOTAL.name: "in_msgs",
    m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name: "out_msgs",
    m.NATS_ROUTE_IN_BYTES_TOTAL.name: "in_bytes",
    m.NATS_ROUTE_OUT_BYTES_TOTAL.name: "out_bytes",
}
GATEWAY_COUNTERS = {
    m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name: "in_msgs",
    m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name: "out_msgs",
    m.NATS_GATEWAY_IN_BYTES_TOTAL.name: "in_bytes",
    m.NATS_GATEWAY_OUT_BYTES_TOTAL.name: "out_bytes",
}
COUNTERS = {metric.name for metric in (*m.ROUTEZ, *m.GATEWAYZ) if metric.type == m.COUNTER}


class Tee:
    """A MonitorClient that keeps the last body of each endpoint it returned."""

    def __init__(self, client: MonitorClient) -> None:
        self.client = client
        self.bodies: dict[str, bytes] = {}

    async def get(self, endpoint, params=None, **options):
        body = await self.client.get(endpoint, params, **options)
        self.bodies[endpoint] = bytes(body)
        return body


class Exporter:
    """The exporter's collectors for every node of the supercluster, in this process, refreshed
    when the test says; only /routez and /gatewayz besides /varz."""

    def __init__(self, nodes: list[Node]) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        self.sources = {node.name: Tee(MonitorClient(node.monitor_url, self.session, 10.0))
                        for node in nodes}
        self.servers = {
            node.name: ServerCollector(Target(node.name, node.monitor_url),
                                       self.sources[node.name],
                                       {"routez": PeerOptions(), "gatewayz": PeerOptions()})
            for node in nodes}
        self.collector = NatsCollector(list(self.servers.values()))

    @staticmethod
    async def _session():
        return new_session()

    def refresh(self, *, down: tuple[str, ...] = ()) -> dict[str, dict[str, dict]]:
        """Refresh every server; returns server -> family -> labels -> value."""
        self.loop.run_until_complete(self.collector.refresh())
        for name, server in self.servers.items():
            assert server.up == (name not in down), (name, server.problems)
            if name not in down:
                assert not server.problems, server.problems
        return {name: {family: dict(samples) for family, samples in server.snapshot.items()}
                for name, server in self.servers.items()}

    def body(self, server: str, endpoint: str) -> dict:
        return orjson.loads(self.sources[server].bodies[endpoint])

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


@pytest.fixture
def exporter(supercluster: Supercluster):
    supercluster.wait_formed()
    exporter = Exporter(supercluster.nodes)
    try:
        yield exporter
    finally:
        exporter.close()


def expected_routes(routez: dict) -> dict[str, dict]:
    """The route families of a /routez body, summed per peer, computed apart from the
    collector."""
    out: dict[str, dict] = defaultdict(dict)
    by_peer: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for route in routez["routes"]:
        by_peer[(route["remote_name"], route["remote_id"])].append(route)
    for peer, routes in by_peer.items():
        out[m.NATS_ROUTE_CONNECTIONS.name][peer] = len(routes)
        out[m.NATS_ROUTE_PENDING_BYTES.name][peer] = sum(r["pending_size"] for r in routes)
        out[m.NATS_ROUTE_SUBSCRIPTIONS.name][peer] = sum(r["subscriptions"] for r in routes)
        out[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][peer] = 0
        rtt = max(parse_go_duration(r.get("rtt", "0s")) for r in routes)
        if rtt:
            out[m.NATS_ROUTE_RTT_SECONDS.name][peer] = rtt / 1e9
        for family, key in ROUTE_COUNTERS.items():
            out[family][peer] = sum(r[key] for r in routes)
    out[m.NATS_ROUTE_PEERS.name][()] = len({peer[1] for peer in by_peer})
    out.setdefault(m.NATS_ROUTE_RTT_SECONDS.name, {})
    return out


def expected_gateways(gatewayz: dict) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(dict)
    connections: list[tuple[tuple[str, str], dict]] = []
    for name, entry in gatewayz["outbound_gateways"].items():
        connections.append(((name, "outbound"), entry["connection"]))
        if entry["configured"]:
            out[m.NATS_GATEWAY_CONFIGURED.name][(name,)] = 1
    for name, entries in gatewayz["inbound_gateways"].items():
        connections.extend(((name, "inbound"), entry["connection"]) for entry in entries)
    for key, conn in connections:
        counts = out[m.NATS_GATEWAY_CONNECTIONS.name]
        counts[key] = counts.get(key, 0) + 1
        out[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name][key] = 0
        for family, field in GATEWAY_COUNTERS.items():
            out[family][key] = out[family].get(key, 0) + conn[field]
    return out


def test_every_family_equals_the_bodies_it_was_read_from(supercluster, exporter):
    got = exporter.refresh()
    for node in supercluster.nodes:
        mine = got[node.name]
        routez = exporter.body(node.name, "routez")
        for family, values in expected_routes(routez).items():
            assert mine[family] == values, (node.name, family)
        cluster_size = mine[m.NATS_CLUSTER_SIZE.name]
        gatewayz = exporter.body(node.name, "gatewayz")
        for family, values in expected_gateways(gatewayz).items():
            assert mine[family] == values, (node.name, family)
        if node.cluster == "A":
            # Pooled routes (3) and the SYS account's route, to each of the two peers.
            connections = mine[m.NATS_ROUTE_CONNECTIONS.name]
            assert sorted(name for name, _ in connections) == sorted(
                peer.name for peer in supercluster.a if peer is not node)
            assert set(connections.values()) == {4}, connections
            assert len(routez["routes"]) == 8
            assert cluster_size == {("A",): 3}
            assert mine[m.NATS_GATEWAY_CONNECTIONS.name][("B", "outbound")] == 1
        else:
            # B1 has no route listener; its gateway names its cluster.
            assert mine[m.NATS_ROUTE_CONNECTIONS.name] == {}
            assert cluster_size == {("B",): 1}
            # One inbound gateway connection from each A server: one series.
            assert mine[m.NATS_GATEWAY_CONNECTIONS.name] == {
                ("A", "outbound"): 1, ("A", "inbound"): 3}
        for family, samples in mine.items():
            if family.startswith(("nats_route", "nats_gateway", "nats_cluster")):
                for value in samples.values():
                    assert value >= 0, (family, samples)
        for metric in (*m.ROUTEZ, *m.GATEWAYZ):
            assert metric.name in mine, metric.name
    # B1's one outbound gateway connection lands on one of the A servers.
    assert sum(got[node.name][m.NATS_GATEWAY_CONNECTIONS.name].get(("B", "inbound"), 0)
               for node in supercluster.a) == 1


def test_traffic_raises_the_route_and_gateway_counters(supercluster, exporter):
    before = exporter.refresh()
    received = supercluster.traffic(200)
    assert all(count == 200 for account in received.values() for count in account.values()), \
        received
    after = exporter.refresh()
    a2 = peer_of(after["A1"], "A2")
    sent = 2 * 200  # 200 messages in each of two accounts
    assert delta(before, after, "A1", m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name, a2) >= sent
    assert delta(before, after, "A1", m.NATS_ROUTE_OUT_BYTES_TOTAL.name, a2) >= sent
    a1 = peer_of(after["A2"], "A1")
    assert delta(before, after, "A2", m.NATS_ROUTE_IN_MESSAGES_TOTAL.name, a1) >= sent
    assert delta(before, after, "A1", m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name,
                 ("B", "outbound")) >= sent
    assert delta(before, after, "B1", m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name,
                 ("A", "inbound")) >= sent
    assert not decreased(before, after)


def test_a_stopped_route_peer_leaves_only_its_routes_at_zero(supercluster, exporter):
    a3 = supercluster.node("A3")
    before = exporter.refresh()
    old_a3 = {name: peer_of(before[name], "A3") for name in ("A1", "A2")}
    a3.stop()
    try:
        wait_until(lambda: without_a3(supercluster))
        down = exporter.refresh(down=("A3",))
        assert down["A3"].get(m.NATS_ROUTE_CONNECTIONS.name) is None
        for name in ("A1", "A2"):
            mine, was = down[name], before[name]
            gone = old_a3[name]
            assert mine[m.NATS_ROUTE_CONNECTIONS.name][gone] == 0
            assert mine[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][gone] == 4
            assert mine[m.NATS_ROUTE_PENDING_BYTES.name][gone] == 0
            assert mine[m.NATS_ROUTE_SUBSCRIPTIONS.name][gone] == 0
            assert gone not in mine[m.NATS_ROUTE_RTT_SECONDS.name]
            assert mine[m.NATS_ROUTE_PEERS.name] == {(): 1}
            assert mine[m.NATS_CLUSTER_SIZE.name] == {("A",): 2}
            # The other peer's routes and the outbound gateway are as they were.
            other = next(p for p in was[m.NATS_ROUTE_CONNECTIONS.name] if p != gone)
            assert mine[m.NATS_ROUTE_CONNECTIONS.name][other] == 4
            assert mine[m.NATS_ROUTE_DISCONNECTS_TOTAL.name][other] == 0
            outbound = ("B", "outbound")
            assert mine[m.NATS_GATEWAY_CONNECTIONS.name][outbound] == 1
            assert mine[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name][outbound] == 0
        # B1 sums one inbound connection from each A server: A3's is gone. B1's one outbound
        # connection to cluster A may have been to A3; then it is now to A1 or A2.
        b1, b1_was = down["B1"], before["B1"]
        assert b1[m.NATS_GATEWAY_CONNECTIONS.name] == {("A", "outbound"): 1,
                                                       ("A", "inbound"): 2}
        assert b1[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name][("A", "inbound")] == 1
        b1_to_a3 = before["A3"][m.NATS_GATEWAY_CONNECTIONS.name].get(("B", "inbound"), 0)
        assert b1[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name][("A", "outbound")] == b1_to_a3
        if not b1_to_a3:
            for name in ("A1", "A2"):
                assert down[name][m.NATS_GATEWAY_CONNECTIONS.name] == before[name][
                    m.NATS_GATEWAY_CONNECTIONS.name]
        assert sum(down[name][m.NATS_GATEWAY_CONNECTIONS.name].get(("B", "inbound"), 0)
                   for name in ("A1", "A2")) == 1
        assert b1_was[m.NATS_GATEWAY_CONNECTIONS.name][("A", "inbound")] == 3
        assert not decreased(before, down, skip=("A3",))
    finally:
        if not a3.running:
            a3.start()
        supercluster.wait_formed()
    back = exporter.refresh()
    # A restarted nats-server has a new server_id: a new peer, which replaces the old one at
    # once (kept at 0, it would say a route is missing).
    for name in ("A1", "A2"):
        connections = back[name][m.NATS_ROUTE_CONNECTIONS.name]
        assert old_a3[name] not in connections
        new_a3 = [p for p in connections if p[0] == "A3"]
        assert len(new_a3) == 1 and connections[new_a3[0]] == 4
        assert back[name][m.NATS_ROUTE_PEERS.name] == {(): 2}
        assert back[name][m.NATS_CLUSTER_SIZE.name] == {("A",): 3}
    assert back["B1"][m.NATS_GATEWAY_CONNECTIONS.name][("A", "inbound")] == 3
    # A3's own counters start afresh with its new identity; every other one only went up,
    # but for the series of A3's old id, which went with it.
    replaced = {(name, old_a3[name]) for name in ("A1", "A2")}
    for was in (before, down):
        assert [d for d in decreased(was, back, skip=("A3",))
                if (d[0], d[2]) not in replaced] == []


def test_the_exporter_process_exports_every_server(supercluster):
    supercluster.wait_formed()
    targets = [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
    with exporting(*targets, "--web.listen-address", "127.0.0.1:0", "--refresh-interval",
                   "200ms", "--routez.peer-ttl", "10m", "--gatewayz.peer-ttl", "10m") as proc:
        def ready() -> dict | None:
            families = parse(proc.scrape())
            sizes = families.get(m.NATS_CLUSTER_SIZE.name, {})
            return families if len(sizes) == len(supercluster.nodes) else None

        families = wait_until(ready)
    sizes = {dict(labels)["server"]: (dict(labels)["cluster"], value)
             for labels, value in families[m.NATS_CLUSTER_SIZE.name].items()}
    assert sizes == {"A1": ("A", 3), "A2": ("A", 3), "A3": ("A", 3), "B1": ("B", 1)}
    peers = {dict(labels)["server"]: value
             for labels, value in families[m.NATS_ROUTE_PEERS.name].items()}
    assert peers == {"A1": 2, "A2": 2, "A3": 2, "B1": 0}
    inbound = {labels: value for labels, value in families[m.NATS_GATEWAY_CONNECTIONS.name].items()
               if dict(labels)["server"] == "B1"}
    assert inbound == {
        frozenset({("server", "B1"), ("gateway", "A"), ("direction", "outbound")}): 1,
        frozenset({("server", "B1"), ("gateway", "A"), ("direction", "inbound")}): 3}
    errors = {dict(labels)["endpoint"]: value
              for labels, value in families[m.FASTNATS_REFRESH_ERRORS_TOTAL.name].items()
              if dict(labels)["endpoint"] in ("routez", "gatewayz")}
    assert set(errors) == {"routez", "gatewayz"} and set(errors.values()) == {0}


def parse(text: str) -> dict[str, dict]:
    """Sample name -> frozenset of label pairs -> value; a duplicate series fails the test."""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series = out.setdefault(sample.name, {})
            key = frozenset(sample.labels.items())
            assert key not in series, f"duplicate series {sample.name}{sample.labels}"
            series[key] = sample.value
    return out


def without_a3(supercluster: Supercluster) -> bool:
    """A1 and A2 have no route to A3, and B1 is connected to cluster A without it."""
    for name in ("A1", "A2"):
        if "A3" in {r["remote_name"] for r in supercluster.node(name).get("routez")["routes"]}:
            return False
    gatewayz = supercluster.node("B1").get("gatewayz")
    return "A" in gatewayz["outbound_gateways"] and len(gatewayz["inbound_gateways"]["A"]) == 2


def peer_of(samples: Mapping[str, dict], name: str) -> tuple[str, str]:
    [peer] = [p for p, count in samples[m.NATS_ROUTE_CONNECTIONS.name].items()
              if p[0] == name and count]
    return peer


def delta(before: dict, after: dict, server: str, family: str, labels: tuple) -> float:
    return after[server][family][labels] - before[server][family].get(labels, 0)


def decreased(before: dict, after: dict, skip: tuple[str, ...] = ()) -> list[tuple]:
    """Every counter series of ``before`` that is missing or lower in ``after``."""
    return [(server, family, labels, value, after[server].get(family, {}).get(labels))
            for server, families in before.items() if server not in skip
            for family, samples in families.items() if family in COUNTERS
            for labels, value in samples.items()
            if after[server].get(family, {}).get(labels, -1) < value]
