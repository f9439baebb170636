"""Cost of reading one /leafz body of N leafnodes, per contender.

    python bench/leafz.py --leafnodes 10000 --json
    python bench/leafz.py --body recorded-leafz.json --json

prints one JSON object with the median seconds (and the peak RSS) of:

- ``core``: ``_core.LeafzAggregator.update``, the compiled scan and aggregate;
- ``reference``: ``_reference.LeafzAggregator.update``, orjson and the same aggregate in Python;
- ``orjson``: ``orjson.loads`` and a Python group sum over the dicts (no per-id state, no
  durations, no top-K: less work than the other two, a floor for a Python aggregate);
- ``scan``: ``body.count(b'"id"')``, the cost of one pass over the bytes;

and the ratios ``reference / core``, ``orjson / core`` and ``core / scan``. Each contender runs in
fresh processes on the same body, ``--processes`` of them (3 by default) taken in turns with the
others, and reports the median of their medians (bench/harness.py, as bench/connz.py). The
aggregators are fed the body once before timing, so the figures are for a steady refresh (every
id already known), which is what a running exporter sees of a hub.

Bodies come from tests.support.leafzgen, seeded (``synthetic_body``: about 200 groups), or from a
given body file (``--body``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401
import harness
import orjson

from fastnats import _core, _reference
from tests.support import leafzgen


def _orjson(body: bytes) -> Callable[[], object]:
    def run() -> dict:
        groups: dict[tuple[str, str], list[int]] = {}
        for leaf in orjson.loads(body)["leafs"] or ():
            key = (leaf.get("account", ""), leaf.get("name", ""))
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0] * 6
            g[0] += 1
            g[1] += leaf["subscriptions"]
            g[2] += leaf["in_msgs"]
            g[3] += leaf["out_msgs"]
            g[4] += leaf["in_bytes"]
            g[5] += leaf["out_bytes"]
        return groups
    return run


CONTENDERS: dict[str, harness.Contender] = {
    "core": harness.aggregator(_core.LeafzAggregator),
    "reference": harness.aggregator(_reference.LeafzAggregator),
    "orjson": _orjson,
    "scan": lambda body: lambda: body.count(b'"id"'),
}


def make_body(leafnodes: int, seed: int = 1) -> bytes:
    return leafzgen.synthetic_body(leafnodes, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leafnodes", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
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

    body = args.body.read_bytes() if args.body else make_body(args.leafnodes, args.seed)
    repeat = args.repeat or max(5, min(50, 2_000_000 // max(1, len(body) // 300)))
    runs_of = harness.run_body(__file__, body, args.contenders.split(","), args.processes, repeat)
    report = {
        "leafnodes": len(orjson.loads(body)["leafs"] or ()),
        "body_bytes": len(body),
        "seed": None if args.body else args.seed,
        "source": str(args.body or "leafzgen.synthetic_body"),
        **harness.summary(runs_of, args.processes, CONTENDERS),
    }
    harness.print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
