"""The interface every collector implements, and the facts about a server that they share.

A collector owns one monitoring endpoint: it says what it requests, turns the reply bytes into
samples of the catalogue families it owns, and keeps whatever state it needs across refreshes.
It gets its bytes from a ``Source`` and never knows whether they came over HTTP or otherwise.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast

from ..errors import ScrapeError
from ..interop import Sample
from ..metrics import Metric

Samples = dict[str, list[Sample]]


@dataclass(frozen=True)
class Claims:
    """What a collector's samples hold that one server at a time exports (a stream, by its
    leader), each item named by its leading label values, and the monotonic time it was read.
    When two servers claim an item, the later read keeps it (``NatsCollector``)."""

    read_at: float
    items: frozenset[tuple[str, ...]]

#: Why a request to a source can fail; the ``reason`` label of fastnats_refresh_errors_total.
#: ``body``: the reply broke after it began (cut short, reset, bad chunking or compression);
#: ``too_large``: it passed its size limit (``--monitor.max-body-size``); ``tls``: the TLS
#: handshake with an https:// URL failed.
FETCH_REASONS = ("timeout", "connect", "http_status", "body", "too_large", "tls")
#: Why a reply can be unusable.
DECODE = "decode"


class Source(Protocol):
    """Where the bytes of one server's monitoring endpoints come from."""

    async def get(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                  expect: Mapping[str, int] | None = None,
                  statuses: Collection[int] = (200,)) -> bytearray:
        """The body of ``endpoint``, under the size limit the source sets from the operator's
        flags; a listing names the entries it expects, by kind (``expect={"accounts": 3000}``),
        and its limit follows them. A reply with one of ``statuses`` is an answer (any other
        raises ``ScrapeError``)."""
        ...


class BoundedSource(Source, Protocol):
    """A source each of whose replies must fit a size on the wire: the system account's, one
    NATS message each, which a leafnode hop with a smaller ``max_payload`` refuses by closing
    the link. A collector that can split its reads finds it with ``bounded``."""

    @property
    def reply_budget(self) -> int | None:
        """The most bytes a reply may take on the wire; None while unknown."""
        ...

    async def get_sized(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                        expect: Mapping[str, int] | None = None) -> tuple[bytearray, int]:
        """``get``, and the size the reply took on the wire."""
        ...


def bounded(source: Source) -> BoundedSource | None:
    """``source`` if it bounds its replies (it has ``get_sized``), else None."""
    return cast(BoundedSource, source) if hasattr(source, "get_sized") else None


def with_margin(n: int) -> int:
    """``n`` items expected, with room for those that come while a request is on its way."""
    return n + n // 8 + 64


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the other collectors need of a server, read from its /varz at this refresh."""

    server_id: str
    #: The server's start time as it reports it; with ``server_id`` it tells a restart.
    start: str
    connections: int
    total_connections: int
    #: Each NATS listening port, mapped to its listener name (client, cluster, ...).
    listeners: Mapping[int, str]
    #: The server's cluster name, "" when it has none.
    cluster: str = ""
    #: The server's name (``server_name``; nats-server uses its id when none is set).
    server_name: str = ""
    #: Leafnode connections of the server now (/varz leafnodes).
    leafnodes: int = 0
    #: The remote clusters the server's gateway configuration names (its own excluded).
    gateways: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, str]:
        return self.server_id, self.start


@dataclass(frozen=True, slots=True)
class ServerContext:
    """Who a collector works for: the server's ``server`` label value and its host, and the
    server's error counts, where a collector counts what it loses without failing."""

    name: str
    host: str
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)


class Collector:
    """One monitoring endpoint of one server.

    Subclasses set the class attributes and implement ``refresh``. ``refresh`` raises
    ``ScrapeError`` when the endpoint cannot be read; the server's collector counts it, logs it
    and calls ``failed``.
    """

    #: ``--collector.<name>``; empty for a collector that cannot be switched off.
    name: ClassVar[str] = ""
    #: The ``endpoint`` label of its errors.
    endpoint: ClassVar[str]
    #: Help of its ``--collector.<name>`` flag.
    help: ClassVar[str] = ""
    #: On without a flag: True, False, or None for "when it can work here".
    default: ClassVar[bool | None] = True
    #: The catalogue families it owns, in catalogue order.
    families: ClassVar[tuple[Metric, ...]]
    #: Every ``reason`` its errors can carry; each is exported at 0 from the start.
    reasons: ClassVar[tuple[str, ...]] = (*FETCH_REASONS, DECODE)
    #: Seconds between extra ``poll`` calls between refreshes, or None.
    poll_interval: float | None = None

    def __init__(self, server: ServerContext, options: Any = None) -> None:
        self.server = server
        self.options = options
        #: What ``samples`` returns: the families of the last good read.
        self._samples: Samples = {}
        #: The identity of the server at the last read (``ServerInfo.identity``).
        self._identity: tuple[str, str] | None = None

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Add the flags of this collector's own options, if it has any."""

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> Any:
        """The options object of this collector from parsed flags."""
        return None

    def label_names(self, metric: Metric) -> tuple[str, ...]:
        return metric.labels

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        raise NotImplementedError

    def follow(self, info: ServerInfo) -> None:
        """Note the server being read; if it restarted since the last read (a new identity),
        ``restarted`` forgets what was kept of the old one: a restarted nats-server numbers its
        connections from 1 again and starts its counters afresh."""
        if info.identity != self._identity:
            if self._identity is not None:
                self.restarted()
            self._identity = info.identity

    def restarted(self) -> None:
        """The server restarted: drop the state kept across refreshes."""

    async def poll(self) -> None:
        """An extra read between refreshes; only collectors with a ``poll_interval``."""

    def samples(self) -> Samples:
        """The samples to export now, keyed by family name."""
        return self._samples

    def claims(self) -> Claims | None:
        """What ``samples()`` claims that one server at a time exports; None when every
        series is this server's alone."""
        return None

    def disown(self, samples: Samples, items: Collection[tuple[str, ...]]) -> Samples:
        """``samples`` (a server's published snapshot) without the series of ``items``, which
        a later read of another server claims; a new dict, the old one is left as it is."""
        raise NotImplementedError

    def failed(self, error: ScrapeError) -> None:
        """This collector's endpoint failed while the server is up. A body that does not
        decode keeps the last good samples (the collector's state is unchanged, and the
        server's collector drops them after ``STALE_AFTER`` failures); a failed request drops
        them at once."""
        if error.reason != DECODE:
            self._samples = {}

    def not_served(self) -> None:
        """The server does not serve this endpoint (HTTP 404): an older nats-server, or a
        feature it does not have. The collector exports nothing of it; that is no error."""
        self._samples = {}

    async def server_down(self) -> None:
        """The server could not be read at all this refresh."""
        self._samples = {}

    async def close(self) -> None:
        """Release what the collector holds; the exporter is stopping."""
