"""Cost of one wire poll at N open connections, against a real nats-server on loopback.

    python bench/wire.py --sockets 10000 --json

prints one JSON object with the median seconds of:

- ``recv``: ``SockDiag.dump()`` alone, the kernel dump and its recv loop;
- ``core``: the dump plus ``_core.WireCounter.update``, what a poll costs;
- ``core_parse``: ``_core.WireCounter.update`` on captured dump buffers (parse + state);
- ``python_parse``: ``_reference.wire_parse`` on the same buffers (struct parse only);
- ``python_update``: ``_reference.WireCounter.update`` on them (parse + state, for scale);

and the ratios ``core / recv`` and ``python_parse / core_parse``. The client ends of the
connections live in helper processes of at most ``--per-helper`` sockets each, so neither this
process nor a helper comes near the 20,000 open-files cap; nats-server holds one fd per
connection, so ``--sockets`` must stay below that cap too.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastnats import _core, _reference  # noqa: E402

from fastnats.nats import launcher  # noqa: E402
from fastnats.sources.sockdiag import SockDiag  # noqa: E402

FILE_CAP = 20_000
HANDSHAKE = b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nPING\r\n'


def hold(port: int, count: int) -> None:
    """Helper process: open ``count`` NATS connections, say so, keep them until stdin closes."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(HANDSHAKE)
        socks.append(sock)
    # Every PONG back means the server has registered every connection before timing starts.
    await_pongs(socks)
    print("ready", flush=True)
    sys.stdin.read()


def await_pongs(socks: list[socket.socket]) -> None:
    """Read each socket until the PONG that answers its PING."""
    for sock in socks:
        data = b""
        while b"PONG\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("nats-server closed a benchmark connection")
            data += chunk


class Connections:
    """``n`` loopback connections to ``port``, their client ends spread over helper processes."""

    def __init__(self, port: int, n: int, per_helper: int = 8000) -> None:
        if n >= FILE_CAP - 100:
            raise ValueError(f"{n} sockets: nats-server needs one fd each, cap {FILE_CAP}")
        self.helpers: list[subprocess.Popen[str]] = []
        try:
            left = n
            while left > 0:
                count = min(per_helper, left)
                self.helpers.append(subprocess.Popen(
                    [sys.executable, __file__, "--hold", str(count), "--port", str(port)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
                left -= count
            for helper in self.helpers:
                assert helper.stdout is not None
                if helper.stdout.readline().strip() != "ready":
                    raise RuntimeError("a connection helper failed; see its stderr")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for helper in self.helpers:
            if helper.stdin:
                helper.stdin.close()
        for helper in self.helpers:
            helper.wait(60)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, repeats: int, per_helper: int) -> dict:
    server = launcher.start(["-p", "-1", "-m", "-1", "-a", "127.0.0.1"])
    try:
        ports = {server.client_port: "client"}
        conns = Connections(server.client_port, n, per_helper)
        try:
            diag = SockDiag(ports, destroy_events=False)
            counter = _core.WireCounter(ports)
            captured = diag.dump()
            counter.update(captured)
            seen = counter.sockets
            parse_counter = _core.WireCounter(ports)
            parse_counter.update(captured)
            reference = _reference.WireCounter(ports)
            reference.update(captured)

            def core() -> None:
                counter.update(diag.dump())

            # Alternate the two kernel-bound contenders, so drift hits both alike.
            recv_times, core_times = [], []
            for _ in range(repeats):
                recv_times.append(median_seconds(diag.dump, 1))
                core_times.append(median_seconds(core, 1))
            result = {
                "sockets": n,
                "sockets_seen": seen,
                "dump_bytes": sum(len(b) for b in captured),
                "datagrams": len(captured),
                "repeats": repeats,
                "recv": statistics.median(recv_times),
                "core": statistics.median(core_times),
                "core_parse": median_seconds(lambda: parse_counter.update(captured), repeats),
                "python_parse": median_seconds(
                    lambda: _reference.wire_parse(captured, ports), max(5, repeats // 4)),
                "python_update": median_seconds(
                    lambda: reference.update(captured), max(5, repeats // 4)),
            }
            diag.close()
        finally:
            conns.close()
    finally:
        server.stop()
    result["core_over_recv"] = result["core"] / result["recv"]
    result["python_parse_over_core_parse"] = result["python_parse"] / result["core_parse"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--per-helper", type=int, default=8000,
                        help="client sockets per helper process")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hold is not None:
        hold(args.port, args.hold)
        return 0
    if args.sockets < 1:
        parser.error("--sockets must be at least 1")
    result = measure(args.sockets, args.repeats, args.per_helper)
    if result["sockets_seen"] != args.sockets:
        print(f"warning: the dump saw {result['sockets_seen']} of {args.sockets} sockets",
              file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value:.6g}" if isinstance(value, float) else
                  f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    os.environ.pop("FASTNATS_NO_EXTENSIONS", None)
    sys.exit(main())
