"""The /varz collector: every field it reads is checked, and anything unexpected is that
server's decode error (never another exception), by one rule shared with /connz."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors.decode import Fields
from fastnats.collectors.varz import decode, listener_ports, varz_samples
from fastnats.errors import ScrapeError
from fastnats.rfc3339 import parse_rfc3339_ns
from fastnats.target import Target

DATA = Path(__file__).parents[1] / "data"
VARZ = orjson.loads((DATA / "varz.json").read_bytes())
#: nats-server 2.15.1 with TLS on every listener, JetStream (domain "hub"), tags, and a cluster
#: with two route URLs that answer nothing.
FULL = orjson.loads((DATA / "varz_tls_jetstream.json").read_bytes())


def fields(doc: dict) -> Fields:
    return Fields("varz", doc)


def test_varz_samples_copy_every_seed_value():
    varz = dict(VARZ, connections=15, total_connections=10000, in_msgs=7, out_msgs=9,
                in_bytes=2**64 - 1, out_bytes=11, slow_consumers=5, mem=256000000, cores=8)
    samples = varz_samples(fields(varz))
    for metric in m.SEED:
        if metric.varz:
            assert samples[metric.name] == [((), varz[metric.varz])]
    assert samples["nats_server_version"] == [(("2.15.1",), 1)]
    assert samples["nats_server_info"] == [(("srv-a", VARZ["server_id"], "2.15.1", "c1", "", ""),
                                            1)]
    uptime = samples["nats_server_uptime_seconds"][0][1]
    assert uptime == (parse_rfc3339_ns(VARZ["now"]) - parse_rfc3339_ns(VARZ["start"])) / 1e9
    assert 0 < uptime < 1
    # Wire bytes come from the kernel, never from /varz.
    assert "nats_server_total_bytes_sent" not in samples
    assert "nats_server_total_bytes_received" not in samples


def test_optional_fields_may_be_absent_or_null():
    varz = dict(VARZ, cluster=None)
    del varz["server_name"]
    samples, info = decode(orjson.dumps(varz))
    assert samples["nats_server_info"] == [(("", VARZ["server_id"], "2.15.1", "", "", ""), 1)]
    assert info.listeners == {VARZ["port"]: "client"}


# Every field the collector reads, with values it must refuse.
HOSTILE = [
    *[(key, bad) for key in ("connections", "total_connections", "in_msgs", "out_msgs",
                             "in_bytes", "out_bytes", "slow_consumers")
      for bad in ("4", -1, 1.5, 2**64, True, None, [], {})],
    *[(key, bad) for key in ("mem", "cores") for bad in ("4", -1, None, True, [], float("nan"))],
    *[(key, bad) for key in ("version", "server_id", "start", "now")
      for bad in (None, 4, [], {})],
    ("server_name", 7), ("start", "yesterday"), ("now", "2026-13-45T99:00:00Z"),
    ("port", "4222"), ("port", 70000), ("port", 4222.5), ("port", True),
    ("cluster", "c1"), ("cluster", ["c1"]), ("cluster", 5), ("cluster", {"name": 5}),
    ("cluster", {"cluster_port": "6222"}), ("cluster", {"cluster_port": VARZ["port"]}),
    ("leaf", [7422]), ("leaf", {"port": 2**40}), ("websocket", "on"), ("mqtt", {"port": []}),
]


@pytest.mark.parametrize("key, bad", HOSTILE, ids=lambda x: repr(x)[:30])
def test_every_field_read_is_checked(key, bad):
    # The stdlib writes what orjson would not: NaN, and integers past 64 bits.
    body = json.dumps(dict(VARZ, **{key: bad})).encode()
    with pytest.raises(ScrapeError) as info:
        decode(body)
    assert (info.value.endpoint, info.value.reason) == ("varz", "decode")
    assert f"/varz {key}" in str(info.value) or "malformed JSON" in str(info.value)


@pytest.mark.parametrize("key", ["connections", "total_connections", "in_msgs", "mem", "cores",
                                 "version", "server_id", "start", "now"])
def test_every_required_field_must_be_there(key):
    varz = dict(VARZ)
    del varz[key]
    with pytest.raises(ScrapeError, match=f"/varz has no {key}"):
        decode(orjson.dumps(varz))


@pytest.mark.parametrize("body", [b"{", b"[1,2]", b"", b"null", b"\xff", b'{"in_msgs": 1e999}',
                                  b'{"connections": 18446744073709551617}', b"{}" * 3])
def test_malformed_bodies_are_decode_errors(body):
    with pytest.raises(ScrapeError) as info:
        decode(body)
    assert info.value.reason == "decode"


def test_listener_ports_reads_every_nats_listener_and_never_the_monitor():
    # The shape nats-server 2.15.1 serves: the route port is cluster.cluster_port.
    varz = {"port": 4222, "http_port": 8222, "https_port": 0,
            "cluster": {"name": "c1", "cluster_port": 6222},
            "gateway": {"name": "c1", "port": 7222}, "leaf": {"port": 7422},
            "websocket": {"port": 8080, "no_tls": True}, "mqtt": {"port": 1883}}
    assert listener_ports(fields(varz)) == {4222: "client", 6222: "cluster", 7222: "gateway",
                                            7422: "leafnode", 8080: "websocket", 1883: "mqtt"}


def test_listener_ports_leaves_out_what_is_not_configured():
    assert listener_ports(fields({"port": 4222, "http_port": 8222, "cluster": {}, "gateway": {},
                                  "leaf": {}, "mqtt": {}, "websocket": {}})) == {4222: "client"}
    assert listener_ports(fields({"port": 4222, "websocket": {"port": 0}})) == {4222: "client"}
    assert listener_ports(fields({"port": 4222, "leaf": {"port": -1}})) == {4222: "client"}
    # Older servers name the route port cluster.port.
    assert listener_ports(fields({"port": 4222, "cluster": {"port": 6222}})) == {
        4222: "client", 6222: "cluster"}
    assert listener_ports(fields({})) == {}


@pytest.mark.parametrize("varz, message", [
    ({"port": "4222"}, "/varz port is '4222', not a finite number"),
    ({"port": True}, "/varz port is True"),
    ({"port": 70000}, "not a port number from 1 to 65535"),
    ({"port": 4222, "leaf": {"port": 4222}}, "already the client listener"),
    ({"port": 4222, "cluster": [6222]}, "/varz cluster is [6222], not an object"),
])
def test_listener_ports_rejects_a_malformed_varz(varz, message):
    with pytest.raises(ScrapeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        listener_ports(fields(varz))


class Scripted:
    """A source whose /varz body the test sets."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get(self, endpoint, params=None):
        return self.body


