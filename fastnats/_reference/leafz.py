"""The /leafz aggregator, with orjson, dicts and ints: the oracle of ``_core/leafz.pxi``.

It reads the same bodies, keeps the same state and follows the same counting rules (see the top
of ``_core/leafz.pxi``), written for clarity over speed. Closed /connz pages are read by the
/connz reference's reader, as the core reads them with the /connz scanner.
"""

from __future__ import annotations

import orjson

from ..errors import ConnzDecodeError, LeafzDecodeError
from ..metrics import (
    CONNZ_RTT_BUCKETS,
    DEFAULT_LEAF_GROUP_BY,
    LEAF_GROUP_BY_FIELDS,
    LEAFZ,
    NATS_LEAFNODE_CLOSED_TOTAL,
    NATS_LEAFNODE_CONNECTION_RTT_SECONDS,
    NATS_LEAFNODE_CONNECTIONS,
    NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL,
    NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL,
    NATS_LEAFNODE_GROUPS,
    NATS_LEAFNODE_IN_BYTES_TOTAL,
    NATS_LEAFNODE_IN_MESSAGES_TOTAL,
    NATS_LEAFNODE_OUT_BYTES_TOTAL,
    NATS_LEAFNODE_OUT_MESSAGES_TOTAL,
    NATS_LEAFNODE_SUBSCRIPTIONS,
    NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND,
    NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND,
    NATS_LEAFNODE_TOP_RTT_SECONDS,
    OTHER_GROUP,
    client_value,
)
from .connz import _COUNTERS, _Dist, _pages, _read_body, _sat, _text, _uint, _unsat
from .durations import parse_go_duration

_GROUP_COUNTERS = (NATS_LEAFNODE_IN_MESSAGES_TOTAL, NATS_LEAFNODE_OUT_MESSAGES_TOTAL,
                   NATS_LEAFNODE_IN_BYTES_TOTAL, NATS_LEAFNODE_OUT_BYTES_TOTAL)
# Commits a vanished leafnode waits for its closed entry beyond the one it vanished at
# (LZ_ABSENT_GRACE).
_ABSENT_GRACE = 1


class _Rec:
    """One leafnode of a body, checked and typed."""

    __slots__ = ("id", "ctr", "subs", "rtt", "labels", "dup", "new", "rate", "leaf")

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, dict):
            raise LeafzDecodeError("a leafnode is not an object", 0)
        if raw.get("id") is None:
            raise LeafzDecodeError("leafnode without id", 0)
        try:
            self.id = _uint(raw, "id")
            self.ctr = tuple(_uint(raw, key) for key in _COUNTERS)
            self.subs = _uint(raw, "subscriptions")
            labels = {field: _text(raw, field) for field in ("account", "name", "ip")}
            rtt = _text(raw, "rtt")
            self.rtt = parse_go_duration(rtt) if rtt else None
        except (ConnzDecodeError, ValueError) as e:
            raise LeafzDecodeError(str(e).split(" (byte ")[0], 0) from None
        spoke = raw.get("is_spoke")
        if spoke is not None and type(spoke) is not bool:
            raise LeafzDecodeError("is_spoke is not a boolean", 0)
        labels["is_spoke"] = "true" if spoke else "false"
        self.labels = labels
        self.dup = self.new = False
        self.rate: tuple[float, float] | None = None
        self.leaf: _Leaf | None = None


