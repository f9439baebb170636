"""The /jsz collector: JetStream of a server, its accounts, streams and consumers. Each stream and
each consumer is exported once, by its leader; durable consumers get their own series under a
cap, with an ``_other`` consumer for the rest; ephemeral consumers are aggregated per stream; a
top-K lists the consumers with the most pending messages.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .. import metrics as m
from ..errors import ScrapeError
from ..flags import non_negative_int
from ..interop import Sample
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source, with_margin
from .decode import Fields, decode_json, off_loop

ENDPOINT = "jsz"
#: ``--jsz.level``, each reading what the ones before it read and more.
LEVELS = ("server", "accounts", "streams", "consumers")
SERVER, ACCOUNTS, STREAMS, CONSUMERS = range(4)

#: Accounts asked for per request: nats-server's own default page. Every request makes the
#: server count every stream of every account again, so fewer pages cost it less.
ACCOUNTS_PER_PAGE = 1024
#: The reply's size bound: a document, and per account, stream (its config: subjects, metadata,
#: sources) and consumer (with its config and cluster), pretty-printed, with room to spare.
DOCUMENT_BYTES = 1 << 20
ACCOUNT_BYTES = 1 << 10
STREAM_BYTES = 16 << 10
CONSUMER_BYTES = 4 << 10
#: A reply over its bound is asked for again, this many times larger, at most MAX_ATTEMPTS times
#: in all.
GROWTH = 4
MAX_ATTEMPTS = 3

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
_DURABLE_FAMILIES = (
    m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES, m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES,
    m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES, m.NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS,
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE,
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE)
#: ``_other`` sums the first four; sequences of different consumers do not add up.
_OTHER_VALUES = 4
#: An unsigned limit this large is a Go -1 (unlimited) cast to uint64.
_UNLIMITED_FROM = 1 << 63

_NOT_LABEL = re.compile(r"[^A-Za-z0-9_]")


def meta_label(key: str) -> str:
    """The label name of a metadata key: ``meta_`` and the key with every character that a
    label name cannot hold replaced by ``_`` (``env.tier`` becomes ``meta_env_tier``)."""
    return "meta_" + _NOT_LABEL.sub("_", key)


def meta_keys(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated metadata keys, none empty or listed twice, and no two
    with the same label name."""
    if not text.strip():
        return ()
    keys = tuple(key.strip() for key in text.split(","))
    labels: dict[str, str] = {}
    for key in keys:
        if not key:
            raise argparse.ArgumentTypeError(f"an empty metadata key in {text!r}")
        label = meta_label(key)
        if label in labels:
            raise argparse.ArgumentTypeError(
                f"metadata keys {labels[label]!r} and {key!r} would both be the label {label}")
        labels[label] = key
    return keys


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
                meta_keys(",".join(keys))
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None

    @property
    def depth(self) -> int:
        return LEVELS.index(self.level)


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_on = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector off while a big body becomes objects: orjson makes hundreds of
    thousands of dicts, none in a cycle, and the collections their allocation triggers cost
    more than the parse itself (0.6 s instead of 0.27 s for 86 MB). Counted, so that reads on
    two threads do not turn it back on under each other; left off if it was off."""
    global _gc_pauses, _gc_was_on
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            _gc_was_on = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_on:
                gc.enable()


def _error(what: str) -> ScrapeError:
    return ScrapeError(ENDPOINT, DECODE, f"/{ENDPOINT} {what}")


def _count(fields: Fields, key: str) -> int:
    """A count nats-server leaves out when it is 0 (Go ``omitempty``)."""
    return fields.counter(key) if fields.has(key) else 0


def _limit(value: int | float) -> int | float | None:
    """A configured limit, or None when unlimited (-1 or 0)."""
    return value if value > 0 else None


def _reserved(value: int) -> int | None:
    """An account's limit as /jsz gives it (uint64): None for unlimited (-1 cast) and for 0,
    which is also what an account with only tiered limits shows."""
    return value if 0 < value < _UNLIMITED_FROM else None


class Listing:
    """What one refresh reads of /jsz, page by page; ``read`` raises on a page that does not
    decode, and the listing is then dropped: nothing kept across refreshes changes."""

    def __init__(self, me: str, options: JszOptions) -> None:
        self.me = me
        #: Whether the server is in a JetStream cluster (its /jsz has a meta group).
        self.clustered = False
        self.depth = options.depth
        self.replicas = options.replicas
        self.stream_keys = options.stream_meta_keys
        self.consumer_keys = options.consumer_meta_keys
        self.top_k = options.top_k
        #: The server's own families, from the first page; None while JetStream is off.
        self.server: Samples | None = None
        self.disabled = False
        #: Accounts with JetStream as the server counts them (``total``; ``accounts`` before
        #: 2.11.10), and whether the server pages sorted (it gives ``total``).
        self.total = 0
        self.paged = False
        self.streams_held = 0
        self.consumers_held = 0
        self.accounts_seen: set[str] = set()
        self.accounts: list[tuple[str, int, int, int | None, int | None]] = []
        #: Per account label: streams led here, and their consumers.
        self.account_streams: dict[str, list[int]] = {}
        #: (labels, role, state values, limits)
        self.streams: list[tuple[tuple[str, ...], str, tuple[int, ...],
                                 tuple[int | float | None, ...]]] = []
        self.sources: dict[tuple[str, ...], tuple[int, float | None]] = {}
        self.replica_rows: list[tuple[tuple[str, ...], bool, bool, int]] = []
        #: Durable consumers led here: (key, labels, values in _DURABLE_FAMILIES order).
        self.durables: list[tuple[tuple[str, str, str], tuple[str, ...], tuple[int, ...]]] = []
        #: Per stream: labels, count, pending sum and max, ack pending sum and max.
        self.ephemeral: list[tuple[tuple[str, ...], int, int, int, int, int]] = []
        #: A min-heap of the top-K: (pending, account, stream, consumer, durable).
        self.top: list[tuple[int, str, str, str, str]] = []

    def read(self, body: bytes | bytearray) -> int:
        """Take one page; returns how many accounts it listed."""
        with _gc_paused():
            return self._read(Fields(ENDPOINT, decode_json(ENDPOINT, body)))

    def _read(self, doc: Fields) -> int:
        if doc.has("disabled") and doc.flag("disabled"):
            self.disabled = True
            return 0
        if self.server is None:
            self.server = self._server(doc)
        self.paged = doc.has("total")
        self.total = doc.counter("total") if self.paged else doc.counter("accounts")
        self.streams_held = doc.counter("streams")
        self.consumers_held = doc.counter("consumers")
        details = doc.array("account_details", required=False)
        for i, detail in enumerate(details):
            self._account(Fields(ENDPOINT, detail, f"account_details[{i}]."))
        return len(details)

    def _server(self, doc: Fields) -> Samples:
        api = doc.object("api")
        if api is None:
            raise _error("has no api")
        out: Samples = {
            m.NATS_JETSTREAM_STREAMS.name: [((), doc.counter("streams"))],
            m.NATS_JETSTREAM_CONSUMERS.name: [((), doc.counter("consumers"))],
            m.NATS_JETSTREAM_MESSAGES.name: [((), doc.counter("messages"))],
            m.NATS_JETSTREAM_BYTES.name: [((), doc.counter("bytes"))],
            m.NATS_JETSTREAM_ACCOUNTS.name: [((), doc.counter("accounts"))],
            m.NATS_JETSTREAM_HA_ASSETS.name: [((), doc.counter("ha_assets"))],
            m.NATS_JETSTREAM_API_LEVEL.name: [((), api.counter("level"))],
        }
        meta = doc.object("meta_cluster")
        self.clustered = meta is not None
        if meta is None:
            # A server without a meta group (JetStream outside a cluster).
            return out
        leader = meta.text("leader", "")
        leading = leader != "" and leader == self.me
        out[m.NATS_JETSTREAM_META_LEADER.name] = [((), 1 if leading else 0)]
        out[m.NATS_JETSTREAM_META_LEADER_INFO.name] = [((leader,), 1)] if leader else []
        out[m.NATS_JETSTREAM_META_CLUSTER_SIZE.name] = [((), meta.counter("cluster_size"))]
        out[m.NATS_JETSTREAM_META_PENDING.name] = [((), _count(meta, "pending"))]
        peers = {"current": 0, "lagging": 0, "offline": 0}
        for i, peer in enumerate(meta.array("replicas", required=False)):
            peer_fields = Fields(ENDPOINT, peer, f"{meta.path}replicas[{i}].")
            peer_fields.text("name")
            if peer_fields.has("offline") and peer_fields.flag("offline"):
                peers["offline"] += 1
            elif peer_fields.flag("current"):
                peers["current"] += 1
            else:
                peers["lagging"] += 1
        # Only the leader knows how the others are doing; a follower shows the other
        # followers as not current, whatever they are.
        out[m.NATS_JETSTREAM_META_PEERS.name] = (
            [((state,), n) for state, n in peers.items()] if leading else [])
        return out

    def _account(self, acc: Fields) -> None:
        account = acc.text("id")
        if account in self.accounts_seen:
            # Listed by two pages: accounts made or removed between them shift the pages.
            return
        self.accounts_seen.add(account)
        label = m.client_value(account)
        self.accounts.append((label, acc.counter("memory"), acc.counter("storage"),
                              _reserved(acc.counter("reserved_memory")),
                              _reserved(acc.counter("reserved_storage"))))
        if self.depth < STREAMS:
            return
        counts = self.account_streams.setdefault(label, [0, 0])
        for j, stream in enumerate(acc.array("stream_detail", required=False)):
            self._stream(account, label, counts,
                         Fields(ENDPOINT, stream, f"{acc.path}stream_detail[{j}]."))

    def _stream(self, account: str, label: str, counts: list[int], stream: Fields) -> None:
        name = stream.text("name")
        stream_label = m.client_value(name)
        cluster = stream.object("cluster")
        config = stream.object("config")
        # A stream without a cluster block (JetStream outside a cluster, before 2.10) or an R1
        # stream without a raft group ({"leader": <this server>}) lives here alone. A
        # replicated stream without a raft group is a server still recovering its meta layer,
        # which names itself leader of every stream it holds: not to be believed.
        leader = self.me if cluster is None else cluster.text("leader", "")
        if (cluster is not None and not cluster.has("raft_group") and config is not None
                and config.has("num_replicas") and config.counter("num_replicas") > 1):
            leader = ""
        leading = leader != "" and leader == self.me
        labels = (label, stream_label, *_metadata(config, self.stream_keys))
        if leading or self.replicas:
            state = stream.object("state")
            if state is None:
                raise _error(f"has no {stream.path}state")
            values = (state.counter("messages"), state.counter("bytes"),
                      state.counter("first_seq"), state.counter("last_seq"),
                      _count(state, "num_deleted"), _count(state, "num_subjects"),
                      state.counter("consumer_count"))
            limits: tuple[int | float | None, ...] = (None, None, None)
            if config is not None:
                age = config.counter("max_age")
                limits = (_limit(config.gauge("max_bytes", signed=True)),
                          _limit(config.gauge("max_msgs", signed=True)),
                          age / 1e9 if age else None)
            self.streams.append((labels, "leader" if leading else "follower", values, limits))
            if leading:
                counts[0] += 1
                counts[1] += values[6]
                self._leader_view(label, stream_label, stream, cluster)
        if self.depth >= CONSUMERS:
            self._consumers(account, name, label, stream_label, labels, stream)

    def _leader_view(self, label: str, stream_label: str, stream: Fields,
                     cluster: Fields | None) -> None:
        """What only the stream's leader knows: its mirror and sources, and its followers."""
        mirror = stream.object("mirror")
        if mirror is not None:
            self._source(label, stream_label, mirror, "mirror")
        for i, source in enumerate(stream.array("sources", required=False)):
            self._source(label, stream_label,
                         Fields(ENDPOINT, source, f"{stream.path}sources[{i}]."), "source")
        if cluster is None:
            return
        for i, peer in enumerate(cluster.array("replicas", required=False)):
            peer_fields = Fields(ENDPOINT, peer, f"{cluster.path}replicas[{i}].")
            offline = peer_fields.has("offline") and peer_fields.flag("offline")
            self.replica_rows.append(((label, stream_label, peer_fields.text("name")),
                                      peer_fields.flag("current"), offline,
                                      _count(peer_fields, "lag")))

    def _source(self, label: str, stream_label: str, source: Fields, kind: str) -> None:
        key = (label, stream_label, m.client_value(source.text("name")), kind)
        lag = source.counter("lag")
        active = source.gauge("active", signed=True)
        seen = active / 1e9 if active >= 0 else None
        known = self.sources.get(key)
        if known is not None:
            # The same stream sourced twice (other filters or transforms): the worst of both.
            lag = max(lag, known[0])
            if known[1] is not None:
                seen = known[1] if seen is None else max(seen, known[1])
        self.sources[key] = (lag, seen)

    def _consumers(self, account: str, name_of: str, label: str, stream_label: str,
                   stream_labels: tuple[str, ...], stream: Fields) -> None:
        consumers: Any = stream.doc.get("consumer_detail")
        if not consumers:
            return
        if type(consumers) is not list:
            raise _error(f"{stream.path}consumer_detail is not an array")
        me, keys, k, clustered = self.me, self.consumer_keys, self.top_k, self.clustered
        top = self.top
        count = pending_sum = pending_max = ack_sum = ack_max = 0
        durables = self.durables
        # The hot loop of a big body: plain dict reads, checked inline; a consumer that fails
        # a check is read again by _explain, which names the field.
        for consumer in consumers:
            if type(consumer) is not dict:
                raise _explain(stream, consumers, consumer)
            cluster = consumer.get("cluster")
            if cluster is not None:
                if type(cluster) is not dict:
                    raise _explain(stream, consumers, consumer)
                if cluster.get("leader") != me:
                    continue
            elif clustered:
                # A clustered server lists its consumers without a cluster block only while it
                # recovers its meta layer: it does not know who leads them.
                continue
            name = consumer.get("name")
            pending = consumer.get("num_pending")
            ack = consumer.get("num_ack_pending")
            config = consumer.get("config")
            if (type(name) is not str or type(pending) is not int or pending < 0
                    or type(ack) is not int or ack < 0
                    or (config is not None and type(config) is not dict)):
                raise _explain(stream, consumers, consumer)
            durable = config.get("durable_name") if config is not None else None
            if durable:
                redelivered: Any = consumer.get("num_redelivered")
                waiting: Any = consumer.get("num_waiting")
                delivered: Any = consumer.get("delivered")
                floor: Any = consumer.get("ack_floor")
                try:
                    values: tuple[int, ...] = (pending, ack, redelivered, waiting,
                              delivered["consumer_seq"], delivered["stream_seq"],
                              floor["consumer_seq"], floor["stream_seq"])
                except (KeyError, TypeError):
                    raise _explain(stream, consumers, consumer) from None
                for value in values[2:]:
                    if type(value) is not int or value < 0:
                        raise _explain(stream, consumers, consumer)
                consumer_label = m.client_value(name)
                labels: tuple[str, ...] = (label, stream_label, consumer_label)
                if keys:
                    labels += _consumer_metadata(stream, consumers, consumer, keys)
                durables.append(((account, name_of, name), labels, values))
            else:
                count += 1
                pending_sum += pending
                ack_sum += ack
                if pending > pending_max:
                    pending_max = pending
                if ack > ack_max:
                    ack_max = ack
            if k and pending and (len(top) < k or pending > top[0][0]):
                entry = (pending, label, stream_label, m.client_value(name),
                         "true" if durable else "false")
                if len(top) < k:
                    heapq.heappush(top, entry)
                else:
                    heapq.heapreplace(top, entry)
        if count:
            self.ephemeral.append((stream_labels, count, pending_sum, pending_max, ack_sum,
                                   ack_max))