def test_one_malformed_varz_marks_only_its_server_down():
    bad = copy.deepcopy(VARZ)
    bad["cluster"] = "c1"
    good = ServerCollector(Target("good", "http://g"), Scripted(orjson.dumps(VARZ)), {})
    broken = ServerCollector(Target("broken", "http://b"), Scripted(orjson.dumps(bad)), {})
    collector = NatsCollector([good, broken])
    for _ in range(3):
        asyncio.run(collector.refresh())
    families = {metric.name: samples for metric, _, samples in collector.families()}
    assert families["nats_up"] == [(("good",), 1), (("broken",), 0)]
    assert families["fastnats_refreshes_total"] == [(("good",), 3), (("broken",), 3)]
    assert (("broken", "varz", "decode"), 3) in families["fastnats_refresh_errors_total"]
    assert families["nats_server_clients"] == [(("good",), 0)]


def test_a_malformed_varz_at_startup_does_not_keep_metrics_from_the_healthy_servers():
    from fastnats.refresher import Refresher

    bad = dict(VARZ, port="4222")
    good = ServerCollector(Target("good", "http://g"), Scripted(orjson.dumps(VARZ)), {})
    broken = ServerCollector(Target("broken", "http://b"), Scripted(orjson.dumps(bad)), {})
    refresher = Refresher(NatsCollector([good, broken]), 60.0)

    async def first() -> None:
        await refresher.start()
        await refresher.stop()
    asyncio.run(first())
    assert refresher.payload is not None and refresher.healthy()
    assert b'nats_up{server="good"} 1\n' in refresher.payload.body
    assert b'nats_up{server="broken"} 0\n' in refresher.payload.body


# /varz beyond the seed metrics.

def only(samples, name):
    [(labels, value)] = samples[name]
    assert labels == ()
    return value


