"""pytest-benchmark suite of one exporter refresh against a real nats-server, by connection count.

    pytest bench/test_bench_e2e.py --benchmark-only --benchmark-group-by=param:connections

The server and its client connections are those of bench/e2e.py (which also reports the split
into fetch, scan+aggregate and render, and the peak RSS, each refresh in a fresh process); here
the parts run side by side in one process with pytest-benchmark's statistics.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

import pytest
from e2e import connz_params, hold_clients, render_split, timed_get

from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import ConnzCollector, ConnzOptions
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.process import start_nats


@pytest.fixture(scope="module", params=[10_000, 19_000], ids=lambda n: f"connections={n}")
def exporter(request):
    n = request.param
    server = start_nats()
    clients = None
    loop = asyncio.new_event_loop()
    session = None
    try:
        clients = hold_clients(server.client_port, n, 5000, 300)
        session = loop.run_until_complete(_session())
        collector = ServerCollector(Target("bench", server.monitor_url),
                                    MonitorClient(server.monitor_url, session, 30.0),
                                    {"connz": ConnzOptions()})
        loop.run_until_complete(collector.refresh())
        assert collector.up and not collector.problems
        yield n, server, loop, collector
    finally:
        if session is not None:
            loop.run_until_complete(session.close())
        loop.close()
        if clients is not None:
            clients.close()
        server.stop()


async def _session():
    return new_session()


def test_refresh(benchmark, exporter):
    n, _, loop, collector = exporter
    benchmark.pedantic(lambda: loop.run_until_complete(collector.refresh()), rounds=10,
                       warmup_rounds=1)
    assert sum(v for _, v in collector.snapshot["nats_client_connections"]) == n


def test_server_connz(benchmark, exporter):
    n, server, _, _ = exporter
    path = "/connz?" + urlencode(connz_params(n))
    benchmark.pedantic(timed_get, (server.ports["http"], path, 30.0), rounds=10,
                       warmup_rounds=2)


def test_scan_aggregate(benchmark, exporter):
    n, _, loop, collector = exporter
    body = loop.run_until_complete(collector.source.get("connz", connz_params(n)))
    connz = collector.collector("connz")
    assert isinstance(connz, ConnzCollector)
    aggregator = connz.aggregator
    benchmark.pedantic(lambda: aggregator.update(body, None, time.time()), rounds=20,
                       warmup_rounds=1)
    assert aggregator.count == n


def test_render(benchmark, exporter):
    _, _, _, collector = exporter
    split = benchmark.pedantic(render_split, (NatsCollector([collector]),), rounds=20,
                               warmup_rounds=1)
    assert split["text_bytes"] > 0

