"""/connz against a server whose ``total`` lies, without a network: every read is bounded by what
/varz says, a lie is a counted decode error of /connz alone, and a server whose lists honestly
grow while they are read is still read whole (tests.support.connzgen simulates the server).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import orjson

from fastnats import metrics as m
from fastnats.collector import ServerCollector
from fastnats.collectors import ConnzCollector, ConnzOptions, ServerInfo
from fastnats.collectors.base import with_margin
from fastnats.collectors.connz import CLOSED_HELD, closed_most, closed_reads
from fastnats.errors import ScrapeError
from fastnats.metrics import UNKNOWN_GROUP
from fastnats.sources.monitor import BodyLimits
from fastnats.target import Target
from tests.support import connzgen

DATA = Path(__file__).resolve().parents[1] / "data"
VARZ = orjson.loads((DATA / "varz.json").read_bytes())
ROUTEZ = (DATA / "routez_pooled.json").read_bytes()
IN_MSGS = "nats_client_in_messages_total"
LIE = 10**12
#: Requests after which the fake times out, as a server's per-request timeout would end a read
#: that does not stop by itself.
GUARD = 200
_TOTAL = re.compile(rb'"total": \d+')


class Server:
    """/varz, /routez and /connz of a simulated nats-server, as ServerCollector reads them.

    ``lie_open`` makes the open listing say ``total`` = ``lie``; ``lie_closed`` makes the closed
    listing say so and serve full pages at every offset (the most recent closes again).
    ``varz_connections`` is what /varz says is open, when it lags behind; ``before_closed`` runs
    before each closed request. Each /connz request and the bytes of each reply are kept."""

    def __init__(self, sim: connzgen.Server) -> None:
        self.sim = sim
        self.lie_open = self.lie_closed = False
        self.lie = LIE
        self.varz_connections: int | None = None
        self.before_closed = lambda: None
        self.requests: list[dict] = []
        self.sent: list[int] = []

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        sim = self.sim
        if endpoint == "varz":
            connections = len(sim.open) if self.varz_connections is None \
                else self.varz_connections
            return bytearray(orjson.dumps({**VARZ, "connections": connections,
                                           "total_connections": sim.next_cid - 1}))
        if endpoint == "routez":
            return bytearray(ROUTEZ)
        assert endpoint == "connz"
        self.requests.append(dict(params))
        if len(self.requests) > GUARD:
            raise ScrapeError("connz", "timeout", "no reply within the timeout")
        if params["state"] == "open":
            body = sim.open_body()
            if self.lie_open:
                body = _TOTAL.sub(b'"total": %d' % self.lie, body, 1)
        else:
            self.before_closed()
            offset, limit = int(params["offset"]), int(params["limit"])
            if self.lie_closed:
                body = _TOTAL.sub(b'"total": %d' % self.lie, sim.closed_listing(0, limit), 1)
            else:
                body = sim.closed_listing(offset, limit)
        self.sent.append(len(body))
        return bytearray(body)


class Run:
    """A ServerCollector with /connz and /routez over ``Server``, and every connection the
    simulated server ever had."""

    def __init__(self, seed: int, closed_max: int = 10_000) -> None:
        print(f"connzgen seed {seed}")
        self.sim = connzgen.Server(seed, names=20, closed_max=closed_max)
        self.source = Server(self.sim)
        self.server = ServerCollector(Target("sim", "http://127.0.0.1:1"), self.source,
                                      {"connz": ConnzOptions(group_by=("name",)), "routez": None})
        self.connz = self.server.collector("connz")
        assert isinstance(self.connz, ConnzCollector)
        self.connz.clock = lambda: self.sim.now
        self.every: dict[int, dict] = {}

    def refresh(self) -> list[dict]:
        """A refresh; its /connz requests."""
        before = len(self.source.requests)
        asyncio.run(self.server.refresh())
        self.every.update(self.sim.open)
        self.every.update({c["cid"]: c for c in self.sim.closed})
        return self.source.requests[before:]

    def errors(self) -> dict[tuple[str, ...], float]:
        return dict(self.server.self_samples()[m.FASTNATS_REFRESH_ERRORS_TOTAL.name])

    def succeeded(self) -> dict[tuple[str, ...], float]:
        return dict(self.server.self_samples()[m.FASTNATS_COLLECTOR_SUCCESS.name])

    def exported(self) -> dict[str, int]:
        return {labels[0]: value for labels, value in self.connz.samples()[IN_MSGS]
                if labels[0] != UNKNOWN_GROUP}

    def expected(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for c in self.every.values():
            out[c.get("name", "")] += c["in_msgs"]
        return dict(out)


def test_an_open_total_over_what_varz_allows_is_a_decode_error_and_never_asked_for():
    run = Run(3)
    run.sim.step(opens=300)
    run.refresh()
    run.source.lie_open = True
    run.sim.step()
    requests = run.refresh()
    # One request, at the limit /varz sets: the lie is never asked for, so no reply can be as
    # large as it says.
    assert [r["limit"] for r in requests] == [with_margin(300)]
    assert BodyLimits().for_request("connz", requests[0]) < 32 << 20
    (error,) = run.server.problems
    assert (error.endpoint, error.reason) == ("connz", "decode")
    assert f"total={LIE} but /varz counts 300 connections and 0 leafnodes" in error.detail
    assert run.errors()[("connz", "decode")] == 1
    assert run.succeeded() == {("varz",): 1, ("connz",): 0, ("routez",): 1}
    # Nothing was committed: the next true read carries on where the last one stopped.
    run.source.lie_open = False
    run.sim.step(closes=40, flashes=30)
    run.refresh()
    run.sim.step()
    run.refresh()
    assert run.server.problems == [] and run.exported() == run.expected()


def test_a_closed_total_over_what_the_server_can_hold_is_a_decode_error_after_one_page():
    run = Run(5)
    run.sim.step(opens=100)
    run.refresh()
    run.refresh()
    # 2,500 closes since: full pages of closes newer than the watermark, at every offset.
    run.sim.step(flashes=2500)
    run.source.lie_closed = True
    sent = len(run.source.sent)
    requests = run.refresh()
    closed = [r for r in requests if r["state"] == "closed"]
    assert len(closed) == 1, f"{len(closed)} closed pages read"
    assert sum(run.source.sent[sent:]) < 4 << 20
    (error,) = run.server.problems
    assert (error.endpoint, error.reason) == ("connz", "decode")
    assert f"state=closed says total={LIE}" in error.detail
    assert run.errors()[("connz", "decode")] == 1
    assert run.succeeded()[("routez",)] == 1
    # Then a true read takes every close since the last good read.
    run.source.lie_closed = False
    run.refresh()
    run.sim.step()
    run.refresh()
    assert run.server.problems == [] and run.exported() == run.expected()


def test_a_closed_total_the_server_can_hold_bounds_the_pages_it_sends_past_its_end():
    # A total the server could hold, and full pages past it: the read stops at the pages that
    # total takes, whatever the pages say.
    run = Run(7)
    run.sim.step(opens=100)
    run.refresh()
    run.refresh()
    run.sim.step(flashes=3000)
    run.source.lie_closed, run.source.lie = True, CLOSED_HELD
    closed = [r for r in run.refresh() if r["state"] == "closed"]
    assert 1 < len(closed) <= closed_reads(CLOSED_HELD)
    assert CLOSED_HELD <= closed_most(info_of(run.sim))


def info_of(sim: connzgen.Server) -> ServerInfo:
    return ServerInfo("SIM", "start", connections=len(sim.open),
                      total_connections=sim.next_cid - 1, listeners={})


def test_a_server_that_opens_connections_while_it_is_read_is_read_whole():
    # /varz says 100 open; 300 are by the time /connz lists them.
    run = Run(9)
    run.sim.step(opens=300)
    run.source.varz_connections = 100
    requests = run.refresh()
    assert [r["limit"] for r in requests] == [with_margin(100), with_margin(300)]
    assert run.server.problems == []
    assert run.connz.aggregator.count == 300


def test_a_closed_list_that_grows_while_it_is_paged_is_read_whole():
    # max_closed_clients raised to 15,000, and 12,000 closes since the last refresh: more than
    # nats-server keeps by default, as /varz vouches.
    run = Run(11, closed_max=15_000)
    run.sim.step(opens=200)
    run.refresh()
    run.refresh()
    # Closes keep coming while the pages are read, after /varz counted the others.
    run.source.before_closed = lambda: run.sim.step(flashes=7, seconds=0.001)
    run.sim.step(closes=50, flashes=12_000)
    requests = [r for r in run.refresh() if r["state"] == "closed"]
    assert len(requests) >= 12 and run.server.problems == []
    run.source.before_closed = lambda: None
    run.sim.step()
    run.refresh()
    assert run.server.problems == [] and run.exported() == run.expected()