def test_a_recorded_tls_jetstream_varz_gives_every_family_past_the_seed():
    samples = varz_samples(fields(FULL))
    expiry = parse_rfc3339_ns("2026-12-29T19:03:51Z") / 1e9
    assert samples["nats_server_info"] == [
        (("full1", FULL["server_id"], "2.15.1", "C1", "hub", "az:1,region:eu,zone:b"), 1)]
    assert samples["nats_server_tls_cert_not_after_timestamp_seconds"] == [
        ((listener,), expiry)
        for listener in ("client", "cluster", "gateway", "leafnode", "websocket", "mqtt")]
    assert only(samples, "nats_route_configured_urls") == 2
    assert only(samples, "nats_server_config_load_timestamp_seconds") == (
        parse_rfc3339_ns(FULL["config_load_time"]) / 1e9)
    assert only(samples, "nats_server_subscriptions") == 73
    assert samples["nats_server_slow_consumer_detections_total"] == [
        (("clients",), 0), (("routes",), 0), (("gateways",), 0), (("leafs",), 0)]
    assert only(samples, "nats_server_jetstream_max_memory_bytes") == 64 << 20
    assert only(samples, "nats_server_jetstream_max_storage_bytes") == 1 << 30
    for name in ("memory", "storage", "reserved_memory", "reserved_storage"):
        assert only(samples, f"nats_server_jetstream_{name}_bytes") == 0
    assert only(samples, "nats_server_jetstream_api_requests_total") == 0
    assert only(samples, "nats_server_jetstream_api_errors_total") == 0
    # Every family of the catalogue's /varz section is there but the one of GOMEMLIMIT, which
    # the server was run without: it then leaves gomemlimit out.
    assert {metric.name for metric in m.VARZ} - set(samples) == {
        "nats_server_go_memlimit_bytes"}


def test_each_value_comes_from_its_field():
    varz = copy.deepcopy(FULL)
    varz.update(cpu=250.5, routes=6, remotes=2, leafnodes=310, subscriptions=2**32,
                stale_connections=12, stalled_clients=2**64 - 1,
                slow_consumer_stats={"clients": 1, "routes": 2, "gateways": 3, "leafs": 4},
                gomemlimit=3 << 30)
    varz["jetstream"]["stats"].update(memory=1, storage=2, reserved_memory=3,
                                      reserved_storage=4, api={"total": 40211, "errors": 12})
    varz["mqtt"]["tls_cert_not_after"] = "2030-01-01T00:00:00.5+02:00"
    samples = varz_samples(fields(varz))
    assert only(samples, "nats_server_cpu_ratio") == 2.505
    assert only(samples, "nats_server_go_memlimit_bytes") == 3 << 30
    assert only(samples, "nats_server_routes") == 6
    assert only(samples, "nats_server_remotes") == 2
    assert only(samples, "nats_server_leafnodes") == 310
    assert only(samples, "nats_server_subscriptions") == 2**32
    assert only(samples, "nats_server_stale_connections_total") == 12
    assert only(samples, "nats_server_stalled_clients_total") == 2**64 - 1
    assert samples["nats_server_slow_consumer_detections_total"] == [
        (("clients",), 1), (("routes",), 2), (("gateways",), 3), (("leafs",), 4)]
    assert [only(samples, f"nats_server_jetstream_{name}_bytes") for name in
            ("memory", "storage", "reserved_memory", "reserved_storage")] == [1, 2, 3, 4]
    assert only(samples, "nats_server_jetstream_api_requests_total") == 40211
    assert only(samples, "nats_server_jetstream_api_errors_total") == 12
    assert dict(samples["nats_server_tls_cert_not_after_timestamp_seconds"])[("mqtt",)] == (
        1893448800.5)


def test_a_server_without_jetstream_has_none_of_its_series():
    for jetstream in ({}, None, {"stats": {"memory": 5}}):
        varz = dict(FULL, jetstream=jetstream)
        samples = varz_samples(fields(varz))
        assert not [name for name in samples if "jetstream" in name], jetstream
        assert samples["nats_server_info"][0][0][4] == ""
    varz = dict(FULL)
    del varz["jetstream"]
    assert not [name for name in varz_samples(fields(varz)) if "jetstream" in name]


