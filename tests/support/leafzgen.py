"""Seeded generator of /leafz bodies, and of the /connz closed listings that hold the leafnodes
that closed, shaped like nats-server 2.15's, for tests and benchmarks.

``Hub`` simulates one hub through time: leafnodes connect, carry traffic, close and reconnect
under a new id (the server numbers leafnodes and clients from one counter, so clients take ids
too), and ``leafz_body()`` renders what ``/leafz`` returns, with the key order, indentation and
value formats of the real thing (``{"server_id", "now", "leafnodes", "leafs": [{"id", "name",
"is_spoke", "account", "ip", "port", "rtt", "in_msgs", ..., "subscriptions", "compression"}]}``).
``closed_listing()`` renders one page of ``/connz?state=closed&sort=stop``, the most recent close
first, clients and leafnodes mixed; like nats-server, the simulator may file a close late and
keeps only the last ``closed_max``. ``synthetic_body(n, seed)`` makes one body of n leafnodes for
the benchmarks.

Every random choice comes from ``random.Random(seed)``; callers print the seed so that a failure
replays. The tests and bench/ import it as tests.support.leafzgen.
"""

from __future__ import annotations

import json
import random
from collections import deque

import orjson

from tests.support.connzgen import ODD_NAMES, _timestamp, go_duration

U64_MAX = 2**64 - 1
LEAF_NAMES = ["edge-1", "store-42", "ship-7", "plant-a", "truck-19", "kiosk"]
ODD_LEAF_NAMES = ODD_NAMES + ["___other", "leaf-名前", "😀-leaf"]
ACCOUNTS = ["T1", "T2", "$G", "SYS"]
ODD_ACCOUNTS = ACCOUNTS + ["tenant-ü", "_other", 'a"b']
COMPRESSIONS = ["s2_uncompressed", "s2_fast", "off"]


