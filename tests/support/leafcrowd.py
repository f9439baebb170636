"""Many fake leafnodes connected to a hub's leafnode port, held by helper processes.

A fake leafnode is a raw socket that speaks the accept side's half of the leafnode protocol: the
hub sends INFO, the leaf sends a leafnode CONNECT (no ``lang``: the hub takes a CONNECT with one
for a client on the wrong port) with the user of the account it binds to, and from then on it
answers PING with PONG and drops everything else (INFO, LS+, LS-, LMSG). The hub lists it in
/leafz under the ``name`` of its CONNECT. It sends no ``remote_account``, so leaves that share a
name and an account are not taken for a stale connection and evicted.

A leaf may also publish: ``LMSG <subject> <size>`` and the payload, as a hub reads it from a
leafnode, delivered in the leaf's account like a client's PUB.

Every process here may hold 20,000 open files, so ``LeafCrowd`` spreads its connections over
``python -m tests.support.leafcrowd`` helpers (see tests.support.crowd, which this reuses). A
helper says ``ready COUNT`` on stdout, then obeys one command per stdin line (``close N``,
``publish SUBJECT N``), answers each with one line, and exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import TextIO

from tests.support.crowd import PONG, ROOT, Crowd, HeldCrowd


def leaf_connect(name: str, user: str, password: str) -> bytes:
    """A leafnode CONNECT binding to ``user``'s account."""
    options = {"version": "2.11.0", "name": name, "user": user, "pass": password,
               "headers": True, "protocol": 1}
    return b"CONNECT " + json.dumps(options).encode() + b"\r\n"


def lmsg(subject: str, payload: bytes) -> bytes:
    """A message as a leafnode sends it to its hub."""
    return f"LMSG {subject} {len(payload)}\r\n".encode() + payload + b"\r\n"


class Leaves(Crowd):
    """Leafnode connections in one process: leaf ``j`` (counted from ``first``) is named
    ``name-{j % groups}`` and binds to ``accounts[j % len(accounts)]``."""

    def __init__(self, port: int, count: int, name: str, *,
                 accounts: Sequence[tuple[str, str, str]], groups: int = 1, first: int = 0,
                 timeout: float = 30.0) -> None:
        self.accounts = list(accounts)
        super().__init__(port, count, name, groups=groups, first=first, timeout=timeout)

    def _opening(self, j: int, groups: int, varied: bool) -> bytes:
        _, user, password = self.accounts[j % len(self.accounts)]
        return leaf_connect(f"{self.name}-{j % groups}", user, password)

    def publish(self, subject: str, count: int) -> None:
        """``count`` messages from the first leaf, processed by the hub when this returns."""
        sock = self.socks[0]
        sock.settimeout(self.timeout)
        try:
            self.round_trip({sock: b"".join(lmsg(subject, b"leaf-%d" % i)
                                            for i in range(count))})
        finally:
            sock.setblocking(False)

    def hold(self, stdin: TextIO) -> None:
        """Answer the hub's PINGs and obey stdin's commands until it closes."""
        with selectors.DefaultSelector() as selector:
            selector.register(stdin, selectors.EVENT_READ, None)
            for sock in self.socks:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, sock)
            while True:
                for key, _ in selector.select():
                    sock = key.data
                    if sock is None:
                        line = stdin.readline()
                        if not line:
                            return
                        print(self._obey(line.split(), selector), flush=True)
                        continue
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                    elif b"PING\r\n" in data:
                        sock.sendall(PONG)

    def _obey(self, command: list[str], selector: selectors.BaseSelector) -> str:
        match command:
            case ["close", count]:
                for sock in self.socks[:int(count)]:
                    if _registered(selector, sock):
                        selector.unregister(sock)
                self.close(int(count))
                return f"closed {count}"
            case ["publish", subject, count]:
                self.publish(subject, int(count))
                return f"published {count}"
        return f"unknown command {command}"


def _registered(selector: selectors.BaseSelector, sock: socket.socket) -> bool:
    try:
        selector.get_key(sock)
    except KeyError:
        return False
    return True


class LeafCrowd(HeldCrowd):
    """``count`` fake leafnodes on a hub's leafnode ``port``, in helpers of ``per_helper``.

    Leaf ``j`` binds to ``accounts[j % len(accounts)]`` ((account, user, password) triples) and
    is named ``f"{names}-{j % groups}"``. ``open`` is how many are still connected from here.
    """

    def __init__(self, port: int, count: int, *, accounts: Sequence[tuple[str, str, str]],
                 names: str = "leaf", groups: int = 1, per_helper: int = 250,
                 timeout: float = 60.0) -> None:
        if not accounts or groups < 1:
            raise ValueError("a LeafCrowd needs accounts and at least one group")
        self.port, self.count, self.accounts = port, count, list(accounts)
        self.names, self.groups, self.per_helper, self.timeout = names, groups, per_helper, timeout
        self.helpers: dict[subprocess.Popen[str], int] = {}

    @property
    def open(self) -> int:
        return sum(self.helpers.values())

    def start(self) -> LeafCrowd:
        """Connect every leaf; return once the hub has processed every CONNECT."""
        try:
            for first in range(0, self.count, self.per_helper):
                share = min(self.per_helper, self.count - first)
                args = ["--port", str(self.port), "--count", str(share), "--first", str(first),
                        "--name", self.names, "--groups", str(self.groups)]
                for account in self.accounts:
                    args += ["--account", ":".join(account)]
                helper = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.leafcrowd", *args], cwd=ROOT,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                self.helpers[helper] = share
            self._await_ready(self.timeout)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> LeafCrowd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ask(self, helper: subprocess.Popen[str], command: str) -> str:
        assert helper.stdin is not None and helper.stdout is not None
        helper.stdin.write(command + "\n")
        helper.stdin.flush()
        return helper.stdout.readline().strip()

    def close_some(self, n: int) -> None:
        """Close ``n`` leaves (the oldest of the first helpers) with a FIN, as a leaf that
        shuts down does; the hub drops them from /leafz soon after this returns."""
        if n > self.open:
            raise ValueError(f"only {self.open} leaves are open")
        for helper, held in self.helpers.items():
            take = min(n, held)
            if take:
                answer = self._ask(helper, f"close {take}")
                if answer != f"closed {take}":
                    raise RuntimeError(f"a leaf helper answered {answer!r} to close {take}")
                self.helpers[helper] = held - take
                n -= take

    def publish(self, subject: str, n: int) -> None:
        """``n`` messages on ``subject`` from one leaf, in that leaf's account; the hub has
        processed them when this returns."""
        helper = next((h for h, held in self.helpers.items() if held), None)
        if helper is None:
            raise RuntimeError("no leaf is open to publish from")
        answer = self._ask(helper, f"publish {subject} {n}")
        if answer != f"published {n}":
            raise RuntimeError(f"a leaf helper answered {answer!r} to publish")


def main(argv: list[str] | None = None) -> int:
    """A helper process of LeafCrowd: connect, say ``ready COUNT``, obey stdin until it closes."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--name", required=True)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--account", action="append", required=True,
                        help="ACCOUNT:USER:PASSWORD, cycled over the leaves")
    args = parser.parse_args(argv)
    accounts = [tuple(spec.split(":", 2)) for spec in args.account]
    leaves = Leaves(args.port, args.count, args.name, accounts=accounts,
                    groups=args.groups, first=args.first)
    print(f"ready {len(leaves.socks)}", flush=True)
    leaves.hold(sys.stdin)
    leaves.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