def test_what_an_older_server_lacks_is_left_out_without_error():
    varz = copy.deepcopy(FULL)
    for key in ("cpu", "subscriptions", "routes", "remotes", "leafnodes", "stale_connections",
                "stalled_clients", "slow_consumer_stats", "config_load_time",
                "tls_cert_not_after", "tags"):
        del varz[key]
    for section in ("cluster", "gateway", "leaf", "websocket", "mqtt"):
        del varz[section]["tls_cert_not_after"]
    del varz["jetstream"]["stats"]
    del varz["jetstream"]["config"]["domain"]
    del varz["jetstream"]["config"]["max_storage"]
    samples = varz_samples(fields(varz))
    absent = {"nats_server_cpu_ratio", "nats_server_subscriptions", "nats_server_routes",
              "nats_server_remotes", "nats_server_leafnodes",
              "nats_server_stale_connections_total", "nats_server_stalled_clients_total",
              "nats_server_slow_consumer_detections_total",
              "nats_server_config_load_timestamp_seconds",
              "nats_server_tls_cert_not_after_timestamp_seconds",
              "nats_server_jetstream_max_storage_bytes", "nats_server_jetstream_memory_bytes",
              "nats_server_jetstream_api_requests_total"}
    assert not absent & set(samples)
    assert only(samples, "nats_server_jetstream_max_memory_bytes") == 64 << 20
    assert samples["nats_server_info"] == [
        (("full1", FULL["server_id"], "2.15.1", "C1", "", ""), 1)]
    # An older server's slow_consumer_stats may lack a kind.
    varz["slow_consumer_stats"] = {"clients": 3}
    assert varz_samples(fields(varz))["nats_server_slow_consumer_detections_total"] == [
        (("clients",), 3)]
    varz["slow_consumer_stats"] = {}
    assert "nats_server_slow_consumer_detections_total" not in varz_samples(fields(varz))


def test_tls_expiry_only_where_a_listener_has_a_certificate():
    assert "nats_server_tls_cert_not_after_timestamp_seconds" not in varz_samples(fields(VARZ))
    varz = copy.deepcopy(FULL)
    for section in ("cluster", "leaf", "websocket"):
        del varz[section]["tls_cert_not_after"]
    # Go's zero time says "none".
    varz["gateway"]["tls_cert_not_after"] = "0001-01-01T00:00:00Z"
    listeners = [labels[0] for labels, _ in
                 varz_samples(fields(varz))["nats_server_tls_cert_not_after_timestamp_seconds"]]
    assert listeners == ["client", "mqtt"]


@pytest.mark.parametrize("cluster, urls", [
    ({}, None),
    # A name without a route listener (nats-server --cluster_name) is no cluster either.
    ({"name": "c1"}, None),
    ({"name": "c1", "cluster_port": 6222}, 0),
    ({"name": "c1", "port": 6222}, 0),
    ({"name": "c1", "cluster_port": 6222, "urls": ["10.0.0.1:6222", "10.0.0.2:6222"]}, 2),
    ({"name": "c1", "cluster_port": 6222, "urls": []}, 0),
])
def test_configured_route_urls_count_only_a_server_with_a_cluster(cluster, urls):
    samples = varz_samples(fields(dict(VARZ, cluster=cluster)))
    assert samples.get("nats_route_configured_urls") == (None if urls is None else [((), urls)])
    assert "nats_route_configured_urls" not in varz_samples(fields(dict(VARZ, cluster=None)))


def test_tags_are_sorted_and_joined():
    def tags(value):
        return varz_samples(fields(dict(VARZ, tags=value)))["nats_server_info"][0][0][5]
    assert tags(["zone:b", "az:1", "region:eu"]) == "az:1,region:eu,zone:b"
    assert tags([]) == tags(None) == ""
    assert tags(["only"]) == "only"


