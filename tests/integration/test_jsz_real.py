"""/jsz against a real JetStream cluster: the three A servers of the supercluster, with the
streams and consumers of tests.support.jetstream (an R3 stream, an R1 stream, a mirror, a
sourced stream, durable consumers and 200 ephemeral ones).

One exporter process reads A1, A2 and A3. Every expected value is computed here, apart from the
collector, from /jsz of each server; the state does not move between the /jsz reads and the
scrape (``jetstream_assets.settled()``), and the expectations of two reads in a row must agree
before they count. Each stream must come once, from the server the JetStream API names as its
leader; each durable consumer from its own leader; ephemeral consumers only as aggregates.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from tests.support.cluster import Supercluster
from tests.support.jetstream import (
    ALL,
    AUDIT,
    EPHEMERALS_FETCHING,
    ORDERS,
    ORDERS_MIRROR,
    PULL_FETCHED,
    PULL_NAKED,
    PUSH_MAX_ACK_PENDING,
    JetStreamAssets,
    held_streams,
)
from tests.support.process import Exporter, exporting, wait_until

pytestmark = pytest.mark.integration

STREAM_META = ("team",)
CONSUMER_META = ("owner", "tier")
JSZ_QUERY = {"accounts": "true", "streams": "true", "consumers": "true", "config": "true"}

STREAM_VALUES = {
    m.NATS_JETSTREAM_STREAM_MESSAGES.name: lambda s: s["state"]["messages"],
    m.NATS_JETSTREAM_STREAM_BYTES.name: lambda s: s["state"]["bytes"],
    m.NATS_JETSTREAM_STREAM_FIRST_SEQUENCE.name: lambda s: s["state"]["first_seq"],
    m.NATS_JETSTREAM_STREAM_LAST_SEQUENCE.name: lambda s: s["state"]["last_seq"],
    m.NATS_JETSTREAM_STREAM_DELETED_MESSAGES.name: lambda s: s["state"].get("num_deleted", 0),
    m.NATS_JETSTREAM_STREAM_SUBJECTS.name: lambda s: s["state"].get("num_subjects", 0),
    m.NATS_JETSTREAM_STREAM_CONSUMERS.name: lambda s: s["state"].get("consumer_count", 0),
}
#: Limits, exported only when set: -1 (and 0 for max_age) is unlimited.
STREAM_LIMITS = {
    m.NATS_JETSTREAM_STREAM_MAX_BYTES.name: lambda c: c["max_bytes"],
    m.NATS_JETSTREAM_STREAM_MAX_MESSAGES.name: lambda c: c["max_msgs"],
    m.NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS.name: lambda c: c["max_age"] / 1e9,
}
CONSUMER_VALUES = {
    m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name: lambda c: c["num_pending"],
    m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES.name: lambda c: c["num_ack_pending"],
    m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES.name: lambda c: c["num_redelivered"],
    m.NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS.name: lambda c: c["num_waiting"],
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE.name:
        lambda c: c["delivered"]["consumer_seq"],
    m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE.name:
        lambda c: c["delivered"]["stream_seq"],
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE.name:
        lambda c: c["ack_floor"]["consumer_seq"],
    m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE.name:
        lambda c: c["ack_floor"]["stream_seq"],
}
EPHEMERAL_FAMILIES = (
    m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS.name,
    m.NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES.name,
    m.NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES.name,
)
REPLICA_VALUES = {
    m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT.name: lambda r: int(bool(r.get("current"))),
    m.NATS_JETSTREAM_STREAM_REPLICA_OFFLINE.name: lambda r: int(bool(r.get("offline"))),
    m.NATS_JETSTREAM_STREAM_REPLICA_LAG.name: lambda r: r.get("lag", 0),
}
#: What ``expected`` covers: everything per stream and consumer but the last-seen seconds of
#: mirrors and sources, which move by themselves, and the top-K (ties).
COMPARED = (*STREAM_VALUES, *STREAM_LIMITS, m.NATS_JETSTREAM_STREAM_SOURCE_LAG.name,
            *REPLICA_VALUES, *CONSUMER_VALUES, *EPHEMERAL_FAMILIES)
Families = dict[str, dict[frozenset, float]]


# -- expectations, from /jsz alone


def is_durable(consumer: dict) -> bool:
    return bool((consumer.get("config") or {}).get("durable_name"))


def meta_labels(config: dict | None, keys: tuple[str, ...]) -> dict[str, str]:
    metadata = (config or {}).get("metadata") or {}
    return {f"meta_{key}": metadata.get(key, "") for key in keys}


def stream_labels(server: str, account: str, stream: dict) -> dict[str, str]:
    return {"server": server, "account": account, "stream": stream["name"],
            **meta_labels(stream.get("config"), STREAM_META)}


def series(labels: dict[str, str]) -> frozenset:
    return frozenset(labels.items())


def led_streams(bodies: dict[str, dict]) -> Iterator[tuple[str, str, dict]]:
    """(server, account, stream detail) of each stream in the /jsz of the server that leads it."""
    for server, body in bodies.items():
        for account, stream in held_streams(body):
            if (stream.get("cluster") or {}).get("leader") == server:
                yield server, account, stream


def expected(bodies: dict[str, dict], replicas: bool = False) -> Families:
    """The stream, consumer and ephemeral families the exporter must serve for ``bodies`` (server
    -> /jsz?accounts&streams&consumers&config), but those of ``COMPARED``; with ``replicas``,
    the stream families of every replica, with its ``replica_role``."""
    out: Families = {family: {} for family in COMPARED}
    for server, body in bodies.items():
        for account, stream in held_streams(body):
            leading = (stream.get("cluster") or {}).get("leader") == server
            if not (leading or replicas):
                continue
            labels = stream_labels(server, account, stream)
            if replicas:
                labels["replica_role"] = "leader" if leading else "follower"
            for family, value in STREAM_VALUES.items():
                out[family][series(labels)] = value(stream)
            for family, value in STREAM_LIMITS.items():
                if value(stream["config"]) > 0:
                    out[family][series(labels)] = value(stream["config"])
    for server, account, stream in led_streams(bodies):
        for kind, origin in [("mirror", stream.get("mirror")),
                             *(("source", s) for s in stream.get("sources") or [])]:
            if origin:
                out[m.NATS_JETSTREAM_STREAM_SOURCE_LAG.name][series(
                    {"server": server, "account": account, "stream": stream["name"],
                     "source": origin["name"], "kind": kind})] = origin["lag"]
        for replica in (stream.get("cluster") or {}).get("replicas") or []:
            key = series({"server": server, "account": account, "stream": stream["name"],
                          "replica": replica["name"]})
            for family, value in REPLICA_VALUES.items():
                out[family][key] = value(replica)
    for server, body in bodies.items():
        for account, stream in held_streams(body):
            mine = [c for c in stream.get("consumer_detail") or []
                    if (c.get("cluster") or {}).get("leader") == server]
            for consumer in mine:
                if not is_durable(consumer):
                    continue
                labels = series({"server": server, "account": account,
                                 "stream": stream["name"], "consumer": consumer["name"],
                                 **meta_labels(consumer.get("config"), CONSUMER_META)})
                for family, value in CONSUMER_VALUES.items():
                    out[family][labels] = value(consumer)
            ephemeral = [c for c in mine if not is_durable(c)]
            if ephemeral:
                labels = stream_labels(server, account, stream)
                out[EPHEMERAL_FAMILIES[0]][series(labels)] = len(ephemeral)
                for family, field in zip(EPHEMERAL_FAMILIES[1:],
                                         ("num_pending", "num_ack_pending")):
                    values = [c[field] for c in ephemeral]
                    out[family][series({**labels, "stat": "sum"})] = sum(values)
                    out[family][series({**labels, "stat": "max"})] = max(values)
    return out


def jsz_bodies(supercluster: Supercluster) -> dict[str, dict]:
    return {node.name: node.get("jsz", **JSZ_QUERY) for node in supercluster.a if node.running}


def stable_expectation(supercluster: Supercluster,
                       replicas: bool = False) -> tuple[dict[str, dict], Families]:
    """/jsz of every running A server, read until two reads in a row expect the same."""
    def agreed():
        first = expected(jsz_bodies(supercluster), replicas)
        bodies = jsz_bodies(supercluster)
        return (bodies, first) if expected(bodies, replicas) == first else None

    return wait_until(agreed, timeout=30.0)


# -- the exporter


def parse(text: str) -> Families:
    """Sample name -> frozenset of label pairs -> value; a duplicate series fails the test."""
    out: Families = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found = out.setdefault(sample.name, {})
            key = frozenset(sample.labels.items())
            assert key not in found, f"duplicate series {sample.name}{sample.labels}"
            found[key] = sample.value
    return out


@contextmanager
def jsz_exporter(supercluster: Supercluster, *options: str) -> Iterator[Exporter]:
    targets = [f"{node.name}={node.monitor_url}" for node in supercluster.a]
    with exporting(*targets, "--web.listen-address", "127.0.0.1:0", "--refresh-interval",
                   "100ms", "--collector.jsz", "--jsz.level", "consumers",
                   "--jsz.stream-meta-keys", ",".join(STREAM_META),
                   "--jsz.consumer-meta-keys", ",".join(CONSUMER_META), *options) as proc:
        yield proc


def scrape(proc: Exporter) -> Families:
    return parse(proc.scrape())


def only(families: Families, names) -> Families:
    return {name: families.get(name, {}) for name in names}


def served_as_expected(proc: Exporter, supercluster: Supercluster, *, replicas: bool = False,
                       skip: tuple[str, ...] = (), timeout: float = 20.0
                       ) -> tuple[dict[str, dict], Families, Families]:
    """Wait until a scrape serves exactly what /jsz of this moment expects, family by family
    (but the ``skip`` ones); returns the bodies, the expectation and the scrape. Fails with the
    last difference."""
    last: list = []

    def matches():
        bodies, want = stable_expectation(supercluster, replicas)
        want = {family: found for family, found in want.items() if family not in skip}
        got = scrape(proc)
        last[:] = [difference(want, only(got, want))]
        return None if last[0] else (bodies, want, got)

    try:
        return wait_until(matches, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"the exporter never served /jsz's values: {last[0]}") from None


def difference(want: Families, got: Families) -> dict:
    out = {}
    for family in want.keys() | got.keys():
        mine, theirs = want.get(family, {}), got.get(family, {})
        if mine != theirs:
            out[family] = {"missing": {k: v for k, v in mine.items() if theirs.get(k) != v},
                           "extra": {k: v for k, v in theirs.items() if mine.get(k) != v}}
    return out


def label(series_key: frozenset, name: str) -> str:
    return dict(series_key)[name]


@pytest.fixture(scope="module")
def exporter(supercluster: Supercluster, jetstream_assets: JetStreamAssets):
    supercluster.wait_formed()
    jetstream_assets.settled()
    with jsz_exporter(supercluster) as proc:
        yield proc


# -- the tests


def test_every_stream_comes_once_from_its_leader(supercluster, jetstream_assets, exporter):
    bodies, want, got = served_as_expected(exporter, supercluster)
    messages = got[m.NATS_JETSTREAM_STREAM_MESSAGES.name]
    by_stream = defaultdict(list)
    for key in messages:
        by_stream[(label(key, "account"), label(key, "stream"))].append(label(key, "server"))
    assert sorted(by_stream) == sorted((s.account, s.name) for s in jetstream_assets.streams)
    for stream in jetstream_assets.streams:
        [server] = by_stream[(stream.account, stream.name)]
        assert server == jetstream_assets.stream_leader(stream.name), stream.name
        info = jetstream_assets.stream_info(stream.name)
        key = series({"server": server, "account": stream.account, "stream": stream.name,
                      **meta_labels({"metadata": stream.metadata}, STREAM_META)})
        assert messages[key] == info["state"]["messages"] == \
            jetstream_assets.messages(stream.name), stream.name
        # Every replica lists the stream; only its leader exports it.
        holders = [name for name, body in bodies.items()
                   if any(s["name"] == stream.name for _, s in held_streams(body))]
        assert len(holders) == stream.replicas, (stream.name, holders)
    orders = jetstream_assets.stream(ORDERS)
    leader = by_stream[("T1", ORDERS)][0]
    key = series({"server": leader, "account": "T1", "stream": ORDERS,
                  "meta_team": "billing"})
    assert got[m.NATS_JETSTREAM_STREAM_MAX_BYTES.name][key] == orders.max_bytes
    assert got[m.NATS_JETSTREAM_STREAM_MAX_MESSAGES.name][key] == orders.max_msgs
    assert got[m.NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS.name][key] == orders.max_age
    # AUDIT has no limits and no team: no limit series, an empty team label.
    audit = series({"server": by_stream[("T1", AUDIT)][0], "account": "T1", "stream": AUDIT,
                    "meta_team": ""})
    assert audit in messages
    assert audit not in got.get(m.NATS_JETSTREAM_STREAM_MAX_BYTES.name, {})


def test_durable_consumers_equal_jsz_and_follow_a_publish(supercluster, jetstream_assets,
                                                         exporter):
    _, _, got = served_as_expected(exporter, supercluster)
    pending = got[m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name]
    by_consumer = {(label(k, "account"), label(k, "stream"), label(k, "consumer")): k
                   for k in pending}
    assert len(by_consumer) == len(pending)
    assert sorted(by_consumer) == sorted((c.account, c.stream, c.name)
                                         for c in jetstream_assets.durables)
    for consumer in jetstream_assets.durables:
        key = by_consumer[(consumer.account, consumer.stream, consumer.name)]
        info = jetstream_assets.consumer_info(consumer.stream, consumer.name)
        assert label(key, "server") == info["cluster"]["leader"], consumer.name
        assert {k: label(key, k) for k in ("meta_owner", "meta_tier")} == meta_labels(
            {"metadata": consumer.metadata}, CONSUMER_META)
    ack = got[m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES.name]
    redelivered = got[m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES.name]
    pull = by_consumer[("T1", ORDERS, "orders-pull")]
    assert (ack[pull], redelivered[pull]) == (PULL_FETCHED, PULL_NAKED)
    assert ack[by_consumer[("T1", ORDERS, "orders-push")]] == PUSH_MAX_ACK_PENDING
    idle = by_consumer[("T1", ORDERS, "orders-idle")]
    assert pending[idle] == jetstream_assets.published[ORDERS] // 3  # orders.eu.> only

    jetstream_assets.publish(orders=30, audit=6)
    _, _, after = served_as_expected(exporter, supercluster)
    assert after[m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name][idle] == pending[idle] + 10
    assert ephemeral_series(after) == []


def ephemeral_series(families: Families) -> list:
    """Series outside the top-K that name an ephemeral consumer: there must be none."""
    return [(family, key) for family, found in families.items()
            if family != m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES.name
            for key in found if any(value.startswith("eph-") for _, value in key)]


def test_ephemeral_consumers_are_aggregated_per_stream(supercluster, jetstream_assets,
                                                       exporter):
    bodies, _, got = served_as_expected(exporter, supercluster)
    count = got[m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS.name]
    pending = got[m.NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES.name]
    ack = got[m.NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES.name]
    # Ephemeral consumers are R1 and spread over the stream's servers: one series per server
    # that leads some, all of ORDERS.
    assert {(label(k, "account"), label(k, "stream")) for k in count} == {("T1", ORDERS)}
    assert sum(count.values()) == len(jetstream_assets.ephemerals)
    # eph-000 .. eph-009 fetched 1 .. 10 messages without acknowledging them.
    fetched = range(1, EPHEMERALS_FETCHING + 1)
    assert sum(v for k, v in ack.items() if label(k, "stat") == "sum") == sum(fetched)
    assert max(v for k, v in ack.items() if label(k, "stat") == "max") == max(fetched)
    every = {c["name"]: c for body in bodies.values() for _, stream in held_streams(body)
             for c in stream.get("consumer_detail") or [] if not is_durable(c)}
    assert sorted(every) == jetstream_assets.ephemeral_names()
    assert sum(v for k, v in pending.items() if label(k, "stat") == "sum") == sum(
        c["num_pending"] for c in every.values())
    assert ephemeral_series(got) == []
    # The top-K of each server: the consumers it leads with the most pending, whatever their
    # kind, each with its own value.
    top = got[m.NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES.name]
    for server, body in bodies.items():
        led = {c["name"]: c for _, stream in held_streams(body)
               for c in stream.get("consumer_detail") or []
               if c["cluster"]["leader"] == server and c["num_pending"]}
        mine = {k: v for k, v in top.items() if label(k, "server") == server}
        assert sorted(mine.values()) == sorted(c["num_pending"] for c in led.values())[-10:]
        for key, value in mine.items():
            consumer = led[label(key, "consumer")]
            assert value == consumer["num_pending"]
            assert label(key, "durable") == ("true" if is_durable(consumer) else "false")


def test_max_consumers_sums_the_rest_into_other(supercluster, jetstream_assets):
    cap = 1
    with jsz_exporter(supercluster, "--jsz.max-consumers", str(cap)) as proc:
        # The durable families are checked below, against the same bodies.
        bodies, _, got = served_as_expected(proc, supercluster, skip=tuple(CONSUMER_VALUES))
    overflow = {label(k, "server"): v
                for k, v in got[m.NATS_JETSTREAM_CONSUMER_OVERFLOW.name].items()}
    durables_led = {server: [c for _, stream in held_streams(body)
                             for c in stream.get("consumer_detail") or []
                             if is_durable(c) and c["cluster"]["leader"] == server]
                    for server, body in bodies.items()}
    # Seven durable consumers on three servers: some server leads more than the cap.
    assert max(map(len, durables_led.values())) > cap
    other_labels = {"account": "_other", "stream": "_other", "consumer": "_other",
                    "meta_owner": "", "meta_tier": ""}
    for server, led in durables_led.items():
        assert overflow[server] == max(0, len(led) - cap), server
        other = series({"server": server, **other_labels})
        for family, value in list(CONSUMER_VALUES.items())[:4]:
            found = {k: v for k, v in got[family].items() if label(k, "server") == server}
            own = {label(k, "consumer"): v for k, v in found.items() if k != other}
            assert len(own) == min(len(led), cap)
            everyone = {c["name"]: value(c) for c in led}
            assert {name: everyone[name] for name in own} == own
            assert found.get(other, 0) == sum(v for n, v in everyone.items() if n not in own)
            assert (other in found) == (len(led) > cap)
        # Sequences of different consumers do not add up: _other has none.
        for family in list(CONSUMER_VALUES)[4:]:
            assert other not in got[family]


def test_mirrors_and_sources_work_with_meta_keys(supercluster, jetstream_assets, exporter):
    _, want, got = served_as_expected(exporter, supercluster)
    lag = got[m.NATS_JETSTREAM_STREAM_SOURCE_LAG.name]
    seen = got[m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS.name]
    origins = {(label(k, "stream"), label(k, "source"), label(k, "kind")): v
               for k, v in lag.items()}
    assert origins == {(ORDERS_MIRROR, ORDERS, "mirror"): 0, (ALL, ORDERS, "source"): 0,
                       (ALL, AUDIT, "source"): 0}
    assert seen.keys() == lag.keys()
    assert all(value >= 0 for value in seen.values())
    teams = {label(k, "stream"): label(k, "meta_team")
             for k in got[m.NATS_JETSTREAM_STREAM_MESSAGES.name]}
    assert teams == {s.name: s.metadata.get("team", "") for s in jetstream_assets.streams}
    mirror_pull = [k for k in got[m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name]
                   if label(k, "consumer") == "mirror-pull"]
    assert [label(k, "meta_owner") for k in mirror_pull] == ["replica-reader"]
    errors = {k: v for k, v in got[m.FASTNATS_REFRESH_ERRORS_TOTAL.name].items()
              if label(k, "endpoint") == "jsz"}
    assert errors and set(errors.values()) == {0}, errors
    assert exporter.process.poll() is None


def test_replicas_adds_the_follower_view(supercluster, jetstream_assets):
    with jsz_exporter(supercluster, "--jsz.replicas") as proc:
        bodies, _, got = served_as_expected(proc, supercluster, replicas=True)
    messages = got[m.NATS_JETSTREAM_STREAM_MESSAGES.name]
    for stream in jetstream_assets.streams:
        mine = {label(k, "server"): (label(k, "replica_role"), v) for k, v in messages.items()
                if label(k, "stream") == stream.name}
        assert len(mine) == stream.replicas, (stream.name, mine)
        leader = jetstream_assets.stream_leader(stream.name)
        assert mine.pop(leader) == ("leader", jetstream_assets.messages(stream.name))
        assert set(mine.values()) <= {("follower", jetstream_assets.messages(stream.name))}
    # Counting once is still one PromQL filter away.
    assert sum(v for k, v in messages.items() if label(k, "replica_role") == "leader"
               and label(k, "stream") == ORDERS) == jetstream_assets.messages(ORDERS)


def orders_by_server(families: Families) -> dict[str, float]:
    return {label(k, "server"): v
            for k, v in families.get(m.NATS_JETSTREAM_STREAM_MESSAGES.name, {}).items()
            if label(k, "stream") == ORDERS}


def orders_pull_by_server(families: Families) -> dict[str, float]:
    return {label(k, "server"): v
            for k, v in families.get(m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES.name,
                                     {}).items()
            if label(k, "consumer") == "orders-pull"}


class Watcher:
    """Scrapes the exporter over and over in a thread: what each scrape served of ORDERS."""

    def __init__(self, proc: Exporter) -> None:
        self.proc = proc
        self.scrapes: list[dict[str, float]] = []
        #: What each scrape served of the durable consumer orders-pull (its ack pending).
        self.consumer: list[dict[str, float]] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                families = scrape(self.proc)
                self.consumer.append(orders_pull_by_server(families))
                self.scrapes.append(orders_by_server(families))
            except Exception as exc:  # noqa: BLE001  (reported by the test)
                self.errors.append(exc)
                return

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        self.thread.join()

    def served(self, expected: dict[str, float]) -> bool:
        assert not self.errors, self.errors
        return bool(self.scrapes) and self.scrapes[-1] == expected


# Last in the module: it stops a node, and the ephemeral consumers it held come back with it.
def test_stopping_the_leader_moves_the_stream_without_double_counting(
        supercluster, jetstream_assets, exporter):
    served_as_expected(exporter, supercluster)
    count = jetstream_assets.messages(ORDERS)
    old = jetstream_assets.stream_leader(ORDERS)
    node = supercluster.node(old)
    with Watcher(exporter) as watcher:
        wait_until(lambda: watcher.served({old: count}))
        before_stop = len(watcher.scrapes)
        try:
            node.stop()
            new = wait_until(lambda: (leader := jetstream_assets.stream_leader(ORDERS))
                             not in ("", old) and leader)
            wait_until(lambda: watcher.served({new: count}))
            moved = len(watcher.scrapes)
        finally:
            if not node.running:
                node.start()
            supercluster.wait_formed()
            jetstream_assets.settled()
        # The old leader is back as a follower (or leads again): still one series.
        leader = jetstream_assets.stream_leader(ORDERS)
        wait_until(lambda: watcher.served({leader: count}))
        # A few more refreshes of every server after the restart.
        settled_at = len(watcher.scrapes)
        wait_until(lambda: len(watcher.scrapes) > settled_at + 20)
    # The consumer's leader moves too (when it was on the stopped server): never two series.
    doubled = [(i, served) for i, served in enumerate(watcher.consumer) if len(served) > 1]
    scrapes = watcher.scrapes
    # Counted twice, or not as what the stream holds, at any scrape: wrong.
    wrong = [(i, served) for i, served in enumerate(scrapes)
             if len(served) > 1 or set(served.values()) - {count}]
    # Not counted at all: only while the leadership moves (the old leader stepped down, the
    # exporter has not yet read the new one), never after.
    unled = [i for i, served in enumerate(scrapes) if not served]
    late = [i for i in unled if not before_stop <= i < moved]
    assert (wrong, late, doubled) == ([], [], []), (
        f"of {len(scrapes)} scrapes, {len(wrong)} counted ORDERS twice or wrong, {len(late)} "
        f"missed it outside the move, {len(doubled)} served orders-pull twice (stopped {old} "
        f"after scrape {before_stop}, moved to {new} by scrape {moved}): {wrong[:10]} "
        f"{late[:10]} {doubled[:10]}")
    assert old != new and moved > before_stop
    assert watcher.consumer[-1] and set(watcher.consumer[-1].values()) == {PULL_FETCHED}
