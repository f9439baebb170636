"""Synthesized sock_diag replies (layouts from linux/netlink.h, inet_diag.h, tcp.h), for the wire
counter's tests and the fuzz corpus: the messages one by one, dumps of them, and ``World``, a seeded
stand-in for a kernel whose polls ``split_randomly`` and ``corrupt`` cut up and damage."""

from __future__ import annotations

import random
import socket
import struct

CLIENT, ROUTE, LEAF = 4222, 6222, 7422
TCP_INFO_SIZE = 232     # struct tcp_info in this machine's linux/tcp.h


def nlmsg(kind: int, payload: bytes, flags: int = 0, seq: int = 7) -> bytes:
    length = 16 + len(payload)
    return (struct.pack("=IHHII", length, kind, flags, seq, 4242) + payload
            + b"\0" * (-length % 4))


def attr(kind: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def tcp_info(sent: int, received: int, size: int = TCP_INFO_SIZE) -> bytes:
    info = bytearray(size)
    if size >= 136:
        struct.pack_into("=QQ", info, 120, sent, received)
    return bytes(info)


def sock(cookie: int, sent: int = 0, received: int = 0, *, sport: int = CLIENT,
         dport: int = 50000, family: int = socket.AF_INET6, state: int = 1,
         multi: bool = True, info: bytes | None = None, extra: bool = True,
         no_info: bool = False) -> bytes:
    """One inet_diag message: a dump line (``multi``) or a destroy event."""
    if family == socket.AF_INET:
        src = socket.inet_pton(socket.AF_INET, "127.0.0.1") + b"\0" * 12
        dst = socket.inet_pton(socket.AF_INET, "127.0.0.2") + b"\0" * 12
    else:
        src = socket.inet_pton(socket.AF_INET6, "::1")
        dst = socket.inet_pton(socket.AF_INET6, "fd00::2")
    diag = (struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport)
            + src + dst + struct.pack("=I", 0)
            + struct.pack("=II", cookie & 0xFFFFFFFF, cookie >> 32)
            + struct.pack("=5I", 0, 0, 0, 0, cookie & 0xFFFF))
    attrs = b""
    if extra:   # what the kernel puts around INET_DIAG_INFO: shutdown, mark, cgroup, sockopt
        attrs += attr(8, b"\0") + attr(15, b"\0" * 4) + attr(21, b"\1" * 8) + attr(22, b"\0\0")
    if not no_info:
        attrs += attr(2, tcp_info(sent, received) if info is None else info)
    return nlmsg(20, diag + attrs, flags=2 if multi else 0)


def done(err: int = 0) -> bytes:
    return nlmsg(3, struct.pack("=i", err), flags=2)


def error(err: int) -> bytes:
    return nlmsg(2, struct.pack("=i", -err) + struct.pack("=IHHII", 72, 20, 0x301, 7, 0))


def dump(*sockets: bytes, per_datagram: int = 3) -> list[bytes]:
    """An IPv4 dump and an IPv6 dump, datagrams of ``per_datagram`` messages, DONE appended."""
    v4 = [s for s in sockets if s[16] == socket.AF_INET]
    v6 = [s for s in sockets if s[16] == socket.AF_INET6]
    out = []
    for family in (v4, v6):
        lines = family + [done()]
        out += [b"".join(lines[i:i + per_datagram]) for i in range(0, len(lines), per_datagram)]
    return out


class World:
    """A seeded stand-in for a kernel: sockets open, move bytes, close; some dumps miss some."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_cookie = rng.randrange(1, 2**40)
        self.live: dict[int, list] = {}

    def poll(self, destroy_events: bool) -> list[bytes]:
        rng = self.rng
        for _ in range(rng.randint(0, 6)):
            self.next_cookie += rng.randint(1, 3)
            self.live[self.next_cookie] = [rng.choice([CLIENT, ROUTE, LEAF, 50000, 22]),
                                           rng.choice([socket.AF_INET, socket.AF_INET6]), 0, 0]
        events = []
        for cookie, s in list(self.live.items()):
            s[2] += rng.choice([0, 0, 1, 37, 4096, 2**20])
            s[3] += rng.choice([0, 1, 512, 65536])
            if rng.random() < 0.15:
                del self.live[cookie]
                if destroy_events and rng.random() < 0.8:
                    events.append(sock(cookie, s[2] + rng.randint(0, 9), s[3], sport=s[0],
                                       family=s[1], multi=False, state=7))
        lines = [sock(c, s[2], s[3], sport=s[0], family=s[1]) for c, s in self.live.items()
                 if rng.random() > 0.05]                 # a racing dump skips a socket
        lines += [sock(c, 1, 1, sport=50000, dport=CLIENT) for c in range(3)]   # client ends
        if rng.random() < 0.1 and lines:
            lines.append(rng.choice(lines))              # ... or shows one twice
        return dump(*lines, per_datagram=rng.randint(1, 6)) + events


def split_randomly(rng: random.Random, buffers: list[bytes]) -> list[bytes]:
    stream = b"".join(buffers)
    if not stream or rng.random() < 0.5:
        return buffers
    cuts = sorted(rng.sample(range(len(stream)), min(len(stream), rng.randint(1, 20))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]


def corrupt(rng: random.Random, buffers: list[bytes]) -> list[bytes]:
    stream = bytearray(b"".join(buffers))
    if rng.random() < 0.5:
        del stream[rng.randrange(len(stream)):]
    else:
        for _ in range(rng.randint(1, 4)):
            stream[rng.randrange(len(stream))] = rng.randrange(256)
    return [bytes(stream)]
