"""The wire counter's netlink parse and per-socket state, on synthesized sock_diag buffers.

Every behaviour runs against the compiled ``_core.WireCounter`` (``_core/sockdiag.pxi``) and the
``_reference.WireCounter`` oracle (``_reference/wire.py``); a seeded generator then drives both
through long poll sequences and corrupted streams and compares them sample for sample, error for
error, and their renderings byte for byte.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct

import pytest

from fastnats import _core, _reference
from fastnats.errors import WireProtocolError
from fastnats.metrics import BY_NAME
from fastnats.sources.sockdiag import (
    CONNECTED_STATES,
    _destroy_filter,
    _port_bytecode,
)
from tests.support.sockdiaggen import (
    CLIENT,
    LEAF,
    ROUTE,
    World,
    corrupt,
    done,
    dump,
    error,
    nlmsg,
    sock,
    split_randomly,
    tcp_info,
)

PORTS = {CLIENT: "client", ROUTE: "cluster", LEAF: "leafnode"}
SENT, RECEIVED, CONNS = ("nats_wire_sent_bytes_total", "nats_wire_received_bytes_total",
                         "nats_wire_connections")
TOTAL_SENT, TOTAL_RECEIVED = "nats_server_total_bytes_sent", "nats_server_total_bytes_received"


def by_label(families: dict, name: str) -> dict[tuple[str, ...], int]:
    return dict(families[name])


def boundaries(buffers: list[bytes]) -> set[int]:
    """Offsets in the joined stream where a prefix is a complete, valid stream."""
    stream = b"".join(buffers)
    ok, pos, in_multi, dones = set(), 0, False, 0
    while pos < len(stream):
        length, kind, flags = struct.unpack_from("=IHH", stream, pos)
        if kind == 20 and flags & 2:
            in_multi = True
        if kind == 3:
            in_multi, dones = False, dones + 1
        pos += (length + 3) & ~3
        if not in_multi and dones:
            ok.add(pos)
    return ok


@pytest.fixture(params=["core", "reference"])
def counter_type(request):
    return {"core": _core.WireCounter, "reference": _reference.WireCounter}[request.param]


# --- the requests' filters --------------------------------------------------------------------

def run_inet_diag_bytecode(code: bytes, sport: int) -> bool:
    """The kernel's audit and run of INET_DIAG_REQ_BYTECODE (net/ipv4/inet_diag.c), for ports."""
    ops = {}
    pos = 0
    while pos < len(code):  # audit: every op reached through the "yes" chain, jumps in range
        kind, yes, no = struct.unpack_from("=BBH", code, pos)
        left = len(code) - pos
        min_len = 8 if kind == 11 else 4
        assert kind in (1, 11) and left >= min_len
        assert min_len <= yes <= left + 4 and yes % 4 == 0
        assert min_len <= no <= left + 4 and no % 4 == 0
        ops[pos] = (kind, yes, no)
        pos += yes
    assert pos == len(code)
    for at, (_, _, no) in ops.items():
        assert at + no in ops or at + no >= len(code)
    pos = 0
    while pos < len(code):
        kind, yes, no = ops[pos]
        match = kind == 11 and struct.unpack_from("=BBH", code, pos + 4)[2] == sport
        pos += yes if match else no
    return pos == len(code)


@pytest.mark.parametrize("ports", [[4222], [4222, 6222], [1883, 4222, 6222, 7222, 7422, 8080]])
def test_port_bytecode_accepts_exactly_the_listener_ports(ports):
    code = _port_bytecode(ports)
    for port in ports:
        assert run_inet_diag_bytecode(code, port)
    for port in (1, 4221, 4223, 50000, 65535):
        assert not run_inet_diag_bytecode(code, port)


def run_bpf(program: bytes, packet: bytes) -> int:
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x28:
            acc = struct.unpack_from(">H", packet, k)[0]
        elif code == 0x15:
            pc += jt if acc == k else jf
        elif code == 0x06:
            return k
        pc += 1


def test_destroy_filter_passes_only_the_listener_ports():
    program = _destroy_filter([4222, 6222])
    assert run_bpf(program, sock(1, sport=4222, multi=False)) > 0
    assert run_bpf(program, sock(1, sport=6222, multi=False)) > 0
    assert run_bpf(program, sock(1, sport=50000, dport=4222, multi=False)) == 0


def test_state_mask_leaves_out_time_wait_listen_and_syn_recv():
    for state in (3, 6, 10, 12):   # SYN_RECV, TIME_WAIT, LISTEN, NEW_SYN_RECV
        assert not CONNECTED_STATES & (1 << state)
    assert CONNECTED_STATES & (1 << 1)


