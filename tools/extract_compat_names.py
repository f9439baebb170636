"""Extracts the metric and label names a folder of Grafana dashboards queries, for the list that
``--compat`` is tested against (tests/data/compat-*.txt).

    python tools/extract_compat_names.py DIR > tests/data/compat-prometheus-nats-exporter.txt
    python tools/extract_compat_names.py DIR > tests/data/compat-surveyor.txt

(DIR: the official exporter's ``walkthrough/``, or nats-surveyor's
``docker-compose/grafana/provisioning/dashboards/``.)

Every ``*.json`` dashboard in DIR is read; the PromQL of its panel targets (``expr``), the queries
of its template variables (``query``, ``definition``, with Grafana's ``label_values(...)``) and its
legends (``legendFormat``, ``{{label}}``) are scanned; a custom variable's option values are read
as queries (panels use them so), and variables that hold no query (data source, interval,
constant, text box, ad hoc filters) are skipped. Each output line is a metric name and the
labels the queries use with it (in its matchers, in a ``by``/``without``/``on``/``ignoring``
clause or a legend of the same target, or as the label of ``label_values``), sorted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

#: A PromQL token: a string, a range or subquery selector, a name, or one character.
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`|\[[^\]]*\]'
                    r'|[A-Za-z_:][A-Za-z0-9_:]*|\d[\w.]*|\$\w+|\S')
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
#: Aggregation operators may put their grouping clause before the parentheses: sum by (x) (...).
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                 "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_KEYWORDS = _GROUPING | _AGGREGATIONS | {"bool", "offset", "and", "or", "unless", "inf", "nan",
                                         "atan2"}
#: Template variables whose ``query`` is no PromQL: a data source type, intervals, a constant,
#: a text box, ad hoc filters.
_NOT_QUERIES = {"datasource", "interval", "constant", "textbox", "adhoc"}
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

Names = dict[str, set[str]]


def scan(query: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names in one PromQL query or Grafana variable query."""
    metrics: set[str] = set()
    labels: set[str] = set()
    tokens = _TOKEN.findall(query)
    braces = 0
    # Depth of the parentheses of each grouping clause still open; for each label_values call
    # still open, its depth and its first argument when that is a bare name.
    grouping: list[int] = []
    label_values: list[list] = []
    depth = 0
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "{":
            braces += 1
        elif token == "}":
            braces -= 1
        elif token == "(":
            depth += 1
        elif token == ")":
            if grouping and grouping[-1] == depth:
                grouping.pop()
            if label_values and label_values[-1][0] == depth:
                # label_values(label): a lone argument is a label, not a metric.
                _, lone = label_values.pop()
                if lone is not None:
                    metrics.discard(lone)
                    labels.add(lone)
            depth -= 1
        elif not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token):
            continue
        elif braces:
            labels.add(token)
        elif token in _GROUPING:
            if following == "(":
                grouping.append(depth + 1)
        elif grouping and grouping[-1] == depth:
            labels.add(token)
        elif following == "(":
            if token == "label_values":
                label_values.append([depth + 1, None])
        elif token in _KEYWORDS:
            continue
        elif label_values and label_values[-1][0] == depth and tokens[i - 1] == ",":
            labels.add(token)
        else:
            if label_values and label_values[-1][0] == depth and tokens[i - 1] == "(" \
                    and following == ")":
                label_values[-1][1] = token
            metrics.add(token)
    return metrics, labels


def _custom(options: str) -> list[str]:
    """The values of a custom variable's options (``text : value`` or ``value``, separated by
    unescaped commas), which panels use as queries."""
    return [re.split(r"\s+:\s+", option, maxsplit=1)[-1].replace("\\,", ",")
            for option in re.split(r"(?<!\\),", options) if option.strip()]


def _targets(node: object) -> Iterator[tuple[list[str], list[str]]]:
    """Each dashboard object that queries: its queries and its legends."""
    if isinstance(node, dict):
        if node.get("type") in _NOT_QUERIES:
            return
        queries = [node[k] for k in ("expr", "definition") if isinstance(node.get(k), str)]
        query = node.get("query")
        if isinstance(query, str) and node.get("type") == "custom":
            # Each option is a query of its own.
            yield from (([value], []) for value in _custom(query))
            return
        if isinstance(query, str):
            queries.append(query)
        elif isinstance(query, dict) and isinstance(query.get("query"), str):
            queries.append(query["query"])
        legends = [node["legendFormat"]] if isinstance(node.get("legendFormat"), str) else []
        if queries:
            yield queries, legends
        for key, value in node.items():
            if key != "query":
                yield from _targets(value)
    elif isinstance(node, list):
        for item in node:
            yield from _targets(item)


def extract(folder: Path) -> Names:
    """Every metric the dashboards in ``folder`` query, with the labels used with it."""
    names: Names = {}
    for path in sorted(folder.glob("*.json")):
        for queries, legends in _targets(json.loads(path.read_text(encoding="utf-8"))):
            metrics: set[str] = set()
            labels: set[str] = set()
            for query in queries:
                found, used = scan(query)
                metrics |= found
                labels |= used
            for legend in legends:
                labels.update(_LEGEND.findall(legend))
            for metric in metrics:
                names.setdefault(metric, set()).update(labels)
    return names


def render(names: Names, folder_name: str) -> str:
    lines = [f"# Metric names the dashboards in {folder_name}/ query, each with the labels the",
             "# queries use with it. Generated by tools/extract_compat_names.py; do not edit.",
             "# METRIC LABEL,LABEL,..."]
    lines += [f"{metric} {','.join(sorted(labels))}".rstrip() for metric, labels in
              sorted(names.items())]
    return "\n".join(lines) + "\n"


def parse(text: str) -> Names:
    """The names of a file ``render`` wrote."""
    names: Names = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            metric, _, labels = line.partition(" ")
            names[metric] = set(filter(None, labels.split(",")))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of Grafana dashboard JSON files")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    names = extract(args.folder)
    if not names:
        parser.error(f"no dashboard in {args.folder} queries a metric")
    sys.stdout.write(render(names, args.folder.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
