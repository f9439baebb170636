"""``--compat=prometheus-nats-exporter`` and ``--compat=surveyor`` without a network: the mapping
from native samples to the other exporters' names and labels, the name checks, the flags, and the
lists of names their dashboards query (tests/data/compat-*.txt) with the tool that builds them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import cli
from fastnats import metrics as m
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.compat import (
    SPECS,
    SURVEYOR,
    SURVEYOR_FLEET_ONLY,
    SURVEYOR_FOREIGN_LABELS,
    SURVEYOR_NOT_SERVED,
    SURVEYOR_SPECS,
    Compat,
)
from fastnats.exposition import render
from fastnats.interop import Sample
from fastnats.target import Target
from tests.support.bodysource import VARZ, FakeClient

ROOT = Path(__file__).parents[2]
LIST = ROOT / "tests" / "data" / "compat-prometheus-nats-exporter.txt"
SURVEYOR_LIST = ROOT / "tests" / "data" / "compat-surveyor.txt"
DASHBOARDS = Path("/work/shared/anchor-dashboards/prometheus-nats-exporter")
SURVEYOR_DASHBOARDS = DASHBOARDS.parent / "nats-surveyor"
sys.path.insert(0, str(ROOT / "tools"))
import extract_compat_names as tool  # noqa: E402

GROUP = ("account", "name")
STREAM = ("account", "stream")
CONSUMER = ("account", "stream", "consumer")

#: Native label names, markers expanded as the collectors do by default.
LABELS: dict[str, tuple[str, ...]] = {}
for _metric in m.CATALOGUE:
    LABELS[_metric.name] = tuple(
        label for marker in _metric.labels
        for label in (m.LABEL_MARKERS[marker][1] if marker in m.LABEL_MARKERS else (marker,)))


def info(server_id="NID", name="n1", cluster="c1", domain="") -> list[Sample]:
    return [((name, server_id, "2.15.1", cluster, domain, ""), 1)]


def snapshot() -> dict[str, list[Sample]]:
    """One server's samples of every native family compat reads, as the collectors give them."""
    return {
        m.NATS_SERVER_INFO.name: info(),
        m.NATS_SERVER_CPU_RATIO.name: [((), 0.035)],
        m.NATS_SERVER_MEMORY_BYTES.name: [((), 7_000_000)],
        m.NATS_SERVER_CLIENTS.name: [((), 3)],
        m.NATS_SERVER_SUBSCRIPTIONS.name: [((), 9)],
        m.NATS_SERVER_SLOW_CONSUMERS.name: [((), 2)],
        m.NATS_SERVER_TOTAL_MESSAGES_RECEIVED.name: [((), 100)],
        m.NATS_SERVER_TOTAL_MESSAGES_SENT.name: [((), 200)],
        m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED.name: [((), 1000)],
        m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT.name: [((), 2000)],
        m.NATS_SERVER_CONFIG_LOAD_TIMESTAMP_SECONDS.name: [((), 1767225600.5)],
        m.NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL.name: [(("clients",), 2), (("leafs",), 0)],
        m.NATS_SERVER_JETSTREAM_MEMORY_BYTES.name: [((), 10)],
        m.NATS_SERVER_JETSTREAM_STORAGE_BYTES.name: [((), 20)],
        m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES.name: [((), 1000)],
        m.NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES.name: [((), 2000)],
        m.NATS_CLIENT_CONNECTIONS.name: [(("A", "x"), 2), (("B", "_other"), 1)],
        m.NATS_CLIENT_SUBSCRIPTIONS.name: [(("A", "x"), 4), (("B", "_other"), 5)],
        m.NATS_CLIENT_PENDING_BYTES.name: [(("A", "x"), 0), (("B", "_other"), 7)],
        m.NATS_CLIENT_IN_MESSAGES_TOTAL.name: [(("A", "x"), 10), (("B", "_other"), 5)],
        m.NATS_CLIENT_OUT_MESSAGES_TOTAL.name: [(("A", "x"), 1), (("B", "_other"), 1)],
        m.NATS_CLIENT_IN_BYTES_TOTAL.name: [(("A", "x"), 100), (("B", "_other"), 50)],
        m.NATS_CLIENT_OUT_BYTES_TOTAL.name: [(("A", "x"), 10), (("B", "_other"), 10)],
        m.NATS_ROUTE_CONNECTIONS.name: [(("n2", "ID2"), 3), (("n3", "ID3"), 0)],
        m.NATS_LEAFNODE_CONNECTIONS.name: [(("A", "leaf-1"), 2), (("A", "gone"), 0)],
        m.NATS_LEAFNODE_IN_MESSAGES_TOTAL.name: [(("A", "leaf-1"), 5), (("A", "gone"), 1)],
        m.NATS_SERVER_HEALTHY.name: [((), 1)],
        m.NATS_SERVER_JETSTREAM_HEALTHY.name: [(("enabled-only",), 1), (("server-only",), 0)],
        m.NATS_JETSTREAM_STREAMS.name: [((), 2)],
        m.NATS_JETSTREAM_CONSUMERS.name: [((), 1)],
        m.NATS_JETSTREAM_MESSAGES.name: [((), 12)],
        m.NATS_JETSTREAM_BYTES.name: [((), 1200)],
        m.NATS_JETSTREAM_META_LEADER.name: [((), 1)],
        m.NATS_JETSTREAM_META_LEADER_INFO.name: [(("n1",), 1)],
        m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES.name: [(("A", "R1"), 1), (("A", "R3"), 2)],
        m.NATS_JETSTREAM_STREAM_MESSAGES.name: [(("A", "ORDERS"), 10), (("A", "COPY"), 2)],
        m.NATS_JETSTREAM_STREAM_BYTES.name: [(("A", "ORDERS"), 1000), (("A", "COPY"), 200)],
        m.NATS_JETSTREAM_STREAM_LAST_SEQUENCE.name: [(("A", "ORDERS"), 10), (("A", "COPY"), 2)],
        m.NATS_JETSTREAM_STREAM_MAX_BYTES.name: [(("A", "ORDERS"), 1 << 20)],
        m.NATS_JETSTREAM_STREAM_SOURCE_LAG.name: [(("A", "COPY", "ORDERS", "mirror"), 8)],
        m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS.name: [
            (("A", "COPY", "ORDERS", "mirror"), 0.25)],
        m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name: [(("A", "ORDERS", "worker"), 4)],
        m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES.name: [(("A", "ORDERS", "worker"), 1)],
        m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE.name: [
            (("A", "ORDERS", "worker"), 6)],
    }


