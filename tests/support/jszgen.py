"""Seeded synthetic /jsz bodies of a real server's shape, for the jsz tests and ``bench/jsz.py``.

``generate`` builds the body one server of a JetStream cluster answers to
``/jsz?accounts=true&streams=true&consumers=true&config=true``: the same keys in the same order
and nesting as nats-server 2.15 (``tests/data/jsz_a1.json`` is the recorded reference; ``shape``
extracts what the tests compare), pretty-printed with two spaces as its ``json.MarshalIndent``.
Streams are R1 or R3 with leaders spread over the cluster's servers; some mirror or source
others; consumers are durable (``durable_name``) or ephemeral (``inactive_threshold`` and a
random name), with their own leaders.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

SERVERS = ("A1", "A2", "A3")
_NOW = "2026-11-29T19:41:02.10080191Z"
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Plan:
    """What a body holds; ``me`` is the server answering."""

    streams: int = 50
    consumers: int = 500
    accounts: int = 5
    me: str = "A1"
    servers: tuple[str, ...] = SERVERS
    #: Shares of streams that are R3, that mirror another, that source others.
    r3: float = 0.6
    mirrors: float = 0.05
    sourced: float = 0.05
    #: Share of consumers that are durable.
    durable: float = 0.3
    #: Stream metadata given to every other stream, and consumer metadata to every other durable.
    stream_metadata: tuple[tuple[str, str], ...] = (("team", "payments"), ("env.tier", "prod"))
    consumer_metadata: tuple[tuple[str, str], ...] = (("owner", "billing"),)


def _name(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(n))


def _peer(name: str, current: bool, active: int) -> dict:
    return {"name": name, "current": current, "active": active, "peer": f"P{name:>7}"[:8]}


def _meta_cluster(plan: Plan) -> dict:
    """The meta group as the server sees it: peers current, lagging or offline, some never
    heard from, and a snapshot taken or not yet. Its own generator, so that the rest of a
    document stays what its seed made it before."""
    rng = random.Random(repr((plan.me, plan.servers, plan.accounts, plan.streams)))
    replicas = []
    for server in plan.servers:
        if server == plan.me:
            continue
        peer = _peer(server, rng.random() < 0.7, rng.choice((0, rng.randrange(1, 10**10))))
        if rng.random() < 0.2:
            peer["offline"] = True
        if rng.random() < 0.3:
            peer["lag"] = rng.randrange(1, 10**6)
        replicas.append(peer)
    snapshot: dict = {"pending_entries": rng.randrange(100), "pending_size": rng.randrange(10**6),
                      "last_time": "0001-01-01T00:00:00Z"}
    if rng.random() < 0.5:
        snapshot.update(last_time=_NOW, last_duration=rng.randrange(1, 10**9))
    return {"name": "A", "leader": plan.servers[-1], "peer": "JStu5IeU", "replicas": replicas,
            "cluster_size": len(plan.servers), "quorum_needed": len(plan.servers) // 2 + 1,
            "pending": 0, "pending_requests": 0, "pending_infos": 0, "snapshot": snapshot}


def _cluster(rng: random.Random, plan: Plan, leader: str, replicated: bool,
             group: str) -> dict:
    cluster: dict = {"name": "A"}
    if not replicated:
        cluster["leader"] = leader
        return cluster
    cluster["raft_group"] = group
    cluster["leader"] = leader
    if leader == plan.me:
        cluster["leader_since"] = _NOW
    cluster["system_account"] = True
    cluster["traffic_account"] = "SYS"
    # Every peer but the one answering, the leader included when it is another.
    cluster["replicas"] = [_peer(server, rng.random() < 0.95, rng.randrange(10**9))
                           for server in plan.servers if server != plan.me]
    return cluster


def _stream_config(rng: random.Random, plan: Plan, name: str, r3: bool, mirror: str | None,
                   sources: list[str], metadata: dict) -> dict:
    config: dict = {"name": name}
    if mirror is None:
        config["subjects"] = [f"{name.lower()}.>"]
    limited = rng.random() < 0.5
    config.update({
        "retention": "limits", "max_consumers": -1,
        "max_msgs": rng.randrange(10**5, 10**7) if limited else -1,
        "max_bytes": rng.randrange(1 << 20, 1 << 34) if limited else -1,
        "max_age": 86400 * 10**9 if limited else 0,
        "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old", "storage": "file",
        "num_replicas": 3 if r3 else 1})
    if mirror is None:
        config["duplicate_window"] = 120000000000
    else:
        config["mirror"] = {"name": mirror}
    if sources:
        config["sources"] = [{"name": source} for source in sources]
    config.update({
        "compression": "none", "allow_direct": False, "mirror_direct": False, "sealed": False,
        "deny_delete": False, "deny_purge": False, "allow_rollup_hdrs": False,
        "consumer_limits": {}, "allow_msg_ttl": False,
        "metadata": {"_nats.req.level": "0", **metadata}})
    return config


def _state(rng: random.Random, consumers: int) -> dict:
    last = rng.randrange(10**7)
    first = rng.randrange(1, last + 2)
    messages = last - first + 1
    state: dict = {"messages": messages, "bytes": messages * rng.randrange(60, 2000),
                   "first_seq": first, "first_ts": _NOW, "last_seq": last, "last_ts": _NOW}
    subjects = rng.randrange(0, 50)
    if subjects:
        state["num_subjects"] = subjects
    deleted = rng.randrange(0, 3)
    if deleted:
        state["num_deleted"] = deleted
    state["consumer_count"] = consumers
    return state


def _consumer(rng: random.Random, plan: Plan, stream: str, stream_r3: bool,
              stream_last: int, durable: bool) -> dict:
    name = _name(rng, rng.choice((8, 22))) if not durable else f"dur-{_name(rng, 6)}"
    config: dict = {}
    if durable:
        config["durable_name"] = name
    config.update({"name": name, "deliver_policy": "all", "ack_policy": "explicit",
                   "ack_wait": 30000000000, "max_deliver": -1})
    if not durable:
        config["filter_subject"] = f"{stream.lower()}.>"
    config.update({"replay_policy": "instant", "max_waiting": 512, "max_ack_pending": 1000})
    if not durable:
        config["inactive_threshold"] = 5000000000
    config["num_replicas"] = 0
    metadata = {"_nats.req.level": "0"}
    if durable and rng.random() < 0.5:
        metadata.update(plan.consumer_metadata)
    config["metadata"] = metadata
    delivered = rng.randrange(0, stream_last + 1)
    floor = rng.randrange(0, delivered + 1)
    ack_pending = delivered - floor
    replicated = durable and stream_r3
    leader = plan.me if not replicated else rng.choice(plan.servers)
    consumer: dict = {
        "stream_name": stream, "name": name, "created": _NOW, "config": config,
        "delivered": {"consumer_seq": delivered, "stream_seq": delivered},
        "ack_floor": {"consumer_seq": floor, "stream_seq": floor},
        "num_ack_pending": ack_pending, "num_redelivered": rng.randrange(0, 3),
        "num_waiting": rng.randrange(0, 2), "num_pending": stream_last - delivered,
        "cluster": _cluster(rng, plan, leader, replicated, f"C-R3F-{_name(rng, 8)}"),
    }
    if delivered:
        consumer["delivered"]["last_active"] = _NOW
        consumer["ack_floor"]["last_active"] = _NOW
    if not durable and rng.random() < 0.3:
        consumer["push_bound"] = True
    consumer["ts"] = _NOW
    return consumer


def _split(total: int, parts: int) -> Iterator[int]:
    for i in range(parts):
        yield total // parts + (1 if i < total % parts else 0)


def document(plan: Plan, seed: int) -> dict:
    """The body as a dict, in nats-server's key order."""
    rng = random.Random(seed)
    names = [f"S{i:05d}_{_name(rng, 4)}" for i in range(plan.streams)]
    per_stream = list(_split(plan.consumers, plan.streams)) if plan.streams else []
    accounts: list[dict] = []
    totals = {"messages": 0, "bytes": 0}
    index = 0
    for a, count in enumerate(_split(plan.streams, plan.accounts)):
        details = []
        for _ in range(count):
            name = names[index]
            r3 = rng.random() < plan.r3
            leader = rng.choice(plan.servers) if r3 else plan.me
            mirror = sources = None
            roll = rng.random()
            if index and roll < plan.mirrors:
                mirror = names[rng.randrange(index)]
            elif index and roll < plan.mirrors + plan.sourced:
                sources = sorted({names[rng.randrange(index)] for _ in range(2)})
            metadata = dict(plan.stream_metadata) if index % 2 == 0 else {}
            state = _state(rng, per_stream[index])
            stream: dict = {
                "name": name, "created": _NOW,
                "cluster": _cluster(rng, plan, leader, r3, f"S-R3F-{_name(rng, 8)}"),
                "config": _stream_config(rng, plan, name, r3, mirror, sources or [], metadata),
                "state": state,
            }
            consumers = [_consumer(rng, plan, name, r3, state["last_seq"],
                                   rng.random() < plan.durable)
                         for _ in range(per_stream[index])]
            if consumers:
                stream["consumer_detail"] = consumers
            if leader == plan.me and mirror is not None:
                stream["mirror"] = {"name": mirror, "lag": rng.randrange(0, 100),
                                    "active": rng.randrange(10**9)}
            if leader == plan.me and sources:
                stream["sources"] = [{"name": source, "lag": rng.randrange(0, 100),
                                      "seq": rng.randrange(10**6),
                                      "active": rng.randrange(10**9)} for source in sources]
            totals["messages"] += state["messages"]
            totals["bytes"] += state["bytes"]
            details.append(stream)
            index += 1
        account = f"ACC{a:04d}"
        entry: dict = {
            "name": account, "id": account, "memory": 0,
            "storage": sum(s["state"]["bytes"] for s in details),
            "reserved_memory": 18446744073709551615, "reserved_storage": 1 << 40,
            "accounts": 0, "ha_assets": 0, "api": {"level": 0, "total": rng.randrange(10**6),
                                                   "errors": rng.randrange(100)}}
        if details:
            entry["stream_detail"] = details
        accounts.append(entry)
    return {
        "memory": 0, "storage": totals["bytes"], "reserved_memory": 0,
        "reserved_storage": 1 << 40, "accounts": plan.accounts,
        "ha_assets": 1 + sum(1 for a in accounts for s in a.get("stream_detail", ())
                             if "raft_group" in s["cluster"]),
        "api": {"level": 5, "total": rng.randrange(10**7), "errors": rng.randrange(1000)},
        "server_id": "N" + _name(rng, 55).upper(), "now": _NOW,
        "config": {"max_memory": 67108864, "max_storage": 1 << 40,
                   "store_dir": "/data/jetstream", "sync_interval": 120000000000,
                   "compress_ok": True, "strict": True},
        "limits": {"default_max_consumers": 1000},
        "streams": plan.streams, "consumers": plan.consumers,
        "messages": totals["messages"], "bytes": totals["bytes"],
        "meta_cluster": _meta_cluster(plan),
        "account_details": accounts,
        "total": plan.accounts,
    }


