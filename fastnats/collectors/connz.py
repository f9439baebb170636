"""The /connz collector: every open connection, and those closed since the last refresh, folded
by the core into per-group counters, distributions and top-K.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..errors import ConnzDecodeError, ScrapeError
from ..flags import field_list, non_negative_int, non_negative_seconds, positive_int
from ..rfc3339 import parse_rfc3339_ns
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source, with_margin

log = logging.getLogger("fastnats.scrape")


@dataclass(frozen=True, slots=True)
class ConnzOptions:
    """How /connz is aggregated; shared by every monitored server."""

    group_by: tuple[str, ...] = m.DEFAULT_GROUP_BY
    max_groups: int = 1000
    group_ttl: float = 3600.0
    top_k: int = 10
    per_connection: bool = False
    per_connection_max: int = 1000


# The first bytes of a /connz body hold its counts and time, before the connections array.
_CONNZ_HEAD = re.compile(rb'"total"\s*:\s*(\d+)')
_CONNZ_COUNT = re.compile(rb'"num_connections"\s*:\s*(\d+)')
_CONNZ_NOW = re.compile(rb'"now"\s*:\s*"([^"\\]*)"')
_STOP = re.compile(rb'"stop"\s*:\s*"([^"\\]*)"')

#: Closed connections asked for by each request after the first (about 1 KiB of JSON each).
CLOSED_PAGE = 1000
#: The fewest the first closed request asks for; most refreshes need no second request.
CLOSED_FIRST = 32
#: Closes /varz may count before the server has put them in its closed list.
RING_SLACK = 64
#: Closed connections nats-server keeps by default (``max_closed_clients``).
CLOSED_HELD = 10_000


def connz_total(body: bytes | bytearray) -> int | None:
    match = _CONNZ_HEAD.search(body, 0, 4096)
    return int(match[1]) if match else None


async def read_pages(source: Source, endpoint: str,
                     params: dict[str, str | int]) -> list[bytearray]:
    """One listing, as the pages the source splits it into (``get_pages``, a source whose
    replies are bounded in size), else as one page."""
    get_pages = getattr(source, "get_pages", None)
    if get_pages is None:
        return [await source.get(endpoint, params)]
    pages: list[bytearray] = await get_pages(endpoint, params)
    return pages


def open_most(info: ServerInfo, listed: int) -> int:
    """The most open connections a truthful /connz can count, from /varz's clients and
    leafnodes (/connz lists both) and the ``listed`` total of the last listing: room for as
    many again opened while the request was on its way."""
    return 2 * with_margin(max(listed, info.connections + info.leafnodes))


def closed_most(info: ServerInfo) -> int:
    """The most a truthful closed /connz can hold: nats-server keeps ``max_closed_clients``
    (``CLOSED_HELD`` by default), and no more than /varz counts closed (``total_connections -
    connections``; leafnodes are not counted there, so never less than the default), with room
    for closes since /varz."""
    return with_margin(max(CLOSED_HELD, info.total_connections - info.connections)) + RING_SLACK


async def read_closed_page(source: Source, offset: int, limit: int, info: ServerInfo,
                           first: bool) -> tuple[list[bytearray], int, int, int | None]:
    """One page of ``state=closed&sort=stop`` from ``offset``, as the parts its source splits it
    into (each listed after the one before), read as one page: the parts, the list's ``total``
    (part 0's), the connections listed and the stop time of the last one (of the last part that
    lists any; None if none does). The ``first`` page's total must be one the server can hold
    (``closed_most``): paging follows it."""
    parts = await read_pages(source, "connz", {
        "state": "closed", "sort": "stop", "auth": "true", "offset": offset, "limit": limit})
    total = _head_int(parts[0], _CONNZ_HEAD, "total")
    if first and total > (most := closed_most(info)):
        raise _decode_error(
            f"/connz state=closed says total={total} but /varz counts "
            f"{info.total_connections - info.connections} closed connections and nats-server "
            f"keeps {CLOSED_HELD} by default: over {most}, not read")
    count = 0
    oldest = None
    for part in parts:
        found = _head_int(part, _CONNZ_COUNT, "num_connections")
        if found:
            oldest = last_stop(part)
        count += found
    return parts, total, count, oldest


def closed_reads(total: int) -> int:
    """The most closed reads of a list of ``total``: closes during the read shift it, a few
    pages more than it holds."""
    return -(-total // CLOSED_PAGE) + 2


def _decode_error(what: str) -> ScrapeError:
    return ScrapeError(ConnzCollector.endpoint, DECODE, what)


def _head_int(body: bytes | bytearray, pattern: re.Pattern[bytes], what: str) -> int:
    match = pattern.search(body, 0, 4096)
    if match is None:
        raise _decode_error(f"/connz has no {what} before its connections")
    return int(match[1])


def _time_ns(raw: bytes, what: str) -> int:
    try:
        return parse_rfc3339_ns(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _decode_error(f"/connz {what} is {raw[:40]!r}, not an RFC 3339 time") from None


def listing_time(body: bytes | bytearray) -> int:
    """The server's clock when it made a /connz listing (``now``), in Unix nanoseconds."""
    match = _CONNZ_NOW.search(body, 0, 4096)
    if match is None:
        raise _decode_error("/connz has no now before its connections")
    return _time_ns(match[1], "now")


