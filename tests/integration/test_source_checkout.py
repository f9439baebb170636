"""Run from a source checkout whose core is not built, fastnats says why and what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_an_unbuilt_checkout_names_itself_instead_of_pointing_to_pypi(tmp_path):
    checkout = tmp_path / "fastnats-src"
    shutil.copytree(ROOT / "fastnats", checkout / "fastnats",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    result = subprocess.run([sys.executable, "-m", "fastnats", "--version"], cwd=checkout,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"not built in the source checkout {checkout}" in result.stderr
    assert "run from another directory" in result.stderr
    assert "pip install -e" in result.stderr