def render(doc: dict) -> bytes:
    """Pretty-printed as nats-server does (two-space indent)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def generate(plan: Plan | None = None, seed: int = 1) -> bytes:
    return render(document(plan or Plan(), seed))


def page(doc: dict, offset: int, limit: int) -> dict:
    """The page nats-server 2.15 answers for ``offset`` and ``limit``: accounts sorted by name."""
    accounts = sorted(doc.get("account_details", ()), key=lambda a: a["id"])
    out = {key: value for key, value in doc.items() if key != "total"}
    out["account_details"] = accounts[offset:offset + limit]
    if not out["account_details"]:
        del out["account_details"]
    out["total"] = doc["total"]
    return out


def shape(doc: dict) -> dict[str, set[tuple[str, ...]]]:
    """The key orders of each kind of object in a body (the distinct tuples of keys), to
    compare a generated body with a recorded one."""
    kinds: dict[str, set[tuple[str, ...]]] = {}

    def note(kind: str, obj: dict) -> None:
        kinds.setdefault(kind, set()).add(tuple(obj))

    note("top", doc)
    note("meta_cluster", doc["meta_cluster"])
    for account in doc.get("account_details", ()):
        note("account", account)
        for stream in account.get("stream_detail", ()):
            note("stream", stream)
            note("stream.cluster", stream["cluster"])
            note("stream.config", stream["config"])
            note("stream.state", stream["state"])
            for peer in stream["cluster"].get("replicas", ()):
                note("peer", peer)
            for key in ("mirror",):
                if key in stream:
                    note("source", stream[key])
            for source in stream.get("sources", ()):
                note("source", source)
            for consumer in stream.get("consumer_detail", ()):
                note("consumer", consumer)
                note("consumer.config", consumer["config"])
                note("consumer.cluster", consumer["cluster"])
                note("consumer.delivered", consumer["delivered"])
    return kinds


def precedence(orders: set[tuple[str, ...]]) -> set[tuple[str, str]]:
    """Every (a, b) with key a before key b in one of ``orders``."""
    return {(a, b) for keys in orders for i, a in enumerate(keys) for b in keys[i + 1:]}
