"""``--compat=surveyor`` against a real supercluster (tests.support.cluster, with the JetStream
assets of tests.support.jetstream): every name the nats-surveyor dashboards query
(tests/data/compat-surveyor.txt) that fastnats serves is in the exposition with its labels, and
the names it does not serve (``fastnats.compat.SURVEYOR_NOT_SERVED``) are absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastnats.compat import SURVEYOR_FOREIGN_LABELS, SURVEYOR_NOT_SERVED
from tests.integration.test_compat_real import Series, parse
from tests.support.process import exporting, wait_until

sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))
import extract_compat_names as tool  # noqa: E402

pytestmark = pytest.mark.integration

LIST = Path(__file__).parents[1] / "data" / "compat-surveyor.txt"
FLAGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2", "--compat=surveyor",
         "--collector.jsz", "--jsz.level=consumers", "--collector.accstatz")


def missing(series: Series, names: dict[str, set[str]]) -> list[str]:
    """The served names absent from the exposition, or present without a listed label."""
    out = []
    for name, labels in sorted(names.items()):
        wanted = labels - SURVEYOR_FOREIGN_LABELS["*"] - SURVEYOR_FOREIGN_LABELS.get(
            name, frozenset())
        present = set().union(*(set(sample_labels) for sample_labels, _ in series.get(name, [])))
        if name not in series or not wanted <= present:
            out.append(f"{name} {sorted(wanted - present)}")
    return out


def test_every_served_dashboard_name_is_in_the_exposition(supercluster, jetstream_assets):
    names = tool.parse(LIST.read_text())
    served = {name: labels for name, labels in names.items() if name not in SURVEYOR_NOT_SERVED}
    assert len(served) > 30
    targets = [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
    with exporting(*targets, *FLAGS) as exporter:
        def complete():
            series = parse(exporter.scrape())
            return series if not missing(series, served) else None

        try:
            series = wait_until(complete, timeout=30)
        except AssertionError:
            pytest.fail("missing: " + ", ".join(missing(parse(exporter.scrape()), served)))

    assert not set(SURVEYOR_NOT_SERVED) & set(series)
    [(_, expected)] = series["nats_survey_expected_count"]
    assert expected == len(supercluster.nodes)
    clusters = {labels["server_name"]: labels["server_cluster"]
                for labels, _ in series["nats_core_info"]}
    assert clusters == {node.name: node.cluster for node in supercluster.nodes}
    leaders = [labels["server_name"] for labels, value
               in series["nats_core_jetstream_cluster_raft_group_leader"] if value == 1]
    assert len(leaders) == 1
    gateways = {(labels["server_name"], labels["server_gateway_name"])
                for labels, _ in series["nats_core_gateway_sent_bytes"]}
    assert ("B1", "A") in gateways
