"""The wire collector's start: a server whose listeners are not visible yet (nats-server serves
/varz before its client port listens) is tried again with backoff, and the off state is a
series, nats_wire_mode_info{mode="off"}. Real sockets and real sock_diag dumps, no process."""

from __future__ import annotations

import asyncio
import logging
import socket

import orjson
import pytest

from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import ServerContext, SockdiagCollector
from fastnats.collectors.base import ServerInfo
from fastnats.sources.sockdiag import SockDiag
from fastnats.target import Target
from tests.support.bodysource import VARZ, FakeClient

OFF = {"nats_wire_mode_info": [(("off",), 1)]}


@pytest.fixture
def unlistened():
    """A TCP socket bound to a free port of 127.0.0.1 that does not listen until told to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def info(port: int, start: str = "2026-01-01T00:00:00Z") -> ServerInfo:
    return ServerInfo("N1", start, 0, 0, {port: "client"})


def spy_probes(collector: SockdiagCollector, refreshes: list[int]) -> list[int]:
    """The refreshes (numbered as in ``refreshes``) at which the collector tried to start."""
    probes: list[int] = []
    real = collector._why_not

    def probe(ports):
        probes.append(len(refreshes))
        return real(ports)

    collector._why_not = probe  # type: ignore[method-assign]
    return probes


def messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_listeners_that_appear_later_start_the_counter_at_the_next_try(unlistened, caplog):
    caplog.set_level(logging.INFO, logger="fastnats.scrape")
    port = unlistened.getsockname()[1]
    context = ServerContext("local", "127.0.0.1")
    collector = SockdiagCollector(context)
    refreshes: list[int] = []
    probes = spy_probes(collector, refreshes)
    seen = []

    async def run() -> None:
        for n in range(1, 9):
            refreshes.append(n)
            if n == 3:
                unlistened.listen()
            await collector.refresh(None, info(port))  # type: ignore[arg-type]  (no source)
            seen.append((n, collector.counter is not None, collector.samples()))
        await collector.close()

    asyncio.run(run())
    # Tries at refreshes 1, 2 and 4 (backoff 1, 2): the listener of refresh 3 is found at 4.
    assert probes == [1, 2, 4]
    assert [on for _, on, _ in seen] == [False] * 3 + [True] * 5
    assert [samples for _, _, samples in seen[:3]] == [OFF] * 3
    started = seen[3][2]
    assert started["nats_wire_mode_info"][0][0][0] in ("poll", "destroy_events")
    assert started["nats_server_total_bytes_sent"] == [((), 0)]
    # One line each way; being off for a listener not up yet is no error.
    off = messages(caplog, "wire byte counter off")
    on = messages(caplog, "wire byte counter on")
    assert len(off) == 1 and "not visible" in off[0] and "trying again" in off[0], off
    assert len(on) == 1 and "wire bytes available now" in on[0], on
    assert not +context.errors


def test_the_backoff_doubles_up_to_its_cap_and_a_restart_tries_at_once(unlistened, caplog):
    caplog.set_level(logging.INFO, logger="fastnats.scrape")
    port = unlistened.getsockname()[1]
    collector = SockdiagCollector(ServerContext("local", "127.0.0.1"))
    refreshes: list[int] = []
    probes = spy_probes(collector, refreshes)

    async def run() -> None:
        for n in range(1, 201):
            refreshes.append(n)
            await collector.refresh(None, info(port))  # type: ignore[arg-type]
        refreshes.append(201)
        await collector.refresh(None, info(port, "2026-01-02T00:00:00Z"))  # type: ignore[arg-type]

    asyncio.run(run())
    # Backoff 1, 2, 4 ... 32 (RETRY_CAP) refreshes; a new identity is tried at once.
    assert probes == [1, 2, 4, 8, 16, 32, 64, 96, 128, 160, 192, 201]
    assert collector.samples() == OFF
    assert len(messages(caplog, "wire byte counter off")) == 1


def test_a_failed_netlink_call_is_counted_and_tried_again(unlistened, monkeypatch):
    port = unlistened.getsockname()[1]
    unlistened.listen()
    context = ServerContext("local", "127.0.0.1")
    collector = SockdiagCollector(context)
    real = SockDiag.listening_ports
    failures = iter([OSError(105, "No buffer space available")])

    def listening_ports(diag):
        for error in failures:
            raise error
        return real(diag)

    monkeypatch.setattr(SockDiag, "listening_ports", listening_ports)

    async def run() -> list[bool]:
        states = []
        for _ in range(2):
            await collector.refresh(None, info(port))  # type: ignore[arg-type]
            states.append(collector.counter is not None)
        await collector.close()
        return states

    assert asyncio.run(run()) == [False, True]
    assert context.errors[("wire", "netlink")] == 1


def test_a_server_on_another_host_is_never_tried_again_and_exports_off(caplog):
    caplog.set_level(logging.INFO, logger="fastnats.scrape")
    varz = orjson.dumps(VARZ)
    server = ServerCollector(Target("far", "http://198.51.100.7:8222"),
                             FakeClient({"varz": varz}), {"wire": None})
    wire = server.collector("wire")
    assert isinstance(wire, SockdiagCollector)
    refreshes: list[int] = []
    probes = spy_probes(wire, refreshes)
    collector = NatsCollector([server])
    for n in range(1, 6):
        refreshes.append(n)
        asyncio.run(collector.refresh())
    assert probes == [1]
    families = {metric.name: samples for metric, _, samples in collector.families()}
    assert families["nats_wire_mode_info"] == [(("off",), 1)]
    assert "nats_server_total_bytes_sent" not in server.nats_samples()
    off = messages(caplog, "wire byte counter off")
    assert len(off) == 1 and "trying again" not in off[0]
