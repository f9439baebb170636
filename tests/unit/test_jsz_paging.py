"""/jsz pages sized to fit a bounded source (the system account's replies under max_payload),
without a network: synthetic documents (tests.support.jszgen) served page by page as nats-server
2.15 cuts them, each reply measured on the wire as the system source measures it (snappy, in
its envelope)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from pathlib import Path

import cramjam
import orjson
import pytest

from fastnats import metrics as m
from fastnats.collector import ServerCollector
from fastnats.collectors import JszCollector, ServerContext, ServerInfo
from fastnats.collectors.base import with_margin
from fastnats.collectors.jsz import (
    ACCOUNTS_PER_PAGE,
    CONSUMERS,
    PAGE_FILL,
    AccountPages,
    JszOptions,
)
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits, KiB, MiB
from fastnats.sources.system import SystemSource
from fastnats.target import Target
from tests.support import jszgen

VARZ = (Path(__file__).resolve().parents[1] / "data" / "varz.json").read_bytes()
INFO = ServerInfo("NSIM", "start-1", 0, 0, {}, server_name="A1")
SEED = 3


def synthetic(**plan) -> dict:
    print(f"jszgen seed {SEED}")
    return jszgen.document(jszgen.Plan(**plan), seed=SEED)


class Pages:
    """Serves /jsz of ``doc`` as nats-server 2.15 does (the plain /jsz without accounts, a
    page for ``offset`` and ``limit``), and /varz; lists each /jsz request and the accounts
    each reply listed."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.requests: list[dict] = []
        self.listed: list[list[str]] = []

    def body(self, params) -> bytes:
        params = dict(params or {})
        self.requests.append(params)
        if "offset" in params:
            doc = jszgen.page(self.doc, params["offset"], params["limit"])
        else:
            doc = {key: value for key, value in self.doc.items() if key != "account_details"}
        self.listed.append([account["id"] for account in doc.get("account_details", ())])
        return orjson.dumps(doc)

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        if endpoint == "varz":
            return bytearray(VARZ)
        assert endpoint == "jsz"
        return bytearray(self.body(params))


class BoundedPages(Pages):
    """``Pages`` as a bounded source: each reply's size on the wire is its snappy size in the
    system envelope; a reply over ``budget`` is listed in ``over`` (a leafnode hop that small
    would close its link), or with ``hop`` not delivered at all (a timeout, as the hop drops
    it)."""

    def __init__(self, doc: dict, budget: int | None, hop: bool = False) -> None:
        super().__init__(doc)
        self.reply_budget = budget
        self.hop = hop
        self.wire: list[int] = []
        self.over: list[dict] = []

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        assert endpoint == "varz", "a bounded source's /jsz is read with get_sized"
        return await super().get(endpoint, params)

    async def get_sized(self, endpoint, params=None, *, expect=None):
        assert endpoint == "jsz"
        body = self.body(params)
        wire = len(cramjam.snappy.compress(b'{"server":{"name":"A1","id":"NSIM"},"data":'
                                           + body + b"}"))
        self.wire.append(wire)
        if self.reply_budget is not None and wire > self.reply_budget:
            self.over.append(dict(params or {}))
            if self.hop:
                raise ScrapeError("jsz", "timeout", "no reply within 3s")
        return bytearray(body), wire


def refresh(collector: JszCollector, source: Pages) -> dict:
    asyncio.run(collector.refresh(source, INFO))
    return collector.samples()


def new(level: str = "consumers") -> JszCollector:
    return JszCollector(ServerContext("A1", "h"), JszOptions(level))


def pages_of(source: Pages, since: int = 0) -> list[tuple[int, int]]:
    return [(r["offset"], r["limit"]) for r in source.requests[since:] if "offset" in r]


def comparable(samples: dict) -> dict:
    return {name: sorted(rows) for name, rows in samples.items()}


@pytest.mark.parametrize("budget", [16 * 1024, 48 * 1024, 256 * 1024])
def test_pages_fit_the_budget_and_read_every_account_once(budget):
    doc = synthetic(streams=150, consumers=900, accounts=40)
    accounts = sorted(a["id"] for a in doc["account_details"])
    whole = comparable(refresh(new(), Pages(doc)))
    collector, source = new(), BoundedPages(doc, budget)
    limits = []
    for _ in range(4):
        since = len(source.requests)
        assert comparable(refresh(collector, source)) == whole
        read = [ids for r, ids in zip(source.requests[since:], source.listed[since:])
                if "offset" in r]
        assert sorted(id_ for ids in read for id_ in ids) == accounts
        limits.append(pages_of(source, since)[0][1])
    # Every reply fit, the first read's estimate included; the reads after it are sized from
    # what the last one measured, a few times larger.
    assert source.over == [] and max(source.wire) <= budget
    assert limits[1] > limits[0] and limits[2] == limits[3]
    steady = source.wire[-len(pages_of(source, since)):]
    assert min(steady[:-1], default=budget) > budget * PAGE_FILL / 3, steady
    print(f"budget {budget}: accounts per page {limits}, last read's replies {steady}")


