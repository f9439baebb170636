"""The /connz collector: every open connection, and those closed since the last refresh, folded
by the core into per-group counters, distributions and top-K.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..errors import ConnzDecodeError, ScrapeError
from ..flags import non_negative_int, non_negative_seconds, positive_int
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source


@dataclass(frozen=True, slots=True)
class ConnzOptions:
    """How /connz is aggregated; shared by every monitored server."""

    group_by: tuple[str, ...] = m.DEFAULT_GROUP_BY
    max_groups: int = 1000
    group_ttl: float = 3600.0
    top_k: int = 10
    per_connection: bool = False
    per_connection_max: int = 1000


# The first bytes of a /connz body hold its counts, before the connections array.
_CONNZ_HEAD = re.compile(rb'"total"\s*:\s*(\d+)')


def connz_total(body: bytes | bytearray) -> int | None:
    match = _CONNZ_HEAD.search(body, 0, 4096)
    return int(match[1]) if match else None


def _group_by(text: str) -> tuple[str, ...]:
    fields = tuple(field.strip() for field in text.split(","))
    for field in fields:
        if field not in m.GROUP_BY_FIELDS:
            raise argparse.ArgumentTypeError(
                f"cannot group by {field!r}; choose from {', '.join(m.GROUP_BY_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise argparse.ArgumentTypeError(f"a field is listed twice: {text!r}")
    return fields


class ConnzCollector(Collector):
    """Fetches every open connection, and those closed since the last refresh, each refresh.

    One request asks for all open connections: nats-server builds and sorts every connection
    before it cuts a page, so paging would cost it more. The limit comes from the previous count
    or /varz, plus a margin; if the server still has more, the request is repeated larger.
    Closed connections carry their final counters; only the ones closed since the previous
    refresh are asked for (the most recent first), estimated from /varz.
    """

    name = "connz"
    endpoint = "connz"
    help = "per-client aggregates, distributions and top-K from every connection in /connz"
    families = m.CONNZ
    MAX_ATTEMPTS = 3

    options: ConnzOptions

    def __init__(self, server: ServerContext, options: ConnzOptions | None = None) -> None:
        super().__init__(server, options or ConnzOptions())
        self._identity: tuple[str, str] | None = None
        #: The families of the last good read; kept when one read fails to decode.
        self._samples: Samples = {}
        self._restart()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--connz.group-by", dest="group_by", type=_group_by, metavar="FIELDS",
            default=m.DEFAULT_GROUP_BY,
            help=f"comma-separated connection fields that group the client aggregates, from "
                 f"{', '.join(m.GROUP_BY_FIELDS)} (default: {','.join(m.DEFAULT_GROUP_BY)})")
        group.add_argument(
            "--connz.max-groups", dest="max_groups", type=positive_int, default=1000,
            metavar="N", help="most client groups exported; the rest go into one group "
                              "labelled _other (default: %(default)s)")
        group.add_argument(
            "--connz.group-ttl", dest="group_ttl", type=non_negative_seconds, default=3600.0,
            metavar="DURATION", help="how long a group with no open connection keeps its "
                                    "counters (default: 1h)")
        group.add_argument(
            "--connz.top-k", dest="top_k", type=non_negative_int, default=10, metavar="K",
            help="connections listed with the most pending bytes and the highest message "
                 "rates (default: %(default)s)")
        group.add_argument(
            "--connz.per-connection", dest="per_connection", action="store_true",
            help="also export one series per connection (high cardinality)")
        group.add_argument(
            "--connz.per-connection-max", dest="per_connection_max", type=non_negative_int,
            default=1000, metavar="N",
            help="most connections exported by --connz.per-connection (default: %(default)s)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> ConnzOptions:
        return ConnzOptions(args.group_by, args.max_groups, args.group_ttl, args.top_k,
                            args.per_connection, args.per_connection_max)

    def label_names(self, metric: m.Metric) -> tuple[str, ...]:
        return self.options.group_by if metric.labels == (m.GROUP_LABELS,) else metric.labels

    def _restart(self) -> None:
        options = self.options
        self.aggregator = impl.ConnzAggregator(
            options.group_by, options.max_groups, options.group_ttl, options.top_k,
            options.per_connection, options.per_connection_max)
        self._last_total_connections: int | None = None
        self._last_open = 0

    @staticmethod
    def _margin(n: int) -> int:
        return n + n // 8 + 64

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        if info.identity != self._identity:
            # A restarted server numbers its connections from 1 again and starts its counters
            # afresh: per-cid state from before would be wrong.
            if self._identity is not None:
                self._restart()
            self._identity = info.identity
        limit = self._margin(max(self.aggregator.total, info.connections))
        for _ in range(self.MAX_ATTEMPTS):
            open_body = await source.get(
                self.endpoint, {"state": "open", "limit": limit, "auth": "true", "subs": "false"})
            total = connz_total(open_body)
            if total is None or total <= limit:
                break
            limit = self._margin(total)
        closed_body = None
        if self._last_total_connections is not None:
            opened = info.total_connections - self._last_total_connections
            closed_since = max(self._last_open + opened - info.connections, 0)
            if closed_since:
                closed_body = await source.get(self.endpoint, {
                    "state": "closed", "sort": "stop", "auth": "true",
                    "limit": self._margin(closed_since)})
        try:
            await asyncio.to_thread(self.aggregator.update, open_body, closed_body, time.time())
        except ConnzDecodeError as exc:
            raise ScrapeError(self.endpoint, DECODE, str(exc)) from None
        self._last_total_connections = info.total_connections
        self._last_open = self.aggregator.count
        self._samples = self.aggregator.families()

    def samples(self) -> Samples:
        return self._samples

    def failed(self, error: ScrapeError) -> None:
        # The server answers /varz, so it is up; a bad /connz body keeps the previous aggregates
        # (the aggregator's state is unchanged), a failed request drops them.
        if error.reason != DECODE:
            self._samples = {}