def _read_leafz(body: bytes | bytearray | memoryview) -> list[_Rec]:
    """The leafnodes of one body. orjson locates syntax errors; the checks made here on decoded
    values report offset 0."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes-like, not {type(body).__name__}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise LeafzDecodeError(e.msg, e.pos) from None
    if type(doc) is not dict:
        raise LeafzDecodeError("body is not a JSON object", 0)
    if "leafs" not in doc:
        raise LeafzDecodeError("body has no leafs array", 0)
    leafs = doc["leafs"]
    if leafs is None:
        leafs = []
    if type(leafs) is not list:
        raise LeafzDecodeError("leafs is not an array", 0)
    try:
        _uint(doc, "leafnodes")
    except ConnzDecodeError as e:
        raise LeafzDecodeError(str(e).split(" (byte ")[0], 0) from None
    return [_Rec(raw) for raw in leafs]


class _Group:
    __slots__ = ("key", "other", "closed", "open", "conns", "subs", "members", "closes", "lost",
                 "last_active")

    def __init__(self, key: tuple[str, ...], other: bool, now: float) -> None:
        self.key = key
        self.other = other
        self.closed = [0, 0, 0, 0]
        self.open = [0, 0, 0, 0]
        self.conns = self.subs = self.members = self.closes = self.lost = 0
        self.last_active = now

    def fold(self, ctr, now: float) -> None:
        self.closed = [_sat(a, b) for a, b in zip(self.closed, ctr)]
        self.last_active = now


class _Leaf:
    # absent: None while listed, else commits since it vanished, its ctr folded already.
    __slots__ = ("id", "ctr", "group", "labels", "seen_at", "absent", "absent_since", "epoch")

    def __init__(self, r: _Rec, group: _Group) -> None:
        self.id = r.id
        self.ctr = r.ctr
        self.group = group
        self.labels = (r.labels["name"], r.labels["account"], r.labels["ip"])
        self.seen_at = 0.0
        self.absent: int | None = None
        self.absent_since = 0.0
        self.epoch = 0


class LeafzAggregator:
    """Same contract and counting rules as ``fastnats._core.LeafzAggregator``."""

    def __init__(self, group_by=DEFAULT_LEAF_GROUP_BY, max_groups: int = 1000,
                 group_ttl: float = 3600.0, top_k: int = 10, closed_slack: float = 2.0) -> None:
        group_by = tuple(group_by)
        for f in group_by:
            if f not in LEAF_GROUP_BY_FIELDS:
                raise ValueError(f"cannot group leafnodes by {f!r}; choose from "
                                 f"{', '.join(LEAF_GROUP_BY_FIELDS)}")
        if len(set(group_by)) != len(group_by):
            raise ValueError(f"group_by lists a field twice: {group_by!r}")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not group_ttl >= 0:
            raise ValueError("group_ttl must be a non-negative number of seconds")
        if not 0 <= top_k <= 10_000:
            raise ValueError("top_k must be from 0 to 10000")
        if not 0 <= closed_slack <= 3600:
            raise ValueError("closed_slack must be from 0 to 3600 seconds")
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = float(group_ttl)
        self.top_k = top_k
        self.closed_slack = float(closed_slack)
        self.count = 0
        self.closed = 0
        self.lost = 0
        self._leafs: dict[int, _Leaf] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._other: _Group | None = None
        self._overflow = 0
        self._epoch = 0
        self._scanned: list[_Rec] | None = None
        self._wanted: set[int] = set()
        self._finals: dict[int, tuple[int, ...]] = {}
        self._snapshot: dict[str, list] = {m.name: [] for m in LEAFZ}

    def families(self) -> dict[str, list]:
        return self._snapshot

    # -- the three steps of an update ------------------------------------------------------------

    def scan(self, body) -> int:
        self._scanned = None
        recs = _read_leafz(body)
        listed: set[int] = set()
        for r in recs:
            if r.id in listed:
                r.dup = True
                continue
            listed.add(r.id)
            held = self._leafs.get(r.id)
            r.new = held is None or any(a < b for a, b in zip(r.ctr, held.ctr))
        self._wanted = {i for i in self._leafs if i not in listed}
        self._finals = {}
        self._scanned = recs
        return len(self._wanted)

    def match_closed(self, page) -> int:
        if self._scanned is None:
            raise RuntimeError("match_closed() needs a scan() first")
        if not isinstance(page, (bytes, bytearray, memoryview)):
            raise TypeError(f"a closed page must be bytes-like, not {type(page).__name__}")
        try:
            recs, _ = _read_body(page)
        except ConnzDecodeError as e:
            raise ConnzDecodeError("closed body: " + str(e).removesuffix(f" (byte {e.offset})"),
                                   e.offset) from None
        for r in recs:
            if r.cid in self._wanted and r.cid not in self._finals:
                self._finals[r.cid] = r.ctr
        return len(self._wanted) - len(self._finals)

    def commit(self, now: float) -> None:
        recs, self._scanned = self._scanned, None
        if recs is None:
            raise RuntimeError("commit() needs a scan() first")
        now = float(now)
        self._epoch += 1
        # Expire first, so that the room an expired group leaves is there for new leafnodes.
        for key, g in list(self._groups.items()):
            if g.members == 0 and now - g.last_active > self.group_ttl:
                del self._groups[key]
        if self._other and self._other.members == 0 and \
                now - self._other.last_active > self.group_ttl:
            self._other = None
        for g in self._all_groups():
            g.open = [0, 0, 0, 0]
            g.conns = g.subs = 0
        self._rtt = _Dist(NATS_LEAFNODE_CONNECTION_RTT_SECONDS, CONNZ_RTT_BUCKETS, True)
        self._listed: list[_Rec] = []
        for r in recs:
            if not r.dup:
                self._commit_listed(r, now)
        self._commit_gone(now)
        self.count = len(self._listed)
        self._snapshot = self._publish()

    def update(self, body, closed_body, now: float) -> None:
        pages = [] if closed_body is None else _pages(closed_body, "closed_body")
        self.scan(body)
        try:
            for page in pages:
                self.match_closed(page)
        except BaseException:
            self._scanned = None
            raise
        self.commit(now)

    # -- the commit ------------------------------------------------------------------------------

    def _all_groups(self) -> list[_Group]:
        return list(self._groups.values()) + ([self._other] if self._other else [])

    def _group_of(self, r: _Rec, now: float) -> _Group:
        key = tuple(r.labels[f] for f in self.group_by)
        group = self._groups.get(key)
        if group is not None:
            return group
        if len(self._groups) < self.max_groups:
            group = self._groups[key] = _Group(key, False, now)
            return group
        self._overflow += 1
        if self._other is None:
            self._other = _Group((OTHER_GROUP,) * len(self.group_by), True, now)
        return self._other

    def _vanish(self, leaf: _Leaf, now: float) -> None:
        if leaf.absent is not None:
            return
        leaf.group.fold(leaf.ctr, now)
        leaf.group.closes = _sat(leaf.group.closes, 1)
        self.closed = _sat(self.closed, 1)
        leaf.absent = 0
        leaf.absent_since = now

    def _forget(self, leaf: _Leaf) -> None:
        leaf.group.members -= 1
        del self._leafs[leaf.id]

    def _lose(self, leaf: _Leaf) -> None:
        leaf.group.lost = _sat(leaf.group.lost, 1)
        self.lost = _sat(self.lost, 1)
        self._forget(leaf)

    def _commit_listed(self, r: _Rec, now: float) -> None:
        leaf = self._leafs.get(r.id)
        if leaf is not None and leaf.epoch == self._epoch:
            return      # a new id listed twice
        if leaf is not None and r.new:
            # A counter went back: another leafnode under the same id.
            self._vanish(leaf, now)
            self._lose(leaf)
            leaf = None
        if leaf is None:
            leaf = _Leaf(r, self._group_of(r, now))
            leaf.group.members += 1
            self._leafs[r.id] = leaf
        else:
            if leaf.absent is not None:
                g = leaf.group
                g.closed = [_unsat(a, b) for a, b in zip(g.closed, leaf.ctr)]
                leaf.absent = None
            dt = now - leaf.seen_at
            if dt > 0:
                r.rate = ((r.ctr[0] - leaf.ctr[0]) / dt, (r.ctr[1] - leaf.ctr[1]) / dt)
        leaf.ctr = r.ctr
        leaf.seen_at = now
        leaf.epoch = self._epoch
        r.leaf = leaf
        self._listed.append(r)
        g = leaf.group
        g.conns += 1
        g.subs = _sat(g.subs, r.subs)
        g.open = [_sat(a, b) for a, b in zip(g.open, r.ctr)]
        g.last_active = now
        if r.rtt is not None:
            self._rtt.add(r.rtt)

    def _commit_gone(self, now: float) -> None:
        for leaf in [c for c in self._leafs.values() if c.epoch != self._epoch]:
            if leaf.absent is None:
                self._vanish(leaf, now)
                absent = 0
            else:
                absent = leaf.absent = leaf.absent + 1
            final = self._finals.get(leaf.id)
            if final is not None:
                leaf.group.fold([max(b - a, 0) for a, b in zip(leaf.ctr, final)], now)
                self._forget(leaf)
            elif absent >= _ABSENT_GRACE and now - leaf.absent_since >= self.closed_slack:
                self._lose(leaf)

    # -- the snapshot ----------------------------------------------------------------------------

    def _publish(self) -> dict[str, list]:
        fams: dict[str, list] = {m.name: [] for m in LEAFZ}
        rows = sorted((g.key if g.other else tuple(map(client_value, g.key)), g)
                      for g in self._all_groups())
        for labels, g in rows:
            fams[NATS_LEAFNODE_CONNECTIONS.name].append((labels, g.conns))
            fams[NATS_LEAFNODE_SUBSCRIPTIONS.name].append((labels, g.subs))
            for k, metric in enumerate(_GROUP_COUNTERS):
                fams[metric.name].append((labels, _sat(g.closed[k], g.open[k])))
            fams[NATS_LEAFNODE_CLOSED_TOTAL.name].append((labels, g.closes))
            fams[NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL.name].append((labels, g.lost))
        fams[NATS_LEAFNODE_GROUPS.name].append(((), len(self._groups)))
        fams[NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL.name].append(((), self._overflow))
        fams[NATS_LEAFNODE_CONNECTION_RTT_SECONDS.name].append(self._rtt.sample())
        if self.top_k:
            listed = self._listed
            by_rtt = sorted((-r.rtt, r.id, r) for r in listed if r.rtt is not None and r.rtt > 0)
            fams[NATS_LEAFNODE_TOP_RTT_SECONDS.name] = [
                (_series(r), -rtt / 1e9) for rtt, _, r in by_rtt[:self.top_k]]
            for k, metric in enumerate((NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND,
                                        NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND)):
                rated = sorted(((r.rate[k], r) for r in listed if r.rate and r.rate[k] > 0),
                               key=lambda p: (-p[0], p[1].id))
                fams[metric.name] = [(_series(r), rate) for rate, r in rated[:self.top_k]]
        return fams


def _series(r: _Rec) -> tuple[str, ...]:
    """Values of metrics.CONNECTION_LABELS: the id, and the labels its leafnode was read with."""
    assert r.leaf is not None
    return (str(r.id), *map(client_value, r.leaf.labels))
