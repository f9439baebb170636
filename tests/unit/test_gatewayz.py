"""The /gatewayz collector without a network: one series per (gateway, direction) however many
servers of a remote cluster connect inbound, counters monotonic across reconnects, a server
restart, the gateway TTL on a simulated clock, configured gateways, no gateways at all, and
decode errors that keep the last good samples. Recorded bodies are from nats-server 2.15: B1,
the one server of cluster B, with an inbound gateway from each of A1-A3; A1 with its outbound
gateway to B; a server without gateways."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collectors import ALL, GatewayzCollector, ServerContext, ServerInfo
from fastnats.collectors.base import DECODE
from fastnats.collectors.peers import PeerOptions
from fastnats.errors import ScrapeError
from fastnats.exposition import render
from tests.support.bodysource import CollectorRun

DATA = Path(__file__).resolve().parents[1] / "data"
IN = "inbound"
OUT = "outbound"


def conn(cid: int, **fields) -> dict:
    connection = {"cid": cid, "kind": "Gateway", "ip": "127.0.0.1", "port": 7222,
                  "start": "2026-11-29T19:03:52Z", "last_activity": "2026-11-29T19:03:52Z",
                  "rtt": "0s", "uptime": "1s", "idle": "0s", "pending_bytes": 0, "in_msgs": 0,
                  "out_msgs": 0, "in_bytes": 0, "out_bytes": 0, "subscriptions": 0,
                  "name": f"N{cid}"}
    connection.update(fields)
    return connection


def body(outbound: dict | None = None, inbound: dict | None = None) -> bytes:
    return orjson.dumps({"server_id": "NB1", "now": "2026-11-29T19:03:53Z", "name": "B",
                         "host": "127.0.0.1", "port": 7222, "outbound_gateways": outbound or {},
                         "inbound_gateways": inbound or {}})


def out(connection: dict | None, configured: bool = True) -> dict:
    entry: dict = {"configured": configured}
    if connection is not None:
        entry["connection"] = connection
    return entry


def inb(*connections: dict) -> list[dict]:
    return [{"configured": False, "connection": c} for c in connections]


def info(server_id: str = "NB1") -> ServerInfo:
    return ServerInfo(server_id, "2026-11-29T19:00:00Z", connections=0, total_connections=0,
                      listeners={}, cluster="B")


class Run(CollectorRun):
    """A GatewayzCollector on a simulated clock, refreshed from bodies the test sets."""

    def __init__(self, ttl: float = 3600.0) -> None:
        collector = GatewayzCollector(ServerContext("b1", "127.0.0.1"), PeerOptions(ttl))
        super().__init__(collector, info(), body())


def test_inbound_connections_from_every_server_of_a_cluster_are_one_series():
    data = (DATA / "gatewayz_inbound.json").read_bytes()
    doc = orjson.loads(data)
    inbound = [entry["connection"] for entry in doc["inbound_gateways"]["A"]]
    outbound = doc["outbound_gateways"]["A"]["connection"]
    assert len(inbound) == 3
    got = Run().refresh(data)
    assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {("A", OUT): 1, ("A", IN): 3}
    for family, key in ((m.NATS_GATEWAY_IN_MESSAGES_TOTAL, "in_msgs"),
                        (m.NATS_GATEWAY_OUT_MESSAGES_TOTAL, "out_msgs"),
                        (m.NATS_GATEWAY_IN_BYTES_TOTAL, "in_bytes"),
                        (m.NATS_GATEWAY_OUT_BYTES_TOTAL, "out_bytes")):
        assert got[family.name] == {("A", IN): sum(c[key] for c in inbound),
                                    ("A", OUT): outbound[key]}, family.name
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1}
    assert got[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name] == {("A", OUT): 0, ("A", IN): 0}
    # Every connection still says 0s: no round trip measured yet.
    assert got[m.NATS_GATEWAY_RTT_SECONDS.name] == {}


def test_two_inbound_from_one_cluster_render_without_duplicate_series():
    run = Run()
    got = run.refresh(body(
        {"A": out(conn(1, out_msgs=4, rtt="2ms"))},
        {"A": inb(conn(2, in_msgs=10, in_bytes=100, rtt="1ms"),
                  conn(3, in_msgs=5, in_bytes=50, rtt="3ms")),
         "C": inb(conn(4, in_msgs=1))}))
    assert got[m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name] == {
        ("A", OUT): 0, ("A", IN): 15, ("C", IN): 1}
    assert got[m.NATS_GATEWAY_IN_BYTES_TOTAL.name][("A", IN)] == 150
    assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {("A", OUT): 1, ("A", IN): 2, ("C", IN): 1}
    assert got[m.NATS_GATEWAY_RTT_SECONDS.name] == {("A", OUT): 0.002, ("A", IN): 0.003}
    families = [(metric, metric.labels, run.collector.samples()[metric.name])
                for metric in m.GATEWAYZ]
    for metric, _, samples in families:
        labels = [values for values, _ in samples]
        assert len(labels) == len(set(labels)), metric.name
    text, _ = render(families)
    parsed = {family.name: family for family in text_string_to_metric_families(text.decode())}
    inbound = [s for s in parsed["nats_gateway_in_messages"].samples
               if s.name.endswith("_total") and s.labels == {"gateway": "A", "direction": IN}]
    assert [s.value for s in inbound] == [15]


def test_every_family_is_exported_and_owned():
    got = Run().refresh(body({"A": out(conn(1))}))
    assert set(got) == {metric.name for metric in m.GATEWAYZ}
    assert GatewayzCollector in ALL and GatewayzCollector.families == m.GATEWAYZ
    assert ALL.index(GatewayzCollector) > 0


@pytest.mark.parametrize("name", ["gatewayz_none.json", "gatewayz_outbound.json"])
def test_recorded_bodies_decode(name):
    got = Run().refresh((DATA / name).read_bytes())
    if name == "gatewayz_none.json":
        # No gateway configured: no series, and no error.
        assert all(samples == {} for samples in got.values())
    else:
        assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {("B", OUT): 1}
        assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("B",): 1}


def test_null_gateway_objects_are_empty():
    data = orjson.dumps({"server_id": "NB1", "outbound_gateways": None,
                         "inbound_gateways": None})
    assert all(samples == {} for samples in Run().refresh(data).values())


def test_a_reconnected_gateway_keeps_its_counters_monotonic():
    run = Run()
    run.refresh(body({"A": out(conn(1, out_msgs=100, out_bytes=1000))},
                     {"A": inb(conn(2, in_msgs=7), conn(3, in_msgs=8))}))
    got = run.refresh(body({"A": out(conn(9, out_msgs=2, out_bytes=20))},
                           {"A": inb(conn(3, in_msgs=9), conn(10, in_msgs=1))}))
    assert got[m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name][("A", OUT)] == 102
    assert got[m.NATS_GATEWAY_OUT_BYTES_TOTAL.name][("A", OUT)] == 1020
    assert got[m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name][("A", IN)] == 7 + 9 + 1
    assert got[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name] == {("A", OUT): 1, ("A", IN): 1}


def test_a_server_restart_starts_afresh():
    run = Run()
    run.refresh(body({"A": out(conn(1, out_msgs=100))}, {"C": inb(conn(2, in_msgs=3))}))
    got = run.refresh(body({"A": out(conn(1, out_msgs=1))}), info(server_id="NB1-new"))
    assert got[m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name] == {("A", OUT): 1}
    assert got[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name] == {("A", OUT): 0}


def test_a_remote_cluster_gone_is_kept_for_its_ttl_and_stays_configured():
    run = Run(ttl=60.0)
    run.refresh(body({"A": out(conn(1, out_msgs=5, rtt="1ms"))}, {"A": inb(conn(2))}))
    # The remote cluster is down: /gatewayz lists neither direction, not even as configured.
    run.now += 1
    got = run.refresh(body())
    assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {("A", OUT): 0, ("A", IN): 0}
    assert got[m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name][("A", OUT)] == 5
    assert got[m.NATS_GATEWAY_RTT_SECONDS.name] == {}
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1}
    run.now += 60
    got = run.refresh(body())
    assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {}
    assert got[m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name] == {}
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1}


def test_configured_comes_from_the_flag_and_from_server_info():
    run = Run()
    # An implicit (discovered) outbound gateway is not configured.
    got = run.refresh(body({"A": out(conn(1)), "C": out(conn(2), configured=False)}))
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1}
    # /varz gateway.gateways (ServerInfo.gateways): a gateway never connected counts too.
    declared = ServerInfo("NB1", "2026-11-29T19:00:00Z", connections=0, total_connections=0,
                          listeners={}, cluster="B", gateways=("A", "D"))
    got = run.refresh(body(), declared)
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1, ("D",): 1}


def test_an_outbound_gateway_without_a_connection():
    got = Run().refresh(body({"A": {"configured": True}}))
    assert got[m.NATS_GATEWAY_CONFIGURED.name] == {("A",): 1}
    assert got[m.NATS_GATEWAY_CONNECTIONS.name] == {}


def _bad(**changes) -> bytes:
    connection = conn(1)
    connection.update(changes)
    return body({"A": out(connection)}, {"A": inb(conn(2))})


def _without(key: str) -> bytes:
    connection = conn(1)
    del connection[key]
    return body({"A": out(connection)})


BAD_BODIES = {
    "not json": b'{"outbound_gateways": {',
    "not an object": b"[]",
    "no outbound_gateways": orjson.dumps({"inbound_gateways": {}}),
    "no inbound_gateways": orjson.dumps({"outbound_gateways": {}}),
    "outbound a list": orjson.dumps({"outbound_gateways": [], "inbound_gateways": {}}),
    "inbound a list": orjson.dumps({"outbound_gateways": {}, "inbound_gateways": []}),
    "inbound entry an object": body(inbound={"A": {"configured": False,
                                                   "connection": conn(1)}}),
    "inbound item a number": body(inbound={"A": [3]}),
    "outbound entry a string": body({"A": "up"}),
    "configured a string": body({"A": {"configured": "yes", "connection": conn(1)}}),
    "no configured": body({"A": {"connection": conn(1)}}),
    "inbound without configured": body(inbound={"A": [{"connection": conn(1)}]}),
    "connection a list": body({"A": {"configured": True, "connection": [1]}}),
    "cid a string": _bad(cid="1"),
    "cid negative": _bad(cid=-1),
    "in_msgs negative": _bad(in_msgs=-1),
    "out_msgs a fraction": _bad(out_msgs=2.5),
    "in_bytes a boolean": _bad(in_bytes=False),
    "out_bytes a string": _bad(out_bytes="9"),
    "rtt not a duration": _bad(rtt="soon"),
    "rtt negative": _bad(rtt="-3ms"),
    "a cid twice": body({"A": out(conn(1))}, {"A": inb(conn(1))}),
    **{f"no {key}": _without(key) for key in ("cid", "in_msgs", "out_msgs", "in_bytes",
                                                  "out_bytes")},
}


@pytest.mark.parametrize("bad", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_malformed_body_is_a_decode_error_that_keeps_the_last_samples(bad):
    run = Run()
    good = run.refresh(body({"A": out(conn(1, out_msgs=3))}, {"A": inb(conn(2, in_msgs=4))}))
    with pytest.raises(ScrapeError) as caught:
        run.refresh(bad)
    assert caught.value.reason == DECODE and caught.value.endpoint == "gatewayz"
    run.collector.failed(caught.value)
    assert run.exported() == good
    got = run.refresh(body({"A": out(conn(1, out_msgs=4))}, {"A": inb(conn(2, in_msgs=4))}))
    assert got[m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name][("A", OUT)] == 4
    assert got[m.NATS_GATEWAY_DISCONNECTS_TOTAL.name][("A", OUT)] == 0


def test_a_failed_request_drops_the_samples():
    run = Run()
    run.refresh(body({"A": out(conn(1))}))
    run.collector.failed(ScrapeError("gatewayz", "connect", "refused"))
    assert run.exported() == {}


def test_the_request_asks_for_no_account_details():
    run = Run()
    run.refresh(body())
    assert run.source.requests == [("gatewayz", None)]


def test_peer_ttl_flag():
    parser = build_parser()
    args = parser.parse_args(["--gatewayz.peer-ttl", "2m"])
    assert GatewayzCollector.configure(args, 5.0) == PeerOptions(120.0)
    assert GatewayzCollector.configure(parser.parse_args([]), 5.0) == PeerOptions(3600.0)
    assert parser.parse_args(["--no-collector.gatewayz"]).collector_gatewayz is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--gatewayz.peer-ttl", "soon"])
