"""Per-server state across refreshes, and the assembly of every server's samples into families.

``NatsCollector.refresh()`` refreshes every server concurrently; ``families()`` returns what the
exposition renders. The collector is also a prometheus_client collector (``collect()`` and
``describe()``), so it can be registered in any ``CollectorRegistry``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from . import metrics as m
from ._impl import IMPLEMENTATION
from ._version import __version__
from .collectors import OPTIONAL, Collector, ServerContext, Source, VarzCollector
from .collectors.base import DECODE, Claims, Samples
from .errors import ScrapeError
from .interop import Family, Sample, client_metrics
from .target import Target

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as ClientMetric

    from .compat import Compat

log = logging.getLogger("fastnats.scrape")

#: The exporter's own per-server families, which no collector owns.
_OWN = frozenset(m.SELF) | {m.NATS_UP}


def default_options() -> dict[str, object]:
    """The collectors that run without flags, each with its default options."""
    return {c.name: None for c in OPTIONAL if c.default is not False}


#: After this many failed refreshes in a row, a collector's last good series are dropped (its
#: state is kept: a later good read continues its counters).
STALE_AFTER = 3


class ServerCollector:
    """State of one monitored server across refreshes.

    ``options`` maps the name of each optional collector to run to its options (None for the
    defaults); /varz always runs. Without ``options``, the collectors that are on by default run.
    Each refresh and poll ends by publishing ``snapshot``, what the exposition shows of this
    server, in one assignment: a render never sees half a refresh.
    """

    def __init__(self, target: Target, source: Source,
                 options: Mapping[str, object] | None = None) -> None:
        self.target = target
        self.source = source
        if options is None:
            options = default_options()
        unknown = set(options) - {c.name for c in OPTIONAL}
        if unknown:
            raise ValueError(f"no such collector: {', '.join(sorted(unknown))}")
        self.context = ServerContext(target.name, target.host)
        self.varz = VarzCollector(self.context)
        self.collectors: list[Collector] = [
            cls(self.context, options[cls.name]) for cls in OPTIONAL if cls.name in options]
        self.up = False
        self.refreshes = 0
        self.last_success: float | None = None
        #: Monotonic time the last refresh ended, for staleness.
        self.refreshed_at: float | None = None
        self.duration = 0.0
        #: Every refresh's duration, summed.
        self.duration_total = 0.0
        #: The errors of the last refresh, as logged.
        self.problems: list[ScrapeError] = []
        #: Failed refreshes in a row, by endpoint.
        self.failures: dict[str, int] = {c.endpoint: 0 for c in (self.varz, *self.collectors)}
        self.snapshot: Samples = {}
        #: What ``snapshot`` claims that one server at a time exports, by collector name,
        #: with the collector that can give it up.
        self.claims: dict[str, tuple[Claims, Collector]] = {}
        #: Endpoints the server answered 404 for (logged once each).
        self.unserved: set[str] = set()
        # Every known (endpoint, reason) is exported from the start, at 0 until it happens.
        for collector in (self.varz, *self.collectors):
            for reason in collector.reasons:
                self.errors[(collector.endpoint, reason)] += 0
        self.publish()

    @property
    def errors(self) -> Counter[tuple[str, str]]:
        """Failed reads by (endpoint, reason), every known pair from 0."""
        return self.context.errors

    @property
    def poll_interval(self) -> float | None:
        intervals = [c.poll_interval for c in self.collectors if c.poll_interval is not None]
        return min(intervals) if intervals else None

    def collector(self, name: str) -> Collector | None:
        return next((c for c in self.collectors if c.name == name), None)

    async def refresh(self) -> None:
        started = time.perf_counter()
        self.refreshes += 1
        self.problems = []
        try:
            info = await self.varz.read(self.source)
        except Exception as exc:  # noqa: BLE001  (whatever a server sends marks only it down)
            await self._down(exc)
        else:
            if not self.up:
                log.info("server %s is %s", self.target.name,
                         "up" if self.refreshes == 1 else "up again")
            self.up = True
            self.last_success = time.time()
            self._succeeded(self.varz)
            for collector in self.collectors:
                await self._run(collector, collector.refresh(self.source, info))
        finally:
            self.duration = time.perf_counter() - started
            self.duration_total += self.duration
            self.refreshed_at = time.monotonic()
            self.publish()

    async def unreachable(self, error: ScrapeError) -> None:
        """A refresh that could not ask the server at all (fleet mode: it did not answer
        discovery): counted, logged and published as a refresh whose /varz failed."""
        self.refreshes += 1
        self.problems = []
        try:
            await self._down(error)
        finally:
            self.duration = 0.0
            self.refreshed_at = time.monotonic()
            self.publish()

    async def poll(self) -> None:
        """The extra reads between refreshes, of the collectors that have a poll interval."""
        if self.up:
            for collector in self.collectors:
                if collector.poll_interval is not None:
                    await self._run(collector, collector.poll(), poll=True)
            self.publish()

    async def _run(self, collector: Collector, read: Awaitable[None], *,
                   poll: bool = False) -> None:
        try:
            await read
        except ScrapeError as exc:
            if exc.status == 404 and collector.name:
                self._not_served(collector)
            else:
                self._failed(collector, exc)
        except Exception as exc:  # noqa: BLE001  (a bad endpoint fails only its collector)
            self._failed(collector, exc)
        else:
            if not poll:
                self._succeeded(collector)

    def _not_served(self, collector: Collector) -> None:
        if collector.endpoint not in self.unserved:
            log.info("server %s does not serve /%s; its collector exports nothing for it",
                     self.target.name, collector.endpoint)
            self.unserved.add(collector.endpoint)
        self.failures[collector.endpoint] = 0
        collector.not_served()

    def _succeeded(self, collector: Collector) -> None:
        if collector.endpoint in self.unserved:
            # An upgraded or reconfigured server: said once, as its 404 was.
            log.info("server %s serves /%s now", self.target.name, collector.endpoint)
            self.unserved.discard(collector.endpoint)
        elif self.failures[collector.endpoint] and collector is not self.varz:
            log.info("server %s: /%s reads again", self.target.name, collector.endpoint)
        self.failures[collector.endpoint] = 0

    def _failed(self, collector: Collector, exc: Exception) -> None:
        error = self._scrape_error(collector, exc)
        self.errors[(error.endpoint, error.reason)] += 1
        self.problems.append(error)
        if not self.failures[collector.endpoint]:
            # Once per change of state; content no check foresaw gets its traceback.
            log.log(logging.WARNING if isinstance(exc, ScrapeError) else logging.ERROR,
                    "server %s: %s", self.target.name, error, exc_info=self._traceback(exc))
        self.failures[collector.endpoint] += 1
        collector.failed(error)

    async def _down(self, exc: Exception) -> None:
        error = self._scrape_error(self.varz, exc)
        if self.up or self.refreshes == 1:
            log.log(logging.WARNING if isinstance(exc, ScrapeError) else logging.ERROR,
                    "server %s is down: %s", self.target.name, error,
                    exc_info=self._traceback(exc))
        self.errors[(error.endpoint, error.reason)] += 1
        self.problems.append(error)
        self.failures[self.varz.endpoint] += 1
        self.up = False
        for collector in (self.varz, *self.collectors):
            await collector.server_down()

    def _scrape_error(self, collector: Collector, exc: Exception) -> ScrapeError:
        """``exc`` as a ScrapeError whose text holds no password of this server: a source may
        quote its URL whole (MonitorClient never does)."""
        error = _as_scrape_error(collector, exc)
        detail = self.target.redact(error.detail)
        if detail == error.detail:
            return error
        return ScrapeError(error.endpoint, error.reason, detail, status=error.status)

    def _traceback(self, exc: Exception) -> Exception | None:
        """The traceback to log for ``exc``: none for a ScrapeError, nor for an error whose
        message would show a password."""
        if isinstance(exc, ScrapeError) or self.target.redact(str(exc)) != str(exc):
            return None
        return exc

    async def close(self) -> None:
        for collector in self.collectors:
            await collector.close()

    def publish(self) -> None:
        exported = self._exported()
        self.snapshot = {**self.nats_samples(exported), **self.self_samples()}
        self.claims = {collector.name: (claims, collector) for collector in exported
                       if (claims := collector.claims()) is not None}

    def _exported(self) -> list[Collector]:
        """The collectors whose samples are exported now: none while the server is down, none
        that failed ``STALE_AFTER`` refreshes in a row."""
        if not self.up:
            return []
        return [self.varz, *(collector for collector in self.collectors
                             if self.failures[collector.endpoint] < STALE_AFTER)]

    def nats_samples(self, exported: Sequence[Collector] | None = None) -> Samples:
        """The NATS-derived samples to export now (of ``_exported()``)."""
        out: Samples = {}
        for collector in self._exported() if exported is None else exported:
            out.update(collector.samples())
        return out

    def self_samples(self) -> Samples:
        out: Samples = {
            m.NATS_UP.name: [((), 1 if self.up else 0)],
            m.FASTNATS_COLLECTOR_SUCCESS.name: [
                ((collector.endpoint,), 0 if self.failures[collector.endpoint] else 1)
                for collector in (self.varz, *self.collectors)],
            m.FASTNATS_REFRESH_DURATION_SECONDS.name: [((), self.duration)],
            m.FASTNATS_REFRESHES_TOTAL.name: [((), self.refreshes)],
            m.FASTNATS_REFRESH_SECONDS_TOTAL.name: [((), self.duration_total)],
            m.FASTNATS_REFRESH_ERRORS_TOTAL.name: [
                (key, count) for key, count in sorted(self.errors.items())],
        }
        if self.last_success is not None:
            out[m.FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name] = [
                ((), self.last_success)]
        return out


def _as_scrape_error(collector: Collector, exc: Exception) -> ScrapeError:
    """``exc`` as the collector's ScrapeError; content no check foresaw is a decode error."""
    if isinstance(exc, ScrapeError):
        return exc
    return ScrapeError(collector.endpoint, DECODE, f"unexpected content: {exc!r}")


