"""The /accstatz collector without a network: the account cap and ``_other``, a table that keeps
its places, ``_other`` counters that never fall as accounts move in and out, the TTL on a
simulated clock, a server restart, a counter that falls without one, hostile account names,
top-K rates, the body size bound and decode errors that keep the last good samples. The recorded
body is /accstatz?unused=true of nats-server 2.15.1 with accounts T1, T2 and one named _other."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from fastnats import _core, _reference
from fastnats import metrics as m
from fastnats._reference.accstatz import IDLE_REFRESHES
from fastnats.cli import build_parser
from fastnats.collector import ServerCollector
from fastnats.collectors import ALL, AccstatzCollector, ServerContext, ServerInfo
from fastnats.collectors import accstatz as collector_module
from fastnats.collectors.accstatz import AccstatzOptions
from fastnats.collectors.base import DECODE, with_margin
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits, read_within
from fastnats.target import Target

DATA = Path(__file__).resolve().parents[1] / "data"
SENT = m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name
COUNTERS = [metric.name for metric in m.ACCSTATZ if metric.type == m.COUNTER]
OTHER = m.OTHER_GROUP


@pytest.fixture(autouse=True, params=["core", "reference"])
def implementation(request, monkeypatch):
    """Every test runs the collector over the compiled table and over the reference's."""
    impl = _core if request.param == "core" else _reference
    monkeypatch.setattr(collector_module, "impl", impl)
    return impl


def entry(acc: str, *, conns: int = 0, leafnodes: int = 0, subs: int = 0, sent: int = 0,
          received: int = 0, slow: int = 0) -> dict:
    """One account as nats-server lists it; bytes are 10 per message."""
    def stats(msgs: int) -> dict:
        part = {"msgs": 0, "bytes": 0}
        return {"msgs": msgs, "bytes": 10 * msgs, "gateways": part, "routes": part,
                "leafs": part}
    return {"acc": acc, "name": acc, "conns": conns, "leafnodes": leafnodes,
            "total_conns": conns + leafnodes, "num_subscriptions": subs, "sent": stats(sent),
            "received": stats(received), "slow_consumers": slow}


def body(entries: list[dict], now: float = 1_800_000_000.0, *, indent: bool = False) -> bytes:
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"server_id": "NSIM", "now": stamp, "account_statz": entries},
                        option=orjson.OPT_INDENT_2 if indent else None)


DOCUMENT_BYTES = BodyLimits().document


class Source:
    """Serves the body it holds, bounded as a real source bounds it under ``limits`` (the
    flags'): each request and its limit, and the accounts each read expected."""

    def __init__(self, limits: BodyLimits | None = None) -> None:
        self.body = b""
        self.limits = limits or BodyLimits()
        self.requests: list[tuple[dict, int]] = []
        self.expected: list[int] = []

    async def get(self, endpoint: str, params=None, *, expect=None, statuses=(200,)):
        assert endpoint == "accstatz" and set(expect) == {"accounts"}
        self.expected.append(expect["accounts"])

        async def read(limit: int) -> bytearray:
            self.requests.append((dict(params), limit))
            if len(self.body) > limit:
                raise ScrapeError(endpoint, "too_large", f"over {limit}")
            return bytearray(self.body)

        return await read_within(self.limits.bounds(endpoint, params, expect), read)


class Run:
    """A collector on a simulated clock; ``step`` serves one listing and refreshes."""

    def __init__(self, **options) -> None:
        self.collector = AccstatzCollector(ServerContext("sim", "127.0.0.1"),
                                           AccstatzOptions(**options))
        self.now = 1_800_000_000.0
        self.collector.clock = lambda: self.now
        self.source = Source()
        self.info = ServerInfo("NSIM", "start-1", 0, 0, {})

    def step(self, entries: list[dict], seconds: float = 10.0) -> dict[str, dict[str, float]]:
        self.now += seconds
        self.source.body = body(entries, self.now)
        asyncio.run(self.collector.refresh(self.source, self.info))
        return self.exported()

    def exported(self) -> dict[str, dict[str, float]]:
        return {name: {labels[0] if labels else "": value for labels, value in samples}
                for name, samples in self.collector.samples().items()}


def test_recorded_body_is_read_with_unused_accounts():
    run = Run()
    run.source.body = (DATA / "accstatz.json").read_bytes()
    asyncio.run(run.collector.refresh(run.source, run.info))
    params, max_bytes = run.source.requests[0]
    assert params == {"unused": "true"}
    assert max_bytes is not None and max_bytes >= DOCUMENT_BYTES
    out = run.exported()
    assert out[m.NATS_ACCOUNTS.name] == {"": 5}
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 0}
    # The conf's account "_other" is no marker: it is exported escaped, and no _other exists.
    assert set(out[SENT]) == {"T1", "T2", "$SYS", "$G", "__other"}
    assert out[SENT]["T1"] == 5 and out[m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name]["T1"] == 5
    assert out[m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name]["__other"] == 3
    assert out[m.NATS_ACCOUNT_SUBSCRIPTIONS.name]["$SYS"] == 56
    assert set(out) == {metric.name for metric in m.ACCSTATZ}


