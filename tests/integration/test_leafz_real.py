"""Leafnodes against a real hub: the /leafz families, closes and reconnects, and /connz.

Hundreds of leafnodes (tests.support.leafcrowd) on the supercluster's hub: the families equal the
/leafz JSON read at the same moment; after leafnodes publish, close and reconnect no counter goes
back, and the closed ones count their final counters from /connz?state=closed. Then, on a hub of
the test's own with a real leafnode nats-server, what the collector relies on (a closed leafnode
is filed in the closed list as "kind": "Leafnode", its cid being its /leafz id) and the /connz
fix: a leafnode that connects and closes changes no client family.
"""

from __future__ import annotations

from collections import Counter

import pytest

from fastnats._impl import impl
from fastnats.collectors import ConnzOptions
from fastnats.collectors.leafz import LeafzOptions
from fastnats.metrics import BY_NAME, CONNZ, LEAF_GROUP_LABELS, LEAFZ
from fastnats.nats import launcher
from tests.support.cluster import AccountClient
from tests.support.inprocess import InProcess
from tests.support.leafcrowd import LeafCrowd
from tests.support.process import get_json, running_nats, wait_until

pytestmark = pytest.mark.integration

TENANTS = [("T1", "t1", "t1"), ("T2", "t2", "t2")]
LEAVES = 300
GROUPS = 7
COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")
HUB_COLLECTORS = {"leafz": LeafzOptions(), "connz": ConnzOptions()}


def metric_of(key: str) -> str:
    return f"nats_leafnode_{key.replace('msgs', 'messages')}_total"


def mine(samples: dict[str, list], name: str, prefix: str) -> dict[tuple[str, ...], object]:
    return {labels: value for labels, value in samples[name] if labels[1].startswith(prefix)}


def from_leafz(leafs: list[dict], prefix: str, key: str) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for leaf in leafs:
        if leaf["name"].startswith(prefix):
            out[(leaf["account"], leaf["name"])] += 1 if key == "connections" else leaf[key]
    return out


def still(hub, prefix: str) -> list[dict]:
    """The /leafz leafnodes of the test, once two reads in a row agree."""
    def stable():
        first = [leaf for leaf in hub.get("leafz")["leafs"] if leaf["name"].startswith(prefix)]
        second = [leaf for leaf in hub.get("leafz")["leafs"] if leaf["name"].startswith(prefix)]
        first.sort(key=lambda leaf: leaf["id"])
        second.sort(key=lambda leaf: leaf["id"])
        return first == second and first
    return wait_until(stable, timeout=30)


@pytest.fixture
def hub(supercluster):
    return supercluster.hub


def test_families_equal_the_leafz_json_of_the_same_moment(hub):
    prefix = "lzsame"
    exporter = InProcess(hub.monitor_url, HUB_COLLECTORS)
    try:
        with LeafCrowd(hub.leaf_port, LEAVES, accounts=TENANTS, names=prefix, groups=GROUPS):
            wait_until(lambda: len(still(hub, prefix)) == LEAVES)
            leafs = still(hub, prefix)
            samples = exporter.refresh()
            assert still(hub, prefix) == leafs, "the leafnodes changed during the refresh"
            assert len(leafs) == LEAVES
            expected = from_leafz(leafs, prefix, "connections")
            assert len(expected) == 2 * GROUPS
            assert mine(samples, "nats_leafnode_connections", prefix) == dict(expected)
            for key in ("subscriptions", *COUNTERS):
                name = "nats_leafnode_subscriptions" if key == "subscriptions" else metric_of(key)
                assert mine(samples, name, prefix) == dict(from_leafz(leafs, prefix, key)), key
            for name in ("nats_leafnode_connections_closed_total",
                         "nats_leafnode_connections_lost_total"):
                assert set(mine(samples, name, prefix).values()) == {0}, name
            every = hub.get("leafz")["leafs"]
            [(_, (counts, _))] = samples["nats_leafnode_connection_rtt_seconds"]
            assert counts[-1] == sum(1 for leaf in every if leaf["rtt"])
            ids = {str(leaf["id"]) for leaf in every}
            assert {labels[0] for labels, _ in samples["nats_leafnode_top_rtt_seconds"]} <= ids
            # A leafnode's rtt is "0s" until the hub measured it: it is counted, not ranked.
            measured = sum(1 for leaf in every
                           if leaf["rtt"] and impl.parse_go_duration(leaf["rtt"]))
            assert len(samples["nats_leafnode_top_rtt_seconds"]) == min(10, measured)
            assert samples["nats_leafnode_groups"][0][1] >= 2 * GROUPS
    finally:
        exporter.close()


