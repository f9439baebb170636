"""Seeded generator of /connz bodies shaped like nats-server 2.15's, for tests and benchmarks.

``Server`` simulates one nats-server through time: connections open, carry traffic and close, and
``open_body()`` / ``closed_body()`` render what ``/connz?state=open|closed&auth=1`` would return,
with the key order, indentation and value formats of the real thing (see
tests/data/connz_open.json, recorded from nats-server 2.15.1). ``closed_listing()`` renders one
page of ``state=closed&sort=stop``, the most recent first, as the exporter reads them; like
nats-server, the simulator may file a closed connection late (``late``), after a later close,
and keeps only the last ``closed_max``. ``paginate`` splits a listing into
offset/limit pages; ``synthetic_body(n, seed)`` and ``scale_recorded(body, n)`` make one body of n
connections for the benchmarks, simulated or cloned from a recorded one.

Every random choice comes from ``random.Random(seed)``; callers print the seed so that a failure
replays. The tests and bench/ import it as tests.support.connzgen.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator

import orjson

U64_MAX = 2**64 - 1

# Label values that exercise escaping and UTF-8: quotes, backslashes, newlines, non-BMP
# characters (surrogate pairs once \u-escaped) and the empty string.
PLAIN_NAMES = ["orders", "billing-api", "svc", "ingest-7", "edge", "notifier"]
ODD_NAMES = ["orders-é中", 'quote"back\\slash', "svc\nnl", "emoji-😀", "", "tab\tname",
             "ctl-\u0001", "<html>&amp;", "\u2028sep", "_other", "__unknown"]
ACCOUNTS = ["A", "B", "$G", "SYS", "tenant-ü"]
LANGS = ["go", "python3", "rust", "nats.js", "C", "java"]
VERSIONS = ["1.37.0", "2.6.4", "0.1.5", "1.0"]
TYPES = ["nats", "nats", "nats", "websocket", "mqtt"]


def go_duration(ns: int) -> str:
    """Format nanoseconds the way Go's time.Duration.String() does."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return sign + _fixed(ns, 3) + "µs"
    if ns < 1_000_000_000:
        return sign + _fixed(ns, 6) + "ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    out = sign
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return out + _fixed(rest, 9) + "s"


