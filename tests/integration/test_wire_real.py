"""The wire counter against a real nats-server: kernel bytes equal the NATS protocol's bytes.

Raw TCP clients send known traffic and keep every byte they send and receive. The expected
framing is computed from the protocol (INFO, +OK, MSG/HMSG lines, PING/PONG, CRLFs), the payload
from /varz, and the kernel's counts must match both exactly while the connections are open.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct

import pytest

from fastnats import _core
from fastnats.collectors.decode import Fields
from fastnats.collectors.varz import listener_ports
from fastnats.sources.sockdiag import SockDiag
from tests.support.natsclient import RawClient
from tests.support.process import CI, http_get, wait_until

pytestmark = pytest.mark.integration

SENT, RECEIVED = "nats_server_total_bytes_sent", "nats_server_total_bytes_received"
HEADERS = b"NATS/1.0\r\nX-Trace: 1\r\nX-Origin: wire-test\r\n\r\n"


class Peer(RawClient):
    """A RawClient that checks each line it gets against a model of the protocol."""

    #: What the protocol says the client sends and the server sends it, built up as traffic
    #: goes (from the first send, which the RawClient makes while it connects).
    expected_out = 0
    expected_in = 0

    def __init__(self, port: int, *, verbose: bool) -> None:
        super().__init__(port, verbose=verbose, flush=False)
        self.verbose = verbose
        self.expected_in += len(self.info) + 2
        self.infos = 1
        if verbose:
            self.expected_in += len(b"+OK\r\n")    # for the CONNECT

    def send(self, data: bytes) -> None:
        super().send(data)
        self.expected_out += len(data)

    def command(self, data: bytes) -> None:
        """A command the server acknowledges with +OK in verbose mode."""
        self.send(data)
        if self.verbose:
            self.expected_in += len(b"+OK\r\n")

    def handle(self, line: bytes, messages: list) -> bool:
        """Account one server line; True for PONG."""
        if line == b"PONG":
            return True
        if line.startswith(b"INFO {"):
            # The server may send INFO at any time (2.15 sends one shortly after CONNECT); its
            # JSON is server state, so its length is taken from the wire.
            self.expected_in += len(line) + 2
            self.infos += 1
        elif line != b"+OK":
            verb, *fields = line.split(b" ")
            assert verb in (b"MSG", b"HMSG"), line
            messages.append((line, self.body(int(fields[-1]))))
        return False

    def sync(self) -> list[tuple[bytes, bytes]]:
        """PING and read up to the PONG; returns the messages delivered on the way."""
        self.send(b"PING\r\n")
        self.expected_in += len(b"PONG\r\n")
        messages: list = []
        while not self.handle(self.line(), messages):
            pass
        return messages

    def drain(self) -> None:
        """Account whatever the server sent on its own since the last read, without waiting."""
        while self.fill(block=False):
            pass
        messages: list = []
        while b"\r\n" in self.buffer:
            assert not self.handle(self.line(), messages)
        assert not messages and not self.buffer

    def close(self) -> None:
        self.sock.close()


def varz(server) -> dict:
    return json.loads(http_get(server.monitor_url + "/varz"))


def poll(diag: SockDiag, counter, previous: dict | None = None) -> dict:
    """One update; checks that no counter went down since ``previous``."""
    counter.update(diag.dump())
    families = counter.families()
    if previous:
        for name, samples in families.items():
            if name.endswith("_total") or name in (SENT, RECEIVED):
                for labels, value in samples:
                    assert value >= dict(previous[name])[labels], (name, labels)
    return families


def total(families: dict, name: str) -> int:
    return families[name][0][1]


def wire_setup(server, *, destroy_events: bool = False):
    ports = listener_ports(Fields("varz", varz(server)))
    assert ports == {server.client_port: "client"}
    diag = SockDiag(ports, destroy_events=destroy_events)
    return diag, _core.WireCounter(ports, diag.mode)


def kernel_counts(diag: SockDiag) -> dict[int, tuple[int, int]]:
    """Per client port: the server socket's (bytes_acked, bytes_received), read from a dump."""
    out = {}
    for kind, flags, message in raw_messages(diag.dump()):
        if kind != 20 or not flags & 2:
            continue
        at = 88
        while at + 4 <= len(message):
            length, attr = struct.unpack_from("=HH", message, at)
            if attr == 2:
                out[struct.unpack_from(">H", message, 22)[0]] = struct.unpack_from(
                    "=QQ", message, at + 4 + 120)
            at += (length + 3) & ~3
    return out