def test_pages_grow_with_the_budget_and_never_pass_the_default_page():
    doc = synthetic(streams=150, consumers=900, accounts=40)
    counts = []
    for budget in (16 * 1024, 48 * 1024, 256 * 1024):
        collector, source = new(), BoundedPages(doc, budget)
        refresh(collector, source)
        since = len(source.requests)
        refresh(collector, source)
        counts.append(len(pages_of(source, since)))
    assert counts[0] > counts[1] > counts[2] == 1
    # Thousands of small accounts under a large budget: at most nats-server's own page.
    many = synthetic(streams=10, consumers=10, accounts=3000)
    collector, source = new("accounts"), BoundedPages(many, 64 << 20)
    refresh(collector, source)
    refresh(collector, source)
    assert {limit for _, limit in pages_of(source)} == {ACCOUNTS_PER_PAGE}
    assert AccountPages(CONSUMERS).size(1 << 40, (1, 0, 0)) == ACCOUNTS_PER_PAGE


def test_an_unbounded_source_asks_as_before():
    doc = synthetic(streams=60, consumers=60, accounts=2500)
    for source in (Pages(doc), BoundedPages(doc, None)):
        refresh(new("streams"), source)
        assert source.requests[0] == {}
        assert pages_of(source) == [(0, 1024), (1024, 1024), (2048, 1024)]


def concentrated(doc: dict, accounts: int) -> dict:
    """``doc`` with every stream moved into its first ``accounts`` accounts, in turn."""
    doc = copy.deepcopy(doc)
    streams = [s for account in doc["account_details"] for s in account.pop("stream_detail", [])]
    for i, stream in enumerate(streams):
        doc["account_details"][i % accounts].setdefault("stream_detail", []).append(stream)
    return doc


def errors(server: ServerCollector) -> dict:
    return dict(server.self_samples()[m.FASTNATS_REFRESH_ERRORS_TOTAL.name])


def test_an_account_over_the_budget_is_read_alone_in_its_page():
    # The budget is the smallest max_payload known, not always one on the reply's way: a reply
    # over it that comes proves its way carries it, so an account /jsz cannot split is still
    # asked for, alone, at every read; the others fill pages of their own.
    doc = concentrated(synthetic(streams=80, consumers=400, accounts=6, me="srv-a"), 1)
    budget = 24 * 1024
    plain = ServerCollector(Target("A1", "http://127.0.0.1:1"), Pages(doc),
                            {"jsz": JszOptions("consumers")})
    asyncio.run(plain.refresh())
    unbounded = plain.collectors[0].samples()
    assert unbounded[m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name]
    source = BoundedPages(doc, budget)
    server = ServerCollector(Target("A1", "http://127.0.0.1:1"), source,
                             {"jsz": JszOptions("consumers")})
    collector = server.collectors[0]
    for read in range(3):
        since = len(source.requests)
        asyncio.run(server.refresh())
        assert server.problems == []
        assert comparable(collector.samples()) == comparable(unbounded)
        assert errors(server)[("jsz", "too_large")] == 0
        # Every later read measured the large account: one account per page.
        if read:
            assert {limit for _, limit in pages_of(source, since)} == {1}
    assert len(source.over) == 3 and max(source.wire) > budget
    # With a hop that small on the way the large account's page never comes: a timeout, as
    # any reply the hop drops, and the read fails as a whole.
    lost = BoundedPages(doc, budget, hop=True)
    server = ServerCollector(Target("A1", "http://127.0.0.1:1"), lost,
                             {"jsz": JszOptions("consumers")})
    asyncio.run(server.refresh())
    (error,) = server.problems
    assert error.endpoint == "jsz" and error.reason == "timeout"
    assert server.collectors[0].samples() == {}


