"""The /leafz collector: every leafnode connection, folded by the core's ``LeafzAggregator`` into
per-group counters, an rtt distribution and top-K, with the final counters of the leafnodes that
closed read from /connz?state=closed.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections import deque
from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..errors import ConnzDecodeError, LeafzDecodeError, ScrapeError
from ..flags import field_list, non_negative_int, non_negative_seconds, positive_int
from ..rfc3339 import parse_rfc3339_ns
from .base import DECODE, Collector, ServerContext, ServerInfo, Source, with_margin
from .connz import CLOSED_FIRST, CLOSED_PAGE, closed_reads, read_closed_page
from .decode import off_loop

log = logging.getLogger("fastnats.scrape")

#: Listings a leafnode that vanished may have been last seen in while its closed entry is still
#: awaited: the one before it vanished, and the one before that (the core's LZ_ABSENT_GRACE + 1).
_AWAITED_LISTINGS = 2

_LEAFZ_NOW = re.compile(rb'"now"\s*:\s*"([^"\\]*)"')


@dataclass(frozen=True, slots=True)
class LeafzOptions:
    """How /leafz is aggregated; shared by every monitored server."""

    group_by: tuple[str, ...] = m.DEFAULT_LEAF_GROUP_BY
    max_groups: int = 1000
    group_ttl: float = 3600.0
    top_k: int = 10


def _decode_error(what: str) -> ScrapeError:
    return ScrapeError(LeafzCollector.endpoint, DECODE, what)


def leafz_time(body: bytes | bytearray) -> int:
    """The server's clock when it made a /leafz listing (``now``), in Unix nanoseconds."""
    match = _LEAFZ_NOW.search(body, 0, 4096)
    if match is None:
        raise _decode_error("/leafz has no now before its leafnodes")
    try:
        return parse_rfc3339_ns(match[1].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _decode_error(f"/leafz now is {match[1][:40]!r}, not an RFC 3339 time") from None


_group_by = field_list(m.LEAF_GROUP_BY_FIELDS)


class LeafzCollector(Collector):
    """Reads every leafnode connection from /leafz each refresh; a hub may hold thousands.

    The body is scanned by the core without the GIL on a worker thread. Leafnodes are grouped by
    ``--leafz.group-by`` (account and name by default): connections, subscriptions, and messages
    and bytes in and out as counters that stay monotonic while leafnodes close and reconnect.
    /leafz carries no pending bytes, so there is no pending family for leafnodes.

    Closed leafnodes. /leafz lists only open leafnodes. When ids listed at the previous refresh
    are gone, the collector reads ``/connz?state=closed&sort=stop``, where nats-server files
    closed leafnodes with its clients (``"kind": "Leafnode"``, the cid being the /leafz id), the
    most recent first, until every vanished id is found or the list passes the listing time of
    the refresh they were last seen at. An id found there adds its exact final counters to its
    group; one not found (nats-server files a close a moment after the leafnode leaves /leafz)
    is looked for again at the next refresh, then given up: its group keeps the counters last
    seen, and it counts in nats_leafnode_connections_lost_total (and is logged). Every vanished
    id counts once in nats_leafnode_connections_closed_total. A refresh with no leafnode gone
    reads no /connz at all.
    A refresh that fails, /leafz or a closed page, commits nothing: the same leafnodes are looked
    for at the next one.

    Group table. ``--leafz.max-groups`` bounds the groups; the leafnodes of groups beyond it are
    counted in ``_other`` (nats_leafnode_group_overflow_total). A group with no leafnode keeps
    its counters for ``--leafz.group-ttl``. Label values follow ``metrics.client_value``, so no
    leafnode name reads as a marker. A restarted server (new identity) starts afresh.
    """

    name = "leafz"
    endpoint = "leafz"
    help = "per-group leafnode aggregates, rtt distribution and top-K from /leafz"
    families = m.LEAFZ

    options: LeafzOptions

    def __init__(self, server: ServerContext, options: LeafzOptions | None = None) -> None:
        super().__init__(server, options or LeafzOptions())
        #: The exporter's clock, for rates and TTLs (a simulated one in tests).
        self.clock = time.time
        self.restarted()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--leafz.group-by", dest="leafz_group_by", type=_group_by, metavar="FIELDS",
            default=m.DEFAULT_LEAF_GROUP_BY,
            help=f"comma-separated leafnode fields that group the leafnode aggregates, from "
                 f"{', '.join(m.LEAF_GROUP_BY_FIELDS)} "
                 f"(default: {','.join(m.DEFAULT_LEAF_GROUP_BY)})")
        group.add_argument(
            "--leafz.max-groups", dest="leafz_max_groups", type=positive_int, default=1000,
            metavar="N", help="most leafnode groups exported; the leafnodes of further groups "
                              "go into the group labelled _other (default: %(default)s)")
        group.add_argument(
            "--leafz.group-ttl", dest="leafz_group_ttl", type=non_negative_seconds,
            default=3600.0, metavar="DURATION",
            help="how long a leafnode group with no leafnode keeps its counters (default: 1h)")
        group.add_argument(
            "--leafz.top-k", dest="leafz_top_k", type=non_negative_int, default=10,
            metavar="K", help="leafnodes listed with the highest rtt and message rates "
                              "(default: %(default)s)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> LeafzOptions:
        return LeafzOptions(args.leafz_group_by, args.leafz_max_groups, args.leafz_group_ttl,
                            args.leafz_top_k)

    def label_names(self, metric: m.Metric) -> tuple[str, ...]:
        return self.options.group_by if metric.labels == (m.LEAF_GROUP_LABELS,) else metric.labels

    def restarted(self) -> None:
        options = self.options
        self.aggregator = impl.LeafzAggregator(options.group_by, options.max_groups,
                                               options.group_ttl, options.top_k)
        #: The server's clock (Unix ns) at the last listings read, oldest first.
        self._listed: deque[int] = deque(maxlen=_AWAITED_LISTINGS)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self.follow(info)
        aggregator = self.aggregator
        expected = with_margin(max(info.leafnodes, aggregator.count))
        body = await source.get(self.endpoint, expect={"leafnodes": expected})
        listed_at = leafz_time(body)
        lost_before = aggregator.lost
        try:
            wanted = await off_loop(len(body), aggregator.scan, body)
            if wanted:
                await self._read_closed(source, info, wanted)
            await off_loop(len(body), aggregator.commit, self.clock())
        except LeafzDecodeError as exc:
            raise ScrapeError(self.endpoint, DECODE, str(exc)) from None
        except ConnzDecodeError as exc:
            raise ScrapeError(self.endpoint, DECODE, f"/connz state=closed: {exc}") from None
        self._listed.append(listed_at)
        self._samples = aggregator.families()
        lost = aggregator.lost - lost_before
        if lost:
            log.warning(
                "server %s: %d leafnodes closed and their final counters were not found in "
                "nats-server's list of closed connections (counted with the counters last seen); "
                "see nats_leafnode_connections_lost_total. Raise max_closed_clients in the "
                "server's configuration, or refresh more often", self.server.name, lost)

    async def _read_closed(self, source: Source, info: ServerInfo, wanted: int) -> None:
        """Feed the aggregator closed /connz pages, the most recent first, until the ``wanted``
        vanished leafnodes are found or the pages pass the oldest listing they were seen in.
        A page is read as the /connz collector reads one (``read_closed_page``): in parts that
        each fit a source whose replies are bounded in size."""
        aggregator = self.aggregator
        watermark = (self._listed[0] - round(aggregator.closed_slack * 1e9)
                     if self._listed else None)
        limit = min(max(with_margin(wanted), CLOSED_FIRST), CLOSED_PAGE)
        offset = pages = 0
        most = 1
        try:
            while wanted:
                parts, total, count, oldest = await read_closed_page(source, offset, limit, info,
                                                                     not pages)
                pages += 1
                for part in parts:
                    wanted = await off_loop(len(part), aggregator.match_closed, part)
                if pages == 1:
                    most = closed_reads(total)
                if not count or (watermark is not None and oldest is not None
                                 and oldest < watermark):
                    return
                offset += count
                if count < limit or offset >= total or pages >= most:
                    return
                limit = CLOSED_PAGE
        except ScrapeError as exc:
            # The /leafz read depends on it: its error, with the request named.
            raise ScrapeError(self.endpoint, exc.reason,
                              f"/connz state=closed: {exc.detail}") from None
