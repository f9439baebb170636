"""The shared supercluster and fake leafnodes of tests.support, checked against the real servers
they drive: the cluster-coverage tests trust what these show."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from fastnats.nats import launcher
from tests.support.cluster import AccountClient, Node, Supercluster
from tests.support.leafcrowd import LeafCrowd
from tests.support.natsclient import RawClient
from tests.support.process import wait_until

TENANT_USERS = [("T1", "t1", "t1"), ("T2", "t2", "t2")]


def leaves_named(node: Node, prefix: str) -> list[dict]:
    """The leaves of ``node``'s /leafz that a test named with ``prefix``: others may be open."""
    return [leaf for leaf in node.get("leafz")["leafs"] or []
            if leaf["name"].startswith(prefix + "-")]


def test_every_conf_is_one_nats_server_accepts(supercluster: Supercluster) -> None:
    for node in supercluster.nodes:
        checked = subprocess.run([launcher.find_binary(), "-t", "-c", str(node.conf)],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_cluster_a_is_a_full_route_mesh(supercluster: Supercluster) -> None:
    names = {node.name for node in supercluster.a}
    assert names == {"A1", "A2", "A3"}
    for node in supercluster.a:
        routez = node.get("routez")
        assert routez["server_name"] == node.name
        # Each peer has a pool of route connections; each one names the peer.
        assert {route["remote_name"] for route in routez["routes"]} == names - {node.name}
        assert node.get("varz")["cluster"]["name"] == "A"
    assert not supercluster.b[0].get("routez")["routes"]


def test_gateways_run_both_ways(supercluster: Supercluster) -> None:
    for node in supercluster.nodes:
        other = "B" if node.cluster == "A" else "A"
        gatewayz = node.get("gatewayz")
        assert gatewayz["name"] == node.cluster
        assert set(gatewayz["outbound_gateways"]) == {other}
    # Every A server dials B1; B1 dials one A server, which tells the others about B.
    assert len(supercluster.b[0].get("gatewayz")["inbound_gateways"]["A"]) == 3
    from_b = [node.get("gatewayz")["inbound_gateways"].get("B", []) for node in supercluster.a]
    assert sorted(len(inbound) for inbound in from_b) == [0, 0, 1]


def test_every_server_is_healthy_with_jetstream_on_a(supercluster: Supercluster) -> None:
    for node in supercluster.nodes:
        assert node.get("healthz") == {"status": "ok"}
    leaders = {node.get("jsz")["meta_cluster"]["leader"] for node in supercluster.a}
    assert len(leaders) == 1 and leaders <= {"A1", "A2", "A3"}
    assert supercluster.a[0].get("jsz")["meta_cluster"]["cluster_size"] == 3
    assert not supercluster.b[0].get("varz")["jetstream"]


def test_a_failing_healthz_returns_its_json_body(supercluster: Supercluster) -> None:
    # Answered with an error status (400), which urllib raises on.
    body = supercluster.hub.get("healthz", stream="missing")
    assert body["status"] == "error"
    assert "account" in body["error"]


def test_every_server_has_the_same_accounts(supercluster: Supercluster) -> None:
    for node in supercluster.nodes:
        accountz = node.get("accountz")
        assert accountz["system_account"] == "SYS"
        assert {"SYS", "T1", "T2"} <= set(accountz["accounts"])


def test_users_log_in_to_their_accounts(supercluster: Supercluster) -> None:
    client = supercluster.client("B1", "T2", name="whoami")
    try:
        connz = supercluster.node("B1").get("connz", auth="true")
        mine = [conn for conn in connz["connections"] if conn.get("name") == "whoami"]
        assert [(conn["account"], conn["authorized_user"]) for conn in mine] == [("T2", "t2")]
    finally:
        client.close()
    with pytest.raises(ConnectionError, match="Authorization Violation"):
        AccountClient(supercluster.hub.client_port, "t1", "wrong")


def test_traffic_crosses_routes_and_the_gateway(supercluster: Supercluster) -> None:
    def from_a(node_name: str) -> int:
        inbound = supercluster.node(node_name).get("gatewayz")["inbound_gateways"]["A"]
        return sum(gateway["connection"]["in_msgs"] for gateway in inbound)

    before = from_a("B1")
    received = supercluster.traffic(messages=150)
    assert received == {"T1": {"A2": 150, "B1": 150}, "T2": {"A2": 150, "B1": 150}}
    assert from_a("B1") - before >= 2 * 150


def test_fake_leafnodes_show_in_leafz_with_their_names_and_accounts(
        supercluster: Supercluster) -> None:
    prefix, count, groups = "support-leaf", 300, 7
    expected = Counter((f"{prefix}-{j % groups}", TENANT_USERS[j % 2][0]) for j in range(count))
    hub = supercluster.hub
    with LeafCrowd(hub.leaf_port, count, accounts=TENANT_USERS, names=prefix,
                   groups=groups, per_helper=250) as crowd:
        assert len(crowd.helpers) == 2
        leaves = leaves_named(hub, prefix)
        assert Counter((leaf["name"], leaf["account"]) for leaf in leaves) == expected
        assert all(not leaf["is_spoke"] for leaf in leaves)
        # The hub's leafz is per server: the other A servers see none of them.
        assert not leaves_named(supercluster.node("A2"), prefix)

        crowd.close_some(120)
        assert crowd.open == 180
        wait_until(lambda: len(leaves_named(hub, prefix)) == 180)
    wait_until(lambda: not leaves_named(hub, prefix))


def test_a_fake_leafnode_publishes_into_its_account(supercluster: Supercluster) -> None:
    t1 = supercluster.client(supercluster.hub, "T1", name="leaf-sink-t1")
    t2 = supercluster.client(supercluster.hub, "T2", name="leaf-sink-t2")
    try:
        for client in (t1, t2):
            client.sub("support.leaf.pub", 1)
            client.flush()
        # Leaf 0 binds to T1.
        with LeafCrowd(supercluster.hub.leaf_port, 2, accounts=TENANT_USERS,
                       names="support-publisher") as crowd:
            crowd.publish("support.leaf.pub", 5)
        assert messages_before_pong(t1) == [b"leaf-%d" % i for i in range(5)]
        assert messages_before_pong(t2) == []
    finally:
        t1.close()
        t2.close()


def messages_before_pong(client: RawClient) -> list[bytes]:
    """The payloads the server sent ``client`` before answering a PING now."""
    client.send(b"PING\r\n")
    payloads = []
    while (line := client.line()) != b"PONG":
        if line.startswith(b"MSG "):
            payloads.append(client.body(int(line.rsplit(b" ", 1)[1])))
    return payloads


def test_a_node_restarts_on_its_ports_and_the_mesh_reforms(supercluster: Supercluster) -> None:
    node = supercluster.node("A3")
    ports = (node.client_port, node.monitor_port, node.cluster_port, node.gateway_port,
             node.leaf_port)
    node.stop()
    try:
        assert not node.running
        missing = supercluster.formed()
        assert "A3 is not running" in missing
        wait_until(lambda: "A3" not in {route["remote_name"]
                                        for route in supercluster.hub.get("routez")["routes"]})
    finally:
        node.start()
        supercluster.wait_formed()
    assert node.running
    logged = wait_until(lambda: len(node.server.ports) == 5 and node.server.ports)
    assert (logged["client"], logged["http"], logged["route"], logged["gateway"],
            logged["leafnode"]) == ports
    assert (node.client_port, node.monitor_port, node.cluster_port, node.gateway_port,
            node.leaf_port) == ports
    assert {route["remote_name"] for route in node.get("routez")["routes"]} == {"A1", "A2"}
    assert node.get("healthz") == {"status": "ok"}
