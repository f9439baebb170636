"""The /jsz collector without a network.

Recorded bodies: ``jsz_a{1,2,3}.json`` are /jsz?accounts=true&streams=true&consumers=true&
config=true of the three JetStream servers of ``tests.support.cluster`` (nats-server 2.15.1),
fetched at one moment, with account T1 holding ORDERS (R3, limits, metadata team and env.tier;
durable consumers proc (metadata owner) and audit, a named ephemeral consumer and one ephemeral
pull consumer per server), LOCAL (R1 on A1; a durable and an ephemeral push consumer),
ORDERS_MIRROR (R3 mirror of ORDERS) and AGG (R1 on A2, sourcing ORDERS and LOCAL); the meta
leader is A3. ``jsz_solo.json`` is a server outside a cluster with twelve JetStream accounts.
Then synthetic bodies (``tests.support.jszgen``): the shape check, caps and ``_other``, top-K,
metadata labels with mirrors and sources, hostile names, decode errors, levels and paging.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import ALL, JszCollector, ServerContext, ServerInfo
from fastnats.collectors.base import DECODE
from fastnats.collectors.jsz import ROLE_FAMILIES, JszOptions, Listing, meta_keys, meta_label
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits, KiB, MiB, read_within
from fastnats.target import Target
from tests.support import jszgen

DATA = Path(__file__).resolve().parents[1] / "data"
SERVERS = ("A1", "A2", "A3")
OTHER = m.OTHER_GROUP
INFO = ServerInfo("NSIM", "start-1", 0, 0, {})


def recorded(server: str) -> bytes:
    return (DATA / f"jsz_{server.lower()}.json").read_bytes()


class Source:
    """Serves /jsz of server ``name``: pages of ``doc`` as nats-server 2.15 cuts them, or
    ``body`` as it is; refuses a reply over the limit a real source sets under the default
    flags from the entries the request expects (``expected``)."""

    def __init__(self, name: str, body: bytes | None = None, doc: dict | None = None) -> None:
        self.name = name
        self.body = body
        self.doc = doc
        self.requests: list[dict] = []
        self.expected: list[dict] = []

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        assert endpoint == "jsz"
        params = dict(params or {})
        self.expected.append(dict(expect or {}))
        if self.doc is not None:
            if "offset" in params:
                doc = jszgen.page(self.doc, params["offset"], params["limit"])
            else:
                doc = {k: v for k, v in self.doc.items() if k != "account_details"}
            body = orjson.dumps(doc)
        else:
            body = self.body

        async def read(limit: int) -> bytearray:
            self.requests.append(params)
            if len(body) > limit:
                raise ScrapeError(endpoint, "too_large", f"over {limit}")
            return bytearray(body)

        return await read_within(BodyLimits().bounds(endpoint, params, expect), read)


def refresh(collector: JszCollector, source: Source) -> dict:
    asyncio.run(collector.refresh(source, replace(INFO, server_name=source.name)))
    return collector.samples()


def collect(server: str, body: bytes | None = None, **options) -> dict:
    collector = JszCollector(ServerContext(server, "127.0.0.1"), JszOptions(**options))
    return refresh(collector, Source(server, recorded(server) if body is None else body))


def series(samples: dict, metric: m.Metric) -> dict:
    return {labels: value for labels, value in samples.get(metric.name, [])}


# -- recorded bodies of the three-server cluster -------------------------------------------

@pytest.mark.parametrize("implementation", ["core", "reference"])
def test_a_server_without_a_meta_leader_claims_no_stream_and_no_consumer(implementation,
                                                                          monkeypatch):
    # A restarted server can list a consumer as led by itself, from before its stop, while the
    # cluster has moved on (tests/integration/test_jsz_real.py saw it counted twice once). Until
    # it knows a meta leader, it claims nothing; its own families are still exported.
    from fastnats import _reference
    from fastnats.collectors import jsz as jsz_module

    if implementation == "reference":
        monkeypatch.setattr(jsz_module, "Listing", _reference.JszListing)
    led_streams = led_durables = 0
    for server in SERVERS:
        doc = orjson.loads(recorded(server))
        normal = collect(server, level="consumers")
        led_streams += len(series(normal, m.NATS_JETSTREAM_STREAM_MESSAGES))
        led_durables += len(series(normal, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES))
        doc["meta_cluster"]["leader"] = ""
        got = collect(server, orjson.dumps(doc), level="consumers")
        assert series(got, m.NATS_JETSTREAM_STREAM_MESSAGES) == {}
        assert series(got, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES) == {}
        assert series(got, m.NATS_JETSTREAM_STREAMS)
        assert series(got, m.NATS_JETSTREAM_META_LEADER_INFO) == {}
    assert led_streams and led_durables


def test_a_server_recovering_its_meta_layer_claims_nothing():
    # For a moment after a restart, nats-server lists every replicated stream it holds with
    # itself as leader and no raft group, and its consumers without a cluster block: believed,
    # the stream and its consumers would be counted twice (tests/integration/test_jsz_real.py).
    led_streams = led_durables = 0
    for server in SERVERS:
        doc = orjson.loads(recorded(server))
        r1 = set()
        for account in doc["account_details"]:
            for stream in account.get("stream_detail", []):
                if stream["config"].get("num_replicas", 1) > 1:
                    stream["cluster"] = {"name": "A", "leader": server}
                else:
                    r1.add(stream["name"])
                for consumer in stream.get("consumer_detail", []):
                    consumer.pop("cluster", None)
        got = collect(server, orjson.dumps(doc), level="consumers")
        assert {labels[1] for labels in series(got, m.NATS_JETSTREAM_STREAM_MESSAGES)} <= r1
        assert series(got, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES) == {}
        normal = collect(server, level="consumers")
        led_streams += len({labels[1] for labels in series(
            normal, m.NATS_JETSTREAM_STREAM_MESSAGES)} - r1)
        led_durables += len(series(normal, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES))
    # As recorded, the servers lead replicated streams and durables: the test is not vacuous.
    assert led_streams and led_durables


@pytest.mark.parametrize("implementation", ["core", "reference"])
def test_the_first_milliseconds_of_a_restart_claim_no_replicated_consumer(implementation,
                                                                          monkeypatch):
    # For about 10 ms after a restart nats-server 2.15 lists no meta_cluster at all, its
    # replicated streams with itself as leader and no raft group, and their consumers without
    # a cluster block: a server that looks outside a cluster. A replicated stream says it is
    # not, so none of those consumers is believed (tests/integration/test_jsz_real.py saw
    # orders-pull counted by two servers). An R1 stream's consumers live with it: still read.
    from fastnats import _reference
    from fastnats.collectors import jsz as jsz_module

    if implementation == "reference":
        monkeypatch.setattr(jsz_module, "Listing", _reference.JszListing)
    kept = 0
    for server in SERVERS:
        doc = orjson.loads(recorded(server))
        del doc["meta_cluster"]
        r1_durables = set()
        for account in doc["account_details"]:
            for stream in account.get("stream_detail", []):
                replicated = stream["config"].get("num_replicas", 1) > 1
                if replicated:
                    stream["cluster"] = {"name": "A", "leader": server}
                for consumer in stream.get("consumer_detail", []):
                    consumer.pop("cluster", None)
                    if not replicated and stream["cluster"].get("leader") == server \
                            and consumer["config"].get("durable_name"):
                        r1_durables.add(consumer["name"])
        got = collect(server, orjson.dumps(doc), level="consumers")
        durables = {labels[2] for labels in series(
            got, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)}
        assert durables == r1_durables
        assert not {"proc", "audit"} & durables
        kept += len(durables)
    # As recorded, LOCAL (R1 on A1) has a durable: the R1 branch is exercised.
    assert kept


def groups(doc: dict):
    """The cluster blocks of every replicated stream and consumer of a /jsz document."""
    for account in doc["account_details"]:
        for stream in account.get("stream_detail", []):
            for item in (stream, *stream.get("consumer_detail", [])):
                if "raft_group" in item.get("cluster", {}):
                    yield item["cluster"]


def test_a_leader_never_lists_itself_among_the_replicas_as_recorded():
    # The fact the next test relies on: nats-server leaves the answering server out of a
    # group's replicas whenever it knows the leader (clusterInfo, jetstream_cluster.go).
    led = 0
    for server in SERVERS:
        for cluster in groups(orjson.loads(recorded(server))):
            names = {peer["name"] for peer in cluster["replicas"]}
            assert server not in names and len(names) == 2
            led += cluster["leader"] == server
    assert led


@pytest.mark.parametrize("implementation", ["core", "reference"])
def test_a_leader_listing_itself_among_the_replicas_claims_nothing(implementation, monkeypatch):
    # A stale view: every replicated stream and consumer names this server its leader while
    # listing it among the replicas too. Believed, each would be counted by two servers.
    from fastnats import _reference
    from fastnats.collectors import jsz as jsz_module

    if implementation == "reference":
        monkeypatch.setattr(jsz_module, "Listing", _reference.JszListing)
    for server in SERVERS:
        doc = orjson.loads(recorded(server))
        for cluster in groups(doc):
            cluster["leader"] = server
        # Control: claiming alone, with the replicas as recorded, is believed.
        claimed = collect(server, orjson.dumps(doc), level="consumers")
        for cluster in groups(doc):
            cluster["replicas"].insert(1, {"name": server, "current": True, "active": 1})
        got = collect(server, orjson.dumps(doc), level="consumers")
        r1 = {stream["name"] for account in doc["account_details"]
              for stream in account.get("stream_detail", [])
              if "raft_group" not in stream["cluster"] and stream["cluster"]["leader"] == server}
        assert {labels[1] for labels in series(claimed, m.NATS_JETSTREAM_STREAM_MESSAGES)} \
            == r1 | {"ORDERS", "ORDERS_MIRROR"}
        assert {labels[1] for labels in series(got, m.NATS_JETSTREAM_STREAM_MESSAGES)} == r1
        assert {labels[2] for labels in series(
            claimed, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)} >= {"proc", "audit"}
        assert not {labels[2] for labels in series(
            got, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)} & {"proc", "audit"}
        assert not series(got, m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT)



def test_each_stream_is_exported_once_by_its_leader():
    owners: dict[tuple, list[str]] = {}
    for server in SERVERS:
        samples = collect(server, level="consumers")
        for labels in series(samples, m.NATS_JETSTREAM_STREAM_MESSAGES):
            owners.setdefault(labels, []).append(server)
    assert owners == {("T1", "ORDERS"): ["A3"], ("T1", "ORDERS_MIRROR"): ["A3"],
                      ("T1", "LOCAL"): ["A1"], ("T1", "AGG"): ["A2"]}


def test_each_durable_consumer_is_exported_once_by_its_leader():
    owners: dict[tuple, list[str]] = {}
    for server in SERVERS:
        samples = collect(server, level="consumers")
        for labels in series(samples, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES):
            owners.setdefault(labels, []).append(server)
    assert owners == {("T1", "ORDERS", "proc"): ["A1"], ("T1", "ORDERS", "audit"): ["A2"],
                      ("T1", "LOCAL", "local-durable"): ["A1"]}


def test_durable_values_match_the_body():
    samples = collect("A1", level="consumers")
    proc = ("T1", "ORDERS", "proc")
    expected = {m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES: 40,
                m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES: 6,
                m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES: 0,
                m.NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS: 0,
                m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE: 10,
                m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE: 10,
                m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE: 4,
                m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE: 4}
    for metric, value in expected.items():
        assert series(samples, metric)[proc] == value, metric.name
    assert series(samples, m.NATS_JETSTREAM_CONSUMER_OVERFLOW) == {(): 0}


def test_ephemeral_aggregates_equal_the_sums_of_the_consumers_each_server_leads():
    """The named consumer without durable_name (2.15) is ephemeral; the sums over servers
    equal the per-consumer sums of the bodies."""
    total: dict[tuple, int] = {}
    for server in SERVERS:
        doc = json.loads(recorded(server))
        for stream in doc["account_details"][0].get("stream_detail", []):
            for consumer in stream.get("consumer_detail") or []:
                if consumer["cluster"].get("leader") == server and \
                        not consumer["config"].get("durable_name"):
                    key = ("T1", stream["name"])
                    total[key] = total.get(key, 0) + consumer["num_pending"]
    sums: dict[tuple, int] = {}
    for server in SERVERS:
        samples = collect(server, level="consumers")
        for labels, value in series(samples,
                                    m.NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES).items():
            if labels[-1] == "sum":
                sums[labels[:-1]] = sums.get(labels[:-1], 0) + value
    assert sums == total == {("T1", "ORDERS"): 50 + 47 * 3, ("T1", "LOCAL"): 0}
    a1 = collect("A1", level="consumers")
    assert series(a1, m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS) == {
        ("T1", "ORDERS"): 2, ("T1", "LOCAL"): 1}
    assert series(a1, m.NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES) == {
        ("T1", "ORDERS", "sum"): 3, ("T1", "ORDERS", "max"): 3,
        ("T1", "LOCAL", "sum"): 20, ("T1", "LOCAL", "max"): 20}


def test_limits_sources_mirror_and_replicas_from_the_leader():
    a3 = collect("A3")
    orders = ("T1", "ORDERS")
    assert series(a3, m.NATS_JETSTREAM_STREAM_MAX_BYTES) == {orders: 1 << 30}
    assert series(a3, m.NATS_JETSTREAM_STREAM_MAX_MESSAGES) == {orders: 100000}
    assert series(a3, m.NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS) == {orders: 86400.0}
    assert series(a3, m.NATS_JETSTREAM_STREAM_SOURCE_LAG) == {
        ("T1", "ORDERS_MIRROR", "ORDERS", "mirror"): 0}
    assert series(a3, m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS) == {
        ("T1", "ORDERS_MIRROR", "ORDERS", "mirror"): pytest.approx(0.040800687)}
    assert series(a3, m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT) == {
        ("T1", stream, peer): 1 for stream in ("ORDERS", "ORDERS_MIRROR") for peer in ("A1", "A2")}
    a2 = collect("A2")
    assert set(series(a2, m.NATS_JETSTREAM_STREAM_SOURCE_LAG)) == {
        ("T1", "AGG", "ORDERS", "source"), ("T1", "AGG", "LOCAL", "source")}
    # A follower knows neither the sources nor the other replicas.
    assert not series(collect("A1"), m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT)


def test_server_and_meta_families():
    a3, a1 = collect("A3", level="server"), collect("A1", level="server")
    assert series(a3, m.NATS_JETSTREAM_META_LEADER) == {(): 1}
    assert series(a1, m.NATS_JETSTREAM_META_LEADER) == {(): 0}
    assert series(a1, m.NATS_JETSTREAM_META_LEADER_INFO) == {("A3",): 1}
    assert series(a3, m.NATS_JETSTREAM_META_PEERS) == {
        ("current",): 2, ("lagging",): 0, ("offline",): 0}
    assert series(a1, m.NATS_JETSTREAM_META_PEERS) == {}
    assert series(a1, m.NATS_JETSTREAM_API_LEVEL) == {(): 5}
    assert series(a1, m.NATS_JETSTREAM_STREAMS) == {(): 3}
    assert series(a1, m.NATS_JETSTREAM_META_CLUSTER_SIZE) == {(): 3}
    assert m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name not in a1
    # Each peer, from the leader only: A1 and A2 (active in nanoseconds in /jsz).
    assert series(a3, m.NATS_JETSTREAM_META_PEER_CURRENT) == {("A1",): 1, ("A2",): 1}
    assert series(a3, m.NATS_JETSTREAM_META_PEER_OFFLINE) == {("A1",): 0, ("A2",): 0}
    assert series(a3, m.NATS_JETSTREAM_META_PEER_LAG) == {("A1",): 0, ("A2",): 0}
    assert series(a3, m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS) == {
        ("A1",): 0.122802429, ("A2",): 0.122980437}
    for family in (m.NATS_JETSTREAM_META_PEER_CURRENT,
                   m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS):
        assert series(a1, family) == {}
    # Recorded before any meta snapshot (last_time is Go's zero time): pending only.
    for samples in (a1, a3):
        assert series(samples, m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES) == {(): 14}
        assert series(samples, m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES) == {(): 13269}
        assert m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS.name not in samples
        assert m.NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS.name not in samples


@pytest.mark.parametrize("implementation", ["core", "reference"])
def test_meta_peer_states_and_a_taken_snapshot(implementation, monkeypatch):
    from fastnats import _reference
    from fastnats.collectors import jsz as jsz_module

    if implementation == "reference":
        monkeypatch.setattr(jsz_module, "Listing", _reference.JszListing)
    doc = orjson.loads(recorded("A3"))
    meta = doc["meta_cluster"]
    meta["replicas"] = [
        {"name": "A1", "current": False, "offline": True, "active": 0, "peer": "MdmAy6RQ"},
        {"name": "A2", "current": False, "active": 2_500_000_000, "lag": 42, "peer": "EsV"}]
    meta["snapshot"].update(last_time="2026-11-29T19:41:02.10080191Z", last_duration=3_100_000)
    samples = collect("A3", orjson.dumps(doc), level="server")
    assert series(samples, m.NATS_JETSTREAM_META_PEERS) == {
        ("current",): 0, ("lagging",): 1, ("offline",): 1}
    assert series(samples, m.NATS_JETSTREAM_META_PEER_CURRENT) == {("A1",): 0, ("A2",): 0}
    assert series(samples, m.NATS_JETSTREAM_META_PEER_OFFLINE) == {("A1",): 1, ("A2",): 0}
    assert series(samples, m.NATS_JETSTREAM_META_PEER_LAG) == {("A1",): 0, ("A2",): 42}
    # Never heard from (active 0): no last-seen series.
    assert series(samples, m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS) == {("A2",): 2.5}
    [taken] = series(samples, m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS).values()
    assert taken == pytest.approx(datetime(2026, 11, 29, 19, 41, 2, tzinfo=timezone.utc)
                                  .timestamp() + 0.10080191, abs=1e-6)
    assert series(samples, m.NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS) == {(): 0.0031}
    # Without snapshot statistics (an older server), no snapshot family.
    del meta["snapshot"]
    samples = collect("A3", orjson.dumps(doc), level="server")
    assert not [name for name in samples if "snapshot" in name]
    # A last_time that is no time is the /jsz decode error.
    meta["snapshot"] = {"pending_entries": 1, "pending_size": 2, "last_time": "yesterday"}
    with pytest.raises(ScrapeError, match="meta_cluster.snapshot.last_time") as info:
        collect("A3", orjson.dumps(doc), level="server")
    assert info.value.reason == DECODE


def test_accounts_level_and_unlimited_limits():
    samples = collect("A1", level="accounts")
    assert series(samples, m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES) == {("T1",): 56552,
                                                                      ("T2",): 0}
    # reserved_* are 18446744073709551615 (-1 as uint64): unlimited, no series.
    assert series(samples, m.NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES) == {}
    assert m.NATS_JETSTREAM_STREAM_MESSAGES.name not in samples


def test_levels_ask_for_what_they_read():
    def params(level: str, **options) -> list[dict]:
        collector = JszCollector(ServerContext("A1", "h"), JszOptions(level, **options))
        source = Source("A1", recorded("A1"))
        refresh(collector, source)
        return source.requests

    assert params("server") == [{}]
    probe, page = params("accounts")
    assert probe == {} and page == {"accounts": "true", "offset": 0, "limit": 1024}
    assert params("streams")[1] == {"accounts": "true", "streams": "true", "config": "true",
                                    "stream-leader-only": "true", "offset": 0, "limit": 1024}
    assert "stream-leader-only" not in params("streams", replicas=True)[1]
    assert params("consumers")[1] == {"accounts": "true", "streams": "true", "config": "true",
                                      "consumers": "true", "offset": 0, "limit": 1024}


def test_replicas_flag_adds_the_follower_view_with_a_role():
    samples = collect("A1", replicas=True)
    assert series(samples, m.NATS_JETSTREAM_STREAM_MESSAGES) == {
        ("T1", "ORDERS", "follower"): 50, ("T1", "LOCAL", "leader"): 20,
        ("T1", "ORDERS_MIRROR", "follower"): 50}
    assert series(samples, m.NATS_JETSTREAM_STREAM_MAX_BYTES) == {
        ("T1", "ORDERS", "follower"): 1 << 30}
    collector = JszCollector(ServerContext("A1", "h"), JszOptions(replicas=True))
    for metric in m.JSZ:
        assert ("replica_role" in collector.label_names(metric)) == (metric in ROLE_FAMILIES)


def test_server_outside_a_cluster():
    samples = collect("SOLO", recorded("solo"), level="consumers")
    assert series(samples, m.NATS_JETSTREAM_STREAM_MESSAGES) == {("ACC00", "S"): 1,
                                                                ("ACC00", "M"): 1}
    assert set(series(samples, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)) == {
        ("ACC00", "S", "d")}
    assert m.NATS_JETSTREAM_META_LEADER.name not in samples
    assert len(series(samples, m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES)) == 12


def test_disabled_jetstream_exports_nothing():
    body = orjson.dumps({"server_id": "N", "now": "2026-11-29T19:41:02Z", "disabled": True,
                         "total": 0})
    assert collect("B1", body, level="consumers") == {}


# -- synthetic bodies -------------------------------------------------------------------------

def test_generated_body_has_the_recorded_shape():
    reference: dict[str, set] = {}
    for server in SERVERS:
        for kind, orders in jszgen.shape(json.loads(recorded(server))).items():
            reference.setdefault(kind, set()).update(orders)
    generated = jszgen.shape(jszgen.document(jszgen.Plan(), seed=7))
    assert set(generated) == set(reference)
    # Keys 2.15 leaves out when empty, in their struct's place.
    omitted = {"stream.state": {"num_deleted"}}
    for kind, orders in generated.items():
        keys = {key for order in orders for key in order}
        known = {key for order in reference[kind] for key in order} | omitted.get(kind, set())
        assert keys <= known, kind
        before = jszgen.precedence(reference[kind])
        assert not {(a, b) for a, b in jszgen.precedence(orders) if (b, a) in before}, kind


def synthetic(**plan) -> dict:
    return jszgen.document(jszgen.Plan(**plan), seed=3)


def run(doc: dict, name: str = "A1", **options) -> tuple[JszCollector, Source, dict]:
    collector = JszCollector(ServerContext(name, "h"), JszOptions(**options))
    source = Source(name, doc=doc)
    return collector, source, refresh(collector, source)


def test_synthetic_streams_once_over_the_cluster():
    seen: dict[tuple, int] = {}
    docs = {server: jszgen.document(jszgen.Plan(streams=60, consumers=300, me=server), seed=5)
            for server in SERVERS}
    for server, doc in docs.items():
        _, _, samples = run(doc, server, level="consumers")
        for labels in series(samples, m.NATS_JETSTREAM_STREAM_BYTES):
            seen[labels] = seen.get(labels, 0) + 1
        led = {(a["id"], s["name"]) for a in doc["account_details"]
               for s in a.get("stream_detail", []) if s["cluster"]["leader"] == server}
        assert set(series(samples, m.NATS_JETSTREAM_STREAM_BYTES)) == led


def _handed_over(doc: dict, me: str, stream: str, consumer: str) -> dict:
    """``doc`` (this server's /jsz, recorded) after ``stream`` and ``consumer`` of T1 moved
    their leader here, as the new leader lists them."""
    doc = copy.deepcopy(doc)
    for item in (s for a in doc["account_details"] for s in a.get("stream_detail", [])
                 if s["name"] == stream):
        for group in (item, *(c for c in item["consumer_detail"] if c["name"] == consumer)):
            cluster = group["cluster"]
            old = cluster["leader"]
            cluster["leader"] = me
            for peer in cluster["replicas"]:
                if peer["name"] == me:
                    peer["name"] = old
    return doc


class Cluster:
    """A1, A2 and A3 in one exporter, each read on demand from a /jsz document."""

    def __init__(self, **options) -> None:
        self.options = JszOptions(**options)
        self.servers = {name: ServerCollector(Target(name, "http://127.0.0.1:1"),
                                              Source(name), {"jsz": self.options})
                        for name in SERVERS}
        self.exporter = NatsCollector(list(self.servers.values()))

    def read(self, name: str, doc: dict) -> None:
        server = self.servers[name]
        asyncio.run(server.collectors[0].refresh(Source(name, orjson.dumps(doc)),
                                                 replace(INFO, server_name=name)))
        server.up = True
        server.publish()

    def served(self, metric: m.Metric) -> dict:
        family = next(f for f in self.exporter.families() if f[0] is metric)
        return {labels: value for labels, value in family[2]}


@pytest.mark.parametrize("replicas", [False, True])
def test_a_leader_change_between_two_reads_is_counted_once(replicas):
    # A3 led ORDERS and A1 led proc when they were read; then both moved to A2, read last.
    # Each server's view was true when it was read: the later read keeps the item, and the
    # same happens the other way round when A3 is read again, still stale.
    docs = {name: orjson.loads(recorded(name)) for name in SERVERS}
    level = {"level": "consumers", "replicas": replicas}
    before = Cluster(**level)
    for name in SERVERS:
        before.read(name, docs[name])
    cluster = Cluster(**level)
    cluster.read("A3", docs["A3"])
    cluster.read("A1", docs["A1"])
    cluster.read("A2", _handed_over(docs["A2"], "A2", "ORDERS", "proc"))

    def leaders(served: dict, stream: str) -> set[str]:
        return {labels[0] for labels in served if labels[2] == stream
                and (not replicas or labels[-1] == "leader")}

    messages = cluster.served(m.NATS_JETSTREAM_STREAM_MESSAGES)
    assert leaders(messages, "ORDERS") == {"A2"}
    assert leaders(messages, "ORDERS_MIRROR") == {"A3"}
    pending = cluster.served(m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)
    assert {labels[0] for labels in pending if labels[3] == "proc"} == {"A2"}
    assert {labels[0] for labels in pending if labels[3] == "audit"} == {"A2"}
    assert not [labels for labels in cluster.served(m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT)
                if labels[0] == "A3" and labels[2] == "ORDERS"]
    # The account counts still add up to what the cluster holds, as before the move.
    for metric in (m.NATS_JETSTREAM_ACCOUNT_STREAMS, m.NATS_JETSTREAM_ACCOUNT_CONSUMERS):
        assert sum(cluster.served(metric).values()) == sum(before.served(metric).values())
    assert sum(before.served(m.NATS_JETSTREAM_ACCOUNT_STREAMS).values()) == 4
    # A3 read again, still naming itself: now the latest read, it keeps ORDERS.
    cluster.read("A3", docs["A3"])
    assert leaders(cluster.served(m.NATS_JETSTREAM_STREAM_MESSAGES), "ORDERS") == {"A3"}
    assert sum(cluster.served(m.NATS_JETSTREAM_ACCOUNT_STREAMS).values()) == 4
    # A3 down: its claims go with its series, and A2's count again.
    cluster.servers["A3"].up = False
    cluster.servers["A3"].publish()
    assert leaders(cluster.served(m.NATS_JETSTREAM_STREAM_MESSAGES), "ORDERS") == {"A2"}


def test_servers_that_claim_nothing_twice_are_served_as_published():
    cluster = Cluster(level="consumers")
    for name in SERVERS:
        cluster.read(name, orjson.loads(recorded(name)))
    assert all(snapshot is cluster.servers[name].snapshot
               for name, snapshot in cluster.exporter.snapshots())
    assert all(server.claims["jsz"][0].items for server in cluster.servers.values())


def test_consumer_cap_other_and_sticky_places():
    doc = synthetic(streams=10, consumers=200, durable=1.0, r3=0.0)
    collector, source, samples = run(doc, level="consumers", max_consumers=5)
    pending = series(samples, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)
    other = (OTHER, OTHER, OTHER)
    assert len(pending) == 6 and other in pending
    assert series(samples, m.NATS_JETSTREAM_CONSUMER_OVERFLOW) == {(): 195}
    every = [c for a in doc["account_details"] for s in a.get("stream_detail", [])
             for c in s.get("consumer_detail", [])]
    assert sum(pending.values()) == sum(c["num_pending"] for c in every)
    # _other has no sequences.
    assert other not in series(samples, m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE)
    placed = set(pending) - {other}
    # A newcomer that sorts first does not take a place from those placed.
    first = doc["account_details"][0]["stream_detail"][0]
    newcomer = copy.deepcopy(first["consumer_detail"][0])
    newcomer["name"] = newcomer["config"]["durable_name"] = "aaa-first"
    first["consumer_detail"].append(newcomer)
    samples = refresh(collector, source)
    assert set(series(samples, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)) - {other} == placed
    # A placed consumer that goes frees its place.
    gone = next(iter(placed))
    for stream in doc["account_details"][0]["stream_detail"] + [
            s for a in doc["account_details"][1:] for s in a.get("stream_detail", [])]:
        stream["consumer_detail"] = [c for c in stream.get("consumer_detail", [])
                                     if c["name"] != gone[2]]
    samples = refresh(collector, source)
    now = set(series(samples, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)) - {other}
    assert gone not in now and len(now) == 5


def test_top_k_over_durable_and_ephemeral_consumers():
    doc = synthetic(streams=20, consumers=400, r3=0.0)
    _, _, samples = run(doc, level="consumers", top_k=7)
    top = samples[m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES.name]
    every = sorted((c["num_pending"], "true" if c["config"].get("durable_name") else "false")
                   for a in doc["account_details"] for s in a.get("stream_detail", [])
                   for c in s.get("consumer_detail", []))
    assert [value for _, value in top] == [p for p, _ in every[::-1][:7]]
    assert {labels[3] for labels, _ in top} <= {"true", "false"}
    _, _, none = run(doc, level="consumers", top_k=0)
    assert none[m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES.name] == []


def test_meta_keys_with_mirrors_and_sources_and_every_option():
    doc = synthetic(streams=80, consumers=400, mirrors=0.2, sourced=0.2)
    collector, _, samples = run(doc, level="consumers", replicas=True, top_k=5,
                                max_consumers=10, stream_meta_keys=("team", "env.tier", "none"),
                                consumer_meta_keys=("owner",))
    assert collector.label_names(m.NATS_JETSTREAM_STREAM_BYTES) == (
        "account", "stream", "meta_team", "meta_env_tier", "meta_none", "replica_role")
    assert collector.label_names(m.NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES) == (
        "account", "stream", "meta_team", "meta_env_tier", "meta_none", "stat")
    assert collector.label_names(m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES) == (
        "account", "stream", "consumer", "meta_owner")
    assert series(samples, m.NATS_JETSTREAM_STREAM_SOURCE_LAG)
    for metric in m.JSZ:
        names = collector.label_names(metric)
        for labels, _ in samples.get(metric.name, []):
            assert len(labels) == len(names), metric.name
    values = {labels[2:5] for labels in series(samples, m.NATS_JETSTREAM_STREAM_BYTES)}
    assert values == {("payments", "prod", ""), ("", "", "")}
    # The whole exposition renders with these labels.
    server = ServerCollector(Target("A1", "http://127.0.0.1:1"), Source("A1", doc=doc),
                             {"jsz": collector.options})
    server.collectors[0] = collector
    server.up = True
    server.publish()
    names = {family.name for family in NatsCollector([server]).collect()}
    assert "nats_jetstream_stream_bytes" in names


def test_hostile_names_never_become_markers():
    doc = synthetic(streams=3, consumers=6, durable=1.0, r3=0.0, accounts=1)
    stream = doc["account_details"][0]["stream_detail"][0]
    doc["account_details"][0]["id"] = "_other"
    stream["name"] = "_other"
    stream["config"]["metadata"]["team"] = "_other"
    for consumer in stream["consumer_detail"]:
        consumer["config"]["durable_name"] = consumer["name"] = "_other" + consumer["name"][:0]
        break
    _, _, samples = run(doc, level="consumers", max_consumers=1,
                        stream_meta_keys=("team",))
    for metric in (m.NATS_JETSTREAM_STREAM_BYTES, m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES):
        for labels in series(samples, metric):
            if labels[:3] != (OTHER, OTHER, OTHER):
                assert OTHER not in labels, labels
    assert ("__other", "__other", "__other") in series(samples, m.NATS_JETSTREAM_STREAM_BYTES)


def test_meta_key_labels_are_valid_and_collisions_are_refused():
    assert meta_label("env.tier") == "meta_env_tier"
    assert meta_label("équipe-1") == "meta__quipe_1"
    assert meta_keys("a, b.c") == ("a", "b.c")
    for bad in ("a,a", "a.b,a_b", "a,,b"):
        with pytest.raises(argparse.ArgumentTypeError):
            meta_keys(bad)
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--jsz.stream-meta-keys", "x-y,x_y"])
    args = parser.parse_args(["--collector.jsz", "--jsz.level", "consumers", "--jsz.replicas",
                              "--jsz.max-consumers", "5", "--jsz.top-k", "3",
                              "--jsz.consumer-meta-keys", "owner"])
    options = JszCollector.configure(args, 15.0)
    assert options == JszOptions("consumers", True, 5, 3, (), ("owner",))
    assert ALL[-1] is JszCollector and JszCollector.default is False


@pytest.mark.parametrize("key, label", [
    ("a-b", "meta_a_b"), ("1x", "meta_1x"), ("__x", "meta___x"), ("é", "meta__"),
    ("x y", "meta_x_y"), ("_", "meta__"), ("K8s.io/app", "meta_K8s_io_app")])
def test_a_metadata_key_is_named_by_the_documented_rule(key, label):
    assert meta_label(key) == label
    assert build_parser().parse_args(["--jsz.consumer-meta-keys", key]).jsz_consumer_meta_keys \
        == (key,)
    assert JszCollector(ServerContext("A1", "127.0.0.1"),
                        JszOptions(stream_meta_keys=(key,))).label_names(
        m.NATS_JETSTREAM_STREAM_BYTES) == ("account", "stream", label)


@pytest.mark.parametrize("flag", ["--jsz.stream-meta-keys", "--jsz.consumer-meta-keys"])
@pytest.mark.parametrize("value, problem", [
    ("a,", "empty"), (" ,a", "empty"), ("é,ü", "both be the label meta__"),
    (",".join(f"k{i}" for i in range(65)), "at most 64"), ("a\udcff", "not UTF-8")])
def test_metadata_keys_that_make_no_label_are_refused_at_startup(flag, value, problem, capsys):
    from fastnats import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main([flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and problem in err, err
    # An empty value is no key at all.
    assert build_parser().parse_args([flag, ""]) == build_parser().parse_args([])


@pytest.mark.parametrize("keys", [("",), ("a", ""), ("é", "ü"), ("\udcff",),
                                  tuple(f"k{i}" for i in range(65))])
def test_options_refuse_the_same_metadata_keys(keys):
    with pytest.raises(ValueError):
        JszOptions(stream_meta_keys=keys)
    with pytest.raises(ValueError):
        JszOptions(consumer_meta_keys=keys)


@pytest.mark.parametrize("path, value, field", [
    (("account_details", 0, "stream_detail", 0, "state", "messages"), -1,
     "account_details[0].stream_detail[0].state.messages"),
    (("account_details", 0, "stream_detail", 0, "consumer_detail", 0, "num_pending"), "7",
     "account_details[0].stream_detail[0].consumer_detail[0].num_pending"),
    (("account_details", 0, "stream_detail", 0, "consumer_detail", 0, "delivered",
      "stream_seq"), 1.5,
     "account_details[0].stream_detail[0].consumer_detail[0].delivered.stream_seq"),
    (("account_details", 0, "stream_detail", 0, "config", "max_bytes"), "big",
     "account_details[0].stream_detail[0].config.max_bytes"),
    (("account_details", 0, "stream_detail", 0, "config", "metadata", "team"), 5,
     "account_details[0].stream_detail[0].config.metadata.team"),
    (("streams",), True, "streams"),
])
def test_decode_errors_name_the_field_and_keep_the_last_good_samples(path, value, field):
    doc = synthetic(streams=2, consumers=4, durable=1.0, r3=0.0, accounts=1)
    collector, source, good = run(doc, level="consumers", stream_meta_keys=("team",))
    bad = copy.deepcopy(doc)
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    source.doc = bad
    with pytest.raises(ScrapeError) as caught:
        refresh(collector, source)
    assert caught.value.reason == DECODE and field in str(caught.value)
    collector.failed(caught.value)
    assert collector.samples() == good


def test_malformed_json_is_a_decode_error():
    with pytest.raises(ScrapeError) as caught:
        collect("A1", b'{"streams": ', level="server")
    assert caught.value.reason == DECODE


def test_paging_reads_every_account_once():
    doc = synthetic(streams=60, consumers=60, accounts=2500)
    collector, source, samples = run(doc, level="streams")
    pages = [r for r in source.requests if "offset" in r]
    assert [r["offset"] for r in pages] == [0, 1024, 2048]
    assert len(series(samples, m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES)) == 2500


def test_a_server_without_total_gets_one_page_of_every_account():
    doc = synthetic(streams=10, consumers=10, accounts=1100)
    del doc["total"]

    class Old(Source):
        async def get(self, endpoint, params=None, **kwargs):
            if endpoint == "jsz" and params and "offset" in params:
                self.requests.append(dict(params))
                page = dict(self.doc)
                page.pop("total", None)
                page["account_details"] = doc["account_details"][:params["limit"]]
                return bytearray(orjson.dumps(page))
            return await super().get(endpoint, params, **kwargs)

    collector = JszCollector(ServerContext("A1", "h"), JszOptions("accounts"))
    source = Old("A1", doc=doc)
    samples = refresh(collector, source)
    assert [(r["offset"], r["limit"]) for r in source.requests if "offset" in r] == [
        (0, 1024), (0, 1100 + 1100 // 8 + 64)]
    assert len(series(samples, m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES)) == 1100


def test_size_bound_follows_what_the_server_holds():
    doc = synthetic(streams=300, consumers=3000, accounts=3)
    collector, source, _ = run(doc, level="consumers")
    listing = Listing("A1", JszOptions("consumers"))
    assert listing.read(orjson.dumps(jszgen.page(doc, 0, 1024))) == 3
    expect = source.expected[-1]
    assert expect == {"accounts": 3 + 64, "streams": 300 + 300 // 8 + 64,
                      "consumers": 3000 + 3000 // 8 + 64}
    # Under the default flags, the bound /jsz set itself before the flags bounded it.
    limit = BodyLimits().for_request("jsz", {}, expect)
    assert limit == 1 * MiB + (1 * KiB * expect["accounts"] + 16 * KiB * expect["streams"]
                               + 4 * KiB * expect["consumers"])
    assert limit > len(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    # The flags bound it: without a per-entry allowance a reply holds its document alone, a
    # sixteenth of --monitor.max-body-size.
    assert BodyLimits(1 * MiB, 0).for_request("jsz", {}, expect) == 64 * KiB


def test_restart_forgets_the_consumer_table():
    doc = synthetic(streams=4, consumers=40, durable=1.0, r3=0.0)
    collector, source, _ = run(doc, level="consumers", max_consumers=3)
    assert len(collector.table.placed) == 3
    restarted = replace(INFO, start="start-2", server_name=source.name)
    asyncio.run(collector.refresh(source, restarted))
    assert len(collector.table.placed) == 3 and collector._held is not None


@pytest.mark.parametrize("bad", [b"\xff" * 16, b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"])
def test_a_body_that_is_not_utf8_is_a_decode_error_even_where_the_core_reads_nothing(bad):
    # /jsz of a server without JetStream: the core stops at "disabled" and decodes none of the
    # strings; the body is still checked whole (the fault proxy's "corrupt" case).
    body = (b'{"server_id": "N' + bad + b'", "now": "2026-11-29T20:00:00Z", '
            b'"disabled": true}')
    with pytest.raises(ScrapeError, match="is not UTF-8"):
        collect("A1", body)
    big = b'{"server_id": "N", "pad": "' + b"x" * (3 << 20) + bad + b'", "disabled": true}'
    with pytest.raises(ScrapeError, match="is not UTF-8"):
        collect("A1", big)
    fine = body.replace(bad, "é中😀".encode())
    assert collect("A1", fine) == {}


def test_a_character_cut_by_the_utf8_check_s_chunks_is_valid():
    from fastnats.collectors.decode import check_utf8

    head = b'{"server_id": "'
    for shift in range(4):
        pad = (1 << 20) - len(head) - shift
        body = head + b"x" * pad + "😀".encode() + b'", "disabled": true}'
        check_utf8("jsz", body)
        with pytest.raises(ScrapeError):
            check_utf8("jsz", body[:len(head) + pad + 2] + b'", "disabled": true}')
