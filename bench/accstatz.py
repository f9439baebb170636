"""Cost of one /accstatz refresh of N accounts, per contender, against orjson.loads alone.

    python bench/accstatz.py --accounts 50000 --json > bench/results/accstatz-50000.json

Bodies are generated, seeded: N accounts named by 56-character public keys, pretty-printed as
nats-server does (about 900 bytes each). All contenders run in one process, in turns, and it
prints one JSON object with the median seconds of:

- ``loads``: ``orjson.loads`` of the body, the floor of any Python decode;
- ``core_first`` and ``reference_first``: ``AccstatzTable.update`` of a new table (every account
  new, placed or summed), compiled (``_core``) and pure Python (``_reference``);
- ``core_steady`` and ``reference_steady``: an update of a table that knows every account, where
  ``--changed`` of them moved, what a running exporter does at each refresh;

and the ratios ``core/reference`` and ``core/loads`` of the steady refreshes (and of the first).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import datetime, timezone

import checkout  # noqa: F401
import orjson

from fastnats import _core, _reference


def generate(accounts: int, seed: int, tick: int = 0, changed: float = 0.0) -> bytes:
    rng = random.Random(seed)
    part = {"msgs": 0, "bytes": 0}
    entries = []
    # A fixed share of the accounts moves, by as much at every tick: counters only grow.
    moving = round(changed * 1000)
    for i in range(accounts):
        key = f"A{rng.getrandbits(270):055X}"[:56]
        sent, received = rng.randrange(10**9), rng.randrange(10**9)
        if i % 1000 < moving:
            sent += (i % 97 + 1) * tick
            received += (i % 89 + 1) * tick
        entries.append({
            "acc": key, "name": key, "conns": i % 3, "leafnodes": 0, "total_conns": i % 3,
            "num_subscriptions": rng.randrange(100),
            "sent": {"msgs": sent, "bytes": sent * 90, "gateways": part, "routes": part,
                     "leafs": part},
            "received": {"msgs": received, "bytes": received * 90, "gateways": part,
                         "routes": part, "leafs": part},
            "slow_consumers": 0})
    now = datetime.fromtimestamp(1_800_000_000 + tick, timezone.utc).isoformat()
    return orjson.dumps({"server_id": "NBENCH", "now": now.replace("+00:00", "Z"),
                         "account_statz": entries}, option=orjson.OPT_INDENT_2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    first_body = generate(args.accounts, args.seed)
    bodies = [generate(args.accounts, args.seed, tick=15 * (i + 1), changed=args.changed)
              for i in range(args.repeats)]
    impls = {"core": _core, "reference": _reference}
    steady = {}
    for name, impl in impls.items():
        steady[name] = impl.AccstatzTable(1000, 3600.0, 10)
        steady[name].update(first_body, 0.0)
    times: dict[str, list[float]] = {name: [] for name in (
        "loads", "core_first", "reference_first", "core_steady", "reference_steady")}

    def timed(name: str, run, *args) -> None:
        start = time.perf_counter()
        run(*args)
        times[name].append(time.perf_counter() - start)

    # Each contender once per round, in turns: a slow moment of the machine skews one run of
    # each rather than one contender.
    for i, body in enumerate(bodies):
        timed("loads", orjson.loads, body)
        for name, impl in impls.items():
            timed(f"{name}_first", impl.AccstatzTable(1000, 3600.0, 10).update, first_body, 0.0)
            timed(f"{name}_steady", steady[name].update, body, 15.0 * (i + 1))
    median = {name: statistics.median(runs) for name, runs in times.items()}
    result = {
        "accounts": args.accounts, "body_bytes": len(first_body), "seed": args.seed,
        "changed": args.changed, "repeats": args.repeats, "median_seconds": median,
        "ratios": {
            "core/reference": median["core_steady"] / median["reference_steady"],
            "core/loads": median["core_steady"] / median["loads"],
            "core_first/reference_first": median["core_first"] / median["reference_first"],
            "core_first/loads": median["core_first"] / median["loads"],
        },
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
