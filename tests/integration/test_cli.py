"""The command line as a process (``python -m fastnats``): one-line errors with exit status 2,
help and version."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastnats", *argv], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv, message", [
    (["--refresh-interval", "0"], "--refresh-interval: must be a positive duration"),
    (["--refresh-interval=-1s"], "--refresh-interval: must be a positive duration"),
    (["--timeout", "abc"], "--timeout: not a duration (seconds, or Go style: 500ms, 5s, 1m)"),
    (["--timeout", "5 parsecs"], "--timeout: not a duration"),
    (["--web.listen-address", "nonsense"], "--web.listen-address"),
    (["--web.listen-address", ":99999"], "--web.listen-address"),
    (["--web.telemetry-path", "/healthz"], "is taken by the exporter"),
    (["--web.telemetry-path", "/"], "is taken by the exporter"),
    (["--check", "--demo"], "--check reads servers that run already"),
    (["--nats.launch"], "--nats.launch needs --config"),
    (["--demo", "http://x:1"], "--demo starts its own nats-server"),
    (["ftp://x:1"], "not a monitoring URL"),
    (["a=http://x:1", "a=http://y:1"], "same name"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--demo.clients", "-1"], "must not be negative"),
    (["--log.level", "loud"], "invalid choice"),
])
def test_bad_flags_exit_2_with_one_line(argv, message):
    result = run_cli(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastnats-exporter: error: ")
    assert message in lines[0]


def test_bad_conf_exits_2_naming_file_and_line(tmp_path):
    conf = tmp_path / "broken.conf"
    conf.write_text("port: 4222\nhttp {\n  addr: \":8222\"\n")
    result = run_cli("--config", str(conf))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"{conf}:" in line or "broken.conf:" in line
    assert ":2:" in line or ":4:" in line, line


def test_missing_conf_file_exits_2(tmp_path):
    result = run_cli("--config", str(tmp_path / "absent.conf"))
    assert result.returncode == 2
    assert "absent.conf" in result.stderr


def test_conf_without_monitoring_is_an_error(tmp_path):
    conf = tmp_path / "nomon.conf"
    conf.write_text("port: 4222\n")
    result = run_cli("--config", str(conf))
    assert result.returncode == 2
    assert "enables no monitoring port" in result.stderr


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--web.listen-address", "--web.telemetry-path", "--refresh-interval",
                 "--timeout", "--log.level", "--config", "--nats.launch", "--nats.binary",
                 "--demo", "--demo.clients", "--version"):
        assert flag in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("fastnats-exporter ")


def test_listen_address_in_use_is_a_clear_error(nats_server):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(nats_server.monitor_url, "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "error:" in line]
    assert line == (f"fastnats-exporter: error: cannot serve metrics on 127.0.0.1:{port}: the "
                    f"address is already in use (another exporter?); choose another with "
                    f"--web.listen-address")


def test_check_reports_each_collector_and_exits_0(nats_server):
    result = run_cli("--check", nats_server.monitor_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    name = f"127.0.0.1:{nats_server.ports['http']}"
    assert lines[0] == f"server {name} ({nats_server.monitor_url}): up"
    assert lines[1].split()[:2] == ["varz", "ok"]
    assert {line.split()[0] for line in lines[1:-1]} == {
        "varz", "wire", "connz", "routez", "gatewayz", "leafz", "healthz"}
    assert lines[-1] == "OK: every endpoint was read"


def test_check_on_the_client_port_says_which_port_to_use(nats_server):
    result = run_cli("--check", f"http://127.0.0.1:{nats_server.client_port}")
    assert result.returncode == 1
    assert "is the NATS client port, not the monitoring port" in result.stdout
    assert "nats-server -m PORT, or http: PORT in the conf" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("PROBLEMS")


def test_check_on_a_dead_server_exits_1():
    import socket
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = run_cli("--check", "--timeout", "500ms", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"server 127.0.0.1:{port} (http://127.0.0.1:{port}): DOWN" in result.stdout
    assert "varz     ERROR varz: connect:" in result.stdout
