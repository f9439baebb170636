"""Drives the sources and the core for each monitored server and assembles the families.

``NatsCollector.refresh()`` polls every server concurrently; ``families()`` returns what the
exposition renders. The collector is also a prometheus_client collector (``collect()`` and
``describe()``), so it can be registered in any ``CollectorRegistry``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import orjson

from . import metrics as m
from ._impl import IMPLEMENTATION, impl
from ._version import __version__
from .errors import ConnzDecodeError, ScrapeError, WireProtocolError
from .interop import Family, Sample, client_metrics
from .sources.monitor import MonitorClient
from .sources.wire import SockDiag, listener_ports

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as ClientMetric

log = logging.getLogger("fastnats.scrape")

Samples = dict[str, list[Sample]]


@dataclass(frozen=True, slots=True)
class Target:
    """One monitored server: ``name`` is its ``server`` label value, ``url`` its monitor URL."""

    name: str
    url: str


def parse_target(spec: str) -> Target:
    """Parse ``URL`` or ``name=URL``; the name defaults to the URL's host:port."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a monitoring URL: {spec!r} (expected http://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in monitoring URL: {spec!r}") from None
    if port is None:
        url = f"{parts.scheme}://{parts.netloc}:8222{parts.path}"
        port = 8222
    return Target(name or f"{parts.hostname}:{port}", url.rstrip("/"))


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: str) -> int:
    """Unix time in nanoseconds of a Go RFC 3339 timestamp (datetime holds only microseconds)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp())
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return seconds * 1_000_000_000 + nanos


def varz_samples(varz: dict) -> Samples:
    """The /varz-derived families of one server, keyed by metric name."""
    out: Samples = {}
    try:
        for metric in m.SEED:
            if metric.varz is not None:
                value = varz[metric.varz]
                if type(value) not in (int, float):
                    raise ValueError(f"/varz {metric.varz} is {value!r}, not a number")
                out[metric.name] = [((), value)]
        version = varz["version"]
        if not isinstance(version, str):
            raise ValueError(f"/varz version is {version!r}")
        out[m.NATS_SERVER_VERSION.name] = [((version,), 1)]
        uptime_ns = parse_rfc3339_ns(varz["now"]) - parse_rfc3339_ns(varz["start"])
        out[m.NATS_SERVER_UPTIME_SECONDS.name] = [((), max(uptime_ns, 0) / 1e9)]
        cluster = varz.get("cluster") or {}
        out[m.NATS_SERVER_INFO.name] = [(
            (str(varz.get("server_name", "")), str(varz["server_id"]), version,
             str(cluster.get("name", ""))), 1)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ScrapeError("varz", "decode", f"unexpected /varz content: {exc!r}") from None
    return out


def decode_json(endpoint: str, body: bytes | bytearray) -> dict:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ScrapeError(endpoint, "decode", f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ScrapeError(endpoint, "decode", f"expected a JSON object, got {type(doc).__name__}")
    return doc


@dataclass(frozen=True, slots=True)
class ConnzOptions:
    """How /connz is aggregated; shared by every monitored server."""

    group_by: tuple[str, ...] = m.DEFAULT_GROUP_BY
    max_groups: int = 1000
    group_ttl: float = 3600.0
    top_k: int = 10
    per_connection: bool = False
    per_connection_max: int = 1000

    def label_names(self, metric: m.Metric) -> tuple[str, ...]:
        return self.group_by if metric.labels == (m.GROUP_LABELS,) else metric.labels


# The first bytes of a /connz body hold its counts, before the connections array.
_CONNZ_HEAD = re.compile(rb'"total"\s*:\s*(\d+)')


def connz_total(body: bytes | bytearray) -> int | None:
    match = _CONNZ_HEAD.search(body, 0, 4096)
    return int(match[1]) if match else None


class ConnzReader:
    """Fetches every open connection, and those closed since the last refresh, each refresh.

    One request asks for all open connections: nats-server builds and sorts every connection
    before it cuts a page, so paging would cost it more. The limit comes from the previous count
    or /varz, plus a margin; if the server still has more, the request is repeated larger.
    Closed connections carry their final counters; only the ones closed since the previous
    refresh are asked for (the most recent first), estimated from /varz.
    """

    MAX_ATTEMPTS = 3

    def __init__(self, client: MonitorClient, options: ConnzOptions) -> None:
        self.client = client
        self.options = options
        self._identity: tuple[str, str] | None = None
        self._restart()

    def _restart(self) -> None:
        options = self.options
        self.aggregator = impl.ConnzAggregator(
            options.group_by, options.max_groups, options.group_ttl, options.top_k,
            options.per_connection, options.per_connection_max)
        self._last_total_connections: int | None = None
        self._last_open = 0

    @staticmethod
    def _margin(n: int) -> int:
        return n + n // 8 + 64

    async def refresh(self, varz: dict) -> Samples:
        identity = (str(varz["server_id"]), str(varz["start"]))
        if identity != self._identity:
            # A restarted server numbers its connections from 1 again and starts its counters
            # afresh: per-cid state from before would be wrong.
            if self._identity is not None:
                self._restart()
            self._identity = identity
        limit = self._margin(max(self.aggregator.total, int(varz["connections"])))
        for _ in range(self.MAX_ATTEMPTS):
            open_body = await self.client.get(
                "connz", {"state": "open", "limit": limit, "auth": "true", "subs": "false"})
            total = connz_total(open_body)
            if total is None or total <= limit:
                break
            limit = self._margin(total)
        closed_body = None
        total_connections = int(varz["total_connections"])
        if self._last_total_connections is not None:
            opened = total_connections - self._last_total_connections
            closed_since = max(self._last_open + opened - int(varz["connections"]), 0)
            if closed_since:
                closed_body = await self.client.get("connz", {
                    "state": "closed", "sort": "stop", "auth": "true",
                    "limit": self._margin(closed_since)})
        try:
            await asyncio.to_thread(self.aggregator.update, open_body, closed_body, time.time())
        except ConnzDecodeError as exc:
            raise ScrapeError("connz", "decode", str(exc)) from None
        self._last_total_connections = total_connections
        self._last_open = self.aggregator.count
        return self.aggregator.families()


def is_local_host(host: str) -> bool:
    """True when ``host`` resolves to an address of this machine (so its sockets are visible)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((addr[0], 0))  # only an address of a local interface binds
            return True
        except OSError:
            continue
    return False


