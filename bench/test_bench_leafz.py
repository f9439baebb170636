"""pytest-benchmark suite of the /leafz read, contenders side by side by size.

    pytest bench/test_bench_leafz.py --benchmark-only --benchmark-group-by=group

The contenders and bodies are those of bench/leafz.py (see its docstring); the script runs each
contender in a fresh process and prints ratios, this suite compares them in one process with
pytest-benchmark's statistics.
"""

from __future__ import annotations

import leafz
import pytest
from harness import bench_contender

# Rounds per contender: the reference is about 25 times slower than the core.
ROUNDS = {"core": 20, "scan": 20, "orjson": 10, "reference": 3}


@pytest.fixture(scope="module", params=[1000, 10_000, 50_000], ids=lambda p: f"leafnodes={p}")
def leafz_body(request):
    return request.param, leafz.make_body(request.param, seed=1)


@pytest.mark.parametrize("contender", list(leafz.CONTENDERS))
def test_leafz(benchmark, leafz_body, contender):
    size, body = leafz_body
    bench_contender(benchmark, leafz.CONTENDERS, ROUNDS, f"leafz {size}", body, contender)
