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
    (["--refresh-interval", "0"], "--refresh-interval: must be a positive number"),
    (["--timeout", "abc"], "--timeout: not a number"),
    (["--web.listen-address", "nonsense"], "--web.listen-address"),
    (["--web.listen-address", ":99999"], "--web.listen-address"),
    (["--web.telemetry-path", "metrics"], "--web.telemetry-path"),
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
    assert "error" in result.stderr and "in use" in result.stderr.lower()
