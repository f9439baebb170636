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
import statistics
import sys

import checkout  # noqa: F401
from harness import median_seconds

from fastnats import _core, _reference
from fastnats.sources.sockdiag import SockDiag
from tests.support.crowd import HeldCrowd
from tests.support.process import start_nats

FILE_CAP = 20_000


def hold_connections(port: int, n: int, per_helper: int = 8000) -> HeldCrowd:
    """``n`` loopback connections to ``port``, their client ends spread over helper processes."""
    if n >= FILE_CAP - 100:
        raise ValueError(f"{n} sockets: nats-server needs one fd each, cap {FILE_CAP}")
    return HeldCrowd(port, n, per_helper=per_helper)


def measure(n: int, repeats: int, per_helper: int) -> dict:
    server = start_nats()
    try:
        ports = {server.client_port: "client"}
        conns = hold_connections(server.client_port, n, per_helper)
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
    args = parser.parse_args(argv)
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