class Hub:
    """A simulated hub whose /leafz and closed /connz bodies follow the real one's rules.

    ``odd`` mixes in escapes, non-ASCII, markers as names, nulls, unknown nested fields and
    counters near 2**64-1. ``late`` is the share of closes filed in the closed list only at the
    next step; ``closed_max`` the size of the closed list (max_closed_clients).
    """

    def __init__(self, seed: int, *, odd: bool = False, closed_max: int = 10_000,
                 names: int = 30, late: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.odd = odd
        self.late = late
        self.next_id = 1
        self.clock_ns = 1_764_057_282_000_000_000 % (86400 * 10**9)
        self.open: dict[int, dict] = {}
        self.closed: deque[dict] = deque(maxlen=closed_max)
        self._filing: list[dict] = []
        self._stops = 0
        pool = list(LEAF_NAMES) + (ODD_LEAF_NAMES if odd else [])
        self.names = pool + [f"leaf-{k}" for k in range(max(0, names - len(pool)))]
        self.accounts = ODD_ACCOUNTS if odd else ACCOUNTS

    @property
    def now(self) -> float:
        """Seconds on the simulated clock, for LeafzAggregator.commit(now=...)."""
        return self.clock_ns / 1e9

    def _new_leaf(self, name: str | None = None, account: str | None = None) -> dict:
        rng = self.rng
        ident = self.next_id
        # Clients and routes take ids from the same counter.
        self.next_id += 1 + rng.choice([0, 0, 0, 1, 5])
        leaf = {
            "id": ident,
            "name": rng.choice(self.names) if name is None else name,
            "is_spoke": rng.random() < 0.2,
            "account": rng.choice(self.accounts) if account is None else account,
            "ip": f"10.{rng.randrange(3)}.{rng.randrange(4)}.{rng.randrange(1, 250)}",
            "port": rng.randrange(1024, 65535),
            "rtt": go_duration(rng.choice([0, rng.randrange(50_000, 2_000_000),
                                           rng.randrange(10**9), rng.randrange(20 * 10**9)])),
            "in_msgs": 0,
            "out_msgs": 0,
            "in_bytes": 0,
            "out_bytes": 0,
            "subscriptions": rng.choice([0, 1, 5, 40, 700]),
            "compression": rng.choice(COMPRESSIONS),
        }
        if self.odd:
            roll = rng.random()
            if roll < 0.05:
                leaf["in_msgs"] = U64_MAX - rng.randrange(3)
            elif roll < 0.10:
                leaf["subscriptions_list"] = ["a", {"nested": [1, 2.5e3, None, True, "x"]}]
            elif roll < 0.15:
                leaf["rtt"] = None if rng.random() < 0.5 else ""
            elif roll < 0.20:
                leaf["is_spoke"] = None
        return leaf

    def _traffic(self, leaf: dict, seconds: float) -> None:
        rng = self.rng
        if rng.random() < 0.7:
            for key, scale in (("in_msgs", 40), ("out_msgs", 90)):
                n = rng.randrange(int(scale * seconds) + 1)
                leaf[key] = min(U64_MAX, leaf[key] + n)
                byte_key = key.replace("msgs", "bytes")
                leaf[byte_key] = min(U64_MAX, leaf[byte_key] + n * rng.randrange(1, 4096))
        if rng.random() < 0.2:
            leaf["rtt"] = go_duration(rng.randrange(1, 3 * 10**9))
        leaf["subscriptions"] = max(0, leaf["subscriptions"] + rng.randrange(-2, 3))

    def step(self, *, opens: int = 0, closes: int = 0, reconnects: int = 0, flashes: int = 0,
             clients: int = 0, seconds: float = 15.0) -> None:
        """Advance the clock: close ``closes`` leafnodes, reconnect ``reconnects`` (a close,
        then the same name and account under a new id), open ``opens`` new ones, open and close
        ``flashes`` that no /leafz will show, and close ``clients`` client connections."""
        rng = self.rng
        self.clock_ns += int(seconds * 1e9)
        self.closed.extend(self._filing)
        self._filing.clear()
        for leaf in self.open.values():
            self._traffic(leaf, seconds)
        gone = rng.sample(sorted(self.open), min(closes + reconnects, len(self.open)))
        for k, ident in enumerate(gone):
            leaf = self.open.pop(ident)
            self._close(leaf)
            if k >= closes:
                again = self._new_leaf(leaf["name"], leaf["account"])
                self.open[again["id"]] = again
        for _ in range(opens):
            leaf = self._new_leaf()
            self.open[leaf["id"]] = leaf
        for _ in range(flashes):
            leaf = self._new_leaf()
            self._traffic(leaf, seconds)
            self._close(leaf)
        for _ in range(clients):
            cid = self.next_id
            self.next_id += 1
            self._file({"cid": cid, "kind": "Client", "type": "nats", "ip": "10.9.9.9",
                        "stop": None, "in_msgs": rng.randrange(100), "out_msgs": 0,
                        "in_bytes": 0, "out_bytes": 0, "name": "svc", "account": "T1"})

    def _close(self, leaf: dict) -> None:
        entry = {"cid": leaf["id"], "kind": "Leafnode", "ip": leaf["ip"], "port": leaf["port"],
                 "stop": None, "reason": "Client Closed", "rtt": leaf["rtt"] or "0s",
                 "in_msgs": leaf["in_msgs"], "out_msgs": leaf["out_msgs"],
                 "in_bytes": leaf["in_bytes"], "out_bytes": leaf["out_bytes"],
                 "subscriptions": leaf["subscriptions"], "name": leaf["name"],
                 "account": leaf["account"]}
        if self.rng.random() < 0.6:
            # What it did between the last listing and its close.
            entry["in_msgs"] = min(U64_MAX, entry["in_msgs"] + self.rng.randrange(50))
            entry["out_bytes"] = min(U64_MAX, entry["out_bytes"] + self.rng.randrange(5000))
        self._file(entry)

    def _file(self, entry: dict) -> None:
        # Each close a nanosecond after the one before: the listing sorted by stop is one order.
        self._stops += 1
        entry["stop"] = _timestamp(self.clock_ns + self._stops % 1_000_000)
        entry["_stop_ns"] = self.clock_ns + self._stops % 1_000_000
        if self.late and self.rng.random() < self.late:
            self._filing.append(entry)
        else:
            self.closed.append(entry)

    def restart(self) -> None:
        """Restart the hub: ids count from 1 again and the closed list is empty."""
        self.open.clear()
        self.closed.clear()
        self._filing.clear()
        self.next_id = 1
        self.clock_ns += 10**9

    def leafz_body(self, **fmt) -> bytes:
        return render_leafz(list(self.open.values()), clock_ns=self.clock_ns, **fmt)

    def closed_listing(self, offset: int = 0, limit: int = 1024, **fmt) -> bytes:
        """One page of ``/connz?state=closed&sort=stop``: the most recent close first."""
        ordered = sorted(self.closed, key=lambda c: c["_stop_ns"], reverse=True)
        page = [{k: v for k, v in c.items() if k != "_stop_ns"}
                for c in ordered[offset:offset + limit]]
        body = {"server_id": "HUB", "now": _timestamp(self.clock_ns), "num_connections": len(page),
                "total": len(ordered), "offset": offset, "limit": limit, "connections": page}
        return _dump(body, **fmt)


def _dump(doc: dict, *, indent: bool = True, ascii_only: bool = False) -> bytes:
    if ascii_only:
        return json.dumps(doc, indent=2 if indent else None, ensure_ascii=True,
                          separators=None if indent else (",", ":")).encode()
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)


def render_leafz(leafs: list[dict], *, clock_ns: int = 0, **fmt) -> bytes:
    """A /leafz body listing ``leafs``; ``ascii_only`` \\u-escapes everything outside ASCII."""
    return _dump({"server_id": "NCTIPIPMQAGKD7SVZ6FEZP3VYHOKF4XMSOSXGFHGYQCW5BAWPB6Z5GHZ",
                  "now": _timestamp(clock_ns), "leafnodes": len(leafs), "leafs": leafs}, **fmt)


def synthetic_body(leafnodes: int, seed: int = 1, *, groups: int = 200) -> bytes:
    """One /leafz body of ``leafnodes`` leafnodes with traffic, in about ``groups`` groups."""
    hub = Hub(seed, names=groups)
    hub.step(opens=leafnodes)
    hub.step()
    return hub.leafz_body()
