"""Families, and the prometheus_client metric objects ``NatsCollector.collect()`` turns them into.

A family is ``(metric, label_names, samples)``; the text writers (``_core.render_text`` and
``_reference.render_text``) write it themselves, and only ``collect()``/``describe()`` go through
prometheus_client, so that fastnats can be registered in any CollectorRegistry. prometheus_client
appends ``_total`` to counter samples, as OpenMetrics does; the seed counters that lack the
suffix therefore gain it through this path only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .metrics import COUNTER, DISTRIBUTION, Metric

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as ClientMetric

#: A distribution's value: cumulative bucket counts, one per ``Metric.buckets`` (+Inf last), and
#: the sum.
Histogram = tuple[tuple[int, ...], int | float]
Sample = tuple[tuple[str, ...], int | float | Histogram]
# A list, not any sequence: the compiled writer (_core/text.pxi) accepts nothing else.
Family = tuple[Metric, tuple[str, ...], list[Sample]]


def client_metrics(families: Iterable[Family], *,
                   keep_empty: bool = False) -> Iterator[ClientMetric]:
    """One prometheus_client metric per family; empty families only with ``keep_empty``.

    A distribution becomes a ``gaugehistogram`` (``_bucket`` with ``le`` last, ``_gsum``,
    ``_gcount``), the OpenMetrics type of a histogram of what exists now.
    """
    # Imported here: the exporter renders its own text, and prometheus_client adds 3 MB to
    # its resident memory.
    from prometheus_client.metrics_core import Metric as ClientMetric

    for metric, label_names, samples in families:
        if not samples and not keep_empty:
            continue
        if metric.type == DISTRIBUTION:
            family = ClientMetric(metric.name, metric.help, "gaugehistogram")
            for label_values, value in samples:
                _add_histogram(family, metric, dict(zip(label_names, label_values)), value)
            yield family
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
            if isinstance(value, tuple):
                raise ValueError(
                    f"{metric.name}: a {metric.type} sample is a number, not {value!r}")
            family.add_sample(sample_name, dict(zip(label_names, label_values)), value)
        yield family


def _add_histogram(family: ClientMetric, metric: Metric, labels: dict[str, str],
                   value: object) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple)
            and len(value[0]) == len(metric.buckets) and metric.buckets):
        raise ValueError(f"{metric.name}: a histogram sample is (counts, sum) with one count per "
                         f"bucket {metric.buckets!r}, not {value!r}")
    counts, total = value
    for le, count in zip(metric.buckets, counts):
        family.add_sample(metric.name + "_bucket", {**labels, "le": le}, count)
    family.add_sample(metric.name + "_gsum", labels, total)
    family.add_sample(metric.name + "_gcount", labels, counts[-1])
