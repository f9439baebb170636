"""Fleet mode without processes: discovery, shards, slow and down servers, forgetting, and the
fleet flags, against a fake system account with the shape of ``sources.system``."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import pytest

from fastnats import cli
from fastnats import metrics as m
from fastnats.compat import SURVEYOR, Compat
from fastnats.errors import ScrapeError
from fastnats.fleet import Fleet, Shard, labels_of, parse_shard, parse_statsz, shard_of
from fastnats.refresher import Refresher

DATA = Path(__file__).parent.parent / "data"
VARZ = json.loads((DATA / "varz.json").read_text())
TIMEOUT = 0.2


class FakeAccount:
    """The system account of a fleet of fake servers: ``servers`` maps an id to a name;
    ``hung`` servers never answer their requests until released, ``broken`` ones fail them."""

    def __init__(self, servers: Mapping[str, str]) -> None:
        self.servers = dict(servers)
        self.events: Counter[str] = Counter()
        self.fleet_max_payload: int | None = None
        #: Each server's max_payload in its /varz, by id; 1 MB for the others.
        self.max_payloads: dict[str, int] = {}
        #: (server id, fleet_max_payload) at each request.
        self.limits_seen: list[tuple[str, int | None]] = []
        self.hung: dict[str, asyncio.Event] = {}
        self.broken: set[str] = set()
        self.ping_fails = False
        #: Servers whose discovery reply misses the ping's gap (they answer requests).
        self.slow_to_ping: set[str] = set()
        #: Of ``slow_to_ping``, those whose reply comes only after --timeout.
        self.unheard: set[str] = set()
        self.requests: Counter[str] = Counter()

    async def ping_timed(self, endpoint: str, body: dict | None, *, timeout: float,
                         expected: int | None = None,
                         expected_of: Callable[[bytes], int | None] | None = None,
                         late: Callable[[bytes, float], None] | None = None,
                         ) -> list[tuple[bytes, float]]:
        """The replies, the i-th arriving after i + 1 milliseconds; those of ``slow_to_ping``
        come after the gap, to ``late`` if it is given, 200 ms after the request."""
        assert endpoint == "STATSZ"
        if self.ping_fails:
            raise ScrapeError("statsz", "connect", "not connected to the system account")
        replies = [(json.dumps({"server": {"name": name, "host": "10.0.0.1", "id": server_id,
                                           "cluster": "C", "ver": "2.15.1"},
                                "statsz": {"active_servers": len(self.servers)}}).encode(),
                    (i + 1) / 1000, server_id in self.slow_to_ping)
                   for i, (server_id, name) in enumerate(self.servers.items())]
        if late is not None:
            for (reply, _, slow), server_id in zip(replies, self.servers):
                if slow and server_id not in self.unheard:
                    asyncio.get_running_loop().call_soon(late, reply, 0.2)
        return [(reply, rtt) for reply, rtt, slow in replies if not slow]

    def source(self, server_id: str) -> FakeSource:
        return FakeSource(self, server_id)


class FakeSource:
    def __init__(self, account: FakeAccount, server_id: str) -> None:
        self.account = account
        self.server_id = server_id

    async def get(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                  max_bytes: int | None = None,
                  statuses: Collection[int] = (200,)) -> bytearray:
        self.account.requests[self.server_id] += 1
        self.account.limits_seen.append((self.server_id, self.account.fleet_max_payload))
        if self.server_id in self.account.hung:
            await self.account.hung[self.server_id].wait()
        if self.server_id in self.account.broken:
            raise ScrapeError(endpoint, "timeout", "no reply")
        if self.server_id not in self.account.servers:
            # A server that is gone: nats-server answers "no responders" at once.
            raise ScrapeError(endpoint, "connect", "no responders")
        assert endpoint == "varz"
        name = self.account.servers[self.server_id]
        connections = 10 + sum(map(ord, name)) % 50
        return bytearray(json.dumps({
            **VARZ, "server_id": self.server_id, "server_name": name, "connections": connections,
            "max_payload": self.account.max_payloads.get(self.server_id, 1 << 20)}).encode())


def fleet_of(account: FakeAccount, **options) -> Fleet:
    return Fleet(account, account.source, {}, timeout=TIMEOUT, **options)


def samples(fleet: Fleet, name: str) -> dict[tuple[str, ...], object]:
    for metric, _, family in fleet.families():
        if metric.name == name:
            return dict(family)
    return {}


def up(fleet: Fleet) -> dict[str, object]:
    return {labels[0]: value for labels, value in samples(fleet, "nats_up").items()}


def run(coro):
    return asyncio.run(coro)


SERVERS = {"NID1": "A1", "NID2": "A2", "NID3": "B1"}


def test_the_shard_hash_is_the_documented_one():
    # Pinned: worked out once with the command in docs/deploy.md (the first 8 bytes of the
    # label's SHA-256, big-endian, modulo n), so that a change of the rule cannot pass.
    # Modulo 2**64 the shard is those 8 bytes themselves.
    pinned = {"A1": (0x16A36E86F6FED5D4, [0, 0, 1, 4]),
              "NDKF3LQHPW4PS3IE3WZRA7GV6XHZ3R363VJKA2MDFEK5ZTKZPGUGDGSF":
                  (0x4C1CE863F41DBF32, [0, 0, 1, 5]),
              "é": (0x4A99557E4033C353, [0, 1, 0, 3]),  # UTF-8; Latin-1 gives de2e331d...
              "nats-a-0": (0x27C713BF771FCE1E, [0, 0, 0, 1])}
    for label, (first_bytes, shards) in pinned.items():
        assert shard_of(label, 1 << 64) == first_bytes, label
        assert [shard_of(label, n) for n in (1, 2, 3, 7)] == shards, label
    assert [shard_of(f"S{i}", 2) for i in range(8)] == [0, 1, 0, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_partition_any_set_exactly_once(count):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    labels = {"".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=56))
              for _ in range(500)} | {f"nats-{i}" for i in range(50)}
    owners = Counter(index for label in labels for index in range(count)
                     if Shard(index, count).owns(label))
    assert sum(owners.values()) == len(labels)
    assert all(owners[index] > 0 for index in range(count))
    for label in labels:
        assert sum(Shard(index, count).owns(label) for index in range(count)) == 1


def test_parse_shard():
    assert parse_shard("1/2") == Shard(1, 2)
    assert str(parse_shard("0/1")) == "0/1"
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_statsz_replies_and_labels():
    reply = (b'{"server":{"name":"A1","host":"h","id":"NID","cluster":"A","domain":"hub",'
             b'"ver":"2.15.1","tags":["b","a"]},"statsz":{"active_servers":3}}')
    server = parse_statsz(reply)
    assert server.info_sample() == (("A1", "NID", "2.15.1", "A", "hub", "a,b"), 1)
    assert parse_statsz(b'{"server":{"id":"NX"}}').name == "NX"
    with pytest.raises(ValueError):
        parse_statsz(b'{"statsz":{}}')
    twins = [parse_statsz(b'{"server":{"id":"N%d","name":"same"}}' % i) for i in (1, 2)]
    assert sorted(labels_of([*twins, server])) == ["A1", "N1", "N2"]


def test_discovery_gives_every_server_up_and_its_identity():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account, expected=4)
    run(fleet.refresh())
    assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
    info = samples(fleet, "nats_server_info")
    assert {(labels[0], labels[1], labels[2]) for labels in info} == {
        ("A1", "A1", "NID1"), ("A2", "A2", "NID2"), ("B1", "B1", "NID3")}
    assert samples(fleet, "nats_fleet_servers_expected") == {(): 4}
    assert samples(fleet, "nats_fleet_servers_discovered") == {("shard",): 3, ("all",): 3}
    assert samples(fleet, "nats_fleet_servers_responding") == {(): 3}
    assert samples(fleet, "fastnats_nats_connection_events_total") == {
        ("disconnected",): 0, ("error",): 0, ("reconnected",): 0}
    assert samples(fleet, "fastnats_build_info")
    # Each server's round trip of the discovery ping.
    assert samples(fleet, "nats_fleet_server_rtt_seconds") == {
        ("A1",): 0.001, ("A2",): 0.002, ("B1",): 0.003}
    # Every per-server family carries the server label, process-wide ones do not.
    for metric, label_names, _ in fleet.families():
        assert (label_names[:1] == ("server",)) == metric.per_server, metric.name


def test_without_expected_servers_there_is_no_expected_family():
    fleet = fleet_of(FakeAccount(SERVERS))
    run(fleet.refresh())
    assert all(metric is not m.NATS_FLEET_SERVERS_EXPECTED for metric, _, _ in fleet.families())
    assert m.NATS_FLEET_SERVERS_EXPECTED.name not in fleet.label_names


def test_a_server_alone_is_still_labelled_and_an_empty_fleet_renders():
    account = FakeAccount({})
    fleet = fleet_of(account)
    run(fleet.refresh())
    assert up(fleet) == {}
    assert samples(fleet, "nats_fleet_servers_discovered") == {("shard",): 0, ("all",): 0}
    account.servers = {"NID1": "A1"}
    run(fleet.refresh())
    assert up(fleet) == {"A1": 1}


def test_collectors_are_kept_across_refreshes():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)
    run(fleet.refresh())
    first = {s.target.name: s for s in fleet.servers}
    run(fleet.refresh())
    assert {s.target.name: s for s in fleet.servers} == first
    assert all(s.refreshes == 2 for s in fleet.servers)


def test_shards_split_the_fleet_exactly_once():
    servers = {f"NID{i}": f"S{i}" for i in range(20)}
    account = FakeAccount(servers)
    shards = [fleet_of(account, shard=Shard(i, 2)) for i in range(2)]
    seen: list[str] = []
    for fleet in shards:
        run(fleet.refresh())
        seen += up(fleet)
        assert samples(fleet, "nats_fleet_servers_discovered")[("all",)] == 20
    assert sorted(seen) == sorted(servers.values())


def test_a_slow_server_never_delays_the_others():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)

    async def scenario():
        await fleet.refresh()
        clients = samples(fleet, "nats_server_clients")
        before = account.requests["NID2"]
        account.hung["NID2"] = release = asyncio.Event()
        await fleet.refresh()
        # The refresh ended with A2's read still waiting: bounded by the timeout, not by A2.
        # A2 keeps its previous snapshot this round.
        assert fleet.members["A2"].busy
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
        assert samples(fleet, "nats_server_clients") == clients
        await fleet.refresh()
        # Still not done a refresh later: down, its series dropped but its identity kept.
        assert up(fleet) == {"A1": 1, "A2": 0, "B1": 1}
        assert ("A2",) not in samples(fleet, "nats_server_clients")
        assert any(labels[0] == "A2" for labels in samples(fleet, "nats_server_info"))
        assert samples(fleet, "fastnats_refresh_errors_total")[("A2", "varz", "timeout")] >= 1
        assert samples(fleet, "nats_fleet_servers_responding") == {(): 2}
        # Only one read of a server at a time.
        assert account.requests["NID2"] == before + 1
        release.set()
        del account.hung["NID2"]
        await asyncio.sleep(0)
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
        await fleet.close()

    run(scenario())


def test_a_server_that_stops_answering_is_down_within_one_refresh_then_forgotten():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account, forget_after=3)

    async def scenario():
        await fleet.refresh()
        del account.servers["NID3"]
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 0}
        assert {labels[0] for labels in samples(fleet, "nats_server_clients")} == {"A1", "A2"}
        assert not any(labels[0] == "B1" for labels in samples(fleet, "nats_server_info"))
        assert samples(fleet, "fastnats_refresh_errors_total")[("B1", "varz", "connect")] == 1
        assert samples(fleet, "nats_fleet_servers_discovered")[("shard",)] == 2
        await fleet.refresh()
        assert up(fleet)["B1"] == 0
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1}
        assert all(labels[0] != "B1" for labels in samples(fleet, "fastnats_refreshes_total"))

    run(scenario())


def test_a_known_server_missing_one_discovery_is_read_by_its_id_and_stays_up():
    # Its discovery reply came after the ping's gap: a busy fleet, not a server gone.
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)

    async def scenario():
        await fleet.refresh()
        account.slow_to_ping.add("NID3")
        before = account.requests["NID3"]
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
        assert account.requests["NID3"] == before + 1
        assert ("B1",) in {labels[:1] for labels in samples(fleet, "nats_server_clients")}
        # Its reply came while it was read: its round trip, and it counts as discovered.
        assert samples(fleet, "nats_fleet_server_rtt_seconds") == {
            ("A1",): 0.001, ("A2",): 0.002, ("B1",): 0.2}
        assert samples(fleet, "nats_fleet_servers_discovered") == {("shard",): 3, ("all",): 3}
        assert samples(fleet, "nats_fleet_servers_responding") == {(): 3}
        # No reply within --timeout: read by its id all the same, with no round trip.
        account.unheard.add("NID3")
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
        assert samples(fleet, "nats_fleet_server_rtt_seconds") == {
            ("A1",): 0.001, ("A2",): 0.002}
        assert samples(fleet, "nats_fleet_servers_discovered") == {("shard",): 3, ("all",): 2}
        await fleet.close()

    run(scenario())


def test_replies_are_sized_for_the_smallest_max_payload_of_the_whole_fleet():
    # B1 is in the other shard: its max_payload counts all the same, as a reply from A1 may
    # cross it; it is known before any server of the shard is read.
    account = FakeAccount(SERVERS)
    account.max_payloads = {"NID3": 8192}
    shard = next(Shard(i, 2) for i in range(2)
                 if Shard(i, 2).owns("A1") and not Shard(i, 2).owns("B1"))
    fleet = fleet_of(account, shard=shard)
    run(fleet.refresh())
    assert account.fleet_max_payload == 8192
    assert account.requests["NID3"] == 1
    assert samples(fleet, "nats_server_max_payload_bytes")[("A1",)] == 1 << 20
    first_read = {}
    for ident, limit in account.limits_seen:
        first_read.setdefault(ident, []).append(limit)
    assert first_read["NID1"] == [None, 8192]   # learning, then A1's refresh
    # Re-read at each refresh of the shard's servers (a conf reload), once for the others.
    account.max_payloads["NID1"] = 4096
    run(fleet.refresh())
    assert account.fleet_max_payload == 4096
    assert account.requests["NID3"] == 1
    del account.max_payloads["NID1"]
    del account.servers["NID3"]
    run(fleet.refresh())
    assert account.fleet_max_payload == 1 << 20


def test_a_max_payload_not_read_in_time_is_read_at_the_next_refresh():
    account = FakeAccount(SERVERS)
    account.max_payloads = {"NID3": 8192}
    fleet = fleet_of(account, shard=next(Shard(i, 2) for i in range(2)
                                         if not Shard(i, 2).owns("B1")))

    async def scenario():
        account.hung["NID3"] = release = asyncio.Event()
        await fleet.refresh()
        assert account.fleet_max_payload == 1 << 20
        release.set()
        del account.hung["NID3"]
        await fleet.refresh()
        assert account.fleet_max_payload == 8192
        await fleet.close()

    run(scenario())


def test_a_server_whose_requests_fail_is_down_with_its_identity():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)
    run(fleet.refresh())
    account.broken.add("NID1")
    run(fleet.refresh())
    assert up(fleet) == {"A1": 0, "A2": 1, "B1": 1}
    assert ("A1",) not in samples(fleet, "nats_server_clients")
    assert any(labels[:3] == ("A1", "A1", "NID1")
               for labels in samples(fleet, "nats_server_info"))


def test_a_restarted_server_continues_its_collector_with_its_new_id():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)
    run(fleet.refresh())
    a1 = next(s for s in fleet.servers if s.target.name == "A1")
    del account.servers["NID1"]
    account.servers["NID1-again"] = "A1"
    run(fleet.refresh())
    assert next(s for s in fleet.servers if s.target.name == "A1") is a1
    assert up(fleet)["A1"] == 1
    assert any(labels[:3] == ("A1", "A1", "NID1-again")
               for labels in samples(fleet, "nats_server_info"))


def test_a_lost_connection_is_every_server_down_and_counted():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)
    run(fleet.refresh())
    account.ping_fails = True
    account.events.update(disconnected=1)
    run(fleet.refresh())
    assert up(fleet) == {"A1": 0, "A2": 0, "B1": 0}
    assert samples(fleet, "fastnats_nats_connection_events_total")[("disconnected",)] == 1
    assert samples(fleet, "nats_fleet_server_rtt_seconds") == {}
    account.ping_fails = False
    account.events.update(reconnected=1)
    run(fleet.refresh())
    assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}


def test_the_refresher_runs_the_fleet_in_one_loop_and_is_healthy():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account)

    async def scenario():
        refresher = Refresher(fleet, 0.05)
        await refresher.start()
        assert refresher.healthy()
        assert refresher.payload is not None
        assert b'nats_up{server="A2"} 1' in refresher.payload.body
        del account.servers["NID2"]
        deadline = asyncio.get_running_loop().time() + 5
        while b'nats_up{server="A2"} 0' not in refresher.payload.body:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert [t.get_name() for t in refresher._tasks] == ["fastnats-refresh"]
        await refresher.stop()
        await fleet.close()

    run(scenario())


# The flags.

def parse(*argv: str, environ: Mapping[str, str] = {}) -> cli.FleetSettings | None:
    return cli.resolve_fleet(cli.build_parser().parse_args(argv), environ)


def test_fleet_flags():
    fleet = parse("--nats.url", "nats://a:4222", "--nats.url", "nats://b:4222",
                  "--nats.user", "sys", "--nats.password", "s3cret", "--fleet.shard", "1/3",
                  "--fleet.expected-servers", "9")
    assert fleet is not None
    assert fleet.urls == ("nats://a:4222", "nats://b:4222")
    assert (fleet.user, fleet.password, fleet.shard, fleet.expected) == (
        "sys", "s3cret", Shard(1, 3), 9)
    assert parse() is None


def test_secrets_from_a_file_or_the_environment_and_never_in_repr(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    fleet = parse("--nats.url", "nats://a:4222", "--nats.user", "sys",
                  "--nats.password-file", str(secret))
    assert fleet is not None and fleet.password == "from-file"
    fleet = parse("--nats.url", "nats://a:4222", "--nats.user", "sys",
                  environ={cli.PASSWORD_ENV: "from-env", cli.TOKEN_ENV: "tok-env"})
    assert fleet is not None and (fleet.password, fleet.token) == ("from-env", "tok-env")
    assert "from-env" not in repr(fleet) and "tok-env" not in repr(fleet)
    args = cli.build_parser().parse_args(["--nats.url", "nats://a:4222", "--nats.user", "sys",
                                          "--nats.password", "hunter2"])
    assert "hunter2" not in repr(cli.resolve(args))


@pytest.mark.parametrize("argv, message", [
    (("--nats.url", "nats://a:4222", "http://a:8222"), "takes no monitoring URL"),
    (("--nats.url", "nats://a:4222", "--demo"), "takes no monitoring URL"),
    (("--nats.url", "http://a:8222"), "not a NATS URL"),
    (("--nats.user", "sys"), "needs --nats.url"),
    (("--fleet.shard", "0/2"), "needs --nats.url"),
    (("--nats.url", "nats://a", "--nats.password", "x"), "needs --nats.user"),
    (("--nats.url", "nats://a", "--nats.user", "u", "--nats.password", "x",
      "--nats.password-file", "f"), "give one"),
    (("--nats.url", "nats://a", "--nats.tls.cert", "c"), "go together"),
    (("--nats.url", "nats://a", "--nats.user", "u", "--nats.password-file", "/nonexistent"),
     "cannot read"),
])
def test_fleet_usage_errors(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        parse(*argv)


def test_a_bad_shard_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--nats.url", "nats://a", "--fleet.shard", "2/2"])
    assert exited.value.code == 2
    assert "--fleet.shard" in capsys.readouterr().err


def test_help_shows_no_secret(monkeypatch, capsys):
    monkeypatch.setenv(cli.PASSWORD_ENV, "env-secret")
    monkeypatch.setenv(cli.TOKEN_ENV, "env-token")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--nats.password-file" in out and cli.PASSWORD_ENV in out
    assert "env-secret" not in out and "env-token" not in out



def test_a_new_server_that_answers_only_after_the_gap_is_discovered_at_the_next_refresh():
    # A remote cluster behind a gateway answers after the local servers' gap: its reply goes
    # to the late reader, and it is a member from the next refresh on.
    account = FakeAccount({**SERVERS, "NID4": "B2"})
    account.slow_to_ping.add("NID4")
    fleet = fleet_of(account)

    async def scenario():
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1}
        assert fleet.heard_late.keys() == {"NID4"}
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 1, "B2": 1}
        assert samples(fleet, "nats_fleet_server_rtt_seconds")[("B2",)] == 0.2
        assert samples(fleet, "nats_fleet_servers_discovered")[("all",)] == 4
        await fleet.close()

    run(scenario())


def test_a_server_whose_name_another_takes_is_read_under_one_label_only():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account, forget_after=3)

    async def scenario():
        await fleet.refresh()
        account.servers["NID9"] = "A1"
        for _ in range(5):
            await fleet.refresh()
            # Two servers named A1: each by its id, and no longer as A1 as well.
            assert up(fleet) == {"NID1": 1, "NID9": 1, "A2": 1, "B1": 1}
            assert samples(fleet, "nats_fleet_servers_responding") == {(): 4}
            assert samples(fleet, "nats_fleet_servers_discovered") == {("shard",): 4,
                                                                       ("all",): 4}
        # Its max_payload at discovery, then one read a refresh, never two.
        assert account.requests["NID1"] == 1 + 6
        await fleet.close()

    run(scenario())


def test_a_discovery_outage_does_not_count_toward_forgetting():
    account = FakeAccount(SERVERS)
    fleet = fleet_of(account, forget_after=3)

    async def scenario():
        await fleet.refresh()
        account.ping_fails = True
        for _ in range(5):
            await fleet.refresh()
        assert up(fleet) == {"A1": 0, "A2": 0, "B1": 0}
        # Back, but B1's reply misses the gap and its read fails: one refresh without it,
        # not six.
        account.ping_fails = False
        account.slow_to_ping.add("NID3")
        account.broken.add("NID3")
        await fleet.refresh()
        assert up(fleet) == {"A1": 1, "A2": 1, "B1": 0}
        await fleet.close()

    run(scenario())


def test_surveyor_survey_counters_never_fall_when_a_server_is_forgotten():
    account = FakeAccount(SERVERS)
    fleet = Fleet(account, account.source, {}, timeout=TIMEOUT, forget_after=1,
                  compat=Compat(SURVEYOR))

    def survey() -> tuple[float, float]:
        return (samples(fleet, "nats_survey_duration_seconds_count")[()],
                samples(fleet, "nats_survey_duration_seconds_sum")[()])

    async def scenario():
        seen = []
        for _ in range(3):
            await fleet.refresh()
            seen.append(survey())
        del account.servers["NID3"]
        for _ in range(3):
            await fleet.refresh()
            seen.append(survey())
        assert "B1" not in up(fleet)
        counts = [count for count, _ in seen]
        assert counts == [3, 6, 9, 11, 13, 15], counts
        assert all(a[1] <= b[1] for a, b in zip(seen, seen[1:])), seen
        await fleet.close()

    run(scenario())
