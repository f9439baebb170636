"""Faults between a real nats-server's monitoring port and the exporter, on every endpoint the
exporter reads.

A fault proxy (``tests.support.faultproxy``) in front of the server breaks the replies of one
endpoint while the others pass. A broken /varz means the server is down: nats_up 0, the reason
counted, one log line when it goes down and one when it comes back. A broken /connz (or any
later endpoint) leaves the server up and counts
``fastnats_refresh_errors_total{endpoint=...,reason=...}``. The exporter's own pieces run in this
process on uvloop; the tests that need a process (its memory, a hung server among good ones)
start one.
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import uvloop

from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import ALL, OPTIONAL
from fastnats.collectors.base import DECODE, FETCH_REASONS
from fastnats.errors import ScrapeError
from fastnats.exposition import render
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.faultproxy import FAULT_REASONS, FaultProxy
from tests.support.process import start_exporter, wait_until

pytestmark = pytest.mark.integration

#: The endpoints read over HTTP: the collectors that can fail as a request fails.
HTTP_ENDPOINTS = [c.endpoint for c in ALL if set(FETCH_REASONS) <= set(c.reasons)]
#: Every collector on, with its default options.
EVERY_COLLECTOR: dict[str, object] = {c.name: None for c in OPTIONAL}
#: Endpoints the shared server does not serve even when all is well: it runs no clustered
#: JetStream, so /raftz answers 404. tests/integration/test_raftz_real.py faults a cluster's.
UNSERVED = ("raftz",)
#: /varz and /connz meet every fault: one marks the server down, the other makes several
#: requests. The source that fails is the same for the rest, so each meets one fault of each
#: kind: what differs is what its collector does with the failure.
FULL_MATRIX = ("varz", "connz")
SOME_FAULTS = ("hang", "reset", "status_500", "status_404", "corrupt", "huge_length")
FAULT_CASES = [(endpoint, fault, reason) for endpoint in HTTP_ENDPOINTS
               for fault, reason in FAULT_REASONS.items()
               if (endpoint in FULL_MATRIX or fault in SOME_FAULTS)
               # /accstatz asks again with a 4x larger limit after a too_large, up to 256 MiB
               # (tests/unit/test_accstatz.py): the proxy's 64 MiB is under that.
               and (endpoint, fault) != ("accstatz", "huge_length")
               and endpoint not in UNSERVED]
TIMEOUT = 0.5
FAULTED_REFRESHES = 3
#: What the message of each fault must say; {proxy} and {upstream} are the two base URLs.
SAYS = {
    "close": "Server disconnected",
    "hang": "no response headers",
    "drip": "bytes of body received",
    "reset": "/{endpoint}",
    "cut": "not completed",
    "bad_chunking": "chunk size",
    "status_500": "HTTP 500 Internal Server Error",
    "status_404": "HTTP 404 Not Found",
    "redirect": "HTTP 302 Found from {proxy}/{endpoint}, redirecting to '{upstream}/{endpoint}",
    "redirect_loop": "redirecting to '{proxy}/{endpoint}",
    "corrupt": "",
    "gzip_bomb": "inflates to more than",
    "huge_chunked": "sent more than",
    "huge_length": "announces 67108864 bytes (Content-Length)",
}


@pytest.fixture(scope="module")
def proxy(shared_nats_server):
    with FaultProxy(shared_nats_server.monitor_url, bomb_size=64 << 20,
                    huge_size=64 << 20) as proxy:
        yield proxy


@dataclass
class Run:
    """One server's refreshes: healthy, then faulted, then healthy again."""

    healthy: Counter[tuple[str, str]] = field(default_factory=Counter)
    faulted: Counter[tuple[str, str]] = field(default_factory=Counter)
    recovered: Counter[tuple[str, str]] = field(default_factory=Counter)
    up_while_faulted: bool = True
    up_after: bool = False
    problems: list[ScrapeError] = field(default_factory=list)
    #: The exposition text while faulted.
    text: str = ""


