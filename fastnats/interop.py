"""Turns rendered-family data into prometheus_client metric objects.

Used by ``NatsCollector.collect()`` (so fastnats can be registered in any CollectorRegistry) and by
the reference renderer. prometheus_client appends ``_total`` to counter samples, as OpenMetrics
does; the seed counters that lack the suffix therefore gain it through this path only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .metrics import COUNTER, Metric

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as ClientMetric

Sample = tuple[tuple[str, ...], "int | float"]
# A list, not any sequence: the compiled writer (_writer.pxi) accepts nothing else.
Family = tuple[Metric, tuple[str, ...], list[Sample]]


def client_metrics(families: Iterable[Family], *, keep_empty: bool = False) -> Iterator[ClientMetric]:
    """One prometheus_client metric per family; empty families only with ``keep_empty``."""
    # Imported here: the exporter renders its own text, and prometheus_client adds 3 MB to
    # its resident memory.
    from prometheus_client.metrics_core import Metric as ClientMetric

    for metric, label_names, samples in families:
        if not samples and not keep_empty:
            continue
        name = metric.name
        sample_name = name
        if metric.type == COUNTER:
            # prometheus_client renders a counter family as NAME_total; keep the family and the
            # samples consistent so its output parses back to the same series.
            name = name.removesuffix("_total")
            sample_name = name + "_total"
        family = ClientMetric(name, metric.help, metric.type)
        for label_values, value in samples:
            family.add_sample(sample_name, dict(zip(label_names, label_values)), value)
        yield family