def test_every_family_is_owned_and_the_collector_is_off_by_default():
    assert AccstatzCollector in ALL
    assert AccstatzCollector.families == m.ACCSTATZ
    assert AccstatzCollector.default is False


def test_flags():
    args = build_parser().parse_args([
        "--collector.accstatz", "--accstatz.max-accounts", "50", "--accstatz.account-ttl",
        "10m", "--accstatz.top-k", "3"])
    assert AccstatzCollector.configure(args, 15.0) == AccstatzOptions(50, 600.0, 3)
    defaults = build_parser().parse_args([])
    assert AccstatzCollector.configure(defaults, 15.0) == AccstatzOptions()


def test_the_cap_sums_the_rest_into_other():
    run = Run(max_accounts=2)
    out = run.step([entry("A", conns=1, sent=5), entry("B", conns=2, sent=7),
                    entry("C", conns=3, subs=4, sent=11, received=2)])
    assert out[m.NATS_ACCOUNTS.name] == {"": 3}
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 1}
    # Three active newcomers for two places: the first two by name.
    assert out[SENT] == {"A": 5, "B": 7, OTHER: 11}
    assert out[m.NATS_ACCOUNT_CONNECTIONS.name][OTHER] == 3
    assert out[m.NATS_ACCOUNT_SUBSCRIPTIONS.name][OTHER] == 4
    assert out[m.NATS_ACCOUNT_SENT_BYTES_TOTAL.name][OTHER] == 110
    out = run.step([entry("A", conns=1, sent=6), entry("B", conns=2, sent=7),
                    entry("C", conns=0, sent=20)])
    assert out[SENT] == {"A": 6, "B": 7, OTHER: 20}
    assert out[m.NATS_ACCOUNT_CONNECTIONS.name][OTHER] == 0


def test_no_other_series_until_an_account_overflows():
    run = Run(max_accounts=2)
    out = run.step([entry("A", sent=1), entry("B")])
    assert set(out[SENT]) == {"A", "B"}
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 0}


def test_an_active_newcomer_takes_the_place_of_one_never_active_not_of_a_connected_one():
    run = Run(max_accounts=2)
    run.step([entry("IDLE"), entry("BUSY", conns=1)])
    out = run.step([entry("IDLE"), entry("BUSY", conns=1), entry("NEW", conns=1, sent=3)])
    assert set(out[SENT]) == {"BUSY", "NEW", OTHER}
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 1}
    # An idle newcomer takes no place.
    out = run.step([entry("IDLE"), entry("BUSY", conns=1), entry("NEW", conns=1, sent=3),
                    entry("LATE")])
    assert set(out[SENT]) == {"BUSY", "NEW", OTHER}
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 2}


def test_places_are_kept_until_an_account_has_been_idle_long_enough():
    run = Run(max_accounts=2)
    run.step([entry("A", conns=1, sent=1), entry("B", conns=1, sent=1),
              entry("C", conns=1, sent=1)])
    # A is idle now, and C busy in _other: A keeps its place for IDLE_REFRESHES refreshes.
    for i in range(IDLE_REFRESHES - 1):
        out = run.step([entry("A", sent=1), entry("B", conns=1, sent=1),
                        entry("C", conns=1, sent=2 + i)])
        assert set(out[SENT]) == {"A", "B", OTHER}
    out = run.step([entry("A", sent=1), entry("B", conns=1, sent=1),
                    entry("C", conns=1, sent=100)])
    assert set(out[SENT]) == {"B", "C", OTHER}
    assert out[SENT]["C"] == 100
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 1}


def test_other_never_falls_as_accounts_move_in_and_out():
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    run = Run(max_accounts=4, account_ttl=60.0)
    counts = {f"acc{i}": [0, 0, 0] for i in range(12)}
    present = set(counts)
    last: dict[str, dict[str, float]] = {}
    joined = left = 0
    for _ in range(300):
        for name in list(counts):
            roll = rng.random()
            if name in present and roll < 0.05:
                present.discard(name)
            elif name not in present and roll < 0.3:
                present.add(name)
                if rng.random() < 0.3:
                    counts[name] = [0, 0, 0]  # removed and made again by a reload
        entries = []
        for name in sorted(present):
            c = counts[name]
            if rng.random() < 0.3:
                c[0] += rng.randrange(1, 50)
                c[1] += rng.randrange(0, 50)
            c[2] = rng.randrange(0, 3) if rng.random() < 0.5 else 0
            entries.append(entry(name, conns=c[2], sent=c[0], received=c[1]))
        rng.shuffle(entries)
        out = run.step(entries, seconds=rng.choice((5.0, 15.0, 40.0)))
        assert len(set(out[SENT]) - {OTHER}) <= 4
        for family in COUNTERS:
            for label, value in out[family].items():
                before = last.get(family, {}).get(label)
                assert before is None or value >= before, (seed, family, label, before, value)
        if last:
            joined += len(set(out[SENT]) - set(last[SENT]))
            left += len((set(last[SENT]) - set(out[SENT])) & present)
        last = out
    # Accounts did move: into the table, and out of it into _other while still listed.
    assert joined > 10 and left > 2, (seed, joined, left)


