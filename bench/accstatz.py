"""Cost of one /accstatz refresh of N accounts, against orjson.loads alone.

    python bench/accstatz.py --accounts 50000 --json

Bodies are generated, seeded: N accounts named by 56-character public keys, pretty-printed as
nats-server does (about 900 bytes each). Prints one JSON object with the median seconds of:

- ``loads``: ``orjson.loads`` of the body, the floor;
- ``decode``: ``accstatz.decode``, orjson and every value checked through ``Fields``;
- ``first``: decode and the table's first update (every account new, placed or summed);
- ``steady``: decode and an update where ``--changed`` of the accounts moved, what a running
  exporter does at each refresh;

and the ratio ``steady / loads``.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timezone

import orjson
from harness import median_seconds

from fastnats.collectors.accstatz import AccountTable, AccstatzOptions, decode


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
    next_body = bodies[0]
    options = AccstatzOptions()

    def first() -> None:
        listed_at, rows = decode(first_body)
        AccountTable(options).update(listed_at, rows, 0.0)

    table = AccountTable(options)
    table.update(*decode(first_body), 0.0)
    later = iter(bodies)

    def steady() -> None:
        listed_at, rows = decode(next(later))
        table.update(listed_at, rows, 15.0 * table.seq)

    result = {
        "accounts": args.accounts, "body_bytes": len(next_body), "seed": args.seed,
        "changed": args.changed,
        "loads": median_seconds(lambda: orjson.loads(next_body), args.repeats),
        "decode": median_seconds(lambda: decode(next_body), args.repeats),
        "first": median_seconds(first, args.repeats),
        "steady": median_seconds(steady, args.repeats),
    }
    result["steady_per_loads"] = result["steady"] / result["loads"]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else
                  f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