def run_fault(proxy: FaultProxy, endpoint: str | None, fault: str | None) -> Run:
    async def scenario() -> Run:
        run = Run()
        session = new_session()
        server = ServerCollector(Target("faulty", proxy.url),
                                 MonitorClient(proxy.url, session, TIMEOUT), EVERY_COLLECTOR)
        try:
            await server.refresh()
            assert server.up, server.problems
            run.healthy = Counter(server.errors)
            if fault is not None:
                proxy.fault(endpoint, fault)
            for _ in range(FAULTED_REFRESHES):
                await server.refresh()
                run.problems += server.problems
            run.faulted = Counter(server.errors)
            run.up_while_faulted = server.up
            run.text = render(NatsCollector([server]).families())[0].decode()
            proxy.clear()
            await server.refresh()
            run.recovered = Counter(server.errors)
            run.up_after = server.up
            return run
        finally:
            proxy.clear()
            await server.close()
            await session.close()

    return uvloop.run(scenario())


def test_the_endpoints_under_test_are_the_ones_the_exporter_reads(proxy):
    before = len(proxy.seen())
    run = run_fault(proxy, None, None)
    read = {urlsplit(e.path).path.strip("/") for e in proxy.seen()[before:]}
    assert read == set(HTTP_ENDPOINTS)
    assert not run.problems


def test_a_healthy_server_exports_every_reason_at_zero(proxy):
    run = run_fault(proxy, None, None)
    for endpoint in HTTP_ENDPOINTS:
        for reason in (*FETCH_REASONS, DECODE):
            assert run.healthy[(endpoint, reason)] == 0
            assert (f'fastnats_refresh_errors_total{{endpoint="{endpoint}",reason="{reason}"}} 0'
                    in run.text)
    assert "body" in FETCH_REASONS and "too_large" in FETCH_REASONS


@pytest.mark.parametrize("endpoint, fault, reason", [
    case for case in FAULT_CASES if case[0] == "varz" or case[1] != "status_404"],
    ids=[f"{e}-{f}" for e, f, _ in FAULT_CASES if e == "varz" or f != "status_404"])
def test_a_fault_is_named_counted_and_logged_once_per_change(endpoint, fault, reason, proxy,
                                                               caplog):
    with caplog.at_level(logging.INFO, logger="fastnats.scrape"):
        run = run_fault(proxy, endpoint, fault)

    assert set(run.healthy.values()) == {0}
    assert +(run.faulted - run.healthy) == Counter({(endpoint, reason): FAULTED_REFRESHES})
    assert run.recovered == run.faulted
    says = SAYS[fault].format(proxy=proxy.url, upstream=proxy.upstream_url, endpoint=endpoint)
    assert run.problems and all(
        p.endpoint == endpoint and p.reason == reason and says in p.detail and p.detail.strip()
        for p in run.problems), run.problems
    line = f'fastnats_refresh_errors_total{{endpoint="{endpoint}",reason="{reason}"}} 3\n'
    assert line in run.text
    assert run.up_after
    # One line when it starts failing, one when it reads again; none per failed refresh.
    logged = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith(("server faulty is ", "server faulty: "))]
    if endpoint == "varz":
        assert not run.up_while_faulted
        assert "nats_up 0\n" in run.text
        assert not re.search(r"^nats_server_", run.text, re.M)
        assert [m.split(":")[0] for m in logged] == [
            "server faulty is up", "server faulty is down", "server faulty is up again"]
    else:
        assert run.up_while_faulted
        assert "nats_up 1\n" in run.text
        assert re.search(r"^nats_server_info\{", run.text, re.M)
        assert len(logged) == 3, logged
        assert logged[0] == "server faulty is up"
        assert logged[1].startswith(f"server faulty: {endpoint}: {reason}: ")
        assert logged[2] == f"server faulty: /{endpoint} reads again"


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.M)[1]) * 1024


