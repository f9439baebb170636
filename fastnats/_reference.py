"""Plain, slow, obviously correct implementations of what ``_core`` does.

It is the oracle of the differential tests, and the fallback that runs only when
``FASTNATS_NO_EXTENSIONS=1`` asks for it. It must not import ``_core``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest

from .interop import Family, client_metrics

IMPLEMENTATION = "reference"


class _Families:
    def __init__(self, families: list[Family]) -> None:
        self._families = families

    def collect(self):
        return client_metrics(self._families)


def render_text(families: Iterable[Family]) -> bytes:
    """Render families with prometheus_client's own exposition code."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))
    return generate_latest(registry)


# --- Wire byte counter: the oracle of _wire.pxi ------------------------------------------------

import os  # noqa: E402  (this section is self-contained)
import struct as _struct  # noqa: E402

from .errors import WireProtocolError  # noqa: E402
from .metrics import (  # noqa: E402
    NATS_SERVER_TOTAL_BYTES_RECEIVED,
    NATS_SERVER_TOTAL_BYTES_SENT,
    NATS_WIRE_CONNECTIONS,
    NATS_WIRE_MODE_INFO,
    NATS_WIRE_RECEIVED_BYTES_TOTAL,
    NATS_WIRE_SENT_BYTES_TOTAL,
)

_NL_HEADER = _struct.Struct("=IHHII")
_I32 = _struct.Struct("=i")
_ATTR = _struct.Struct("=HH")
_TCPI_COUNTS = _struct.Struct("=QQ")    # tcp_info bytes_acked, bytes_received at byte 120
_COOKIE = _struct.Struct("=II")         # inet_diag_sockid.idiag_cookie, at byte 60 of the message
_SPORT = _struct.Struct(">H")           # inet_diag_sockid.idiag_sport, network order, byte 20
_GRACE_UPDATES = 3
_LIVE, _GRAVE, _DESTROYED = "live", "grave", "destroyed"


def _wire_ports(ports) -> dict[int, str]:
    try:
        ports = dict(ports)
    except (TypeError, ValueError):
        raise TypeError(f"ports must map port numbers to listener names, "
                        f"not {type(ports).__name__}") from None
    if not ports:
        raise ValueError("ports is empty: a wire counter needs at least one listening port")
    for port, name in ports.items():
        if type(port) is bool or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"listening port {port!r} is not in 1..65535")
        if not isinstance(name, str) or not name:
            raise ValueError(f"port {port}: listener name {name!r} is not a non-empty string")
    return ports


def wire_parse(buffers, ports) -> list[tuple[int, str, int, int, bool]]:
    """Decode sock_diag datagrams into ``(cookie, listener, sent, received, destroyed)``.

    Only the server's side of connections on ``ports`` is kept. Raises WireProtocolError as
    ``_core.WireCounter.update`` does, with the same message and byte offset.
    """
    ports = _wire_ports(ports)
    if not isinstance(buffers, (list, tuple)):
        raise TypeError(f"buffers must be a list of bytes, not {type(buffers).__name__}")
    stream = b"".join(bytes(memoryview(b)) for b in buffers)
    records = []
    in_multi = False
    dones = 0
    pos = 0
    while pos < len(stream):
        left = len(stream) - pos
        if left < 16:
            raise WireProtocolError(f"truncated netlink header: {left} of 16 bytes", pos)
        length, kind, flags, _seq, _port = _NL_HEADER.unpack_from(stream, pos)
        if length < 16:
            raise WireProtocolError(
                f"nlmsg_len {length} is shorter than the netlink header", pos)
        span = (length + 3) & ~3
        if span > left:
            raise WireProtocolError(f"truncated netlink message: {left} of {span} bytes", pos)
        message = stream[pos:pos + length]
        if kind == 20:
            destroyed = not flags & 2
            in_multi = in_multi or not destroyed
            record = _wire_socket(message, pos, ports, destroyed)
            if record is not None:
                records.append(record)
        elif kind == 3:
            in_multi = False
            dones += 1
            if length >= 20:
                (err,) = _I32.unpack_from(message, 16)
                if err < 0:
                    raise WireProtocolError(f"the kernel ended the dump with error {-err} "
                                            f"({os.strerror(-err)})", pos, -err)
        elif kind == 2:
            if length < 20:
                raise WireProtocolError(f"NLMSG_ERROR of {length} bytes has no error code", pos)
            (err,) = _I32.unpack_from(message, 16)
            if err:
                err = abs(err)
                raise WireProtocolError(
                    f"the kernel answered with error {err} ({os.strerror(err)})", pos, err)
        elif kind == 4:
            raise WireProtocolError("netlink reports lost data (NLMSG_OVERRUN)", pos)
        elif kind != 1:
            raise WireProtocolError(f"unexpected netlink message type {kind}", pos)
        pos += span
    if in_multi:
        raise WireProtocolError("the dump stops before its NLMSG_DONE", len(stream))
    if dones == 0:
        raise WireProtocolError("no complete dump: the buffers hold no NLMSG_DONE", len(stream))
    return records