def test_gone_accounts_keep_their_counters_for_the_ttl_and_free_their_place():
    run = Run(max_accounts=2, account_ttl=60.0)
    run.step([entry("A", conns=1, sent=5), entry("B", conns=1, sent=6)])
    out = run.step([entry("B", conns=1, sent=6)], seconds=30)
    assert out[SENT] == {"A": 5, "B": 6}
    assert out[m.NATS_ACCOUNT_CONNECTIONS.name]["A"] == 0
    assert out[m.NATS_ACCOUNTS.name] == {"": 1}
    out = run.step([entry("B", conns=1, sent=6)], seconds=29)
    assert "A" in out[SENT]
    out = run.step([entry("B", conns=1, sent=6), entry("C", sent=2)], seconds=1)
    assert out[SENT] == {"B": 6, "C": 2}
    assert OTHER not in out[SENT]


def test_a_gone_account_is_the_first_to_lose_its_place():
    run = Run(max_accounts=2, account_ttl=3600.0)
    run.step([entry("A", conns=1, sent=5), entry("B", conns=1, sent=6)])
    out = run.step([entry("B", conns=1, sent=6), entry("C", conns=1, sent=1)])
    assert set(out[SENT]) == {"B", "C", OTHER}
    assert out[SENT][OTHER] == 0
    # A comes back within the TTL: it is in _other, and only what it adds from now counts there.
    out = run.step([entry("A", conns=1, sent=9), entry("B", conns=1, sent=6),
                    entry("C", conns=1, sent=1)])
    assert out[SENT][OTHER] == 4
    assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 1}


def test_a_server_restart_starts_afresh(caplog):
    run = Run(max_accounts=1)
    run.step([entry("A", conns=1, sent=50), entry("B", conns=1, sent=40)])
    run.info = ServerInfo("NSIM", "start-2", 0, 0, {})
    with caplog.at_level(logging.WARNING, "fastnats.scrape"):
        out = run.step([entry("B", conns=1, sent=3), entry("A", conns=1, sent=2)])
    assert out[SENT] == {"A": 2, OTHER: 3}
    assert out[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name] == {}
    assert not caplog.records


def test_a_counter_that_falls_without_a_restart_is_folded_and_logged_once(caplog):
    run = Run(max_accounts=1)
    run.step([entry("A", conns=1, sent=50, received=7), entry("B", conns=1, sent=40)])
    with caplog.at_level(logging.WARNING, "fastnats.scrape"):
        out = run.step([entry("A", conns=1, sent=3, received=7), entry("B", conns=1, sent=1)])
        assert out[SENT] == {"A": 53, OTHER: 41}
        assert out[m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name]["A"] == 7
        out = run.step([entry("A", conns=1, sent=1), entry("B", conns=1, sent=2)])
    assert out[SENT] == {"A": 54, OTHER: 42}
    assert out[m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name]["A"] == 7
    assert len(caplog.records) == 1
    assert "'A'" in caplog.text and "sim" in caplog.text


@pytest.mark.parametrize("hostile", ["_other", "__other", "_unknown", "___unknown"])
def test_hostile_account_names_never_become_a_marker(hostile):
    run = Run(max_accounts=1)
    # Placed by name: the hostile one first, "z" summed into the real _other.
    out = run.step([entry("z", conns=1, sent=4), entry(hostile, conns=1, sent=3)])
    assert m.client_value(hostile) != hostile
    assert out[SENT] == {m.client_value(hostile): 3, OTHER: 4}
    out = run.step([entry("z", conns=1, sent=5), entry(hostile, conns=1, sent=3)])
    assert out[SENT] == {m.client_value(hostile): 3, OTHER: 5}