# The fields past the seed, with values they must refuse; each error names its field.
HOSTILE_BEYOND = [
    *[(("cpu",), bad) for bad in ("4", -1, None, True, [], float("nan"), float("inf"))],
    *[(("gomemlimit",), bad) for bad in ("1GiB", -1, None, True, float("nan"))],
    *[((key,), bad) for key in ("subscriptions", "routes", "remotes", "leafnodes")
      for bad in ("4", -1, None, True, float("nan"))],
    *[((key,), bad) for key in ("stale_connections", "stalled_clients")
      for bad in ("4", -1, 1.5, 2**64, True, None)],
    *[(("slow_consumer_stats",), bad) for bad in ("0", [0], 5)],
    *[(("slow_consumer_stats", kind), bad) for kind in ("clients", "routes", "gateways", "leafs")
      for bad in (-1, 1.5, 2**64, "1", None)],
    *[(("config_load_time",), bad) for bad in ("yesterday", 5, None, "2026-13-01T00:00:00Z")],
    *[(("tls_cert_not_after",), bad) for bad in ("soon", 1798571031, None)],
    *[((section, "tls_cert_not_after"), bad)
      for section in ("cluster", "gateway", "leaf", "websocket", "mqtt") for bad in ("soon", 7)],
    *[(("tags",), bad) for bad in ("a,b", {"a": 1}, [1], ["a", None], 5)],
    *[(("cluster", "urls"), bad) for bad in ("10.0.0.1:6222", [6222], {}, 3)],
    *[(("jetstream",), bad) for bad in ("on", [1], 5)],
    *[(("jetstream", "config"), bad) for bad in ("x", [1], 5)],
    *[(("jetstream", "config", key), bad) for key in ("max_memory", "max_storage")
      for bad in (-1, "1", None, float("nan"), True)],
    (("jetstream", "config", "domain"), 5), (("jetstream", "config", "domain"), ["hub"]),
    *[(("jetstream", "stats"), bad) for bad in ("x", [1])],
    *[(("jetstream", "stats", key), bad)
      for key in ("memory", "storage", "reserved_memory", "reserved_storage")
      for bad in (-1, "1", None, float("nan"))],
    (("jetstream", "stats", "api"), "x"),
    *[(("jetstream", "stats", "api", key), bad) for key in ("total", "errors")
      for bad in (-1, 1.5, 2**64, "1", None, True)],
]


@pytest.mark.parametrize("path, bad", HOSTILE_BEYOND, ids=lambda x: repr(x)[:40])
def test_every_field_past_the_seed_is_checked(path, bad):
    varz = copy.deepcopy(FULL)
    where = varz
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = bad
    with pytest.raises(ScrapeError) as info:
        decode(json.dumps(varz).encode())
    assert (info.value.endpoint, info.value.reason) == ("varz", "decode")
    assert (f"/varz {'.'.join(path)} " in str(info.value)
            or "malformed JSON" in str(info.value)), str(info.value)


def test_the_varz_collector_exports_the_new_families_with_their_labels():
    varz = dict(FULL, gomemlimit=1 << 30)
    server = ServerCollector(Target("a", "http://a"), Scripted(orjson.dumps(varz)), {})
    collector = NatsCollector([server])
    asyncio.run(collector.refresh())
    families = {metric.name: (labels, samples) for metric, labels, samples in collector.families()}
    assert families["nats_server_info"][0] == ("server_name", "server_id", "version", "cluster",
                                               "domain", "tags")
    assert families["nats_server_slow_consumer_detections_total"][0] == ("kind",)
    assert families["nats_server_tls_cert_not_after_timestamp_seconds"][0] == ("listener",)
    for metric in m.VARZ:
        assert families[metric.name][1], metric.name
    assert families["fastnats_collector_success"][1] == [(("varz",), 1)]


def test_server_info_names_the_configured_gateways_without_the_servers_own():
    from fastnats.collectors.decode import Fields
    from fastnats.collectors.varz import configured_gateways

    gateway = {"name": "A", "port": 7222, "gateways": [
        {"name": "A", "urls": ["a:7222"]}, {"name": "C", "urls": ["c:7222"]},
        {"name": "B", "urls": ["b:7222"]}]}
    assert configured_gateways(Fields("varz", {"gateway": gateway})) == ("B", "C")
    assert configured_gateways(Fields("varz", {"gateway": {}})) == ()
    assert configured_gateways(Fields("varz", {})) == ()
    with pytest.raises(ScrapeError, match=r"gateway\.gateways\[0\]\.name is 5"):
        configured_gateways(Fields("varz", {"gateway": {"gateways": [{"name": 5}]}}))
