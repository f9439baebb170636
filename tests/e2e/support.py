"""Helpers shared by the end-to-end tests and the checks of deploy/ and the docs.

Exposition parsing and linting, readers for the Prometheus rule files, the Grafana dashboard and
the docs' examples, and a small extractor of the metric names a PromQL expression reads
(Prometheus 2.42 has no API that parses a query without running it). Traffic against a real
nats-server comes from tests.support.natsclient.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import cli, metrics
from tests.support.process import require_tool

ROOT = Path(__file__).parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
RECORDING = RULES_DIR / "recording.yml"
RULE_FILES = (ALERTS, RECORDING)
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "fastnats.json"
DOCS = ROOT / "docs"
DEPLOY_MD = DOCS / "deploy.md"

#: The scrape job name the alert rules and the README's scrape config use.
JOB = "nats"
#: Series Prometheus adds to every scrape; the rules and the dashboard may query them.
PROMETHEUS_SERIES = frozenset({"up"})


# -- expositions

# The one place that lists what `promtool check metrics` may report about fastnats's output:
# the seed's counters keep the names (and HELP texts and types) that operators' dashboards and
# alerts already use, byte for byte, so they cannot gain the `_total` suffix the linter asks of
# counters. Nothing else may produce a finding.
SEED_COUNTERS_WITHOUT_TOTAL = frozenset(
    m.name for m in metrics.SEED if m.type == metrics.COUNTER and not m.name.endswith("_total"))
ALLOWED_LINT = frozenset(
    f'{name} counter metrics should have "_total" suffix' for name in SEED_COUNTERS_WITHOUT_TOTAL)


def promtool_lint(text: str) -> set[str]:
    """The findings of `promtool check metrics` on an exposition; a parse error fails."""
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)
    findings = {line.strip() for line in (result.stdout + result.stderr).splitlines()
                if line.strip()}
    # promtool exits 3 when it only has lint findings, 1 when it cannot parse the text.
    assert result.returncode == (3 if findings else 0), result.stdout + result.stderr
    return findings


_SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.M)


def sample_names(text: str) -> set[str]:
    """Names of the samples in a text exposition (``_bucket`` and friends as written)."""
    return set(_SAMPLE_NAME.findall(text))


#: Labels that tell apart the samples of one series of a histogram or summary, not series.
_SAMPLE_LABELS = frozenset({"le", "quantile"})


def label_schemas(text: str) -> dict[str, set[tuple[str, ...]]]:
    """Family -> the distinct sorted label names its samples carry in a text exposition
    (``le`` and ``quantile`` left out); one per family unless two schemas are mixed."""
    schemas: dict[str, set[tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(text):
        names = schemas.setdefault(family.name, set())
        for sample in family.samples:
            names.add(tuple(sorted(sample.labels.keys() - _SAMPLE_LABELS)))
    return schemas


def mixed_label_schemas(text: str) -> dict[str, set[tuple[str, ...]]]:
    """The families of ``label_schemas(text)`` whose samples carry more than one schema."""
    return {family: names for family, names in label_schemas(text).items() if len(names) > 1}


def catalogue_series_names() -> set[str]:
    """Every series name the catalogue allows, histogram and summary suffixes included."""
    names = set()
    for metric in metrics.CATALOGUE:
        names.add(metric.name)
        if metric.exposed_type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count", "_gsum",
                                                   "_gcount"))
        elif metric.type == "summary":
            names.update(metric.name + s for s in ("_sum", "_count"))
    return names


# -- Prometheus rules

def load_yaml(path: Path) -> dict:
    import yaml  # only the deploy checks need it; see the test extra in pyproject.toml

    return yaml.safe_load(path.read_text())


def rules(path: Path) -> list[dict]:
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules(ALERTS) if "alert" in rule]


def recorded_names() -> list[str]:
    return [rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule]


# -- the Grafana dashboard

def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$",
                           re.S)


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """``(where, PromQL)`` for every panel target and every query variable.

    A ``label_values(selector, label)`` variable contributes its selector.
    """
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", ()):
            out.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(query)
        if match is None:
            out.append((f"variable {variable['name']}", query))
        elif match["selector"]:
            out.append((f"variable {variable['name']}", match["selector"]))
    return out


def dashboard_metric_names() -> set[str]:
    names = set()
    for where, expr in dashboard_queries(load_dashboard()):
        found = metric_names(expr)
        assert found, f"{where}: no metric in {expr!r}"
        names |= found
    return names


# Grafana's variables as Prometheus sees them once Grafana has expanded them: every job and
# server ("All"), and a rate window that spans several 1 s scrapes.
_GRAFANA_VARIABLES = {
    "job": JOB, "server": ".*", "account": ".*", "stream": ".*", "__rate_interval": "5s",
    "__interval": "1s", "__range": "1m",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_variables(expr: str) -> str:
    """``expr`` with the dashboard's variables replaced as Grafana would for "All"."""
    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in _GRAFANA_VARIABLES:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return _GRAFANA_VARIABLES[name]
    return _VARIABLE.sub(value, expr)


# -- metric names in PromQL

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
# An identifier that does not continue a number (1e3) or another name.
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "offset", "atan2", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """Metric names ``expr`` selects: identifiers that are not functions, aggregations,
    keywords, label names (in ``{}``, ``by ()`` and the like) or string contents."""
    text = _VARIABLE.sub("v", expr)
    for pattern in (_STRING, _MATCHERS, _RANGE, _LABEL_LIST, _OFFSET):
        text = pattern.sub(" ", text)
    return {name for name, call in _IDENTIFIER.findall(text)
            if not call and name.lower() not in _KEYWORDS}


# -- the docs


@functools.cache
def load_metrics_doc_generator() -> ModuleType:
    """tools/gen_metrics_doc.py, which writes docs/metrics.md and the --help blocks."""
    spec = importlib.util.spec_from_file_location("gen_metrics_doc",
                                                  ROOT / "tools" / "gen_metrics_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", path.read_text(), re.M | re.S)


def exporter_settings(argv: list[str]) -> cli.Settings:
    """What the exporter makes of ``argv``: its own parser and checks, as at startup."""
    return cli.resolve(cli.build_parser().parse_args(argv))


def assert_current(path: Path, expected: str) -> None:
    """Fail with a diff and the command that regenerates ``path`` unless it holds ``expected``."""
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(
            actual.splitlines(keepends=True), expected.splitlines(keepends=True),
            f"{path.name} (in the tree)", f"{path.name} (generated)", n=1))[:40])
        pytest.fail(f"{path.relative_to(ROOT)} is stale; regenerate it with: "
                    f"{load_metrics_doc_generator().COMMAND}\n{diff}", pytrace=False)
