"""The /connz aggregator, with orjson, dicts and ints: the oracle of ``_core/connz_*.pxi``.

It reads the same bodies, keeps the same state and follows the same counting rules (see the top
of ``_core/connz_aggregate.pxi``), written for clarity over speed.
"""

from __future__ import annotations

from collections import deque

import orjson

from ..errors import ConnzDecodeError
from ..metrics import (
    CONNZ,
    CONNZ_IDLE_BUCKETS,
    CONNZ_PENDING_BUCKETS,
    CONNZ_RTT_BUCKETS,
    CONNZ_SUBS_BUCKETS,
    DEFAULT_GROUP_BY,
    GROUP_BY_FIELDS,
    NATS_CLIENT_CONNECTION_IDLE_SECONDS,
    NATS_CLIENT_CONNECTION_PENDING_BYTES,
    NATS_CLIENT_CONNECTION_RTT_SECONDS,
    NATS_CLIENT_CONNECTION_SUBSCRIPTIONS,
    NATS_CLIENT_CONNECTIONS,
    NATS_CLIENT_CONNECTIONS_LOST_TOTAL,
    NATS_CLIENT_GROUP_EVICTIONS_TOTAL,
    NATS_CLIENT_GROUP_OVERFLOW_TOTAL,
    NATS_CLIENT_GROUPS,
    NATS_CLIENT_IN_BYTES_TOTAL,
    NATS_CLIENT_IN_MESSAGES_TOTAL,
    NATS_CLIENT_OUT_BYTES_TOTAL,
    NATS_CLIENT_OUT_MESSAGES_TOTAL,
    NATS_CLIENT_PENDING_BYTES,
    NATS_CLIENT_SUBSCRIPTIONS,
    NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND,
    NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND,
    NATS_CLIENT_TOP_PENDING_BYTES,
    NATS_CONNECTION_IN_BYTES_TOTAL,
    NATS_CONNECTION_IN_MESSAGES_TOTAL,
    NATS_CONNECTION_OUT_BYTES_TOTAL,
    NATS_CONNECTION_OUT_MESSAGES_TOTAL,
    NATS_CONNECTION_PENDING_BYTES,
    NATS_CONNECTION_RTT_SECONDS,
    NATS_CONNECTION_SERIES_OMITTED,
    NATS_CONNECTION_SUBSCRIPTIONS,
    OTHER_GROUP,
    UNKNOWN_GROUP,
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
    sat_all,
    top_rated,
    unsat,
    unsat_all,
)
from .durations import parse_go_duration

# The per-group and per-connection counter families, in COUNTERS order.
_GROUP_COUNTERS = (NATS_CLIENT_IN_MESSAGES_TOTAL, NATS_CLIENT_OUT_MESSAGES_TOTAL,
                   NATS_CLIENT_IN_BYTES_TOTAL, NATS_CLIENT_OUT_BYTES_TOTAL)
_CONNECTION_COUNTERS = (NATS_CONNECTION_IN_MESSAGES_TOTAL, NATS_CONNECTION_OUT_MESSAGES_TOTAL,
                        NATS_CONNECTION_IN_BYTES_TOTAL, NATS_CONNECTION_OUT_BYTES_TOTAL)
# Refreshes a cid missing from the open body is remembered for, in case it was only skipped
# (paging while connections close shifts the pages), before it counts as closed for good.
_ABSENT_GRACE = 3
# Updates whose highest cid waits to become the settled floor, and the fewest updates between
# reading a cid and settling below it (see the top of _core/connz_aggregate.pxi).
_HISTORY = 64
_FLOOR_LAG = 2
# Which memberless groups a full table gives up first (_core/connz_state.pxi).
_EVICT_IDLE, _EVICT_FLEETING, _EVICT_NEVER = 0, 1, 2


class _Rec:
    """One connection of a body, checked and typed."""

    __slots__ = ("cid", "start", "ctr", "pending", "subs", "rtt", "idle", "labels", "named",
                 "new", "regroup", "rate", "conn", "leaf")

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, dict):
            raise ConnzDecodeError("a connection is not an object", 0)
        if raw.get("cid") is None:
            raise ConnzDecodeError("connection without cid", 0)
        self.cid = read_uint(raw, "cid")
        self.start = read_text(raw, "start")
        self.ctr = tuple(read_uint(raw, key) for key in COUNTERS)
        self.pending = read_uint(raw, "pending_bytes")
        self.subs = read_uint(raw, "subscriptions")
        self.rtt = _duration(raw, "rtt")
        self.idle = _duration(raw, "idle")
        labels = {field: read_text(raw, field) for field in GROUP_BY_FIELDS}
        # /connz lists leafnodes with the clients; they are no clients (/leafz has them).
        self.leaf = labels["kind"] == "Leafnode"
        # /connz calls every connection kind "Client"; its type (nats, websocket, mqtt) is the
        # useful part.
        if read_text(raw, "type"):
            labels["kind"] = read_text(raw, "type")
        self.labels = labels
        # Listed before the server read its CONNECT, a connection has none of these.
        self.named = any(labels[f] for f in ("name", "lang", "version"))
        self.new = False
        self.regroup = False
        self.rate: tuple[float, float] | None = None
        self.conn: _Conn | None = None


