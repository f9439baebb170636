"""The /accstatz collector: per-account connections, subscriptions and message counters, with a
cap on the accounts exported on their own, an ``_other`` account for the rest, and top-K rates.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import time
from dataclasses import dataclass

from .. import metrics as m
from ..errors import ScrapeError
from ..flags import non_negative_int, non_negative_seconds, positive_int
from ..interop import Sample
from .base import (
    DECODE,
    Collector,
    Samples,
    ServerContext,
    ServerInfo,
    Source,
    with_margin,
)
from .decode import Fields, decode_json, off_loop

log = logging.getLogger("fastnats.scrape")

ENDPOINT = "accstatz"

#: The counters of an account, in this order: sent msgs and bytes, received msgs and bytes,
#: slow consumers.
_COUNTERS = (m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL, m.NATS_ACCOUNT_SENT_BYTES_TOTAL,
             m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL, m.NATS_ACCOUNT_RECEIVED_BYTES_TOTAL,
             m.NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL)
#: The gauges, in this order: conns, leafnodes, num_subscriptions.
_GAUGES = (m.NATS_ACCOUNT_CONNECTIONS, m.NATS_ACCOUNT_LEAFNODES, m.NATS_ACCOUNT_SUBSCRIPTIONS)
_ZEROS = (0, 0, 0, 0, 0)
_NO_GAUGES = (0, 0, 0)

#: One account of a body: its name, its gauges, its counters.
Row = tuple[str, tuple[int, int, int], tuple[int, int, int, int, int]]

#: Refreshes an account that was active must stay idle before a new one may take its place.
IDLE_REFRESHES = 5


@dataclass(frozen=True, slots=True)
class AccstatzOptions:
    """How accounts are exported; shared by every monitored server."""

    max_accounts: int = 1000
    account_ttl: float = 3600.0
    top_k: int = 10


def decode(body: bytes | bytearray) -> tuple[int, list[Row]]:
    """The server's clock (Unix ns) and the accounts of an /accstatz body; any problem is a
    decode error."""
    doc = Fields(ENDPOINT, decode_json(ENDPOINT, body))
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


class AccountTable:
    """The accounts of one server across refreshes: which get their own series, the ``_other``
    sums, counters folded over falls, and the top-K rates. ``update`` takes decoded rows and
    cannot fail, so a body that does not decode leaves the table as it was."""

    def __init__(self, options: AccstatzOptions, server: str = "") -> None:
        self.options = options
        self.server = server
        self.accounts: dict[str, _Account] = {}
        #: The accounts with their own series.
        self.table: dict[str, _Account] = {}
        #: ``_other``'s counters: what its members added while they were members.
        self.other = [0, 0, 0, 0, 0]
        self.other_used = False
        self.seq = 0
        self.listed_at: int | None = None
        #: Counter falls folded since the start.
        self.folds = 0

    def update(self, listed_at: int, rows: list[Row], now: float) -> Samples:
        """Take one listing (the server's clock ``listed_at``, Unix ns) at the exporter's clock
        ``now``; returns the samples to export."""
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
            log.warning("server %s: a counter of account %r fell without a server restart (the "
                        "account was removed and created again?); its exported counters "
                        "continue from their last values. Logged once",
                        self.server, account.name)
        self.folds += 1

    def _forget(self, now: float) -> None:
        """Accounts the listing left out: gone, their gauges 0; dropped after the TTL."""
        ttl = self.options.account_ttl
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
        free = self.options.max_accounts - len(table)
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
        gone first; then those idle, never active first, then least recently active."""
        seq = self.seq
        idle = [a for a in self.table.values()
                if a.listed != seq or not a.active or seq - a.active >= IDLE_REFRESHES]
        idle.sort(key=lambda a: (0, a.seen_at) if a.listed != seq else (1, a.active),
                  reverse=True)
        return idle

    def _top(self, listed_at: int, sent: list[tuple[int, str]],
             received: list[tuple[int, str]]) -> tuple[list[Sample], list[Sample]]:
        """The top-K accounts by messages per second since the previous listing, on the
        server's clock; none at the first listing."""
        k = self.options.top_k
        if not k or self.listed_at is None or listed_at <= self.listed_at:
            return [], []
        seconds = (listed_at - self.listed_at) / 1e9
        return ([((label,), moved / seconds) for moved, label in heapq.nlargest(k, sent)],
                [((label,), moved / seconds) for moved, label in heapq.nlargest(k, received)])

    def _samples(self, listed: int, overflow: int, other_gauges: list[int],
                 top: tuple[list[Sample], list[Sample]]) -> Samples:
        out: Samples = {metric.name: [] for metric in (*_GAUGES, *_COUNTERS)}
        gauge_lists = [out[metric.name] for metric in _GAUGES]
        counter_lists = [out[metric.name] for metric in _COUNTERS]
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


class AccstatzCollector(Collector):
    """Reads /accstatz?unused=true: every account the server holds, with or without
    connections.

    Why ``unused``. Without it nats-server lists only the accounts with a local connection or
    leafnode, so an account that goes idle would vanish and come back. An account's counters
    live in its account object, which the server keeps while it runs (a reload that drops the
    account from the configuration is the only way to lose it), so they are cumulative, and an
    account can still count messages with no connection (JetStream, routes, gateways). The HTTP
    handler takes no other parameter; the ``accounts`` filter is only in the system account's
    ``$SYS.REQ.ACCOUNT.PING.STATZ`` request. The label is ``acc``, the account's unique name (its
    public key in operator mode), not ``name``, a JWT's name tag, which need not be unique.

    Account table. ``--accstatz.max-accounts`` accounts are exported on their own; the others are
    summed into ``account="_other"``. An account keeps its place. When the table is full, an
    account that is active (a connection, a leafnode, or a counter that moved) takes the place
    of one that has been gone longest, else one that was never active, else one idle for
    IDLE_REFRESHES refreshes or more, least recently active first; otherwise it is summed into
    ``_other``. An account in ``_other`` that becomes active competes for a place the same way.
    ``_other``'s counters add what its members' counters moved while they were members (an
    account that first appears in ``_other`` brings its whole count), so accounts moving in and
    out never make them fall. An account the server no longer lists keeps its counters for
    ``--accstatz.account-ttl``, then is forgotten.

    Counters fall only when the server restarts (``ServerInfo.identity``), and then everything
    starts afresh; a counter that falls otherwise is folded (it continues from its last value),
    and logged once. Account names can be chosen freely in a conf file: they are exported through
    ``metrics.client_value``, so none becomes ``_other``.
    """

    name = "accstatz"
    endpoint = ENDPOINT
    help = "per-account connections, subscriptions and message counters from /accstatz"
    default = False
    families = m.ACCSTATZ

    options: AccstatzOptions

    def __init__(self, server: ServerContext, options: AccstatzOptions | None = None) -> None:
        super().__init__(server, options or AccstatzOptions())
        self.table = AccountTable(self.options, server.name)
        self._accounts_listed = 0
        #: The exporter's clock, for the TTL (a simulated one in tests).
        self.clock = time.time

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--accstatz.max-accounts", dest="accstatz_max_accounts", type=positive_int,
            default=1000, metavar="N",
            help="most accounts exported on their own; when full, an active account replaces "
                 "one gone or idle, else it is summed into the account labelled _other "
                 "(default: %(default)s)")
        group.add_argument(
            "--accstatz.account-ttl", dest="accstatz_account_ttl", type=non_negative_seconds,
            default=3600.0, metavar="DURATION",
            help="how long an account the server no longer lists keeps its series (default: 1h)")
        group.add_argument(
            "--accstatz.top-k", dest="accstatz_top_k", type=non_negative_int, default=10,
            metavar="K", help="accounts listed with the highest message rates, exported on their "
                              "own or not (default: %(default)s)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> AccstatzOptions:
        return AccstatzOptions(args.accstatz_max_accounts, args.accstatz_account_ttl,
                               args.accstatz_top_k)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self.follow(info)
        body = await self._read(source)
        self._samples = await off_loop(len(body), self._apply, body, self.clock())

    def restarted(self) -> None:
        # A restarted server counts every account from 0 again.
        self.table = AccountTable(self.options, self.server.name)

    async def _read(self, source: Source) -> bytearray:
        return await source.get(self.endpoint, {"unused": "true"},
                                expect={"accounts": with_margin(self._accounts_listed)})

    def _apply(self, body: bytes | bytearray, now: float) -> Samples:
        listed_at, rows = decode(body)
        self._accounts_listed = len(rows)
        return self.table.update(listed_at, rows, now)