def series(compat: Compat, servers, labels=None, labelled=False, process=None):
    """{family name: {frozenset(label items): value}}, with each family's label names."""
    out, names = {}, {}
    for metric, label_names, samples in compat.families(servers, labels or LABELS, labelled,
                                                        process):
        names[metric.name] = label_names
        out[metric.name] = {frozenset(zip(label_names, values)): value
                            for values, value in samples}
    return out, names


def one(out, family, **labels):
    [(key, value)] = [(k, v) for k, v in out[family].items() if labels.items() <= dict(k).items()]
    return value


def test_no_compat_name_collides_with_a_native_family_or_another():
    for prefix in (None, "nats"):
        names = [metric.name for metric in Compat(prefix=prefix).metrics.values()]
        assert len(set(names)) == len(names) == len(SPECS)
        assert not set(names) & set(m.BY_NAME), prefix


def test_a_colliding_prefix_or_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setitem(m.BY_NAME, "nats_stream_total_bytes", m.NATS_UP)
    Compat()
    with pytest.raises(ValueError, match="nats_stream_total_bytes would collide"):
        Compat(prefix="nats")
    with pytest.raises(ValueError, match="not a metric name prefix"):
        Compat(prefix="1x")
    with pytest.raises(ValueError, match="no compatibility profile"):
        Compat("surveyor2")


def test_varz_connz_routez_leafz_healthz_map_to_the_official_names():
    out, names = series(Compat(), [("a", snapshot())])
    assert names["gnatsd_varz_cpu"] == ("server_id",)
    assert out["gnatsd_varz_cpu"] == {frozenset({("server_id", "NID")}): 3.5}
    assert one(out, "gnatsd_varz_mem") == 7_000_000
    assert one(out, "gnatsd_varz_config_load_time") == 1767225600500
    assert one(out, "gnatsd_varz_slow_consumer_stats_clients") == 2
    assert one(out, "gnatsd_varz_version", value="2.15.1") == 1
    assert one(out, "gnatsd_varz_jetstream_config_max_storage") == 2000
    # Summed over every group, _other included.
    assert one(out, "gnatsd_connz_num_connections") == one(out, "gnatsd_connz_total") == 3
    assert (one(out, "gnatsd_connz_subscriptions"), one(out, "gnatsd_connz_pending_bytes"),
            one(out, "gnatsd_connz_in_msgs"), one(out, "gnatsd_connz_in_bytes")) == (9, 7, 15, 150)
    assert one(out, "gnatsd_routez_num_routes") == 3
    assert one(out, "gnatsd_leafz_conn_nodes_total") == 2
    assert names["gnatsd_leafz_info"] == ("server_id", "account", "account_id", "ip", "port",
                                          "name")
    assert one(out, "gnatsd_leafz_info", name="leaf-1", account_id="A") == 2
    assert len(out["gnatsd_leafz_info"]) == 1  # a group without leafnodes has no info
    assert one(out, "gnatsd_leafz_conn_in_msgs", name="gone") == 1
    assert one(out, "gnatsd_healthz_status") == 0
    assert one(out, "gnatsd_healthz_js_enabled_only_status") == 0
    assert one(out, "gnatsd_healthz_js_server_only_status") == 1
    types = {metric.name: metric.type for metric, _, _ in
             Compat().families([("a", snapshot())], LABELS, False)}
    assert types["gnatsd_varz_in_msgs"] == types["gnatsd_connz_in_msgs"] == m.COUNTER
    assert types["gnatsd_varz_mem"] == m.GAUGE


