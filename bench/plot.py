"""Draws the figures of docs/benchmarks.md from the JSON the benchmark scripts print.

    python bench/plot.py bench/results docs

reads ``connz-*.json`` (bench/connz.py) and ``e2e.json`` (bench/e2e.py) from the results folder
and writes ``benchmarks-connz.png`` (median seconds per contender by connection count, log-log)
and, when e2e.json is there, ``benchmarks-refresh.png`` (refresh split and peak RSS by size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONTENDER_STYLE = {
    "core": ("fastnats _core", "tab:blue"),
    "msgspec": ("msgspec Struct + Python sum", "tab:green"),
    "orjson": ("orjson + Python sum", "tab:orange"),
    "reference": ("reference (orjson + full aggregate)", "tab:red"),
    "scan": ("body.count (one pass)", "tab:gray"),
}


def load_connz(folder: Path) -> dict[str, list[dict]]:
    """Results by source (synthetic or recorded), each sorted by connection count."""
    by_source: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("connz-*.json")):
        result = json.loads(path.read_text())
        source = "simulated" if result["source"] == "connzgen.synthetic_body" else "recorded"
        by_source.setdefault(source, []).append(result)
    for results in by_source.values():
        results.sort(key=lambda r: r["connections"])
    return by_source


def plot_connz(by_source: dict[str, list[dict]], out: Path) -> None:
    fig, axes = plt.subplots(1, len(by_source), figsize=(6 * len(by_source), 4.5), squeeze=False,
                             sharey=True)
    for ax, (source, results) in zip(axes[0], sorted(by_source.items())):
        sizes = [r["connections"] for r in results]
        for name, (label, color) in CONTENDER_STYLE.items():
            points = [(n, r["median_seconds"][name] * 1e3)
                      for n, r in zip(sizes, results) if name in r["median_seconds"]]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", label=label, color=color,
                        linestyle="--" if name == "scan" else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("connections in the /connz body")
        ax.set_title(f"one /connz read, {source} bodies")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("median milliseconds per refresh")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_refresh(e2e: dict, out: Path) -> None:
    # A synthetic body's figures are those of its replay over HTTP, fetch included, when run.
    rows = [{**r, **r.get("served", {})} for r in e2e["results"]]
    rows.sort(key=lambda r: r["connections"])
    labels = [f"{r['connections'] // 1000}k\n"
              f"{'real' if r['mode'].startswith('real') else 'replayed'}" for r in rows]
    parts = ("fetch", "scan_aggregate", "snapshot", "render")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = [0.0] * len(rows)
    for part in parts:
        values = [r["median_seconds"].get(part, 0.0) * 1e3 for r in rows]
        left.bar(labels, values, bottom=bottom, label=part)
        bottom = [a + b for a, b in zip(bottom, values)]
    left.set_ylabel("median milliseconds per refresh")
    left.set_title("one exporter refresh, split")
    left.legend(fontsize=8)
    rss = [r["peak_rss_mb"] for r in rows]
    target = [r["rss_target_mb"] for r in rows]
    right.bar(labels, rss, label="peak RSS")
    right.plot(labels, target, color="tab:red", marker="_", markersize=30, linestyle="none",
               label="target: 2 x body + 40 MB")
    right.set_ylabel("MB")
    right.set_title("exporter peak RSS")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    by_source = load_connz(args.results)
    if not by_source:
        parser.error(f"no connz-*.json in {args.results}")
    plot_connz(by_source, args.out / "benchmarks-connz.png")
    e2e_path = args.results / "e2e.json"
    if e2e_path.exists():
        plot_refresh(json.loads(e2e_path.read_text()), args.out / "benchmarks-refresh.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
