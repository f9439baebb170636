"""``fastnats-exporter --demo``: embedded nats-server, synthetic clients, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.support.process import require_tool, start_exporter, wait_until

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.extend(int(p) for p in (task / "children").read_text().split())
    return out


def value(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} missing"
    return float(match[1])


def test_demo_serves_live_metrics_and_leaves_nothing_behind():
    require_tool("nats-server")
    exporter = start_exporter("--demo", "--demo.clients", "20", "--web.listen-address",
                              "127.0.0.1:0", "--refresh-interval", "0.3")
    try:
        [nats_pid] = children(exporter.process.pid)
        text = wait_until(lambda: (t := exporter.scrape()) and
                          value(t, "nats_server_clients") == 20 and t)
        first = value(text, "nats_server_total_messages_received")
        wait_until(lambda: value(exporter.scrape(), "nats_server_total_messages_received") > first)
        banner = "".join(exporter.log)
        assert exporter.url in banner
        assert "scrape_configs:" in banner and "job_name: nats" in banner

        exporter.process.send_signal(signal.SIGINT)
        assert exporter.process.wait(20) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(nats_pid, 0)
    finally:
        exporter.stop()