def test_jetstream_maps_to_the_official_names_and_labels():
    out, names = series(Compat(), [("a", snapshot())])
    server = dict(server_id="NID", server_name="n1", cluster="c1", domain="", meta_leader="n1",
                  is_meta_leader="true")
    assert dict(next(iter(out["jetstream_server_total_streams"]))) == server
    assert one(out, "jetstream_server_total_streams") == 2
    assert one(out, "jetstream_server_jetstream_disabled") == 0
    assert one(out, "jetstream_server_max_storage") == 2000
    assert one(out, "jetstream_account_memory_used", account="A") == 3  # R1 + R3
    stream = {**server, "account": "A", "account_name": "A", "account_id": "A",
              "stream_name": "ORDERS", "stream_leader": "n1", "is_stream_leader": "true",
              "stream_raft_group": ""}
    assert names["jetstream_stream_total_bytes"] == tuple(stream)
    assert out["jetstream_stream_total_bytes"][frozenset(stream.items())] == 1000
    assert one(out, "jetstream_stream_limit_bytes", stream_name="ORDERS") == 1 << 20
    assert one(out, "jetstream_stream_limit_bytes", stream_name="COPY") == -1
    assert one(out, "jetstream_stream_limit_messages", stream_name="ORDERS") == -1
    assert one(out, "jetstream_stream_mirror_lag", stream_name="COPY", mirror_name="ORDERS") == 8
    assert one(out, "jetstream_stream_mirror_active_duration_ns") == 250_000_000
    assert out["jetstream_stream_source_lag"] == {}
    consumer = {**stream, "consumer_name": "worker", "consumer_leader": "n1",
                "is_consumer_leader": "true", "consumer_desc": ""}
    assert names["jetstream_consumer_num_pending"] == tuple(consumer)
    assert out["jetstream_consumer_num_pending"] == {frozenset(consumer.items()): 4}


def test_prefix_replaces_both_namespaces_as_the_helm_chart_uses_it():
    out, _ = series(Compat(prefix="nats"), [("a", snapshot())])
    assert one(out, "nats_varz_cpu") == 3.5
    assert one(out, "nats_server_total_streams") == 2
    assert one(out, "nats_stream_total_bytes", stream_name="ORDERS") == 1000
    assert not any(name.startswith(("gnatsd_", "jetstream_")) for name in out)


def test_a_follower_view_is_left_out_and_metadata_labels_get_official_names():
    labels = {**LABELS, m.NATS_JETSTREAM_STREAM_MESSAGES.name: (*STREAM, "meta_team",
                                                                 "replica_role")}
    samples = snapshot()
    samples[m.NATS_JETSTREAM_STREAM_MESSAGES.name] = [
        (("A", "ORDERS", "core", "leader"), 10), (("A", "ORDERS", "core", "follower"), 10)]
    out, names = series(Compat(), [("a", samples)], labels)
    assert names["jetstream_stream_total_messages"][-1] == "stream_meta_team"
    assert list(out["jetstream_stream_total_messages"].values()) == [10]
    assert one(out, "jetstream_stream_total_messages", stream_meta_team="core") == 10


def test_a_server_without_a_meta_group_is_its_own_meta_leader():
    samples = snapshot()
    samples[m.NATS_SERVER_INFO.name] = info(cluster="")
    del samples[m.NATS_JETSTREAM_META_LEADER_INFO.name]
    del samples[m.NATS_JETSTREAM_META_LEADER.name]
    out, _ = series(Compat(), [("a", samples)])
    assert one(out, "jetstream_server_total_streams", is_meta_leader="true", meta_leader="") == 2
    samples[m.NATS_JETSTREAM_META_LEADER.name] = [((), 0)]
    out, _ = series(Compat(), [("a", samples)])
    assert one(out, "jetstream_server_total_streams", is_meta_leader="false") == 2


def test_several_servers_keep_the_server_label_and_a_down_one_gives_nothing():
    other = snapshot()
    other[m.NATS_SERVER_INFO.name] = info("NID2", "n2")
    out, names = series(Compat(), [("east", snapshot()), ("west", other), ("down", {})],
                        labelled=True)
    assert names["gnatsd_varz_cpu"] == ("server", "server_id")
    assert set(out["gnatsd_varz_cpu"]) == {frozenset({("server", "east"), ("server_id", "NID")}),
                                           frozenset({("server", "west"), ("server_id", "NID2")})}


