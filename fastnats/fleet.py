"""Fleet mode: every server one system-account connection reaches, discovered at each refresh,
one ``ServerCollector`` per server of this exporter's shard.

A refresh pings ``$SYS.REQ.SERVER.PING.STATSZ`` (for at most ``timeout``), keeps the servers of
this shard (each with the time its reply took, ``nats_fleet_server_rtt_seconds``), and
refreshes each of them concurrently through its own source (the system account's requests by
server id). It then waits at most ``timeout`` for them: a server still
being read keeps its previous snapshot for that round and is shown down (``nats_up 0``, its
other series dropped) from the next round on until its read ends, so a slow server never delays
the others. A known server whose discovery reply missed the ping's gap is read by its id all
the same; if that read fails too (a server that is gone: "no responders", at once), it is down
in that refresh, and it is forgotten (its collector closed) after ``FORGET_AFTER`` refreshes in
a row without answering. While discovery itself fails (the connection is down, or its
credentials are refused), every server is down, and none is forgotten: nothing says it is gone.

Replies must fit the smallest ``max_payload`` on their way back, or a server they cross over a
leafnode closes that leafnode connection; the exporter cannot know the way, so it pages CONNZ
to fit the smallest ``max_payload`` of every server discovered, its shard's and the others'
(``Account.fleet_max_payload``). Each server's is read from its /varz when it is first
discovered, before anything else is asked of the fleet (for at most ``timeout``; a failed read
is tried again at the next refresh), and again at each refresh of a server of the shard.

Servers are known by their label: the server's name, or its id when it has none (nats-server
then reports the id as its name). A restarted nats-server has a new id but the same name, so it
continues its collector, as a restarted server does over HTTP (the collectors see the new
identity in /varz). When several servers answer with one name, each is labelled by its id.

Shards: a server belongs to shard ``i`` of ``n`` when ``shard_of(label, n) == i``, with::

    int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "big") % n

The label, not the id, is hashed so that a restarted server stays in its shard.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from . import metrics as m
from .collector import NatsCollector, ServerCollector
from .collectors import ServerContext, VarzCollector
from .collectors.base import FETCH_REASONS, Samples, Source
from .errors import ScrapeError
from .target import Target

if TYPE_CHECKING:
    from .compat import Compat

log = logging.getLogger("fastnats.fleet")

#: Refreshes in a row without an answer to discovery after which a server is forgotten.
FORGET_AFTER = 10
#: The events ``fastnats_nats_connection_events_total`` exports from 0.
CONNECTION_EVENTS = ("disconnected", "reconnected", "error")
#: The ``reason`` of a server that did not answer discovery, and of one still being read a
#: refresh interval later (both among the reasons every server exports from 0).
NOT_DISCOVERED = "connect"
LATE = "timeout"
assert NOT_DISCOVERED in FETCH_REASONS and LATE in FETCH_REASONS


def _max_payload(samples: Samples) -> int | None:
    """A server's ``max_payload`` in its /varz samples."""
    rows = samples.get(m.NATS_SERVER_MAX_PAYLOAD_BYTES.name)
    value = rows[0][1] if rows else None
    return int(value) if isinstance(value, (int, float)) else None


