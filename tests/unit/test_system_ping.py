"""The system account's PING without a server: how many replies it waits for (the largest
``active_servers`` a reply gives, never cut at ``expected``), the gap after the last reply, the
patience learnt from the slowest reply of the ping before, and the late replies read after the
gap by a task of their own."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import nats.errors

from fastnats.fleet import active_servers
from fastnats.sources.system import NatsOptions, SystemAccount


@dataclass
class Msg:
    data: bytes
    headers: dict[str, str] | None = None


@dataclass
class Sub:
    subject: str
    queue: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)
    #: Calls of next_msg, those that timed out included.
    reads: int = 0
    unsubscribed: bool = False

    async def next_msg(self, timeout: float) -> Msg:
        self.reads += 1
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise nats.errors.TimeoutError from None

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class Fleet:
    """A connected client whose servers answer a PING after the given seconds each."""

    is_connected = True

    def __init__(self, delays: dict[str, float], active: int | None = None) -> None:
        self.delays = delays
        self.active = len(delays) if active is None else active
        self.subs: list[Sub] = []

    def new_inbox(self) -> str:
        return f"_INBOX.{len(self.subs)}"

    async def subscribe(self, subject: str, pending_bytes_limit: int) -> Sub:
        self.subs.append(sub := Sub(subject))
        return sub

    async def publish(self, subject: str, payload: bytes, reply: str,
                      headers: dict[str, str] | None = None) -> None:
        sub = next(s for s in self.subs if s.subject == reply)
        loop = asyncio.get_running_loop()
        for name, delay in self.delays.items():
            reply_body = json.dumps({"server": {"id": name, "name": name},
                                     "statsz": {"active_servers": self.active}}).encode()
            loop.call_later(delay, sub.queue.put_nowait, Msg(reply_body))


def account_of(client: Fleet) -> SystemAccount:
    account = SystemAccount(NatsOptions(("nats://127.0.0.1:4222",)))
    account._nc = client  # type: ignore[assignment]
    return account


def names(replies: list[tuple[bytes, float]]) -> list[str]:
    return sorted(json.loads(reply)["server"]["id"] for reply, _ in replies)


def test_a_ping_ends_once_every_active_server_answered():
    client = Fleet({"A1": 0.001, "A2": 0.002, "A3": 0.003})

    async def scenario():
        account = account_of(client)
        replies = await account.ping_timed("STATSZ", None, timeout=5,
                                           expected_of=active_servers)
        assert names(replies) == ["A1", "A2", "A3"]
        # Three reads and no fourth: it did not wait out a gap for a reply no one owes.
        assert client.subs[0].reads == 3 and client.subs[0].unsubscribed

    asyncio.run(scenario())


def test_expected_servers_never_cut_the_ping_short():
    # --fleet.expected-servers 2 on a fleet of four: the replies say four.
    client = Fleet({"A1": 0.001, "A2": 0.002, "B1": 0.003, "B2": 0.004})

    async def scenario():
        replies = await account_of(client).ping_timed("STATSZ", None, timeout=5, expected=2,
                                                      expected_of=active_servers)
        assert names(replies) == ["A1", "A2", "B1", "B2"]

    asyncio.run(scenario())


def test_a_reply_after_the_gap_is_late_and_the_next_ping_waits_for_it():
    # A remote cluster answers 300 ms after the local servers, far past the 50 ms gap.
    client = Fleet({"A1": 0.001, "A2": 0.002, "B1": 0.3})
    late: list[tuple[str, float]] = []

    def heard(reply: bytes, rtt: float) -> None:
        late.append((json.loads(reply)["server"]["id"], rtt))

    async def scenario():
        account = account_of(client)
        first = await account.ping_timed("STATSZ", None, timeout=5,
                                         expected_of=active_servers, late=heard)
        assert names(first) == ["A1", "A2"]
        assert late == [] and not client.subs[0].unsubscribed
        while not client.subs[0].unsubscribed:
            await asyncio.sleep(0.01)
        assert [name for name, _ in late] == ["B1"] and late[0][1] >= 0.3
        # The next ping waits for the slowest reply of this one, with a margin.
        second = await account.ping_timed("STATSZ", None, timeout=5,
                                          expected_of=active_servers, late=heard)
        assert names(second) == ["A1", "A2", "B1"]
        assert len(late) == 1 and client.subs[1].unsubscribed

    asyncio.run(scenario())


def test_a_server_that_never_answers_costs_the_gap_not_the_timeout():
    # active_servers still counts a server that died without a word; the others are served.
    client = Fleet({"A1": 0.001, "A2": 0.002}, active=3)
    late: list[bytes] = []

    async def scenario():
        account = account_of(client)
        ping = account.ping_timed("STATSZ", None, timeout=30, expected_of=active_servers,
                                  late=lambda reply, rtt: late.append(reply))
        replies = await asyncio.wait_for(ping, 10)
        assert names(replies) == ["A1", "A2"]
        # The late reader listens until the timeout; closing the account ends it.
        assert not client.subs[0].unsubscribed
        await account.close()
        assert client.subs[0].unsubscribed and late == []

    asyncio.run(scenario())


def test_active_servers_of_a_reply():
    assert active_servers(b'{"server":{"id":"N"},"statsz":{"active_servers":6}}') == 6
    for reply in (b'{"statsz":{"active_servers":0}}', b'{"statsz":{"active_servers":"6"}}',
                  b'{"statsz":{"active_servers":true}}', b'{"statsz":{}}', b'{}', b'[]',
                  b'not json', b'{"statsz":[]}'):
        assert active_servers(reply) is None, reply