def test_families_follow_the_native_sources_that_are_exported():
    labels = {metric.name: LABELS[metric.name]
              for metric in (m.NATS_SERVER_INFO, m.NATS_SERVER_CPU_RATIO)}
    out, _ = series(Compat(), [("a", snapshot())], labels)
    assert set(out) == {"gnatsd_varz_cpu", "gnatsd_varz_server_id", "gnatsd_varz_server_name",
                        "gnatsd_varz_version"}


def test_compat_families_follow_the_native_ones_and_render():
    server = ServerCollector(Target("a", "http://a"), FakeClient({"varz": orjson.dumps(VARZ)}), {})
    collector = NatsCollector([server], Compat())
    asyncio.run(collector.refresh())
    families = collector.families()
    names = [metric.name for metric, _, _ in families]
    assert names.index("gnatsd_varz_connections") > names.index("fastnats_refreshes_total")
    parsed = {f.name: f for f in text_string_to_metric_families(render(families)[0].decode())}
    [sample] = parsed["gnatsd_varz_connections"].samples
    assert sample.labels == {"server_id": VARZ["server_id"]}
    assert sample.value == VARZ["connections"]
    described = {metric.name for metric in collector.describe()}
    assert "gnatsd_varz_mem" in described


def test_the_flags():
    def settings(*argv: str) -> cli.Settings:
        return cli.resolve(cli.build_parser().parse_args(list(argv)))

    assert settings().compat is None
    compat = settings("--compat=prometheus-nats-exporter", "--compat.prefix=nats").compat
    assert compat is not None and compat.metrics["varz_cpu"].name == "nats_varz_cpu"
    with pytest.raises(cli.UsageError, match="needs --compat"):
        settings("--compat.prefix=nats")
    with pytest.raises(cli.UsageError, match="not a metric name prefix"):
        settings("--compat=prometheus-nats-exporter", "--compat.prefix=a-b")


# The list of names the official dashboards query.

def listed() -> dict[str, set[str]]:
    return tool.parse(LIST.read_text())


def test_every_listed_name_is_served_with_its_labels():
    names = listed()
    assert len(names) > 20
    served = {}
    for prefix in (None, "nats"):
        out, labels = series(Compat(prefix=prefix), [("a", snapshot())])
        served.update({name: set(labels[name]) for name, rows in out.items() if rows})
    for name, labels in names.items():
        assert name in served, name
        assert labels <= served[name], (name, labels - served[name])


@pytest.mark.skipif(not DASHBOARDS.is_dir(), reason=f"{DASHBOARDS} is not here")
def test_the_tool_rebuilds_the_list_from_the_dashboards():
    rebuilt = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_compat_names.py"),
                              str(DASHBOARDS)], check=True, capture_output=True, text=True)
    assert rebuilt.stdout == LIST.read_text()


@pytest.mark.parametrize("query, metrics, labels", [
    ('sum(rate(a_b{x=~"$s",y="v"}[$__rate_interval])) by (z)', {"a_b"}, {"x", "y", "z"}),
    ("label_values(up, job)", {"up"}, {"job"}),
    ("label_values(job)", set(), {"job"}),
    ("- sum(m1) without (w) / on (o) group_left (g) m2 offset 5m", {"m1", "m2"},
     {"w", "o", "g"}),
    ('histogram_quantile(0.9, sum by (le) (rate(h_bucket{k!="a b"}[5m])))', {"h_bucket"},
     {"le", "k"}),
])
def test_the_tool_tells_metrics_from_labels_and_functions(query, metrics, labels):
    assert tool.scan(query) == (metrics, labels)


# --compat=surveyor.