class NatsCollector:
    """All monitored servers; with more than one, every per-server series gets ``server``.

    Every server runs the same collectors with the same options. With ``compat``, the families
    of a compatibility profile (``--compat``) follow the native ones, built from the same samples.
    """

    #: The process-wide families (``per_server=False``) this collector exports, each from
    #: ``process_samples()``; a subclass that adds some extends both.
    process_families: tuple[m.Metric, ...] = (m.FASTNATS_BUILD_INFO,)
    #: True when ``servers`` changes between refreshes (fleet mode): the refresher then runs
    #: one loop of ``refresh()`` instead of one per server.
    dynamic = False

    def __init__(self, servers: Sequence[ServerCollector], compat: Compat | None = None, *,
                 prototype: ServerCollector | None = None, labelled: bool | None = None) -> None:
        """``prototype`` gives the collectors and their label names when ``servers`` may be
        empty (it is never refreshed); ``labelled`` forces the ``server`` label on or off."""
        if not servers and prototype is None:
            raise ValueError("at least one server to monitor is required")
        names = [s.target.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be unique: {names}")
        self.servers = list(servers)
        self._refusals: Callable[[], Mapping[str, int]] | None = None
        self.labelled = len(self.servers) > 1 if labelled is None else labelled
        self.compat = compat
        first = prototype if prototype is not None else self.servers[0]
        #: The families to export and their label names, without ``server``.
        self.label_names: dict[str, tuple[str, ...]] = {
            metric.name: metric.labels for metric in m.CATALOGUE
            if metric in _OWN or metric in self.process_families
            or metric in first.varz.families}
        for collector in first.collectors:
            for metric in collector.families:
                self.label_names[metric.name] = collector.label_names(metric)

    async def refresh(self) -> None:
        await asyncio.gather(*(server.refresh() for server in self.servers))

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self.servers))

    def families(self) -> list[Family]:
        per_server = self.snapshots()
        process = self.process_samples()
        out: list[Family] = []
        for metric in m.CATALOGUE:
            labels = self.label_names.get(metric.name)
            if labels is None:
                continue
            if not metric.per_server:
                out.append((metric, labels, process.get(metric.name, [])))
                continue
            if not self.labelled:
                out.append((metric, labels, per_server[0][1].get(metric.name, [])))
                continue
            samples: list[Sample] = []
            for name, server_samples in per_server:
                samples.extend(((name, *values), value)
                               for values, value in server_samples.get(metric.name, ()))
            out.append((metric, ("server", *labels), samples))
        if self.compat is not None:
            out.extend(self.compat.families(per_server, self.label_names, self.labelled,
                                            process))
        return out

    def snapshots(self) -> list[tuple[str, Samples]]:
        """Each server's name and published snapshot. An item two servers claim (a stream
        whose leader changed between their reads) stays only with the server read last: the
        other's view of it is older."""
        snapshots = [server.snapshot for server in self.servers]
        names = {name for server in self.servers for name in server.claims}
        for name in sorted(names):
            claimants = [(*server.claims[name], i) for i, server in enumerate(self.servers)
                         if name in server.claims]
            if len(claimants) < 2:
                continue
            every = [claims.items for claims, _, _ in claimants]
            if len(frozenset().union(*every)) == sum(map(len, every)):
                continue  # no item claimed twice: the usual case, decided in C
            claimants.sort(key=lambda claimant: claimant[0].read_at, reverse=True)
            taken: set[tuple[str, ...]] = set()
            for claims, collector, i in claimants:
                lost = claims.items & taken
                taken |= claims.items
                if lost:
                    snapshots[i] = collector.disown(snapshots[i], lost)
        return [(server.target.name, snapshot)
                for server, snapshot in zip(self.servers, snapshots)]

    def export_refusals(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export the web server's refusal counters (``fastnats_http_refused_total``), read
        from ``counts()`` at each render."""
        self._refusals = counts
        self.label_names[m.FASTNATS_HTTP_REFUSED_TOTAL.name] = \
            m.FASTNATS_HTTP_REFUSED_TOTAL.labels

    def process_samples(self) -> Samples:
        """The samples of ``process_families``, keyed by family name."""
        out: Samples = {m.FASTNATS_BUILD_INFO.name: [((__version__, IMPLEMENTATION), 1)]}
        if self._refusals is not None:
            out[m.FASTNATS_HTTP_REFUSED_TOTAL.name] = [
                ((reason,), count) for reason, count in self._refusals().items()]
        return out

    # prometheus_client interop: the last refreshed state, no I/O.
    def collect(self) -> Iterator[ClientMetric]:
        return client_metrics(self.families())

    def describe(self) -> Iterator[ClientMetric]:
        server = ("server",) if self.labelled else ()
        families: list[Family] = [
            (metric, (server if metric.per_server else ()) + self.label_names[metric.name], [])
            for metric in m.CATALOGUE if metric.name in self.label_names]
        if self.compat is not None:
            families += self.compat.families([], self.label_names, self.labelled)
        return client_metrics(families, keep_empty=True)
