"""Processes for the tests and the benchmarks: require a tool, start nats-server and the exporter,
stop a process, and wait on a condition instead of sleeping."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson

from fastnats.nats import launcher
from tests.support.natsclient import RawClient, Traffic

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: nats-server flags: client and monitoring ports picked by the server, loopback only.
RANDOM_LOOPBACK_PORTS = ("-p", "-1", "-m", "-1", "-a", "127.0.0.1")
#: Exporter flags: a port picked by the system, and a refresh every 0.2 s.
FAST = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2")


def require_tool(name: str) -> str:
    """Path of ``name``; in CI a missing tool fails the test instead of skipping it."""
    path = shutil.which(name)
    if path is None and name == "nats-server":
        try:
            path = launcher.find_binary()
        except launcher.NatsServerError:
            path = None
    if path is None:
        # Imported here: the benchmarks' measured workers import this module too.
        import pytest

        message = f"{name} is not installed (see .ci/run)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def start_nats(*args: str) -> launcher.NatsServer:
    """A nats-server run with ``args`` (a conf, say) on random loopback ports."""
    return launcher.start([*args, *RANDOM_LOOPBACK_PORTS])


@contextmanager
def running_nats(*args: str) -> Iterator[launcher.NatsServer]:
    """``start_nats(*args)`` for a test, stopped on the way out."""
    require_tool("nats-server")
    server = start_nats(*args)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    """A loopback port free right now, for the programs that cannot pick their own and say it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def get_json(url: str) -> dict:
    return orjson.loads(http_get(url))


_SERVING = re.compile(r"serving \S+ on (https?://\S+)")


@dataclass
class Exporter:
    """A ``fastnats-exporter`` process; ``url`` is its metrics URL, read from its log."""

    process: subprocess.Popen[str]
    url: str = ""
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def scrape(self) -> str:
        return http_get(self.url).decode()

    def stop(self) -> int:
        """Stop the process; its log is then complete, up to its last line."""
        code = stop_process(self.process)
        if self.reader is not None:
            self.reader.join(5)
        return code


def stop_process(process: subprocess.Popen) -> int:
    """Terminate ``process`` and reap it; kill it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def start_exporter(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0,
                   nofile: tuple[int, int] | None = None) -> Exporter:
    """Run the exporter with ``args`` and wait until its log says where it serves; with
    ``nofile``, under that (soft, hard) RLIMIT_NOFILE."""
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    process = subprocess.Popen(
        [sys.executable, "-m", "fastnats", *args], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})}, preexec_fn=limit if nofile is not None else None)
    exporter = Exporter(process)
    found = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            exporter.log.append(line)
            if not found.is_set() and (match := _SERVING.search(line)):
                exporter.url = match[1]
                found.set()
        found.set()

    exporter.reader = threading.Thread(target=pump, daemon=True)
    exporter.reader.start()
    if not found.wait(timeout) or not exporter.url:
        exporter.stop()
        raise AssertionError("exporter did not start:\n" + "".join(exporter.log))
    return exporter


@contextmanager
def exporting(*args: str, **options) -> Iterator[Exporter]:
    """``start_exporter(*args, **options)`` for a ``with`` block, stopped on the way out."""
    exporter = start_exporter(*args, **options)
    try:
        yield exporter
    finally:
        exporter.stop()


@contextmanager
def exporter_under_traffic(server: launcher.NatsServer, *, idle: int, seconds: float,
                           refresh_interval: str) -> Iterator[tuple[Exporter, Traffic]]:
    """An exporter refreshing from ``server`` every ``refresh_interval`` while ``idle`` named
    connections sit on it and a Traffic publishes for up to ``seconds``; all stopped after."""
    clients: list[RawClient] = []
    traffic = exporter = None
    try:
        clients = [RawClient(server.client_port, name=f"idle-{i}") for i in range(idle)]
        traffic = Traffic(server.client_port, seconds=seconds).start()
        exporter = start_exporter(server.monitor_url, "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", refresh_interval)
        yield exporter, traffic
    finally:
        if traffic is not None:
            traffic.stop()
        if exporter is not None:
            exporter.stop()
        for client in clients:
            client.close()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


@contextmanager
def frozen(server: launcher.NatsServer) -> Iterator[None]:
    """``server`` stopped by SIGSTOP for the block, and continued after it. The block starts
    only once the kernel shows the process stopped: the signal is delivered asynchronously, and
    a loaded machine may let it answer a request first."""
    server.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: _state(server.process.pid) == "T", timeout=10, interval=0.01)
        yield
    finally:
        server.send_signal(signal.SIGCONT)


def _state(pid: int) -> str:
    """The process state letter of /proc/<pid>/stat (``T`` when stopped by a signal)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()[0]
