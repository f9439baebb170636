"""--nats.launch against a real nats-server: the translated conf means what the conf means, the
exporter polls the monitoring address the server really opened, and a reload reads the conf
again."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fastnats.nats import launcher, natsconf
from tests.support.process import (
    Exporter,
    get_json,
    require_tool,
    start_exporter,
    wait_until,
)

pytestmark = pytest.mark.integration

FAST = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2", "--timeout", "2")
_MONITOR = re.compile(r"Starting https? monitor on (\S+)")


def launched(conf: Path) -> Exporter:
    require_tool("nats-server")
    exporter = start_exporter("--config", str(conf), "--nats.launch", *FAST)
    # Once a scrape is answered, the exporter's signal handlers are in place too.
    wait_until(lambda: "nats_up 1" in exporter.scrape())
    return exporter


def monitor_url(exporter: Exporter) -> str:
    """The URL the exporter polls, as its log says."""
    [url] = [match[1] for line in exporter.log
             if (match := re.search(r"serving \S+ on \S+ for .*\((https?://[^)]+)\)", line))]
    return url


def nats_check(path: Path) -> str:
    result = subprocess.run([require_tool("nats-server"), "-t", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr + path.read_text()
    return result.stdout + result.stderr


# -- a setting that a $reference uses is still a setting


def test_a_setting_a_reference_uses_applies_as_when_run_directly(tmp_path: Path):
    conf = tmp_path / "hub.conf"
    conf.write_text('server_name: hub1\nlisten: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\n'
                    "cluster { name: $server_name, host: 127.0.0.1, port: -1 }\n")
    direct = launcher.start(["-c", str(conf)])
    try:
        assert get_json(f"{direct.monitor_url}/varz")["server_name"] == "hub1"
    finally:
        direct.stop()
    exporter = launched(conf)
    try:
        varz = get_json(f"{monitor_url(exporter)}/varz")
        assert (varz["server_name"], varz["cluster"]["name"]) == ("hub1", "hub1")
    finally:
        exporter.stop()


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("LIMIT = 10\nmax_connections: $LIMIT\n", {"max_connections": 10},
                 id="variable dropped"),
    pytest.param("MAX_PAYLOAD = 2048\nmax_control_line: $MAX_PAYLOAD\n",
                 {"MAX_PAYLOAD": 2048, "max_control_line": 2048}, id="setting in capitals"),
    pytest.param("cluster {\n  BASE = 3\n  name: c\n  pool_size: $BASE\n"
                 "  connect_retries: $pool_size\n}\n",
                 {"cluster": {"name": "c", "pool_size": 3, "connect_retries": 3}},
                 id="in cluster"),
    pytest.param("accounts {\n  P = { publish: \">\" }\n  A {\n"
                 "    U = { user: a, password: b, permissions: $P }\n    users: [$U]\n  }\n}\n",
                 {"accounts": {"A": {"users": [{"user": "a", "password": "b",
                                                "permissions": {"publish": ">"}}]}}},
                 id="in accounts"),
    pytest.param("mappings { src: dst, other: $src }\n",
                 {"mappings": {"src": "dst", "other": "dst"}}, id="mappings keep every key"),
])
def test_translation_drops_only_what_nats_server_skips(write, tmp_path: Path, text: str,
                                                       expected: dict):
    original = write(text)
    nats_check(original)
    translated = natsconf.translate(natsconf.load(original), tmp_path / "out")
    nats_check(translated.path)
    assert natsconf.load(translated.path).tree == expected


def test_a_reference_bomb_stops_the_launch_at_once_with_one_line(tmp_path: Path):
    lines = ["v0 = [" + ", ".join(['"0123456789"'] * 10) + "]"]
    lines += [f"v{i} = [" + ", ".join([f"$v{i - 1}"] * 10) + "]" for i in range(1, 12)]
    conf = tmp_path / "bomb.conf"
    conf.write_text("\n".join(lines) + '\nserver_tags: $v11\nhttp: "127.0.0.1:-1"\n')
    result = subprocess.run([sys.executable, "-m", "fastnats", "--config", str(conf),
                             "--nats.launch", *FAST], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert f"{conf}:13: $references expand the conf past 128 MiB" in line, line


# -- the monitoring address comes from the server's log


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("host", "url_host"), [
    ("127.0.0.2", "127.0.0.2"),  # Linux routes all of 127/8 to lo
    ("0.0.0.0", "127.0.0.1"),
    pytest.param("[::1]", "[::1]", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback here")),
])
def test_the_launcher_polls_the_monitoring_host_the_server_opened(tmp_path: Path, host: str,
                                                                  url_host: str):
    require_tool("nats-server")
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: "127.0.0.1:-1"\nhttp: "{host}:-1"\n')
    with launcher.launch_conf(natsconf.load(conf)) as child:
        assert child.monitor_url == f"http://{url_host}:{child.ports['http']}"
        assert get_json(f"{child.monitor_url}/varz")["http_port"] == -1


def test_launch_exports_a_server_monitored_away_from_127_0_0_1(tmp_path: Path):
    conf = tmp_path / "nats.conf"
    conf.write_text('listen: "127.0.0.1:-1"\nhttp: "127.0.0.2:-1"\n')
    exporter = launched(conf)
    try:
        assert monitor_url(exporter).startswith("http://127.0.0.2:")
        wait_until(lambda: "nats_up 1" in exporter.scrape())
    finally:
        exporter.stop()


# -- a reload reads the conf again


def test_sighup_translates_the_edited_conf_before_nats_server_reloads(tmp_path: Path):
    conf = tmp_path / "nats.conf"
    settings = 'listen: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\nserver { max_payload: %s }\n'
    conf.write_text(settings % "1MB")
    exporter = launched(conf)
    try:
        varz = f"{monitor_url(exporter)}/varz"
        assert get_json(varz)["max_payload"] == 1024**2
        conf.write_text(settings % "2MB")
        exporter.process.send_signal(signal.SIGHUP)
        wait_until(lambda: get_json(varz)["max_payload"] == 2 * 1024**2)
        assert any("Reloaded server configuration" in line for line in exporter.log)

        conf.write_text(settings % "[")
        reloads = sum("Reloaded server configuration" in line for line in exporter.log)
        exporter.process.send_signal(signal.SIGHUP)
        [refused] = wait_until(lambda: [line for line in exporter.log if "reload refused" in line])
        assert f"{conf}:3: " in refused and "nats-server keeps its running conf" in refused
        # The server runs on, on the last conf that translated, and was not asked to reload.
        assert get_json(varz)["max_payload"] == 2 * 1024**2
        assert sum("Reloaded server configuration" in line for line in exporter.log) == reloads
        assert exporter.process.poll() is None
        assert "nats_up 1" in exporter.scrape()
    finally:
        exporter.stop()