def test_closes_and_reconnects_keep_counters_monotonic_with_final_counters_from_connz(hub):
    prefix = "lzclose"
    exporter = InProcess(hub.monitor_url, HUB_COLLECTORS)
    try:
        with LeafCrowd(hub.leaf_port, LEAVES, accounts=TENANTS, names=prefix,
                       groups=GROUPS) as crowd:
            wait_until(lambda: len(still(hub, prefix)) == LEAVES)
            crowd.publish("lz.before", 20)
            first = exporter.refresh()
            before = {m.name: mine(first, m.name, prefix) for m in LEAFZ
                      if m.labels == (LEAF_GROUP_LABELS,)}
            # The first leaf publishes after that refresh, then it and 24 more close: only
            # /connz state=closed has the 50 messages.
            listed = {leaf["id"] for leaf in still(hub, prefix)}
            crowd.publish("lz.after", 50)
            crowd.close_some(25)
            wait_until(lambda: len(still(hub, prefix)) == LEAVES - 25)
            gone = listed - {leaf["id"] for leaf in still(hub, prefix)}
            closed = wait_until(lambda: _closed(hub, gone))
            assert {c["kind"] for c in closed.values()} == {"Leafnode"}
            with LeafCrowd(hub.leaf_port, 40, accounts=TENANTS, names=prefix, groups=GROUPS):
                wait_until(lambda: len(still(hub, prefix)) == LEAVES + 15)
                leafs = still(hub, prefix)
                after = exporter.refresh()
                assert still(hub, prefix) == leafs
            for name, old in before.items():
                if BY_NAME[name].type == "counter":
                    new = mine(after, name, prefix)
                    assert all(new[labels] >= value for labels, value in old.items()), name
            for key in COUNTERS:
                expected = from_leafz(leafs, prefix, key)
                for entry in closed.values():
                    expected[(entry["account"], entry["name"])] += entry[key]
                assert mine(after, metric_of(key), prefix) == dict(expected), key
            in_msgs = mine(after, "nats_leafnode_in_messages_total", prefix)
            assert in_msgs[("T1", f"{prefix}-0")] >= 70
            closes = mine(after, "nats_leafnode_connections_closed_total", prefix)
            assert sum(closes.values()) == 25
            assert set(mine(after, "nats_leafnode_connections_lost_total", prefix).values()) == {0}
            assert mine(after, "nats_leafnode_connections", prefix) == dict(
                from_leafz(leafs, prefix, "connections"))
    finally:
        exporter.close()


def _closed(hub, ids: set[int]) -> dict[int, dict] | None:
    """The closed /connz entries of ``ids``, once every one is filed."""
    page = hub.get("connz", state="closed", sort="stop", auth="true", limit=10_000)
    found = {c["cid"]: c for c in page["connections"] if c["cid"] in ids}
    return found if len(found) == len(ids) else None


# -- a hub of the test's own, and a real leafnode server -------------------------------------------

HUB_CONF = """
accounts {
  T1 { users [ {user: t1, password: t1} ] }
  SYS { users [ {user: sys, password: sys} ] }
}
system_account: SYS
leafnodes { listen: 127.0.0.1:-1 }
"""


def test_a_leafnode_that_connects_and_closes_changes_no_client_family(tmp_path):
    (tmp_path / "hub.conf").write_text(HUB_CONF)
    with running_nats("-c", str(tmp_path / "hub.conf")) as server:
        exporter = InProcess(server.monitor_url, HUB_COLLECTORS)
        client = AccountClient(server.client_port, "t1", "t1", "svc")
        try:
            def clients(samples: dict[str, list]) -> dict[str, list]:
                return {m.name: samples.get(m.name, []) for m in CONNZ
                        if not m.name.startswith("nats_client_top")}

            exporter.refresh()
            quiet = clients(exporter.refresh())
            assert quiet["nats_client_connections"] == [(("T1", "svc"), 1)]
            (tmp_path / "leaf.conf").write_text(
                "server_name: LEAF1\nleafnodes { remotes [ { url: "
                f'"nats-leaf://t1:t1@127.0.0.1:{server.ports["leafnode"]}" }} ] }}\n')
            leaf = launcher.start(["-c", str(tmp_path / "leaf.conf"), "-p", "-1", "-a",
                                   "127.0.0.1"])
            try:
                [listed] = wait_until(lambda: _get(server, "leafz")["leafs"])
                # /connz lists the leafnode too, under its /leafz id.
                conns = _get(server, "connz", auth="true")["connections"]
                assert [(c["cid"], c["kind"]) for c in conns if c["kind"] != "Client"] == [
                    (listed["id"], "Leafnode")]
                samples = exporter.refresh()
                assert clients(samples) == quiet
                assert samples["nats_leafnode_connections"] == [(("T1", "LEAF1"), 1)]
            finally:
                leaf.stop()
            wait_until(lambda: not _get(server, "leafz")["leafs"])
            wait_until(lambda: _get(server, "connz", state="closed", auth="true")["connections"])
            [entry] = _get(server, "connz", state="closed", auth="true")["connections"]
            assert (entry["cid"], entry["kind"], entry["name"]) == (listed["id"], "Leafnode",
                                                                  "LEAF1")
            samples = exporter.refresh()
            assert clients(samples) == quiet
            assert samples["nats_leafnode_connections_closed_total"] == [(("T1", "LEAF1"), 1)]
            assert samples["nats_leafnode_connections_lost_total"] == [(("T1", "LEAF1"), 0)]
            assert samples["nats_leafnode_out_messages_total"] == [
                (("T1", "LEAF1"), entry["out_msgs"])]
            assert quiet == clients(exporter.refresh(step=60.0))
        finally:
            client.close()
            exporter.close()


def _get(server: launcher.NatsServer, endpoint: str, **params: str) -> dict:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return get_json(f"{server.monitor_url}/{endpoint}?{query}")
