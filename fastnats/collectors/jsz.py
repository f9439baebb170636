"""The /jsz collector: JetStream of a server, its accounts, streams and consumers. Each stream and
each consumer is exported once, by its leader; durable consumers get their own series under a
cap, with an ``_other`` consumer for the rest; ephemeral consumers are aggregated per stream; a
top-K lists the consumers with the most pending messages.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..errors import ScrapeError
from ..flags import non_negative_int
from ..interop import Sample
from ..rfc3339 import parse_rfc3339_ns
from .base import (
    DECODE,
    BoundedSource,
    Claims,
    Collector,
    Samples,
    ServerContext,
    ServerInfo,
    Source,
    bounded,
    with_margin,
)
from .decode import check_utf8, off_loop

ENDPOINT = "jsz"
#: ``--jsz.level``, each reading what the ones before it read and more.
LEVELS = ("server", "accounts", "streams", "consumers")
SERVER, ACCOUNTS, STREAMS, CONSUMERS = range(4)

#: Accounts asked for per request: nats-server's own default page. Every request makes the
#: server count every stream of every account again, so fewer pages cost it less.
ACCOUNTS_PER_PAGE = 1024
#: The share of a bounded source's budget a page is sized for: accounts differ in size, and
#: grow between two reads.
PAGE_FILL = 0.75
#: Wire bytes counted on per account, stream and consumer before a read measured them: about
#: their size as compact JSON, which a compressed reply takes several times less of.
FIRST_BYTES = (256, 1024, 768)
#: The least wire bytes per account a measure is taken for.
MIN_ACCOUNT_BYTES = 32


class AccountPages:
    """How many accounts a page of /jsz asks for from a source whose replies must each fit a
    budget on the wire (``base.bounded``: the system account's, under ``max_payload``).

    A page of n accounts is counted at the reply's head (``head``, the size of the plain /jsz
    read first) and n times the bytes per account, and sized for ``PAGE_FILL`` of the budget.
    The bytes per account are the most that a page of the last read took per account. Before
    a read measured them, they are estimated from the probe's accounts, streams and consumers
    at ``FIRST_BYTES`` each, as though spread evenly over the accounts: the first read.

    When the server's counts changed since the measure, it is scaled by how their estimate
    changed. /jsz cannot split an account: one whose listing alone is over the budget is still
    asked for, alone in its page. The budget is the smallest ``max_payload`` the exporter
    knows, not always one on the reply's way, so such a reply may well come (a reply that came
    proves its way carries it). A reply too large for a hop on its way never comes (the hop
    closes the link): a page that timed out halves the pages of the reads after it, until one
    completes.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.head = 0
        #: Wire bytes per account, measured; None before a read measured them.
        self.per_account: float | None = None
        #: The server's (accounts, streams, consumers) when ``per_account`` was measured.
        self.measured_for = (0, 0, 0)
        self.cap = ACCOUNTS_PER_PAGE

    def estimate(self, held: tuple[int, int, int]) -> float:
        """Wire bytes per account from the server's counts, at ``FIRST_BYTES`` each."""
        accounts, streams, consumers = held
        total = FIRST_BYTES[0] * accounts
        if self.depth >= STREAMS:
            total += FIRST_BYTES[1] * streams
        if self.depth >= CONSUMERS:
            total += FIRST_BYTES[2] * consumers
        return max(total / max(accounts, 1), MIN_ACCOUNT_BYTES)

    def per(self, held: tuple[int, int, int]) -> float:
        """Wire bytes per account counted on, the server holding ``held`` now."""
        if self.per_account is None:
            return self.estimate(held)
        if held == self.measured_for:
            return self.per_account
        return self.per_account * self.estimate(held) / self.estimate(self.measured_for)

    def size(self, budget: int, held: tuple[int, int, int]) -> int:
        """Accounts per page, between 1 and ``ACCOUNTS_PER_PAGE``."""
        fit = int((budget * PAGE_FILL - self.head) / self.per(held))
        return max(1, min(fit, self.cap, ACCOUNTS_PER_PAGE))

    def measure(self, replies: list[tuple[int, int]], held: tuple[int, int, int]) -> None:
        """Take the (wire bytes, accounts listed) of each reply of a whole read."""
        per = [(wire - self.head) / listed for wire, listed in replies if listed]
        if per:
            self.per_account = max(*per, MIN_ACCOUNT_BYTES)
            self.measured_for = held
        self.cap = ACCOUNTS_PER_PAGE

    def lost(self, limit: int) -> None:
        """A page of ``limit`` accounts timed out."""
        self.cap = max(1, limit // 2)

#: The families whose series carry ``replica_role`` under ``--jsz.replicas``: what a follower
#: holds of a stream (its state and its configured limits), so that a fill ratio divides
#: series of the same replica. The mirror, source and replica families come from the leader's
#: view only (a follower knows neither its sources nor the other replicas), and the consumer
#: families follow the consumer's leader, whatever the stream's.
ROLE_FAMILIES = (
    m.NATS_JETSTREAM_STREAM_MESSAGES, m.NATS_JETSTREAM_STREAM_BYTES,
    m.NATS_JETSTREAM_STREAM_FIRST_SEQUENCE, m.NATS_JETSTREAM_STREAM_LAST_SEQUENCE,
    m.NATS_JETSTREAM_STREAM_DELETED_MESSAGES, m.NATS_JETSTREAM_STREAM_SUBJECTS,
    m.NATS_JETSTREAM_STREAM_CONSUMERS, m.NATS_JETSTREAM_STREAM_MAX_BYTES,
    m.NATS_JETSTREAM_STREAM_MAX_MESSAGES, m.NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS)
_STATE_FAMILIES = ROLE_FAMILIES[:7]
_LIMIT_FAMILIES = ROLE_FAMILIES[7:]
#: The families of a stream that its leader exports: labels (account, stream, ...).
_STREAM_CLAIMED = (
    *ROLE_FAMILIES, m.NATS_JETSTREAM_STREAM_SOURCE_LAG,
    m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS, m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT,
    m.NATS_JETSTREAM_STREAM_REPLICA_OFFLINE, m.NATS_JETSTREAM_STREAM_REPLICA_LAG)
_DURABLE_FAMILIES = (
    m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES, m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES,
    m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES, m.NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS,
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE)
#: ``_other`` sums the first four; sequences of different consumers do not add up.
_OTHER_VALUES = 4
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_]")