def _duration(raw: dict, key: str) -> int | None:
    value = read_text(raw, key)
    if not value:
        return None
    try:
        return parse_go_duration(value)
    except ValueError as e:
        raise ConnzDecodeError(str(e), 0) from None


def _read_body(body: bytes | bytearray | memoryview) -> tuple[list[_Rec], int]:
    """The connections and the ``total`` of one body. orjson locates syntax errors; the checks
    made here on decoded values report offset 0."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ConnzDecodeError(e.msg, e.pos) from None
    conns = listing(doc, "connections", ConnzDecodeError)
    read_uint(doc, "num_connections")
    return [_Rec(raw) for raw in conns], read_uint(doc, "total")


class _Conn:
    # absent: None while seen in the last update, else updates since, its ctr folded already.
    __slots__ = ("cid", "start", "ctr", "group", "labels", "named", "epoch", "seen_at", "absent",
                 "absent_since")
    cid: int
    start: str
    ctr: tuple[int, ...]
    named: bool
    group: _Group
    labels: tuple[str, ...]
    epoch: int
    seen_at: float
    absent: int | None
    absent_since: float


class _Group(Group):
    # debt: what connections that moved in had counted before, in their old group. opened: one
    # was seen open. seq: creation order.
    __slots__ = ("debt", "pending", "opened", "seq")

    def __init__(self, key: tuple[str, ...], other: bool, now: float, seq: int) -> None:
        super().__init__(key, other, now)
        self.debt = [0, 0, 0, 0]
        self.pending = 0
        self.opened = False
        self.seq = seq

    def evict_class(self) -> int:
        if self.lost == 0 and not any(self.closed):
            return _EVICT_IDLE
        return _EVICT_NEVER if self.opened else _EVICT_FLEETING

    def evictable(self) -> bool:
        return (self.live and not self.other and self.members == 0
                and self.evict_class() != _EVICT_NEVER)


def _dists() -> list[Dist]:
    return [Dist(NATS_CLIENT_CONNECTION_RTT_SECONDS, CONNZ_RTT_BUCKETS, True),
            Dist(NATS_CLIENT_CONNECTION_PENDING_BYTES, CONNZ_PENDING_BUCKETS, False),
            Dist(NATS_CLIENT_CONNECTION_IDLE_SECONDS, CONNZ_IDLE_BUCKETS, True),
            Dist(NATS_CLIENT_CONNECTION_SUBSCRIPTIONS, CONNZ_SUBS_BUCKETS, False)]


class ConnzAggregator(GroupTable[_Group]):
    """Same contract and counting rules as ``fastnats._core.ConnzAggregator``."""

    def __init__(self, group_by=DEFAULT_GROUP_BY, max_groups: int = 1000,
                 group_ttl: float = 3600.0, top_k: int = 10, per_connection: bool = False,
                 per_connection_max: int = 1000, closed_slack: float = 2.0) -> None:
        super().__init__(group_by, GROUP_BY_FIELDS, "connections", max_groups, group_ttl, top_k)
        if per_connection_max < 0:
            raise ValueError("per_connection_max must not be negative")
        self.per_connection = bool(per_connection)
        self.per_connection_max = per_connection_max
        self.closed_slack = check_closed_slack(closed_slack)
        self.total = 0
        self.count = 0
        self.lost_known = 0
        self.lost_unknown = 0
        self._conns: dict[int, _Conn] = {}
        self._evictions = 0
        self._group_seq = 0
        self._commit_seq = 0
        self._victims: deque[tuple[int, _Group]] | None = None
        self._watermark = 0
        # The settled floor, the cids above it that a read showed, and the updates not settled
        # yet as (now, watermark, epoch).
        self._floor = 0
        self._floor_epoch = 0
        self._overflow_epoch = 0
        self._seen: set[int] = set()
        self._history: deque[tuple[float, int, int]] = deque()
        # /varz total_connections (-1 if not given) at this update and at the first, and the
        # connections read for the first time, in all and by the end of the first update.
        self._accepted = -1
        self._first_accepted = -1
        self._clients_read = 0
        self._first_reads = 0
        self._epoch = 0
        self._dists = _dists()
        self._read: list[_Rec] = []
        self._snapshot: dict[str, list] = {m.name: [] for m in CONNZ}

    def families(self) -> dict[str, list]:
        return self._snapshot

    def update(self, open_body, closed_body, now: float, closed_overflow: bool = False,
               accepted: int | None = None) -> None:
        if accepted is not None and (type(accepted) is not int or not 0 <= accepted < 2**63):
            raise ValueError("accepted must be a count of connections")
        opens = page_list(open_body, "open_body")
        closeds = [] if closed_body is None else page_list(closed_body, "closed_body")
        open_recs: list[_Rec] = []
        closed_recs: list[_Rec] = []
        total = 0
        for k, page in enumerate(opens + closeds):
            is_closed = k >= len(opens)
            try:
                recs, page_total = _read_body(page)
            except ConnzDecodeError as e:
                where = "closed body" if is_closed else "open body"
                if len(closeds if is_closed else opens) > 1:
                    where += f" page {k - (len(opens) if is_closed else 0) + 1}"
                msg = str(e).removesuffix(f" (byte {e.offset})")
                raise ConnzDecodeError(f"{where}: {msg}", e.offset) from None
            (closed_recs if is_closed else open_recs).extend(recs)
            if not is_closed:
                total = max(total, page_total)
        # Which records are connections the state does not hold, judged before any change.
        for r in open_recs:
            st = self._conns.get(r.cid)
            r.new = st is None or st.start != r.start or any(
                a < b for a, b in zip(r.ctr, st.ctr))
            r.regroup = not r.new and st is not None and not st.named and r.named
        for r in closed_recs:
            st = self._conns.get(r.cid)
            r.regroup = st is not None and not st.named and st.start == r.start and r.named
            r.new = st is None and r.cid > self._floor and r.cid not in self._seen
        self._accepted = -1 if accepted is None else accepted
        self._commit(open_recs, closed_recs, now, bool(closed_overflow))
        self.total = total
        self._snapshot = self._publish()

    # -- groups and held connections -------------------------------------------------------------

    def _group_of(self, labels: dict[str, str], now: float) -> _Group:
        key = tuple(labels[f] for f in self.group_by)
        group = self._groups.get(key)
        if group is not None:
            return group
        if len(self._groups) < self.max_groups:
            return self._new_group(key, now)
        victim = self._next_victim()
        if victim is not None:
            del self._groups[victim.key]
            victim.live = False
            self._evictions += 1
            return self._new_group(key, now)
        self._overflow += 1
        if self._other is None:
            self._other = _Group((OTHER_GROUP,) * len(self.group_by), True, now, self._group_seq)
            self._group_seq += 1
        return self._other

    def _new_group(self, key: tuple[str, ...], now: float) -> _Group:
        group = self._groups[key] = _Group(key, False, now, self._group_seq)
        self._group_seq += 1
        return group

    def _next_victim(self) -> _Group | None:
        """The next group a full table gives up (the policy of _core/connz_state.pxi)."""
        if self._victims is None:
            # Made once per commit from the groups older than it: the next in this order that is
            # still evictable, and of the same class, goes.
            candidates = [g for g in self._groups.values()
                          if g.evictable() and g.seq < self._commit_seq]
            candidates.sort(key=lambda g: (g.evict_class(), g.last_active, g.seq))
            self._victims = deque((g.evict_class(), g) for g in candidates)
        while self._victims:
            cls, group = self._victims.popleft()
            if group.evictable() and group.evict_class() == cls:
                return group
        return None

    def _set_labels(self, conn: _Conn, r: _Rec, now: float) -> None:
        conn.group = self._group_of(r.labels, now)
        conn.group.members += 1
        conn.labels = (str(r.cid), r.labels["name"], r.labels["account"], r.labels["ip"])
        conn.named = r.named

    def _lose(self, conn: _Conn) -> None:
        conn.group.lost = sat(conn.group.lost, 1)
        self.lost_known = sat(self.lost_known, 1)

    def _forget(self, conn: _Conn) -> None:
        conn.group.members -= 1
        del self._conns[conn.cid]

    def _saw(self, cid: int) -> None:
        if cid > self._floor:
            self._seen.add(cid)

    # -- the commit, in the order its steps run --------------------------------------------------

    def _commit(self, open_recs: list[_Rec], closed_recs: list[_Rec], now: float,
                closed_overflow: bool) -> None:
        self._epoch += 1
        if closed_overflow:
            self._overflow_epoch = self._epoch
        self._victims = None
        self._commit_seq = self._group_seq
        # Expire first, so that the room an expired group leaves is there for new connections.
        self._expire_groups(now)
        for g in self._all_groups():
            g.open = [0, 0, 0, 0]
            g.conns = g.subs = g.pending = 0
        self._dists = _dists()
        self._read = []
        top_cid = max([self._watermark] + [r.cid for r in open_recs + closed_recs])
        for r in open_recs:
            self._commit_open(r, now)
        self._commit_closed(closed_recs, now)
        self._age_absent(now)
        self._watermark = top_cid
        self._advance_floor(now)
        self.count = len(self._read)

    def _commit_open(self, r: _Rec, now: float) -> None:
        if r.leaf:
            self._saw(r.cid)    # not a client, but its cid is no hole
            return
        conn = self._conns.get(r.cid)
        if conn is not None and conn.epoch == self._epoch:
            return      # read from an earlier page already
        self._saw(r.cid)
        if conn is not None and r.new:
            # The same cid on another connection (the server restarted): the old one is lost.
            if conn.absent is None:
                conn.group.fold(conn.ctr, now)
            self._lose(conn)
            self._forget(conn)
            conn = None
        if conn is None:
            conn = _Conn()
            conn.cid, conn.start, conn.absent = r.cid, r.start, None
            self._set_labels(conn, r, now)
            self._conns[r.cid] = conn
            self._clients_read += 1
        else:
            if conn.absent is not None:
                # Missing from an earlier open body without closing: take back the fold.
                g = conn.group
                g.closed = unsat_all(g.closed, conn.ctr)
                conn.absent = None
            if r.regroup:
                # Its CONNECT was read since: what it counted stays in the old group.
                conn.group.fold(conn.ctr, now)
                conn.group.members -= 1
                self._set_labels(conn, r, now)
                g = conn.group
                g.debt = sat_all(g.debt, conn.ctr)
            r.rate = rates(r.ctr, conn.ctr, now - conn.seen_at)
        conn.ctr = r.ctr
        conn.seen_at = now
        conn.epoch = self._epoch
        r.conn = conn
        self._read.append(r)
        g = conn.group
        g.opened = True
        g.add_listed(r, now)
        g.pending = sat(g.pending, r.pending)
        rtt, pending, idle, subs = self._dists
        if r.rtt is not None:
            rtt.add(r.rtt)
        pending.add(r.pending)
        if r.idle is not None:
            idle.add(r.idle)
        subs.add(r.subs)

    def _commit_closed(self, closed_recs: list[_Rec], now: float) -> None:
        for r in closed_recs:
            if r.leaf:
                self._saw(r.cid)
                continue
            conn = self._conns.get(r.cid)
            if conn is not None:
                if conn.epoch == self._epoch:
                    continue    # still open in this update; folded once it leaves
                counted = conn.ctr if conn.absent is None else (0, 0, 0, 0)
                since = tuple(max(b - a, 0) if conn.start == r.start else 0
                              for a, b in zip(conn.ctr, r.ctr))
                if r.regroup:
                    # Seen unnamed, closed named: what it did since goes to its own group.
                    conn.group.fold(counted, now)
                    g = self._group_of(r.labels, now)
                    g.closed = sat_all(g.closed, since)
                    g.last_active = now
                else:
                    conn.group.fold(sat_all(counted, since), now)
                self._forget(conn)
            elif r.new and r.cid not in self._seen:
                # Opened and closed between two refreshes.
                self._saw(r.cid)
                self._clients_read += 1
                g = self._group_of(r.labels, now)
                g.closed = sat_all(g.closed, r.ctr)
                g.last_active = now

    def _age_absent(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.epoch != self._epoch]:
            if conn.absent is None:
                conn.group.fold(conn.ctr, now)
                conn.absent = 0
                conn.absent_since = now
            else:
                conn.absent += 1
                if conn.absent >= _ABSENT_GRACE and now - conn.absent_since >= self.closed_slack:
                    self._lose(conn)
                    self._forget(conn)

    def _advance_floor(self, now: float) -> None:
        """Settle the cids of old enough updates; count the holes as lost if a closed read
        overflowed since the floor last moved (the top of _core/connz_aggregate.pxi)."""
        if self._epoch == 1:
            self._floor, self._floor_epoch = self._watermark, self._epoch
            self._first_accepted, self._first_reads = self._accepted, self._clients_read
            self._seen.clear()
            return
        new_floor = lost_to = self._floor
        epoch = self._floor_epoch
        history = self._history
        while history and history[0][2] + _FLOOR_LAG <= self._epoch and (
                now - history[0][0] >= self.closed_slack or len(history) == _HISTORY):
            _, watermark, settled = history.popleft()
            if self._overflow_epoch > epoch:
                lost_to = watermark
            new_floor, epoch = watermark, settled
        history.append((now, self._watermark, self._epoch))
        self._floor_epoch = epoch
        if new_floor == self._floor:
            return
        seen_lost = sum(1 for cid in self._seen if cid <= lost_to)
        self._seen = {cid for cid in self._seen if cid > new_floor}
        lost = sat(self.lost_unknown, lost_to - self._floor - seen_lost)
        if 0 <= self._first_accepted <= self._accepted:
            # Routes, gateways and the server's own clients take cids too: no more connections
            # were lost unseen than clients accepted since the first update, less those read.
            most = max(self._accepted - self._first_accepted
                       - (self._clients_read - self._first_reads), 0)
            lost = max(min(lost, most), self.lost_unknown)
        self.lost_unknown = lost
        self._floor = new_floor

    # -- the snapshot ----------------------------------------------------------------------------

    def _publish(self) -> dict[str, list]:
        fams: dict[str, list] = {m.name: [] for m in CONNZ}
        self._publish_groups(fams)
        for dist in self._dists:
            fams[dist.metric.name].append(dist.sample())
        if self.top_k:
            self._publish_tops(fams)
        if self.per_connection:
            self._publish_per_connection(fams)
        return fams

    def _publish_groups(self, fams: dict[str, list]) -> None:
        for labels, g in self._group_rows():
            fams[NATS_CLIENT_CONNECTIONS.name].append((labels, g.conns))
            fams[NATS_CLIENT_SUBSCRIPTIONS.name].append((labels, g.subs))
            fams[NATS_CLIENT_PENDING_BYTES.name].append((labels, g.pending))
            for k, metric in enumerate(_GROUP_COUNTERS):
                fams[metric.name].append(
                    (labels, unsat(sat(g.closed[k], g.open[k]), g.debt[k])))
            fams[NATS_CLIENT_CONNECTIONS_LOST_TOTAL.name].append((labels, g.lost))
        lost = fams[NATS_CLIENT_CONNECTIONS_LOST_TOTAL.name]
        if not self.group_by:
            # One series for everything: no group to tell the unknown ones from.
            lost[:] = [((), sat(sum(v for _, v in lost), self.lost_unknown))]
        else:
            lost.append(((UNKNOWN_GROUP,) * len(self.group_by), self.lost_unknown))
        fams[NATS_CLIENT_GROUPS.name].append(((), len(self._groups)))
        fams[NATS_CLIENT_GROUP_OVERFLOW_TOTAL.name].append(((), self._overflow))
        fams[NATS_CLIENT_GROUP_EVICTIONS_TOTAL.name].append(((), self._evictions))

    def _publish_tops(self, fams: dict[str, list]) -> None:
        read = self._read
        ranked = sorted((r for r in read if r.pending > 0), key=lambda r: (-r.pending, r.cid))
        fams[NATS_CLIENT_TOP_PENDING_BYTES.name] = [
            (_series(r), r.pending) for r in ranked[:self.top_k]]
        for k, metric in enumerate((NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND,
                                    NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND)):
            fams[metric.name] = [(_series(r), rate) for rate, r in
                                 top_rated(read, k, self.top_k, lambda r: r.cid)]

    def _publish_per_connection(self, fams: dict[str, list]) -> None:
        chosen = sorted(self._read, key=lambda r: r.cid)[:self.per_connection_max]
        for r in chosen:
            labels = _series(r)
            fams[NATS_CONNECTION_PENDING_BYTES.name].append((labels, r.pending))
            fams[NATS_CONNECTION_SUBSCRIPTIONS.name].append((labels, r.subs))
            if r.rtt is not None:
                fams[NATS_CONNECTION_RTT_SECONDS.name].append((labels, r.rtt / 1e9))
            for k, metric in enumerate(_CONNECTION_COUNTERS):
                fams[metric.name].append((labels, r.ctr[k]))
        fams[NATS_CONNECTION_SERIES_OMITTED.name].append(((), len(self._read) - len(chosen)))


def _series(r: _Rec) -> tuple[str, ...]:
    """Values of metrics.CONNECTION_LABELS for a record the commit gave its connection."""
    assert r.conn is not None
    cid, *labels = r.conn.labels
    return (cid, *map(client_value, labels))
