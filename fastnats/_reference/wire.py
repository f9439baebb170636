"""The wire byte counter, with struct and dicts: the oracle of ``_core/sockdiag.pxi``."""

from __future__ import annotations

import os
import struct

from ..errors import WireProtocolError
from ..metrics import (
    NATS_SERVER_TOTAL_BYTES_RECEIVED,
    NATS_SERVER_TOTAL_BYTES_SENT,
    NATS_WIRE_CONNECTIONS,
    NATS_WIRE_MODE_INFO,
    NATS_WIRE_RECEIVED_BYTES_TOTAL,
    NATS_WIRE_SENT_BYTES_TOTAL,
)

_NL_HEADER = struct.Struct("=IHHII")
_I32 = struct.Struct("=i")
_ATTR = struct.Struct("=HH")
_TCPI_COUNTS = struct.Struct("=QQ")    # tcp_info bytes_acked, bytes_received at byte 120
_COOKIE = struct.Struct("=II")         # inet_diag_sockid.idiag_cookie, at byte 60 of the message
_SPORT = struct.Struct(">H")           # inet_diag_sockid.idiag_sport, network order, byte 20
_GRACE_UPDATES = 3
_U64_MAX = 2**64 - 1
_MAX_ERRNO = 4095                      # MAX_ERRNO in linux/err.h
_LIVE, _GRAVE, _DESTROYED = "live", "grave", "destroyed"


def _wire_ports(ports) -> dict[int, str]:
    try:
        ports = dict(ports)
    except (TypeError, ValueError):
        raise TypeError(f"ports must map port numbers to listener names, "
                        f"not {type(ports).__name__}") from None
    if not ports:
        raise ValueError("ports is empty: a wire counter needs at least one listening port")
    for port, name in ports.items():
        if type(port) is bool or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"listening port {port!r} is not in 1..65535")
        if not isinstance(name, str) or not name:
            raise ValueError(f"port {port}: listener name {name!r} is not a non-empty string")
    return ports


def wire_parse(buffers, ports) -> list[tuple[int, str, int, int, bool]]:
    """Decode sock_diag datagrams into ``(cookie, listener, sent, received, destroyed)``.

    Only the server's side of connections on ``ports`` is kept. Raises WireProtocolError as
    ``_core.WireCounter.update`` does, with the same message and byte offset.
    """
    ports = _wire_ports(ports)
    if not isinstance(buffers, (list, tuple)):
        raise TypeError(f"buffers must be a list of bytes, not {type(buffers).__name__}")
    stream = b"".join(bytes(memoryview(b)) for b in buffers)
    records = []
    in_multi = False
    dones = 0
    pos = 0
    while pos < len(stream):
        left = len(stream) - pos
        if left < 16:
            raise WireProtocolError(f"truncated netlink header: {left} of 16 bytes", pos)
        length, kind, flags, _seq, _port = _NL_HEADER.unpack_from(stream, pos)
        if length < 16:
            raise WireProtocolError(
                f"nlmsg_len {length} is shorter than the netlink header", pos)
        span = (length + 3) & ~3
        if span > left:
            raise WireProtocolError(f"truncated netlink message: {left} of {span} bytes", pos)
        message = stream[pos:pos + length]
        if kind == 20:
            destroyed = not flags & 2
            in_multi = in_multi or not destroyed
            record = _wire_socket(message, pos, ports, destroyed)
            if record is not None:
                records.append(record)
        elif kind == 3:
            in_multi = False
            dones += 1
            if length >= 20:
                (err,) = _I32.unpack_from(message, 16)
                if err < 0:
                    _check_errno(-err, err, "NLMSG_DONE", pos)
                    raise WireProtocolError(f"the kernel ended the dump with error {-err} "
                                            f"({os.strerror(-err)})", pos, -err)
        elif kind == 2:
            if length < 20:
                raise WireProtocolError(f"NLMSG_ERROR of {length} bytes has no error code", pos)
            (err,) = _I32.unpack_from(message, 16)
            if err:
                _check_errno(abs(err), err, "NLMSG_ERROR", pos)
                raise WireProtocolError(
                    f"the kernel answered with error {abs(err)} ({os.strerror(abs(err))})", pos,
                    abs(err))
        elif kind == 4:
            raise WireProtocolError("netlink reports lost data (NLMSG_OVERRUN)", pos)
        elif kind != 1:
            raise WireProtocolError(f"unexpected netlink message type {kind}", pos)
        pos += span
    if in_multi:
        raise WireProtocolError("the dump stops before its NLMSG_DONE", len(stream))
    if dones == 0:
        raise WireProtocolError("no complete dump: the buffers hold no NLMSG_DONE", len(stream))
    return records


def _check_errno(code: int, raw: int, kind: str, at: int) -> None:
    if not 0 < code <= _MAX_ERRNO:
        raise WireProtocolError(f"{kind} with error code {raw}, which is not an errno", at)


def _sat(a: int, b: int) -> int:
    return min(a + b, _U64_MAX)


def _unsat(total: int, part: int) -> int:
    """Take back a part added with _sat; a saturated sum stays saturated."""
    return total if total == _U64_MAX else total - part


