"""/varz past the seed metrics, /healthz and /subsz against real nats-servers: every family the
exporter shows equals the endpoint's JSON read right after it (values that move, such as CPU and
memory, only checked for range), the TLS expiry of each listener equals its certificate's notAfter,
and a JetStream server without a meta leader is unhealthy with a JETSTREAM failure."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats.collector import ServerCollector
from fastnats.collectors.base import Samples
from fastnats.collectors.healthz import HealthzOptions
from fastnats.nats import launcher
from fastnats.rfc3339 import parse_rfc3339_ns
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.certs import server_certificate
from tests.support.process import FAST, free_port, require_tool, running_nats, start_exporter

pytestmark = pytest.mark.integration

#: Each TLS listener, its conf block, and its certificate's lifetime in days (all different, so
#: that a listener given another's expiry shows).
LISTENERS = {"client": ("tls", 30), "cluster": ("cluster", 41), "gateway": ("gateway", 52),
             "leafnode": ("leafnodes", 63), "websocket": ("websocket", 74), "mqtt": ("mqtt", 85)}
BOTH_CHECKS = HealthzOptions(details=True, jetstream=("enabled-only", "server-only"))


def fetch(url: str, endpoint: str, **params: str) -> tuple[int, dict]:
    """Status and JSON of a monitoring endpoint; /healthz answers 503 with a JSON body."""
    query = "?" + urllib.parse.urlencode(params) if params else ""
    try:
        with urllib.request.urlopen(f"{url}/{endpoint}{query}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def one(series, name: str) -> float:
    [(labels, value)] = series[name]
    assert labels == {}, (name, labels)
    return value


def refresh(url: str, options: dict[str, object]) -> tuple[Samples, list]:
    """One refresh of a server collector with ``options``: its snapshot and its problems."""
    async def run() -> tuple[Samples, list]:
        session = new_session()
        try:
            server = ServerCollector(Target("s", url), MonitorClient(url, session, 10.0),
                                     options)
            await server.refresh()
            return server.snapshot, server.problems
        finally:
            await session.close()
    return asyncio.run(run())


@contextmanager
def tls_jetstream_server(folder: Path) -> Iterator[tuple[launcher.NatsServer, dict[str, float]]]:
    """A JetStream server (domain "hub", tags) with TLS on all six listeners, each its own
    certificate, and a cluster whose two routes lead nowhere: its JetStream waits for a meta
    leader for good."""
    expiries = {}
    tls = {}
    for listener, (block, days) in LISTENERS.items():
        cert, key, expiry = server_certificate(folder, listener, days)
        expiries[listener] = expiry
        verify = f', ca_file: "{cert}"' if listener in ("cluster", "gateway") else ""
        tls[block] = f'tls {{ cert_file: "{cert}", key_file: "{key}"{verify} }}'
    nowhere = ", ".join(f'"nats-route://127.0.0.1:{free_port()}"' for _ in range(2))
    conf = folder / "nats.conf"
    conf.write_text(f"""
server_name: tls1
server_tags: ["zone:b", "az:1", "Region:EU"]
host: 127.0.0.1
port: -1
http_port: -1
{tls["tls"]}
jetstream {{ store_dir: "{folder / 'js'}", max_memory_store: 64MB, max_file_store: 1GB,
             domain: hub }}
cluster {{ name: C1, host: 127.0.0.1, port: -1, routes: [{nowhere}], {tls["cluster"]} }}
gateway {{ name: C1, host: 127.0.0.1, port: -1, {tls["gateway"]} }}
leafnodes {{ host: 127.0.0.1, port: -1, {tls["leafnodes"]} }}
websocket {{ host: 127.0.0.1, port: -1, {tls["websocket"]} }}
mqtt {{ host: 127.0.0.1, port: -1, {tls["mqtt"]} }}
accounts {{ SYS: {{ users: [{{ user: sys, password: sys }}] }},
            APP: {{ jetstream: enabled, users: [{{ user: app, password: app }}] }} }}
