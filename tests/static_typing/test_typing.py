"""Typing checks in the suite: mypy over the package, and stubtest of ``_core.pyi`` against the
built extension, so the stub cannot drift from the .pyx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = Path(__file__).with_name("stubtest-allowlist.txt")


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    # From the repository root, so mypy reads [tool.mypy] in pyproject.toml.
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_mypy_passes_on_the_package():
    result = run_mypy("mypy", "fastnats")
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_stub_matches_the_compiled_module():
    result = run_mypy("mypy.stubtest", "fastnats._core", "--allowlist", str(ALLOWLIST))
    assert result.returncode == 0, result.stdout + result.stderr
