"""A short fuzz run of each harness: a few thousand executions from its seed corpus, with the
reference compared; any finding fails the test.

Each harness runs as ``python -m tests.fuzz.fuzz_<target>`` in a child process, so that a crash
of the core fails one test instead of the suite, and libFuzzer's own exit code and artifacts say
whether it found something. FASTNATS_FUZZ_RUNS and FASTNATS_FUZZ_SEED change the length and the
seed (libFuzzer's -seed; the default keeps the run the same from one suite to the next). Without
atheris the tests skip, and fail where CI=true. Long runs, and the AddressSanitizer build, are in
docs/robustness.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import CI

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
TARGETS = ("connz", "leafz", "jsz", "accstatz", "sockdiag", "text")
RUNS = int(os.environ.get("FASTNATS_FUZZ_RUNS", "4000"))
SEED = int(os.environ.get("FASTNATS_FUZZ_SEED", "1"))


def require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "atheris is not installed (pip install -e '.[test]')"
        if CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run_finds_nothing(target, tmp_path):
    require_atheris()
    artifacts, grown = tmp_path / "artifacts", tmp_path / "corpus"
    artifacts.mkdir()
    grown.mkdir()
    command = [sys.executable, "-m", f"tests.fuzz.fuzz_{target}", f"-runs={RUNS}",
               f"-seed={SEED}", "-timeout=60", f"-artifact_prefix={artifacts}/",
               "-print_final_stats=1",
               str(grown), str(CORPUS / target)]
    env = {**os.environ, "FASTNATS_FUZZ_REFERENCE": "1"}
    run = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=300)
    log = run.stderr[-6000:]
    found = sorted(p.name for p in artifacts.iterdir())
    assert run.returncode == 0 and not found, (
        f"fuzz_{target} found {found or 'a failure'} (exit {run.returncode}); replay with "
        f"python -m tests.fuzz.fuzz_{target} <artifact>\n{log}")
    executed = re.search(r"stat::number_of_executed_units: (\d+)", run.stderr)
    assert executed and int(executed[1]) >= RUNS, log


@pytest.mark.parametrize("target", TARGETS)
def test_seed_corpus_is_there_and_small(target):
    seeds = [p for p in (CORPUS / target).iterdir() if p.is_file()]
    assert len(seeds) >= 20, f"{target}: regenerate with python -m tests.fuzz.make_corpus"
    assert sum(p.stat().st_size for p in seeds) < 200_000
