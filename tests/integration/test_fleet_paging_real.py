"""Paged CONNZ over the system account against a real nats-server with ``max_payload: 64KB``
and a few hundred connections: what the server does with a reply over that size, and the paged
read, which lists every connection, as HTTP /connz does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastnats.collectors.base import ServerContext
from fastnats.collectors.connz import ConnzCollector, ConnzOptions
from fastnats.collectors.varz import VarzCollector
from fastnats.nats import launcher
from fastnats.sources.system import NatsOptions, SystemAccount, SystemSource, reply_data
from tests.support.crowd import Crowd
from tests.support.process import http_get, running_nats

pytestmark = pytest.mark.integration

MAX_PAYLOAD = 64 * 1024
CONNECTIONS = 400
CONF = f"""
max_payload: {MAX_PAYLOAD}
accounts {{
  SYS {{ users [{{user: sys, password: sys}}] }}
  APP {{ users [{{user: app, password: app}}] }}
}}
system_account: SYS
no_auth_user: app
"""


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.NatsServer]:
    conf = Path(tmp_path_factory.mktemp("paging")) / "server.conf"
    conf.write_text(CONF)
    with running_nats("-c", str(conf)) as server:
        crowd = Crowd(server.client_port, CONNECTIONS, "paged", varied=True)
        try:
            yield server
        finally:
            crowd.close()


def http_connz(server: launcher.NatsServer, **params: object) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return json.loads(http_get(f"{server.monitor_url}/connz?{query}"))


class Measured(SystemAccount):
    """The system account, keeping the size on the wire of every reply."""

    sizes: list[int]

    async def request_sized(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        reply, wire = await super().request_sized(*args, **kwargs)
        self.sizes.append(wire)
        return reply, wire


async def connected(server: launcher.NatsServer, cap: int | None = None) -> Measured:
    account = Measured(NatsOptions((f"nats://127.0.0.1:{server.client_port}",), user="sys",
                                   password="sys"), max_payload=cap)
    account.sizes = []
    await account.connect(timeout=10)
    return account


def test_an_oversize_reply_reaches_a_client_of_the_same_server(crowded) -> None:
    # nats-server does not hold its own replies to max_payload: a direct client gets it whole.
    async def run() -> None:
        account = await connected(crowded)
        try:
            assert account.max_payload == MAX_PAYLOAD
            ident = http_connz(crowded, limit=1)["server_id"]
            reply = await account.request(ident, "CONNZ", {"limit": 2 * CONNECTIONS,
                                                           "auth": True},
                                          timeout=10, compress=False)
            assert len(reply) > MAX_PAYLOAD
            data = json.loads(reply_data("connz", reply))
            assert data["num_connections"] >= CONNECTIONS
        finally:
            await account.close()
    asyncio.run(run())


@pytest.mark.parametrize("cap", [None, 8 * 1024])
def test_paged_reads_list_every_connection_as_http_does(crowded, cap: int | None) -> None:
    async def run() -> None:
        account = await connected(crowded, cap)
        try:
            fits = account.max_payload
            assert fits == (cap or MAX_PAYLOAD)
            ident = http_connz(crowded, limit=1)["server_id"]
            source = SystemSource(account, ident, 10.0)
            context = ServerContext("paged", "127.0.0.1")
            collector = ConnzCollector(context, ConnzOptions())
            for attempt in range(2):   # the first read estimates, the second has measured
                account.sizes.clear()
                info = await VarzCollector(context).read(source)
                await collector.refresh(source, info)
                http = http_connz(crowded, limit=10_000, auth="true")
                assert collector.aggregator.count == http["num_connections"] > CONNECTIONS
                assert max(account.sizes) <= fits
                if attempt == 0:
                    # 400 connections at 400 B each would not fit: /varz, then pages.
                    assert len(account.sizes) >= 4
                pages = await source.get_pages("connz", {"state": "open", "auth": "true",
                                                         "limit": 2 * CONNECTIONS})
                listed = {c["cid"] for page in pages for c in json.loads(page)["connections"]}
                assert listed == {c["cid"] for c in http["connections"]}
                if cap is not None:
                    assert len(pages) > 1
        finally:
            await account.close()
    asyncio.run(run())