class WirePoller:
    """Polls the kernel's counters of one local server's listening sockets.

    It polls right after each read of /varz, so wire bytes and payload bytes describe the same
    moment; a ``interval`` shorter than the refresh interval adds polls in between, which
    narrows what poll mode loses of a closing connection. ``force`` None enables it when the
    server's listeners are visible here; True insists (a failure to start is logged as an
    error); False never starts it. The dump runs in a worker thread; the parse and the state
    update run on the event loop, so ``families()`` never sees half an update.
    """

    def __init__(self, server: str, host: str, interval: float, refresh_interval: float,
                 force: bool | None, errors: Counter[tuple[str, str]]) -> None:
        self.server = server
        self.host = host
        self.interval = interval
        self.background = interval < refresh_interval
        self.force = force
        self.errors = errors
        self.counter: impl.WireCounter | None = None
        self._diag: SockDiag | None = None
        self._ports: dict[int, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # The background polls and those after /varz share one netlink socket: one dump at a
        # time, or their replies interleave.
        self._polling = asyncio.Lock()
        self._said_why = False

    async def follow(self, varz: dict) -> None:
        """Poll after each successful read of /varz; start, or restart on new ports, first."""
        if self.force is False:
            return
        ports = listener_ports(varz)
        if ports == self._ports:
            if self.counter is not None:
                await self._poll()
            return
        await self.stop()
        self._ports = ports
        why_not = await asyncio.to_thread(self._why_not, ports)
        if why_not is not None:
            if not self._said_why:
                level = logging.ERROR if self.force else logging.INFO
                log.log(level, "wire byte counter off for %s: %s; nats_server_total_bytes_* "
                               "are not exported", self.server, why_not)
                self._said_why = True
            return
        assert self._diag is not None
        self.counter = impl.WireCounter(ports, self._diag.mode)
        log.info("wire byte counter on for %s: listeners %s, mode %s", self.server,
                 ", ".join(f"{name}:{port}" for port, name in sorted(ports.items())),
                 self._diag.mode)
        await self._poll()
        if self.background:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"fastnats-wire-{self.server}")

    def _why_not(self, ports: dict[int, str]) -> str | None:
        ok, reason = SockDiag.available()
        if not ok:
            return reason
        if not is_local_host(self.host):
            return f"{self.host} is not an address of this host"
        try:
            diag = SockDiag(ports)
        except (OSError, ValueError) as exc:
            return f"sock_diag: {exc}"
        client_ports = {port for port, name in ports.items() if name == "client"}
        try:
            visible = diag.listening_ports()
        except (OSError, WireProtocolError) as exc:
            diag.close()
            return f"sock_diag: {exc}"
        if not client_ports <= visible:
            diag.close()
            return "the server's listening sockets are not visible in this network namespace"
        self._diag = diag
        return None

    async def _poll(self) -> None:
        async with self._polling:
            if self._diag is None or self.counter is None:
                return      # stopped while this poll waited for the one before
            try:
                buffers = await asyncio.to_thread(self._diag.dump)
                self.counter.update(buffers)
            except (OSError, WireProtocolError) as exc:
                self.errors[("wire", "netlink")] += 1
                log.warning("wire byte counter poll failed for %s: %s", self.server, exc)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
                return
            except asyncio.TimeoutError:
                pass
            await self._poll()

    def families(self) -> Samples:
        # families() builds new lists each call, so widening their int samples is safe.
        return cast(Samples, self.counter.families()) if self.counter is not None else {}

    async def stop(self) -> None:
        # Let a dump in its worker thread finish before the socket closes under it.
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        async with self._polling:
            if self._diag is not None:
                self._diag.close()
                self._diag = None
            self.counter = None
            self._ports = None