def meta_label(key: str) -> str:
    """The label name of a metadata key: ``meta_`` and the key with every character that a
    label name cannot hold (anything but ASCII letters, digits and ``_``) replaced by ``_``:
    ``env.tier`` becomes ``meta_env_tier``, ``1x`` ``meta_1x``, ``__x`` ``meta___x``, ``é``
    ``meta__``. The prefix keeps it off a leading digit and the reserved ``__``."""
    return "meta_" + _NOT_LABEL.sub("_", key)


#: The most metadata keys per flag (the compiled walk looks them up in a fixed table).
MAX_META_KEYS = 64


def meta_keys(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated metadata keys (see ``check_meta_keys``); an empty or
    blank value is no key."""
    if not text.strip():
        return ()
    keys = tuple(key.strip() for key in text.split(","))
    check_meta_keys(keys)
    return keys


def check_meta_keys(keys: tuple[str, ...]) -> None:
    """Raise ArgumentTypeError unless the keys can be labels: at most ``MAX_META_KEYS``, none
    empty or not encodable as UTF-8 (a JSON key cannot be), and no two with the same label
    name, which must be a valid one."""
    if len(keys) > MAX_META_KEYS:
        raise argparse.ArgumentTypeError(
            f"{len(keys)} metadata keys; at most {MAX_META_KEYS}")
    labels: dict[str, str] = {}
    for key in keys:
        if not key:
            raise argparse.ArgumentTypeError(f"an empty metadata key in {','.join(keys)!r}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise argparse.ArgumentTypeError(f"metadata key {key!r} is not UTF-8") from None
        label = meta_label(key)
        if not m.is_label_name(label):
            raise argparse.ArgumentTypeError(f"metadata key {key!r} makes no label name")
        if label in labels:
            raise argparse.ArgumentTypeError(
                f"metadata keys {labels[label]!r} and {key!r} would both be the label {label}")
        labels[label] = key


@dataclass(frozen=True, slots=True)
class JszOptions:
    """What /jsz is read for; shared by every monitored server."""

    level: str = "streams"
    replicas: bool = False
    max_consumers: int = 1000
    top_k: int = 10
    stream_meta_keys: tuple[str, ...] = ()
    consumer_meta_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"--jsz.level {self.level!r}: one of {', '.join(LEVELS)}")
        for keys in (self.stream_meta_keys, self.consumer_meta_keys):
            try:
                check_meta_keys(keys)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None

    @property
    def depth(self) -> int:
        return LEVELS.index(self.level)


#: What one refresh reads of /jsz, page by page (``_core/jsz.pxi``, or ``_reference/jsz.py``):
#: ``read(body)`` takes a page and returns how many accounts it listed, or raises the /jsz decode
#: error; the listing is then dropped.
Listing = impl.JszListing


def _read(listing: Listing, body: bytearray) -> int:
    # The core decodes only the strings it exports; JSON is UTF-8 throughout, or it is no
    # /jsz body (the reference, through orjson, refuses it the same way).
    check_utf8(ENDPOINT, body)
    return listing.read(body)


class ConsumerTable:
    """Which durable consumers have their own series, across refreshes: a consumer keeps its
    place while the server lists it as led here; free places go to new ones in name order; the
    rest are summed into ``_other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.placed: set[tuple[str, str, str]] = set()

    def update(self, rows: list[tuple[tuple[str, str, str], tuple[str, ...], tuple[int, ...]]]
               ) -> tuple[list[tuple[tuple[str, ...], tuple[int, ...]]], list[int], int]:
        """The consumers with their own series, ``_other``'s sums, and how many it holds."""
        placed = self.placed
        placed.intersection_update([row[0] for row in rows])
        own = [(labels, values) for key, labels, values in rows if key in placed]
        newcomers = [row for row in rows if row[0] not in placed]
        free = self.cap - len(placed)
        if newcomers and free > 0:
            newcomers.sort(key=lambda row: row[0])
            taken, newcomers = newcomers[:free], newcomers[free:]
            placed.update(row[0] for row in taken)
            own.extend((labels, values) for _, labels, values in taken)
        other = [0] * _OTHER_VALUES
        for _, _, values in newcomers:
            for i in range(_OTHER_VALUES):
                other[i] += values[i]
        return own, other, len(newcomers)


class JszCollector(Collector):
    """Reads /jsz at ``--jsz.level``, paging by account (``offset``/``limit``) until the
    server's ``total`` is read.

    Requests. ``server`` asks for /jsz alone; ``accounts`` adds ``accounts=true``; ``streams``
    adds ``streams=true&config=true`` (config carries the limits and the metadata), and
    ``stream-leader-only=true`` unless ``--jsz.replicas``; ``consumers`` adds
    ``consumers=true`` and reads every stream held here, since a consumer's leader need not be
    its stream's. Since 2.11.10 nats-server sorts the accounts by name whenever a limit is
    given and reports ``total``; an older one gives no total and sorts only past offset 0, so
    there one page is asked for, as large as its ``accounts`` count. The size bound of a reply
    follows the streams and consumers the server held at the last refresh; the first refresh
    learns them from a plain /jsz first. A source whose replies must fit a size on the wire
    (the system account's) gets pages sized to fit it (``AccountPages``). A total that grows
    past the first page's (and the last read's) with a margin is a decode error, and pages
    holding more bytes than one reply of the whole listing may (its source's ``limits``) are
    too large: a lying total cannot keep the pages coming.

    Once. A stream is exported by its leader (``cluster.leader`` is this server's name,
    ``ServerInfo.server_name``; a stream without a cluster block lives here alone). A
    leaderless stream (an election under way) is exported by no server until it has a leader.
    A mirror or source listed twice (the same stream with other filters) is exported once, with
    the worst lag and last-seen time. A consumer is exported by its own leader. A stale view
    after a restart would count a stream or consumer twice, so no claim is believed from a
    clustered server that knows no meta leader, for a replicated stream without a raft group,
    for a consumer without a cluster block on a clustered server or of a replicated stream
    (for about 10 ms after a restart nats-server lists no ``meta_cluster``), or from a leader
    that lists itself among ``cluster.replicas`` (nats-server leaves the answering server out
    of them whenever it knows the leader: clusterInfo in server/jetstream_cluster.go). With
    ``--jsz.replicas`` a follower exports the families in ``ROLE_FAMILIES`` too, every
    stream's series with ``replica_role`` leader or follower.

    Consumers. A consumer with ``config.durable_name`` is durable (2.15 lists a named
    ephemeral consumer with ``name`` and ``inactive_threshold`` but no ``durable_name``).
    ``--jsz.max-consumers`` durable consumers get their own series (``ConsumerTable``); the
    others are summed into one consumer whose account, stream and consumer are all ``_other``
    (pending, ack pending, redelivered and waiting only: sequences do not add up), counted in
    nats_jetstream_consumer_overflow. Ephemeral consumers are aggregated per stream, on each
    server that leads at least one of them. The top-K is over every consumer led here.

    Labels. Account is the account's unique name (``id``: its public key in operator mode);
    stream, consumer, source and metadata values go through ``metrics.client_value``, so a
    stream named ``_other`` is exported as ``__other``. ``--jsz.stream-meta-keys`` and
    ``--jsz.consumer-meta-keys`` add a label ``meta_<key>`` per key (``meta_label``), after
    the account, stream and consumer labels.
    """

    name = "jsz"
    endpoint = ENDPOINT
    help = "JetStream per server, account, stream and consumer from /jsz, each stream once"
    default = False
    families = m.JSZ

    options: JszOptions

    def __init__(self, server: ServerContext, options: JszOptions | None = None) -> None:
        super().__init__(server, options or JszOptions())
        options = self.options
        self._stream_labels = (*m.STREAM_BASE_LABELS,
                               *map(meta_label, options.stream_meta_keys))
        self._consumer_labels = (*m.CONSUMER_BASE_LABELS,
                                 *map(meta_label, options.consumer_meta_keys))
        self._other_labels = (m.OTHER_GROUP,) * 3 + ("",) * len(options.consumer_meta_keys)
        self._claims: Claims | None = None
        self.restarted()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--jsz.level", dest="jsz_level", choices=LEVELS, default="streams",
            help="how deep /jsz is read: server, accounts, streams or consumers, each with "
                 "the families of the ones before it (default: %(default)s)")
        group.add_argument(
            "--jsz.replicas", dest="jsz_replicas", action="store_true",
            help="also export each stream's state from its followers, with a replica_role "
                 "label (leader or follower) on the stream families")
        group.add_argument(
            "--jsz.max-consumers", dest="jsz_max_consumers", type=non_negative_int,
            default=1000, metavar="N",
            help="most durable consumers exported on their own, per server; the others are "
                 "summed into the consumer labelled _other (default: %(default)s)")
        group.add_argument(
            "--jsz.top-k", dest="jsz_top_k", type=non_negative_int, default=10, metavar="K",
            help="consumers listed with the most pending messages, durable or ephemeral "
                 "(default: %(default)s)")
        group.add_argument(
            "--jsz.stream-meta-keys", dest="jsz_stream_meta_keys", type=meta_keys, default=(),
            metavar="KEYS", help="comma-separated stream metadata keys exported as labels "
                                 "meta_<key> (other characters than letters, digits and _ "
                                 "become _), empty when a stream lacks the key")
        group.add_argument(
            "--jsz.consumer-meta-keys", dest="jsz_consumer_meta_keys", type=meta_keys,
            default=(), metavar="KEYS",
            help="comma-separated consumer metadata keys exported as labels meta_<key> on the "
                 "durable consumer families (named as for --jsz.stream-meta-keys)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> JszOptions:
        return JszOptions(args.jsz_level, args.jsz_replicas, args.jsz_max_consumers,
                          args.jsz_top_k, args.jsz_stream_meta_keys, args.jsz_consumer_meta_keys)

    def label_names(self, metric: m.Metric) -> tuple[str, ...]:
        labels: list[str] = []
        for label in metric.labels:
            if label == m.STREAM_LABELS:
                labels.extend(self._stream_labels)
            elif label == m.CONSUMER_LABELS:
                labels.extend(self._consumer_labels)
            else:
                labels.append(label)
        if self.options.replicas and metric in ROLE_FAMILIES:
            labels.append("replica_role")
        return tuple(labels)

    def restarted(self) -> None:
        self.table = ConsumerTable(self.options.max_consumers)
        #: (accounts, streams, consumers) the server held at the last refresh.
        self._held: tuple[int, int, int] | None = None
        self._pages = AccountPages(self.options.depth)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self.follow(info)
        read_at = time.monotonic()
        me = info.server_name or info.server_id
        options = self.options
        depth = options.depth
        params: dict[str, str | int] = {}
        if depth >= ACCOUNTS:
            params["accounts"] = "true"
        if depth >= STREAMS:
            params.update(streams="true", config="true")
            if depth == STREAMS and not options.replicas:
                params["stream-leader-only"] = "true"
        if depth >= CONSUMERS:
            params["consumers"] = "true"
        sized = bounded(source) if depth >= ACCOUNTS else None
        budget = None if sized is None else sized.reply_budget
        if self._held is None and depth >= ACCOUNTS:
            # A plain /jsz: the counts the pages follow, and their head; a few hundred bytes.
            probe = Listing(me, JszOptions("server"))
            body, self._pages.head = await self._get(source, sized, {})
            _read(probe, body)
            self._held = (probe.total, probe.streams_held, probe.consumers_held)
        listing = Listing(me, options)
        offset, pages = 0, 0
        limit = ACCOUNTS_PER_PAGE if budget is None or self._held is None else \
            self._pages.size(budget, self._held)
        replies: list[tuple[int, int]] = []
        most: int | None = None
        # The listing holds no more, across its pages, than one reply of it could.
        limits = getattr(source, "limits", None)
        held_most = None if limits is None or depth < ACCOUNTS else \
            max(limits.bounds(self.endpoint, params, self._expect()))
        held = 0
        accounts_most: int | None = None
        while True:
            page = dict(params)
            if depth >= ACCOUNTS:
                page.update(offset=offset, limit=limit)
            try:
                body, wire = await self._get(source, sized, page)
            except ScrapeError as exc:
                if budget is not None and exc.reason == "timeout":
                    self._pages.lost(limit)
                raise
            held += len(body)
            if held_most is not None and held > held_most:
                raise ScrapeError(self.endpoint, "too_large", (
                    f"/jsz pages took {held} bytes by offset {offset} (the server says "
                    f"total={listing.total} accounts), over the {held_most} one reply of the "
                    f"whole listing may take; raise --monitor.max-body-size-per-connection if "
                    f"this server is really that large"))
            before, page_offset = listing.total, offset
            listed = await off_loop(len(body), _read, listing, body)
            del body
            if accounts_most is None:
                accounts_most = with_margin(max(listing.total, (self._held or (0,))[0]))
            elif listing.total > accounts_most:
                raise ScrapeError(self.endpoint, DECODE, (
                    f"/jsz says total={listing.total} accounts after {pages + 1} pages, where its "
                    f"first page and the last read counted fewer: over {accounts_most}, not read"))
            replies.append((wire, listed))
            pages += 1
            # Accounts removed below this page moved the rest down past it: read again from
            # as far back (the accounts listed twice count once).
            shrunk = pages > 1 and listing.paged and listing.total < before
            offset = max(0, page_offset - (before - listing.total)) if shrunk else \
                offset + listed
            if listing.disabled or depth < ACCOUNTS or (listed < limit and not shrunk):
                break
            if not listing.paged:
                # Before 2.11.10 offset 0 is not sorted: ask again, for every account at once.
                if limit > ACCOUNTS_PER_PAGE:
                    break
                limit = with_margin(listing.total)
                offset = held = 0
                listing = Listing(me, options)
                replies.clear()
                continue
            # Accounts made while paging may need a page more; never more than a few, nor twice
            # the pages of the first count, however fast they come (pages of one account make
            # no progress when one comes per page).
            if most is None:
                most = 2 * (listing.total // limit + 2)
            if offset >= listing.total or pages > min(listing.total // limit + 2, most):
                break
        self._held = (listing.total, listing.streams_held, listing.consumers_held)
        if budget is not None:
            self._pages.measure(replies, self._held)
        work = len(listing.streams) + len(listing.durables) + len(listing.ephemeral)
        self._samples, items = await off_loop(1024 * work, self._commit, listing)
        self._claims = Claims(read_at, frozenset(items))

    def claims(self) -> Claims | None:
        """The streams led here, as (account, stream), and the durable consumers led here
        with their own series, as (account, stream, consumer)."""
        return self._claims if self._samples else None

    def disown(self, samples: Samples, items: Collection[tuple[str, ...]]) -> Samples:
        """Drops the series of streams and durable consumers another server leads by a later
        read; the account counts no longer count those streams, nor the top-K those
        consumers. The ephemeral aggregates and ``_other`` keep them: their sums cannot be
        taken apart."""
        out = dict(samples)
        streams: set[tuple[str, ...]] = {item for item in items if len(item) == 2}
        consumers: set[tuple[str, ...]] = {item for item in items if len(item) == 3}
        if streams:
            lost: dict[str, list[int]] = {}
            for labels, value in out.get(m.NATS_JETSTREAM_STREAM_CONSUMERS.name, ()):
                if labels[:2] in streams and isinstance(value, int) and (
                        not self.options.replicas or labels[-1] == "leader"):
                    counts = lost.setdefault(labels[0], [0, 0])
                    counts[0] += 1
                    counts[1] += value
            for metric in _STREAM_CLAIMED:
                _drop(out, metric, 2, streams)
            for metric, i in ((m.NATS_JETSTREAM_ACCOUNT_STREAMS, 0),
                              (m.NATS_JETSTREAM_ACCOUNT_CONSUMERS, 1)):
                if metric.name in out:
                    out[metric.name] = [
                        (labels, value - lost[labels[0]][i]
                         if labels[0] in lost and isinstance(value, int) else value)
                        for labels, value in out[metric.name]]
        if consumers:
            for metric in (*_DURABLE_FAMILIES, m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES):
                _drop(out, metric, 3, consumers)
        return out

    def _expect(self) -> dict[str, int]:
        """The entries a reply may list, from what the server held at the last read; the
        source's limit follows them."""
        accounts, streams, consumers = self._held or (0, 0, 0)
        depth = self.options.depth
        expect = {"accounts": with_margin(accounts)}
        if depth >= STREAMS:
            expect["streams"] = with_margin(streams)
        if depth >= CONSUMERS:
            expect["consumers"] = with_margin(consumers)
        return expect

    async def _get(self, source: Source, sized: BoundedSource | None,
                   params: dict[str, str | int]) -> tuple[bytearray, int]:
        """The body, and its size on the wire (``sized``'s measure, else the body's)."""
        if sized is None:
            body = await source.get(self.endpoint, params, expect=self._expect())
            return body, len(body)
        return await sized.get_sized(self.endpoint, params, expect=self._expect())

    def _commit(self, listing: Listing) -> tuple[Samples, set[tuple[str, ...]]]:
        """The samples of a whole listing and the items they claim (``claims``); the one
        step that changes the consumer table."""
        items: set[tuple[str, ...]] = set()
        if listing.disabled or listing.server is None:
            return {}, items
        out = dict(listing.server)
        if listing.meta_snapshot is not None:
            _meta_snapshot(out, listing.meta_snapshot)
        depth = self.options.depth
        if depth >= ACCOUNTS:
            _accounts(out, listing)
        if depth >= STREAMS:
            self._streams(out, listing, items)
        if depth >= CONSUMERS:
            self._consumers(out, listing, items)
        return out, items

    def _streams(self, out: Samples, listing: Listing, items: set[tuple[str, ...]]) -> None:
        role = self.options.replicas
        state = [_fresh(out, metric) for metric in _STATE_FAMILIES]
        limits = [_fresh(out, metric) for metric in _LIMIT_FAMILIES]
        for labels, replica_role, values, caps in listing.streams:
            if replica_role == "leader":
                items.add(labels[:2])
            if role:
                labels = (*labels, replica_role)
            for samples, value in zip(state, values):
                samples.append((labels, value))
            for samples, cap in zip(limits, caps):
                if cap is not None:
                    samples.append((labels, cap))
        lag = _fresh(out, m.NATS_JETSTREAM_STREAM_SOURCE_LAG)
        seen = _fresh(out, m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS)
        for key, (behind, seconds) in listing.sources.items():
            lag.append((key, behind))
            if seconds is not None:
                seen.append((key, seconds))
        current = _fresh(out, m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT)
        offline = _fresh(out, m.NATS_JETSTREAM_STREAM_REPLICA_OFFLINE)
        behind_by = _fresh(out, m.NATS_JETSTREAM_STREAM_REPLICA_LAG)
        for key, is_current, is_offline, ops in listing.replica_rows:
            current.append((key, 1 if is_current else 0))
            offline.append((key, 1 if is_offline else 0))
            behind_by.append((key, ops))
        out[m.NATS_JETSTREAM_ACCOUNT_STREAMS.name] = [
            ((label,), counts[0]) for label, counts in listing.account_streams.items()]
        out[m.NATS_JETSTREAM_ACCOUNT_CONSUMERS.name] = [
            ((label,), counts[1]) for label, counts in listing.account_streams.items()]

    def _consumers(self, out: Samples, listing: Listing, items: set[tuple[str, ...]]) -> None:
        own, other, overflow = self.table.update(listing.durables)
        families = [_fresh(out, metric) for metric in _DURABLE_FAMILIES]
        own.sort()
        for labels, values in own:
            items.add(labels[:3])
            for samples, value in zip(families, values):
                samples.append((labels, value))
        if overflow:
            for samples, value in zip(families, other):
                samples.append((self._other_labels, value))
        out[m.NATS_JETSTREAM_CONSUMER_OVERFLOW.name] = [((), overflow)]
        count = _fresh(out, m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS)
        pending = _fresh(out, m.NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES)
        ack = _fresh(out, m.NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES)
        for labels, n, pending_sum, pending_max, ack_sum, ack_max in listing.ephemeral:
            count.append((labels, n))
            pending.append(((*labels, "sum"), pending_sum))
            pending.append(((*labels, "max"), pending_max))
            ack.append(((*labels, "sum"), ack_sum))
            ack.append(((*labels, "max"), ack_max))
        out[m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES.name] = [
            ((account, stream, consumer, durable), value)
            for value, account, stream, consumer, durable in sorted(listing.top, reverse=True)]


def _drop(out: Samples, metric: m.Metric, width: int,
          items: set[tuple[str, ...]]) -> None:
    rows = out.get(metric.name)
    if rows:
        out[metric.name] = [row for row in rows if row[0][:width] not in items]


def _fresh(out: Samples, metric: m.Metric) -> list[Sample]:
    samples: list[Sample] = []
    out[metric.name] = samples
    return samples


def _meta_snapshot(out: Samples, snapshot: tuple[int, int, str, int]) -> None:
    """The meta snapshot families; the last snapshot's only once there is one (nats-server
    gives Go's zero time before it)."""
    entries, size, last_time, duration_ns = snapshot
    out[m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES.name] = [((), entries)]
    out[m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES.name] = [((), size)]
    try:
        taken_ns = parse_rfc3339_ns(last_time) if last_time else 0
    except ValueError:
        raise ScrapeError(ENDPOINT, DECODE, f"/{ENDPOINT} meta_cluster.snapshot.last_time is "
                                            f"{last_time[:60]!r}, not an RFC 3339 time") from None
    if taken_ns > 0:
        out[m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS.name] = [((), taken_ns / 1e9)]
        out[m.NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS.name] = [
            ((), duration_ns / 1e9)]


def _accounts(out: Samples, listing: Listing) -> None:
    if listing.paged:
        out[m.NATS_JETSTREAM_ACCOUNTS_UNREAD.name] = [
            ((), max(0, listing.total - len(listing.accounts_seen)))]
    memory = _fresh(out, m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES)
    storage = _fresh(out, m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES)
    max_memory = _fresh(out, m.NATS_JETSTREAM_ACCOUNT_MAX_MEMORY_BYTES)
    max_storage = _fresh(out, m.NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES)
    for label, used_memory, used_storage, memory_cap, storage_cap in listing.accounts:
        labels = (label,)
        memory.append((labels, used_memory))
        storage.append((labels, used_storage))
        if memory_cap is not None:
            max_memory.append((labels, memory_cap))
        if storage_cap is not None:
            max_storage.append((labels, storage_cap))

