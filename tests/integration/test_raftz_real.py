"""/raftz against the real supercluster (tests.support.cluster), over HTTP and in fleet mode:
the meta group's applied, committed and last index of each A server, checked against that
server's own /raftz of the same moment. The indexes move, so the check is a bound: a stream is
added (an entry in the meta log), the exporter must reach what each server reported after it,
and may not pass what the server reports after the scrape. B1 runs no JetStream: it has no
series and no error. Then faults on A1's /raftz through a fault proxy: counted by reason, the
series dropped (a bad body's after ``STALE_AFTER``) and back once it reads again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvloop

from fastnats import metrics as m
from fastnats.collector import ServerCollector
from fastnats.collectors.base import Samples
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.cluster import ACCOUNTS, Supercluster
from tests.support.faultproxy import FAULT_REASONS, FaultProxy
from tests.support.process import exporting, wait_until
from tests.support.series import Series
from tests.support.storedseries import parse

pytestmark = pytest.mark.integration

#: Each family and the field of /raftz it copies.
FIELDS = {m.NATS_JETSTREAM_META_APPLIED_INDEX.name: "applied",
          m.NATS_JETSTREAM_META_COMMITTED_INDEX.name: "committed",
          m.NATS_JETSTREAM_META_LAST_INDEX.name: "pindex"}
PROBE = "RAFTZ_PROBE"
FAULT_TIMEOUT = 0.5
Positions = dict[str, dict[str, float]]


def meta_servers(supercluster: Supercluster) -> list[str]:
    return [node.name for node in supercluster.nodes if node.cluster == "A"]


def positions(supercluster: Supercluster) -> Positions:
    """Each JetStream server's meta group indexes, by family, from its own /raftz."""
    out: Positions = {}
    for name in meta_servers(supercluster):
        [groups] = supercluster.node(name).get("raftz", group="_meta_").values()
        out[name] = {family: groups["_meta_"][field] for family, field in FIELDS.items()}
    return out


def exported(series: Series) -> Positions:
    out: Positions = {}
    for family in FIELDS:
        for labels, value in series.get(family, []):
            out.setdefault(labels["server"], {})[family] = value
    return out


@contextmanager
def probe_stream(supercluster: Supercluster) -> Iterator[None]:
    """An R3 stream in T1 for the test's duration: adding and removing it are meta entries."""
    import nats

    user, password = ACCOUNTS["T1"]
    url = f"nats://127.0.0.1:{supercluster.hub.client_port}"

    async def run(add: bool) -> None:
        nc = await nats.connect(url, user=user, password=password)
        try:
            js = nc.jetstream(timeout=10)
            if add:
                await js.add_stream(name=PROBE, subjects=["raftz.probe"], num_replicas=3)
            else:
                await js.delete_stream(PROBE)
        finally:
            await nc.close()

    asyncio.run(run(True))
    try:
        yield
    finally:
        asyncio.run(run(False))


def exporter_args(mode: str, supercluster: Supercluster, tmp_path) -> list[str]:
    if mode == "http":
        return [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
    password = tmp_path / "password"
    password.write_text(ACCOUNTS["SYS"][1] + "\n")
    return ["--nats.url", f"nats://127.0.0.1:{supercluster.hub.client_port}",
            "--nats.user", ACCOUNTS["SYS"][0], "--nats.password-file", str(password),
            "--timeout", "2s"]


@pytest.mark.parametrize("mode", ["http", "fleet"])
def test_the_meta_group_indexes_are_the_servers(supercluster, mode, tmp_path):
    supercluster.wait_formed()
    servers = meta_servers(supercluster)
    with exporting(*exporter_args(mode, supercluster, tmp_path), "--web.listen-address",
                   "127.0.0.1:0", "--refresh-interval", "0.2", "--collector.raftz") as exporter:
        wait_until(lambda: set(exported(parse(exporter.scrape()))) == set(servers), timeout=30)
        before = positions(supercluster)
        with probe_stream(supercluster):
            # Every server's log past the stream's entry: what the exporter must reach.
            def moved() -> Positions | None:
                now = positions(supercluster)
                return now if all(now[name][family] > before[name][family]
                                  for name in servers for family in FIELDS) else None

            floor = wait_until(moved, timeout=30)

            def caught_up() -> Series | None:
                series = parse(exporter.scrape())
                found = exported(series)
                return series if all(
                    found.get(name, {}).get(family, -1) >= value
                    for name, values in floor.items() for family, value in values.items()
                ) else None

            series = wait_until(caught_up, timeout=30)
            ceiling = positions(supercluster)
    found = exported(series)
    assert set(found) == set(servers)    # nothing for B1, which runs no JetStream
    for name in servers:
        for family in FIELDS:
            assert floor[name][family] <= found[name][family] <= ceiling[name][family], (
                name, family, floor[name][family], found[name][family], ceiling[name][family])
        applied, committed, last = (found[name][family] for family in FIELDS)
        assert applied <= committed
    success = {labels["server"]: value for labels, value
               in series["fastnats_collector_success"] if labels["collector"] == "raftz"}
    assert success == dict.fromkeys((node.name for node in supercluster.nodes), 1.0)
    errors = [(labels, value) for labels, value in series["fastnats_refresh_errors_total"]
              if labels["endpoint"] == "raftz" and value]
    assert errors == []


@pytest.fixture(scope="module")
def proxy(supercluster):
    """A fault proxy in front of A1's monitoring port: the shared server of
    tests/integration/test_faults.py runs no clustered JetStream, so its /raftz is not served
    even when all is well, and that matrix leaves /raftz to this one."""
    with FaultProxy(supercluster.node("A1").monitor_url, bomb_size=8 << 20,
                    huge_size=8 << 20) as proxy:
        yield proxy


@pytest.mark.parametrize("fault", ["hang", "reset", "status_500", "corrupt", "huge_length",
                                   "gzip_bomb"])
def test_a_fault_on_raftz_is_counted_and_the_series_come_back(proxy, fault):
    reason = FAULT_REASONS[fault]

    async def scenario() -> list[tuple[Samples, Counter[tuple[str, str]]]]:
        session = new_session()
        server = ServerCollector(Target("A1", proxy.url),
                                 MonitorClient(proxy.url, session, FAULT_TIMEOUT), {"raftz": None})
        seen = []
        try:
            for faulted in (False, True, True, True, False):
                if faulted:
                    proxy.fault("raftz", fault)
                else:
                    proxy.clear()
                await server.refresh()
                assert server.up, server.problems
                seen.append((server.nats_samples(), Counter(server.errors)))
        finally:
            proxy.clear()
            await server.close()
            await session.close()
        return seen

    (healthy, before), *faulted, (recovered, after) = uvloop.run(scenario())
    assert set(FIELDS) <= set(healthy) and set(FIELDS) <= set(recovered)
    assert set(before.values()) == {0}
    assert +(after - before) == Counter({("raftz", reason): len(faulted)})
    # A failed request drops the series at once; a body that does not decode keeps the last
    # good ones until the collector is stale.
    kept = [bool(set(FIELDS) & set(samples)) for samples, _ in faulted]
    assert kept == ([True, True, False] if reason == "decode" else [False] * 3)
