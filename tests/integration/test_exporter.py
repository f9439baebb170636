"""The exporter as a process against a real nats-server: seed metrics, health, conf, launch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from fastnats.nats import launcher
from fastnats.rfc3339 import parse_rfc3339_ns
from tests.support.natsclient import RawClient
from tests.support.process import free_port, http_get, require_tool, start_exporter, wait_until

pytestmark = pytest.mark.integration

SEED = (Path(__file__).parents[1] / "data" / "SEED-METRICS.txt").read_text()
SEED_HEADERS = re.findall(r"^# HELP (\S+) .*\n# TYPE \S+ \S+\n", SEED, re.M)
# The reference article's conf, verbatim.
ARTICLE_CONF = (Path(__file__).parents[1] / "unit" / "conf" / "seed.conf").read_text()
FAST = ("--refresh-interval", "0.2", "--timeout", "2")


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def header_block(text: str, name: str) -> str:
    match = re.search(rf"^# HELP {name} .*\n# TYPE {name} \S+\n", text, re.M)
    return match[0] if match else ""


def traffic(port: int, clients: int = 5, messages: int = 50) -> list[RawClient]:
    conns = [RawClient(port, name=f"client-{i}") for i in range(clients)]
    conns[0].sub("test.>", 1)
    conns[0].flush()
    for i, conn in enumerate(conns):
        for j in range(messages):
            conn.pub(f"test.{i}", b"x" * (j + 1))
        conn.flush()
    return conns


def assert_seed_matches_varz(exporter, monitor_url: str) -> None:
    varz = json.loads(http_get(f"{monitor_url}/varz"))
    expected = {
        "nats_server_clients": varz["connections"],
        "nats_server_total_connections": varz["total_connections"],
        "nats_server_total_messages_sent": varz["out_msgs"],
        "nats_server_total_messages_received": varz["in_msgs"],
        "nats_server_total_payload_bytes_sent": varz["out_bytes"],
        "nats_server_total_payload_bytes_received": varz["in_bytes"],
        "nats_server_slow_consumers": varz["slow_consumers"],
        "nats_server_cpu_cores": varz["cores"],
        f'nats_server_version{{version="{varz["version"]}"}}': 1,
    }
    # Traffic has stopped, so the counters settle; wait for a refresh that saw the final state.
    got = wait_until(lambda: (s := samples(exporter.scrape())) and all(
        s.get(k) == v for k, v in expected.items()) and s)
    assert got["nats_server_memory_bytes"] > 0
    # The exporter read an earlier /varz: its uptime is at most the server's at this one.
    after = json.loads(http_get(f"{monitor_url}/varz"))
    lived = (parse_rfc3339_ns(after["now"]) - parse_rfc3339_ns(after["start"])) / 1e9
    assert 0 < got["nats_server_uptime_seconds"] <= lived
    text = exporter.scrape()
    assert len(SEED_HEADERS) == 13
    for name in SEED_HEADERS:
        assert header_block(text, name) == header_block(SEED, name), name
    # Wire bytes include the protocol framing that payload bytes leave out.
    now = samples(text)
    assert now["nats_server_total_bytes_sent"] > now["nats_server_total_payload_bytes_sent"]
    assert (now["nats_server_total_bytes_received"]
            > now["nats_server_total_payload_bytes_received"])


def test_seed_metrics_agree_with_varz(nats_server):
    conns = traffic(nats_server.client_port)
    exporter = start_exporter(nats_server.monitor_url, "--web.listen-address", "127.0.0.1:0",
                              *FAST)
    try:
        assert_seed_matches_varz(exporter, nats_server.monitor_url)
        text = exporter.scrape()
        assert "nats_up 1\n" in text
        assert re.search(r'^fastnats_build_info\{version="[^"]+",implementation="cython"\} 1$',
                         text, re.M)
        assert re.search(r'^nats_server_info\{server_name="\S+",server_id="N\w+",'
                         r'version="2\.\d+\.\d+",cluster="",domain="",tags=""\} 1$', text, re.M)
    finally:
        exporter.stop()
        for conn in conns:
            conn.close()


def test_nats_up_drops_to_zero_within_one_refresh_and_no_stale_series(nats_server):
    exporter = start_exporter(nats_server.monitor_url, "--web.listen-address", "127.0.0.1:0",
                              *FAST)
    try:
        wait_until(lambda: "nats_up 1\n" in exporter.scrape())
        nats_server.stop()
        seen = samples(exporter.scrape())["fastnats_refreshes_total"]
        # Refresh seen+1 may have been in flight when the server stopped; seen+2 started after.
        text = wait_until(lambda: (t := exporter.scrape()) and
                          samples(t)["fastnats_refreshes_total"] >= seen + 2 and t)
        assert "nats_up 0\n" in text
        assert not re.search(r"^nats_server_", text, re.M), text
        assert re.search(r'^fastnats_refresh_errors_total\{endpoint="varz",reason="connect"\} '
                         r'[1-9]', text, re.M)
    finally:
        exporter.stop()


def test_exporter_keeps_serving_and_recovers_with_the_server(tmp_path):
    require_tool("nats-server")
    port, monitor = free_port(), free_port()
    args = ["-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)]
    server = launcher.start(args)
    exporter = start_exporter(f"http://127.0.0.1:{monitor}", "--web.listen-address",
                              "127.0.0.1:0", *FAST)
    try:
        wait_until(lambda: "nats_up 1\n" in exporter.scrape())
        server.stop()
        wait_until(lambda: "nats_up 0\n" in exporter.scrape())
        server = launcher.start(args)
        wait_until(lambda: "nats_up 1\n" in exporter.scrape())
        assert "nats_server_clients 0\n" in exporter.scrape()
    finally:
        exporter.stop()
        server.stop()


def test_config_against_a_separately_started_server(nats_server, tmp_path):
    metrics_port = free_port()
    conf = tmp_path / "nats-server.conf"
    conf.write_text(f'port: {nats_server.client_port}\n'
                    f'http: "127.0.0.1:{nats_server.ports["http"]}"\n'
                    f'metrics {{ port: {metrics_port} }}\n')
    conns = traffic(nats_server.client_port, clients=3)
    exporter = start_exporter("--config", str(conf), *FAST)
    try:
        assert exporter.url.endswith(f":{metrics_port}/metrics")
        assert_seed_matches_varz(exporter, nats_server.monitor_url)
    finally:
        exporter.stop()
        for conn in conns:
            conn.close()


def test_article_conf_rejected_by_nats_server_but_launched_by_fastnats(tmp_path):
    nats = require_tool("nats-server")
    client_port, monitor_port, metrics_port = free_port(), free_port(), free_port()
    conf = tmp_path / "seed.conf"
    conf.write_text(ARTICLE_CONF.replace("4222", str(client_port))
                    .replace("8222", str(monitor_port)).replace("9100", str(metrics_port)))
    check = subprocess.run([nats, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode != 0

    exporter = start_exporter("--config", str(conf), "--nats.launch", *FAST)
    try:
        assert exporter.url.endswith(f":{metrics_port}/metrics")
        # The log names the monitoring address nats-server really opened.
        monitor = f"127.0.0.1:{monitor_port}"
        assert any(f"for {monitor} (http://{monitor})" in line for line in exporter.log), (
            exporter.log)
        conns = traffic(client_port, clients=2)
        try:
            assert_seed_matches_varz(exporter, f"http://127.0.0.1:{monitor_port}")
        finally:
            for conn in conns:
                conn.close()
        exporter.process.send_signal(signal.SIGTERM)
        # The signal reaches nats-server, and the exporter exits with nats-server's status.
        assert exporter.process.wait(20) == 0
        assert any("Trapped \"terminated\" signal" in line for line in exporter.log)
    finally:
        exporter.stop()


def test_launch_exits_with_the_status_of_a_killed_child(tmp_path):
    require_tool("nats-server")
    metrics_port = free_port()
    conf = tmp_path / "n.conf"
    conf.write_text(f'listen: "127.0.0.1:{free_port()}"\nhttp: "127.0.0.1:{free_port()}"\n'
                    f'server_name: launched\nmetrics {{ port: {metrics_port} }}\n')
    exporter = start_exporter("--config", str(conf), "--nats.launch", *FAST)
    try:
        text = wait_until(lambda: (t := exporter.scrape()) and "nats_up 1" in t and t)
        assert 'server_name="launched"' in text
        children = [int(p) for p in Path(f"/proc/{exporter.process.pid}/task").iterdir()
                    for p in (Path(f"/proc/{exporter.process.pid}/task/{p.name}/children")
                              .read_text().split())]
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)
        assert exporter.process.wait(20) == 128 + signal.SIGKILL
    finally:
        exporter.stop()


def test_wire_collector_can_be_turned_off(nats_server):
    exporter = start_exporter(nats_server.monitor_url, "--web.listen-address", "127.0.0.1:0",
                              "--no-collector.wire", *FAST)
    try:
        text = wait_until(lambda: (t := exporter.scrape()) and "nats_up 1" in t and t)
        assert "nats_server_total_payload_bytes_sent" in text
        assert "nats_server_total_bytes_sent" not in text
        assert "nats_wire_" not in text
    finally:
        exporter.stop()