def _wire_socket(message: bytes, at: int, ports: dict[int, str], destroyed: bool):
    if len(message) < 88:
        raise WireProtocolError(
            f"sock_diag message of {len(message)} bytes is shorter than inet_diag_msg", at)
    family, state = message[16], message[17]
    if family not in (2, 10):
        raise WireProtocolError(f"inet_diag message of address family {family}", at)
    listener = ports.get(_SPORT.unpack_from(message, 20)[0])
    if listener is None or state == 10:   # not a listener port, or the listening socket itself
        return None
    info = None
    a = 88
    while len(message) - a >= 4:
        length, kind = _ATTR.unpack_from(message, a)
        if length < 4 or length > len(message) - a:
            raise WireProtocolError(f"attribute of {length} bytes does not fit its message",
                                    at + a)
        if kind & 0x3FFF == 2:
            info = (a + 4, length - 4)
        a += (length + 3) & ~3
    if info is None:
        return None
    start, size = info
    if size < 136:
        raise WireProtocolError(f"tcp_info of {size} bytes lacks bytes_acked/bytes_received "
                                f"(needs 136, Linux 4.1 or later)", at + start)
    sent, received = _TCPI_COUNTS.unpack_from(message, start + 120)
    low, high = _COOKIE.unpack_from(message, 60)
    return (high << 32 | low, listener, sent, received, destroyed)


class WireCounter:
    """Same contract as ``_core.WireCounter``, written for clarity: dicts and tuples."""

    def __init__(self, ports, mode: str = "poll") -> None:
        if mode not in ("poll", "destroy_events"):
            raise ValueError(f"mode must be 'poll' or 'destroy_events', not {mode!r}")
        self._ports = _wire_ports(ports)
        self._listeners = tuple(sorted(set(self._ports.values())))
        self.mode = mode
        self._closed = {name: [0, 0] for name in self._listeners}
        # cookie -> [state, listener, sent, received, age]
        self._known: dict[int, list] = {}
        self._ready = False

    @property
    def ports(self) -> dict[int, str]:
        return dict(self._ports)

    @property
    def sockets(self) -> int:
        return sum(1 for s in self._known.values() if s[0] == _LIVE)

    def update(self, buffers) -> None:
        seen: dict[int, list] = {}
        for cookie, listener, sent, received, destroyed in wire_parse(buffers, self._ports):
            if cookie in seen:
                entry = seen[cookie]
                entry[2] = max(entry[2], sent)
                entry[3] = max(entry[3], received)
                if destroyed:
                    entry[0] = _DESTROYED
            else:
                seen[cookie] = [_DESTROYED if destroyed else _LIVE, listener, sent, received, 0]
        closed = self._closed
        for cookie, entry in seen.items():
            before = self._known.get(cookie)
            if before is not None:
                entry[1] = before[1]
                entry[2] = max(entry[2], before[2])
                entry[3] = max(entry[3], before[3])
                if before[0] != _LIVE:
                    closed[before[1]][0] -= before[2]
                    closed[before[1]][1] -= before[3]
            if entry[0] == _DESTROYED:
                closed[entry[1]][0] += entry[2]
                closed[entry[1]][1] += entry[3]
        for cookie, before in self._known.items():
            if cookie in seen:
                continue
            if before[0] == _LIVE:
                closed[before[1]][0] += before[2]
                closed[before[1]][1] += before[3]
                seen[cookie] = [_GRAVE, before[1], before[2], before[3], 1]
            elif before[0] == _GRAVE and before[4] < _GRACE_UPDATES:
                seen[cookie] = [_GRAVE, before[1], before[2], before[3], before[4] + 1]
        self._known = seen
        self._ready = True

    def families(self) -> dict[str, list]:
        if not self._ready:
            return {}
        live = {name: [0, 0, 0] for name in self._listeners}
        for state, listener, sent, received, _age in self._known.values():
            if state == _LIVE:
                live[listener][0] += sent
                live[listener][1] += received
                live[listener][2] += 1
        sent = [((n,), self._closed[n][0] + live[n][0]) for n in self._listeners]
        received = [((n,), self._closed[n][1] + live[n][1]) for n in self._listeners]
        return {
            NATS_WIRE_SENT_BYTES_TOTAL.name: sent,
            NATS_WIRE_RECEIVED_BYTES_TOTAL.name: received,
            NATS_WIRE_CONNECTIONS.name: [((n,), live[n][2]) for n in self._listeners],
            NATS_WIRE_MODE_INFO.name: [((self.mode,), 1)],
            NATS_SERVER_TOTAL_BYTES_SENT.name: [((), sum(v for _, v in sent))],
            NATS_SERVER_TOTAL_BYTES_RECEIVED.name: [((), sum(v for _, v in received))],
        }


