"""The /connz collector end to end: the exporter process against real and fake monitoring ports.

Against a real nats-server, raw clients (tests.support.crowd) make known traffic in named groups,
and the exporter's group totals must equal the test's own count, the sums over /connz and /varz,
also through churn and with 10,000 connections held by helper processes. Against a fake monitoring
port that serves generated bodies (tests.support.connzgen), a 50k-connection /connz held half sent
shows that scrapes never wait for a refresh, and a truncated one that a bad body keeps the last
good aggregates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from fastnats.collector import STALE_AFTER
from tests.support import connzgen
from tests.support.crowd import Crowd, HeldCrowd
from tests.support.monitor import FakeMonitor
from tests.support.natsclient import RawClient, connect_line, pub
from tests.support.process import FAST, get_json, http_get, running_nats, start_exporter, wait_until
from tests.support.refreshes import refreshes, two_refreshes_later
from tests.support.series import Series, by_name, parse, single, total

pytestmark = pytest.mark.integration

#: Each group counter and the /connz and /varz field it sums.
COUNTERS = {
    "nats_client_in_messages_total": "in_msgs",
    "nats_client_out_messages_total": "out_msgs",
    "nats_client_in_bytes_total": "in_bytes",
    "nats_client_out_bytes_total": "out_bytes",
}
DISTRIBUTION_COUNTS = tuple(f"nats_client_connection_{d}_count"
                            for d in ("rtt_seconds", "pending_bytes", "idle_seconds",
                                      "subscriptions"))
VARZ_TEMPLATE = orjson.loads((Path(__file__).parents[1] / "data" / "varz.json").read_bytes())


def eventually(check, timeout: float = 20.0):
    """Call ``check`` until it stops failing an assertion; then return what it returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        # Poll interval: the exporter refreshes every 0.2 s.
        time.sleep(0.05)


def open_connz(monitor_url: str) -> list[dict]:
    doc = get_json(f"{monitor_url}/connz?state=open&limit=1000000")
    assert doc["total"] == len(doc["connections"])
    return doc["connections"]