def surveyor_snapshot(server_id="NID", name="n1", leader=1) -> dict[str, list[Sample]]:
    """snapshot() with what the surveyor families read past it: routes, gateways, the meta
    group, /jsz accounts, streams and consumers."""
    samples = snapshot()
    samples[m.NATS_SERVER_INFO.name] = info(server_id, name)
    samples.update({
        m.NATS_SERVER_ROUTES.name: [((), 3)],
        m.NATS_SERVER_CPU_CORES.name: [((), 8)],
        m.NATS_SERVER_TOTAL_CONNECTIONS.name: [((), 30)],
        m.NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES.name: [((), 5)],
        m.NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL.name: [((), 40)],
        m.NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL.name: [((), 1)],
        m.NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES.name: [((), 6)],
        m.NATS_ROUTE_OUT_MESSAGES_TOTAL.name: [(("n2", "ID2"), 7), (("n3", "ID3"), 9)],
        m.NATS_ROUTE_PENDING_BYTES.name: [(("n2", "ID2"), 0), (("n3", "ID3"), 0)],
        m.NATS_ROUTE_OUT_BYTES_TOTAL.name: [(("n2", "ID2"), 70)],
        m.NATS_ROUTE_IN_MESSAGES_TOTAL.name: [(("n2", "ID2"), 8)],
        m.NATS_ROUTE_IN_BYTES_TOTAL.name: [(("n2", "ID2"), 80)],
        m.NATS_GATEWAY_CONNECTIONS.name: [(("east", "outbound"), 1), (("east", "inbound"), 2),
                                          (("gone", "outbound"), 0)],
        m.NATS_GATEWAY_OUT_BYTES_TOTAL.name: [(("east", "outbound"), 100),
                                             (("east", "inbound"), 20), (("gone", "outbound"), 5)],
        m.NATS_GATEWAY_OUT_MESSAGES_TOTAL.name: [(("east", "outbound"), 10)],
        m.NATS_GATEWAY_IN_BYTES_TOTAL.name: [(("east", "inbound"), 30)],
        m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name: [(("east", "inbound"), 3)],
        m.NATS_JETSTREAM_HA_ASSETS.name: [((), 4)],
        m.NATS_JETSTREAM_META_PENDING.name: [((), 0)],
        m.NATS_JETSTREAM_META_LEADER.name: [((), leader)],
        m.NATS_JETSTREAM_META_PEERS.name: [(("current",), 1), (("offline",), 1)] if leader else [],
        m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name: [(("A",), 30)],
        m.NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES.name: [(("A",), 1 << 30)],
        m.NATS_JETSTREAM_ACCOUNT_STREAMS.name: [(("A",), 2)],
        m.NATS_JETSTREAM_STREAM_CONSUMERS.name: [(("A", "ORDERS"), 3), (("A", "COPY"), 0)],
        m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT.name: [(("A", "ORDERS", "n2"), 1),
                                                       (("A", "ORDERS", "n3"), 0)],
        m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name: [(("A", "ORDERS", "worker"), 4),
                                                          (("_other",) * 3, 9)],
        m.NATS_JETSTREAM_CONSUMER_OVERFLOW.name: [((), 5)],
        m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS.name: [(("A", "ORDERS"), 2)],
        m.NATS_SERVER_GO_MEMLIMIT_BYTES.name: [((), 1 << 30)],
        m.NATS_FLEET_SERVER_RTT_SECONDS.name: [((), 0.0015)],
        m.NATS_JETSTREAM_META_PEER_CURRENT.name: [(("n2",), 1), (("n3",), 0)] if leader else [],
        m.NATS_JETSTREAM_META_PEER_OFFLINE.name: [(("n2",), 0), (("n3",), 1)] if leader else [],
        m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS.name: [(("n2",), 0.25)] if leader else [],
        m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES.name: [((), 7)],
        m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES.name: [((), 512)],
        m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS.name: [((), 1767225600.75)],
        m.NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS.name: [((), 0.002)],
        m.NATS_JETSTREAM_META_APPLIED_INDEX.name: [((), 97)],
        m.NATS_JETSTREAM_META_COMMITTED_INDEX.name: [((), 106)],
        m.NATS_JETSTREAM_META_LAST_INDEX.name: [((), 107)],
        m.FASTNATS_REFRESHES_TOTAL.name: [((), 10)],
        m.FASTNATS_REFRESH_SECONDS_TOTAL.name: [((), 0.5)],
    })
    return samples


#: The fleet's process-wide samples the surveyor families read.
FLEET_PROCESS = {m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL.name: [
    (("disconnected",), 3), (("error",), 1), (("reconnected",), 2)]}


def test_surveyor_names_collide_with_no_native_family_nor_the_official_exporters():
    names = [metric.name for metric in Compat(SURVEYOR).metrics.values()]
    assert len(set(names)) == len(names) == len(SURVEYOR_SPECS)
    assert not set(names) & set(m.BY_NAME)
    for prefix in (None, "nats"):
        assert not set(names) & {metric.name for metric in Compat(prefix=prefix).metrics.values()}


def test_a_surveyor_name_colliding_with_the_other_profile_is_refused(monkeypatch):
    clash = replace(SURVEYOR_SPECS[0], name="gnatsd_varz_cpu")
    monkeypatch.setattr("fastnats.compat.SURVEYOR_SPECS", (*SURVEYOR_SPECS, clash))
    for profile in (SURVEYOR, "prometheus-nats-exporter"):
        with pytest.raises(ValueError, match="gnatsd_varz_cpu would collide with a family of "
                                             "another --compat profile"):
            Compat(profile)
    with pytest.raises(ValueError, match="prefix applies to prometheus-nats-exporter only"):
        Compat(SURVEYOR, "nats")