def _fixed(value: int, decimals: int) -> str:
    whole, frac = divmod(value, 10**decimals)
    text = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def nats_uptime(seconds: int) -> str:
    """Format whole seconds the way nats-server formats uptime and idle (1y2d3h4m5s)."""
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    years, d = divmod(days, 365)
    if years:
        return f"{years}y{d}d{h}h{m}m{s}s"
    if days:
        return f"{days}d{h}h{m}m{s}s"
    if hours:
        return f"{hours}h{m}m{s}s"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def _timestamp(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    day, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"2026-11-{25 + day % 5:02d}T{h:02d}:{m:02d}:{s:02d}.{frac:09d}Z"


class Server:
    """A simulated nats-server whose /connz bodies follow the real one's rules.

    ``odd`` mixes in escapes, non-ASCII, nulls, unknown nested fields and counters near 2**64-1;
    ``accounts`` adds the fields that ``auth=1`` shows. ``unconnected`` is the share of new
    connections listed before the server read their CONNECT: no name, lang, version or account
    until a later step gives them (some carry traffic before, as a server without auth allows).
    """

    LABEL_FIELDS = ("name", "lang", "version", "authorized_user", "account", "name_tag")

    def __init__(self, seed: int, *, odd: bool = False, accounts: bool = True,
                 closed_max: int = 10_000, names: int = 40, unconnected: float = 0.0,
                 late: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.odd = odd
        self.accounts = accounts
        self.unconnected = unconnected
        self.awaiting_connect: dict[int, dict] = {}
        self.next_cid = 1
        self.clock_ns = 1_764_057_282_000_000_000 % (86400 * 10**9)
        self.open: dict[int, dict] = {}
        self.closed: deque[dict] = deque(maxlen=closed_max)
        #: The share of closes filed in the closed list only at the next step, as nats-server's
        #: goroutine that files them may run after a later close and after a listing.
        self.late = late
        self._filing: list[dict] = []
        self._stop_ns: dict[int, int] = {}
        self._closes = 0
        pool = list(PLAIN_NAMES) + (ODD_NAMES if odd else [])
        self.names = pool + [f"client-{k}" for k in range(max(0, names - len(pool)))]

    @property
    def now(self) -> float:
        """Seconds on the simulated clock, for ConnzAggregator.update(now=...)."""
        return self.clock_ns / 1e9

    def _new_conn(self) -> dict:
        rng = self.rng
        cid = self.next_cid
        self.next_cid += 1
        conn = {
            "cid": cid,
            "kind": "Client",
            "type": rng.choice(TYPES),
            "ip": f"10.{rng.randrange(3)}.{rng.randrange(4)}.{rng.randrange(1, 250)}",
            "port": rng.randrange(1024, 65535),
            "start": _timestamp(self.clock_ns + rng.randrange(10**9)),
            "last_activity": _timestamp(self.clock_ns),
            "rtt": go_duration(rng.choice([0, rng.randrange(50_000, 2_000_000),
                                           rng.randrange(10**9), rng.randrange(200 * 10**9)])),
            "uptime": "0s",
            "idle": "0s",
            "pending_bytes": 0,
            "in_msgs": 0,
            "out_msgs": 0,
            "in_bytes": 0,
            "out_bytes": 0,
            "subscriptions": rng.choice([0, 1, 1, 2, 3, 8, 40, 700, 20_000]),
            "name": rng.choice(self.names),
            "lang": rng.choice(LANGS),
            "version": rng.choice(VERSIONS),
        }
        if self.accounts:
            account = rng.choice(ACCOUNTS if self.odd else ACCOUNTS[:4])
            conn.update(authorized_user=account.lower(), account=account, name_tag=account)
        if not conn["name"]:
            del conn["name"]    # nats-server leaves out empty names
        if self.odd:
            roll = rng.random()
            if roll < 0.05:
                conn["in_msgs"] = U64_MAX - rng.randrange(3)
            elif roll < 0.10:
                conn["tags"] = ["a", {"nested": [1, 2.5e3, None, True, False, "x"]}]
            elif roll < 0.15:
                conn["lang"] = None
            elif roll < 0.20:
                conn["subscriptions_list"] = [f"sub.{k}" for k in range(3)]
        if self.unconnected and rng.random() < self.unconnected:
            self.awaiting_connect[cid] = {
                key: conn.pop(key) for key in self.LABEL_FIELDS if key in conn}
        return conn

    def _read_connects(self) -> None:
        for cid in sorted(self.awaiting_connect):
            if cid not in self.open:
                del self.awaiting_connect[cid]
            elif self.rng.random() < 0.6:
                self.open[cid].update(self.awaiting_connect.pop(cid))

    def _traffic(self, conn: dict, seconds: float) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            for key, scale in (("in_msgs", 50), ("out_msgs", 80)):
                n = rng.randrange(int(scale * seconds) + 1)
                size = rng.randrange(1, 2048)
                conn[key] = min(U64_MAX, conn[key] + n)
                byte_key = key.replace("msgs", "bytes")
                conn[byte_key] = min(U64_MAX, conn[byte_key] + n * size)
            conn["last_activity"] = _timestamp(self.clock_ns)
        conn["pending_bytes"] = rng.choice([0, 0, 0, rng.randrange(1, 5000),
                                            rng.randrange(10**8)])
        idle = int(seconds * rng.random() * rng.choice([1, 10, 1000, 400_000]))
        conn["idle"] = nats_uptime(idle)

    def step(self, *, opens: int = 0, closes: int = 0, flashes: int = 0,
             seconds: float = 15.0) -> None:
        """Advance the clock: close `closes` open connections, open `opens` new ones, and open
        and close `flashes` more that no open body will ever show."""
        rng = self.rng
        self.clock_ns += int(seconds * 1e9)
        self.closed.extend(self._filing)
        self._filing.clear()
        for conn in self.open.values():
            self._traffic(conn, seconds)
        if self.awaiting_connect:
            self._read_connects()
        for cid in rng.sample(sorted(self.open), min(closes, len(self.open))):
            self._close(self.open.pop(cid))
        for _ in range(opens):
            conn = self._new_conn()
            self.open[conn["cid"]] = conn
        for _ in range(flashes):
            conn = self._new_conn()
            self._traffic(conn, seconds)
            self._close(conn)

    def _close(self, conn: dict) -> None:
        # Each close a nanosecond after the one before: the listing sorted by stop is one order.
        self._closes += 1
        stop = self.clock_ns + self._closes % 1_000_000
        final = dict(conn)
        items = list(final.items())
        at = list(final).index("last_activity") + 1
        items[at:at] = [("stop", _timestamp(stop)), ("reason", "Client Closed")]
        self._stop_ns[conn["cid"]] = stop
        if self.late and self.rng.random() < self.late:
            self._filing.append(dict(items))
        else:
            self.closed.append(dict(items))

    def restart(self) -> None:
        """Restart the server: cids count from 1 again and the closed ring is empty."""
        self.open.clear()
        self.closed.clear()
        self._filing.clear()
        self._stop_ns.clear()
        self.awaiting_connect.clear()
        self.next_cid = 1
        self.clock_ns += 10**9

    def open_body(self, **fmt) -> bytes:
        return render_body(list(self.open.values()), clock_ns=self.clock_ns, **fmt)

    def closed_body(self, **fmt) -> bytes:
        return render_body(list(self.closed), clock_ns=self.clock_ns, **fmt)

    def closed_listing(self, offset: int = 0, limit: int = 1024, **fmt) -> bytes:
        """One page of ``state=closed&sort=stop``: the most recent close first."""
        ordered = sorted(self.closed, key=lambda c: self._stop_ns[c["cid"]], reverse=True)
        return render_body(ordered[offset:offset + limit], clock_ns=self.clock_ns,
                           total=len(ordered), offset=offset, limit=limit, **fmt)


def render_body(conns: list[dict], *, clock_ns: int = 0, indent: bool = True,
                ascii_only: bool = False, total: int | None = None, offset: int = 0,
                limit: int = 1024) -> bytes:
    """A /connz body listing `conns`; `ascii_only` \\u-escapes everything outside ASCII."""
    body = {
        "server_id": "NCTIPIPMQAGKD7SVZ6FEZP3VYHOKF4XMSOSXGFHGYQCW5BAWPB6Z5GHZ",
        "now": _timestamp(clock_ns),
        "num_connections": len(conns),
        "total": len(conns) if total is None else total,
        "offset": offset,
        "limit": limit,
        "connections": conns,
    }
    if ascii_only:
        return json.dumps(body, indent=2 if indent else None, ensure_ascii=True,
                          separators=None if indent else (",", ":")).encode()
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0)


def paginate(conns: list[dict], page: int, *, overlap: int = 0, **fmt) -> Iterator[bytes]:
    """Split a listing into pages the way offset/limit paging does, each page repeating the last
    `overlap` connections of the one before, or skipping the first -`overlap` of its own: what
    pages show when connections open or close while the exporter pages."""
    start = 0
    while True:
        chunk = conns[max(0, start - overlap) if start else 0:start + page]
        yield render_body(chunk, total=len(conns), offset=start, limit=page, **fmt)
        start += page
        if start >= len(conns):
            return


def synthetic_body(connections: int, seed: int = 1, *, indent: bool = True) -> bytes:
    """One open body of `connections` connections with traffic, as a server under load shows."""
    server = Server(seed, names=max(40, connections // 20))
    server.step(opens=connections)
    server.step()
    return server.open_body(indent=indent)


def scale_recorded(recorded: bytes, connections: int, seed: int = 1) -> bytes:
    """A body of `connections` connections cloned from those of a recorded body, each keeping a
    recorded connection's fields and their order; cid, port and counters vary."""
    doc = orjson.loads(recorded)
    templates = doc["connections"]
    if not templates:
        raise ValueError("the recorded body lists no connections")
    rng = random.Random(seed)
    conns = []
    for cid in range(1, connections + 1):
        conn = dict(templates[cid % len(templates)])
        conn["cid"] = cid
        if "port" in conn:
            conn["port"] = rng.randrange(1024, 65535)
        for key in ("in_msgs", "out_msgs", "in_bytes", "out_bytes", "pending_bytes"):
            if key in conn:
                conn[key] = rng.choice([0, rng.randrange(10**3), rng.randrange(10**9)])
        conns.append(conn)
    doc.update(num_connections=connections, total=connections, connections=conns)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