def shard_of(label: str, count: int) -> int:
    """The shard of the server labelled ``label`` among ``count``: the first 8 bytes of the
    SHA-256 of its UTF-8 bytes, as a big-endian unsigned integer, modulo ``count``."""
    return int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """``--fleet.shard index/count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < n")

    def owns(self, label: str) -> bool:
        return self.count == 1 or shard_of(label, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``i/n`` with 0 <= i < n."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError as exc:
        detail = f": {exc}" if str(exc) else ""
        raise ValueError(f"not a shard i/n with 0 <= i < n: {text!r}{detail}") from None


class Account(Protocol):
    """What the fleet needs of the system account (``sources.system.SystemAccount``)."""

    events: Counter[str]
    #: The smallest ``max_payload`` of the fleet, which the account's replies must fit.
    fleet_max_payload: int | None

    async def ping_timed(self, endpoint: str, body: dict | None, *, timeout: float,
                         expected: int | None = None,
                         expected_of: Callable[[bytes], int | None] | None = None,
                         late: Callable[[bytes, float], None] | None = None,
                         ) -> list[tuple[bytes, float]]: ...


@dataclass(frozen=True, slots=True)
class Discovered:
    """A server as its STATSZ reply names it."""

    id: str
    name: str
    cluster: str = ""
    domain: str = ""
    version: str = ""
    tags: tuple[str, ...] = ()
    #: Seconds from the discovery ping to this reply.
    rtt: float | None = None

    def info_sample(self) -> tuple[tuple[str, ...], int]:
        """Its ``nats_server_info`` sample, as /varz would give it."""
        return ((self.name, self.id, self.version, self.cluster, self.domain,
                 ",".join(sorted(self.tags))), 1)


def parse_statsz(reply: bytes | bytearray) -> Discovered:
    """The server of a STATSZ ping reply (``{"server": {...}, "statsz": {...}}``); raises
    ValueError for a reply without a server id."""
    doc = json.loads(reply)
    server = doc.get("server") if isinstance(doc, dict) else None
    if not isinstance(server, dict) or not isinstance(server.get("id"), str) or not server["id"]:
        raise ValueError("a STATSZ reply without server.id")

    def text(key: str) -> str:
        value = server.get(key)
        return value if isinstance(value, str) else ""

    tags = server.get("tags")
    return Discovered(
        server["id"], text("name") or server["id"], text("cluster"), text("domain"), text("ver"),
        tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ())


def active_servers(reply: bytes) -> int | None:
    """How many servers a STATSZ reply says the fleet has (``statsz.active_servers``, the
    servers its system account hears from, itself included); None if it does not say."""
    try:
        count = json.loads(reply)["statsz"]["active_servers"]
    except (ValueError, TypeError, KeyError):
        return None
    return count if type(count) is int and count > 0 else None


def labels_of(found: Collection[Discovered]) -> dict[str, Discovered]:
    """Each server by its label: its name, or its id when another server has the same name."""
    names = Counter(server.name for server in found)
    return {server.name if names[server.name] == 1 else server.id: server
            for server in sorted(found, key=lambda server: server.id)}


class _Unread:
    """The prototype's source: the prototype is never refreshed."""

    async def get(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                  expect: Mapping[str, int] | None = None,
                  statuses: Collection[int] = (200,)) -> bytearray:
        raise AssertionError("the fleet's prototype collector is never read")


@dataclass(eq=False)
class _Member:
    """A server of this shard and its collector, kept across refreshes."""

    server: ServerCollector
    found: Discovered
    task: asyncio.Task[None] | None = None
    #: Refreshes in a row it did not answer discovery.
    missing: int = 0
    #: Still being read from an earlier refresh when this one began: shown down.
    late: bool = False

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def responding(self) -> bool:
        return self.server.up and not self.late and not self.missing