def test_surveyor_server_families_map_from_varz_routez_gatewayz():
    out, names = series(Compat(SURVEYOR), [("a", surveyor_snapshot())])
    server = {"server_cluster": "c1", "server_name": "n1", "server_id": "NID"}
    assert names["nats_core_connection_count"] == tuple(server)
    assert out["nats_core_connection_count"] == {frozenset(server.items()): 3}
    assert one(out, "nats_core_info", server_version="2.15.1") == 1
    assert one(out, "nats_core_cpu_percentage") == 3.5
    assert one(out, "nats_core_recv_msgs_count") == 100
    assert one(out, "nats_core_sent_bytes") == 2000
    assert one(out, "nats_core_route_count") == 3
    # A peer routed to before and not now (connections 0) is left out, as Surveyor does.
    assert one(out, "nats_core_route_sent_msg_count", server_route_name="n2",
               server_route_name_id="ID2") == 7
    assert len(out["nats_core_route_sent_msg_count"]) == 1
    assert one(out, "nats_core_gateway_count") == 1
    assert out["nats_core_gateway_sent_bytes"] == {frozenset({
        **server, "server_gateway_name": "east", "server_gateway_name_id": ""}.items()): 120}
    types = {metric.name: metric.type for metric, _, _ in
             Compat(SURVEYOR).families([("a", surveyor_snapshot())], LABELS, False)}
    assert types["nats_core_recv_bytes"] == types["nats_core_total_connection_count"] == m.COUNTER
    assert types["nats_core_mem_bytes"] == m.GAUGE


def test_surveyor_jetstream_families_map_from_varz_and_jsz():
    out, names = series(Compat(SURVEYOR), [("a", surveyor_snapshot())])
    js = {"server_id": "NID", "server_name": "n1", "cluster_name": "c1"}
    assert names["nats_core_jetstream_memstore_used_bytes"] == tuple(js)
    assert one(out, "nats_core_jetstream_memstore_used_bytes") == 10
    assert one(out, "nats_core_jetstream_filestore_size_bytes") == 2000
    assert one(out, "nats_core_jetstream_memstore_reserved_bytes") == 5
    assert one(out, "nats_core_jetstream_api_requests") == 40
    assert one(out, "nats_core_jetstream_enabled") == 1
    assert one(out, "nats_core_jetstream_info", server_jetstream="true",
               server_domain="Default", server_cluster="c1") == 1
    assert one(out, "nats_core_jetstream_ha_assets") == 4
    assert one(out, "nats_core_jetstream_cluster_raft_group_info", raft_group="_meta_",
               leader="n1", jetstream_domain="Default") == 1
    assert one(out, "nats_core_jetstream_cluster_raft_group_leader") == 1
    assert one(out, "nats_core_jetstream_cluster_raft_group_replicas") == 2
    assert one(out, "nats_core_jetstream_server_total_stream_leaders") == 2
    # worker, the five durables in _other, two ephemerals.
    assert one(out, "nats_core_jetstream_server_total_consumer_leaders") == 8
    account = {"account": "A", "account_name": "A"}
    assert names["nats_core_account_jetstream_memory_used"] == tuple(account)
    assert out["nats_core_account_jetstream_memory_used"] == {frozenset(account.items()): 3}
    assert one(out, "nats_core_account_jetstream_memory_reserved") == 0  # unlimited
    assert one(out, "nats_core_account_jetstream_storage_reserved") == 1 << 30
    assert one(out, "nats_core_account_jetstream_enabled") == 1
    assert one(out, "nats_core_account_jetstream_consumer_count", stream="ORDERS") == 3
    assert one(out, "nats_core_account_jetstream_replica_count", stream="ORDERS") == 3
    assert one(out, "nats_core_account_jetstream_replica_count", stream="COPY") == 1
    assert one(out, "nats_survey_expected_count") == one(out, "nats_survey_surveyed_count") == 1


def test_surveyor_without_jetstream_or_meta_group():
    samples = {name: rows for name, rows in surveyor_snapshot().items()
               if "jetstream" not in name}
    out, _ = series(Compat(SURVEYOR), [("a", samples)])
    assert one(out, "nats_core_jetstream_enabled") == 0
    assert one(out, "nats_core_jetstream_info", server_jetstream="false") == 1
    assert not out["nats_core_jetstream_memstore_used_bytes"]
    samples = surveyor_snapshot()
    del samples[m.NATS_JETSTREAM_META_LEADER.name]
    out, _ = series(Compat(SURVEYOR), [("a", samples)])
    assert one(out, "nats_core_jetstream_cluster_raft_group_info", raft_group="") == 0
    assert not out["nats_core_jetstream_cluster_raft_group_leader"]


