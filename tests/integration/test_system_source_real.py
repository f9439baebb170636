"""The system-account source against the real supercluster: discovery, each endpoint by server
id next to its HTTP twin, compression, credentials, and the collectors reading through it."""

from __future__ import annotations

import asyncio
import json

import pytest

from fastnats.collectors.base import ServerContext
from fastnats.collectors.connz import ConnzCollector, ConnzOptions
from fastnats.collectors.varz import VarzCollector
from fastnats.errors import ScrapeError
from fastnats.fleet import active_servers
from fastnats.sources import system
from fastnats.sources.system import (
    NatsOptions,
    SystemAccount,
    SystemAccountError,
    SystemSource,
    reply_data,
)
from tests.support import cluster

pytestmark = pytest.mark.integration


def options(sc: cluster.Supercluster, user: str = cluster.ACCOUNTS["SYS"][0],
            password: str = cluster.ACCOUNTS["SYS"][1]) -> NatsOptions:
    return NatsOptions(tuple(f"nats://127.0.0.1:{n.client_port}" for n in sc.nodes),
                       user=user, password=password)


async def connected(sc: cluster.Supercluster) -> SystemAccount:
    account = SystemAccount(options(sc))
    await account.connect(timeout=10)
    return account


async def servers(account: SystemAccount, count: int) -> dict[str, dict]:
    """The servers as the fleet discovers them, waiting for as many as ``active_servers``;
    asked again until ``count`` answer, as a fleet's next refresh would: just after a start,
    the servers' system accounts have not all heard of each other yet."""
    for _ in range(100):
        replies = await account.ping_timed("STATSZ", None, timeout=5,
                                           expected_of=active_servers)
        stats = [json.loads(reply) for reply, _ in replies]
        if len(stats) == count:
            break
        await asyncio.sleep(0.1)
    assert len(stats) == max(s["statsz"]["active_servers"] for s in stats)
    return {s["server"]["name"]: s["server"] for s in stats}


def test_ping_finds_every_server(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        account = await connected(supercluster)
        try:
            found = await servers(account, len(supercluster.nodes))
            assert sorted(found) == sorted(n.name for n in supercluster.nodes)
        finally:
            await account.close()
    asyncio.run(run())


def test_endpoints_by_id_equal_http(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        account = await connected(supercluster)
        try:
            found = await servers(account, len(supercluster.nodes))
            for node in supercluster.nodes:
                source = SystemSource(account, found[node.name]["id"], 10.0)
                varz = json.loads(await source.get("varz"))
                assert varz["server_id"] == found[node.name]["id"]
                assert varz["server_id"] == node.get("varz")["server_id"]
                connz = json.loads(await source.get("connz", {"state": "open", "limit": 1000,
                                                              "auth": "true",
                                                              "subs": "false"}))
                http = node.get("connz", state="open", limit=1000, auth="true")
                assert connz["num_connections"] == http["num_connections"]
                assert connz["server_id"] == http["server_id"]
                closed = json.loads(await source.get("connz", {"state": "closed",
                                                               "sort": "stop", "limit": 5}))
                assert "connections" in closed
                health = json.loads(await source.get("healthz", {"details": "true"}))
                assert health["status"] == node.get("healthz", details="true")["status"]
                jsz = json.loads(await source.get("jsz", {"accounts": "true"}))
                assert jsz["server_id"] == found[node.name]["id"]
                statz = json.loads(await source.get("accstatz", {"unused": "true"}))
                assert statz["server_id"] == found[node.name]["id"]
                assert {a["acc"] for a in statz["account_statz"]} >= {"T1", "T2"}
        finally:
            await account.close()
    asyncio.run(run())


def test_compressed_and_plain_replies_are_equal(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        account = await connected(supercluster)
        try:
            found = await servers(account, len(supercluster.nodes))
            for ident in [s["id"] for s in found.values()]:
                body = {"auth": True, "limit": 1000}
                plain = reply_data("connz", await account.request(
                    ident, "CONNZ", body, timeout=10, compress=False))
                packed = reply_data("connz", await account.request(
                    ident, "CONNZ", body, timeout=10, compress=True))
                a, b = json.loads(plain), json.loads(packed)
                for doc in (a, b):
                    doc.pop("now")
                    for conn in doc["connections"]:
                        for key in ("last_activity", "idle", "rtt", "uptime", "in_msgs",
                                    "out_msgs", "in_bytes", "out_bytes", "pending_bytes"):
                            conn.pop(key, None)
                assert a == b
                with pytest.raises(ScrapeError) as err:
                    await account.request(ident, "CONNZ", body, timeout=10, max_bytes=100)
                assert err.value.reason == "too_large"
        finally:
            await account.close()
    asyncio.run(run())


def test_unknown_endpoint_is_not_served(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        account = await connected(supercluster)
        try:
            ident = next(iter((await servers(account, len(supercluster.nodes))).values()))["id"]
            source = SystemSource(account, ident, 5.0)
            # An endpoint no nats-server serves stands for one an older server lacks.
            system.PARAMS["nopez"] = {}
            try:
                with pytest.raises(ScrapeError) as err:
                    await source.get("nopez")
            finally:
                del system.PARAMS["nopez"]
            assert (err.value.reason, err.value.status) == ("http_status", 404)
            with pytest.raises(ScrapeError) as err:
                await SystemSource(account, "NGONE", 2.0).get("varz")
            assert err.value.reason in ("connect", "timeout")
        finally:
            await account.close()
    asyncio.run(run())


def test_bad_credentials_and_non_system_user(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        with pytest.raises(SystemAccountError, match="authorization violation"):
            await SystemAccount(options(supercluster, "sys", "wrong")).connect(timeout=5)
        with pytest.raises(SystemAccountError, match="account T1, which is not the system"):
            await SystemAccount(options(supercluster, "t1", "t1")).connect(timeout=5)
    asyncio.run(run())


def test_collectors_read_through_the_system_source(supercluster: cluster.Supercluster) -> None:
    async def run() -> None:
        account = await connected(supercluster)
        try:
            found = await servers(account, len(supercluster.nodes))
            node = supercluster.hub
            source = SystemSource(account, found[node.name]["id"], 10.0)
            context = ServerContext(node.name, "127.0.0.1")
            info = await VarzCollector(context).read(source)
            assert info.server_id == node.get("varz")["server_id"]
            connz = ConnzCollector(context, ConnzOptions())
            await connz.refresh(source, info)
            assert connz.aggregator.count == node.get("connz")["num_connections"]
        finally:
            await account.close()
    asyncio.run(run())
