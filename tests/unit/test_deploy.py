"""Checks of what deploy/ ships: the Prometheus rules (promtool), the Grafana dashboard against the
catalogue and a real exposition, and `promtool check metrics` on a real exposition."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from fastnats import metrics

from fastnats.nats import launcher
from tests.conftest import require_tool, start_exporter, wait_until
from tests.e2e import support
from tests.e2e.support import (
    ALERTS, ALLOWED_LINT, DASHBOARD, JOB, PROMETHEUS_SERIES, RECORDING, RULE_FILES, RULE_TESTS,
    Traffic, alert_names, all_panels, catalogue_series_names, dashboard_queries,
    load_dashboard, load_yaml, metric_names, promtool_lint, recorded_names, sample_names,
    stall_a_consumer)
from tests.natsclient import RawClient

# Families the dashboard queries that the exposition used by these tests cannot contain, with
# why. Everything else the dashboard reads must show up in it.
NOT_IN_TEST_EXPOSITION: dict[str, str] = {}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=60)


# -- Prometheus rules

def test_promtool_check_rules():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout))
    assert found == len(alert_names()) + len(recorded_names()) > 0, result.stdout


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


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
    assert rows == ["Overview", "Clients", "Exporter health"]
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


def dashboard_metric_names() -> set[str]:
    names = set()
    for where, expr in dashboard_queries(load_dashboard()):
        found = metric_names(expr)
        assert found, f"{where}: no metric in {expr!r}"
        names |= found
    return names


def test_dashboard_reads_only_catalogue_metrics_and_recorded_rules():
    allowed = catalogue_series_names() | PROMETHEUS_SERIES | set(recorded_names())
    unknown = dashboard_metric_names() - allowed
    assert not unknown, (f"{DASHBOARD.name} queries {sorted(unknown)}: neither in "
                         f"fastnats.metrics nor recorded in {[p.name for p in RULE_FILES]}")


def test_dashboard_shows_every_seed_metric():
    missing = {m.name for m in metrics.SEED} - dashboard_metric_names()
    assert not missing, missing


# -- a real exposition: exporter, nats-server and traffic, all real

@pytest.fixture(scope="module")
def real_exposition() -> Iterator[dict[str, object]]:
    """Sample names (and the texts) of scrapes taken while the exporter watches a real server:
    under traffic, with one consumer falling behind, then with the server stopped.

    The names are the union over the scrapes, since some families exist only in one phase
    (pending bytes while a consumer stalls, refresh errors once the server is gone).
    """
    require_tool("nats-server")
    server = launcher.start(["-p", "-1", "-m", "-1", "-a", "127.0.0.1"])
    clients: list = []
    traffic = exporter = None
    seen: set[str] = set()
    texts: list[str] = []

    def scrape_until(names: set[str]) -> bool:
        texts.append(exporter.scrape())
        seen.update(sample_names(texts[-1]))
        return names <= seen

    expected = dashboard_metric_names() & catalogue_series_names()
    needs_down = {metrics.FASTNATS_REFRESH_ERRORS_TOTAL.name}
    try:
        clients += [RawClient(server.client_port, name=f"idle-{i}") for i in range(2)]
        traffic = Traffic(server.client_port, seconds=30).start()
        exporter = start_exporter(server.monitor_url, "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", "0.2")
        clients += stall_a_consumer(server.client_port)
        try:
            wait_until(lambda: scrape_until(expected - needs_down - NOT_IN_TEST_EXPOSITION.keys()),
                       timeout=8, interval=0.1)
        except AssertionError:
            pass  # test_dashboard_metrics_appear_in_a_real_exposition names what is missing
        traffic.stop()
        server.stop()
        wait_until(lambda: scrape_until(needs_down) and "nats_up 0\n" in texts[-1])
        yield {"names": seen, "texts": texts}
    finally:
        if exporter is not None:
            exporter.stop()
        if traffic is not None:
            traffic.stop()
        for client in clients:
            client.close()
        server.stop()


@pytest.mark.integration
def test_dashboard_metrics_appear_in_a_real_exposition(real_exposition):
    wanted = dashboard_metric_names() & catalogue_series_names()
    missing = wanted - real_exposition["names"] - NOT_IN_TEST_EXPOSITION.keys()
    assert not missing, (
        f"{DASHBOARD.name} queries {sorted(missing)}; fastnats.metrics lists them, but a real "
        f"exporter against a real nats-server with traffic, a stalled consumer and a stop never "
        f"rendered them. Either the collector does not produce them yet, or the dashboard must "
        f"stop using them, or NOT_IN_TEST_EXPOSITION must say why this test cannot see them.")
    assert not NOT_IN_TEST_EXPOSITION.keys() - wanted, "stale NOT_IN_TEST_EXPOSITION entries"


@pytest.mark.integration
def test_promtool_check_metrics_on_a_real_exposition(real_exposition):
    # The scrape with the most families (under traffic) and the last (server stopped).
    texts = real_exposition["texts"]
    for text in (max(texts, key=lambda t: len(sample_names(t))), texts[-1]):
        findings = promtool_lint(text)
        assert findings <= ALLOWED_LINT, sorted(findings - ALLOWED_LINT)
        assert findings == {f for f in ALLOWED_LINT if f.split()[0] in sample_names(text)}
