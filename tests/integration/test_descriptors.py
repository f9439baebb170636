"""File descriptors: idle HTTP clients cannot take the ones the refresh needs, and the exporter
raises its soft open-file limit as Go programs do. Each exporter runs under a limit of its own."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.process import Exporter, http_get, start_exporter, wait_until

pytestmark = pytest.mark.integration


@contextmanager
def exporter_with_nofile(soft: int, hard: int, *args: str) -> Iterator[Exporter]:
    """The exporter started under RLIMIT_NOFILE (soft, hard); stopped on the way out."""
    exporter = start_exporter("--web.listen-address", "127.0.0.1:0", *args, nofile=(soft, hard))
    try:
        yield exporter
    finally:
        exporter.stop()


def counter_sum(text: str, name: str) -> float:
    return sum(float(m[1]) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False


def test_idle_connections_cannot_starve_the_refresh(nats_server):
    # 256 descriptors, so the default cap is 128; 300 idle clients used to take every one of
    # them, and then scrapes were reset and refreshes failed with "Too many open files".
    with exporter_with_nofile(256, 256, nats_server.monitor_url,
                              "--refresh-interval", "0.1") as exporter:
        first = exporter.scrape()
        errors = counter_sum(first, "fastnats_refresh_errors_total")
        refreshes = counter_sum(first, "fastnats_refreshes_total")
        port = int(exporter.url.rsplit(":", 1)[1].split("/")[0])
        idle: list[socket.socket] = []
        try:
            for _ in range(300):
                idle.append(socket.create_connection(("127.0.0.1", port)))
            text = wait_until(lambda: (t := exporter.scrape()) and counter_sum(
                t, "fastnats_refreshes_total") >= refreshes + 10 and t)
            assert counter_sum(text, "fastnats_refresh_errors_total") == errors
            assert re.search(r"^nats_up(\{[^}]*\})? 1$", text, re.M)
            # The quietest went first: what is left is at most the cap.
            wait_until(lambda: sum(map(still_open, idle)) <= 128)
        finally:
            for sock in idle:
                sock.close()
        assert not any("Too many open files" in line for line in exporter.log)


def test_soft_open_file_limit_is_raised_to_the_hard_one(nats_server):
    with exporter_with_nofile(200, 1000, nats_server.monitor_url, "--log.level",
                              "debug") as exporter:
        with open(f"/proc/{exporter.process.pid}/limits") as limits:
            row = next(line for line in limits if line.startswith("Max open files"))
        assert row.split()[3:5] == ["1000", "1000"]
        assert any("open-file limit raised from 200 to 1000" in line for line in exporter.log)
        assert b"\nnats_up 1\n" in http_get(exporter.url)