def _metadata(config: Fields | None, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The label values of ``keys`` from a config's metadata; "" for a key it lacks."""
    if not keys:
        return ()
    metadata = config.object("metadata") if config is not None else None
    if metadata is None:
        return ("",) * len(keys)
    return tuple(m.client_value(metadata.text(key)) if metadata.has(key) else ""
                 for key in keys)


def _consumer_metadata(stream: Fields, consumers: list[object], consumer: dict,
                       keys: tuple[str, ...]) -> tuple[str, ...]:
    """``_metadata`` of a consumer's config, read inline (a durable consumer's config is a
    dict by now); a value that is not a string is read again by ``_metadata``, which names it."""
    metadata = consumer["config"].get("metadata")
    if metadata is None:
        return ("",) * len(keys)
    if type(metadata) is dict:
        values = tuple(metadata.get(key, "") for key in keys)
        if all(type(value) is str for value in values):
            return tuple(m.client_value(value) for value in values)
    index = next(i for i, item in enumerate(consumers) if item is consumer)
    _metadata(Fields(ENDPOINT, consumer["config"],
                     f"{stream.path}consumer_detail[{index}].config."), keys)
    raise AssertionError("unreachable")


def _explain(stream: Fields, consumers: list[object], consumer: object) -> ScrapeError:
    """The decode error of a consumer that failed the inline checks, naming the field."""
    index = next(i for i, item in enumerate(consumers) if item is consumer)
    fields = Fields(ENDPOINT, consumer, f"{stream.path}consumer_detail[{index}].")
    fields.object("cluster")
    fields.text("name")
    fields.counter("num_pending")
    fields.counter("num_ack_pending")
    config = fields.object("config")
    if config is not None and config.text("durable_name", ""):
        fields.counter("num_redelivered")
        fields.counter("num_waiting")
        for key in ("delivered", "ack_floor"):
            sequences = fields.object(key)
            if sequences is None:
                raise _error(f"has no {fields.path}{key}")
            sequences.counter("consumer_seq")
            sequences.counter("stream_seq")
    return _error(f"{fields.path[:-1]} is not a consumer")


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
    learns them from a plain /jsz first.

    Once. A stream is exported by its leader (``cluster.leader`` is this server's name,
    ``ServerInfo.server_name``; a stream without a cluster block lives here alone). A
    leaderless stream (an election under way) is exported by no server until it has a leader.
    A mirror or source listed twice (the same stream with other filters) is exported once, with
    the worst lag and last-seen time. A consumer is exported by its own leader. With
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
                 "durable consumer families")

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

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self.follow(info)
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
        if self._held is None and depth >= ACCOUNTS:
            probe = Listing(me, JszOptions("server"))
            probe.read(await self._get(source, {}))
            self._held = (probe.total, probe.streams_held, probe.consumers_held)
        listing = Listing(me, options)
        offset, limit, pages = 0, ACCOUNTS_PER_PAGE, 0
        while True:
            page = dict(params)
            if depth >= ACCOUNTS:
                page.update(offset=offset, limit=limit)
            body = await self._get(source, page)
            listed = await off_loop(len(body), listing.read, body)
            del body
            offset += listed
            pages += 1
            if listing.disabled or depth < ACCOUNTS or listed < limit:
                break
            if not listing.paged:
                # Before 2.11.10 offset 0 is not sorted: ask again, for every account at once.
                if limit > ACCOUNTS_PER_PAGE:
                    break
                limit = with_margin(listing.total)
                offset = 0
                listing = Listing(me, options)
                continue
            # Accounts made while paging may need a page more; never more than a few.
            if offset >= listing.total or pages > listing.total // ACCOUNTS_PER_PAGE + 2:
                break
        self._held = (listing.total, listing.streams_held, listing.consumers_held)
        work = len(listing.streams) + len(listing.durables) + len(listing.ephemeral)
        self._samples = await off_loop(1024 * work, self._commit, listing)

    def _bound(self) -> int:
        accounts, streams, consumers = self._held or (0, 0, 0)
        depth = self.options.depth
        bound = DOCUMENT_BYTES + ACCOUNT_BYTES * with_margin(accounts)
        if depth >= STREAMS:
            bound += STREAM_BYTES * with_margin(streams)
        if depth >= CONSUMERS:
            bound += CONSUMER_BYTES * with_margin(consumers)
        return bound

    async def _get(self, source: Source, params: dict[str, str | int]) -> bytearray:
        limit = self._bound()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await source.get(self.endpoint, params, max_bytes=limit)
            except ScrapeError as exc:
                if exc.reason != "too_large" or attempt == MAX_ATTEMPTS:
                    raise
                limit *= GROWTH
        raise AssertionError("unreachable")

    def _commit(self, listing: Listing) -> Samples:
        """The samples of a whole listing; the one step that changes the consumer table."""
        if listing.disabled or listing.server is None:
            return {}
        out = dict(listing.server)
        depth = self.options.depth
        if depth >= ACCOUNTS:
            _accounts(out, listing)
        if depth >= STREAMS:
            self._streams(out, listing)
        if depth >= CONSUMERS:
            self._consumers(out, listing)
        return out

    def _streams(self, out: Samples, listing: Listing) -> None:
        role = self.options.replicas
        state = [_fresh(out, metric) for metric in _STATE_FAMILIES]
        limits = [_fresh(out, metric) for metric in _LIMIT_FAMILIES]
        for labels, replica_role, values, caps in listing.streams:
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

    def _consumers(self, out: Samples, listing: Listing) -> None:
        own, other, overflow = self.table.update(listing.durables)
        families = [_fresh(out, metric) for metric in _DURABLE_FAMILIES]
        own.sort()
        for labels, values in own:
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


def _fresh(out: Samples, metric: m.Metric) -> list[Sample]:
    samples: list[Sample] = []
    out[metric.name] = samples
    return samples


def _accounts(out: Samples, listing: Listing) -> None:
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