def test_top_k_rates_cover_accounts_in_other_too():
    run = Run(max_accounts=1, top_k=2)
    first = [entry("A", conns=1, sent=0), entry("B", conns=1), entry("C", conns=1),
             entry("D", conns=1)]
    out = run.step(first)
    assert out[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name] == {}
    out = run.step([entry("A", conns=1, sent=10), entry("B", conns=1, sent=300, received=5),
                    entry("C", conns=1, sent=200), entry("D", conns=1)], seconds=10)
    assert set(out[SENT]) == {"A", OTHER}
    assert out[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name] == {"B": 30.0, "C": 20.0}
    assert out[m.NATS_ACCOUNT_TOP_RECEIVED_MESSAGES_PER_SECOND.name] == {"B": 0.5}


def test_the_size_bound_follows_the_accounts_and_grows_when_passed():
    run = Run()
    # 25,000 accounts named by 56-character public keys, pretty-printed as nats-server does.
    run.source.body = body([entry(f"A{i:055d}", sent=i) for i in range(25_000)], indent=True)
    assert len(run.source.body) > DOCUMENT_BYTES
    asyncio.run(run.collector.refresh(run.source, run.info))
    limits = [limit for _, limit in run.source.requests]
    assert len(limits) == 2 and limits[1] > limits[0] >= DOCUMENT_BYTES
    assert run.exported()[m.NATS_ACCOUNTS.name] == {"": 25_000}
    asyncio.run(run.collector.refresh(run.source, run.info))
    assert run.source.requests[-1][1] > len(run.source.body)
    assert len(run.source.requests) == 3
    assert run.source.expected == [with_margin(0), with_margin(25_000)]


def test_the_operators_flags_bound_the_accounts_read():
    run = Run()
    run.source = Source(BodyLimits(document=1 << 20, per_connection=0))
    run.source.body = body([entry(f"A{i:055d}", sent=i) for i in range(25_000)], indent=True)
    assert len(run.source.body) > 16 << 20
    with pytest.raises(ScrapeError) as info:
        asyncio.run(run.collector.refresh(run.source, run.info))
    assert info.value.reason == "too_large"
    # Asked under the document's limit and twice grown from it, never with an account's room.
    assert [limit for _, limit in run.source.requests] == [1 << 20, 4 << 20, 16 << 20]


BAD = [
    (b"{", "malformed JSON"),
    (b"[]", "expected a JSON object"),
    (orjson.dumps({"now": "2026-11-29T19:05:42Z", "account_statz": None}), "not a list"),
    (orjson.dumps({"account_statz": []}), "no now"),
    (orjson.dumps({"now": "yesterday", "account_statz": []}), "RFC 3339"),
    (body([5]), "account_statz[0]"),
    (body([{**entry("A"), "conns": -1}]), "account_statz[0].conns"),
    (body([{**entry("A"), "conns": True}]), "account_statz[0].conns"),
    (body([{**entry("A"), "num_subscriptions": 1.5}]), "num_subscriptions"),
    (body([{**entry("A"), "sent": None}]), "account_statz[0].sent"),
    (body([{**entry("A"), "received": {"msgs": 1}}]), "account_statz[0].received.bytes"),
    (body([{**entry("A"), "slow_consumers": -3}]), "slow_consumers"),
    (body([{**entry("A"), "acc": 7}]), "account_statz[0].acc"),
    (body([entry("A"), entry("B"), entry("A")]), "twice"),
]


@pytest.mark.parametrize(("raw", "says"), BAD)
def test_decode_errors_name_the_field(implementation, raw, says):
    with pytest.raises(ScrapeError) as caught:
        implementation.AccstatzTable(10, 60.0, 3).update(raw, 0.0)
    assert caught.value.reason == DECODE and caught.value.endpoint == "accstatz"
    assert says in str(caught.value)


def test_a_bad_body_keeps_the_last_samples_and_state():
    server = ServerCollector(Target("sim", "http://127.0.0.1:1"), Source(),
                             {"accstatz": AccstatzOptions(max_accounts=1)})
    collector = server.collector("accstatz")
    assert isinstance(collector, AccstatzCollector)
    info = ServerInfo("NSIM", "start-1", 0, 0, {})
    source = server.source
    assert isinstance(source, Source)
    source.body = body([entry("A", conns=1, sent=5), entry("B", conns=1, sent=5)], 100.0)
    asyncio.run(server._run(collector, collector.refresh(source, info)))
    good = collector.samples()
    source.body = body([entry("A", conns=1, sent=5), {**entry("B"), "sent": {}}], 110.0)
    asyncio.run(server._run(collector, collector.refresh(source, info)))
    assert server.errors[("accstatz", DECODE)] == 1
    assert collector.samples() == good
    source.body = body([entry("A", conns=1, sent=6), entry("B", conns=1, sent=8)], 120.0)
    asyncio.run(server._run(collector, collector.refresh(source, info)))
    out = {labels[0]: value for labels, value in collector.samples()[SENT]}
    assert out == {"A": 6, OTHER: 8}
    rates = collector.samples()[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name]
    assert rates == [(("B",), 0.15), (("A",), 0.05)]
