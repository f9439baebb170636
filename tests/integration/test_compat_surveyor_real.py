"""``--compat=surveyor`` against a real supercluster (tests.support.cluster, with the JetStream
assets of tests.support.jetstream): every name the nats-surveyor dashboards query
(tests/data/compat-surveyor.txt) that fastnats serves is in the exposition with its labels, over
HTTP and in fleet mode; the names served in fleet mode only (``SURVEYOR_FLEET_ONLY``) are absent
over HTTP, and those it does not serve (``fastnats.compat.SURVEYOR_NOT_SERVED``) from both. The
raftz_meta_* of each JetStream server are checked against its own /raftz. GOMEMLIMIT gets a
server of its own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from fastnats.compat import SURVEYOR_FLEET_ONLY, SURVEYOR_FOREIGN_LABELS, SURVEYOR_NOT_SERVED
from tests.support.cluster import ACCOUNTS, Supercluster
from tests.support.process import exporting, http_get, running_nats, wait_until
from tests.support.series import Series
from tests.support.storedseries import parse

sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))
import extract_compat_names as tool  # noqa: E402

pytestmark = pytest.mark.integration

LIST = Path(__file__).parents[1] / "data" / "compat-surveyor.txt"
FLAGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2", "--compat=surveyor",
         "--collector.jsz", "--jsz.level=consumers", "--collector.accstatz", "--collector.raftz")
NEVER = "0001-01-01T00:00:00Z"


def missing(series: Series, names: dict[str, set[str]]) -> list[str]:
    """The served names absent from the exposition, or present without a listed label."""
    out = []
    for name, labels in sorted(names.items()):
        wanted = labels - SURVEYOR_FOREIGN_LABELS["*"] - SURVEYOR_FOREIGN_LABELS.get(
            name, frozenset())
        present = set().union(*(set(sample_labels) for sample_labels, _ in series.get(name, [])))
        if name not in series or not wanted <= present:
            out.append(f"{name} {sorted(wanted - present)}")
    return out


def complete(exporter, names: dict[str, set[str]], servers: set[str],
             every: tuple[str, ...] = ("nats_core_info",)) -> Series:
    """The first scrape with every one of ``names``, and a series of each family of ``every``
    for each of ``servers`` (a discovery reply may miss a refresh's gap); fails naming what is
    still missing."""
    def scraped():
        series = parse(exporter.scrape())
        whole = all({labels.get("server_name", labels.get("server")) for labels, _ in
                     series.get(family, ())} == servers for family in every)
        return series if whole and not missing(series, names) else None

    try:
        return wait_until(scraped, timeout=30)
    except AssertionError:
        pytest.fail("missing: " + ", ".join(missing(parse(exporter.scrape()), names)))


def snapshot_times(supercluster: Supercluster) -> dict[str, str]:
    return {node.name: node.get("jsz")["meta_cluster"]["snapshot"]["last_time"]
            for node in supercluster.nodes if node.cluster == "A"}


@pytest.fixture(scope="module")
def meta_snapshot(supercluster, jetstream_assets) -> str:
    """The name of a server that has taken a meta snapshot since it started: nats-server takes
    one a minute, or at once on becoming the meta leader, so the meta leader steps down."""
    taken = [name for name, when in snapshot_times(supercluster).items() if when != NEVER]
    if not taken:
        async def step_down() -> None:
            import nats

            user, password = ACCOUNTS["SYS"]
            nc = await nats.connect(f"nats://127.0.0.1:{supercluster.hub.client_port}",
                                    user=user, password=password)
            try:
                await nc.request("$JS.API.META.LEADER.STEPDOWN", b"{}", timeout=10)
            finally:
                await nc.close()

        asyncio.run(step_down())
        taken = wait_until(lambda: [name for name, when in snapshot_times(supercluster).items()
                                    if when != NEVER], timeout=30)
        supercluster.wait_formed()
        jetstream_assets.settled()
    return taken[0]


def served(*, fleet: bool) -> dict[str, set[str]]:
    names = tool.parse(LIST.read_text())
    return {name: labels for name, labels in names.items() if name not in SURVEYOR_NOT_SERVED
            and (fleet or name not in SURVEYOR_FLEET_ONLY)}


def one(series: Series, name: str, **labels: str) -> float:
    [value] = [value for found, value in series[name] if labels.items() <= found.items()]
    return value


def check_common(series: Series, supercluster: Supercluster, meta_snapshot: str) -> None:
    assert not set(SURVEYOR_NOT_SERVED) & set(series)
    [(_, expected)] = series["nats_survey_expected_count"]
    assert expected == len(supercluster.nodes)
    clusters = {labels["server_name"]: labels["server_cluster"]
                for labels, _ in series["nats_core_info"]}
    assert clusters == {node.name: node.cluster for node in supercluster.nodes}
    leaders = [labels["server_name"] for labels, value
               in series["nats_core_jetstream_cluster_raft_group_leader"] if value == 1]
    assert len(leaders) == 1
    # The meta group's other peers, as its leader sees them.
    peer = "nats_core_jetstream_cluster_raft_group_replica_peer_"
    a_servers = {node.name for node in supercluster.nodes if node.cluster == "A"}
    assert {labels["server_name"] for labels, _ in series[peer + "current"]} == set(leaders)
    assert {labels["peer"] for labels, _ in series[peer + "current"]} == a_servers - set(leaders)
    assert all(value > 0 for _, value in series[peer + "active"]), series[peer + "active"]
    assert {labels["server_name"] for labels, _ in series[
        "nats_core_jetstream_meta_snapshot_pending_entries"]} == a_servers
    assert one(series, "nats_core_jetstream_meta_snapshot_last_timestamp_seconds",
               server_name=meta_snapshot) > 1.7e9
    for node in supercluster.nodes:
        assert one(series, "nats_core_go_memlimit_bytes", server_name=node.name) == \
            node.get("varz").get("gomemlimit", 0)
    # The exporter's refreshes, summed over the servers.
    for compat, native in (("sum", "fastnats_refresh_seconds_total"),
                           ("count", "fastnats_refreshes_total")):
        [(_, value)] = series[f"nats_survey_duration_seconds_{compat}"]
        assert value == pytest.approx(sum(value for _, value in series[native]))
    gateways = {(labels["server_name"], labels["server_gateway_name"])
                for labels, _ in series["nats_core_gateway_sent_bytes"]}
    assert ("B1", "A") in gateways
    # The meta group's log, per JetStream server: the native value, at most the server's now.
    for name, native in (("applied", "nats_jetstream_meta_applied_index"),
                         ("committed", "nats_jetstream_meta_committed_index"),
                         ("pindex", "nats_jetstream_meta_last_index")):
        found = {labels["server_name"]: (labels, value)
                 for labels, value in series[f"nats_core_raftz_meta_{name}"]}
        assert set(found) == a_servers
        for server, (labels, value) in found.items():
            node = supercluster.node(server)
            [groups] = node.get("raftz", group="_meta_").values()
            assert 0 < value == one(series, native, server=server) <= groups["_meta_"][name]
            assert (labels["server_id"], labels["cluster_name"]) == (
                node.get("varz")["server_id"], "A")


def test_every_served_dashboard_name_is_in_the_exposition(supercluster, jetstream_assets,
                                                          meta_snapshot):
    names = served(fleet=False)
    assert len(names) > 40
    targets = [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
    with exporting(*targets, *FLAGS) as exporter:
        series = complete(exporter, names, {node.name for node in supercluster.nodes})
    assert not set(SURVEYOR_FLEET_ONLY) & set(series)
    check_common(series, supercluster, meta_snapshot)


def test_in_fleet_mode_every_server_has_its_round_trip(supercluster, jetstream_assets,
                                                      meta_snapshot, tmp_path):
    password = tmp_path / "password"
    password.write_text(ACCOUNTS["SYS"][1] + "\n")
    names = served(fleet=True)
    with exporting("--nats.url", f"nats://127.0.0.1:{supercluster.hub.client_port}",
                   "--nats.user", ACCOUNTS["SYS"][0], "--nats.password-file", str(password),
                   "--timeout", "2s", *FLAGS) as exporter:
        series = complete(exporter, names, {node.name for node in supercluster.nodes},
                          ("nats_core_info", "nats_fleet_server_rtt_seconds"))
    check_common(series, supercluster, meta_snapshot)
    rtts = {labels["server"]: value for labels, value in series["nats_fleet_server_rtt_seconds"]}
    assert set(rtts) == {node.name for node in supercluster.nodes}
    # A loaded machine may stall the loop that times the reply past --timeout: still a round
    # trip, so only its sign is certain.
    assert all(rtt > 0 for rtt in rtts.values()), rtts
    for labels, value in series["nats_core_rtt_nanoseconds"]:
        assert value == round(rtts[labels["server"]] * 1e9)


def reconnects(series: Series) -> tuple[float, float] | None:
    """(nats_survey_nats_reconnects, fastnats_nats_connection_events_total{reconnected})."""
    if "nats_survey_nats_reconnects" not in series:
        return None
    [(_, compat)] = series["nats_survey_nats_reconnects"]
    return compat, one(series, "fastnats_nats_connection_events_total", event="reconnected")


def test_in_fleet_mode_a_forced_reconnect_is_counted(supercluster, tmp_path):
    user, secret = ACCOUNTS["SYS"]
    password = tmp_path / "password"
    password.write_text(secret + "\n")
    hub = supercluster.hub
    with exporting("--nats.url", f"nats://127.0.0.1:{hub.client_port}", "--nats.user", user,
                   "--nats.password-file", str(password), "--timeout", "2s",
                   *FLAGS[:5]) as exporter:
        assert wait_until(lambda: reconnects(parse(exporter.scrape()))) == (0, 0)
        # The server kicks the exporter's system-account connection (a KICK request of the
        # system account), which nats-py then reconnects: only this exporter's connection.
        [cid] = [c["cid"] for c in hub.get("connz", auth="true", acc="SYS",
                                           limit=100000)["connections"]
                 if c.get("name") == "fastnats"]

        async def kick() -> None:
            import nats

            nc = await nats.connect(f"nats://127.0.0.1:{hub.client_port}", user=user,
                                    password=secret)
            try:
                await nc.request(f"$SYS.REQ.SERVER.{hub.get('varz')['server_id']}.KICK",
                                 json.dumps({"cid": cid}).encode(), timeout=10)
            finally:
                await nc.close()

        asyncio.run(kick())

        def moved() -> tuple[float, float] | None:
            found = reconnects(parse(exporter.scrape()))
            return found if found != (0, 0) else None

        assert wait_until(moved, timeout=30) == (1, 1)
        series = parse(exporter.scrape())
        assert one(series, "fastnats_nats_connection_events_total", event="disconnected") == 1
    # The log says it as often as the counters do.
    logged = "".join(exporter.log)
    assert logged.count("system account: reconnected to") == 1, logged
    assert logged.count("system account: disconnected; reconnecting") == 1, logged


def test_go_memlimit_is_the_servers_gomemlimit(monkeypatch):
    monkeypatch.setenv("GOMEMLIMIT", "768MiB")
    with running_nats() as server, \
            exporting(server.monitor_url, *FLAGS[:5]) as exporter:
        series = wait_until(lambda: (found := parse(exporter.scrape()))
                            .get("nats_core_go_memlimit_bytes") and found)
        varz = json.loads(http_get(f"{server.monitor_url}/varz"))
    [(_, native)] = series["nats_server_go_memlimit_bytes"]
    [(labels, compat)] = series["nats_core_go_memlimit_bytes"]
    assert native == compat == varz["gomemlimit"] == 768 << 20
    assert labels == {"server_cluster": "", "server_name": varz["server_name"],
                      "server_id": varz["server_id"]}
