"""The /healthz collector: whether the server calls itself healthy, which kinds of check fail,
and, on request, the JetStream-only checks.

nats-server answers /healthz with 200 and ``{"status":"ok"}`` when it is healthy, and with 503
and a JSON body when it is not: ``{"status":"unavailable","error":"..."}``, or with
``details=true`` ``{"status":"error","errors":[{"type":"JETSTREAM","error":"..."}, ...]}``.
A 503 with such a body is an answer (the server is unhealthy), not a failed read.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

from .. import metrics as m
from ..errors import ScrapeError
from ..flags import field_list
from ..interop import Sample
from .base import Collector, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json

#: The statuses whose body is a health report: 503 is an unhealthy server's.
STATUSES = (200, 503)
#: The failure types nats-server sends (its HealthZErrorType names); any other type a server
#: sends is summed into ``metrics.OTHER_GROUP``, so a server cannot make a series per type.
FAILURE_TYPES = frozenset({"CONNECTION", "BAD_REQUEST", "JETSTREAM", "ACCOUNT", "STREAM",
                           "CONSUMER"})
#: Each ``--healthz.jetstream`` check, its ``check`` label value, and the query that asks it.
JETSTREAM_CHECKS = {"enabled-only": "js-enabled-only", "server-only": "js-server-only"}


@dataclass(frozen=True, slots=True)
class HealthzOptions:
    """What /healthz is asked; shared by every monitored server."""

    details: bool = True
    jetstream: tuple[str, ...] = ()


_checks = field_list(JETSTREAM_CHECKS, "JetStream health check")


def health(body: bytes | bytearray) -> tuple[bool, Counter[str] | None]:
    """Whether a /healthz body says ok, and its failing checks counted by type, types outside
    ``FAILURE_TYPES`` as ``_other`` (None when the body lists none: no ``details=true``, or a
    server that ignores it)."""
    report = Fields("healthz", decode_json("healthz", body))
    healthy = report.text("status") == "ok"
    if report.doc.get("errors") is None:
        return healthy, None
    errors = report.array("errors")
    failures: Counter[str] = Counter()
    for at, error in enumerate(errors):
        kind = Fields("healthz", error, f"errors[{at}].").text("type")
        failures[kind if kind in FAILURE_TYPES else m.OTHER_GROUP] += 1
    return healthy, failures


class HealthzCollector(Collector):
    """Reads /healthz, with ``details=true`` unless ``--no-healthz.details``, then once more per
    ``--healthz.jetstream`` check.

    A failed read (a status other than 200 and 503, a body that is not a health report, a
    timeout) drops the collector's series at once, not after ``STALE_AFTER`` refreshes: an old
    "healthy" is the wrong answer about a server whose health check no longer answers.
    """

    name = "healthz"
    endpoint = "healthz"
    help = "server health from /healthz, and the kinds of check that fail"
    families = m.HEALTHZ

    options: HealthzOptions

    def __init__(self, server: ServerContext, options: HealthzOptions | None = None) -> None:
        super().__init__(server, options or HealthzOptions())
        self._samples: Samples = {}

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--healthz.details", dest="healthz_details", action=argparse.BooleanOptionalAction,
            default=True, help="ask /healthz for details=true and export "
                               "nats_server_health_failures by type of check (default: on)")
        group.add_argument(
            "--healthz.jetstream", dest="healthz_jetstream", type=_checks, default=(),
            metavar="CHECKS",
            help="comma-separated JetStream-only health checks to ask for too, one request "
                 f"each, from {', '.join(JETSTREAM_CHECKS)}; exported as "
                 "nats_server_jetstream_healthy{check} (default: none)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> HealthzOptions:
        return HealthzOptions(args.healthz_details, args.healthz_jetstream)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        body = await source.get(self.endpoint, {"details": "true"} if self.options.details
                                else None, statuses=STATUSES)
        healthy, failures = health(body)
        samples: Samples = {m.NATS_SERVER_HEALTHY.name: [((), int(healthy))]}
        if failures is not None and self.options.details:
            samples[m.NATS_SERVER_HEALTH_FAILURES.name] = [
                ((kind,), count) for kind, count in sorted(failures.items())]
        checks: list[Sample] = []
        for check in self.options.jetstream:
            body = await source.get(self.endpoint, {JETSTREAM_CHECKS[check]: "true"},
                                    statuses=STATUSES)
            checks.append(((check,), int(health(body)[0])))
        if checks:
            samples[m.NATS_SERVER_JETSTREAM_HEALTHY.name] = checks
        self._samples = samples

    def failed(self, error: ScrapeError) -> None:
        self._samples = {}
