"""Counters per peer, summed over the peer's connections, that stay monotonic as connections come
and go: the fold that /routez (per remote server) and /gatewayz (per remote cluster and
direction) share.

The endpoints list only the connections open now, each with counters from zero. Each connection's
last counts are kept by its id; when an id is gone, its last counts join its peer's base and
count as one disconnect. A peer with no connection left keeps its totals for ``ttl`` seconds, so
that a reconnect within that time continues them, and is then forgotten.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from ..flags import non_negative_seconds
from .base import Collector, ServerContext, ServerInfo, Source
from .decode import off_loop

K = TypeVar("K", bound=Hashable)
D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class PeerTotals:
    """One peer now: its open connections, counters including those of its closed
    connections, and how many of its connections closed."""

    connections: int
    counts: tuple[int, ...]
    disconnects: int


class PeerFold(Generic[K]):
    """Per-peer sums of ``width`` counters over connections, across refreshes."""

    __slots__ = ("width", "ttl", "_last", "_base", "_disconnects", "_gone_since")

    def __init__(self, width: int, ttl: float) -> None:
        self.width = width
        self.ttl = ttl
        self.clear()

    def clear(self) -> None:
        """Forget everything: the server restarted and numbers its connections afresh."""
        #: Connection id -> (its peer, its counts at the last update).
        self._last: dict[Hashable, tuple[K, tuple[int, ...]]] = {}
        #: Peer -> the summed final counts of its connections that closed.
        self._base: dict[K, tuple[int, ...]] = {}
        self._disconnects: dict[K, int] = {}
        #: Peer with no connection now -> the time it was first seen without one.
        self._gone_since: dict[K, float] = {}

    def update(self, connections: Iterable[tuple[Hashable, K, Sequence[int]]],
               now: float) -> dict[K, PeerTotals]:
        """Fold the connections open now, each as ``(id, peer, counts)``; returns every peer
        kept, in the order first seen: those with connections and those within their TTL."""
        current: dict[Hashable, tuple[K, tuple[int, ...]]] = {}
        for conn_id, peer, counts in connections:
            counts = tuple(counts)
            if len(counts) != self.width:
                raise ValueError(f"expected {self.width} counts, got {len(counts)}")
            current[conn_id] = (peer, counts)
        for conn_id, (peer, counts) in self._last.items():
            if conn_id not in current:
                self._base[peer] = _add(self._base.get(peer), counts)
                self._disconnects[peer] = self._disconnects.get(peer, 0) + 1
        self._last = current

        live: dict[K, list[int]] = {}
        open_count: dict[K, int] = {}
        for peer, counts in current.values():
            sums = live.setdefault(peer, [0] * self.width)
            for i, count in enumerate(counts):
                sums[i] += count
            open_count[peer] = open_count.get(peer, 0) + 1
        for peer in live:
            self._base.setdefault(peer, (0,) * self.width)
            self._disconnects.setdefault(peer, 0)
            self._gone_since.pop(peer, None)
        for peer in list(self._base):
            if peer in live:
                continue
            since = self._gone_since.setdefault(peer, now)
            if now - since >= self.ttl:
                del self._base[peer], self._disconnects[peer], self._gone_since[peer]

        return {peer: PeerTotals(open_count.get(peer, 0), _add(base, live.get(peer)),
                                 self._disconnects[peer])
                for peer, base in self._base.items()}


    def forget(self, peer: K) -> None:
        """Drop a peer with no connection now (another took its place)."""
        if peer not in self._gone_since:
            raise ValueError(f"peer {peer!r} has connections or is unknown")
        del self._base[peer], self._disconnects[peer], self._gone_since[peer]


def _add(a: Sequence[int] | None, b: Sequence[int] | None) -> tuple[int, ...]:
    if a is None:
        return tuple(b or ())
    if b is None:
        return tuple(a)
    return tuple(x + y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, slots=True)
class PeerOptions:
    """How long a peer with no connection left keeps its series, in seconds."""

    peer_ttl: float = 3600.0


def add_peer_arguments(group: argparse._ArgumentGroup, endpoint: str, what: str) -> None:
    """The ``--<endpoint>.peer-ttl`` flag of a collector that folds per peer."""
    group.add_argument(
        f"--{endpoint}.peer-ttl", dest=f"{endpoint}_peer_ttl", type=non_negative_seconds,
        default=3600.0, metavar="DURATION",
        help=f"how long {what} with no connection left keeps its series (connections 0, "
             f"counters kept, so that a reconnect continues them) (default: 1h)")


class PeerCollector(Collector):
    """A collector that folds an endpoint's connections per peer (``PeerFold`` of
    ``counters`` counts): the ``--<endpoint>.peer-ttl`` flag, the fold, and a read that starts
    the fold afresh when the server restarted."""

    #: What a peer is, for the help of the TTL flag.
    peer_noun: ClassVar[str]
    #: How many counters each connection carries.
    counters: ClassVar[int]

    options: PeerOptions

    def __init__(self, server: ServerContext, options: PeerOptions | None = None) -> None:
        super().__init__(server, options or PeerOptions())
        self._fold: PeerFold[tuple[str, str]] = PeerFold(self.counters, self.options.peer_ttl)
        #: The exporter's clock for the peer TTL (a simulated one in tests).
        self.clock = time.monotonic

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        add_peer_arguments(group, cls.endpoint, cls.peer_noun)

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> PeerOptions:
        return PeerOptions(getattr(args, f"{cls.endpoint}_peer_ttl"))

    async def read(self, source: Source, info: ServerInfo,
                   decode: Callable[[bytearray], D]) -> D:
        """The endpoint's body through ``decode``; a decode error leaves the fold as it was."""
        body = await source.get(self.endpoint)
        decoded = await off_loop(len(body), decode, body)
        self.follow(info)
        return decoded

    def restarted(self) -> None:
        self._fold.clear()
