"""Fleet CONNZ paging across leafnode hops, against real servers: the system account is bound
across each leafnode (remotes with ``account: SYS``), so one exporter connected to the hub reads
every server, and a leaf's CONNZ reply travels back over the leafnode connections.

nats-server checks a message against the ``max_payload`` of the server that receives it on a
leafnode connection, and closes that connection when it is larger (``Maximum Payload
Violation``). A hub with the default 1 MB reading a leaf with ``max_payload: 8KB`` directly is
fine: the hub receives the reply. Through a middle leaf with 8 KB, a reply sized for the hub's
1 MB is refused by the middle server, which closes the far leaf's connection at every refresh
(seen with nats-server 2.15.1 before the fleet learned the servers' limits). Each case: the
far leaf's client connections as the exporter counts them equal its HTTP /connz, and no
leafnode connection was closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats.nats import launcher
from tests.support.crowd import Crowd
from tests.support.leafchain import leaf_ids, payload_errors
from tests.support.process import exporting, http_get, running_nats, wait_until

pytestmark = pytest.mark.integration

SMALL = 8 * 1024
CONNECTIONS = 400
ACCOUNTS = """
accounts {
  SYS { users [{user: sys, password: sys}] }
  APP { users [{user: app, password: app}] }
}
system_account: SYS
no_auth_user: app
"""


def conf(directory: Path, name: str, max_payload: int, hub_leaf_port: int | None,
         listen: bool) -> Path:
    """A server that listens for leafnodes and/or solicits one to ``hub_leaf_port``, binding
    SYS to SYS (system events and requests cross) and APP to APP."""
    blocks = ["listen: 127.0.0.1:-1"] if listen else []
    if hub_leaf_port is not None:
        blocks.append("remotes [" + ", ".join(
            f'{{ url: "nats://{user}:{user}@127.0.0.1:{hub_leaf_port}", account: {account} }}'
            for user, account in (("sys", "SYS"), ("app", "APP"))) + "]")
    path = directory / f"{name}.conf"
    path.write_text(f"server_name: {name}\nmax_payload: {max_payload}\n{ACCOUNTS}"
                    f"leafnodes {{\n  " + "\n  ".join(blocks) + "\n}\n")
    return path


def by_server(text: str, family: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family:
                server = sample.labels["server"]
                out[server] = out.get(server, 0) + sample.value
    return out


@pytest.fixture(params=["direct", "through-a-middle-leaf"])
def topology(request, tmp_path) -> Iterator[tuple[launcher.NatsServer, launcher.NatsServer,
                                                   list[launcher.NatsServer]]]:
    """(hub, far leaf with the crowd, every server); the far leaf is 8 KB when direct, the
    middle one when not."""
    with ExitStack() as stack:
        hub = stack.enter_context(running_nats("-c", str(conf(tmp_path, "hub", 1 << 20, None,
                                                              True))))
        servers = [hub]
        port = hub.ports["leafnode"]
        if request.param == "direct":
            far_limit = SMALL
        else:
            middle = stack.enter_context(running_nats("-c", str(conf(tmp_path, "middle", SMALL,
                                                                     port, True))))
            servers.append(middle)
            port, far_limit = middle.ports["leafnode"], 1 << 20
        far = stack.enter_context(running_nats("-c", str(conf(tmp_path, "far", far_limit, port,
                                                              False))))
        servers.append(far)
        # Both remotes of every leaf are up at the hub's end of the chain.
        wait_until(lambda: all(len(leaf_ids(s)) == (2 if s in (hub, far) else 4)
                               for s in servers), timeout=20)
        crowd = Crowd(far.client_port, CONNECTIONS, "crowd", varied=True)
        stack.callback(crowd.close)
        yield hub, far, servers


def test_a_leafs_connections_are_all_read_without_closing_a_leafnode(topology, tmp_path):
    hub, far, servers = topology
    leafs = {server.monitor_url: leaf_ids(server) for server in servers}
    password = tmp_path / "password"
    password.write_text("sys\n")
    clients = sum(1 for c in json.loads(http_get(f"{far.monitor_url}/connz?limit=10000"))
                  ["connections"] if c.get("kind") == "Client")
    assert clients >= CONNECTIONS
    with exporting("--nats.url", f"nats://127.0.0.1:{hub.client_port}", "--nats.user", "sys",
                   "--nats.password-file", str(password), "--web.listen-address",
                   "127.0.0.1:0", "--refresh-interval", "0.5s", "--timeout", "3s") as exporter:
        def read() -> str | None:
            text = exporter.scrape()
            counted = by_server(text, "nats_client_connections").get("far")
            return text if counted == clients else None

        try:
            text = wait_until(read, timeout=30)
        except AssertionError:
            pytest.fail(f"far: {by_server(exporter.scrape(), 'nats_client_connections')} "
                        f"client connections counted, {clients} in HTTP /connz; "
                        f"{payload_errors(servers)}")
        # Two more refreshes, then nothing was refused on the way.
        refreshes = by_server(text, "fastnats_refreshes_total")["far"]
        wait_until(lambda: by_server(exporter.scrape(), "fastnats_refreshes_total")["far"]
                   >= refreshes + 2, timeout=10)
        assert by_server(exporter.scrape(), "nats_client_connections")["far"] == clients
    assert {server.monitor_url: leaf_ids(server) for server in servers} == leafs
    assert not payload_errors(servers)
