"""pytest-benchmark suite of one wire poll: kernel dump, Cython parse, Python parse, by size.

    pytest bench/test_bench_wire.py --benchmark-group-by=param:sockets

The contenders run side by side on the same captured dump of N real loopback connections to a
nats-server (see bench/wire.py for the standalone script and its ratios).
"""

from __future__ import annotations

import pytest
from wire import hold_connections

from fastnats import _core, _reference
from fastnats.sources.sockdiag import SockDiag
from tests.support.process import start_nats


@pytest.fixture(scope="module", params=[1000, 10000], ids=lambda n: f"sockets={n}")
def loaded(request):
    server = start_nats()
    conns = hold_connections(server.client_port, request.param)
    ports = {server.client_port: "client"}
    diag = SockDiag(ports, destroy_events=False)
    captured = diag.dump()
    counter = _core.WireCounter(ports)
    counter.update(captured)
    assert counter.sockets == request.param
    yield request.param, ports, diag, captured
    diag.close()
    conns.close()
    server.stop()


def test_recv(benchmark, loaded):
    _, _, diag, _ = loaded
    buffers = benchmark(diag.dump)
    assert buffers


def test_core(benchmark, loaded):
    n, ports, diag, _ = loaded
    counter = _core.WireCounter(ports)
    benchmark(lambda: counter.update(diag.dump()))
    assert counter.sockets == n


def test_core_parse(benchmark, loaded):
    n, ports, _, captured = loaded
    counter = _core.WireCounter(ports)
    benchmark(counter.update, captured)
    assert counter.sockets == n


def test_python_parse(benchmark, loaded):
    n, ports, _, captured = loaded
    records = benchmark(_reference.wire_parse, captured, ports)
    assert len(records) == n
