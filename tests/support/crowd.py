"""Many NATS client connections on raw sockets, held in this process or by helper processes.

``Crowd`` connects in windows: each socket sends CONNECT (and any commands) as soon as it connects,
then a PING, and every PONG of a window arrives before the next window connects, so the server's
accept backlog never overflows and every command has been processed when a call returns.

``HeldCrowd`` spreads connections over helper processes, each a ``Crowd`` of at most
``per_helper`` connections that answers the server's PINGs until its stdin closes: every process
here may hold 20,000 open files, nats-server included, which holds one per connection. A helper
is ``python -m tests.support.crowd`` run in the checkout, and imports only the standard library
and tests.support.natsclient, so it never loads a fastnats of its own.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from tests.support.natsclient import connect_line, pub

ROOT = Path(__file__).resolve().parents[2]
PONG = b"PONG\r\n"
WINDOW = 500
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; lets connect() pick the port per 4-tuple
LANGS = ("go", "python3", "rust", "nats.js", "java")


class Crowd:
    """Connections named ``name``, or with ``groups``, ``name-0`` to ``name-{groups - 1}`` in
    turn; ``socks`` keeps them in the order they opened, and connection ``j`` (counted from
    ``first``) takes name ``j % groups``.

    ``varied`` makes them look like a fleet: their languages vary, a quarter of them subscribe and
    a fifth publish once. ``connect=False`` sends nothing: the server lists such connections
    without a name until a ``round_trip`` sends their CONNECT. ``source`` binds the client ends
    to that local address.

    Messages delivered to them are read and dropped by ``round_trip``; the payloads the tests
    send never contain ``PONG``, so the first ``PONG`` line a socket shows answers its PING.
    """

    def __init__(self, port: int, count: int, name: str | None = None, *,
                 commands: bytes = b"", groups: int = 0, first: int = 0, varied: bool = False,
                 connect: bool = True, source: str | None = None,
                 timeout: float = 20.0) -> None:
        self.port = port
        self.name = name
        self.timeout = timeout
        self.socks: list[socket.socket] = []
        try:
            for start in range(first, first + count, WINDOW):
                window = []
                for j in range(start, min(start + WINDOW, first + count)):
                    sock = self._connect(source)
                    self.socks.append(sock)
                    window.append(sock)
                    if connect:
                        # CONNECT at once: until the server reads it, /connz lists the
                        # connection without a name.
                        sock.sendall(self._opening(j, groups, varied) + commands)
                if connect:
                    self.round_trip(dict.fromkeys(window, b""))
        except BaseException:
            self.close()
            raise

    def _connect(self, source: str | None) -> socket.socket:
        sock = socket.socket()
        try:
            if source is not None:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            sock.settimeout(self.timeout)
            sock.connect(("127.0.0.1", self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _opening(self, j: int, groups: int, varied: bool) -> bytes:
        name = f"{self.name}-{j % groups}" if groups and self.name is not None else self.name
        if not varied:
            return connect_line(name)
        out = [connect_line(name, lang=LANGS[j % len(LANGS)])]
        if j % 4 == 0:
            out += [f"SUB crowd.{j}.{k} {k}\r\n".encode() for k in range(1 + j % 3)]
        if j % 5 == 0:
            out.append(pub("crowd.sink", b"0123456789abcdef"))
        return b"".join(out)

    def round_trip(self, commands: dict[socket.socket, bytes]) -> None:
        """Send each socket its commands and a PING; return once each has read its PONG."""
        with selectors.DefaultSelector() as selector:
            tails = {}
            for sock, data in commands.items():
                sock.sendall(data + b"PING\r\n")
                selector.register(sock, selectors.EVENT_READ)
                tails[sock] = b""
            while tails:
                ready = selector.select(self.timeout)
                if not ready:
                    raise TimeoutError(f"{len(tails)} connections of {self.name} got no PONG")
                for key, _ in ready:
                    sock = key.fileobj
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError(f"the server closed a connection of {self.name}")
                    # Keep the end of what was read, so a PONG split across reads is found.
                    seen = tails[sock] + chunk
                    if PONG in seen:
                        selector.unregister(sock)
                        del tails[sock]
                    else:
                        tails[sock] = seen[-len(PONG):]

    def hold(self, stdin: TextIO) -> None:
        """Answer the server's PINGs until ``stdin`` closes: nats-server drops a client that
        leaves two PINGs unanswered."""
        with selectors.DefaultSelector() as selector:
            selector.register(stdin, selectors.EVENT_READ, None)
            for sock in self.socks:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, sock)
            while True:
                for key, _ in selector.select():
                    sock = key.data
                    if sock is None:
                        if not stdin.readline():
                            return
                        continue
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        selector.unregister(sock)
                    elif b"PING\r\n" in data:
                        sock.sendall(PONG)

    def ports(self) -> list[int]:
        """The local port of each connection: /connz reports it as ``port``."""
        return [sock.getsockname()[1] for sock in self.socks]

    def close(self, count: int | None = None) -> None:
        """Close the ``count`` oldest connections (all by default)."""
        count = len(self.socks) if count is None else count
        for sock in self.socks[:count]:
            sock.close()
        del self.socks[:count]


class HeldCrowd:
    """``count`` connections to ``port`` held by helper processes of ``per_helper`` at most.

    ``name``, ``groups`` and ``varied`` are Crowd's, applied as if one Crowd held them all. With
    ``own_sources``, helper ``i`` binds its connections to 127.0.0.{2 + i}, so that no source
    address runs out of ephemeral ports.
    """

    def __init__(self, port: int, count: int, name: str | None = None, *, groups: int = 0,
                 varied: bool = False, per_helper: int = 5000, own_sources: bool = False,
                 timeout: float = 120.0) -> None:
        #: Each helper and how many connections it holds.
        self.helpers: dict[subprocess.Popen[str], int] = {}
        try:
            for index, first in enumerate(range(0, count, per_helper)):
                share = min(per_helper, count - first)
                args = ["--port", str(port), "--count", str(share), "--first", str(first),
                        "--groups", str(groups)]
                if name is not None:
                    args += ["--name", name]
                if varied:
                    args.append("--varied")
                if own_sources:
                    args += ["--source", f"127.0.0.{2 + index}"]
                helper = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.crowd", *args], cwd=ROOT,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                self.helpers[helper] = share
            self._await_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for helper in self.helpers:
                assert helper.stdout is not None
                selector.register(helper.stdout, selectors.EVENT_READ, helper)
            waiting = len(self.helpers)
            while waiting:
                events = selector.select(max(0.0, deadline - time.monotonic()))
                if not events:
                    raise TimeoutError(f"connection helpers not ready within {timeout:g}s")
                for key, _ in events:
                    if key.fileobj.readline() != f"ready {self.helpers[key.data]}\n":
                        raise RuntimeError("a connection helper failed; see its stderr")
                    selector.unregister(key.fileobj)
                    waiting -= 1

    def close(self) -> None:
        for helper in self.helpers:
            if helper.stdin and not helper.stdin.closed:
                helper.stdin.close()
        for helper in self.helpers:
            try:
                helper.wait(15)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()


def main(argv: list[str] | None = None) -> int:
    """A helper process of HeldCrowd: connect, say ``ready COUNT``, hold until stdin closes."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--name")
    parser.add_argument("--groups", type=int, default=0)
    parser.add_argument("--varied", action="store_true")
    parser.add_argument("--source")
    args = parser.parse_args(argv)
    crowd = Crowd(args.port, args.count, args.name, groups=args.groups, first=args.first,
                  varied=args.varied, source=args.source, timeout=30.0)
    print(f"ready {len(crowd.socks)}", flush=True)
    crowd.hold(sys.stdin)
    crowd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
