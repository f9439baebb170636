"""Cost of reading one /connz body of N connections, per contender.

    python bench/connz.py --connections 50000 --json
    python bench/connz.py --connections 50000 --from-recorded tests/data/connz_open.json --json
    python bench/connz.py --body recorded.json --json

prints one JSON object with the median seconds (and the peak RSS) of:

- ``core``: ``_core.ConnzAggregator.update``, the compiled scan and aggregate;
- ``reference``: ``_reference.ConnzAggregator.update``, orjson and the same aggregate in Python;
- ``msgspec``: a typed msgspec Struct decode and a Python group sum (no per-cid state, no
  durations, no top-K: less work than the other two, a floor for a Python aggregate);
- ``orjson``: ``orjson.loads`` and the same group sum over the dicts (the same floor, for the
  decoder the reference uses);
- ``scan``: ``body.count(b'"cid"')``, the cost of one pass over the bytes;

and the ratios ``reference / core`` and ``core / scan``. Each contender runs in fresh processes
on the same body, ``--processes`` of them (3 by default) taken in turns with the other
contenders, and reports the median of their medians: a slow moment of a shared machine then
skews one process of each, not one contender. The aggregators are fed the body once before
timing, so the figures are for a steady refresh (every cid already known), which is what a
running exporter sees.

Bodies come from tests.support.connzgen, seeded: a simulated server (the default), or the
connections of a recorded body cloned to N (``--from-recorded``), or a given body file
(``--body``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401
import harness
import msgspec
import orjson

from fastnats import _core, _reference
from tests.support import connzgen


class _Conn(msgspec.Struct):
    cid: int
    account: str = ""
    name: str = ""
    pending_bytes: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    subscriptions: int = 0


class _Connz(msgspec.Struct):
    total: int = 0
    connections: list[_Conn] | None = None


def _msgspec(body: bytes) -> Callable[[], object]:
    decode = msgspec.json.Decoder(_Connz).decode

    def run() -> dict:
        groups: dict[tuple[str, str], list[int]] = {}
        for c in decode(body).connections or ():
            g = groups.get((c.account, c.name))
            if g is None:
                g = groups[(c.account, c.name)] = [0] * 7
            g[0] += 1
            g[1] += c.subscriptions
            g[2] += c.pending_bytes
            g[3] += c.in_msgs
            g[4] += c.out_msgs
            g[5] += c.in_bytes
            g[6] += c.out_bytes
        return groups
    return run


def _orjson(body: bytes) -> Callable[[], object]:
    def run() -> dict:
        groups: dict[tuple[str, str], list[int]] = {}
        for c in orjson.loads(body)["connections"] or ():
            key = (c.get("account", ""), c.get("name", ""))
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0] * 7
            g[0] += 1
            g[1] += c["subscriptions"]
            g[2] += c["pending_bytes"]
            g[3] += c["in_msgs"]
            g[4] += c["out_msgs"]
            g[5] += c["in_bytes"]
            g[6] += c["out_bytes"]
        return groups
    return run


CONTENDERS: dict[str, harness.Contender] = {
    "core": harness.aggregator(_core.ConnzAggregator),
    "reference": harness.aggregator(_reference.ConnzAggregator),
    "msgspec": _msgspec,
    "orjson": _orjson,
    "scan": lambda body: lambda: body.count(b'"cid"'),
}


def make_body(connections: int, seed: int = 1, recorded: Path | None = None) -> bytes:
    if recorded is not None:
        return connzgen.scale_recorded(recorded.read_bytes(), connections, seed)
    return connzgen.synthetic_body(connections, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--from-recorded", type=Path, help="clone this body's connections")
    parser.add_argument("--body", type=Path, help="time this body file as it is")
    parser.add_argument("--repeat", type=int, default=0, help="timed runs (default: by size)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per contender")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        harness.worker(CONTENDERS[args.worker](args.body.read_bytes()), args.repeat)
        return 0

    if args.body:
        body = args.body.read_bytes()
    else:
        body = make_body(args.connections, args.seed, args.from_recorded)
    repeat = args.repeat or max(5, min(50, 2_000_000 // max(1, len(body) // 500)))
    runs_of = harness.run_body(__file__, body, args.contenders.split(","), args.processes, repeat)
    report = {
        "connections": body.count(b'"cid"'),
        "body_bytes": len(body),
        "seed": None if args.body else args.seed,
        "source": str(args.body or args.from_recorded or "connzgen.synthetic_body"),
        **harness.summary(runs_of, args.processes, CONTENDERS),
    }
    harness.print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