def last_stop(body: bytes | bytearray) -> int:
    """The stop time of the last connection of a closed listing, in Unix nanoseconds: sorted by
    stop, the oldest on the page. A string value cannot hold ``"stop":`` unescaped, so the last
    match is that connection's field."""
    at = len(body)
    while (at := body.rfind(b'"stop"', 0, at)) >= 0:
        match = _STOP.match(body, at)
        if match is not None:
            return _time_ns(match[1], "stop")
    raise _decode_error("a closed /connz listing has a connection without a stop time")


_group_by = field_list(m.GROUP_BY_FIELDS)


class ConnzCollector(Collector):
    """Fetches every open connection, and those closed since the last refresh, each refresh.

    One request asks for all open connections: nats-server builds and sorts every connection
    before it cuts a page, so paging would cost it more. The limit comes from the previous count
    or /varz, plus a margin; if the server still has more, the request is repeated larger.
    A source whose replies are bounded in size (the system account's, by ``max_payload``)
    splits a listing into pages itself (``read_pages``); the aggregator reads them as one.
    A ``total`` no truthful server could send (``open_most``, ``closed_most``) is a decode
    error, never asked for nor paged through.

    Closed connections carry their final counters. They are read by a watermark, not by a
    count: ``state=closed&sort=stop`` lists the most recent first, and the collector pages
    through it (the first page sized from /varz, then CLOSED_PAGE at a time) until a page ends
    with a connection that stopped before the watermark, or the list ends. The watermark is the
    server's clock at the previous open listing less the aggregator's ``closed_slack``, because
    nats-server stamps a connection's stop before it files it in the list; what the slack makes
    the collector read twice, the aggregator recognises by cid. The list holds the last
    ``max_closed_clients`` closes (10,000 by default). When a read reaches its end before the
    watermark and the list is known to be full, closes were dropped before they could be read:
    the aggregator counts those connections in nats_client_connections_lost_total (in their group
    if they were seen open, with the counters last seen; in the ``_unknown`` group if not) and
    the collector logs the refresh once.

    Group table. ``--connz.max-groups`` bounds the groups; when the table is full a new group
    takes the place of a group with no connection left, first one that never carried traffic,
    then one whose connections all opened and closed between two refreshes, least recently
    active first. Only when there is none does the connection go to ``_other``. Names thrown
    away by a client that connects and leaves cannot keep real clients out: holding a group's
    place needs a connection that stays open across a refresh and carries traffic. Other
    groups keep their counters for ``--connz.group-ttl`` after their last connection left.

    Label values. The exporter's markers are ``_other`` and ``_unknown``; a client value made of
    underscores followed by ``other`` or ``unknown`` is exported with one more underscore
    (``metrics.client_value``), so no client can produce a marker's series.
    """

    name = "connz"
    endpoint = "connz"
    help = "per-client aggregates, distributions and top-K from every connection in /connz"
    families = m.CONNZ
    MAX_ATTEMPTS = 3

    options: ConnzOptions

    def __init__(self, server: ServerContext, options: ConnzOptions | None = None) -> None:
        super().__init__(server, options or ConnzOptions())
        #: The families of the last good read; kept when one read fails to decode.
        self._samples: Samples = {}
        #: The exporter's clock, for rates and TTLs (a simulated one in tests).
        self.clock = time.time
        self.restarted()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--connz.group-by", dest="group_by", type=_group_by, metavar="FIELDS",
            default=m.DEFAULT_GROUP_BY,
            help=f"comma-separated connection fields that group the client aggregates, from "
                 f"{', '.join(m.GROUP_BY_FIELDS)} (default: {','.join(m.DEFAULT_GROUP_BY)})")
        group.add_argument(
            "--connz.max-groups", dest="max_groups", type=positive_int, default=1000,
            metavar="N", help="most client groups exported; when full, a new group replaces "
                              "one without connections that never carried traffic or whose "
                              "connections all lived between two refreshes, else it goes into "
                              "the group labelled _other (default: %(default)s)")
        group.add_argument(
            "--connz.group-ttl", dest="group_ttl", type=non_negative_seconds, default=3600.0,
            metavar="DURATION", help="how long a group with no open connection keeps its "
                                    "counters, unless a full table needs its place "
                                    "(default: 1h)")
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

    def restarted(self) -> None:
        options = self.options
        self.aggregator = impl.ConnzAggregator(
            options.group_by, options.max_groups, options.group_ttl, options.top_k,
            options.per_connection, options.per_connection_max)
        self._last_total_connections: int | None = None
        self._last_open = 0
        #: Closed connections that stopped before this (server clock, Unix ns) were read.
        self._watermark: int | None = None
        #: The oldest stop time a closed read showed; a list that lost it is full.
        self._oldest_stop: int | None = None
        self._ring_full = False

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self.follow(info)
        limit = with_margin(max(self.aggregator.total, info.connections))
        most = open_most(info, self.aggregator.total)
        for _ in range(self.MAX_ATTEMPTS):
            open_pages = await read_pages(
                source, self.endpoint,
                {"state": "open", "limit": limit, "auth": "true", "subs": "false"})
            totals = [connz_total(page) for page in open_pages]
            total = max((t for t in totals if t is not None), default=None)
            if total is None or total <= limit:
                break
            if total > most:
                # Asked for, its connections would pass every bound set from what /varz said.
                raise _decode_error(
                    f"/connz says total={total} but /varz counts {info.connections} "
                    f"connections and {info.leafnodes} leafnodes: over {most}, not read")
            limit = with_margin(total)
        # Closes after the first page's listing were read as open or are read as closed next.
        listed_at = listing_time(open_pages[0])
        open_body = open_pages[0] if len(open_pages) == 1 else open_pages
        closed_pages: list[bytearray] | None = None
        overflow = False
        oldest = None
        if self._watermark is not None:
            closed_pages, overflow, oldest = await self._read_closed(source, info, self._watermark)
        aggregator = self.aggregator
        lost_before = aggregator.lost_known, aggregator.lost_unknown
        try:
            await asyncio.to_thread(aggregator.update, open_body, closed_pages, self.clock(),
                                    overflow, info.total_connections)
        except ConnzDecodeError as exc:
            raise ScrapeError(self.endpoint, DECODE, str(exc)) from None
        watermark = listed_at - round(aggregator.closed_slack * 1e9)
        if self._watermark is None or watermark > self._watermark:
            self._watermark = watermark
        if oldest is not None and (self._oldest_stop is None or oldest < self._oldest_stop):
            self._oldest_stop = oldest
        self._last_total_connections = info.total_connections
        self._last_open = aggregator.count
        self._samples = aggregator.families()
        seen = aggregator.lost_known - lost_before[0]
        unseen = aggregator.lost_unknown - lost_before[1]
        if seen or unseen:
            log.warning(
                "server %s: %d connections closed and left nats-server's list of closed "
                "connections before a refresh could read them (%d seen open, counted with the "
                "counters last seen; %d never seen); see nats_client_connections_lost_total. "
                "Raise max_closed_clients in the server's configuration, or refresh more often",
                self.server.name, seen + unseen, seen, unseen)

    async def _read_closed(self, source: Source, info: ServerInfo,
                           watermark: int) -> tuple[list[bytearray], bool, int | None]:
        """The pages of closed connections down to ``watermark``; whether closes were dropped
        before they could be read; the oldest stop time read."""
        # The first page holds what /varz says closed since the last refresh, with a margin.
        opened = info.total_connections - (self._last_total_connections or 0)
        estimate = with_margin(max(self._last_open + opened - info.connections, 0))
        limit = min(max(estimate, CLOSED_FIRST), CLOSED_PAGE)
        pages: list[bytearray] = []
        offset = 0
        oldest: int | None = None
        most = 1
        reads = 0
        while True:
            parts, total, count, last = await read_closed_page(source, offset, limit, info,
                                                               not reads)
            pages += parts
            reads += 1
            if last is not None:
                oldest = last
            if reads == 1:
                most = closed_reads(total)
            if count and oldest is not None and oldest < watermark:
                return pages, False, oldest
            offset += count
            if count < limit or offset >= total or reads >= most:
                break
            limit = CLOSED_PAGE
        # The end of the list, and everything in it stopped after the watermark.
        if not self._ring_full:
            self._ring_full = (
                total + RING_SLACK < info.total_connections - info.connections
                or (oldest is not None and self._oldest_stop is not None
                    and oldest > self._oldest_stop))
        return pages, self._ring_full and offset > 0, oldest