def connz_by_name(conns: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(Counter)
    for conn in conns:
        group = out[conn.get("name", "")]
        group["connections"] += 1
        group["subscriptions"] += conn["subscriptions"]
        for field in COUNTERS.values():
            group[field] += conn[field]
    return out


def cids_by_port(conns: list[dict]) -> dict[int, int]:
    return {conn["port"]: conn["cid"] for conn in conns}


@pytest.fixture
def patient_server(tmp_path):
    """A nats-server that keeps a consumer that never reads for minutes instead of 10 s, so the
    pending bytes of a stalled consumer stay put while a test looks at them."""
    conf = tmp_path / "patient.conf"
    conf.write_text('listen: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\nwrite_deadline: "5m"\n')
    with running_nats("-c", str(conf)) as server:
        yield server


def stalled_consumer(port: int, subject: str) -> RawClient:
    """A subscriber to ``subject`` that never reads after its PONG."""
    # A small receive window leaves most of what it is sent in the server's pending bytes.
    stalled = RawClient(port, name="stalled", rcvbuf=4096)
    stalled.sub(subject, 1)
    stalled.flush()
    return stalled


def test_group_totals_equal_known_traffic_connz_and_varz(patient_server):
    port, monitor = patient_server.client_port, patient_server.monitor_url
    exporter = None
    crowds: list[Crowd] = []
    clients: list[RawClient] = []
    stalled: list[RawClient] = []
    try:
        def crowd(count: int, name: str, commands: bytes = b"") -> Crowd:
            crowds.append(Crowd(port, count, name, commands=commands))
            return crowds[-1]

        subscribers = crowd(100, "subscriber", b"SUB data.> 1\r\n")
        bulk_sinks = crowd(20, "bulk-sink", b"SUB bulk 1\r\n")
        crowd(80, "idle")
        publishers = crowd(120, "publisher")
        bulk = crowd(30, "bulk")
        expected: dict[tuple[str, str], int] = Counter()

        sends = {}
        for i, sock in enumerate(publishers.socks):
            payloads = [b"p" * ((i * 7 + j) % 300 + 1) for j in range(i % 5 + 1)]
            sends[sock] = b"".join(pub(f"data.{i % 4}", p) for p in payloads)
            expected["publisher", "in_msgs"] += len(payloads)
            expected["publisher", "in_bytes"] += sum(map(len, payloads))
        publishers.round_trip(sends)
        bulk.round_trip({sock: pub("bulk", b"b" * 1024) * 4 for sock in bulk.socks})
        expected["bulk", "in_msgs"], expected["bulk", "in_bytes"] = 30 * 4, 30 * 4 * 1024
        # Read what was delivered, so no subscriber's pending bytes outrank the stalled one.
        subscribers.round_trip(dict.fromkeys(subscribers.socks, b""))
        bulk_sinks.round_trip(dict.fromkeys(bulk_sinks.socks, b""))
        expected["subscriber", "out_msgs"] = 100 * expected["publisher", "in_msgs"]
        expected["subscriber", "out_bytes"] = 100 * expected["publisher", "in_bytes"]
        expected["bulk-sink", "out_msgs"] = 20 * expected["bulk", "in_msgs"]
        expected["bulk-sink", "out_bytes"] = 20 * expected["bulk", "in_bytes"]

        # Three consumers that never read, flooded with 12, 6 and 3 MiB: the kernel's buffers
        # take a few MiB of each, the server keeps the rest pending.
        flooder = RawClient(port, name="flooder")
        clients.append(flooder)
        for k, mib in enumerate((12, 6, 3)):
            stalled.append(stalled_consumer(port, f"stall.{k}"))
            flooder.sock.sendall(pub(f"stall.{k}", b"s" * 65536) * (16 * mib))
            expected["flooder", "in_msgs"] += 16 * mib
            expected["flooder", "in_bytes"] += 16 * mib * 65536
        flooder.flush()
        expected["stalled", "out_msgs"] = expected["flooder", "in_msgs"]
        expected["stalled", "out_bytes"] = expected["flooder", "in_bytes"]

        fast = RawClient(port, name="fast")
        slow = [RawClient(port, name="slow") for _ in range(3)]
        rate_sink = RawClient(port, name="rate-sink")
        slow_sink = RawClient(port, name="slow-sink")
        clients += [fast, *slow, rate_sink, slow_sink]
        rate_sink.sub("rate.>", 1)
        slow_sink.sub("rate.slow", 1)
        rate_sink.flush()
        slow_sink.flush()
        # Started once every connection has sent its CONNECT (see test_a_connection_listed_...).
        exporter = start_exporter(monitor, *FAST, "--connz.top-k", "2")
        conns = open_connz(monitor)
        cid = cids_by_port(conns)
        stalled_cids = [cid[c.sock.getsockname()[1]] for c in stalled]
        fast_cid, rate_sink_cid = (cid[c.sock.getsockname()[1]] for c in (fast, rate_sink))
        slow_cids = {cid[c.sock.getsockname()[1]] for c in slow}

        def busiest() -> None:
            # One more round of traffic: the fast publisher sends 100 times what each slow one
            # does, so it leads any interval between two refreshes that saw traffic.
            fast.sock.sendall(pub("rate.fast", b"f" * 8) * 100)
            fast.flush()
            for client in slow:
                client.pub("rate.slow", b"s" * 8)
                client.flush()
            rate_sink.flush()
            slow_sink.flush()
            expected["fast", "in_msgs"] += 100
            expected["slow", "in_msgs"] += 3
            expected["rate-sink", "out_msgs"] += 103
            expected["slow-sink", "out_msgs"] += 3
            series = parse(exporter.scrape())
            top_in = {int(labels["cid"]): v
                      for labels, v in series["nats_client_top_in_messages_per_second"]}
            top_out = {int(labels["cid"]): v
                       for labels, v in series["nats_client_top_out_messages_per_second"]}
            assert fast_cid in top_in and set(top_in) <= {fast_cid, *slow_cids}, top_in
            assert top_in[fast_cid] > max((v for c, v in top_in.items() if c != fast_cid),
                                          default=0), top_in
            assert max(top_out, key=top_out.get) == rate_sink_cid, top_out

        eventually(busiest)
        for name in ("fast", "slow", "rate-sink", "slow-sink"):
            direction = "in" if name in ("fast", "slow") else "out"
            expected[name, f"{direction}_bytes"] = 8 * expected[name, f"{direction}_msgs"]
        names = {name for name, _ in expected} | {"idle"}

        def agrees() -> None:
            varz = get_json(f"{monitor}/varz")
            conns = open_connz(monitor)
            sums = connz_by_name(conns)
            series = parse(exporter.scrape())
            for metric, field in COUNTERS.items():
                got = by_name(series, metric)
                assert got == {name: sums[name][field] for name in sums}, metric
                assert got == {name: expected[name, field] for name in names}, metric
                assert total(series, metric) == varz[field], metric
            assert by_name(series, "nats_client_connections") == {
                name: sums[name]["connections"] for name in sums}
            assert by_name(series, "nats_client_subscriptions") == {
                name: sums[name]["subscriptions"] for name in sums}
            assert total(series, "nats_client_connections") == varz["connections"] == len(conns)
            for metric in DISTRIBUTION_COUNTS:
                assert single(series, metric) == len(conns), metric
            pending = {conn["cid"]: conn["pending_bytes"] for conn in conns}
            most = sorted(pending, key=pending.get, reverse=True)[:2]
            assert most == stalled_cids[:2] and pending[most[1]] > pending[stalled_cids[2]]
            assert [(labels["cid"], labels["name"], value)
                    for labels, value in series["nats_client_top_pending_bytes"]] == [
                (str(c), "stalled", pending[c]) for c in most]

        eventually(agrees)
        assert len(open_connz(monitor)) == 360
    finally:
        if exporter is not None:
            exporter.stop()
        for c in crowds:
            c.close()
        for sock in [*clients, *stalled]:
            sock.close()


class Watcher:
    """Scrapes the exporter in a background thread and checks each scrape against the last:
    no group counter decreases and none disappears."""

    def __init__(self, exporter) -> None:
        self.exporter = exporter
        self.last: dict[tuple[str, tuple], float] = {}
        self.refreshes: set[float] = set()
        self.problems: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.check(parse(self.exporter.scrape()))
                # A pace, not a synchronisation: scrapes far outnumber refreshes either way.
                self._stop.wait(0.02)
        except BaseException as exc:  # noqa: BLE001 -- reported by stop()
            self.error = exc

    def check(self, series: Series) -> None:
        self.refreshes.add(single(series, "fastnats_refreshes_total"))
        now = {(metric, tuple(sorted(labels.items()))): value
               for metric in COUNTERS for labels, value in series[metric]}
        for key, before in self.last.items():
            if key not in now:
                self.problems.append(f"{key} disappeared (was {before})")
            elif now[key] < before:
                self.problems.append(f"{key} went from {before} to {now[key]}")
        self.last = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
        if self.error is not None:
            raise self.error


@contextmanager
def busy_cores(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes that spin for at most ``seconds``, each killed on the way out."""
    spin = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\n" \
           "while time.monotonic() < end:\n    pass\n"
    spinners = []
    try:
        for _ in range(count):
            spinners.append(subprocess.Popen([sys.executable, "-c", spin, str(seconds)]))
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.parametrize("load", ["idle", "busy"])
def test_counters_stay_monotonic_through_churn_and_keep_closed_connections(nats_server, load):
    """Exact per-client totals through churn; ``busy`` runs it with every core saturated by
    spinning processes, where nats-server files closed connections late."""
    with busy_cores((os.cpu_count() or 2) if load == "busy" else 0, 180):
        churn_and_check(nats_server)


def churn_and_check(nats_server) -> None:
    port, monitor = nats_server.client_port, nats_server.monitor_url
    exporter = start_exporter(monitor, *FAST)
    watcher = Watcher(exporter)
    sink = RawClient(port, name="churn-sink")
    steady = Crowd(port, 50, "steady")
    live: list[Crowd] = []
    sent: dict[tuple[str, str], int] = Counter()
    rounds = 8
    try:
        sink.sub("churn.>", 1)
        sink.flush()

        def publish(crowd: Crowd, socks, messages, size: int) -> None:
            sends = {}
            for k, sock in enumerate(socks):
                n = messages(k)
                sends[sock] = pub(f"churn.{crowd.name}", b"c" * size) * n
                sent[crowd.name, "in_msgs"] += n
                sent[crowd.name, "in_bytes"] += n * size
            crowd.round_trip(sends)

        for r in range(rounds):
            crowd = Crowd(port, 150, f"churn-{r % 3}")
            # Half of the new connections publish, so some of those closed later had traffic.
            publish(crowd, crowd.socks[::2], lambda k: k % 4 + 1, r + 1)
            publish(steady, steady.socks, lambda k: 1, 3)
            # Opened, published and closed between two refreshes: only state=closed shows these.
            flash = Crowd(port, 40, "flash")
            publish(flash, flash.socks, lambda k: 3, 5)
            flash.close()
            if r == 3:
                oneshot = Crowd(port, 1, "oneshot")
                publish(oneshot, oneshot.socks, lambda k: 37, 11)
                oneshot.close()
            # Close the older half of the connections left from earlier rounds.
            if live:
                live[0].close(75)
                if not live[0].socks:
                    live.pop(0)
            live.append(crowd)
            sink.flush()
            two_refreshes_later(exporter)

        for crowd in live:
            crowd.close()
        sink.flush()
        sent["churn-sink", "out_msgs"] = sum(v for (_, f), v in sent.items() if f == "in_msgs")
        sent["churn-sink", "out_bytes"] = sum(v for (_, f), v in sent.items() if f == "in_bytes")
        names = {name for name, _ in sent} | {"churn-0", "churn-1", "churn-2"}

        def named(counts: dict[str, float]) -> dict[str, float]:
            # A connection listed before the server read its CONNECT leaves an unnamed group,
            # which must count nothing: what it did belongs to its name.
            assert counts.pop("", 0) == 0, counts
            return counts

        def settled() -> Series:
            varz = get_json(f"{monitor}/varz")
            series = parse(exporter.scrape())
            for metric, field in COUNTERS.items():
                assert total(series, metric) == varz[field], metric
                assert named(by_name(series, metric)) == {
                    name: sent[name, field] for name in names}, metric
            connections = named(by_name(series, "nats_client_connections"))
            assert connections == {name: 0 for name in names} | {"steady": 50, "churn-sink": 1}
            assert varz["connections"] == 51
            assert total(series, "nats_client_connections_lost_total") == 0
            return series

        series = eventually(settled)
        # The connection that published 37 messages and closed before any refresh saw it.
        assert by_name(series, "nats_client_in_messages_total")["oneshot"] == 37
        assert by_name(series, "nats_client_in_bytes_total")["oneshot"] == 37 * 11
        assert by_name(series, "nats_client_connections")["oneshot"] == 0
    finally:
        try:
            watcher.stop()    # raises what the watcher hit: the rest must still stop
        finally:
            exporter.stop()
            for crowd in [steady, *live]:
                crowd.close()
            sink.close()
    assert not watcher.problems, watcher.problems[:20]
    # The watcher saw the refreshes between the rounds (two per round at least).
    assert len(watcher.refreshes) >= 2 * rounds


def test_ten_thousand_connections_are_all_counted(nats_server):
    port, monitor = nats_server.client_port, nats_server.monitor_url
    shares = {"crowd-0": 3334, "crowd-1": 3333, "crowd-2": 3333}
    # Each process may hold 20,000 open files: the connections live in helper processes.
    helpers = HeldCrowd(port, sum(shares.values()), "crowd", groups=len(shares))
    exporter = None
    try:
        # Started once every connection has sent its CONNECT (see test_a_connection_listed_...).
        exporter = start_exporter(monitor, "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", "0.5", "--timeout", "10")

        def all_counted() -> None:
            varz = get_json(f"{monitor}/varz")
            series = parse(exporter.scrape())
            assert varz["connections"] == 10_000
            assert total(series, "nats_client_connections") == varz["connections"]
            assert by_name(series, "nats_client_connections") == shares
            for metric in DISTRIBUTION_COUNTS:
                assert single(series, metric) == 10_000, metric

        eventually(all_counted, timeout=30)
    finally:
        if exporter is not None:
            exporter.stop()
        helpers.close()


def test_a_connection_listed_before_its_connect_joins_its_group_once_named(nats_server):
    port, monitor = nats_server.client_port, nats_server.monitor_url
    exporter = start_exporter(monitor, *FAST)
    late = None
    try:
        late = Crowd(port, 5, "late", connect=False)
        wait_until(lambda: len(open_connz(monitor)) == 5)
        two_refreshes_later(exporter)
        assert by_name(parse(exporter.scrape()), "nats_client_connections") == {"": 5}
        late.round_trip(dict.fromkeys(late.socks, connect_line("late") + pub("late", b"x" * 10)))
        assert {conn.get("name") for conn in open_connz(monitor)} == {"late"}
        two_refreshes_later(exporter)
        series = parse(exporter.scrape())
        assert by_name(series, "nats_client_connections") == {"": 0, "late": 5}
        assert by_name(series, "nats_client_in_messages_total") == {"": 0, "late": 5}
    finally:
        exporter.stop()
        if late is not None:
            late.close()


def fake_varz(connections: int) -> dict:
    return {**VARZ_TEMPLATE, "connections": connections, "total_connections": connections}


def body_sums(body: bytes) -> dict[tuple[str, str], dict[str, int]]:
    """What the exporter must show per (account, name) group for an open /connz body."""
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(Counter)
    for conn in orjson.loads(body)["connections"]:
        group = out[conn.get("account", ""), conn.get("name", "")]
        group["connections"] += 1
        for field in COUNTERS.values():
            group[field] += conn[field]
    return out


def assert_groups(series: Series, sums: dict[tuple[str, str], dict[str, int]]) -> None:
    for metric, field in {**COUNTERS, "nats_client_connections": "connections"}.items():
        got = {(labels["account"], labels["name"]): value for labels, value in series[metric]}
        assert got == {key: group[field] for key, group in sums.items()}, metric


def two_open_bodies(seed: int, connections: int, names: int) -> tuple[bytes, bytes]:
    """Two successive open /connz bodies of one simulated server, traffic in between."""
    print(f"connzgen seed {seed}")
    sim = connzgen.Server(seed, names=names)
    sim.step(opens=connections)
    sim.step()
    first = sim.open_body()
    sim.step()
    return first, sim.open_body()


def test_scrapes_are_answered_while_a_50k_connz_refresh_is_in_flight():
    first, second = two_open_bodies(20261125, 50_000, names=40)
    first_sums, second_sums = body_sums(first), body_sums(second)
    assert first_sums != second_sums
    monitor = FakeMonitor(fake_varz(50_000), first)
    exporter = None
    try:
        exporter = start_exporter(monitor.url, *FAST, "--timeout", "120")
        assert_groups(parse(exporter.scrape()), first_sums)
        monitor.open_body = second
        monitor.hold_next_open()
        wait_until(monitor.holding.is_set)
        varz_served = monitor.served["varz"]
        held_refresh = refreshes(exporter)
        for _ in range(20):
            series = parse(exporter.scrape())
            # Same refresh and no new one begun: the held one is still in flight.
            assert single(series, "fastnats_refreshes_total") == held_refresh
            assert single(series, "nats_up") == 1
            assert_groups(series, first_sums)
        assert monitor.served["varz"] == varz_served
        assert not monitor.release.is_set()
        monitor.release.set()
        series = eventually(lambda: assert_groups(s := parse(exporter.scrape()), second_sums) or s)
        assert total(series, "nats_client_connections") == 50_000
        assert single(series, "fastnats_refreshes_total") > held_refresh
    finally:
        if exporter is not None:
            exporter.stop()
        monitor.close()


class WatchedAggregator:
    """Stands in for a ConnzReader's aggregator: the same object, with events around update()."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.left = threading.Event()

    def update(self, *args) -> None:
        self.entered.set()
        try:
            self.inner.update(*args)
        finally:
            self.left.set()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_scrape_is_served_while_the_core_scans_a_50k_body():
    """The exporter's own pieces in this process: while the worker thread scans a 50k-connection
    body, the event loop still answers /metrics. The interpreter is told not to take the GIL away
    from a thread for a minute, so a scrape answered before update() returns shows that the scan
    let the GIL go, not that the scheduler preempted it."""
    import asyncio

    import uvloop

    from fastnats.collector import NatsCollector, ServerCollector
    from fastnats.collectors import ConnzCollector, ConnzOptions
    from fastnats.refresher import Refresher
    from fastnats.server import start_server
    from fastnats.sources.monitor import MonitorClient, new_session
    from fastnats.target import Target

    body, _ = two_open_bodies(99, 50_000, names=40)
    monitor = FakeMonitor(fake_varz(50_000), body)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="exporter-loop", daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    async def start():
        session = new_session()
        server = ServerCollector(Target("fake", monitor.url),
                                 MonitorClient(monitor.url, session, 120.0),
                                 {"connz": ConnzOptions()})
        cache = Refresher(NatsCollector([server]), 3600.0)
        await cache.refresh()
        http = await start_server({"/metrics": lambda: cache.payload}, "127.0.0.1", 0)
        return session, server, cache, http

    session, server, cache, http = run(start())
    connz = server.collector("connz")
    assert isinstance(connz, ConnzCollector)
    watched = WatchedAggregator(connz.aggregator)
    connz.aggregator = watched  # type: ignore[assignment]
    url = f"http://127.0.0.1:{http.port}/metrics"
    answered_during_scan = 0
    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        for _ in range(5):
            watched.entered.clear()
            watched.left.clear()
            refresh = asyncio.run_coroutine_threadsafe(cache.refresh(), loop)
            assert watched.entered.wait(60)
            series = parse(http_get(url).decode())
            answered_during_scan += not watched.left.is_set()
            refresh.result(120)
            assert total(series, "nats_client_connections") == 50_000
    finally:
        sys.setswitchinterval(old)

        async def stop():
            http.close()
            await http.wait_closed()
            await session.close()

        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        monitor.close()
    assert answered_during_scan >= 1


def test_a_truncated_connz_keeps_the_last_good_aggregates():
    """Until STALE_AFTER reads in a row fail; then the series go, and the state stays."""
    good, later = two_open_bodies(4242, 300, names=20)
    monitor = FakeMonitor(fake_varz(300), good)
    exporter = None
    try:
        # A second between refreshes: scrapes catch the exporter between its failures.
        exporter = start_exporter(monitor.url, "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", "1")
        series = parse(exporter.scrape())
        assert_groups(series, body_sums(good))
        # Every known error is there from the start, at 0.
        assert {labels["endpoint"] for labels, _ in series["fastnats_refresh_errors_total"]} == {
            "varz", "connz", "wire", "routez", "gatewayz", "leafz", "healthz"}
        assert all(value == 0 for _, value in series["fastnats_refresh_errors_total"])
        monitor.open_body = later[:len(later) // 2]

        def errors(series: Series) -> float:
            return sum(value for labels, value in series["fastnats_refresh_errors_total"]
                       if labels == {"endpoint": "connz", "reason": "decode"})

        for at_least in (1, STALE_AFTER):
            series = wait_until(lambda: (s := parse(exporter.scrape())) and
                                errors(s) >= at_least and s)  # noqa: B023 (waited on here)
            assert single(series, "nats_up") == 1
            if errors(series) < STALE_AFTER:
                assert_groups(series, body_sums(good))
            else:
                assert series["nats_client_in_messages_total"] == []
            # Only /connz failed, and only to decode.
            assert [labels for labels, value in series["fastnats_refresh_errors_total"]
                    if value] == [{"endpoint": "connz", "reason": "decode"}]
        # A good body again: the aggregator's state survived the bad ones.
        monitor.open_body = later
        series = eventually(lambda: assert_groups(s := parse(exporter.scrape()),
                                                  body_sums(later)) or s)
        assert single(series, "nats_up") == 1
        assert len([value for _, value in series["fastnats_refresh_errors_total"] if value]) == 1
    finally:
        if exporter is not None:
            exporter.stop()
        monitor.close()
