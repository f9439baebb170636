"""Counters across failures and restarts: a server that fails refreshes keeps its counters (they
never go backwards), and a server that restarts shows a visible reset, never a silent jump."""

from __future__ import annotations

import asyncio

import pytest

from fastnats.collector import ServerCollector
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.natsclient import RawClient
from tests.support.process import frozen, running_nats

pytestmark = pytest.mark.integration

RECEIVED = "nats_server_total_bytes_received"
PAYLOAD = "nats_server_total_payload_bytes_received"


def value(server: ServerCollector, name: str) -> int:
    [(_, found)] = server.snapshot[name]
    return int(found)


def test_wire_counters_survive_a_stopped_server_without_going_back():
    async def run() -> None:
        with running_nats() as nats:
            session = new_session()
            try:
                # A short timeout only for the frozen server: the others must succeed on a
                # loaded machine, the one right after SIGCONT included.
                patient = MonitorClient(nats.monitor_url, session, 10.0)
                hasty = MonitorClient(nats.monitor_url, session, 0.5)
                server = ServerCollector(Target("local", nats.monitor_url), patient,
                                         {"wire": None})
                client = RawClient(nats.client_port, "load")
                payload = b"x" * 1000
                for _ in range(1000):
                    client.pub("load", payload)
                client.flush()
                await server.refresh()
                assert server.up and server.collector("wire").counter is not None  # type: ignore[union-attr]
                # Its bytes now live in the counter only: the socket is gone.
                client.close()
                await server.refresh()
                before = value(server, RECEIVED)
                assert before >= value(server, PAYLOAD) >= 1_000_000
                with frozen(nats):
                    server.source = hasty
                    await server.refresh()  # times out: the server is down for this refresh
                    assert not server.up
                    assert RECEIVED not in server.snapshot
                server.source = patient
                await server.refresh()
                assert server.up
                after = value(server, RECEIVED)
                # Never below what was counted before, nor below the payload bytes.
                assert after >= before >= value(server, PAYLOAD)
            finally:
                await session.close()
    asyncio.run(run())


def test_a_restarted_server_shows_a_reset_not_a_jump():
    async def run() -> None:
        session = new_session()
        try:
            with running_nats() as first:
                server = ServerCollector(Target("local", first.monitor_url),
                                         MonitorClient(first.monitor_url, session, 2.0),
                                         {"wire": None, "connz": None})
                clients = [RawClient(first.client_port, "app") for _ in range(3)]
                for client in clients:
                    for _ in range(50):
                        client.pub("x", b"y" * 100)
                    client.flush()
                await server.refresh()
                counted = value(server, RECEIVED)
                [(_, in_msgs)] = server.snapshot["nats_client_in_messages_total"]
                assert in_msgs == 150
                for client in clients:
                    client.close()
            # The same exporter state meets a new server: a new identity.
            with running_nats() as second:
                server.source = MonitorClient(second.monitor_url, session, 2.0)
                client = RawClient(second.client_port, "app")
                client.pub("x", b"y")
                client.flush()
                await server.refresh()
                assert server.up
                # Counters restart from the new server's own counts: lower, so Prometheus's
                # rate() sees a reset, and no old count is carried into the new series.
                assert value(server, RECEIVED) < counted
                [(_, in_msgs)] = server.snapshot["nats_client_in_messages_total"]
                assert in_msgs == 1
                client.close()
        finally:
            await session.close()
    asyncio.run(run())
