"""What the /connz and /leafz references share, as the core's /connz and /leafz parts share
``_core/json.pxi`` and ``_core/tables.pxi``: the number rules, saturating sums, the constructor
checks, the distributions and the group table.

The JSON itself is read in ``connz`` and ``leafz``, which import orjson: the fuzz harnesses swap
that reader for a lenient one module by module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import ConnzDecodeError
from ..metrics import Metric, client_value

U64_MAX = 2**64 - 1
#: The counters of a connection or leafnode, in the order of every per-group counter list.
COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")


def read_uint(raw: dict, key: str) -> int:
    """The one rule for the numbers of /connz and /leafz (every field the scan reads as a number:
    ids, counters, counts, ``total``, ``num_connections``, ``leafnodes``): a JSON integer from 0
    to 2**64-1, as nats-server writes its uint64s. Accepted: plain decimal digits without a
    leading zero, and -0 (JSON readers read it as 0). Refused: any other sign, a fraction or an
    exponent (even ``1.0`` or ``1e3``), a value above 2**64-1, strings and booleans. ``null`` or
    an absent field reads as 0. The core's cz_uint (``_core/json.pxi``) applies the same rule to
    the bytes.
    """
    value = raw.get(key)
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise ConnzDecodeError(f"{key} is not an integer in 0..2**64-1", 0)
    return value


def read_text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise ConnzDecodeError(f"{key} is not a string", 0)
    return value


def listing(doc: object, key: str, error: Callable[[str, int], Exception]) -> list:
    """The array ``key`` of a decoded body (``null`` reads as empty), checked as the scan checks
    it; the error says no more than offset 0."""
    if type(doc) is not dict:
        raise error("body is not a JSON object", 0)
    if key not in doc:
        raise error(f"body has no {key} array", 0)
    items = doc[key]
    if items is None:
        items = []
    if type(items) is not list:
        raise error(f"{key} is not an array", 0)
    return items


def sat(a: int, b: int) -> int:
    return min(a + b, U64_MAX)


def unsat(total: int, part: int) -> int:
    """Take back a part added with sat; a saturated sum stays saturated."""
    return total if total == U64_MAX else total - part


def sat_all(totals, parts) -> list[int]:
    return [sat(a, b) for a, b in zip(totals, parts)]


def unsat_all(totals, parts) -> list[int]:
    return [unsat(a, b) for a, b in zip(totals, parts)]


def rates(ctr, held, dt: float) -> tuple[float, float] | None:
    """In and out messages per second from the held counters to ctr; None without time between."""
    if dt <= 0:
        return None
    return (ctr[0] - held[0]) / dt, (ctr[1] - held[1]) / dt


def page_list(body: object, what: str) -> list:
    """The pages of a body argument: one bytes-like page, or a non-empty list or tuple of them."""
    pages = list(body) if isinstance(body, (list, tuple)) else [body]
    if not pages:
        raise ValueError(f"{what} is an empty list of pages")
    for page in pages:
        if not isinstance(page, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what} must be bytes-like, not {type(page).__name__}")
    return pages


def check_closed_slack(closed_slack: float) -> float:
    if not 0 <= closed_slack <= 3600:
        raise ValueError("closed_slack must be from 0 to 3600 seconds")
    return float(closed_slack)


class Dist:
    """A distribution over the open connections; durations are kept in nanoseconds."""

    def __init__(self, metric: Metric, bounds: tuple, seconds: bool) -> None:
        if len(metric.buckets) != len(bounds) + 1:
            raise ValueError(f"{metric.name}: {len(bounds)} bounds for le values "
                             f"{metric.buckets!r}")
        self.metric = metric
        self.bounds = [int(b * 1e9 + 0.5) for b in bounds] if seconds else list(bounds)
        self.seconds = seconds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: int | float = 0.0 if seconds else 0

    def add(self, value: int) -> None:
        k = 0
        while k < len(self.bounds) and value > self.bounds[k]:
            k += 1
        self.counts[k] += 1
        if self.seconds:
            self.sum += value / 1e9
        else:
            assert isinstance(self.sum, int)
            self.sum = sat(self.sum, value)

    def sample(self) -> tuple[tuple[()], tuple[tuple[int, ...], int | float]]:
        cumulative: list[int] = []
        for n in self.counts:
            cumulative.append(n + (cumulative[-1] if cumulative else 0))
        return (), (tuple(cumulative), self.sum)


class Group:
    """What a group of connections or leafnodes counts. closed: the counters of those gone;
    open: of those listed by the last update; members: those held, listed or absent; live: still
    in its table."""

    __slots__ = ("key", "other", "closed", "open", "conns", "subs", "members", "lost",
                 "last_active", "live")

    def __init__(self, key: tuple[str, ...], other: bool, now: float) -> None:
        self.key = key
        self.other = other
        self.closed = [0, 0, 0, 0]
        self.open = [0, 0, 0, 0]
        self.conns = self.subs = self.members = self.lost = 0
        self.last_active = now
        self.live = True

    def fold(self, ctr, now: float) -> None:
        self.closed = sat_all(self.closed, ctr)
        self.last_active = now

    def add_listed(self, r, now: float) -> None:
        """Count a record listed open by this update: its subscriptions and counters."""
        self.conns += 1
        self.subs = sat(self.subs, r.subs)
        self.open = sat_all(self.open, r.ctr)
        self.last_active = now


G = TypeVar("G", bound=Group)


class GroupTable(Generic[G]):
    """The groups of an aggregator, at most max_groups of them, and the ``other`` group that takes
    the rest; a group with no member held goes after group_ttl."""

    def __init__(self, group_by, fields: tuple[str, ...], what: str, max_groups: int,
                 group_ttl: float, top_k: int) -> None:
        """Checks the settings in the order the core checks them; top_k, of the top series, is
        checked with them."""
        group_by = tuple(group_by)
        for f in group_by:
            if f not in fields:
                raise ValueError(f"cannot group {what} by {f!r}; choose from {', '.join(fields)}")
        if len(set(group_by)) != len(group_by):
            raise ValueError(f"group_by lists a field twice: {group_by!r}")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not group_ttl >= 0:
            raise ValueError("group_ttl must be a non-negative number of seconds")
        if not 0 <= top_k <= 10_000:
            raise ValueError("top_k must be from 0 to 10000")
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = float(group_ttl)
        self.top_k = top_k
        self._groups: dict[tuple[str, ...], G] = {}
        self._other: G | None = None
        self._overflow = 0

    def _all_groups(self) -> list[G]:
        return list(self._groups.values()) + ([self._other] if self._other else [])

    def _expire_groups(self, now: float) -> None:
        for key, g in list(self._groups.items()):
            if g.members == 0 and now - g.last_active > self.group_ttl:
                g.live = False
                del self._groups[key]
        if self._other and self._other.members == 0 and \
                now - self._other.last_active > self.group_ttl:
            self._other = None

    def _group_rows(self) -> list[tuple[tuple[str, ...], G]]:
        """(label values, group) of every group, in the order of the series."""
        return sorted((g.key if g.other else tuple(map(client_value, g.key)), g)
                      for g in self._all_groups())


def top_rated(read: list, k: int, top_k: int, ident) -> list:
    """(rate, record) of the top_k records by rate k (0: in, 1: out messages per second), highest
    first, ties in ``ident`` order."""
    rated = sorted(((r.rate[k], r) for r in read if r.rate and r.rate[k] > 0),
                   key=lambda p: (-p[0], ident(p[1])))
    return rated[:top_k]
