"""Hostile sock_diag streams: each is refused with a WireProtocolError that names its byte (and the
errno only when the kernel sent a real one), or read in a documented way, by the compiled
``WireCounter`` and the reference alike; none crashes, and a refused poll changes nothing.

The cases: netlink lengths that lie (0, 15, 2**32-1, not a multiple of 4), error codes that are no
errno (-2**31, 4096), attributes that lie about their length, flags in attribute types, short
and long tcp_info, foreign address families and message types, sockets that are not the server's,
and counters that would overflow 64 bits once summed. Well-formed streams are in
test_wire_parse.py; the same cases seed the fuzz corpus (tests/fuzz/make_corpus.py).
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass

import pytest

from fastnats import _core, _reference
from fastnats.errors import WireProtocolError
from tests.support.sockdiaggen import CLIENT, ROUTE, attr, done, nlmsg, sock, tcp_info

PORTS = {CLIENT: "client", ROUTE: "cluster"}
U64_MAX = 2**64 - 1
SENT, TOTAL_SENT = "nats_wire_sent_bytes_total", "nats_server_total_bytes_sent"
INT_MIN = -(2**31)


@dataclass(frozen=True)
class Refused:
    message: str
    at: int
    errno: int | None = None


@dataclass(frozen=True)
class Read:
    sent: int          # nats_server_total_bytes_sent after the poll
    sockets: int = 0


def header(length: int, kind: int, flags: int = 2) -> bytes:
    return struct.pack("=IHHII", length, kind, flags, 7, 4242)


def with_attrs(attrs: bytes, *, sport: int = CLIENT, family: int = socket.AF_INET6,
               state: int = 1) -> bytes:
    """A dump line whose attributes are exactly ``attrs``, bytes as given."""
    line = bytearray(sock(1, sport=sport, family=family, state=state, extra=False, no_info=True))
    line += attrs
    struct.pack_into("=I", line, 0, len(line))
    return bytes(line) + b"\0" * (-len(line) % 4)


def errno_message(kind: int, err: int) -> bytes:
    return nlmsg(kind, struct.pack("=i", err), flags=2)


def cases() -> list:
    line = sock(1, 100, 10)
    info_at = len(sock(1, extra=False, no_info=True))
    cases = {
        # -- lengths ------------------------------------------------------------------------
        "len-0": ([header(0, 3) + b"\0" * 4], Refused("nlmsg_len 0 is shorter", 0)),
        "len-15": ([header(15, 3)], Refused("nlmsg_len 15 is shorter", 0)),
        "len-15-after-done": ([done() + header(15, 3)], Refused("nlmsg_len 15", 20)),
        "len-2**32-1": ([header(2**32 - 1, 20)],
                        Refused(r"truncated netlink message: 16 of 4294967296 bytes", 0)),
        "len-17-unpadded": ([header(17, 3) + b"\0"], Refused("truncated netlink message", 0)),
        "len-17-padded": ([header(17, 3) + b"\0" * 4], Read(0)),
        "done-without-errno": ([header(16, 3)], Read(0)),
        "header-cut": ([done() + line[:9]], Refused("truncated netlink header: 9 of 16", 20)),
        "line-cut": ([done(), line[:100]], Refused("truncated netlink message: 100 of", 20)),
        "no-done": ([line], Refused("stops before its NLMSG_DONE", len(line))),
        "nothing": ([], Refused("no NLMSG_DONE", 0)),
        "empty-buffers": ([b"", b""], Refused("no NLMSG_DONE", 0)),
        "event-only": ([sock(1, 5, 5, multi=False)], Refused("no NLMSG_DONE", len(line))),
        "two-dumps": ([line, done(), sock(2, 7, 7), done()], Read(107, 2)),
        # -- error codes --------------------------------------------------------------------
        "done-enobufs": ([errno_message(3, -105)], Refused("ended the dump with error 105", 0,
                                                          105)),
        "done-positive": ([errno_message(3, 5)], Read(0)),
        "done-int-min": ([errno_message(3, INT_MIN)],
                         Refused(r"NLMSG_DONE with error code -2147483648, which is not an errno",
                                 0)),
        "done-4096": ([errno_message(3, -4096)], Refused("which is not an errno", 0)),
        "error-eperm": ([errno_message(2, -1)], Refused("answered with error 1", 0, 1)),
        "error-positive": ([errno_message(2, 22)], Refused("answered with error 22", 0, 22)),
        "error-max-errno": ([errno_message(2, -4095)], Refused("error 4095", 0, 4095)),
        "error-int-min": ([done(), errno_message(2, INT_MIN)],
                          Refused("NLMSG_ERROR with error code -2147483648", 20)),
        "error-int-max": ([errno_message(2, 2**31 - 1)], Refused("which is not an errno", 0)),
        "error-ack": ([errno_message(2, 0), done()], Read(0)),
        "error-short": ([nlmsg(2, b"\0\0")], Refused("NLMSG_ERROR of 18 bytes", 0)),
        # -- message types and families -----------------------------------------------------
        "type-0": ([nlmsg(0, b"")], Refused("unexpected netlink message type 0", 0)),
        "type-5": ([done(), nlmsg(5, b"")], Refused("unexpected netlink message type 5", 20)),
        "type-65535": ([nlmsg(0xFFFF, b"")], Refused("message type 65535", 0)),
        "noop": ([nlmsg(1, b"\xff" * 40), done()], Read(0)),
        "overrun": ([nlmsg(4, b"")], Refused("NLMSG_OVERRUN", 0)),
        "short-diag": ([nlmsg(20, b"\0" * 71, flags=2), done()],
                       Refused("sock_diag message of 87 bytes is shorter", 0)),
        "family-0": ([sock(1, family=socket.AF_INET, state=1)[:16] + b"\0" + line[17:], done()],
                     Refused("address family 0", 0)),
        "family-255": ([line[:16] + b"\xff" + line[17:], done()],
                       Refused("address family 255", 0)),
        "listen-state": ([sock(1, 9, 9, state=10), done()], Read(0)),
        "not-a-listener": ([sock(1, 9, 9, sport=50000), done()], Read(0)),
        "not-a-listener-garbage-attrs": ([with_attrs(b"\x01\x00\x02\x00", sport=50000), done()],
                                         Read(0)),
        # -- attributes ---------------------------------------------------------------------
        "attr-len-0": ([with_attrs(b"\0\0\2\0"), done()],
                       Refused(r"attribute of 0 bytes does not fit", info_at)),
        "attr-len-3": ([with_attrs(b"\3\0\2\0"), done()], Refused("attribute of 3 bytes", info_at)),
        "attr-past-end": ([with_attrs(struct.pack("=HH", 9, 2) + b"\0" * 4), done()],
                          Refused("attribute of 9 bytes", info_at)),
        "attr-empty": ([with_attrs(struct.pack("=HH", 4, 8)), done()], Read(0)),
        "attr-trailing-3": ([with_attrs(attr(2, tcp_info(5, 5)) + b"\0\0\0"), done()],
                            Read(5, 1)),
        "attr-nested-flag": ([with_attrs(attr(0x8002, tcp_info(6, 6))), done()], Read(6, 1)),
        "attr-byteorder-flag": ([with_attrs(attr(0x4002, tcp_info(7, 7))), done()], Read(7, 1)),
        "attr-info-twice": ([with_attrs(attr(2, tcp_info(1, 1)) + attr(2, tcp_info(8, 8))),
                             done()], Read(8, 1)),
        "info-0": ([with_attrs(attr(2, b"")), done()], Refused("tcp_info of 0 bytes", info_at + 4)),
        "info-135": ([with_attrs(attr(2, tcp_info(1, 1, 135))), done()],
                     Refused("tcp_info of 135 bytes", info_at + 4)),
        "info-136": ([with_attrs(attr(2, tcp_info(9, 9, 136))), done()], Read(9, 1)),
        "info-4000": ([with_attrs(attr(2, tcp_info(3, 3, 4000))), done()], Read(3, 1)),
        # -- counters -----------------------------------------------------------------------
        "u64-max": ([sock(2**64 - 1, U64_MAX, U64_MAX), done()], Read(U64_MAX, 1)),
        "u64-sum-saturates": ([sock(1, U64_MAX), sock(2, U64_MAX), sock(3, 5, sport=ROUTE),
                               done()], Read(U64_MAX, 3)),
        "cookie-0": ([sock(0, 4, 4), done()], Read(4, 1)),
        "same-socket-twice": ([sock(1, 4, 4), sock(1, 9, 2), done()], Read(9, 1)),
    }
    return [pytest.param(buffers, expect, id=name) for name, (buffers, expect) in cases.items()]


CASES = cases()


@pytest.fixture(params=["core", "reference"])
def counter_type(request):
    return {"core": _core.WireCounter, "reference": _reference.WireCounter}[request.param]


@pytest.mark.parametrize("buffers, expect", CASES)
def test_hostile_stream(counter_type, buffers, expect):
    counter = counter_type(PORTS)
    if isinstance(expect, Refused):
        with pytest.raises(WireProtocolError) as err:
            counter.update(buffers)
        assert re.search(expect.message, str(err.value)), str(err.value)
        assert err.value.offset == expect.at, str(err.value)
        assert err.value.errno == expect.errno
        assert counter.families() == {}
        return
    counter.update(buffers)
    assert counter.families()[TOTAL_SENT] == [((), expect.sent)]
    assert counter.sockets == expect.sockets


@pytest.mark.parametrize("buffers, expect", CASES)
def test_core_and_reference_agree_byte_by_byte(buffers, expect):
    # The same stream cut into one-byte buffers, after a good poll: the same outcome, and a
    # refused poll keeps the families of the good one.
    stream = b"".join(buffers)
    core, reference = _core.WireCounter(PORTS), _reference.WireCounter(PORTS)
    for counter in (core, reference):
        counter.update([sock(9, 1, 1), done()])
    before = core.families()
    outcomes: list[object] = []
    for counter in (core, reference):
        try:
            counter.update([stream[k:k + 1] for k in range(len(stream))])
            outcomes.append(counter.families())
        except WireProtocolError as e:
            outcomes.append((str(e), e.offset, e.errno))
            assert counter.families() == before
    assert outcomes[0] == outcomes[1]


def test_saturated_counters_stay_saturated_as_sockets_come_and_go(counter_type):
    counter = counter_type(PORTS)
    counter.update([sock(1, U64_MAX), sock(2, 2**63), done()])
    counter.update([sock(2, 2**63), done()])             # 1 folded into the closed sum
    counter.update([sock(1, U64_MAX), sock(2, 2**63 + 1), done()])     # ... and back
    counter.update([done()])
    assert dict(counter.families()[SENT]) == {("client",): U64_MAX, ("cluster",): 0}
