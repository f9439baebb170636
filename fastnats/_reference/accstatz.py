"""The /accstatz account table, with orjson, dicts and ints: the oracle of ``_core/accstatz.pxi``.

``AccstatzTable.update`` decodes a body with ``collectors.decode.Fields`` and folds it into the
table; the core scans the same bodies and follows the same rules (see the top of
``_core/accstatz.pxi``), and the two give identical samples. Where the placement needs an
order, ties go by account name, so that no rule depends on the order of a dict or a body.
"""

from __future__ import annotations

import heapq

from .. import metrics as m
from ..collectors.base import DECODE, Samples
from ..collectors.decode import Fields, decode_json
from ..errors import ScrapeError
from ..interop import Sample

ENDPOINT = "accstatz"

#: The counters of an account, in this order: sent msgs and bytes, received msgs and bytes,
#: slow consumers.
COUNTERS = (m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL, m.NATS_ACCOUNT_SENT_BYTES_TOTAL,
            m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL, m.NATS_ACCOUNT_RECEIVED_BYTES_TOTAL,
            m.NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL)
#: The gauges, in this order: conns, leafnodes, num_subscriptions.
GAUGES = (m.NATS_ACCOUNT_CONNECTIONS, m.NATS_ACCOUNT_LEAFNODES, m.NATS_ACCOUNT_SUBSCRIPTIONS)
_NO_GAUGES = (0, 0, 0)

#: One account of a body: its name, its gauges, its counters.
Row = tuple[str, tuple[int, int, int], tuple[int, int, int, int, int]]

#: Refreshes an account that was active must stay idle before a new one may take its place.
IDLE_REFRESHES = 5
#: Containers a value may sit in, the body included: the core's scan is bounded (CZ_MAX_DEPTH).
MAX_DEPTH = 512


def decode(body: bytes | bytearray) -> tuple[int, list[Row]]:
    """The server's clock (Unix ns) and the accounts of an /accstatz body; any problem is a
    decode error."""
    raw = decode_json(ENDPOINT, body)
    if _too_deep(raw, 0):
        raise ScrapeError(ENDPOINT, DECODE, f"/accstatz nests more than {MAX_DEPTH} levels")
    doc = Fields(ENDPOINT, raw)
    now = doc.time_ns("now")
    entries = doc.doc.get("account_statz")
    if not isinstance(entries, list):
        raise ScrapeError(ENDPOINT, DECODE,
                          f"/accstatz account_statz is {entries!r:.60}, not a list")
    rows: list[Row] = []
    for i, entry in enumerate(entries):
        acc = Fields(ENDPOINT, entry, f"account_statz[{i}].")
        sent = _section(acc, "sent")
        received = _section(acc, "received")
        rows.append((
            acc.text("acc"),
            (acc.counter("conns"), acc.counter("leafnodes"), acc.counter("num_subscriptions")),
            (sent.counter("msgs"), sent.counter("bytes"), received.counter("msgs"),
             received.counter("bytes"), acc.counter("slow_consumers"))))
    if len({row[0] for row in rows}) != len(rows):
        raise ScrapeError(ENDPOINT, DECODE, "/accstatz lists an account twice")
    return now, rows


def _too_deep(value: object, depth: int) -> bool:
    """Whether a container in ``value`` (which ``depth`` containers hold) sits in MAX_DEPTH."""
    items = value.values() if type(value) is dict else value if type(value) is list else ()
    if depth >= MAX_DEPTH:
        return True
    for item in items:
        if (type(item) is dict or type(item) is list) and _too_deep(item, depth + 1):
            return True
    return False


def _section(acc: Fields, key: str) -> Fields:
    section = acc.object(key)
    if section is None:
        raise ScrapeError(ENDPOINT, DECODE, f"/accstatz has no {acc.path}{key}")
    return section


class _Account:
    """What is kept of one account between refreshes."""

    __slots__ = ("name", "label", "raw", "base", "gauges", "placed", "listed", "seen_at",
                 "active")

    def __init__(self, name: str, gauges: tuple[int, int, int],
                 raw: tuple[int, int, int, int, int], seq: int, now: float) -> None:
        self.name = name
        self.label = m.client_value(name)
        #: The counters as the server reported them last.
        self.raw = raw
        #: What folded falls added to ``raw``; None while nothing fell.
        self.base: list[int] | None = None
        self.gauges = gauges
        #: Exported on its own (True) or summed in ``_other``.
        self.placed = False
        #: The refresh that last listed it, and the exporter's clock then.
        self.listed = seq
        self.seen_at = now
        #: The last refresh at which it had a connection or a counter moved; 0 for never.
        self.active = seq if gauges[0] or gauges[1] or any(raw) else 0

    def values(self) -> tuple[int, ...]:
        base = self.base
        return self.raw if base is None else tuple(r + b for r, b in zip(self.raw, base))


