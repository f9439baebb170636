"""The README's sample output is what a real --demo run serves (tools/gen_readme_sample.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.process import require_tool

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tools"))
import gen_readme_sample as sample  # noqa: E402

pytestmark = pytest.mark.integration


def shape(text: str) -> list[str]:
    """Lines with their sample values and version label values masked: what must not drift."""
    out = []
    for line in text.splitlines():
        if not line.startswith("#") and line != "...":
            line = re.sub(r' \S+$', " <value>", line)
            line = re.sub(r'version="[^"]*"', 'version="<v>"', line)
        out.append(line)
    return out


def test_readme_sample_matches_a_demo_run():
    require_tool("nats-server")
    written = sample.readme_sample((ROOT / "README.md").read_text(encoding="utf-8"))
    fresh = sample.abridge(sample.demo_scrape())
    assert shape(written) == shape(fresh), "stale; run: python tools/gen_readme_sample.py"
    assert f"\nnats_server_clients {sample.DEMO_CLIENTS}\n" in "\n" + written
    assert 'implementation="cython"' in written


def test_the_demo_default_is_the_sample_client_count():
    from fastnats import cli
    assert cli.build_parser().parse_args([]).demo_clients == sample.DEMO_CLIENTS
