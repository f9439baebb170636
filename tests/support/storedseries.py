"""Exposition text read back as series under the names Prometheus stores, from its sample lines:
for the tests of names that prometheus_client's parser would change (the compat profiles')."""

from __future__ import annotations

import re
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from tests.support.series import Series

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def parse(text: str) -> Series:
    """The samples of an exposition by the names Prometheus stores (prometheus_client's parser
    would add ``_total`` to the counters, which the official names lack)."""
    out: Series = defaultdict(list)
    list(text_string_to_metric_families(text))  # it parses
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, labels, value = _SAMPLE.fullmatch(line).groups()  # type: ignore[union-attr]
            out[name].append((dict(_LABEL.findall(labels or "")), float(value)))
    return out
