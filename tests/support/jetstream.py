"""JetStream assets on the supercluster (tests.support.cluster), made through the JetStream API
with nats-py: streams of every kind the /jsz tests need, durable and ephemeral consumers, and
messages so that pending and ack pending are not zero.

In account T1: ``ORDERS`` (R3, with limits and metadata), ``AUDIT`` (R1, no metadata),
``ORDERS_MIRROR`` (an R1 mirror of ORDERS) and ``ALL`` (R3, sourcing ORDERS and AUDIT), durable
pull and push consumers, and 200 ephemeral pull consumers on ORDERS. In account T2: ``EVENTS``
(R3) with one durable.

Every call is synchronous: it runs its own event loop (``asyncio.run``) and its own connection,
which picks any running A server, so the helpers keep working while a node is stopped. Nothing
depends on a connection staying open: the ephemeral consumers live on through a long
``inactive_threshold``, and no consumer redelivers within the session (long ``ack_wait``).

/jsz is per server: a server lists the streams and consumers it holds a replica of, and each
replica has its own view. ``settled`` waits until every replica agrees with its leader, so that a
test comparing /jsz with the exporter compares bodies that do not move.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import nats
from nats.js import api
from nats.js.errors import NotFoundError

from tests.support.cluster import ACCOUNTS, Node, Supercluster
from tests.support.process import wait_until

T = TypeVar("T")

#: Long enough to outlive any test session: no ephemeral consumer goes away, no message is
#: redelivered behind a test's back.
HOUR = 3600.0
API_TIMEOUT = 10.0
EPHEMERALS = 200
#: Ephemeral consumers that fetch messages without acknowledging them (eph-000 fetches 1, eph-001
#: fetches 2, ...), so that the ephemeral ack-pending sum and max differ.
EPHEMERALS_FETCHING = 10

ORDERS, AUDIT, ORDERS_MIRROR, ALL, EVENTS = "ORDERS", "AUDIT", "ORDERS_MIRROR", "ALL", "EVENTS"
REGIONS = ("eu", "us", "ap")
#: Durable consumers whose ack pending is fixed: orders-push stops at max_ack_pending.
PUSH_MAX_ACK_PENDING = 5
PULL_FETCHED, PULL_NAKED = 7, 2


@dataclass(frozen=True)
class Stream:
    account: str
    name: str
    replicas: int
    subjects: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    mirror: str | None = None
    sources: tuple[str, ...] = ()
    max_bytes: int | None = None
    max_msgs: int | None = None
    max_age: float | None = None

    def config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name, subjects=list(self.subjects) or None, num_replicas=self.replicas,
            storage=api.StorageType.FILE, metadata=dict(self.metadata) or None,
            mirror=api.StreamSource(name=self.mirror) if self.mirror else None,
            sources=[api.StreamSource(name=s) for s in self.sources] or None,
            max_bytes=self.max_bytes, max_msgs=self.max_msgs, max_age=self.max_age)


@dataclass(frozen=True)
class Consumer:
    account: str
    stream: str
    name: str
    durable: bool
    push: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    filter_subject: str | None = None
    opt_start_seq: int | None = None

    def config(self) -> api.ConsumerConfig:
        options: dict = {}
        if self.push:
            options.update(deliver_subject=f"deliver.{self.name}",
                           max_ack_pending=PUSH_MAX_ACK_PENDING)
        if self.opt_start_seq is not None:
            options.update(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                           opt_start_seq=self.opt_start_seq)
        if self.durable:
            options["durable_name"] = self.name
        else:
            options.update(name=self.name, inactive_threshold=HOUR)
        return api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=HOUR,
                                  filter_subject=self.filter_subject,
                                  metadata=dict(self.metadata) or None, **options)


STREAMS = (
    Stream("T1", ORDERS, 3, ("orders.>",), {"team": "billing"}, max_bytes=64 * 1024 * 1024,
           max_msgs=100_000, max_age=24 * HOUR),
    Stream("T1", AUDIT, 1, ("audit.>",)),
    Stream("T1", ORDERS_MIRROR, 1, metadata={"team": "billing"}, mirror=ORDERS),
    Stream("T1", ALL, 3, metadata={"team": "ops"}, sources=(ORDERS, AUDIT)),
    Stream("T2", EVENTS, 3, ("events.>",), {"team": "tenant2"}),
)
DURABLES = (
    Consumer("T1", ORDERS, "orders-pull", True, metadata={"owner": "invoicing", "tier": "gold"}),
    Consumer("T1", ORDERS, "orders-push", True, push=True, metadata={"owner": "shipping"}),
    Consumer("T1", ORDERS, "orders-idle", True, filter_subject="orders.eu.>"),
    Consumer("T1", AUDIT, "audit-pull", True, metadata={"owner": "compliance"}),
    Consumer("T1", ALL, "all-pull", True),
    Consumer("T1", ORDERS_MIRROR, "mirror-pull", True, metadata={"owner": "replica-reader"}),
    Consumer("T2", EVENTS, "events-worker", True, metadata={"owner": "tenant2"}),
)


def ephemerals(count: int = EPHEMERALS) -> tuple[Consumer, ...]:
    """Pull consumers on ORDERS with a filter and a start sequence each, so their pending
    counts differ."""
    filters = ("orders.>", *(f"orders.{region}.>" for region in REGIONS))
    return tuple(Consumer("T1", ORDERS, f"eph-{i:03d}", False, filter_subject=filters[i % 4],
                          opt_start_seq=1 + i % 50) for i in range(count))


class JetStreamAssets:
    """The streams and consumers above on a running supercluster; see ``create``."""

    def __init__(self, supercluster: Supercluster, ephemeral_count: int = EPHEMERALS) -> None:
        self.supercluster = supercluster
        self.streams = STREAMS
        self.durables = DURABLES
        self.ephemerals = ephemerals(ephemeral_count)
        #: Messages published so far, per stream that takes them from publishers.
        self.published: dict[str, int] = {ORDERS: 0, AUDIT: 0, EVENTS: 0}
        self.created_in = 0.0

    # -- names

    def stream(self, name: str) -> Stream:
        return next(s for s in self.streams if s.name == name)

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return self.durables + self.ephemerals

    def stream_names(self, account: str | None = None) -> list[str]:
        return [s.name for s in self.streams if account in (None, s.account)]

    def durable_names(self, stream: str | None = None) -> list[str]:
        return [c.name for c in self.durables if stream in (None, c.stream)]

    def ephemeral_names(self) -> list[str]:
        return [c.name for c in self.ephemerals]

    def messages(self, stream: str) -> int:
        """Messages ``stream`` holds once settled: what was published to it, or copied into it
        (no limit is reached)."""
        origins = self.stream(stream)
        if origins.mirror or origins.sources:
            return sum(self.messages(name) for name in (origins.mirror, *origins.sources)
                       if name)
        return self.published[stream]

    # -- building

    @classmethod
    def create(cls, supercluster: Supercluster, *, ephemeral_count: int = EPHEMERALS,
               orders: int = 300, audit: int = 40, events: int = 25) -> JetStreamAssets:
        """Make every asset anew (a stream of the same name is deleted first, so a second call
        leaves the same state, not twice the consumers), publish, fetch without acknowledging,
        and wait until every replica, mirror and source has caught up."""
        started = time.monotonic()
        assets = cls(supercluster, ephemeral_count)
        for account in ("T1", "T2"):
            assets._run(account, lambda js, account=account: assets._create(js, account))
        assets.publish(orders=orders, audit=audit, events=events)
        assets._run("T1", assets._fetch_without_ack)
        assets.settled()
        assets.created_in = time.monotonic() - started
        return assets

    async def _create(self, js, account: str) -> None:
        streams = [s for s in self.streams if s.account == account]
        for stream in streams:
            try:
                await js.delete_stream(stream.name)
            except NotFoundError:
                pass
        # The mirror and the sourced stream name the others, which must exist first.
        for stream in sorted(streams, key=lambda s: bool(s.mirror or s.sources)):
            await js.add_stream(stream.config())
        mine = [c for c in self.consumers if c.account == account]
        await _bounded((js.add_consumer(c.stream, c.config(), timeout=API_TIMEOUT)
                        for c in mine), limit=32)

    def publish(self, orders: int = 0, audit: int = 0, events: int = 0) -> None:
        """Publish to ORDERS (round robin over the regions, ten subjects each), AUDIT and
        EVENTS, then wait until every replica, the mirror and ALL hold them."""
        if orders or audit:
            subjects = [
                *((f"orders.{REGIONS[i % 3]}.{i % 10}", ORDERS)
                  for i in range(self.published[ORDERS], self.published[ORDERS] + orders)),
                *((f"audit.{i % 4}", AUDIT)
                  for i in range(self.published[AUDIT], self.published[AUDIT] + audit))]
            self._run("T1", lambda js: _publish(js, subjects))
        if events:
            subjects = [(f"events.{i % 5}", EVENTS) for i in range(events)]
            self._run("T2", lambda js: _publish(js, subjects))
        self.published[ORDERS] += orders
        self.published[AUDIT] += audit
        self.published[EVENTS] += events
        self.settled()

    async def _fetch_without_ack(self, js) -> None:
        """orders-pull: fetch PULL_FETCHED, nak PULL_NAKED, fetch those again (redelivered).
        orders-push: takes PUSH_MAX_ACK_PENDING. audit-pull: fetch 3. eph-00k: fetch k + 1."""
        pull = await js.pull_subscribe_bind("orders-pull", ORDERS)
        got = await _fetch_exactly(pull, PULL_FETCHED)
        for msg in got[:PULL_NAKED]:
            # A NAK sent as a request is answered once the consumer took it: the fetch that
            # follows gets the messages redelivered, not new ones.
            await js._nc.request(msg.reply, b"-NAK", timeout=API_TIMEOUT)
        await _fetch_exactly(pull, PULL_NAKED)
        await pull.unsubscribe()
        await _fetch_once(js, "audit-pull", AUDIT, 3)
        await _bounded((_fetch_once(js, c.name, ORDERS, k + 1)
                        for k, c in enumerate(self.ephemerals[:EPHEMERALS_FETCHING])), limit=16)
        delivered: asyncio.Queue = asyncio.Queue()
        sub = await js._nc.subscribe("deliver.orders-push", cb=delivered.put)
        for _ in range(PUSH_MAX_ACK_PENDING):
            await asyncio.wait_for(delivered.get(), API_TIMEOUT)
        await js._nc.flush()
        await sub.unsubscribe()

    # -- reading the JetStream API

    def stream_info(self, name: str) -> dict:
        """$JS.API.STREAM.INFO of ``name``, as the JSON the server answered."""
        stream = self.stream(name)
        return self._run(stream.account, _api(f"STREAM.INFO.{name}"))

    def consumer_info(self, stream: str, consumer: str) -> dict:
        account = self.stream(stream).account
        return self._run(account, _api(f"CONSUMER.INFO.{stream}.{consumer}"))

    def stream_leader(self, name: str) -> str:
        """The server name of the stream's leader, from the JetStream API ('' while none)."""
        return self.stream_info(name).get("cluster", {}).get("leader", "")

    def step_down(self, name: str, timeout: float = 30.0) -> str:
        """Ask the stream's leader to step down; returns the new leader once there is one."""
        old = self.stream_leader(name)
        self._run(self.stream(name).account, _api(f"STREAM.LEADER.STEPDOWN.{name}"))
        return wait_until(lambda: (leader := self.stream_leader(name)) not in ("", old)
                          and leader, timeout=timeout)

    def leader_node(self, name: str) -> Node:
        return self.supercluster.node(self.stream_leader(name))

    # -- waiting

    def stream_infos(self) -> dict[str, dict]:
        """$JS.API.STREAM.INFO of every stream, one connection per account; a stream whose
        info fails maps to {"error": ...}."""
        async def infos(js, names: list[str]) -> dict[str, dict]:
            out = {}
            for name in names:
                try:
                    out[name] = await _api(f"STREAM.INFO.{name}")(js)
                except (nats.errors.Error, asyncio.TimeoutError, RuntimeError) as exc:
                    out[name] = {"error": repr(exc)}
            return out

        out: dict[str, dict] = {}
        for account in ("T1", "T2"):
            names = self.stream_names(account)
            out.update(self._run(account, lambda js, names=names: infos(js, names)))
        return out

    def unsettled(self) -> list[str]:
        """What still moves: a stream without a leader, a replica (in /jsz of its server) that
        differs from the leader's state, a mirror or ALL behind its origins, a consumer count
        short. Empty once every /jsz body is final."""
        infos = self.stream_infos()
        problems = [f"{name}: {info['error']}" for name, info in infos.items()
                    if "error" in info]
        problems += [f"{name} has no leader" for name, info in infos.items()
                     if "error" not in info and not info.get("cluster", {}).get("leader")]
        if problems:
            return problems
        for name, info in infos.items():
            state = info["state"]
            if state["messages"] != self.messages(name):
                problems.append(f"{name} holds {state['messages']} messages, not "
                                f"{self.messages(name)}")
            consumers = sum(c.stream == name for c in self.consumers)
            if state.get("consumer_count", 0) != consumers:
                problems.append(f"{name} has {state.get('consumer_count', 0)} consumers, not "
                                f"{consumers}")
        held: set[tuple[str, str, str]] = set()
        for node in self.running_nodes():
            for account, stream in held_streams(node.get("jsz", consumers="true",
                                                         config="true")):
                held.update((account, stream["name"], consumer["name"])
                            for consumer in stream.get("consumer_detail") or [])
                leader = infos.get(stream["name"], {}).get("state")
                if leader is None or self.stream(stream["name"]).account != account:
                    continue
                mine = stream["state"]
                if (mine["messages"], mine["last_seq"]) != (leader["messages"],
                                                            leader["last_seq"]):
                    problems.append(f"{stream['name']} on {node.name} is at {mine['last_seq']}, "
                                    f"its leader at {leader['last_seq']}")
        if len(self.running_nodes()) == len(self.supercluster.a):
            missing = {(c.account, c.stream, c.name) for c in self.consumers} - held
            if missing:
                problems.append(f"{len(missing)} consumers on no server, as "
                                f"{sorted(missing)[:3]}")
        return problems

    def settled(self, timeout: float = 60.0) -> None:
        """Wait until ``unsettled`` is empty."""
        deadline = time.monotonic() + timeout
        while problems := self.unsettled():
            if time.monotonic() > deadline:
                raise AssertionError(f"JetStream did not settle within {timeout:g}s: {problems}")
            time.sleep(0.1)

    def running_nodes(self) -> list[Node]:
        return [node for node in self.supercluster.a if node.running]

    # -- plumbing

    def _run(self, account: str, work: Callable[..., Awaitable[T]]) -> T:
        return asyncio.run(self._with_js(account, work))

    async def _with_js(self, account: str, work) -> T:
        user, password = ACCOUNTS[account]
        nc = await nats.connect(
            servers=[f"nats://127.0.0.1:{node.client_port}" for node in self.running_nodes()],
            user=user, password=password, connect_timeout=5, max_reconnect_attempts=3,
            allow_reconnect=True, name=f"jetstream-assets-{account}")
        try:
            return await work(nc.jetstream(timeout=API_TIMEOUT))
        finally:
            await nc.close()