class ServerCollector:
    """State of one monitored server across refreshes."""

    def __init__(self, target: Target, client: MonitorClient, *,
                 connz: ConnzOptions | None = None, wire: bool | None = None,
                 wire_interval: float = 5.0, refresh_interval: float = 5.0) -> None:
        self.target = target
        self.client = client
        self.connz = ConnzReader(client, connz) if connz is not None else None
        #: The connz families of the last good read; kept when one read fails to decode.
        self.connz_samples: Samples = {}
        self.up = False
        #: NATS-derived samples of the last successful refresh; emptied when the server fails,
        #: so a dead server never shows stale values.
        self.samples: Samples = {}
        self.errors: Counter[tuple[str, str]] = Counter()
        self.refreshes = 0
        self.last_success: float | None = None
        self.duration = 0.0
        self.wire = WirePoller(target.name, urlsplit(target.url).hostname or "", wire_interval,
                               refresh_interval, wire, self.errors)

    async def refresh(self) -> None:
        started = time.perf_counter()
        self.refreshes += 1
        try:
            varz = decode_json("varz", await self.client.get("varz"))
            samples = varz_samples(varz)
        except ScrapeError as exc:
            await self._failed(exc)
        else:
            await self.wire.follow(varz)
            self.samples = samples
            self.up = True
            self.last_success = time.time()
            if self.connz is not None:
                await self._refresh_connz(varz)
        finally:
            self.duration = time.perf_counter() - started

    async def _refresh_connz(self, varz: dict) -> None:
        assert self.connz is not None
        try:
            self.connz_samples = await self.connz.refresh(varz)
        except ScrapeError as exc:
            # The server answers /varz, so it is up; a bad /connz body keeps the previous
            # aggregates (the aggregator's state is unchanged), a failed request drops them.
            self.errors[(exc.endpoint, exc.reason)] += 1
            log.warning("server %s: %s", self.target.name, exc)
            if exc.reason != "decode":
                self.connz_samples = {}

    async def _failed(self, exc: ScrapeError) -> None:
        if self.up or self.refreshes == 1:
            log.warning("server %s is down: %s", self.target.name, exc)
        self.errors[(exc.endpoint, exc.reason)] += 1
        self.samples = {}
        self.up = False
        # A restarted server may listen on other ports and starts its counters afresh.
        await self.wire.stop()

    def nats_samples(self) -> Samples:
        """The NATS-derived samples to export now; none while the server is down."""
        if not self.up:
            return {}
        return {**self.samples, **self.connz_samples, **self.wire.families()}

    def self_samples(self) -> Samples:
        out: Samples = {
            m.NATS_UP.name: [((), 1 if self.up else 0)],
            m.FASTNATS_REFRESH_DURATION_SECONDS.name: [((), self.duration)],
            m.FASTNATS_REFRESHES_TOTAL.name: [((), self.refreshes)],
        }
        if self.errors:
            out[m.FASTNATS_REFRESH_ERRORS_TOTAL.name] = [
                (key, count) for key, count in sorted(self.errors.items())]
        if self.last_success is not None:
            out[m.FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name] = [
                ((), self.last_success)]
        return out


class NatsCollector:
    """All monitored servers; with more than one, every per-server series gets ``server``."""

    def __init__(self, servers: Sequence[ServerCollector],
                 connz: ConnzOptions | None = None) -> None:
        if not servers:
            raise ValueError("at least one server to monitor is required")
        names = [s.target.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be unique: {names}")
        self.servers = list(servers)
        self.labelled = len(self.servers) > 1
        options = connz or ConnzOptions()
        self.label_names = {metric.name: options.label_names(metric) for metric in m.CATALOGUE}

    async def refresh(self) -> None:
        await asyncio.gather(*(server.refresh() for server in self.servers))

    async def close(self) -> None:
        await asyncio.gather(*(server.wire.stop() for server in self.servers))

    def families(self) -> list[Family]:
        per_server = [(s.target.name, {**s.nats_samples(), **s.self_samples()})
                      for s in self.servers]
        out: list[Family] = []
        for metric in m.CATALOGUE:
            if not metric.per_server:
                if metric is m.FASTNATS_BUILD_INFO:
                    out.append((metric, metric.labels, [((__version__, IMPLEMENTATION), 1)]))
                continue
            labels = self.label_names[metric.name]
            if not self.labelled:
                out.append((metric, labels, per_server[0][1].get(metric.name, [])))
                continue
            samples: list[Sample] = []
            for name, server_samples in per_server:
                samples.extend(((name, *values), value)
                               for values, value in server_samples.get(metric.name, ()))
            out.append((metric, ("server", *labels), samples))
        return out

    # prometheus_client interop: the last refreshed state, no I/O.
    def collect(self) -> Iterator[ClientMetric]:
        return client_metrics(self.families())

    def describe(self) -> Iterator[ClientMetric]:
        labels = ("server",) if self.labelled else ()
        return client_metrics(
            ((metric, labels + self.label_names[metric.name] if metric.per_server
              else self.label_names[metric.name], [])
             for metric in m.CATALOGUE), keep_empty=True)
