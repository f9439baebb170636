"""With FASTNATS_NO_EXTENSIONS=1 the exporter serves the very bytes the compiled core serves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support import connzgen
from tests.support.monitor import FakeMonitor
from tests.support.process import start_exporter

pytestmark = pytest.mark.integration

VARZ = orjson.loads((Path(__file__).parents[1] / "data" / "varz.json").read_bytes())
#: Self metrics that differ between any two runs: wall times, and which core runs.
VARYING = ("fastnats_refresh_duration_seconds ", "fastnats_refresh_seconds_total ",
           "fastnats_last_refresh_success_timestamp_seconds ", "fastnats_build_info{")


def scrape(monitor: FakeMonitor, env: dict[str, str]) -> str:
    exporter = start_exporter(
        "--web.listen-address", "127.0.0.1:0", "--refresh-interval", "1h",
        "--no-collector.wire", "--connz.per-connection", "--connz.group-by", "account,name,lang",
        monitor.url, env=env)
    try:
        return exporter.scrape()
    finally:
        exporter.stop()


def test_reference_fallback_serves_the_same_bytes():
    sim = connzgen.Server(seed=11, odd=True)
    sim.step(opens=300)
    sim.step(opens=40, closes=60, flashes=10)
    varz = {**VARZ, "connections": len(sim.open), "total_connections": sim.next_cid - 1}
    monitor = FakeMonitor(varz, sim.open_body(), closed_body=sim.closed_body())
    try:
        compiled = scrape(monitor, {"FASTNATS_NO_EXTENSIONS": "0"})
        reference = scrape(monitor, {"FASTNATS_NO_EXTENSIONS": "1"})
    finally:
        monitor.close()
    assert 'implementation="cython"' in compiled
    assert 'implementation="reference"' in reference
    # Seed counters keep their names in both, and distributions are one histogram family.
    for text in (compiled, reference):
        assert "\nnats_server_total_connections " in text
        assert "# TYPE nats_client_connection_rtt_seconds histogram\n" in text

    def comparable(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith(VARYING)]

    assert comparable(reference) == comparable(compiled)
    assert len(comparable(compiled)) > 300


def test_reference_runs_only_when_asked_and_says_so():
    code = "from fastnats import _impl, collector, metrics; print(_impl.IMPLEMENTATION)"
    for value, expected in (("1", "reference"), ("0", "cython"), ("", "cython")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "FASTNATS_NO_EXTENSIONS": value}, check=True)
        assert out.stdout.strip() == expected