def held_streams(jsz: dict) -> Iterable[tuple[str, dict]]:
    """(account name, stream detail) of every stream a /jsz?streams=true body lists."""
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            yield account["name"], stream


async def _bounded(coros: Iterable[Awaitable], limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def _fetch_exactly(sub, count: int) -> list:
    got: list = []
    while len(got) < count:
        got += await sub.fetch(count - len(got), timeout=API_TIMEOUT)
    return got


async def _fetch_once(js, consumer: str, stream: str, count: int) -> None:
    sub = await js.pull_subscribe_bind(consumer, stream)
    await _fetch_exactly(sub, count)
    await sub.unsubscribe()


async def _publish(js, subjects: list[tuple[str, str]]) -> None:
    await _bounded((js.publish(subject, b"x" * (16 + n % 64), stream=stream, timeout=API_TIMEOUT)
                    for n, (subject, stream) in enumerate(subjects)), limit=64)


def _api(subject: str, body: dict | None = None):
    async def request(js) -> dict:
        msg = await js._nc.request(f"$JS.API.{subject}", json.dumps(body or {}).encode(),
                                   timeout=API_TIMEOUT)
        reply = json.loads(msg.data)
        if "error" in reply:
            raise RuntimeError(f"$JS.API.{subject}: {reply['error']}")
        return reply

    return request
