"""The /accstatz collector end to end: the exporter process against a real nats-server with
accounts T1 and T2 carrying traffic, and a hostile account named ``_other``. Once the traffic is
done, every family equals /accstatz?unused=true fetched at the same moment; with the cap at one
account, the rest are summed into ``_other``, whose counters never fall, and the top-K shows the
accounts with traffic wherever they are exported.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from fastnats.nats.launcher import NatsServer
from tests.support.cluster import AccountClient
from tests.support.natsclient import RawClient
from tests.support.process import exporting, http_get, running_nats, wait_until

pytestmark = pytest.mark.integration

CONF = """
accounts {
  T1: { users: [{ user: t1, password: t1 }] }
  T2: { users: [{ user: t2, password: t2 }] }
  "_other": { users: [{ user: hostile, password: hostile }] }
}
"""
FAST = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2",
        "--collector.accstatz")
#: Each family and where /accstatz holds its value.
FIELDS = {
    m.NATS_ACCOUNT_CONNECTIONS.name: ("conns",),
    m.NATS_ACCOUNT_LEAFNODES.name: ("leafnodes",),
    m.NATS_ACCOUNT_SUBSCRIPTIONS.name: ("num_subscriptions",),
    m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name: ("sent", "msgs"),
    m.NATS_ACCOUNT_SENT_BYTES_TOTAL.name: ("sent", "bytes"),
    m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name: ("received", "msgs"),
    m.NATS_ACCOUNT_RECEIVED_BYTES_TOTAL.name: ("received", "bytes"),
    m.NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL.name: ("slow_consumers",),
}

Exported = dict[str, dict[str, float]]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = tmp_path / "accounts.conf"
    conf.write_text(CONF)
    with running_nats("-c", str(conf)) as nats:
        yield nats


def accstatz(server: NatsServer) -> dict[str, dict]:
    doc = orjson.loads(http_get(f"{server.monitor_url}/accstatz?unused=true"))
    return {account["acc"]: account for account in doc["account_statz"]}


def exported(text: str) -> Exported:
    out: Exported = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("nats_account"):
                out[sample.name][sample.labels.get("account", "")] = sample.value
    return out


def expected(listing: dict[str, dict]) -> Exported:
    out: Exported = defaultdict(dict)
    for name, account in listing.items():
        for family, path in FIELDS.items():
            value = account
            for key in path:
                value = value[key]
            out[family][m.client_value(name)] = value
    return out


class Tenants:
    """A subscriber and a publisher in T1 and in T2, and a publisher in the hostile account."""

    def __init__(self, stack: ExitStack, port: int) -> None:
        def client(user: str) -> RawClient:
            return stack.enter_context(closing(AccountClient(port, user, user)))

        self.subs = {"T1": client("t1"), "T2": client("t2")}
        self.pubs = {"T1": client("t1"), "T2": client("t2"), "_other": client("hostile")}
        for account, sub in self.subs.items():
            sub.sub(f"{account}.work", 1)
            sub.flush()
        self.delivered = {"T1": 0, "T2": 0}

    def burst(self, counts: dict[str, int]) -> None:
        """Publish ``counts`` messages per account and wait until each subscriber has them."""
        for account, count in counts.items():
            pub = self.pubs[account]
            for i in range(count):
                pub.pub(f"{account}.work", b"x" * (i % 64))
            pub.flush()
        for account, sub in self.subs.items():
            want = self.delivered[account] + counts.get(account, 0)
            while self.delivered[account] < want:
                line = sub.line()
                if line.startswith(b"MSG "):
                    sub.body(int(line.rsplit(b" ", 1)[1]))
                    self.delivered[account] += 1


def settled(server: NatsServer, scrape, check) -> None:
    """Fetch /accstatz and scrape the exporter, at the same moment, until ``check(listing,
    exported)`` holds: the exporter refreshes on its own schedule."""
    def attempt():
        before = accstatz(server)
        text = scrape()
        after = accstatz(server)
        if before != after:
            return None
        try:
            check(after, exported(text))
        except AssertionError as exc:
            return None if time.monotonic() < deadline else exc
        return True
    deadline = time.monotonic() + 15.0
    result = wait_until(attempt, timeout=20.0)
    if isinstance(result, AssertionError):
        raise result


def test_every_family_equals_the_listing_of_the_same_moment(server: NatsServer):
    with ExitStack() as stack:
        tenants = Tenants(stack, server.client_port)
        tenants.burst({"T1": 120, "T2": 45, "_other": 7})
        exporter = stack.enter_context(exporting(server.monitor_url, *FAST))

        def check(listing: dict[str, dict], out: Exported) -> None:
            assert {"T1", "T2", "_other", "$G"} <= set(listing)
            want = expected(listing)
            for family in FIELDS:
                assert out[family] == want[family], family
            assert out[m.NATS_ACCOUNTS.name] == {"": len(listing)}
            assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": 0}
            # The conf's account named _other is exported escaped; there is no _other bucket.
            assert out[m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name]["T1"] == 120
            assert out[m.NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL.name]["__other"] == 7
            assert out[m.NATS_ACCOUNT_CONNECTIONS.name]["T1"] == 2
            assert m.OTHER_GROUP not in out[m.NATS_ACCOUNT_CONNECTIONS.name]

        settled(server, exporter.scrape, check)
        # The clients leave: the accounts are still listed, their counters unchanged.
        for client in (*tenants.subs.values(), *tenants.pubs.values()):
            client.close()

        def closed(listing: dict[str, dict], out: Exported) -> None:
            check_idle = out[m.NATS_ACCOUNT_CONNECTIONS.name]
            assert check_idle["T1"] == check_idle["T2"] == 0
            assert out[m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name]["T1"] == 120
            want = expected(listing)
            for family in FIELDS:
                assert out[family] == want[family], family

        settled(server, exporter.scrape, closed)


def test_the_cap_sums_the_rest_into_other_and_top_k_sees_every_account(server: NatsServer):
    with ExitStack() as stack:
        tenants = Tenants(stack, server.client_port)
        exporter = stack.enter_context(exporting(
            server.monitor_url, *FAST, "--accstatz.max-accounts", "1", "--accstatz.top-k", "5"))
        last: Exported = {}
        seen_top: set[str] = set()
        deadline = time.monotonic() + 20.0
        while not {"T1", "T2"} <= seen_top:
            assert time.monotonic() < deadline, f"top-K showed only {seen_top}"
            tenants.burst({"T1": 60, "T2": 30})
            out = exported(exporter.scrape())
            seen_top |= set(out[m.NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND.name])
            # The top-K names accounts whether they have a place or not: never _other.
            assert m.OTHER_GROUP not in seen_top, seen_top
            for family, samples in out.items():
                if family.endswith("_total"):
                    for label, value in samples.items():
                        assert value >= last.get(family, {}).get(label, 0.0), (family, label)
            last = out
            time.sleep(0.1)

        def check(listing: dict[str, dict], out: Exported) -> None:
            own = set(out[m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name]) - {m.OTHER_GROUP}
            assert len(own) == 1
            assert m.OTHER_GROUP in out[m.NATS_ACCOUNT_SENT_MESSAGES_TOTAL.name]
            assert out[m.NATS_ACCOUNTS.name] == {"": len(listing)}
            assert out[m.NATS_ACCOUNT_OVERFLOW.name] == {"": len(listing) - 1}
            want = expected(listing)
            for family in FIELDS:
                for label in own:
                    assert out[family][label] == want[family][label], (family, label)
            # _other's gauges are the sums of its members now.
            for family in (m.NATS_ACCOUNT_CONNECTIONS.name, m.NATS_ACCOUNT_SUBSCRIPTIONS.name):
                members = sum(v for label, v in want[family].items() if label not in own)
                assert out[family][m.OTHER_GROUP] == members, family

        settled(server, exporter.scrape, check)
