"""Collector logic without a network: /varz mapping, targets, labels, self metrics, catalogue
ownership, prometheus_client interop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from fastnats.collector import NatsCollector, ServerCollector, default_options
from fastnats.collectors import ALL, OPTIONAL, WireOptions
from fastnats.collectors.base import DECODE, FETCH_REASONS
from fastnats.collectors.decode import decode_json
from fastnats.errors import ScrapeError
from fastnats.rfc3339 import parse_rfc3339_ns
from fastnats.sources.sockdiag import is_local_host
from fastnats.target import Target, parse_target
from tests.support.bodysource import VARZ, FakeClient


@pytest.mark.parametrize("body", [b"{", b"[1,2]", b"", b"null", b"\xff"])
def test_decode_json_errors(body):
    with pytest.raises(ScrapeError) as info:
        decode_json("varz", body)
    assert info.value.reason == "decode"


def test_parse_rfc3339_keeps_nanoseconds_and_zones():
    base = parse_rfc3339_ns("2026-11-25T07:57:14Z")
    assert base == 1795593434 * 10**9
    assert parse_rfc3339_ns("2026-11-25T07:57:14.000000001Z") - base == 1
    assert parse_rfc3339_ns("2026-11-25T08:57:14.5+01:00") - base == 500_000_000
    with pytest.raises(ValueError):
        parse_rfc3339_ns("2026-11-25 07:57:14")


@pytest.mark.parametrize("spec, target", [
    ("http://nats-1:8222", Target("nats-1:8222", "http://nats-1:8222")),
    ("nats-1:8222", Target("nats-1:8222", "http://nats-1:8222")),
    ("east=http://10.0.0.1:8222/", Target("east", "http://10.0.0.1:8222")),
    ("http://nats-1", Target("nats-1:8222", "http://nats-1:8222")),
    ("https://[::1]:8443", Target("::1:8443", "https://[::1]:8443")),
])
def test_parse_target(spec, target):
    assert parse_target(spec) == target


@pytest.mark.parametrize("spec", ["ftp://x:1", "http://", "a=http://h:port"])
def test_parse_target_errors(spec):
    with pytest.raises(ValueError):
        parse_target(spec)


def run(coro):
    return asyncio.run(coro)


def test_single_server_has_no_labels_and_drops_stale_series_when_down():
    client = FakeClient({"varz": orjson.dumps(VARZ)})
    server = ServerCollector(Target("a", "http://a:8222"), client, {})
    collector = NatsCollector([server])
    run(collector.refresh())
    families = {metric.name: (labels, samples) for metric, labels, samples in collector.families()}
    assert families["nats_up"] == ((), [((), 1)])
    assert families["nats_server_clients"] == ((), [((), 0)])
    assert families["fastnats_build_info"][1][0][0][1] == "cython"

    client.bodies["varz"] = ScrapeError("varz", "timeout", "no answer")
    run(collector.refresh())
    families = {metric.name: samples for metric, _, samples in collector.families()}
    assert families["nats_up"] == [((), 0)]
    for metric in m.SEED + (m.NATS_SERVER_INFO,):
        assert families.get(metric.name, []) == [], metric.name
    assert families["fastnats_refresh_errors_total"] == [
        (("varz", reason), 1 if reason == "timeout" else 0)
        for reason in sorted((*FETCH_REASONS, DECODE))]
    assert families["fastnats_refreshes_total"] == [((), 2)]
    assert families["fastnats_last_refresh_success_timestamp_seconds"]


def test_several_servers_carry_the_server_label():
    up = ServerCollector(Target("east", "http://e"), FakeClient({"varz": orjson.dumps(VARZ)}), {})
    down = ServerCollector(Target("west", "http://w"),
                           FakeClient({"varz": ScrapeError("varz", "connect", "refused")}), {})
    collector = NatsCollector([up, down])
    run(collector.refresh())
    families = {metric.name: (labels, samples) for metric, labels, samples in collector.families()}
    assert families["nats_up"] == (("server",), [(("east",), 1), (("west",), 0)])
    assert families["nats_server_version"] == (("server", "version"), [(("east", "2.15.1"), 1)])
    assert families["fastnats_build_info"][0] == ("version", "implementation")


def test_duplicate_server_names_are_rejected():
    client = FakeClient({})
    with pytest.raises(ValueError, match="unique"):
        NatsCollector([ServerCollector(Target("a", "http://x"), client),
                       ServerCollector(Target("a", "http://y"), client)])


def test_registers_in_a_prometheus_client_registry():
    server = ServerCollector(Target("a", "http://a"), FakeClient({"varz": orjson.dumps(VARZ)}),
                             {"wire": WireOptions(force=False)})
    collector = NatsCollector([server])
    run(collector.refresh())
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"nats_up", "nats_server_clients", "nats_server_total_connections",
            "fastnats_build_info"} <= names
    # prometheus_client names counters with _total, as OpenMetrics does.
    assert "nats_server_total_connections_total 0.0" in text
    described = {metric.name for metric in collector.describe()}
    assert "nats_server_total_bytes_sent" in described


@pytest.mark.parametrize("host, local", [
    ("127.0.0.1", True), ("localhost", True), ("198.51.100.7", False),
    ("no-such-host.invalid", False),
])
def test_is_local_host(host, local):
    assert is_local_host(host) is local


def test_wire_counter_off_for_a_remote_server_says_why_once(caplog):
    server = ServerCollector(Target("far", "http://198.51.100.7:8222"),
                             FakeClient({"varz": orjson.dumps(VARZ)}), {"wire": None})
    caplog.set_level("INFO", logger="fastnats.scrape")
    run(server.refresh())
    run(server.refresh())
    reasons = [r.getMessage() for r in caplog.records if "wire byte counter off" in r.getMessage()]
    assert len(reasons) == 1
    assert "198.51.100.7 is not an address of this host" in reasons[0]
    assert "nats_server_total_bytes_sent" not in server.nats_samples()
    assert server.nats_samples()["nats_server_clients"] == [((), 0)]


def test_wire_counter_can_be_switched_off():
    server = ServerCollector(Target("a", "http://127.0.0.1:1"),
                             FakeClient({"varz": orjson.dumps(VARZ)}), {})
    run(server.refresh())
    assert server.collector("wire") is None
    assert "nats_server_total_bytes_sent" not in server.nats_samples()
    names = {metric.name for metric, _, _ in NatsCollector([server]).families()}
    assert "nats_server_total_bytes_sent" not in names
    assert "nats_client_connections" not in names


def test_every_known_error_is_exported_at_zero_on_a_healthy_server():
    data = Path(__file__).parents[1] / "data"
    bodies = {"varz": orjson.dumps(VARZ), "connz": (data / "connz_open.json").read_bytes(),
              "routez": (data / "routez_pooled.json").read_bytes(),
              "gatewayz": (data / "gatewayz_none.json").read_bytes(),
              "healthz": (data / "healthz_ok.json").read_bytes(),
              "leafz": b'{"server_id": "N", "now": "2026-11-25T07:57:14Z", "leafnodes": 0, '
                       b'"leafs": []}'}
    server = ServerCollector(Target("a", "http://a"), FakeClient(bodies))
    http = ("varz", "connz", "routez", "gatewayz", "leafz", "healthz")
    assert {c.name for c in server.collectors} == {*http[1:], "wire"}
    run(server.refresh())
    assert server.problems == []
    errors = dict(server.self_samples()["fastnats_refresh_errors_total"])
    assert errors == {
        **{(endpoint, reason): 0 for endpoint in http for reason in (*FETCH_REASONS, DECODE)},
        ("wire", "netlink"): 0, ("wire", "events_lost"): 0}


def test_every_catalogue_family_has_exactly_one_owner():
    owners: dict[str, list[str]] = {}
    for collector in ALL:
        for metric in collector.families:
            owners.setdefault(metric.name, []).append(collector.__name__)
    # The exporter's own families, its web server's and the fleet's, which no endpoint
    # collector owns.
    own = {m.NATS_UP.name, *(metric.name for metric in (*m.SELF, *m.WEB, *m.FLEET))}
    for metric in m.CATALOGUE:
        assert len(owners.get(metric.name, [])) + (metric.name in own) == 1, metric.name


def test_collectors_have_unique_names_and_defaults():
    names = [c.name for c in OPTIONAL]
    assert len(set(names)) == len(names)
    assert set(default_options()) == {c.name for c in OPTIONAL if c.default is not False}
    with pytest.raises(ValueError, match="no such collector: nope"):
        ServerCollector(Target("a", "http://a"), FakeClient({}), {"nope": None})


def test_a_server_going_down_and_coming_back_is_logged_once_per_change(caplog):
    client = FakeClient({"varz": orjson.dumps(VARZ)})
    server = ServerCollector(Target("a", "http://a"), client, {})
    caplog.set_level("INFO", logger="fastnats.scrape")
    states = [True, True, False, False, True, True]
    for up in states:
        client.bodies["varz"] = orjson.dumps(VARZ) if up else ScrapeError("varz", "timeout", "x")
        run(server.refresh())
    assert [r.getMessage() for r in caplog.records] == [
        "server a is up", "server a is down: varz: timeout: x", "server a is up again"]


def test_distributions_reach_prometheus_client_as_gauge_histograms():
    connz = (Path(__file__).parents[1] / "data" / "connz_open.json").read_bytes()
    server = ServerCollector(Target("a", "http://a"),
                             FakeClient({"varz": orjson.dumps(VARZ), "connz": connz}),
                             {"connz": None})
    collector = NatsCollector([server])
    run(collector.refresh())
    registry = CollectorRegistry()
    registry.register(collector)
    families = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    rtt = m.NATS_CLIENT_CONNECTION_RTT_SECONDS
    buckets = [s for s in families[rtt.name].samples if s.name == rtt.name + "_bucket"]
    assert [s.labels["le"] for s in buckets] == list(rtt.buckets)
    assert buckets[-1].value == 4  # every connection of the body
    described = {metric.name: metric.type for metric in collector.describe()}
    assert described[rtt.name] == "gaugehistogram"


def test_a_failing_collector_says_so_and_its_series_go_after_three_failures(caplog):
    data = Path(__file__).parents[1] / "data"
    good = data.joinpath("connz_open.json").read_bytes()
    client = FakeClient({"varz": orjson.dumps(VARZ), "connz": good})
    server = ServerCollector(Target("a", "http://a"), client, {"connz": None})
    caplog.set_level("INFO", logger="fastnats.scrape")

    def state() -> tuple[dict, bool]:
        success = dict(server.snapshot["fastnats_collector_success"])
        return success, "nats_client_connections" in server.snapshot

    run(server.refresh())
    assert state() == ({("varz",): 1, ("connz",): 1}, True)
    client.bodies["connz"] = good[:len(good) // 2]
    for failures in (1, 2):
        run(server.refresh())
        # A body that does not decode keeps the last good aggregates for a while.
        assert state() == ({("varz",): 1, ("connz",): 0}, True), failures
    run(server.refresh())
    assert state() == ({("varz",): 1, ("connz",): 0}, False)
    assert server.snapshot["nats_up"] == [((), 1)]
    client.bodies["connz"] = good
    run(server.refresh())
    assert state() == ({("varz",): 1, ("connz",): 1}, True)
    messages = [r.getMessage() for r in caplog.records if "connz" in r.getMessage()]
    # One line when it starts failing, one when it reads again; not one per refresh.
    assert len(messages) == 2 and messages[1] == "server a: /connz reads again"


def test_an_unexpected_exception_in_a_collector_is_its_decode_error(caplog):
    class Exploding:
        async def get(self, endpoint, params=None):
            if endpoint == "varz":
                return orjson.dumps(VARZ)
            raise RuntimeError("a collector bug")

    server = ServerCollector(Target("a", "http://a"), Exploding(), {"connz": None})
    run(server.refresh())
    run(server.refresh())
    assert server.up
    assert server.errors[("connz", "decode")] == 2
    # Logged once, with the traceback, not at every refresh.
    [record] = [r for r in caplog.records if "unexpected" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None