def kernel_agrees(diag: SockDiag, peers) -> bool:
    """Whether every peer's server socket shows exactly the bytes the peer read and wrote.

    bytes_acked trails the client's delayed ACK by some milliseconds, hence a wait on this.
    """
    for peer in peers:
        peer.drain()
    counts = kernel_counts(diag)
    return all(counts.get(p.sock.getsockname()[1]) == (p.received, p.sent) for p in peers)


def test_wire_bytes_are_payload_plus_the_protocol_framing(nats_server):
    diag, counter = wire_setup(nats_server)
    base = varz(nats_server)
    port = nats_server.client_port
    rng = random.Random(7)

    publisher = Peer(port, verbose=True)
    exact_sub = Peer(port, verbose=False)
    wildcard_sub = Peer(port, verbose=True)
    idle = Peer(port, verbose=False)
    exact_sub.command(b"SUB wire.a 1\r\n")
    wildcard_sub.command(b"SUB wire.> 7\r\n")
    for peer in (exact_sub, wildcard_sub):
        peer.sync()

    payload_in = payload_out = 0
    for i in range(40):
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 17, 512, 3000])))
        if i % 4 == 3:
            size = len(HEADERS) + len(payload)
            publisher.command(f"HPUB wire.b {len(HEADERS)} {size}\r\n".encode() + HEADERS
                              + payload + b"\r\n")
            delivered = [(wildcard_sub, f"HMSG wire.b 7 {len(HEADERS)} {size}")]
        else:
            size = len(payload)
            publisher.command(f"PUB wire.a {size}\r\n".encode() + payload + b"\r\n")
            delivered = [(exact_sub, f"MSG wire.a 1 {size}"),
                         (wildcard_sub, f"MSG wire.a 7 {size}")]
        payload_in += size
        for peer, line in delivered:
            peer.expected_in += len(line) + 2 + size + 2
            payload_out += size
    for _ in range(3):
        idle.sync()
    publisher.sync()
    got = {peer: peer.sync() for peer in (exact_sub, wildcard_sub)}
    assert len(got[exact_sub]) == 30 and len(got[wildcard_sub]) == 40
    peers = (publisher, exact_sub, wildcard_sub, idle)
    wait_until(lambda: kernel_agrees(diag, peers), timeout=10)
    for peer in peers:
        # The protocol model agrees with what the client actually read and wrote.
        assert (peer.received, peer.sent) == (peer.expected_in, peer.expected_out)

    now = varz(nats_server)
    assert now["in_bytes"] - base["in_bytes"] == payload_in
    assert now["out_bytes"] - base["out_bytes"] == payload_out
    wire_sent = sum(p.expected_in for p in peers)
    wire_received = sum(p.expected_out for p in peers)
    framing_sent, framing_received = wire_sent - payload_out, wire_received - payload_in

    families = poll(diag, counter)
    # Tolerance: 0 bytes. The kernel counts exactly what crossed the wire, and the client side
    # of these loopback connections (remote port = the listener) is not counted a second time.
    assert total(families, SENT) >= payload_out
    assert total(families, RECEIVED) >= payload_in
    assert total(families, SENT) - payload_out == framing_sent
    assert total(families, RECEIVED) - payload_in == framing_received
    assert dict(families["nats_wire_connections"]) == {("client",): 4}
    print(f"sent {wire_sent} = payload {payload_out} + framing {framing_sent}; "
          f"received {wire_received} = payload {payload_in} + framing {framing_received}")
    for peer in peers:
        peer.close()
    diag.close()


