"""Checks of what deploy/ ships, without running anything: the Prometheus rules and their
promtool tests against each other and the catalogue, and the Grafana dashboard against the
catalogue (promtool and a real exposition: tests/integration/test_deploy.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastnats import metrics
from tests.e2e import support
from tests.e2e.support import (
    ALERTS,
    DASHBOARD,
    JOB,
    PROMETHEUS_SERIES,
    RECORDING,
    RULE_FILES,
    RULE_TESTS,
    alert_names,
    all_panels,
    catalogue_series_names,
    dashboard_metric_names,
    load_dashboard,
    load_yaml,
    metric_names,
    recorded_names,
)

# -- Prometheus rules

def rule_test_cases() -> Iterator[dict]:
    for path in RULE_TESTS:
        yield from load_yaml(path)["tests"]


def test_every_alert_is_tested_firing_and_not_firing():
    firing, quiet = set(), set()
    for case in rule_test_cases():
        for check in case.get("alert_rule_test", ()):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    for alert in alert_names():
        assert alert in firing, f"{alert}: no promtool test where it fires"
        assert alert in quiet, f"{alert}: no promtool test where it stays quiet"
    assert firing | quiet <= set(alert_names()), "a promtool test names an unknown alert"


def test_every_recording_rule_is_tested():
    tested = {metric_names(check["expr"]).pop() for case in rule_test_cases()
              for check in case.get("promql_expr_test", ())}
    assert set(recorded_names()) <= tested, set(recorded_names()) - tested


def test_rules_read_only_catalogue_metrics():
    allowed = catalogue_series_names() | PROMETHEUS_SERIES | set(recorded_names())
    for path in RULE_FILES:
        for rule in support.rules(path):
            names = metric_names(rule["expr"])
            assert names, f"{path.name}: no metric found in {rule['expr']!r}"
            assert names <= allowed, (
                f"{path.name}: {rule.get('alert') or rule.get('record')} reads "
                f"{sorted(names - allowed)}, which fastnats.metrics does not define")


def test_alerts_watch_the_scrape_job_of_the_readme():
    exporter_down = [r for r in support.rules(ALERTS) if r.get("alert") == "FastnatsExporterDown"]
    assert [r["expr"] for r in exporter_down] == [f'up{{job="{JOB}"}} == 0']


def test_recording_rules_are_in_their_own_file():
    assert all("record" in rule for rule in support.rules(RECORDING))
    assert all("alert" in rule for rule in support.rules(ALERTS))


# -- the Grafana dashboard

def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.9, sum by (le) '
                        '(rate(a_bucket{x="{y}", z=~"$v"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("sum(x) by (a) / on (b) group_left (c) y offset 5m") == {"x", "y"}
    assert metric_names("1e3 * foo > bool 2 and time() - bar:rate5m") == {"foo", "bar:rate5m"}
    assert metric_names('count_values("up", baz) unless topk(3, qux)') == {"baz", "qux"}


def test_dashboard_shape():
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    server = variables["server"]
    assert server["query"]["query"] == 'label_values(nats_up{job=~"$job"}, server)'
    # A single-server exporter has no server label: "All" must then be a regex matching "".
    assert server["includeAll"] and server["allValue"] == ".*"
    assert re.fullmatch(server["allValue"], "")

    panels = list(all_panels(dashboard))
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Overview", "Clients", "Cluster", "JetStream", "Exporter health", "Fleet"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for ref in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert_filters_on_the_variables(target["expr"])
    assert {"heatmap", "table", "timeseries", "stat"} <= {p["type"] for p in panels}

    # Grafana moves overlapping panels around on load; the layout must be what was drawn.
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[x, y]!r}"
                cells[x, y] = panel["title"]


def assert_filters_on_the_variables(expr: str) -> None:
    """Every selector of a per-server series filters on $job and $server, so that picking a
    server in the dashboard narrows every panel."""
    for name in metric_names(expr) - PROMETHEUS_SERIES:
        metric = metrics.BY_NAME.get(name)
        if metric is not None and not metric.per_server:
            continue
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(\{{[^}}]*\}})?", expr):
            assert match[1] and 'job=~"$job"' in match[1] and 'server=~"$server"' in match[1], (
                f"{name} in {expr!r} must select {{job=~\"$job\", server=~\"$server\"}}")


def test_dashboard_reads_only_catalogue_metrics_and_recorded_rules():
    allowed = catalogue_series_names() | PROMETHEUS_SERIES | set(recorded_names())
    unknown = dashboard_metric_names() - allowed
    assert not unknown, (f"{DASHBOARD.name} queries {sorted(unknown)}: neither in "
                         f"fastnats.metrics nor recorded in {[p.name for p in RULE_FILES]}")


def test_dashboard_shows_every_seed_metric():
    missing = {m.name for m in metrics.SEED} - dashboard_metric_names()
    assert not missing, missing
