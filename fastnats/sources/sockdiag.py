"""Kernel socket counters of a local nats-server's listeners, read over NETLINK_SOCK_DIAG.

This module only moves bytes: it asks the kernel for inet_diag dumps of the TCP sockets whose
*local* port is one of the server's listening ports, and hands the raw reply datagrams to
``fastnats._core.WireCounter``, which parses them. Counting by local port selects exactly the
server's accepted connections: the client side of a loopback connection to the same server has
the listener as its *remote* port and is never asked for, so no byte is counted twice.

Not counted: route, gateway and leafnode connections that this server *solicits* (dials out).
Their local port is ephemeral and their remote port is the peer's listener, which cannot be told
apart from any other local process dialling that peer; their bytes are counted once, by the
exporter of the peer that accepted them.

A second socket subscribes to the sock_diag destroy multicast groups, so a socket that closes
reports its final counters instead of the ones seen at the last poll. Linux lets any process of
the network namespace subscribe (NETLINK_SOCK_DIAG allows non-root receivers; checked unprivileged
on 6.18), but a kernel or security policy may refuse, with EPERM when it wants CAP_NET_ADMIN.
A classic BPF filter on that socket drops the events of other ports in the kernel.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import socket
import struct
import sys
from collections.abc import Mapping
from typing import Literal

from ..errors import WireProtocolError

__all__ = ["SockDiag", "is_local_host"]

# Netlink and inet_diag constants (linux/netlink.h, sock_diag.h, inet_diag.h, tcp_states.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x01
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_INET_DIAG_REQ_BYTECODE = 1
_INET_DIAG_INFO = 2
_INET_DIAG_BC_JMP = 1
_INET_DIAG_BC_S_EQ = 11
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_SKNLGRP_INET_TCP_DESTROY = 1
_SKNLGRP_INET6_TCP_DESTROY = 3
_SO_RCVBUFFORCE = 33
_SO_ATTACH_FILTER = 26

_TCP_ESTABLISHED = 1
_TCP_FIN_WAIT1 = 4
_TCP_FIN_WAIT2 = 5
_TCP_CLOSE_WAIT = 8
_TCP_LAST_ACK = 9
_TCP_LISTEN = 10
_TCP_CLOSING = 11

# The states of a connection that still holds counters. TIME_WAIT and SYN_RECV entries carry no
# tcp_info, and asking for them makes the kernel emit one message per entry: on a server with
# heavy churn that multiplies the dump's cost. LISTEN is left out so the listening hash is not
# walked at all.
CONNECTED_STATES = sum(1 << s for s in (
    _TCP_ESTABLISHED, _TCP_FIN_WAIT1, _TCP_FIN_WAIT2, _TCP_CLOSE_WAIT, _TCP_LAST_ACK,
    _TCP_CLOSING))

_NLMSGHDR = struct.Struct("=IHHII")
_DONE = struct.Struct("=IHHIIi")
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (ports, addresses,
# interface) with the cookie left as "any".
_REQ_V2 = struct.Struct("=BBBxI4x32xIII")
_RTATTR = struct.Struct("=HH")
_BC_OP = struct.Struct("=BBH")

# Dump datagrams are capped by the kernel at 32 KiB; a bigger buffer means a full one can only
# be a truncated one.
_RECV_SIZE = 65536
_DUMP_TIMEOUT = 10.0


def _port_bytecode(ports: list[int]) -> bytes:
    """INET_DIAG_REQ_BYTECODE accepting a socket whose local port is any of ``ports``.

    Each port is a S_EQ test (4 bytes, plus 4 holding the port): on a match it falls through to
    an unconditional jump past the end, which accepts; on a miss it skips that jump to the next
    test. The last test's miss jumps 4 bytes past the end, which rejects. The kernel audits that
    every jump lands on an instruction reachable through the fall-through chain, which this
    layout satisfies.
    """
    code = bytearray()
    last = len(ports) - 1
    for i, port in enumerate(ports):
        code += _BC_OP.pack(_INET_DIAG_BC_S_EQ, 8, 12)
        code += _BC_OP.pack(0, 0, port)
        if i != last:
            # From this jump to the end: itself, then 12 bytes per further test but the last,
            # which has no jump after it.
            code += _BC_OP.pack(_INET_DIAG_BC_JMP, 4, 12 * (last - i))
    return bytes(code)


def _destroy_filter(ports: list[int]) -> bytes:
    """Classic BPF program passing destroy events whose local port is one of ``ports``.

    A destroy event is one netlink message per datagram; inet_diag_msg.idiag_sport sits at
    byte 20 (nlmsghdr 16 + family, state, timer, retrans), in network order, which is the order
    BPF_H loads.
    """
    ld_h_abs, jeq_k, ret_k = 0x28, 0x15, 0x06
    insns = [(ld_h_abs, 0, 0, 20)]
    for i, port in enumerate(ports):
        to_accept = len(ports) - i
        insns.append((jeq_k, to_accept, 0, port))
    insns.append((ret_k, 0, 0, 0))
    insns.append((ret_k, 0, 0, 0xFFFFFFFF))
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    # struct sock_fprog holds a pointer, so the program must live at a stable address while
    # the kernel copies it during setsockopt.
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", len(program) // 8, ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class SockDiag:
    """NETLINK_SOCK_DIAG reader of the TCP sockets accepted on ``ports``.

    ``dump()`` returns the raw reply datagrams of one IPv4 and one IPv6 dump, followed by the
    destroy events received since the previous call; ``fastnats._core.WireCounter`` parses them.
    Calls block and are meant to run in a worker thread; one instance must not be used from two
    threads at once.

    ``destroy_events``: None subscribes to the destroy multicast groups when the kernel allows
    it and polls otherwise; True requires it; False never subscribes. ``mode``
    says which one is in effect: ``"destroy_events"`` or ``"poll"``.
    """

    def __init__(self, ports: Mapping[int, str], *, destroy_events: bool | None = None) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError(errno_codes.ENOSYS, "NETLINK_SOCK_DIAG needs Linux")
        if not ports:
            raise ValueError("SockDiag needs at least one listening port")
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"listening port {port!r} is not in 1..65535")
        self.ports = sorted(ports)
        #: False once the kernel refused the port filter; the parser filters on its own then.
        self.kernel_filter = True
        #: Destroy events the kernel dropped because the socket's buffer was full.
        self.events_lost = 0
        self._seq = 0
        self._dump_sock: socket.socket | None = None
        self._events: socket.socket | None = None
        #: Why destroy events are off, for the one log line that says which mode runs.
        self.destroy_events_error: str | None = "not asked for"
        self._open_dump_socket()
        # Subscribe before the first dump, so no close falls between the two.
        if destroy_events is not False:
            try:
                self._events = self._open_events_socket()
                self.destroy_events_error = None
            except OSError as exc:
                hint = " (try CAP_NET_ADMIN)" if isinstance(exc, PermissionError) else ""
                self.destroy_events_error = f"sock_diag destroy events unavailable{hint}: {exc}"
                if destroy_events:
                    self.close()
                    raise type(exc)(exc.errno, self.destroy_events_error) from None
        self.mode: Literal["poll", "destroy_events"] = (
            "poll" if self._events is None else "destroy_events")

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether inet_diag dumps work here; the string says why not, or what was checked."""
        if not sys.platform.startswith("linux"):
            return False, f"NETLINK_SOCK_DIAG needs Linux, this is {sys.platform}"
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                               _NETLINK_SOCK_DIAG) as sock:
                sock.bind((0, 0))
                sock.send(_request(socket.AF_INET, 1 << _TCP_LISTEN, b"", 1))
                reply = sock.recv(_RECV_SIZE)
        except OSError as exc:
            return False, f"NETLINK_SOCK_DIAG socket failed: {exc}"
        if len(reply) >= 20:
            length, kind = struct.unpack_from("=IH", reply)
            if kind == _NLMSG_ERROR and length >= 20:
                (err,) = struct.unpack_from("=i", reply, 16)
                if err < 0:
                    return False, f"inet_diag dump refused: {errno_codes.errorcode.get(-err, -err)}"
        return True, "inet_diag TCP dumps work"

    def dump(self) -> list[bytes]:
        """One full IPv4 and IPv6 dump, then any pending destroy events, as raw datagrams."""
        if self._dump_sock is None:
            raise ValueError("SockDiag is closed")
        out: list[bytes] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            self._dump_family(family, CONNECTED_STATES, out)
        if self._events is not None:
            self._drain_events(out)
        return out

    def listening_ports(self) -> set[int]:
        """The ports of ``ports`` with a listening socket visible in this network namespace.

        A one-off probe for whether the monitored server runs here; it reads two header fields
        of each reply, which is why this parse lives on the I/O side.
        """
        out: list[bytes] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            self._dump_family(family, 1 << _TCP_LISTEN, out)
        found = set()
        for datagram in out:
            at = 0
            while at + 24 <= len(datagram):
                length, kind = struct.unpack_from("=IH", datagram, at)
                if length < 16:
                    break
                if kind == _SOCK_DIAG_BY_FAMILY:
                    found.add(struct.unpack_from(">H", datagram, at + 20)[0])
                elif kind == _NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", datagram, at + 16)
                    raise WireProtocolError("listening socket dump failed", errno=-err)
                at += (length + 3) & ~3
        return found & set(self.ports)

    def close(self) -> None:
        for sock in (self._dump_sock, self._events):
            if sock is not None:
                sock.close()
        self._dump_sock = self._events = None

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open_dump_socket(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             _NETLINK_SOCK_DIAG)
        try:
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        # The kernel answers a dump at once; a reply that never comes is an error, not a hang.
        sock.settimeout(_DUMP_TIMEOUT)
        self._dump_sock = sock
        self._portid = sock.getsockname()[0]

    def _open_events_socket(self) -> socket.socket:
        groups = (1 << (_SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (_SKNLGRP_INET6_TCP_DESTROY - 1))
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
            _NETLINK_SOCK_DIAG)
        try:
            # Filter first: events of other ports would otherwise queue up in between.
            _attach_filter(sock, _destroy_filter(self.ports))
            # Events queue between polls; a burst of closes must fit, or they are dropped and
            # those sockets fall back to their last polled counts.
            for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, 8 << 20)
                    break
                except PermissionError:
                    continue
            sock.bind((0, groups))
        except OSError:
            sock.close()
            raise
        return sock

    def _dump_family(self, family: int, states: int, out: list[bytes]) -> None:
        sock = self._dump_sock
        if sock is None:
            raise ValueError("SockDiag is closed")
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        code = _port_bytecode(self.ports) if self.kernel_filter else b""
        start = len(out)
        try:
            sock.send(_request(family, states, code, seq))
            while True:
                datagram = sock.recv(_RECV_SIZE)
                if len(datagram) >= _RECV_SIZE:
                    raise WireProtocolError(
                        f"netlink datagram of {len(datagram)} bytes filled the receive buffer")
                out.append(datagram)
                end = _end_of_dump(datagram, seq, self._portid)
                if end is None:
                    continue
                if end == -errno_codes.EINVAL and code:
                    # A kernel without INET_DIAG_BC_S_EQ (before 4.16) refuses the filter; the
                    # parser filters by port anyway, so dump everything instead.
                    del out[start:]
                    self.kernel_filter = False
                    self._dump_family(family, states, out)
                return
        except BaseException:
            # Whatever the kernel still holds of this dump would be read as the next one's
            # reply: start over on a fresh socket.
            sock.close()
            self._dump_sock = None
            self._open_dump_socket()
            raise

    def _drain_events(self, out: list[bytes]) -> None:
        sock = self._events
        assert sock is not None
        while True:
            try:
                out.append(sock.recv(_RECV_SIZE))
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno_codes.ENOBUFS:
                    raise
                # The kernel dropped events; those sockets keep their last polled counts.
                self.events_lost += 1