def test_surveyor_fleet_families_count_accounts_and_streams_once():
    follower = surveyor_snapshot("NID2", "n2", leader=0)
    follower[m.NATS_JETSTREAM_ACCOUNT_STREAMS.name] = [(("A",), 1)]
    follower[m.NATS_JETSTREAM_STREAM_CONSUMERS.name] = [(("A", "EVENTS"), 1)]
    follower[m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT.name] = []
    out, names = series(Compat(SURVEYOR), [("a", surveyor_snapshot()), ("b", follower),
                                           ("down", {})], labelled=True)
    assert names["nats_core_connection_count"][0] == "server"
    assert names["nats_core_account_jetstream_stream_count"] == ("account", "account_name")
    assert out["nats_core_account_jetstream_stream_count"] == {
        frozenset({("account", "A"), ("account_name", "A")}): 3}
    assert len(out["nats_core_account_jetstream_memory_used"]) == 1
    assert {dict(k)["stream"] for k in out["nats_core_account_jetstream_consumer_count"]} == {
        "ORDERS", "COPY", "EVENTS"}
    assert one(out, "nats_core_jetstream_cluster_raft_group_replicas", server="b") == 0
    assert one(out, "nats_survey_expected_count") == 3
    assert one(out, "nats_survey_surveyed_count") == 2


def test_surveyor_names_from_the_meta_group_the_runtime_and_the_exporter():
    follower = surveyor_snapshot("NID2", "n2", leader=0)
    del follower[m.NATS_SERVER_GO_MEMLIMIT_BYTES.name]
    del follower[m.NATS_FLEET_SERVER_RTT_SECONDS.name]
    del follower[m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS.name]
    follower[m.FASTNATS_REFRESH_SECONDS_TOTAL.name] = [((), 0.25)]
    down = {m.FASTNATS_REFRESHES_TOTAL.name: [((), 4)],
            m.FASTNATS_REFRESH_SECONDS_TOTAL.name: [((), 8.0)]}
    out, names = series(Compat(SURVEYOR), [("a", surveyor_snapshot()), ("b", follower),
                                           ("down", down)], labelled=True, process=FLEET_PROCESS)
    assert one(out, "nats_core_go_memlimit_bytes", server="a") == 1 << 30
    assert one(out, "nats_core_go_memlimit_bytes", server="b") == 0   # GOMEMLIMIT unset
    assert out["nats_core_rtt_nanoseconds"] == {frozenset({
        ("server", "a"), ("server_cluster", "c1"), ("server_name", "n1"),
        ("server_id", "NID")}): 1_500_000}
    peer = "nats_core_jetstream_cluster_raft_group_replica_peer_"
    assert names[peer + "current"] == ("server", "server_id", "server_name", "peer",
                                       "cluster_name")
    # From the meta leader only, one series per peer; never-heard peers have no active.
    assert {(dict(k)["server"], dict(k)["peer"]): v for k, v in out[peer + "current"].items()} \
        == {("a", "n2"): 1, ("a", "n3"): 0}
    assert one(out, peer + "offline", peer="n3") == 1
    assert out[peer + "active"] == {frozenset({
        ("server", "a"), ("server_id", "NID"), ("server_name", "n1"), ("peer", "n2"),
        ("cluster_name", "c1")}): 250_000_000}
    snap = "nats_core_jetstream_meta_snapshot_"
    assert names[snap + "pending_entries"] == ("server", "server_id", "server_name",
                                               "cluster_name")
    assert one(out, snap + "pending_entries", server="b") == 7
    assert one(out, snap + "pending_bytes", server="a") == 512
    assert one(out, snap + "last_timestamp_seconds", server="a") == 1767225600
    assert {dict(k)["server"] for k in out[snap + "last_timestamp_seconds"]} == {"a"}
    assert one(out, snap + "last_duration_seconds", server="a") == 0.002
    # Every server's refreshes, the down one's too; fleet-wide, without a server label.
    assert names["nats_survey_duration_seconds_sum"] == ()
    assert one(out, "nats_survey_duration_seconds_count") == 24
    assert one(out, "nats_survey_duration_seconds_sum") == 8.75
    assert one(out, "nats_survey_nats_reconnects") == 2
    types = {metric.name: metric.type for metric, _, _ in Compat(SURVEYOR).families(
        [("a", surveyor_snapshot())], LABELS, False, FLEET_PROCESS)}
    assert types["nats_survey_duration_seconds_sum"] == m.COUNTER
    assert types["nats_survey_nats_reconnects"] == m.COUNTER
    assert types[peer + "active"] == types[snap + "pending_bytes"] == m.GAUGE


