"""pytest-benchmark suites of the /connz read and of rendering, contenders side by side by size.

    pytest bench/test_bench_connz.py --benchmark-only --benchmark-group-by=group

The contenders and bodies are those of bench/connz.py and bench/render.py (see their docstrings);
the scripts run each contender in a fresh process and print ratios, these suites compare them in
one process with pytest-benchmark's statistics.
"""

from __future__ import annotations

from pathlib import Path

import connz
import pytest
import render
from harness import bench_contender

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "data" / "connz_open.json"
# Rounds per contender: the reference is about 25 times slower than the others.
ROUNDS = {"core": 20, "scan": 20, "msgspec": 10, "orjson": 10, "reference": 3}


@pytest.fixture(scope="module", params=[1000, 10_000, 50_000, 100_000, "recorded-50000"],
                ids=lambda p: f"connections={p}")
def connz_body(request):
    if request.param == "recorded-50000":
        return request.param, connz.make_body(50_000, seed=1, recorded=RECORDED)
    return request.param, connz.make_body(request.param, seed=1)


@pytest.mark.parametrize("contender", list(connz.CONTENDERS))
def test_connz(benchmark, connz_body, contender):
    size, body = connz_body
    bench_contender(benchmark, connz.CONTENDERS, ROUNDS, f"connz {size}", body, contender)


@pytest.fixture(scope="module", params=[1000, 10_000], ids=lambda p: f"series={p}")
def families(request):
    return request.param, render.snapshot(request.param)


@pytest.mark.parametrize("contender", ["core", "prometheus_client"])
def test_render(benchmark, families, contender):
    size, fams = families
    benchmark.group = f"render {size}"
    benchmark.pedantic(render.CONTENDERS[contender](fams), rounds=20, warmup_rounds=1)