def _request(family: int, states: int, bytecode: bytes, seq: int) -> bytes:
    body = _REQ_V2.pack(family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), states,
                        0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE)
    if bytecode:
        body += _RTATTR.pack(4 + len(bytecode), _INET_DIAG_REQ_BYTECODE) + bytecode
    return _NLMSGHDR.pack(16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP,
                          seq, 0) + body


def _end_of_dump(datagram: bytes, seq: int, portid: int) -> int | None:
    """None while the dump goes on; at its end, 0 or the negative errno the kernel reported.

    The kernel appends NLMSG_DONE (20 bytes, this request's seq and port id) to the last
    datagram of a dump, and answers a refused request with a lone NLMSG_ERROR. Looking at just
    those two places keeps this loop from walking every message in Python; the full walk, which
    rejects a stream that stopped early, happens in the parser.
    """
    if len(datagram) >= 20:
        length, kind, _flags, msg_seq, msg_port, err = _DONE.unpack_from(datagram)
        if kind == _NLMSG_ERROR and msg_seq == seq and length >= 20:
            return err
        length, kind, _flags, msg_seq, msg_port, err = _DONE.unpack_from(
            datagram, len(datagram) - 20)
        if kind == _NLMSG_DONE and length == 20 and msg_seq == seq and msg_port == portid:
            return err
    return None


def is_local_host(host: str) -> bool:
    """True when ``host`` resolves to an address of this machine (so its sockets are visible)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((addr[0], 0))  # only an address of a local interface binds
            return True
        except OSError:
            continue
    return False