class Fleet(NatsCollector):
    """The servers a system account reaches, in one shard; every series carries ``server``.

    ``source_for(server_id)`` gives the source that reads one server's endpoints. ``options``
    are the collectors' options, as for ``ServerCollector``.
    """

    dynamic = True

    def __init__(self, account: Account, source_for: Callable[[str], Source],
                 options: Mapping[str, object], *, timeout: float, shard: Shard = Shard(),
                 expected: int | None = None, forget_after: int = FORGET_AFTER,
                 compat: Compat | None = None) -> None:
        self.process_families = (m.FASTNATS_BUILD_INFO, *(
            metric for metric in m.FLEET if not metric.per_server
            and (metric is not m.NATS_FLEET_SERVERS_EXPECTED or expected is not None)))
        self.options = options
        super().__init__([], compat, labelled=True,
                         prototype=ServerCollector(Target("prototype", ""), _Unread(), options))
        for metric in m.FLEET:
            if metric.per_server:
                self.label_names[metric.name] = metric.labels
        self.account = account
        self.source_for = source_for
        self.timeout = timeout
        self.shard = shard
        self.expected = expected
        self.forget_after = forget_after
        self.members: dict[str, _Member] = {}
        #: Servers that answered the last discovery, in the whole fleet.
        self.discovered_all = 0
        #: The ids of those servers.
        self.fleet_ids: set[str] = set()
        #: The label of each of them, whichever shard it is in.
        self.fleet_labels: dict[str, str] = {}
        #: Servers whose reply came after the last discovery's gap, by id: discovered at the
        #: next refresh.
        self.heard_late: dict[str, Discovered] = {}
        #: Each server's ``max_payload``, by id, as last read from its /varz.
        self.max_payloads: dict[str, int] = {}
        #: Monotonic time the last refresh ended.
        self.refreshed_at: float | None = None
        self._discovery_failing = False

    async def refresh(self) -> None:
        found = await self._discover()
        await self._learn_max_payloads()
        started: list[asyncio.Task[None]] = []
        for label, server in found.items():
            member = self.members.get(label)
            if member is None:
                member = self.members[label] = _Member(
                    ServerCollector(Target(label, ""), self.source_for(server.id), self.options),
                    server)
                log.info("server %s (%s) discovered", label, server.id)
            member.missing = 0
            if member.busy:
                self._late(member)
                continue
            if member.found.id != server.id:
                member.server.source = self.source_for(server.id)
            member.found = server
            member.task = asyncio.create_task(self._refresh(member),
                                              name=f"fastnats-refresh-{label}")
            started.append(member.task)
        for label, member in list(self.members.items()):
            if label in found:
                continue
            if self._discovery_failing:
                # Nothing says the server is gone: this round does not count toward forgetting.
                if member.busy:
                    self._late(member)
                else:
                    await member.server.unreachable(ScrapeError(
                        "varz", NOT_DISCOVERED, "the server did not answer the discovery ping"))
                continue
            relabelled = self.fleet_labels.get(member.found.id)
            if relabelled is not None and relabelled != label and not member.busy:
                # Another server took its name: it answers under its id now (or in another
                # shard), and reading it under both labels would count it twice.
                log.info("server %s is labelled %s now", label, relabelled)
                del self.members[label]
                await member.server.close()
                continue
            member.missing += 1
            if member.busy:
                self._late(member)
            else:
                # A reply can miss the discovery's gap on a busy fleet: a known server is read
                # by its id all the same, and only a failed read (no responders, at once for a
                # server that is gone) shows it down.
                member.task = asyncio.create_task(self._refresh(member),
                                                  name=f"fastnats-refresh-{label}")
                started.append(member.task)
        if started:
            await asyncio.wait(started, timeout=self.timeout)
        for label, member in list(self.members.items()):
            if member.missing >= self.forget_after and not member.busy \
                    and not self._discovery_failing:
                log.info("server %s forgotten: no answer for %d refreshes", label, member.missing)
                del self.members[label]
                await member.server.close()
        self.servers = [self.members[label].server for label in sorted(self.members)]
        for member in self.members.values():
            if (limit := _max_payload(member.server.snapshot)) is not None:
                self.max_payloads[member.found.id] = limit
        self._limit_payload()
        self.refreshed_at = time.monotonic()

    async def _learn_max_payloads(self) -> None:
        """Read the ``max_payload`` of each discovered server not known yet, whichever shard it
        is in, before anything else is asked of the fleet: a reply that crosses a server
        configured smaller would close a leafnode connection."""
        new = self.fleet_ids - self.max_payloads.keys()
        if new:
            tasks = [asyncio.create_task(self._read_max_payload(ident)) for ident in new]
            _, late = await asyncio.wait(tasks, timeout=self.timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._limit_payload()

    async def _read_max_payload(self, ident: str) -> None:
        try:
            await (varz := VarzCollector(ServerContext(ident, ""))).read(self.source_for(ident))
        except Exception as exc:  # noqa: BLE001  (tried again at the next refresh)
            log.debug("max_payload of %s not read: %s", ident, exc)
            return
        if (limit := _max_payload(varz.samples())) is not None:
            self.max_payloads[ident] = limit

    def _limit_payload(self) -> None:
        """The account's replies fit the smallest ``max_payload`` of the servers discovered
        last and of those still read; the others' are forgotten."""
        present = self.fleet_ids | {member.found.id for member in self.members.values()}
        self.max_payloads = {ident: limit for ident, limit in self.max_payloads.items()
                             if ident in present}
        smallest = min(self.max_payloads.values()) if self.max_payloads else None
        if smallest != self.account.fleet_max_payload:
            log.info("replies sized for max_payload %s, the fleet's smallest", smallest)
            self.account.fleet_max_payload = smallest

    async def _discover(self) -> dict[str, Discovered]:
        """The servers of this shard that answered the STATSZ ping, by label; none when the
        ping fails (the connection is down: every server is down this round)."""
        try:
            replies = await self.account.ping_timed(
                "STATSZ", None, timeout=self.timeout, expected=self.expected,
                expected_of=active_servers, late=self._heard_late)
        except Exception as exc:  # noqa: BLE001  (whatever the connection raises)
            if not self._discovery_failing:
                log.warning("discovery failed: %s; every server is down until it works", exc)
                self._discovery_failing = True
            self.discovered_all = 0
            return {}
        if self._discovery_failing:
            log.info("discovery works again")
            self._discovery_failing = False
        # A late reply counted already in the refresh it came in; a new server's joins now.
        known = {member.found.id for member in self.members.values()}
        servers = {ident: server for ident, server in self.heard_late.items()
                   if ident not in known}
        self.heard_late = {}
        for reply, rtt in replies:
            try:
                server = replace(parse_statsz(reply), rtt=rtt)
            except ValueError as exc:
                log.debug("discovery: a reply skipped: %s", exc)
                continue
            servers[server.id] = server
        self.discovered_all = len(servers)
        self.fleet_ids = set(servers)
        labelled = labels_of(servers.values())
        self.fleet_labels = {server.id: label for label, server in labelled.items()}
        return {label: server for label, server in labelled.items() if self.shard.owns(label)}

    def _heard_late(self, reply: bytes, rtt: float) -> None:
        """A STATSZ reply that came after the discovery's gap: its server joins the next
        discovery."""
        try:
            server = replace(parse_statsz(reply), rtt=rtt)
        except ValueError as exc:
            log.debug("discovery: a late reply skipped: %s", exc)
            return
        log.debug("server %s answered the discovery ping late, after %.0f ms", server.name,
                  rtt * 1000)
        self.heard_late[server.id] = server
        if server.id not in self.fleet_ids:
            # It answered a ping since the last discovery: counted as discovered now, not
            # only from the next refresh on.
            self.fleet_ids.add(server.id)
            self.discovered_all += 1

    async def _refresh(self, member: _Member) -> None:
        try:
            await member.server.refresh()
        except Exception:
            log.exception("refresh of %s failed; serving its previous metrics",
                          member.server.target.name)
        if member.late:
            log.info("server %s: its late refresh ended", member.server.target.name)
            member.late = False
        if member.server.up:
            # Read by its id after its discovery reply missed the gap: its round trip is known
            # if the reply came meanwhile, not otherwise.
            found = self.heard_late.get(member.found.id) if member.missing else member.found
            member.missing = 0
            if found is not None and found.rtt is not None:
                member.server.snapshot = {**member.server.snapshot,
                                          m.NATS_FLEET_SERVER_RTT_SECONDS.name:
                                              [((), found.rtt)]}
        else:
            self._show_down(member)

    def _late(self, member: _Member) -> None:
        """Still being read from a refresh before: down until that read ends."""
        server = member.server
        if not member.late:
            log.warning("server %s: still being read one refresh later; nats_up 0 until the "
                        "read ends", server.target.name)
            member.late = True
        server.errors[("varz", LATE)] += 1
        self._show_down(member)

    def _show_down(self, member: _Member) -> None:
        """Publish ``member`` as down: its own series with nats_up 0, and its identity if it
        answered discovery."""
        snapshot: Samples = {**member.server.self_samples(), m.NATS_UP.name: [((), 0)]}
        if not member.missing:
            snapshot[m.NATS_SERVER_INFO.name] = [member.found.info_sample()]
        member.server.snapshot = snapshot

    def process_samples(self) -> Samples:
        out = super().process_samples()
        if self.expected is not None:
            out[m.NATS_FLEET_SERVERS_EXPECTED.name] = [((), self.expected)]
        in_shard = sum(1 for member in self.members.values() if not member.missing)
        out[m.NATS_FLEET_SERVERS_DISCOVERED.name] = [
            (("shard",), in_shard), (("all",), self.discovered_all)]
        out[m.NATS_FLEET_SERVERS_RESPONDING.name] = [
            ((), sum(1 for member in self.members.values() if member.responding))]
        events = Counter(dict.fromkeys(CONNECTION_EVENTS, 0))
        events.update(self.account.events)
        out[m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL.name] = [
            ((event,), count) for event, count in sorted(events.items())]
        return out

    async def close(self) -> None:
        tasks = [member.task for member in self.members.values()
                 if member.task is not None and not member.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(member.server.close() for member in self.members.values()))