system_account: SYS
""", encoding="utf-8")
    require_tool("nats-server")
    server = launcher.start(["-c", str(conf)])
    try:
        yield server, expiries
    finally:
        server.stop()


def test_every_varz_family_equals_varz_and_tls_expiry_equals_each_server_certificate(tmp_path):
    with tls_jetstream_server(tmp_path) as (server, expiries):
        exporter = start_exporter(server.monitor_url, *FAST, "--collector.subsz",
                                  "--healthz.jetstream", "enabled-only,server-only")
        try:
            deadline = time.monotonic() + 20
            while "nats_server_healthy" not in (series := scrape(exporter.scrape())):
                assert time.monotonic() < deadline, exporter.log
                time.sleep(0.1)
            _, varz = fetch(server.monitor_url, "varz")
            healthz = fetch(server.monitor_url, "healthz", details="true")
        finally:
            exporter.stop()

    [(info, value)] = series["nats_server_info"]
    assert value == 1
    assert info == {"server_name": "tls1", "server_id": varz["server_id"],
                    "version": varz["version"], "cluster": varz["cluster"]["name"],
                    "domain": varz["jetstream"]["config"]["domain"],
                    "tags": ",".join(sorted(varz["tags"]))}
    # nats-server lowercases tags.
    assert info["domain"] == "hub" and info["tags"] == "az:1,region:eu,zone:b"

    # Where nats-server 2.15 reports each certificate's expiry.
    assert varz["tls_cert_not_after"]
    for section in ("cluster", "gateway", "leaf", "websocket", "mqtt"):
        assert varz[section]["tls_cert_not_after"], section
    exported = {labels["listener"]: value for labels, value in
                series["nats_server_tls_cert_not_after_timestamp_seconds"]}
    assert exported == expiries
    assert exported["client"] == parse_rfc3339_ns(varz["tls_cert_not_after"]) / 1e9
    assert exported["leafnode"] == parse_rfc3339_ns(varz["leaf"]["tls_cert_not_after"]) / 1e9

    assert one(series, "nats_route_configured_urls") == len(varz["cluster"]["urls"]) == 2
    assert one(series, "nats_server_config_load_timestamp_seconds") == (
        parse_rfc3339_ns(varz["config_load_time"]) / 1e9)
    assert {labels["kind"]: value for labels, value in
            series["nats_server_slow_consumer_detections_total"]} == varz["slow_consumer_stats"]
    for name, key in (("subscriptions", "subscriptions"), ("routes", "routes"),
                      ("remotes", "remotes"), ("leafnodes", "leafnodes"),
                      ("stale_connections_total", "stale_connections"),
                      ("stalled_clients_total", "stalled_clients")):
        assert one(series, f"nats_server_{name}") == varz[key], name
    # It moves: in range, and read close to the /varz after it.
    assert 0 <= one(series, "nats_server_cpu_ratio") <= varz["cores"]

    config, stats = varz["jetstream"]["config"], varz["jetstream"]["stats"]
    assert config["max_memory"] == 64 << 20 and config["max_storage"] == 1 << 30
    assert one(series, "nats_server_jetstream_max_memory_bytes") == config["max_memory"]
    assert one(series, "nats_server_jetstream_max_storage_bytes") == config["max_storage"]
    for name in ("memory", "storage", "reserved_memory", "reserved_storage"):
        assert one(series, f"nats_server_jetstream_{name}_bytes") == stats[name], name
    assert one(series, "nats_server_jetstream_api_requests_total") == stats["api"]["total"]
    assert one(series, "nats_server_jetstream_api_errors_total") == stats["api"]["errors"]

    # Routes to nowhere: JetStream has no meta leader, but the JetStream-only checks pass.
    assert healthz[0] == 503 and healthz[1]["errors"][0]["type"] == "JETSTREAM"
    assert one(series, "nats_server_healthy") == 0
    assert series["nats_server_health_failures"] == [({"type": "JETSTREAM"}, 1)]
    assert sorted(series["nats_server_jetstream_healthy"], key=str) == [
        ({"check": "enabled-only"}, 1), ({"check": "server-only"}, 1)]
    assert series["nats_sublist_matches_total"]


def test_a_server_without_jetstream_tls_or_cluster_has_none_of_their_series(nats_server):
    snapshot, problems = refresh(nats_server.monitor_url, {"healthz": None})
    _, varz = fetch(nats_server.monitor_url, "varz")
    assert problems == []
    assert varz["jetstream"] == {} and varz["cluster"] == {} and "tls_cert_not_after" not in varz
    assert not [name for name in snapshot if "jetstream" in name or "tls" in name]
    assert "nats_route_configured_urls" not in snapshot
    [(labels, _)] = snapshot["nats_server_info"]
    assert labels[3:] == ("", "", "")
    assert snapshot["nats_server_healthy"] == [((), 1)]
    assert "nats_server_health_failures" not in snapshot


def cluster_conf(folder: Path, name: str, ports: list[int], mine: int) -> Path:
    routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in ports)
    conf = folder / f"{name}.conf"
    conf.write_text(f'server_name: {name}\nhost: 127.0.0.1\nport: -1\nhttp_port: -1\n'
                    f'jetstream {{ store_dir: "{folder / name}" }}\n'
                    f'cluster {{ name: X, host: 127.0.0.1, port: {mine}, routes: [{routes}] }}\n',
                    encoding="utf-8")
    return conf


def test_healthz_of_a_jetstream_server_without_meta_leader_in_two_of_three(tmp_path):
    """A new three-server JetStream cluster with one server down: nats-server 2.15 elects no
    meta leader (it waits for every peer while it bootstraps), and /healthz says 503."""
    require_tool("nats-server")
    ports = [free_port() for _ in range(3)]
    first = launcher.start(["-c", str(cluster_conf(tmp_path, "n0", ports, ports[0]))])
    try:
        second = launcher.start(["-c", str(cluster_conf(tmp_path, "n1", ports, ports[1]))])
        try:
            snapshot, problems = refresh(first.monitor_url, {"healthz": BOTH_CHECKS})
            status, body = fetch(first.monitor_url, "healthz", details="true")
            plain = fetch(first.monitor_url, "healthz")
        finally:
            second.stop()
    finally:
        first.stop()
    assert problems == []
    assert status == 503 and body["status"] == "error", body
    assert [error["type"] for error in body["errors"]] == ["JETSTREAM"]
    assert plain[0] == 503 and plain[1]["status"] == "unavailable"
    assert snapshot["nats_server_healthy"] == [((), 0)]
    assert snapshot["nats_server_health_failures"] == [(("JETSTREAM",), 1)]
    assert snapshot["nats_server_jetstream_healthy"] == [(("enabled-only",), 1),
                                                         (("server-only",), 1)]


def test_subsz_equals_subsz_read_around_it():
    with running_nats() as server:
        _, before = fetch(server.monitor_url, "subsz")
        snapshot, problems = refresh(server.monitor_url, {"subsz": None})
        _, after = fetch(server.monitor_url, "subsz")
    assert problems == []
    for name, key in (("inserts_total", "num_inserts"), ("removes_total", "num_removes"),
                      ("matches_total", "num_matches")):
        [((), value)] = snapshot[f"nats_sublist_{name}"]
        assert before[key] <= value <= after[key], name
    for name, key in (("cache_entries", "num_cache"), ("cache_hit_ratio", "cache_hit_rate"),
                      ("fanout_average", "avg_fanout"), ("fanout_max", "max_fanout")):
        [((), value)] = snapshot[f"nats_sublist_{name}"]
        if before[key] == after[key]:
            assert value == after[key], name


def test_the_supercluster_without_stopping_it(supercluster):
    a1, b1 = supercluster.node("A1"), supercluster.node("B1")
    options = {"healthz": BOTH_CHECKS, "subsz": None}
    a, a_problems = refresh(a1.monitor_url, options)
    a_varz = a1.get("varz")
    b, b_problems = refresh(b1.monitor_url, options)
    b_varz = b1.get("varz")
    assert a_problems == b_problems == []
    assert a["nats_route_configured_urls"] == [((), len(a_varz["cluster"]["urls"]))]
    assert a["nats_server_jetstream_max_memory_bytes"] == [
        ((), a_varz["jetstream"]["config"]["max_memory"])]
    assert a["nats_server_healthy"] == [((), 1)]
    assert a["nats_server_jetstream_healthy"] == [(("enabled-only",), 1), (("server-only",), 1)]
    assert a["nats_server_info"][0][0][3:] == ("A", "", "")
    # B1 has a cluster name and a gateway but no route listener, and no JetStream.
    assert "cluster_port" not in (b_varz.get("cluster") or {})
    assert "nats_route_configured_urls" not in b
    assert b_varz["jetstream"] == {}
    assert not [name for name in b if name.startswith("nats_server_jetstream_")
                and name != "nats_server_jetstream_healthy"]
    # A server without JetStream passes the JetStream-only checks of nats-server 2.15.
    assert b["nats_server_jetstream_healthy"] == [(("enabled-only",), 1), (("server-only",), 1)]
    assert b["nats_server_info"][0][0][3:] == ("B", "", "")
    assert b["nats_server_healthy"] == [((), 1)]
    assert a["nats_sublist_inserts_total"] and b["nats_sublist_inserts_total"]
