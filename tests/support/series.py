"""Exposition text read back with prometheus_client's parser: the samples as series by name, the
sums the tests take over them, and a check that no series repeats."""

from __future__ import annotations

from collections import Counter, defaultdict

from prometheus_client.parser import text_string_to_metric_families

Series = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Series:
    out: Series = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def by_name(series: Series, metric: str) -> dict[str, float]:
    """The metric summed per client name (the account label is empty without auth)."""
    out: dict[str, float] = Counter()
    for labels, value in series[metric]:
        out[labels["name"]] += value
    return dict(out)


def total(series: Series, metric: str) -> float:
    return sum(value for _, value in series[metric])


def single(series: Series, metric: str) -> float:
    [(_, value)] = series[metric]
    return value


def assert_well_formed(text: bytes) -> None:
    seen = set()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
