"""The walk of one /jsz page, in plain Python: the reference of ``_core/jsz*.pxi``'s
``JszListing``, and what runs with ``FASTNATS_NO_EXTENSIONS=1``. It decodes the page with orjson
and reads it through ``collectors.decode.Fields``; the collector (``collectors/jsz.py``) turns a
whole listing into samples.
"""

from __future__ import annotations

import gc
import heapq
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import metrics as m
from ..collectors.base import DECODE, Samples
from ..collectors.decode import Fields, decode_json
from ..errors import ScrapeError
from ..interop import Sample

if TYPE_CHECKING:
    from ..collectors.jsz import JszOptions

ENDPOINT = "jsz"
#: The depths of ``collectors.jsz.LEVELS`` this walk tells apart.
STREAMS, CONSUMERS = 2, 3
#: The per-peer families of the meta group, in the order both walks fill them.
META_PEER_FAMILIES = (m.NATS_JETSTREAM_META_PEER_CURRENT, m.NATS_JETSTREAM_META_PEER_OFFLINE,
                      m.NATS_JETSTREAM_META_PEER_LAG, m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS)
#: An unsigned limit this large is a Go -1 (unlimited) cast to uint64.
_UNLIMITED_FROM = 1 << 63

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


class JszListing:
    """What one refresh reads of /jsz, page by page; ``read`` raises on a page that does not
    decode, and the listing is then dropped: nothing kept across refreshes changes."""

    def __init__(self, me: str, options: JszOptions) -> None:
        self.me = me
        #: Whether the server is in a JetStream cluster (its /jsz has a meta group).
        self.clustered = False
        #: False while a clustered server knows no meta leader (it is recovering, or cut off):
        #: it then claims no stream and no consumer, whose leaders it cannot know.
        self.settled = True
        self.depth = options.depth
        self.replicas = options.replicas
        self.stream_keys = options.stream_meta_keys
        self.consumer_keys = options.consumer_meta_keys
        self.top_k = options.top_k
        #: The server's own families, from the first page; None while JetStream is off.
        self.server: Samples | None = None
        #: The meta group's snapshot statistics, as /jsz gives them: pending entries and
        #: bytes, the last snapshot's time (RFC 3339; Go's zero time before the first) and
        #: duration in nanoseconds; None without them.
        self.meta_snapshot: tuple[int, int, str, int] | None = None
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
        self.settled = leader != ""
        out[m.NATS_JETSTREAM_META_LEADER.name] = [((), 1 if leading else 0)]
        out[m.NATS_JETSTREAM_META_LEADER_INFO.name] = [((leader,), 1)] if leader else []
        out[m.NATS_JETSTREAM_META_CLUSTER_SIZE.name] = [((), meta.counter("cluster_size"))]
        out[m.NATS_JETSTREAM_META_PENDING.name] = [((), _count(meta, "pending"))]
        peers = {"current": 0, "lagging": 0, "offline": 0}
        per_peer: tuple[list[Sample], ...] = ([], [], [], [])
        for i, peer in enumerate(meta.array("replicas", required=False)):
            peer_fields = Fields(ENDPOINT, peer, f"{meta.path}replicas[{i}].")
            labels = (peer_fields.text("name"),)
            offline = peer_fields.has("offline") and peer_fields.flag("offline")
            current = peer_fields.flag("current")
            peers["offline" if offline else "current" if current else "lagging"] += 1
            per_peer[0].append((labels, 1 if current else 0))
            per_peer[1].append((labels, 1 if offline else 0))
            per_peer[2].append((labels, _count(peer_fields, "lag")))
            active = _count(peer_fields, "active")
            if active:
                per_peer[3].append((labels, active / 1e9))
        # Only the leader knows how the others are doing; a follower shows the other
        # followers as not current, whatever they are.
        out[m.NATS_JETSTREAM_META_PEERS.name] = (
            [((state,), n) for state, n in peers.items()] if leading else [])
        for metric, samples in zip(META_PEER_FAMILIES, per_peer):
            out[metric.name] = samples if leading else []
        snapshot = meta.object("snapshot")
        if snapshot is not None:
            self.meta_snapshot = (snapshot.counter("pending_entries"),
                                  snapshot.counter("pending_size"),
                                  snapshot.text("last_time", ""),
                                  _count(snapshot, "last_duration"))
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
        # which names itself leader of every stream it holds: not to be believed; nor is a
        # leader that lists itself among the replicas (_lists).
        leader = self.me if cluster is None else cluster.text("leader", "")
        # A replicated stream lives only in a cluster, whether or not meta_cluster is listed.
        replicated = (config is not None and config.has("num_replicas")
                      and config.counter("num_replicas") > 1)
        if cluster is not None and not cluster.has("raft_group") and replicated:
            leader = ""
        leading = leader != "" and leader == self.me and self.settled
        if leading and cluster is not None and _lists(cluster.doc.get("replicas"), self.me):
            leading = False
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
            self._consumers(account, name, label, stream_label, labels, stream, replicated)

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
                   stream_labels: tuple[str, ...], stream: Fields, replicated: bool) -> None:
        consumers: Any = stream.doc.get("consumer_detail")
        if not consumers:
            return
        if type(consumers) is not list:
            raise _error(f"{stream.path}consumer_detail is not an array")
        me, keys, k = self.me, self.consumer_keys, self.top_k
        clustered = self.clustered or replicated
        settled = self.settled
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
                if cluster.get("leader") != me or _lists(cluster.get("replicas"), me):
                    continue
            elif clustered:
                # A clustered server lists its consumers without a cluster block only while it
                # recovers its meta layer: it does not know who leads them. For the first
                # milliseconds of a restart it lists no meta_cluster either, but a replicated
                # stream still tells.
                continue
            if not settled:
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


def _lists(replicas: object, me: str) -> bool:
    """Whether a cluster block's ``replicas`` name this server. nats-server leaves the server
    that answers out of a group's replicas whenever it knows the group's leader (clusterInfo in
    server/jetstream_cluster.go, since 2.2), so a leader that lists itself is a stale view, not
    to be believed. Read leniently: anything but an object's string ``name`` names no one."""
    return type(replicas) is list and any(
        type(peer) is dict and peer.get("name") == me for peer in replicas)


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

