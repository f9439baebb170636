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
from .common import (
    COUNTERS,
    Dist,
    Group,
    GroupTable,
    check_closed_slack,
    listing,
    page_list,
    rates,
    read_text,
    read_uint,
    sat,
    top_rated,
    unsat_all,
)
from .connz import _read_body
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
            self.id = read_uint(raw, "id")
            self.ctr = tuple(read_uint(raw, key) for key in COUNTERS)
            self.subs = read_uint(raw, "subscriptions")
            labels = {field: read_text(raw, field) for field in ("account", "name", "ip")}
            rtt = read_text(raw, "rtt")
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
    leafs = listing(doc, "leafs", LeafzDecodeError)
    try:
        read_uint(doc, "leafnodes")
    except ConnzDecodeError as e:
        raise LeafzDecodeError(str(e).split(" (byte ")[0], 0) from None
    return [_Rec(raw) for raw in leafs]


class _Group(Group):
    __slots__ = ("closes",)

    def __init__(self, key: tuple[str, ...], other: bool, now: float) -> None:
        super().__init__(key, other, now)
        self.closes = 0


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


class LeafzAggregator(GroupTable[_Group]):
    """Same contract and counting rules as ``fastnats._core.LeafzAggregator``."""

    def __init__(self, group_by=DEFAULT_LEAF_GROUP_BY, max_groups: int = 1000,
                 group_ttl: float = 3600.0, top_k: int = 10, closed_slack: float = 2.0) -> None:
        super().__init__(group_by, LEAF_GROUP_BY_FIELDS, "leafnodes", max_groups, group_ttl, top_k)
        self.closed_slack = check_closed_slack(closed_slack)
        self.count = 0
        self.closed = 0
        self.lost = 0
        self._leafs: dict[int, _Leaf] = {}
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
        self._expire_groups(now)
        for g in self._all_groups():
            g.open = [0, 0, 0, 0]
            g.conns = g.subs = 0
        self._rtt = Dist(NATS_LEAFNODE_CONNECTION_RTT_SECONDS, CONNZ_RTT_BUCKETS, True)
        self._listed: list[_Rec] = []
        for r in recs:
            if not r.dup:
                self._commit_listed(r, now)
        self._commit_gone(now)
        self.count = len(self._listed)
        self._snapshot = self._publish()

    def update(self, body, closed_body, now: float) -> None:
        pages = [] if closed_body is None else page_list(closed_body, "closed_body")
        self.scan(body)
        try:
            for page in pages:
                self.match_closed(page)
        except BaseException:
            self._scanned = None
            raise
        self.commit(now)

    # -- the commit ------------------------------------------------------------------------------

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
        leaf.group.closes = sat(leaf.group.closes, 1)
        self.closed = sat(self.closed, 1)
        leaf.absent = 0
        leaf.absent_since = now

    def _forget(self, leaf: _Leaf) -> None:
        leaf.group.members -= 1
        del self._leafs[leaf.id]

    def _lose(self, leaf: _Leaf) -> None:
        leaf.group.lost = sat(leaf.group.lost, 1)
        self.lost = sat(self.lost, 1)
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
                g.closed = unsat_all(g.closed, leaf.ctr)
                leaf.absent = None
            r.rate = rates(r.ctr, leaf.ctr, now - leaf.seen_at)
        leaf.ctr = r.ctr
        leaf.seen_at = now
        leaf.epoch = self._epoch
        r.leaf = leaf
        self._listed.append(r)
        leaf.group.add_listed(r, now)
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
        for labels, g in self._group_rows():
            fams[NATS_LEAFNODE_CONNECTIONS.name].append((labels, g.conns))
            fams[NATS_LEAFNODE_SUBSCRIPTIONS.name].append((labels, g.subs))
            for k, metric in enumerate(_GROUP_COUNTERS):
                fams[metric.name].append((labels, sat(g.closed[k], g.open[k])))
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
                fams[metric.name] = [(_series(r), rate) for rate, r in
                                     top_rated(listed, k, self.top_k, lambda r: r.id)]
        return fams


def _series(r: _Rec) -> tuple[str, ...]:
    """Values of metrics.CONNECTION_LABELS: the id, and the labels its leafnode was read with."""
    assert r.leaf is not None
    return (str(r.id), *map(client_value, r.leaf.labels))
