"""Fleet /jsz paging across leafnode hops, against real servers: hub <- middle leaf with
``max_payload: 8KB`` <- far leaf, the system account bound across each hop
(tests.support.leafchain). The far leaf runs JetStream with twelve accounts of streams and durable
consumers: its whole /jsz listing takes well over 8 KB on the wire, snappy and all, and one
account's listing well under.

An exporter connected to the hub reads the far leaf's /jsz over the system account; the reply
crosses the middle leaf, which closes the far leaf's link for a message over its 8 KB. Read in
one page of 1024 accounts, that happened at every refresh (nats-server 2.15.1, before /jsz was
paged to fit). Paged by account to fit, the far leaf's streams and consumers as exported equal
its HTTP /jsz, and no leafnode connection was closed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import nats
import pytest
from nats.js import api

from fastnats.collectors.jsz import PAGE_FILL
from fastnats.nats import launcher
from fastnats.sources.system import HEADERS_ROOM, NatsOptions, SystemAccount, SystemSource
from tests.support.leafchain import SYS_USER, leaf_ids, payload_errors, samples_of, write_conf
from tests.support.process import exporting, http_get, running_nats, wait_until

pytestmark = pytest.mark.integration

SMALL = 8 * 1024
ACCOUNTS = tuple(f"J{i}" for i in range(12))
STREAMS, CONSUMERS, MESSAGES = 3, 3, 5
FULL = {"accounts": "true", "streams": "true", "consumers": "true", "config": "true"}
SEED = 20261130


async def populate(port: int) -> None:
    """In each account, streams with consumers, names and descriptions random enough that
    snappy cannot fold the listing away, and messages pending for every consumer."""
    print(f"leaf /jsz seed {SEED}")
    rng = random.Random(SEED)
    for account in ACCOUNTS:
        user = account.lower()
        nc = await nats.connect(f"nats://{user}:{user}@127.0.0.1:{port}")
        try:
            js = nc.jetstream()
            for s in range(STREAMS):
                name = f"{account}_S{s}_{rng.randbytes(6).hex()}"
                subject = f"{user}.{rng.randbytes(4).hex()}"
                await js.add_stream(api.StreamConfig(
                    name=name, subjects=[f"{subject}.>"], description=rng.randbytes(12).hex(),
                    max_msgs=rng.randrange(1000, 10**6),
                    metadata={"owner": rng.randbytes(5).hex()}))
                for i in range(rng.randrange(1, MESSAGES + 1)):
                    await js.publish(f"{subject}.{i}", rng.randbytes(8))
                for _ in range(CONSUMERS):
                    await js.add_consumer(name, api.ConsumerConfig(
                        durable_name=f"d_{rng.randbytes(5).hex()}",
                        description=rng.randbytes(10).hex(),
                        ack_policy=api.AckPolicy.EXPLICIT))
        finally:
            await nc.close()


async def wire_sizes(far: launcher.NatsServer) -> tuple[int, list[int]]:
    """The far leaf's whole /jsz listing and each account's alone, in bytes on the wire, read
    over the system account at the far leaf itself: no hop on the way."""
    account = SystemAccount(NatsOptions((f"nats://127.0.0.1:{far.client_port}",),
                                        user=SYS_USER, password=SYS_USER))
    await account.connect()
    try:
        ident = json.loads(http_get(f"{far.monitor_url}/varz"))["server_id"]
        source = SystemSource(account, ident, 5.0)
        whole = (await source.get_sized("jsz", FULL))[1]
        each = [(await source.get_sized("jsz", {**FULL, "offset": i, "limit": 1}))[1]
                for i in range(len(ACCOUNTS))]
    finally:
        await account.close()
    return whole, each


def http_jsz(far: launcher.NatsServer) -> tuple[dict, dict]:
    """The far leaf's streams' messages and durable consumers' pending, from its HTTP /jsz."""
    query = "&".join(f"{key}={value}" for key, value in FULL.items())
    doc = json.loads(http_get(f"{far.monitor_url}/jsz?{query}"))
    streams, consumers = {}, {}
    for account in doc["account_details"]:
        for stream in account.get("stream_detail", []):
            streams[(account["id"], stream["name"])] = stream["state"]["messages"]
            for consumer in stream.get("consumer_detail", []):
                consumers[(account["id"], stream["name"], consumer["name"])] = \
                    consumer["num_pending"]
    return streams, consumers


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[launcher.NatsServer, launcher.NatsServer,
                                            list[launcher.NatsServer]]]:
    """(hub, far leaf with JetStream, every server)."""
    with ExitStack() as stack:
        hub = stack.enter_context(running_nats("-c", str(write_conf(tmp_path, "hub", 1 << 20))))
        middle = stack.enter_context(running_nats("-c", str(write_conf(
            tmp_path, "middle", SMALL, remote_port=hub.ports["leafnode"]))))
        far = stack.enter_context(running_nats("-c", str(write_conf(
            tmp_path, "far", 1 << 20, remote_port=middle.ports["leafnode"], listen=False,
            jetstream_accounts=ACCOUNTS))))
        servers = [hub, middle, far]
        wait_until(lambda: [len(leaf_ids(server)) for server in servers] == [1, 2, 1],
                   timeout=20)
        asyncio.run(populate(far.client_port))
        yield hub, far, servers