# --- /connz aggregator: the oracle of _connz.pxi -----------------------------------------------

import orjson  # noqa: E402

from .errors import ConnzDecodeError  # noqa: E402
from .metrics import (  # noqa: E402
    CONNZ,
    CONNZ_IDLE_BUCKETS,
    CONNZ_IDLE_LE,
    CONNZ_PENDING_BUCKETS,
    CONNZ_PENDING_LE,
    CONNZ_RTT_BUCKETS,
    CONNZ_RTT_LE,
    CONNZ_SUBS_BUCKETS,
    CONNZ_SUBS_LE,
    DEFAULT_GROUP_BY,
    GROUP_BY_FIELDS,
    GROUP_LABELS,
    OTHER_GROUP,
)

_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1
_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
    # nats-server writes uptime and idle as 1y2d3h4m5s, with 365-day years.
    "d": 86_400_000_000_000, "y": 31_536_000_000_000_000,
}
_COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration ("1.234ms", "2m3.5s") or a nats-server uptime ("1d2h3m4s").

    A fraction keeps its first 18 digits and is scaled in double precision, as Go does.
    """
    s, neg = text, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, i = 0, 0
    while i < len(s):
        j = i
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole = s[j:i]
        frac = ""
        if i < len(s) and s[i] == ".":
            i += 1
            j = i
            while i < len(s) and "0" <= s[i] <= "9":
                i += 1
            frac = s[j:i]
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        j = i
        while i < len(s) and s[i] != "." and not "0" <= s[i] <= "9":
            i += 1
        unit = _DURATION_UNITS.get(s[j:i])
        if unit is None:
            raise ValueError(f"invalid duration unit in {text!r}")
        value = int(whole or "0")
        if value > _I64_MAX // unit:
            raise ValueError(f"duration out of range: {text!r}")
        part = value * unit
        frac = frac[:18]
        if frac:
            part += int(float(int(frac)) * (float(unit) / float(10 ** len(frac))))
        total += part
        if total > _I64_MAX:
            raise ValueError(f"duration out of range: {text!r}")
    return -total if neg else total


class _Rec:
    """One connection of a body, checked and typed."""

    __slots__ = ("cid", "start", "ctr", "pending", "subs", "rtt", "idle", "labels", "named",
                 "new", "regroup", "rate", "conn")

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, dict):
            raise ConnzDecodeError("a connection is not an object", 0)
        if raw.get("cid") is None:
            raise ConnzDecodeError("connection without cid", 0)
        self.cid = _uint(raw, "cid")
        self.start = _text(raw, "start")
        self.ctr = tuple(_uint(raw, key) for key in _COUNTERS)
        self.pending = _uint(raw, "pending_bytes")
        self.subs = _uint(raw, "subscriptions")
        self.rtt = _duration(raw, "rtt")
        self.idle = _duration(raw, "idle")
        labels = {field: _text(raw, field) for field in GROUP_BY_FIELDS}
        # /connz calls every connection kind "Client"; its type (nats, websocket, mqtt) is the
        # useful part.
        if _text(raw, "type"):
            labels["kind"] = _text(raw, "type")
        self.labels = labels
        # Listed before the server read its CONNECT, a connection has none of these.
        self.named = any(labels[f] for f in ("name", "lang", "version"))
        self.new = False
        self.regroup = False
        self.rate: tuple[float, float] | None = None
        self.conn: _Conn | None = None


def _uint(raw: dict, key: str) -> int:
    value = raw.get(key)
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise ConnzDecodeError(f"{key} is not an integer in 0..2**64-1", 0)
    return value


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise ConnzDecodeError(f"{key} is not a string", 0)
    return value


def _duration(raw: dict, key: str) -> int | None:
    value = _text(raw, key)
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
    if type(doc) is not dict:
        raise ConnzDecodeError("body is not a JSON object", 0)
    if "connections" not in doc:
        raise ConnzDecodeError("body has no connections array", 0)
    conns = doc["connections"]
    if conns is None:
        conns = []
    if type(conns) is not list:
        raise ConnzDecodeError("connections is not an array", 0)
    _uint(doc, "num_connections")
    return [_Rec(raw) for raw in conns], _uint(doc, "total")


# Refreshes a cid missing from the open body is remembered for, in case it was only skipped
# (paging while connections close shifts the pages), before it counts as closed for good.
_ABSENT_GRACE = 3


def _sat(a: int, b: int) -> int:
    return min(a + b, _U64_MAX)


def _unsat(total: int, part: int) -> int:
    """Take back a part added with _sat; a saturated sum stays saturated."""
    return total if total == _U64_MAX else total - part


class _Conn:
    # absent: None while seen in the last update, else updates since, its ctr folded already.
    __slots__ = ("cid", "start", "ctr", "group", "labels", "named", "epoch", "seen_at", "absent")
    cid: int
    start: str
    ctr: tuple[int, ...]
    named: bool
    group: _Group
    labels: tuple[str, ...]
    epoch: int
    seen_at: float
    absent: int | None


class _Group:
    # debt: what connections that moved in had counted before, in their old group.
    __slots__ = ("key", "closed", "open", "debt", "conns", "subs", "pending", "last_active",
                 "other")

    def __init__(self, key: tuple[str, ...], other: bool, now: float) -> None:
        self.key = key
        self.other = other
        self.closed = [0, 0, 0, 0]
        self.open = [0, 0, 0, 0]
        self.debt = [0, 0, 0, 0]
        self.conns = self.subs = self.pending = 0
        self.last_active = now


class _Dist:
    def __init__(self, bounds: tuple, seconds: bool) -> None:
        self.bounds = [int(b * 1e9 + 0.5) for b in bounds] if seconds else list(bounds)
        self.seconds = seconds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum: int | float = 0.0 if seconds else 0

    def add(self, value: int) -> None:
        k = 0
        while k < len(self.bounds) and value > self.bounds[k]:
            k += 1
        self.counts[k] += 1
        self.count += 1
        if self.seconds:
            self.sum += value / 1e9
        else:
            assert isinstance(self.sum, int)
            self.sum = _sat(self.sum, value)


def _pages(body: object, what: str) -> list:
    pages = list(body) if isinstance(body, (list, tuple)) else [body]
    if not pages:
        raise ValueError(f"{what} is an empty list of pages")
    for page in pages:
        if not isinstance(page, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what} must be bytes-like, not {type(page).__name__}")
    return pages


class ConnzAggregator:
    """Same contract and counting rules as ``fastnats._core.ConnzAggregator`` (see the top of
    _connz.pxi), written for clarity over speed."""

    def __init__(self, group_by=DEFAULT_GROUP_BY, max_groups: int = 1000,
                 group_ttl: float = 3600.0, top_k: int = 10, per_connection: bool = False,
                 per_connection_max: int = 1000) -> None:
        group_by = tuple(group_by)
        for f in group_by:
            if f not in GROUP_BY_FIELDS:
                raise ValueError(f"cannot group connections by {f!r}; choose from "
                                 f"{', '.join(GROUP_BY_FIELDS)}")
        if len(set(group_by)) != len(group_by):
            raise ValueError(f"group_by lists a field twice: {group_by!r}")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not group_ttl >= 0:
            raise ValueError("group_ttl must be a non-negative number of seconds")
        if not 0 <= top_k <= 10_000:
            raise ValueError("top_k must be from 0 to 10000")
        if per_connection_max < 0:
            raise ValueError("per_connection_max must not be negative")
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = float(group_ttl)
        self.top_k = top_k
        self.per_connection = bool(per_connection)
        self.per_connection_max = per_connection_max
        self.total = 0
        self.count = 0
        self._label_names = {
            m.name: (group_by if m.labels == (GROUP_LABELS,) else m.labels) for m in CONNZ}
        self._conns: dict[int, _Conn] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._other: _Group | None = None
        self._overflow = 0
        self._watermark = 0
        self._epoch = 0
        self._snapshot: dict[str, list] = {m.name: [] for m in CONNZ}

    def label_names(self, name: str) -> tuple[str, ...]:
        return self._label_names[name]

    def families(self) -> dict[str, list]:
        return self._snapshot

    def update(self, open_body, closed_body, now: float) -> None:
        opens = _pages(open_body, "open_body")
        closeds = [] if closed_body is None else _pages(closed_body, "closed_body")
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
            r.new = r.cid > self._watermark and r.cid not in self._conns
        self._commit(open_recs, closed_recs, now)
        self.total = total
        self._snapshot = self._publish(open_recs)

    def _group_of(self, labels: dict[str, str], now: float) -> _Group:
        key = tuple(labels[f] for f in self.group_by)
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

    @staticmethod
    def _fold(conn: _Conn, ctr, now: float) -> None:
        group = conn.group
        group.closed = [_sat(a, b) for a, b in zip(group.closed, ctr)]
        group.last_active = now

    def _set_labels(self, conn: _Conn, r: _Rec, now: float) -> None:
        conn.group = self._group_of(r.labels, now)
        conn.labels = (str(r.cid), r.labels["name"], r.labels["account"], r.labels["ip"])
        conn.named = r.named

    def _commit(self, open_recs: list[_Rec], closed_recs: list[_Rec], now: float) -> None:
        self._epoch += 1
        epoch = self._epoch
        # Expire first, so that the room an expired group leaves is there for new connections.
        held = {id(c.group) for c in self._conns.values()}
        for key, g in list(self._groups.items()):
            if id(g) not in held and now - g.last_active > self.group_ttl:
                del self._groups[key]
        if self._other and id(self._other) not in held and \
                now - self._other.last_active > self.group_ttl:
            self._other = None
        groups = list(self._groups.values()) + ([self._other] if self._other else [])
        for g in groups:
            g.open = [0, 0, 0, 0]
            g.conns = g.subs = g.pending = 0
        self._dists = [_Dist(CONNZ_RTT_BUCKETS, True), _Dist(CONNZ_PENDING_BUCKETS, False),
                       _Dist(CONNZ_IDLE_BUCKETS, True), _Dist(CONNZ_SUBS_BUCKETS, False)]
        self._read: list[_Rec] = []
        top_cid = self._watermark
        for r in open_recs:
            top_cid = max(top_cid, r.cid)
            conn = self._conns.get(r.cid)
            if conn is not None and conn.epoch == epoch:
                continue        # read from an earlier page already
            if conn is not None and r.new:
                # The same cid on another connection (the server restarted).
                if conn.absent is None:
                    self._fold(conn, conn.ctr, now)
                del self._conns[conn.cid]
                conn = None
            if conn is None:
                conn = _Conn()
                conn.cid, conn.start, conn.absent = r.cid, r.start, None
                self._set_labels(conn, r, now)
                self._conns[r.cid] = conn
            else:
                if conn.absent is not None:
                    # Missing from an earlier open body without closing: take back the fold.
                    g = conn.group
                    g.closed = [_unsat(a, b) for a, b in zip(g.closed, conn.ctr)]
                    conn.absent = None
                if r.regroup:
                    # Its CONNECT was read since: what it counted stays in the old group.
                    self._fold(conn, conn.ctr, now)
                    self._set_labels(conn, r, now)
                    g = conn.group
                    g.debt = [_sat(a, b) for a, b in zip(g.debt, conn.ctr)]
                dt = now - conn.seen_at
                if dt > 0:
                    r.rate = ((r.ctr[0] - conn.ctr[0]) / dt, (r.ctr[1] - conn.ctr[1]) / dt)
            conn.ctr = r.ctr
            conn.seen_at = now
            conn.epoch = epoch
            r.conn = conn
            self._read.append(r)
            g = conn.group
            g.conns += 1
            g.subs = _sat(g.subs, r.subs)
            g.pending = _sat(g.pending, r.pending)
            g.open = [_sat(a, b) for a, b in zip(g.open, r.ctr)]
            g.last_active = now
            if r.rtt is not None:
                self._dists[0].add(r.rtt)
            self._dists[1].add(r.pending)
            if r.idle is not None:
                self._dists[2].add(r.idle)
            self._dists[3].add(r.subs)

        folded: set[int] = set()
        for r in closed_recs:
            top_cid = max(top_cid, r.cid)
            conn = self._conns.get(r.cid)
            if conn is not None:
                if conn.epoch == epoch:
                    continue    # still open in this update; folded once it leaves
                final = r.ctr if conn.start == r.start else conn.ctr
                final = tuple(max(a, b) for a, b in zip(conn.ctr, final))
                if conn.absent is not None:
                    # Its last-seen counters were folded when it went missing.
                    final = tuple(a - b for a, b in zip(final, conn.ctr))
                self._fold(conn, final, now)
                del self._conns[conn.cid]
            elif r.new and r.cid not in folded:
                # Opened and closed between two refreshes.
                folded.add(r.cid)
                g = self._group_of(r.labels, now)
                g.closed = [_sat(a, b) for a, b in zip(g.closed, r.ctr)]
                g.last_active = now

        for conn in [c for c in self._conns.values() if c.epoch != epoch]:
            if conn.absent is None:
                self._fold(conn, conn.ctr, now)
                conn.absent = 0
            else:
                conn.absent += 1
                if conn.absent >= _ABSENT_GRACE:
                    del self._conns[conn.cid]

        self._watermark = top_cid
        self.count = len(self._read)

    def _publish(self, open_recs: list[_Rec]) -> dict[str, list]:
        fams: dict[str, list] = {m.name: [] for m in CONNZ}
        groups = sorted(list(self._groups.values()) + ([self._other] if self._other else []),
                        key=lambda g: g.key)
        for g in groups:
            fams["nats_client_connections"].append((g.key, g.conns))
            fams["nats_client_subscriptions"].append((g.key, g.subs))
            fams["nats_client_pending_bytes"].append((g.key, g.pending))
            for k, name in enumerate(("in_messages", "out_messages", "in_bytes", "out_bytes")):
                fams[f"nats_client_{name}_total"].append(
                    (g.key, _unsat(_sat(g.closed[k], g.open[k]), g.debt[k])))
        fams["nats_client_groups"].append(((), len(self._groups)))
        fams["nats_client_group_overflow_total"].append(((), self._overflow))

        for dist, base, les in zip(self._dists, (
                "nats_client_connection_rtt_seconds", "nats_client_connection_pending_bytes",
                "nats_client_connection_idle_seconds", "nats_client_connection_subscriptions"),
                (CONNZ_RTT_LE, CONNZ_PENDING_LE, CONNZ_IDLE_LE, CONNZ_SUBS_LE)):
            cumulative = 0
            for le, n in zip(les, dist.counts):
                cumulative += n
                fams[base + "_bucket"].append(((le,), cumulative))
            fams[base + "_sum"].append(((), dist.sum))
            fams[base + "_count"].append(((), dist.count))

        def series(r: _Rec) -> tuple[str, ...]:
            assert r.conn is not None   # _commit gives every record in _read its connection
            return r.conn.labels

        read = self._read
        if self.top_k:
            ranked = sorted((r for r in read if r.pending > 0), key=lambda r: (-r.pending, r.cid))
            fams["nats_client_top_pending_bytes"] = [
                (series(r), r.pending) for r in ranked[:self.top_k]]
            for k, name in enumerate(("nats_client_top_in_messages_per_second",
                                      "nats_client_top_out_messages_per_second")):
                rated = sorted(((r.rate[k], r) for r in read if r.rate and r.rate[k] > 0),
                               key=lambda p: (-p[0], p[1].cid))
                fams[name] = [(series(r), rate) for rate, r in rated[:self.top_k]]

        if self.per_connection:
            chosen = sorted(read, key=lambda r: r.cid)[:self.per_connection_max]
            for r in chosen:
                labels = series(r)
                fams["nats_connection_pending_bytes"].append((labels, r.pending))
                fams["nats_connection_subscriptions"].append((labels, r.subs))
                if r.rtt is not None:
                    fams["nats_connection_rtt_seconds"].append((labels, r.rtt / 1e9))
                for k, name in enumerate(("in_messages", "out_messages", "in_bytes",
                                          "out_bytes")):
                    fams[f"nats_connection_{name}_total"].append((labels, r.ctr[k]))
            fams["nats_connection_series_omitted"].append(((), len(read) - len(chosen)))
        return fams
