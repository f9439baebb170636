"""The harness the body benchmarks share (bench/connz.py, bench/leafz.py, bench/render.py and
their pytest-benchmark suites): timing, a fresh process per contender run, peak RSS, and the
common part of the report.

A script times each contender in ``--worker`` processes of its own (``isolated``), taken in turns
with the other contenders, and reports the median of their medians: a slow moment of a shared
machine then skews one process of each, not one contender.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Contender = Callable[[bytes], Callable[[], object]]


def time_runs(run: Callable[[], object], repeat: int) -> list[float]:
    run()   # warm caches and allocators
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median of ``repeats`` timed runs, none untimed: for runs that consume their input."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def isolated(script: str, args: list[str]) -> dict:
    """Run ``script --worker ...`` in a fresh interpreter and return the JSON it prints."""
    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)


def peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak, which
    # survives fork and exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(run: Callable[[], object], repeat: int) -> None:
    """The part of a ``--worker`` process: time the run and print what ``isolated`` reads."""
    times = time_runs(run, repeat)
    print(json.dumps({"median": statistics.median(times), "peak_rss_mb": peak_rss_mb()}))


def aggregator(cls) -> Contender:
    """An aggregator contender, fed the body once before timing and then a refresh every 15 s:
    the figures are for a steady refresh, every id already known."""
    def setup(body: bytes) -> Callable[[], object]:
        agg = cls()
        agg.update(body, None, 0.0)
        clock = [0.0]

        def run() -> None:
            clock[0] += 15.0
            agg.update(body, None, clock[0])
        return run
    return setup


def run_body(script: str, body: bytes, names: list[str], processes: int,
             repeat: int) -> dict[str, list[dict]]:
    """What each contender's worker processes printed, ``processes`` of them a contender taken in
    turns, timing ``body`` (passed in a file) with ``--worker NAME --body FILE --repeat N``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        runs_of: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(max(1, processes)):
            for name in names:
                # The reference is many times slower; fewer runs keep the script short.
                runs = max(3, repeat // 5) if name == "reference" else repeat
                runs_of[name].append(isolated(script, ["--worker", name, "--body", f.name,
                                                       "--repeat", str(runs)]))
    return runs_of


def summary(runs_of: dict[str, list[dict]], processes: int, contenders) -> dict[str, object]:
    """The timing part of a report: medians, peak RSS and the ratios to the core (of each other
    contender, in the order of ``contenders``, and of the core to the scan)."""
    median = {name: statistics.median(r["median"] for r in runs)
              for name, runs in runs_of.items()}
    report: dict[str, object] = {
        "median_seconds": median,
        "processes": max(1, processes),
        "peak_rss_mb": {name: round(max(r["peak_rss_mb"] for r in runs), 1)
                        for name, runs in runs_of.items()},
    }
    if "core" in median:
        ratios = {f"{other}/core": round(median[other] / median["core"], 2)
                  for other in contenders if other in median and other not in ("core", "scan")}
        if "scan" in median:
            ratios["core/scan"] = round(median["core"] / median["scan"], 2)
        report["ratios"] = ratios
    return report


def print_report(report: dict, one_line: bool) -> None:
    print(json.dumps(report) if one_line else json.dumps(report, indent=2))


def bench_contender(benchmark, contenders: dict[str, Contender], rounds: dict[str, int],
                    group: str, body: bytes, contender: str) -> None:
    """One pytest-benchmark measurement of a contender on a body, grouped with its rivals."""
    benchmark.group = group
    benchmark.extra_info["body_bytes"] = len(body)
    benchmark.pedantic(contenders[contender](body), rounds=rounds[contender], warmup_rounds=1)