def test_a_leafs_jetstream_is_read_in_pages_that_cross_a_small_hop(chain, tmp_path):
    hub, far, servers = chain
    whole, each = asyncio.run(wire_sizes(far))
    print(f"far /jsz on the wire: {whole} bytes whole, {min(each)}-{max(each)} per account")
    # The premise: one page of every account cannot cross the middle leaf; one account can,
    # with room for a few in a page.
    assert whole > 2 * SMALL
    assert max(each) < (SMALL - HEADERS_ROOM) * PAGE_FILL / 2
    streams, consumers = http_jsz(far)
    assert len(streams) == len(ACCOUNTS) * STREAMS
    assert len(consumers) == len(ACCOUNTS) * STREAMS * CONSUMERS
    leafs = {server.monitor_url: leaf_ids(server) for server in servers}
    password = tmp_path / "password"
    password.write_text(f"{SYS_USER}\n")
    with exporting("--nats.url", f"nats://127.0.0.1:{hub.client_port}", "--nats.user", SYS_USER,
                   "--nats.password-file", str(password), "--collector.jsz", "--jsz.level",
                   "consumers", "--web.listen-address", "127.0.0.1:0",
                   "--refresh-interval", "0.5s", "--timeout", "3s") as exporter:
        def exported(text: str) -> tuple[dict, dict]:
            return (samples_of(text, "nats_jetstream_stream_messages", "far",
                               ("account", "stream")),
                    samples_of(text, "nats_jetstream_consumer_pending_messages", "far",
                               ("account", "stream", "consumer")))

        def read() -> str | None:
            text = exporter.scrape()
            return text if exported(text) == (streams, consumers) else None

        def errors(text: str) -> dict[tuple[str, ...], float]:
            return {key: count for key, count in samples_of(
                text, "fastnats_refresh_errors_total", "far", ("endpoint", "reason")).items()
                if count}

        try:
            text = wait_until(read, timeout=20)
        except AssertionError:
            text = exporter.scrape()
            got_streams, got_consumers = exported(text)
            pytest.fail(f"far: {len(got_streams)} streams and {len(got_consumers)} consumers "
                        f"exported, {len(streams)} and {len(consumers)} in HTTP /jsz; errors "
                        f"{errors(text)}; {payload_errors(servers)[:4]}")
        # Two more refreshes, each paged again, then nothing was refused on the way.
        refreshes = samples_of(text, "fastnats_refreshes_total", "far")[()]
        wait_until(lambda: samples_of(exporter.scrape(), "fastnats_refreshes_total", "far")[()]
                   >= refreshes + 2, timeout=10)
        text = exporter.scrape()
        assert exported(text) == (streams, consumers)
        assert errors(text) == {}
    assert {server.monitor_url: leaf_ids(server) for server in servers} == leafs
    assert not payload_errors(servers)