def test_a_page_lost_on_the_way_halves_the_pages_until_a_read_completes():
    # An even spread is the first read's guess: large accounts side by side among small ones
    # break it, and a hop drops their page (a timeout). Each timeout halves the next read's
    # pages.
    doc = concentrated(synthetic(streams=16, consumers=32, accounts=40), 4)
    budget = 8 * 1024
    source = BoundedPages(doc, budget, hop=True)
    collector = new()
    lost = []
    for _ in range(8):
        since = len(source.requests)
        try:
            refresh(collector, source)
        except ScrapeError as exc:
            assert exc.reason == "timeout"
            lost.append(pages_of(source, since)[-1][1])
        else:
            break
    else:
        pytest.fail(f"no read completed; pages lost at {lost}")
    assert lost and all(b <= a // 2 for a, b in zip(lost, lost[1:]))
    completed = max(limit for _, limit in pages_of(source, since))
    assert completed <= max(1, lost[-1] // 2)
    # Measured now: the next pages are sized from it, and none is lost.
    over, since = len(source.over), len(source.requests)
    refresh(collector, source)
    assert len(source.over) == over and max(source.wire[since:]) <= budget
    print(f"pages lost at {lost}, completed with {completed}, then "
          f"{max(limit for _, limit in pages_of(source, since))}")


def test_a_restarted_server_is_estimated_again():
    doc = synthetic(streams=150, consumers=900, accounts=40)
    collector, source = new(), BoundedPages(doc, 16 * 1024)
    refresh(collector, source)
    first = pages_of(source)[0][1]
    refresh(collector, source)
    assert pages_of(source)[-1][1] != first
    since = len(source.requests)
    asyncio.run(collector.refresh(source, replace(INFO, start="start-2")))
    assert source.requests[since] == {}
    assert pages_of(source, since)[0][1] == first


def test_accounts_made_while_paging_are_read_once_in_a_bounded_number_of_pages():
    doc = synthetic(streams=150, consumers=900, accounts=40)
    accounts = {a["id"] for a in doc["account_details"]}

    class Growing(BoundedPages):
        """Makes an account that sorts first before every third page: the page after it
        starts with the last account of the page before."""

        def body(self, params) -> bytes:
            if params and params.get("offset") and len(self.requests) % 3 == 0:
                name = f"AAA{len(self.requests):04d}"
                made = {"name": name, "id": name, "memory": 0, "storage": 0,
                        "reserved_memory": 0, "reserved_storage": 0, "accounts": 0,
                        "ha_assets": 0, "api": {"level": 0, "total": 0, "errors": 0}}
                self.doc["account_details"].append(made)
                self.doc["total"] += 1
                self.doc["accounts"] += 1
            return super().body(params)

    collector, source = new(), Growing(copy.deepcopy(doc), 16 * 1024)
    for _ in range(2):
        since, total = len(source.requests), source.doc["total"]
        samples = refresh(collector, source)
        pages = pages_of(source, since)
        limit = pages[0][1]
        listed = [id_ for r, ids in zip(source.requests[since:], source.listed[since:])
                  if "offset" in r for id_ in ids]
        assert len(listed) > len(set(listed))
        rows = [labels[0] for labels, _ in samples[m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name]]
        assert len(rows) == len(set(rows)) and accounts <= set(rows)
        assert len(pages) <= 2 * (total // limit + 2) + 1


def test_accounts_removed_while_paging_move_none_past_a_page():
    # Removing accounts that sort before the next page's offset moves every later one down:
    # the next page would start past the account now at its boundary.
    doc = synthetic(streams=150, consumers=900, accounts=40)

    class Shrinking(BoundedPages):
        """Removes the two accounts that sort first before the second page."""

        def body(self, params) -> bytes:
            if params and params.get("offset") and not getattr(self, "removed", None):
                self.removed = sorted(a["id"] for a in self.doc["account_details"])[:2]
                self.doc["account_details"] = [a for a in self.doc["account_details"]
                                               if a["id"] not in self.removed]
                self.doc["total"] -= 2
                self.doc["accounts"] -= 2
            return super().body(params)

    collector, source = new(), Shrinking(copy.deepcopy(doc), 16 * 1024)
    samples = refresh(collector, source)
    pages = pages_of(source)
    assert len(pages) > 2
    rows = {labels[0] for labels, _ in samples[m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name]}
    remaining = {a["id"] for a in source.doc["account_details"]}
    # Every account still there is read, and the removed ones only if the first page had.
    assert remaining <= rows <= remaining | set(source.removed)
    assert samples[m.NATS_JETSTREAM_ACCOUNTS_UNREAD.name] == [((), 0)]


def test_accounts_the_pages_missed_are_counted_as_unread():
    # A server whose pages never list some accounts it counts (removed and made at once
    # between pages, so the total does not move): the shortfall is a gauge, not silence.
    doc = synthetic(streams=30, consumers=90, accounts=10)
    doc["total"] += 3
    collector, source = new(), Pages(doc)
    samples = refresh(collector, source)
    assert samples[m.NATS_JETSTREAM_ACCOUNTS_UNREAD.name] == [((), 3)]


#: Requests after which the fake times out, as a server's per-request timeout would end a read
#: that does not stop by itself.
GUARD = 200


class Lying(Pages):
    """``Pages`` with the size limits of a source (``limits``, small ones) and /routez, whose
    pages after the first ``lie_from`` of the next refresh (``lie_after``) say ``total`` =
    ``lie`` and are full at every offset (the accounts of an earlier one again); ``grow``
    makes an account before each page."""

    limits = BodyLimits(1 * MiB, 1 * KiB)

    def __init__(self, doc: dict) -> None:
        super().__init__(doc)
        self.lie_from: int | None = None
        self.lie = 10**12
        self.grow = False
        self.pages = 0
        self.sent: list[int] = []

    def lie_after(self, pages: int | None) -> None:
        self.lie_from, self.pages = pages, 0

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        if endpoint == "routez":
            return bytearray((Path(__file__).resolve().parents[1] / "data"
                              / "routez_pooled.json").read_bytes())
        if len(self.requests) > GUARD:
            raise ScrapeError(endpoint, "timeout", "no reply within the timeout")
        return await super().get(endpoint, params, expect=expect)

    def body(self, params) -> bytes:
        if not params or "offset" not in params:
            return super().body(params)
        if self.grow:
            name = f"AAA{self.pages:04d}"
            self.doc["account_details"].append({
                "name": name, "id": name, "memory": 0, "storage": 0, "reserved_memory": 0,
                "reserved_storage": 0, "accounts": 0, "ha_assets": 0,
                "api": {"level": 0, "total": 0, "errors": 0}})
            self.doc["total"] += 1
            self.doc["accounts"] += 1
        self.pages += 1
        if self.lie_from is None or self.pages <= self.lie_from:
            body = super().body(params)
        else:
            full = len(self.doc["account_details"]) - params["limit"]
            doc = orjson.loads(super().body({**params, "offset": params["offset"] % full}))
            body = orjson.dumps({**doc, "total": self.lie})
        self.sent.append(len(body))
        return body


def lying_server(accounts: int) -> tuple[ServerCollector, Lying]:
    source = Lying(synthetic(streams=10, consumers=10, accounts=accounts))
    server = ServerCollector(Target("A1", "http://127.0.0.1:1"), source,
                             {"jsz": JszOptions("accounts"), "routez": None})
    asyncio.run(server.refresh())
    assert server.problems == []
    return server, source


def jsz_samples(server: ServerCollector) -> dict:
    collector = server.collector("jsz")
    assert collector is not None
    return collector.samples()


def test_pages_that_claim_more_accounts_than_one_reply_could_hold_are_too_large():
    # Every page says a trillion accounts and is full: the pages stop when they hold what one
    # reply of the whole listing may hold, the counts of the last read its limit.
    server, source = lying_server(3000)
    cap = max(source.limits.bounds("jsz", None, {"accounts": with_margin(3000)}))
    source.lie_after(0)
    before, sent = len(source.requests), len(source.sent)
    asyncio.run(server.refresh())
    pages = pages_of(source, before)
    replies = source.sent[sent:]
    assert len(pages) <= cap // min(replies) + 1
    assert sum(replies) <= cap + max(replies)
    (error,) = server.problems
    assert (error.endpoint, error.reason) == ("jsz", "too_large")
    assert "total=1000000000000" in error.detail and f"over the {cap}" in error.detail
    assert errors(server)[("jsz", "too_large")] == 1
    success = dict(server.self_samples()[m.FASTNATS_COLLECTOR_SUCCESS.name])
    assert success == {("varz",): 1, ("jsz",): 0, ("routez",): 1}
    print(f"{len(pages)} pages, {sum(replies)} bytes, limit {cap}")
    # The system account's source states its limits too, so fleet reads are capped alike.
    assert SystemSource(None, "NSIM", 5, source.limits).limits is source.limits  # type: ignore[arg-type]


def test_a_total_that_jumps_after_the_first_page_is_a_decode_error():
    server, source = lying_server(3000)
    source.lie_after(1)
    before = len(source.requests)
    asyncio.run(server.refresh())
    assert len(pages_of(source, before)) == 2
    (error,) = server.problems
    assert (error.endpoint, error.reason) == ("jsz", "decode")
    assert "says total=1000000000000 accounts after 2 pages" in error.detail
    assert errors(server)[("jsz", "decode")] == 1
    # The truth again: read whole.
    source.lie_after(None)
    asyncio.run(server.refresh())
    assert server.problems == []
    rows = jsz_samples(server)[m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name]
    assert len(rows) == 3000


def test_accounts_made_while_paging_under_the_limits_are_read_whole():
    server, source = lying_server(3000)
    source.grow = True
    asyncio.run(server.refresh())
    assert server.problems == []
    rows = jsz_samples(server)[m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES.name]
    assert {labels[0] for labels, _ in rows} >= {a["id"] for a in source.doc["account_details"]
                                                 if not a["id"].startswith("AAA")}
