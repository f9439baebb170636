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
others, and reports the median of their medians (bench/connz.py, whose harness this shares). The
aggregators are fed the body once before timing, so the figures are for a steady refresh (every
id already known), which is what a running exporter sees of a hub.

Bodies come from tests.support.leafzgen, seeded (``synthetic_body``: about 200 groups), or from a
given body file (``--body``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401
import orjson
from connz import _aggregator, isolated, peak_rss_mb, time_runs

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


CONTENDERS: dict[str, Callable[[bytes], Callable[[], object]]] = {
    # Fed like the /connz aggregators: update(body, None, now), a refresh every 15 s.
    "core": _aggregator(_core.LeafzAggregator),
    "reference": _aggregator(_reference.LeafzAggregator),
    "orjson": _orjson,
    "scan": lambda body: lambda: body.count(b'"id"'),
}


def make_body(leafnodes: int, seed: int = 1) -> bytes:
    return leafzgen.synthetic_body(leafnodes, seed)


def worker(name: str, body_path: Path, repeat: int) -> None:
    body = body_path.read_bytes()
    times = time_runs(CONTENDERS[name](body), repeat)
    print(json.dumps({"median": statistics.median(times), "peak_rss_mb": peak_rss_mb()}))


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
        worker(args.worker, args.body, args.repeat)
        return 0

    body = args.body.read_bytes() if args.body else make_body(args.leafnodes, args.seed)
    repeat = args.repeat or max(5, min(50, 2_000_000 // max(1, len(body) // 300)))
    names = args.contenders.split(",")
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        runs_of: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(max(1, args.processes)):
            for name in names:
                # The reference is many times slower; fewer runs keep the script short.
                runs = max(3, repeat // 5) if name == "reference" else repeat
                runs_of[name].append(isolated(__file__, ["--worker", name, "--body", f.name,
                                                         "--repeat", str(runs)]))
    median = {name: statistics.median(r["median"] for r in runs)
              for name, runs in runs_of.items()}
    report: dict[str, object] = {
        "leafnodes": len(orjson.loads(body)["leafs"] or ()),
        "body_bytes": len(body),
        "seed": None if args.body else args.seed,
        "source": str(args.body or "leafzgen.synthetic_body"),
        "median_seconds": median,
        "processes": max(1, args.processes),
        "peak_rss_mb": {name: round(max(r["peak_rss_mb"] for r in runs), 1)
                        for name, runs in runs_of.items()},
    }
    if "core" in median:
        ratios = {}
        for other in ("reference", "orjson"):
            if other in median:
                ratios[f"{other}/core"] = round(median[other] / median["core"], 2)
        if "scan" in median:
            ratios["core/scan"] = round(median["core"] / median["scan"], 2)
        report["ratios"] = ratios
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