def test_a_gzip_bomb_and_an_endless_body_leave_the_exporter_small(shared_nats_server):
    """The report's two cases against the exporter process: /varz as a 512 MiB gzip bomb
    (0.5 MB on the wire) and as a 1 GiB chunked body; before the limits they took it to
    1.6 GB and 2.1 GB."""
    with FaultProxy(shared_nats_server.monitor_url, bomb_size=512 << 20) as bomb, \
            FaultProxy(shared_nats_server.monitor_url, huge_size=1 << 30) as flood:
        bomb.fault("varz", "gzip_bomb")
        flood.fault("varz", "huge_chunked")
        exporter = start_exporter(f"bomb={bomb.url}", f"flood={flood.url}",
                                  f"good={shared_nats_server.monitor_url}",
                                  "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", "0.2")
        try:
            def failed(text: str, server: str) -> int:
                match = re.search(rf'^fastnats_refresh_errors_total\{{server="{server}",'
                                  rf'endpoint="varz",reason="too_large"\}} (\d+)', text, re.M)
                return int(match[1]) if match else 0

            text = wait_until(lambda: (t := exporter.scrape()) and failed(t, "bomb") >= 5
                              and failed(t, "flood") >= 5 and t, timeout=60)
            peak = _peak_rss(exporter.process.pid)
            assert 'nats_up{server="bomb"} 0\n' in text
            assert 'nats_up{server="flood"} 0\n' in text
            assert 'nats_up{server="good"} 1\n' in text
            # Each read stopped at the limit: none ran into the read timeout instead.
            for server in ("bomb", "flood"):
                assert f'fastnats_refresh_errors_total{{server="{server}",endpoint="varz",' \
                       f'reason="timeout"}} 0\n' in text, server
        finally:
            exporter.stop()
        log = "".join(exporter.log)
        assert log.count("server bomb is down") == 1, log
        assert log.count("server flood is down") == 1, log
        # Two bodies at the 16 MiB limit over a baseline of about 40 MiB.
        assert peak < 128 << 20, f"peak RSS {peak >> 20} MiB"
        # The exporter stopped reading the flood long before its end.
        assert all(e.abandoned and e.sent < 256 << 20 for e in flood.seen("huge_chunked"))


def health_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def refreshes(text: str, server: str) -> int:
    return int(re.search(rf'^fastnats_refreshes_total{{server="{server}"}} (\d+)$', text, re.M)[1])


def test_a_hung_server_holds_back_only_itself(shared_nats_server):
    with FaultProxy(shared_nats_server.monitor_url) as fault:
        fault.fault("varz", "status_500")
        exporter = start_exporter(f"broken={fault.url}", f"good={shared_nats_server.monitor_url}",
                                  "--web.listen-address", "127.0.0.1:0",
                                  "--refresh-interval", "0.2", "--timeout", "60")
        try:
            wait_until(lambda: 'nats_up{server="broken"} 0' in exporter.scrape())
            health = exporter.url.replace("/metrics", "/healthz")
            assert health_status(health) == 200
            fault.fault("varz", "hang")
            # The broken server's refresh is now stuck for up to a minute.
            wait_until(lambda: fault.seen("hang"))
            stuck = refreshes(exporter.scrape(), "broken")
            good = refreshes(exporter.scrape(), "good")
            # The good server keeps its schedule, and its results are served as they arrive.
            wait_until(lambda: refreshes(exporter.scrape(), "good") >= good + 5)
            assert refreshes(exporter.scrape(), "broken") == stuck
            assert not fault.seen("hang")[0].abandoned
            # One server's refreshes stopped completing: /metrics still answers, /healthz says
            # so.
            wait_until(lambda: health_status(health) == 503)
        finally:
            exporter.stop()


@pytest.mark.parametrize("collector", [c for c in OPTIONAL if c.endpoint in HTTP_ENDPOINTS],
                         ids=lambda c: c.endpoint)
def test_an_endpoint_the_server_does_not_serve_is_no_error(collector, proxy, caplog):
    """A 404 on a collector's endpoint is a server without that endpoint (older, or without
    the feature): its series go, nothing is counted as an error, one line says so."""
    with caplog.at_level(logging.INFO, logger="fastnats.scrape"):
        run = run_fault(proxy, collector.endpoint, "status_404")
    assert run.faulted == run.healthy == run.recovered
    assert run.problems == []
    assert run.up_while_faulted and run.up_after
    exported = {line.split("{")[0].split(" ")[0] for line in run.text.splitlines()
                if line and not line.startswith("#")}
    assert not {metric.name for metric in collector.families} & {
        name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        for name in exported}
    said = [r.getMessage() for r in caplog.records if "does not serve" in r.getMessage()]
    # What the server never serves is said at the first refresh, before the fault.
    endpoints = [*UNSERVED] if collector.endpoint in UNSERVED else [*UNSERVED,
                                                                   collector.endpoint]
    assert said == [f"server faulty does not serve /{endpoint}; its collector exports nothing "
                    f"for it" for endpoint in endpoints]