def test_surveyor_raftz_names_from_the_meta_group_log():
    out, names = series(Compat(SURVEYOR), [("a", surveyor_snapshot())])
    js = {"server_id": "NID", "server_name": "n1", "cluster_name": "c1"}
    compat = {f"nats_core_raftz_meta_{name}" for name in ("applied", "committed", "pindex")}
    for name, value in (("applied", 97), ("committed", 106), ("pindex", 107)):
        assert names[f"nats_core_raftz_meta_{name}"] == tuple(js)
        assert out[f"nats_core_raftz_meta_{name}"] == {frozenset(js.items()): value}
    types = {metric.name: metric.type for metric, _, _ in Compat(SURVEYOR).families(
        [("a", surveyor_snapshot())], LABELS, False)}
    assert types["nats_core_raftz_meta_pindex"] == m.GAUGE
    # Without --collector.raftz (or a meta group) the native families are absent: so are these.
    raftz = {metric.name for metric in m.RAFTZ}
    out, _ = series(Compat(SURVEYOR), [("a", surveyor_snapshot())],
                    {name: labels for name, labels in LABELS.items() if name not in raftz})
    assert not compat & set(out)
    samples = {name: rows for name, rows in surveyor_snapshot().items() if name not in raftz}
    out, _ = series(Compat(SURVEYOR), [("a", samples)])
    assert out["nats_core_raftz_meta_committed"] == {}


def test_the_fleet_only_surveyor_names_are_not_exported_over_http():
    over_http = {name: labels for name, labels in LABELS.items()
                 if name not in (m.NATS_FLEET_SERVER_RTT_SECONDS.name,
                                 m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL.name)}
    out, _ = series(Compat(SURVEYOR), [("a", surveyor_snapshot())], over_http)
    assert not set(SURVEYOR_FLEET_ONLY) & set(out)
    assert out["nats_core_go_memlimit_bytes"]
    out, _ = series(Compat(SURVEYOR), [("a", surveyor_snapshot())], process=FLEET_PROCESS)
    assert all(out[name] for name in SURVEYOR_FLEET_ONLY)


def test_surveyor_families_render_and_the_flag():
    server = ServerCollector(Target("a", "http://a"), FakeClient({"varz": orjson.dumps(VARZ)}), {})
    collector = NatsCollector([server], Compat(SURVEYOR))
    asyncio.run(collector.refresh())
    parsed = {f.name: f for f in text_string_to_metric_families(
        render(collector.families())[0].decode())}
    [sample] = parsed["nats_core_connection_count"].samples
    assert sample.labels == {"server_cluster": VARZ.get("cluster", {}).get("name", ""),
                             "server_name": VARZ["server_name"],
                             "server_id": VARZ["server_id"]}
    assert sample.value == VARZ["connections"]
    compat = cli.resolve(cli.build_parser().parse_args(["--compat=surveyor"])).compat
    assert compat is not None and compat.profile == SURVEYOR
    with pytest.raises(cli.UsageError, match="names are fixed"):
        cli.resolve(cli.build_parser().parse_args(["--compat=surveyor", "--compat.prefix=x"]))


def surveyor_listed() -> dict[str, set[str]]:
    return tool.parse(SURVEYOR_LIST.read_text())


def test_every_listed_surveyor_name_is_served_or_said_not_to_be():
    names = surveyor_listed()
    assert len(names) > 40
    assert set(SURVEYOR_NOT_SERVED) < set(names)
    assert set(SURVEYOR_FLEET_ONLY) < set(names) - set(SURVEYOR_NOT_SERVED)
    out, labels = series(Compat(SURVEYOR), [("a", surveyor_snapshot())], process=FLEET_PROCESS)
    served = {name: set(labels[name]) for name, rows in out.items() if rows}
    assert not set(SURVEYOR_NOT_SERVED) & set(labels)
    for name, wanted in names.items():
        if name in SURVEYOR_NOT_SERVED:
            continue
        assert name in served, name
        foreign = SURVEYOR_FOREIGN_LABELS["*"] | SURVEYOR_FOREIGN_LABELS.get(name, frozenset())
        assert wanted - foreign <= served[name], (name, wanted - foreign - served[name])


@pytest.mark.skipif(not SURVEYOR_DASHBOARDS.is_dir(), reason=f"{SURVEYOR_DASHBOARDS} is not here")
def test_the_tool_rebuilds_the_surveyor_list_from_the_dashboards():
    rebuilt = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_compat_names.py"),
                              str(SURVEYOR_DASHBOARDS)], check=True, capture_output=True,
                             text=True)
    assert rebuilt.stdout == SURVEYOR_LIST.read_text()


def test_the_tool_reads_custom_variables_and_skips_those_that_hold_no_query(tmp_path):
    (tmp_path / "d.json").write_text(orjson.dumps({"templating": {"list": [
        {"type": "datasource", "query": "prometheus"},
        {"type": "interval", "query": "1m,5m"},
        {"type": "custom", "query": "Rate : sum(rate(a_total[1m])) by (x), Count : count(b)"},
    ]}}).decode())
    assert tool.extract(tmp_path) == {"a_total": {"x"}, "b": set()}