class AccstatzTable:
    """The accounts of one server across refreshes: which get their own series, the ``_other``
    sums, counters folded over falls, and the top-K rates. ``update`` decodes a body before it
    changes anything, so a body that does not decode leaves the table as it was."""

    def __init__(self, max_accounts: int, account_ttl: float, top_k: int,
                 server: str = "") -> None:
        if max_accounts < 1:
            raise ValueError("max_accounts must be at least 1")
        if not account_ttl >= 0:
            raise ValueError("account_ttl must be a non-negative number of seconds")
        if top_k < 0:
            raise ValueError("top_k must be at least 0")
        self.max_accounts = max_accounts
        self.account_ttl = float(account_ttl)
        self.top_k = top_k
        self.server = server
        self.accounts: dict[str, _Account] = {}
        #: The accounts with their own series.
        self.table: dict[str, _Account] = {}
        #: ``_other``'s counters: what its members added while they were members.
        self.other = [0, 0, 0, 0, 0]
        self.other_used = False
        self.seq = 0
        self.listed_at: int | None = None
        #: Accounts in the last good body.
        self.listed = 0
        #: Counter falls folded since the start, and the account of the first.
        self.folds = 0
        self.first_folded: str | None = None

    def update(self, body: bytes | bytearray, now: float) -> Samples:
        """Take one /accstatz body at the exporter's clock ``now``; returns the samples to
        export. Raises the /accstatz decode error, and then changes nothing."""
        listed_at, rows = decode(body)
        self.listed = len(rows)
        return self._update(listed_at, rows, now)

    def _update(self, listed_at: int, rows: list[Row], now: float) -> Samples:
        self.seq = seq = self.seq + 1
        accounts, other = self.accounts, self.other
        other_gauges = [0, 0, 0]
        overflow = known = 0
        fresh: list[Row] = []
        moving: list[tuple[int, str, _Account]] = []
        sent_moved: list[tuple[int, str]] = []
        received_moved: list[tuple[int, str]] = []
        for row in rows:
            name, gauges, raw = row
            account = accounts.get(name)
            if account is None:
                fresh.append(row)
                continue
            known += 1
            account.listed = seq
            account.seen_at = now
            account.gauges = gauges
            old = account.raw
            if raw != old:
                account.raw = raw
                moved = [new - last for new, last in zip(raw, old)]
                if min(moved) < 0:
                    self._fold(account, old, moved)
                account.active = seq
                if moved[0]:
                    sent_moved.append((moved[0], account.label))
                if moved[2]:
                    received_moved.append((moved[2], account.label))
                if not account.placed:
                    for k in range(5):
                        other[k] += moved[k]
                    moving.append((moved[0] + moved[2], name, account))
            elif gauges[0] or gauges[1]:
                account.active = seq
                if not account.placed:
                    moving.append((0, name, account))
            if not account.placed:
                overflow += 1
                for k in range(3):
                    other_gauges[k] += gauges[k]
        if known < len(accounts):
            self._forget(now)
        overflow += self._place(fresh, moving, other_gauges, now)
        top = self._top(listed_at, sent_moved, received_moved)
        self.listed_at = listed_at
        return self._samples(len(rows), overflow, other_gauges, top)

    def _fold(self, account: _Account, old: tuple[int, ...], moved: list[int]) -> None:
        """A counter fell without a restart (the account was removed and made again, by a
        reload): count on from where it was."""
        base = account.base if account.base is not None else [0, 0, 0, 0, 0]
        for k in range(5):
            if moved[k] < 0:
                base[k] += old[k]
                moved[k] = account.raw[k]
        account.base = base
        if not self.folds:
            self.first_folded = account.name
        self.folds += 1

    def _forget(self, now: float) -> None:
        """Accounts the listing left out: gone, their gauges 0; dropped after the TTL."""
        ttl = self.account_ttl
        for name, account in list(self.accounts.items()):
            if account.listed == self.seq:
                continue
            account.gauges = _NO_GAUGES
            if now - account.seen_at >= ttl:
                del self.accounts[name]
                self.table.pop(name, None)

    def _place(self, fresh: list[Row], moving: list[tuple[int, str, _Account]],
               other_gauges: list[int], now: float) -> int:
        """Give places to new accounts and to active ones in ``_other``; returns how many more
        accounts ``_other`` holds."""
        seq, table, other = self.seq, self.table, self.other
        free = self.max_accounts - len(table)
        victims: list[_Account] | None = None
        added = 0

        def claim(account: _Account) -> bool:
            """Whether ``account`` gets a place: a free one, or, if it is active, the place of
            the first victim, which goes into ``_other``."""
            nonlocal free, victims, added
            if free <= 0 and account.active == seq:
                if victims is None:
                    victims = self._victims()
                if victims:
                    victim = victims.pop()
                    victim.placed = False
                    del table[victim.name]
                    self.other_used = True
                    if victim.listed == seq:
                        added += 1
                        for k in range(3):
                            other_gauges[k] += victim.gauges[k]
                    free += 1
            if free <= 0:
                return False
            free -= 1
            account.placed = True
            table[account.name] = account
            return True

        newcomers = [_Account(name, gauges, raw, seq, now) for name, gauges, raw in fresh]
        # Active ones first, and in a stable order: the server lists accounts in no order.
        newcomers.sort(key=lambda a: (not a.active, a.name))
        for account in newcomers:
            self.accounts[account.name] = account
            if not claim(account):
                self.other_used = True
                added += 1
                for k in range(5):
                    other[k] += account.raw[k]
                for k in range(3):
                    other_gauges[k] += account.gauges[k]
        if moving:
            # Only as many as there are places for, the busiest first: in a full table of
            # connected accounts, none, however many are active in _other.
            if victims is None and free < len(moving):
                victims = self._victims()
            places = free + len(victims or ())
            busiest = heapq.nsmallest(places, moving, key=lambda item: (-item[0], item[1]))
            for _, _, account in busiest:
                if claim(account):
                    added -= 1
                    for k in range(3):
                        other_gauges[k] -= account.gauges[k]
        return added

    def _victims(self) -> list[_Account]:
        """The accounts that may lose their place, the first to go last: those gone, longest
        gone first; then those idle, never active first, then least recently active; ties by
        name, the lowest first."""
        seq = self.seq
        idle = [a for a in self.table.values()
                if a.listed != seq or not a.active or seq - a.active >= IDLE_REFRESHES]
        idle.sort(key=lambda a: (0, a.seen_at, a.name) if a.listed != seq
                  else (1, a.active, a.name), reverse=True)
        return idle

    def _top(self, listed_at: int, sent: list[tuple[int, str]],
             received: list[tuple[int, str]]) -> tuple[list[Sample], list[Sample]]:
        """The top-K accounts by messages per second since the previous listing, on the
        server's clock, ties by the higher label; none at the first listing."""
        k = self.top_k
        if not k or self.listed_at is None or listed_at <= self.listed_at:
            return [], []
        seconds = (listed_at - self.listed_at) / 1e9
        return ([((label,), moved / seconds) for moved, label in heapq.nlargest(k, sent)],
                [((label,), moved / seconds) for moved, label in heapq.nlargest(k, received)])

    def _samples(self, listed: int, overflow: int, other_gauges: list[int],
                 top: tuple[list[Sample], list[Sample]]) -> Samples:
        out: Samples = {metric.name: [] for metric in (*GAUGES, *COUNTERS)}
        gauge_lists = [out[metric.name] for metric in GAUGES]
        counter_lists = [out[metric.name] for metric in COUNTERS]
        for account in sorted(self.table.values(), key=lambda a: a.label):
            labels = (account.label,)
            for samples, value in zip(gauge_lists, account.gauges):
                samples.append((labels, value))
            for samples, value in zip(counter_lists, account.values()):
                samples.append((labels, value))
        if self.other_used:
            labels = (m.OTHER_GROUP,)
            for samples, value in zip(gauge_lists, other_gauges):
                samples.append((labels, value))
            for samples, value in zip(counter_lists, self.other):
                samples.append((labels, value))
        out[m.NATS_ACCOUNTS.name] = [((), listed)]
        out[m.NATS_ACCOUNT_OVERFLOW.name] = [((), overflow)]
        out[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name] = top[0]
        out[m.NATS_ACCOUNT_TOP_RECEIVED_MESSAGES_PER_SECOND.name] = top[1]
        return out