# --- parse ------------------------------------------------------------------------------------

def test_ipv4_and_ipv6_sockets_count_per_listener(counter_type):
    counter = counter_type(PORTS)
    counter.update(dump(sock(1, 100, 10, family=socket.AF_INET),
                        sock(2, 200, 20, family=socket.AF_INET6),
                        sock(3, 5000, 700, sport=ROUTE, family=socket.AF_INET6)))
    families = counter.families()
    assert by_label(families, SENT) == {("client",): 300, ("cluster",): 5000, ("leafnode",): 0}
    assert by_label(families, RECEIVED) == {("client",): 30, ("cluster",): 700,
                                            ("leafnode",): 0}
    assert by_label(families, CONNS) == {("client",): 2, ("cluster",): 1, ("leafnode",): 0}
    assert families[TOTAL_SENT] == [((), 5300)]
    assert families[TOTAL_RECEIVED] == [((), 730)]
    assert families["nats_wire_mode_info"] == [(("poll",), 1)]
    assert counter.sockets == 3


def test_only_the_servers_side_of_a_connection_counts(counter_type):
    # On one host the dump also holds the client's end (remote port = listener port), the
    # listening socket itself and unrelated sockets; counting them would double the bytes.
    counter = counter_type(PORTS)
    counter.update(dump(sock(1, 100, 10),
                        sock(2, 10, 100, sport=50000, dport=CLIENT),
                        sock(3, 0, 0, state=10, dport=0),
                        sock(4, 999, 999, sport=22, dport=40000)))
    assert by_label(counter.families(), SENT)[("client",)] == 100
    assert by_label(counter.families(), CONNS)[("client",)] == 1


def test_counts_the_full_64_bit_range(counter_type):
    counter = counter_type({CLIENT: "client"})
    counter.update(dump(sock(2**64 - 2, 2**63 + 5, 2**40)))
    assert counter.families()[TOTAL_SENT] == [((), 2**63 + 5)]


def test_nothing_before_the_first_update(counter_type):
    assert counter_type(PORTS).families() == {}


def test_an_empty_dump_is_zero_for_every_listener(counter_type):
    counter = counter_type(PORTS)
    counter.update(dump())
    assert by_label(counter.families(), SENT) == {("client",): 0, ("cluster",): 0,
                                                  ("leafnode",): 0}


def test_sockets_without_tcp_info_are_skipped(counter_type):
    # TIME_WAIT and request sockets carry no INET_DIAG_INFO.
    counter = counter_type(PORTS)
    counter.update(dump(sock(1, 100, 10), sock(2, no_info=True, state=5)))
    assert by_label(counter.families(), CONNS)[("client",)] == 1


@pytest.mark.parametrize("size", [0, 8, 120, 128, 135])
def test_short_tcp_info_is_an_error(counter_type, size):
    counter = counter_type(PORTS)
    stream = dump(sock(1, 1, 1), sock(2, info=tcp_info(5, 5, size)))
    with pytest.raises(WireProtocolError, match=f"tcp_info of {size} bytes lacks"):
        counter.update(stream)


def test_a_tcp_info_longer_than_known_is_read(counter_type):
    counter = counter_type(PORTS)
    counter.update(dump(sock(1, info=tcp_info(77, 88, 400)), sock(2, info=tcp_info(1, 2, 136))))
    assert counter.families()[TOTAL_SENT] == [((), 78)]