def test_payload_sent_counts_each_delivery_once(nats_server):
    # The arithmetic the framing test relies on: out_bytes grows by size per subscriber reached.
    port = nats_server.client_port
    sub_a, sub_b, pub = (Peer(port, verbose=False) for _ in range(3))
    sub_a.command(b"SUB x 1\r\n")
    sub_b.command(b"SUB x 2\r\n")
    for peer in (sub_a, sub_b):
        peer.sync()
    base = varz(nats_server)
    pub.send(b"PUB x 10\r\n0123456789\r\n")
    pub.sync()
    for peer in (sub_a, sub_b):
        peer.sync()
    now = varz(nats_server)
    assert now["in_bytes"] - base["in_bytes"] == 10
    assert now["out_bytes"] - base["out_bytes"] == 20
    for peer in (sub_a, sub_b, pub):
        peer.close()


def raw_messages(buffers: list[bytes]):
    for datagram in buffers:
        at = 0
        while at < len(datagram):
            length, kind, flags = struct.unpack_from("=IHH", datagram, at)
            yield kind, flags, datagram[at:at + length]
            at += (length + 3) & ~3


def test_the_kernel_filter_returns_only_the_servers_sockets(nats_server):
    diag, _ = wire_setup(nats_server)
    peers = [Peer(nats_server.client_port, verbose=False) for _ in range(5)]
    for peer in peers:
        peer.sync()
    lines = [m for kind, flags, m in raw_messages(diag.dump()) if kind == 20]
    assert diag.kernel_filter
    # Our five client ends are on this host too; the filter leaves them in the kernel.
    assert len(lines) == 5
    assert {struct.unpack_from(">H", m, 20)[0] for m in lines} == {nats_server.client_port}
    assert diag.listening_ports() == {nats_server.client_port}
    for peer in peers:
        peer.close()
    diag.close()


def test_available_and_listening_probe(nats_server):
    ok, reason = SockDiag.available()
    assert ok, reason
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        free = unused.getsockname()[1]
    ports = {nats_server.client_port: "client", free: "leafnode"}
    with SockDiag(ports, destroy_events=False) as diag:
        assert diag.listening_ports() == {nats_server.client_port}
        assert diag.mode == "poll"


def destroy_diag(server):
    try:
        return wire_setup(server, destroy_events=True)
    except PermissionError as exc:
        # Linux lets unprivileged processes subscribe; a hardened kernel may want CAP_NET_ADMIN.
        if CI or os.geteuid() == 0:
            pytest.fail(f"destroy events unavailable: {exc}")
        pytest.skip(f"this kernel refuses destroy events to this process: {exc}")


def test_destroy_events_filter_out_other_ports(nats_server):
    diag, counter = destroy_diag(nats_server)
    assert diag.mode == "destroy_events"
    with socket.create_server(("127.0.0.1", 0)) as other:
        client = socket.create_connection(other.getsockname())
        accepted, _ = other.accept()
        client.close()
        accepted.close()
    peer = Peer(nats_server.client_port, verbose=False)
    peer.sync()
    peer.close()

    def events():
        return [m for kind, flags, m in raw_messages(diag.dump()) if kind == 20 and not flags & 2]

    found = wait_until(events, timeout=10)
    assert [struct.unpack_from(">H", m, 20)[0] for m in found] == [nats_server.client_port]
    diag.close()


