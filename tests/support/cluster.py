"""A real NATS supercluster for the cluster-coverage tests: routes, gateways, leafnodes, accounts
and health, all on loopback.

Cluster "A" is three servers in a full route mesh, each with a leafnode listener; cluster "B" is
one server with no route listener. Every server has a gateway to the other cluster, so gateways
run both ways. JetStream runs on the A servers only: a JetStream server in a supercluster
refuses to start without routes, which B1 has none of. There, T1 has JetStream without limits
and T2 with account limits (``ACCOUNT_JETSTREAM``). All servers share one accounts block: SYS
(the system account), T1 and T2, each with one user.

Ports: the route and gateway listeners appear in the other servers' confs, so they are picked
free up front; the client, monitoring and leafnode ports are picked by nats-server (``-1``) and
read from its log. Each conf is then rewritten with the ports it got, so a restarted server comes
back on the same ports. A port taken by someone else between the pick and the bind makes the whole
start retry with new ports.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastnats.nats import launcher
from tests.support.natsclient import RawClient
from tests.support.process import free_port, wait_until

#: Each account and its one user's (user, password); SYS is the system account. Its password
#: is unlike any other text, so that a test can look for it in a log.
ACCOUNTS = {"SYS": ("sys", "sys-pw-4e7b19c2"), "T1": ("t1", "t1"), "T2": ("t2", "t2")}
TENANTS = ("T1", "T2")
#: Each tenant's JetStream on the A servers: T2 has account limits, so that /jsz reports an
#: account's reserved memory and storage; T1 has none, and other tests count on that.
ACCOUNT_JETSTREAM = {"T1": "enabled", "T2": "{ max_mem: 32MB, max_file: 256MB }"}
FORM_TIMEOUT = 30.0
_START_ATTEMPTS = 3


class TopologyError(AssertionError):
    """The supercluster did not form (in time, or a server exited); the message carries what
    is missing and the servers' log tails."""


@dataclass
class Node:
    """One nats-server of the supercluster, restartable on the same conf and ports."""

    name: str
    cluster: str
    conf: Path
    client_port: int
    monitor_port: int
    cluster_port: int
    gateway_port: int
    leaf_port: int
    server: launcher.NatsServer

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self.server.process.poll() is None

    def get(self, endpoint: str, **params: object) -> dict:
        """The JSON of a monitoring endpoint; /healthz answers 503 with a JSON body when it is
        not ok, and that body is returned too."""
        url = f"{self.monitor_url}/{endpoint.lstrip('/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10.0) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return json.loads(body)
            except ValueError:
                raise exc from None

    def stop(self) -> None:
        """SIGTERM and reap; the conf keeps the ports for ``start``."""
        self.server.stop()

    def start(self, timeout: float = FORM_TIMEOUT) -> None:
        """Run again on the same conf and ports, and wait until its monitoring port answers."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        server = _spawn(self.conf)
        _await_ready(server, time.monotonic() + timeout)
        self.server = server
        wait_until(self._answers, timeout=timeout)

    def _answers(self) -> bool:
        try:
            self.get("varz")
        except OSError:
            return False
        return True

    def log_tail(self, lines: int = 15) -> str:
        return "".join(self.server.log_lines[-lines:])


def _spawn(conf: Path) -> launcher.NatsServer:
    """Start nats-server on ``conf`` without waiting. Called from the test's thread, which the
    child's parent-death signal is tied to."""
    return launcher.spawn(["-c", str(conf)])


def _await_ready(server: launcher.NatsServer, deadline: float) -> None:
    server.wait_ready(max(0.0, deadline - time.monotonic()))


@dataclass
class _Plan:
    """What a node's conf needs to know: its own listeners and the other servers' ports."""

    name: str
    cluster: str
    store: Path
    cluster_port: int
    gateway_port: int
    leafnodes: bool
    jetstream: bool
    client_port: int = -1
    monitor_port: int = -1
    leaf_port: int = -1


def _render(plan: _Plan, plans: list[_Plan]) -> str:
    """The conf of ``plan``'s server; blocks are separated by blank lines."""
    def urls(ports: list[int], scheme: str) -> str:
        return ", ".join(f'"{scheme}://127.0.0.1:{port}"' for port in ports)

    blocks = [f'server_name: "{plan.name}"\nhost: 127.0.0.1\nport: {plan.client_port}\n'
              f"http_port: {plan.monitor_port}"]
    if plan.jetstream:
        blocks.append(f'jetstream {{\n  store_dir: "{plan.store}"\n  max_memory_store: 64MB\n'
                      "  max_file_store: 1GB\n}")
    if plan.cluster_port:
        routes = [p.cluster_port for p in plans if p.cluster == plan.cluster and p is not plan]
        blocks.append(f'cluster {{\n  name: "{plan.cluster}"\n  host: 127.0.0.1\n'
                      f"  port: {plan.cluster_port}\n  routes: [{urls(routes, 'nats-route')}]\n}}")
    remote_gateways: dict[str, list[int]] = {}
    for other in plans:
        if other.cluster != plan.cluster:
            remote_gateways.setdefault(other.cluster, []).append(other.gateway_port)
    gateways = "".join(f'    {{ name: "{cluster}", urls: [{urls(ports, "nats")}] }}\n'
                       for cluster, ports in remote_gateways.items())
    blocks.append(f'gateway {{\n  name: "{plan.cluster}"\n  host: 127.0.0.1\n'
                  f"  port: {plan.gateway_port}\n  gateways: [\n{gateways}  ]\n}}")
    if plan.leafnodes:
        blocks.append(f"leafnodes {{\n  host: 127.0.0.1\n  port: {plan.leaf_port}\n}}")
    users = "".join(
        f'  {account}: {{ users: [{{ user: "{user}", password: "{password}" }}]'
        + (f", jetstream: {ACCOUNT_JETSTREAM[account]}"
           if plan.jetstream and account in ACCOUNT_JETSTREAM else "") + " }\n"
        for account, (user, password) in ACCOUNTS.items())
    blocks.append(f"accounts {{\n{users}}}\nsystem_account: SYS")
    return "\n\n".join(blocks) + "\n"


