"""Drives the sources and the core for each monitored server and assembles the families.

``NatsCollector.refresh()`` polls every server concurrently; ``families()`` returns what the
exposition renders. The collector is also a prometheus_client collector (``collect()`` and
``describe()``), so it can be registered in any ``CollectorRegistry``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import orjson
from prometheus_client.metrics_core import Metric as ClientMetric

from . import metrics as m
from ._impl import IMPLEMENTATION
from ._version import __version__
from .errors import ScrapeError
from .interop import Family, Sample, client_metrics
from .sources.monitor import MonitorClient

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


def decode_json(endpoint: str, body: bytes) -> dict:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ScrapeError(endpoint, "decode", f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ScrapeError(endpoint, "decode", f"expected a JSON object, got {type(doc).__name__}")
    return doc


class ServerCollector:
    """State of one monitored server across refreshes."""

    def __init__(self, target: Target, client: MonitorClient) -> None:
        self.target = target
        self.client = client
        self.up = False
        #: NATS-derived samples of the last successful refresh; emptied when the server fails,
        #: so a dead server never shows stale values.
        self.samples: Samples = {}
        self.errors: Counter[tuple[str, str]] = Counter()
        self.refreshes = 0
        self.last_success: float | None = None
        self.duration = 0.0

    async def refresh(self) -> None:
        started = time.perf_counter()
        self.refreshes += 1
        try:
            samples = varz_samples(decode_json("varz", await self.client.get("varz")))
        except ScrapeError as exc:
            self._failed(exc)
        else:
            self.samples = samples
            self.up = True
            self.last_success = time.time()
        finally:
            self.duration = time.perf_counter() - started

    def _failed(self, exc: ScrapeError) -> None:
        if self.up or self.refreshes == 1:
            log.warning("server %s is down: %s", self.target.name, exc)
        self.errors[(exc.endpoint, exc.reason)] += 1
        self.samples = {}
        self.up = False

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

    def __init__(self, servers: Sequence[ServerCollector]) -> None:
        if not servers:
            raise ValueError("at least one server to monitor is required")
        names = [s.target.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be unique: {names}")
        self.servers = list(servers)
        self.labelled = len(self.servers) > 1

    async def refresh(self) -> None:
        await asyncio.gather(*(server.refresh() for server in self.servers))

    def families(self) -> list[Family]:
        per_server = [(s.target.name, {**s.samples, **s.self_samples()}) for s in self.servers]
        out: list[Family] = []
        for metric in m.CATALOGUE:
            if not metric.per_server:
                if metric is m.FASTNATS_BUILD_INFO:
                    out.append((metric, metric.labels, [((__version__, IMPLEMENTATION), 1)]))
                continue
            if not self.labelled:
                out.append((metric, metric.labels, per_server[0][1].get(metric.name, [])))
                continue
            samples: list[Sample] = []
            for name, server_samples in per_server:
                samples.extend(((name, *values), value)
                               for values, value in server_samples.get(metric.name, ()))
            out.append((metric, ("server", *metric.labels), samples))
        return out

    # prometheus_client interop: the last refreshed state, no I/O.
    def collect(self) -> Iterator[ClientMetric]:
        return client_metrics(self.families())

    def describe(self) -> Iterator[ClientMetric]:
        labels = ("server",) if self.labelled else ()
        return client_metrics(
            ((metric, labels + metric.labels if metric.per_server else metric.labels, [])
             for metric in m.CATALOGUE), keep_empty=True)