def test_counters_stay_monotonic_and_exact_through_churn(nats_server):
    """Connections open, talk and close between polls, in both modes on the same traffic.

    destroy_events: within [exact, exact + 1 per closed connection] in each direction (the
    kernel counts the FIN's sequence number). poll: never more than that either, and never less
    than exact minus the bytes moved after the last poll that saw each connection.
    """
    port = nats_server.client_port
    poll_diag, poll_counter = wire_setup(nats_server)
    event_diag, event_counter = destroy_diag(nats_server)
    rng = random.Random(11)
    poll_families = poll(poll_diag, poll_counter)
    event_families = poll(event_diag, event_counter)
    exact_sent = exact_received = 0      # everything that crossed the wire, per the clients
    unseen_sent = unseen_received = 0    # bytes moved after a connection's last poll
    closed = 0
    open_peers: list[Peer] = []
    for round_ in range(25):
        for _ in range(rng.randint(1, 8)):
            open_peers.append(Peer(port, verbose=rng.random() < 0.5))
        for peer in open_peers:
            peer.command(f"PUB churn.{round_} {round_}\r\n".encode() + b"z" * round_ + b"\r\n")
            peer.sync()
        wait_until(lambda: kernel_agrees(poll_diag, open_peers), timeout=10)
        poll_families = poll(poll_diag, poll_counter, poll_families)
        event_families = poll(event_diag, event_counter, event_families)
        for peer in rng.sample(open_peers, rng.randint(0, len(open_peers))):
            if rng.random() < 0.5:
                sent, received = peer.sent, peer.received
                peer.command(b"PUB late 3\r\nabc\r\n")
                peer.sync()
                unseen_received += peer.sent - sent
                unseen_sent += peer.received - received
            peer.close()
            open_peers.remove(peer)
            exact_sent += peer.received
            exact_received += peer.sent
            closed += 1
    for peer in open_peers:
        peer.close()
        exact_sent += peer.received
        exact_received += peer.sent
        closed += 1

    def settled(diag, counter, floor_sent, floor_received):
        families = poll(diag, counter)
        done = (dict(families["nats_wire_connections"]) == {("client",): 0}
                and total(families, SENT) >= floor_sent
                and total(families, RECEIVED) >= floor_received)
        return families if done else None

    # Destroy events come from a kernel work queue, a moment after the socket leaves the dump.
    event_families = wait_until(
        lambda: settled(event_diag, event_counter, exact_sent, exact_received), timeout=15)
    poll_families = wait_until(lambda: settled(poll_diag, poll_counter, 0, 0), timeout=15)
    assert closed > 50
    assert exact_sent <= total(event_families, SENT) <= exact_sent + closed
    assert exact_received <= total(event_families, RECEIVED) <= exact_received + closed
    assert exact_sent - unseen_sent <= total(poll_families, SENT) <= exact_sent + closed
    assert (exact_received - unseen_received <= total(poll_families, RECEIVED)
            <= exact_received + closed)
    assert unseen_sent > 0
    print(f"closed {closed}: exact sent {exact_sent}, destroy_events "
          f"{total(event_families, SENT)}, poll {total(poll_families, SENT)} "
          f"(moved after the last poll: {unseen_sent})")
    poll_diag.close()
    event_diag.close()


def test_background_and_refresh_polls_never_dump_at_once(nats_server):
    """A --wire.poll-interval shorter than the refresh interval adds polls beside the poll after
    each /varz; they share one netlink socket, so their dumps must not overlap."""
    import asyncio
    import threading
    from collections import Counter

    from fastnats.collectors import ServerContext, SockdiagCollector, WireOptions
    from fastnats.collectors.varz import server_info

    varz = json.loads(http_get(f"{nats_server.monitor_url}/varz"))
    peers = [Peer(nats_server.client_port, verbose=False) for _ in range(20)]
    active = 0
    overlaps = dumps = 0
    guard = threading.Lock()

    async def run() -> Counter:
        nonlocal active, overlaps, dumps
        context = ServerContext("local", "127.0.0.1")
        poller = SockdiagCollector(context, WireOptions(True, 0.001, 1.0))
        info = server_info(Fields("varz", varz))
        await poller.refresh(None, info)  # type: ignore[arg-type]  (it reads no source)
        assert poller.counter is not None and poller._diag is not None
        real_dump = poller._diag.dump

        def watched_dump():
            nonlocal active, overlaps, dumps
            with guard:
                active += 1
                overlaps += active > 1
                dumps += 1
            try:
                return real_dump()
            finally:
                with guard:
                    active -= 1

        poller._diag.dump = watched_dump  # type: ignore[method-assign]
        for _ in range(30):
            await asyncio.gather(poller.refresh(None, info),  # type: ignore[arg-type]
                                 poller.poll())
        await poller.close()
        return +context.errors

    try:
        errors = asyncio.run(run())
    finally:
        for peer in peers:
            peer.sock.close()
    assert dumps >= 60 and overlaps == 0 and not errors
