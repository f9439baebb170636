"""Broken monitoring endpoints: each failure is named and counted, and scrapes never wait."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from tests.support.monitor import FakeMonitor
from tests.support.process import start_exporter, wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode, reason", [
    ("hang", "timeout"), ("garbage", "decode"), ("status", "http_status"), ("cut", "connect"),
])
def test_broken_server_is_reported_down_with_its_reason(mode, reason, shared_nats_server):
    fault = FakeMonitor(mode=mode)
    exporter = start_exporter(f"broken={fault.url}", f"good={shared_nats_server.monitor_url}",
                              "--web.listen-address", "127.0.0.1:0",
                              "--refresh-interval", "0.2", "--timeout", "0.5")
    try:
        text = wait_until(lambda: (t := exporter.scrape()) and re.search(
            rf'^fastnats_refresh_errors_total\{{server="broken",endpoint="varz",'
            rf'reason="{reason}"\}} [1-9]', t, re.M) and t)
        assert 'nats_up{server="broken"} 0\n' in text
        assert 'nats_up{server="good"} 1\n' in text
        assert 'nats_server_clients{server="good"} ' in text
        assert 'server="broken"' not in "".join(
            line for line in text.splitlines(True) if line.startswith("nats_server_"))
    finally:
        exporter.stop()
        fault.close()


def health_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def refreshes(text: str, server: str) -> int:
    return int(re.search(rf'^fastnats_refreshes_total{{server="{server}"}} (\d+)$', text, re.M)[1])


def test_a_hung_server_holds_back_only_itself(shared_nats_server):
    fault = FakeMonitor(mode="status")
    exporter = start_exporter(f"broken={fault.url}", f"good={shared_nats_server.monitor_url}",
                              "--web.listen-address", "127.0.0.1:0",
                              "--refresh-interval", "0.2", "--timeout", "60")
    try:
        wait_until(lambda: 'nats_up{server="broken"} 0' in exporter.scrape())
        health = exporter.url.replace("/metrics", "/healthz")
        assert health_status(health) == 200
        fault.mode = "hang"
        # The broken server's refresh is now stuck for up to a minute.
        wait_until(lambda: fault.held)
        stuck = refreshes(exporter.scrape(), "broken")
        good = refreshes(exporter.scrape(), "good")
        # The good server keeps its schedule, and its results are served as they arrive.
        wait_until(lambda: refreshes(exporter.scrape(), "good") >= good + 5)
        assert refreshes(exporter.scrape(), "broken") == stuck
        assert fault.held
        # One server's refreshes stopped completing: /metrics still answers, /healthz says so.
        wait_until(lambda: health_status(health) == 503)
    finally:
        exporter.stop()
        fault.close()