def test_every_split_of_a_multipart_dump_gives_the_same_counts(counter_type):
    sockets = [sock(i, 1000 * i, 10 * i, family=socket.AF_INET if i % 2 else socket.AF_INET6,
                    sport=(CLIENT, ROUTE, LEAF)[i % 3]) for i in range(1, 9)]
    buffers = dump(*sockets, per_datagram=2)
    stream = b"".join(buffers)
    expected = counter_type(PORTS)
    expected.update([stream])
    want = expected.families()
    assert want[TOTAL_SENT] == [((), 36000)]
    for cut in range(len(stream) + 1):
        counter = counter_type(PORTS)
        counter.update([stream[:cut], stream[cut:]])
        assert counter.families() == want, cut
    rng = random.Random(5)
    for _ in range(50):
        cuts = sorted(rng.sample(range(len(stream)), rng.randint(2, 40)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        counter = counter_type(PORTS)
        counter.update([bytearray(p) if i % 2 else memoryview(p) for i, p in enumerate(pieces)])
        assert counter.families() == want
    counter = counter_type(PORTS)
    counter.update([stream[i:i + 1] for i in range(len(stream))])
    assert counter.families() == want


def test_truncation_at_every_byte_is_an_error_and_changes_nothing(counter_type):
    first = dump(sock(1, 50, 5, family=socket.AF_INET), sock(2, 60, 6))
    buffers = dump(sock(1, 100, 10, family=socket.AF_INET), sock(2, 200, 20),
                   sock(3, 300, 30, sport=ROUTE), per_datagram=2)
    stream = b"".join(buffers)
    complete = boundaries(buffers)
    counter = counter_type(PORTS)
    counter.update(first)
    before = counter.families()
    for cut in range(len(stream)):
        if cut in complete:
            continue
        with pytest.raises(WireProtocolError) as info:
            counter.update([stream[:cut]])
        assert info.value.offset is not None and 0 <= info.value.offset <= cut
        assert counter.families() == before, cut
    counter.update([stream])
    assert counter.families()[TOTAL_SENT] == [((), 600)]


def test_truncated_messages_name_the_byte_where_they_start(counter_type):
    line = sock(1, 10, 1)
    with pytest.raises(WireProtocolError,
                       match=rf"truncated netlink message: 40 of {len(line)} bytes \(byte 20\)"):
        counter_type(PORTS).update([done(), line[:40]])
    with pytest.raises(WireProtocolError, match=r"truncated netlink header: 9 of 16"):
        counter_type(PORTS).update([done() + line[:9]])
    with pytest.raises(WireProtocolError, match="stops before its NLMSG_DONE"):
        counter_type(PORTS).update([done(), line])
    with pytest.raises(WireProtocolError, match="no NLMSG_DONE"):
        counter_type(PORTS).update([])


def test_nlmsg_error_raises_with_the_kernels_errno(counter_type):
    with pytest.raises(WireProtocolError) as info:
        counter_type(PORTS).update([error(errno.EINVAL)])
    assert info.value.errno == errno.EINVAL
    assert info.value.offset == 0
    assert os.strerror(errno.EINVAL) in str(info.value)
    with pytest.raises(WireProtocolError) as info:
        counter_type(PORTS).update(dump(sock(1, 1, 1)) + [error(errno.EPERM)])
    assert info.value.errno == errno.EPERM
    with pytest.raises(WireProtocolError) as info:
        counter_type(PORTS).update([sock(1, 1, 1) + done(-errno.ENOBUFS)])
    assert info.value.errno == errno.ENOBUFS
    assert "ended the dump" in str(info.value)


def test_acknowledgements_and_noops_are_not_errors(counter_type):
    counter = counter_type(PORTS)
    counter.update([error(0), nlmsg(1, b""), *dump(sock(1, 9, 9))])
    assert counter.families()[TOTAL_SENT] == [((), 9)]


@pytest.mark.parametrize("stream, message", [
    ([nlmsg(4, b"")], "NLMSG_OVERRUN"),
    ([nlmsg(16, b"\0" * 8)], "unexpected netlink message type 16"),
    ([struct.pack("=IHHII", 8, 20, 2, 0, 0)], "nlmsg_len 8 is shorter than the netlink header"),
    ([nlmsg(20, b"\0" * 40, flags=2), done()], "shorter than inet_diag_msg"),
    ([nlmsg(2, b"\0\0")], "NLMSG_ERROR of 18 bytes has no error code"),
    ([sock(1, family=socket.AF_UNIX), done()], "address family 1"),
])
def test_malformed_messages_are_errors(counter_type, stream, message):
    with pytest.raises(WireProtocolError, match=message):
        counter_type(PORTS).update(stream)


def test_an_attribute_overrunning_its_message_names_its_offset(counter_type):
    line = bytearray(sock(1, 1, 1, extra=False))
    struct.pack_into("=H", line, 88, 4000)
    with pytest.raises(WireProtocolError, match=r"attribute of 4000 bytes.*\(byte 108\)"):
        counter_type(PORTS).update([done(), bytes(line), done()])


def test_bad_arguments_are_clear_errors(counter_type):
    with pytest.raises(ValueError, match="at least one listening port"):
        counter_type({})
    with pytest.raises(ValueError, match="not in 1..65535"):
        counter_type({0: "client"})
    with pytest.raises(ValueError, match="non-empty string"):
        counter_type({4222: ""})
    with pytest.raises(TypeError, match="ports must map"):
        counter_type(42)
    with pytest.raises(ValueError, match="mode must be"):
        counter_type(PORTS, mode="sometimes")
    with pytest.raises(TypeError, match="list of bytes"):
        counter_type(PORTS).update(b"".join(dump()))
    with pytest.raises(TypeError):
        counter_type(PORTS).update(["not bytes"])


# --- state across polls -----------------------------------------------------------------------

def test_a_closed_socket_keeps_its_last_seen_counts(counter_type):
    counter = counter_type({CLIENT: "client"})
    counter.update(dump(sock(1, 100, 10), sock(2, 200, 20)))
    counter.update(dump(sock(2, 250, 25)))
    families = counter.families()
    assert families[TOTAL_SENT] == [((), 350)]
    assert families[TOTAL_RECEIVED] == [((), 35)]
    assert by_label(families, CONNS) == {("client",): 1}


def test_a_socket_missed_by_one_dump_is_not_counted_twice(counter_type):
    counter = counter_type({CLIENT: "client"})
    counter.update(dump(sock(1, 100, 10)))
    counter.update(dump())
    assert counter.families()[TOTAL_SENT] == [((), 100)]
    counter.update(dump(sock(1, 150, 10)))
    assert counter.families()[TOTAL_SENT] == [((), 150)]


def test_destroy_events_give_final_counts(counter_type):
    counter = counter_type({CLIENT: "client"}, mode="destroy_events")
    counter.update(dump(sock(1, 100, 10)))
    # Closed after the dump: the event in the same poll carries what the poll never saw.
    counter.update(dump(sock(1, 120, 12)) + [sock(1, 180, 19, multi=False, state=7)])
    assert counter.families()[TOTAL_SENT] == [((), 180)]
    assert by_label(counter.families(), CONNS) == {("client",): 0}
    # A connection opened and closed between two polls is only known from its event.
    counter.update([sock(2, 40, 4, multi=False, state=7)] + dump())
    assert counter.families()[TOTAL_SENT] == [((), 220)]
    assert counter.families()["nats_wire_mode_info"] == [(("destroy_events",), 1)]


def test_a_late_destroy_event_replaces_the_folded_counts(counter_type):
    counter = counter_type({CLIENT: "client"}, mode="destroy_events")
    counter.update(dump(sock(1, 100, 10)))
    counter.update(dump())          # gone: folded at 100
    counter.update(dump() + [sock(1, 130, 13, multi=False)])
    assert counter.families()[TOTAL_SENT] == [((), 130)]
    assert counter.families()[TOTAL_RECEIVED] == [((), 13)]


def test_counters_never_go_down_even_on_inconsistent_input(counter_type):
    # A counter that went backwards, a socket that changed port, a duplicate in one dump.
    counter = counter_type(PORTS)
    counter.update(dump(sock(1, 100, 10)))
    counter.update(dump(sock(1, 50, 5, sport=ROUTE), sock(1, 70, 7)))
    assert by_label(counter.families(), SENT) == {("client",): 100, ("cluster",): 0,
                                                  ("leafnode",): 0}


# --- differential: compiled core against the reference ----------------------------------------

def rendered(counter, render) -> bytes:
    return render([(BY_NAME[name], BY_NAME[name].labels, samples)
                   for name, samples in counter.families().items()])


def outcome(counter, buffers):
    try:
        counter.update(buffers)
    except WireProtocolError as exc:
        return ("error", str(exc), exc.offset, exc.errno)
    return ("ok", counter.families())


@pytest.mark.parametrize("seed", [int(os.environ.get("FASTNATS_SEED", "20240611")) + i
                                  for i in range(8)])
def test_core_matches_reference_over_random_polls(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    world = World(rng)
    mode = "destroy_events" if seed % 2 else "poll"
    core, reference = _core.WireCounter(PORTS, mode), _reference.WireCounter(PORTS, mode)
    previous: dict = {}
    for step in range(60):
        buffers = world.poll(destroy_events=mode == "destroy_events")
        if rng.random() < 0.15:
            buffers = corrupt(rng, buffers)
        buffers = split_randomly(rng, buffers)
        got, want = outcome(core, buffers), outcome(reference, buffers)
        assert got == want, f"seed={seed} step={step}"
        assert rendered(core, _core.render_text) == rendered(reference, _reference.render_text)
        families = core.families()
        assert core.sockets == reference.sockets
        for name in (SENT, RECEIVED, TOTAL_SENT, TOTAL_RECEIVED):
            for labels, value in families[name]:
                assert value >= dict(previous.get(name, {})).get(labels, 0), (seed, step, name)
        previous = families