@dataclass
class Supercluster:
    """The started topology; ``a`` and ``b`` are the servers of clusters A and B."""

    a: list[Node]
    b: list[Node]
    root: Path

    @property
    def hub(self) -> Node:
        """The server the fake leafnodes connect to."""
        return self.a[0]

    @property
    def nodes(self) -> list[Node]:
        return self.a + self.b

    @property
    def accounts(self) -> dict[str, tuple[str, str]]:
        return dict(ACCOUNTS)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def formed(self) -> list[str]:
        """What is still missing for the topology to be whole; empty once it is."""
        missing = []
        for node in self.nodes:
            if not node.running:
                missing.append(f"{node.name} is not running")
                continue
            try:
                routez = node.get("routez")
                gatewayz = node.get("gatewayz")
                healthz = node.get("healthz")
            except OSError as exc:
                missing.append(f"{node.name}: {exc}")
                continue
            peers = {route.get("remote_name") for route in routez.get("routes") or []}
            for peer in self.nodes:
                if peer.cluster == node.cluster and peer is not node and peer.name not in peers:
                    missing.append(f"{node.name} has no route to {peer.name}")
            outbound = gatewayz.get("outbound_gateways") or {}
            for cluster in {peer.cluster for peer in self.nodes} - {node.cluster}:
                if cluster not in outbound:
                    missing.append(f"{node.name} has no outbound gateway to {cluster}")
            if healthz.get("status") != "ok":
                missing.append(f"{node.name} healthz: {healthz}")
        return missing

    def wait_formed(self, timeout: float = FORM_TIMEOUT) -> None:
        """Wait until every route, both gateways and every /healthz are up (after a start or
        a restart); fail with what is missing and each server's log tail."""
        deadline = time.monotonic() + timeout
        while missing := self.formed():
            # A server that exited does not come back: say so now (a port taken, say).
            if time.monotonic() > deadline or not all(node.running for node in self.nodes):
                tails = "\n".join(f"--- {node.name} ({node.conf})\n{node.log_tail()}"
                                  for node in self.nodes)
                raise TopologyError(f"the supercluster did not form (in {timeout:g}s at most): "
                                    f"{'; '.join(missing)}\n{tails}")
            time.sleep(0.1)

    def client(self, node: Node | str, account: str, name: str | None = None) -> RawClient:
        """A client of ``account`` on ``node``; the caller closes it."""
        if isinstance(node, str):
            node = self.node(node)
        user, password = ACCOUNTS[account]
        return AccountClient(node.client_port, user, password, name=name)

    def traffic(self, messages: int = 200, timeout: float = 20.0) -> dict[str, dict[str, int]]:
        """Publish ``messages`` on A1 in each of T1 and T2 to subscribers on A2 (across a route)
        and B1 (across the gateway); return account -> server -> messages received, once every
        subscriber has them all (or ``timeout`` passed)."""
        publisher_node, *subscriber_nodes = self.node("A1"), self.node("A2"), self.node("B1")
        received: dict[str, dict[str, int]] = {}
        opened: list[RawClient] = []
        try:
            for account in TENANTS:
                subject = f"supercluster.traffic.{account}"
                subscribers = {}
                for node in subscriber_nodes:
                    sub = AccountClient(node.client_port, *ACCOUNTS[account],
                                        name=f"traffic-sub-{node.name}")
                    opened.append(sub)
                    sub.sub(f"{subject}.>", 1)
                    sub.flush()
                    subscribers[node.name] = sub
                publisher = AccountClient(publisher_node.client_port, *ACCOUNTS[account],
                                          name="traffic-pub")
                opened.append(publisher)
                _await_interest(publisher, subject, subscribers, timeout)
                for i in range(messages):
                    publisher.pub(f"{subject}.data", b"m%d" % i)
                publisher.flush()
                received[account] = {name: _count(sub, f"{subject}.data", messages, timeout)
                                     for name, sub in subscribers.items()}
        finally:
            for client in opened:
                client.close()
        return received