def _wire_socket(message: bytes, at: int, ports: dict[int, str], destroyed: bool):
    if len(message) < 88:
        raise WireProtocolError(
            f"sock_diag message of {len(message)} bytes is shorter than inet_diag_msg", at)
    family, state = message[16], message[17]
    if family not in (2, 10):
        raise WireProtocolError(f"inet_diag message of address family {family}", at)
    listener = ports.get(_SPORT.unpack_from(message, 20)[0])
    if listener is None or state == 10:   # not a listener port, or the listening socket itself
        return None
    info = None
    a = 88
    while len(message) - a >= 4:
        length, kind = _ATTR.unpack_from(message, a)
        if length < 4 or length > len(message) - a:
            raise WireProtocolError(f"attribute of {length} bytes does not fit its message",
                                    at + a)
        if kind & 0x3FFF == 2:
            info = (a + 4, length - 4)
        a += (length + 3) & ~3
    if info is None:
        return None
    start, size = info
    if size < 136:
        raise WireProtocolError(f"tcp_info of {size} bytes lacks bytes_acked/bytes_received "
                                f"(needs 136, Linux 4.1 or later)", at + start)
    sent, received = _TCPI_COUNTS.unpack_from(message, start + 120)
    low, high = _COOKIE.unpack_from(message, 60)
    return (high << 32 | low, listener, sent, received, destroyed)


class WireCounter:
    """Same contract as ``_core.WireCounter``, written for clarity: dicts and tuples."""

    def __init__(self, ports, mode: str = "poll") -> None:
        if mode not in ("poll", "destroy_events"):
            raise ValueError(f"mode must be 'poll' or 'destroy_events', not {mode!r}")
        self._ports = _wire_ports(ports)
        self._listeners = tuple(sorted(set(self._ports.values())))
        self.mode = mode
        self._closed = {name: [0, 0] for name in self._listeners}
        # cookie -> [state, listener, sent, received, age]
        self._known: dict[int, list] = {}
        self._ready = False

    @property
    def ports(self) -> dict[int, str]:
        return dict(self._ports)

    @property
    def sockets(self) -> int:
        return sum(1 for s in self._known.values() if s[0] == _LIVE)

    def update(self, buffers) -> None:
        seen: dict[int, list] = {}
        for cookie, listener, sent, received, destroyed in wire_parse(buffers, self._ports):
            if cookie in seen:
                entry = seen[cookie]
                entry[2] = max(entry[2], sent)
                entry[3] = max(entry[3], received)
                if destroyed:
                    entry[0] = _DESTROYED
            else:
                seen[cookie] = [_DESTROYED if destroyed else _LIVE, listener, sent, received, 0]
        # Sums saturate at 2**64-1; what a socket seen again had folded is taken back before
        # anything is added, so a saturated sum does not depend on the order of the sockets.
        closed = self._closed
        for cookie, entry in seen.items():
            before = self._known.get(cookie)
            if before is not None:
                entry[1] = before[1]
                entry[2] = max(entry[2], before[2])
                entry[3] = max(entry[3], before[3])
                if before[0] != _LIVE:
                    sent, received = closed[before[1]]
                    closed[before[1]] = [_unsat(sent, before[2]), _unsat(received, before[3])]
        for entry in seen.values():
            if entry[0] == _DESTROYED:
                sent, received = closed[entry[1]]
                closed[entry[1]] = [_sat(sent, entry[2]), _sat(received, entry[3])]
        for cookie, before in self._known.items():
            if cookie in seen:
                continue
            if before[0] == _LIVE:
                sent, received = closed[before[1]]
                closed[before[1]] = [_sat(sent, before[2]), _sat(received, before[3])]
                seen[cookie] = [_GRAVE, before[1], before[2], before[3], 1]
            elif before[0] == _GRAVE and before[4] < _GRACE_UPDATES:
                seen[cookie] = [_GRAVE, before[1], before[2], before[3], before[4] + 1]
        self._known = seen
        self._ready = True

    def families(self) -> dict[str, list]:
        if not self._ready:
            return {}
        live = {name: [0, 0, 0] for name in self._listeners}
        for state, listener, sent, received, _age in self._known.values():
            if state == _LIVE:
                live_sent, live_received, count = live[listener]
                live[listener] = [_sat(live_sent, sent), _sat(live_received, received), count + 1]
        sent = [((n,), _sat(self._closed[n][0], live[n][0])) for n in self._listeners]
        received = [((n,), _sat(self._closed[n][1], live[n][1])) for n in self._listeners]
        return {
            NATS_WIRE_SENT_BYTES_TOTAL.name: sent,
            NATS_WIRE_RECEIVED_BYTES_TOTAL.name: received,
            NATS_WIRE_CONNECTIONS.name: [((n,), live[n][2]) for n in self._listeners],
            NATS_WIRE_MODE_INFO.name: [((self.mode,), 1)],
            NATS_SERVER_TOTAL_BYTES_SENT.name: [((), min(sum(v for _, v in sent), _U64_MAX))],
            NATS_SERVER_TOTAL_BYTES_RECEIVED.name: [
                ((), min(sum(v for _, v in received), _U64_MAX))],
        }


