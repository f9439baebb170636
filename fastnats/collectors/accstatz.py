"""The /accstatz collector: per-account connections, subscriptions and message counters, with a
cap on the accounts exported on their own, an ``_other`` account for the rest, and top-K rates.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..flags import non_negative_int, non_negative_seconds, positive_int
from .base import (
    Collector,
    Samples,
    ServerContext,
    ServerInfo,
    Source,
    with_margin,
)
from .decode import off_loop

log = logging.getLogger("fastnats.scrape")

ENDPOINT = "accstatz"

@dataclass(frozen=True, slots=True)
class AccstatzOptions:
    """How accounts are exported; shared by every monitored server."""

    max_accounts: int = 1000
    account_ttl: float = 3600.0
    top_k: int = 10


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
    of one that has been gone longest, else one that was never active, else one idle for five
    refreshes or more, least recently active first, ties by name; otherwise it is summed into
    ``_other``. New accounts claim places active ones first, then by name; an account in
    ``_other`` that becomes active competes for a place the same way, the busiest first.
    ``_other``'s counters add what its members' counters moved while they were members (an
    account that first appears in ``_other`` brings its whole count), so accounts moving in and
    out never make them fall. An account the server no longer lists keeps its counters for
    ``--accstatz.account-ttl``, then is forgotten.

    The table is ``impl.AccstatzTable``: the compiled core's (``_core/accstatz*.pxi``), which
    scans the body without building it, or its reference twin (``_reference/accstatz.py``).
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
        self.table = self._table()
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
        self.table = self._table()

    def _table(self) -> impl.AccstatzTable:
        return impl.AccstatzTable(self.options.max_accounts, self.options.account_ttl,
                                  self.options.top_k, self.server.name)

    async def _read(self, source: Source) -> bytearray:
        return await source.get(self.endpoint, {"unused": "true"},
                                expect={"accounts": with_margin(self._accounts_listed)})

    def _apply(self, body: bytes | bytearray, now: float) -> Samples:
        folds = self.table.folds
        samples = self.table.update(body, now)
        self._accounts_listed = self.table.listed
        if not folds and self.table.folds:
            log.warning("server %s: a counter of account %r fell without a server restart (the "
                        "account was removed and created again?); its exported counters "
                        "continue from their last values. Logged once",
                        self.server.name, self.table.first_folded)
        return samples