class AccountClient(RawClient):
    """A RawClient that logs in as ``user``: natsclient's CONNECT carries no credentials."""

    def __init__(self, port: int, user: str, password: str, name: str | None = None, *,
                 timeout: float = 10.0) -> None:
        self.sock = socket.socket()
        self.timeout = timeout
        self.answer_pings = True
        self.buffer = b""
        self.sent = self.received = 0
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
            self.info = self.line()
            assert self.info.startswith(b"INFO {"), self.info
            options = {"verbose": False, "pedantic": False, "user": user, "pass": password,
                       "lang": "python", "version": "1.0", "headers": True, "protocol": 1}
            if name is not None:
                options["name"] = name
            self.send(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
            self.flush()
        except BaseException:
            self.sock.close()
            raise


def _await_interest(publisher: RawClient, subject: str, subscribers: Mapping[str, RawClient],
                    timeout: float) -> None:
    """Publish probes until every subscriber got one: route and gateway interest spreads
    after the SUB, and messages published before it arrives are dropped."""
    waiting = dict(subscribers)
    deadline = time.monotonic() + timeout
    while waiting:
        if time.monotonic() > deadline:
            raise TopologyError(f"no interest in {subject} from {sorted(waiting)} "
                                f"within {timeout:g}s")
        publisher.pub(f"{subject}.probe", b"probe")
        publisher.flush()
        time.sleep(0.05)
        for name, sub in list(waiting.items()):
            sub.send(b"PING\r\n")
            got_probe = False
            while (line := sub.line()) != b"PONG":
                if line.startswith(b"MSG "):
                    sub.body(int(line.rsplit(b" ", 1)[1]))
                    got_probe = True
            if got_probe:
                del waiting[name]


def _count(sub: RawClient, subject: str, expected: int, timeout: float) -> int:
    """Messages on ``subject`` ``sub`` reads until it has ``expected`` or ``timeout`` passes;
    late probes are skipped."""
    count = 0
    deadline = time.monotonic() + timeout
    sub.sock.settimeout(max(0.1, min(timeout, 1.0)))
    try:
        while count < expected and time.monotonic() < deadline:
            try:
                line = sub.line()
            except TimeoutError:
                continue
            if line.startswith(b"MSG "):
                parts = line.split(b" ")
                sub.body(int(parts[-1]))
                count += parts[1] == subject.encode()
    finally:
        sub.sock.settimeout(sub.timeout)
    return count


def _plans(root: Path) -> list[_Plan]:
    # B1 is a cluster of one: no route listener, and so no JetStream, which in a supercluster
    # needs routes (or a solicited leafnode) for the system account.
    plans = [_Plan(name, "A", root / name / "jetstream", free_port(), free_port(),
                   leafnodes=True, jetstream=True) for name in ("A1", "A2", "A3")]
    plans.append(_Plan("B1", "B", root / "B1" / "jetstream", 0, free_port(),
                       leafnodes=False, jetstream=False))
    return plans


def _launch(root: Path) -> Supercluster:
    plans = _plans(root)
    confs = []
    for plan in plans:
        (root / plan.name).mkdir(parents=True, exist_ok=True)
        conf = root / plan.name / "nats.conf"
        conf.write_text(_render(plan, plans), encoding="utf-8")
        confs.append(conf)
    servers: list[launcher.NatsServer] = []
    try:
        servers = [_spawn(conf) for conf in confs]
        deadline = time.monotonic() + FORM_TIMEOUT
        for server in servers:
            _await_ready(server, deadline)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    nodes = []
    for plan, conf, server in zip(plans, confs, servers):
        # Pin the ports the server picked, so that a restart comes back on them.
        plan.client_port, plan.monitor_port = server.ports["client"], server.ports["http"]
        plan.leaf_port = server.ports.get("leafnode", 0)
        conf.write_text(_render(plan, plans), encoding="utf-8")
        nodes.append(Node(plan.name, plan.cluster, conf, plan.client_port, plan.monitor_port,
                          plan.cluster_port, plan.gateway_port, plan.leaf_port, server))
    return Supercluster([n for n in nodes if n.cluster == "A"],
                        [n for n in nodes if n.cluster == "B"], root)


def start_supercluster(tmp_dir: Path) -> Supercluster:
    """Start the four servers together and wait until the topology is whole."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        root = tmp_dir / f"supercluster-{attempt}"
        try:
            cluster = _launch(root)
            try:
                cluster.wait_formed()
            except BaseException:
                cluster.stop()
                raise
        except (launcher.NatsServerError, TopologyError) as exc:
            # A route or gateway port picked free was taken before its server bound it (the
            # route listener starts after "Server is ready", so it shows in wait_formed).
            if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                raise
            continue
        return cluster
    raise AssertionError("unreachable")


@contextmanager
def supercluster(tmp_dir: Path) -> Iterator[Supercluster]:
    """``start_supercluster(tmp_dir)`` for a ``with`` block, stopped on the way out."""
    cluster = start_supercluster(tmp_dir)
    try:
        yield cluster
    finally:
        cluster.stop()
