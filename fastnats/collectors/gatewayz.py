"""The /gatewayz collector: the gateway connections of the server, one series per remote cluster
and direction. A cluster of several servers connects inbound once from each of them; those
connections are summed, so a (gateway, direction) pair is exactly one series.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import metrics as m
from ..errors import ScrapeError
from .base import DECODE, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json
from .peers import PeerCollector, PeerOptions
from .routez import rtt_seconds

_COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")
_COUNTER_FAMILIES = (m.NATS_GATEWAY_IN_MESSAGES_TOTAL, m.NATS_GATEWAY_OUT_MESSAGES_TOTAL,
                     m.NATS_GATEWAY_IN_BYTES_TOTAL, m.NATS_GATEWAY_OUT_BYTES_TOTAL)
OUTBOUND = "outbound"
INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class GatewayConnection:
    cid: int
    #: (remote cluster, direction)
    key: tuple[str, str]
    rtt: float
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Gateways:
    """What one /gatewayz body says."""

    connections: list[GatewayConnection]
    #: Remote clusters with a configured outbound gateway connected now.
    configured: list[str]


def _objects(doc: Fields, key: str) -> dict[str, object]:
    """The name -> value object at ``key``; null is empty."""
    if not doc.has(key):
        raise ScrapeError(doc.endpoint, DECODE, f"/gatewayz has no {key}")
    value = doc.doc[key]
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ScrapeError(doc.endpoint, DECODE, f"/gatewayz {key} is {type(value).__name__}, "
                                                f"not an object")
    return value


def _connection(entry: Fields, key: tuple[str, str]) -> GatewayConnection | None:
    conn = entry.object("connection")
    if conn is None:
        return None
    return GatewayConnection(conn.counter("cid"), key, rtt_seconds(conn),
                             tuple(conn.counter(k) for k in _COUNTERS))


def decode(body: bytes | bytearray) -> Gateways:
    """The gateway connections of a /gatewayz body; any problem is a decode error."""
    doc = Fields("gatewayz", decode_json("gatewayz", body))
    connections: list[GatewayConnection] = []
    configured: list[str] = []
    for name, value in _objects(doc, "outbound_gateways").items():
        entry = Fields("gatewayz", value, f"outbound_gateways.{name}.")
        if entry.flag("configured"):
            configured.append(name)
        if (conn := _connection(entry, (name, OUTBOUND))) is not None:
            connections.append(conn)
    inbound = _objects(doc, "inbound_gateways")
    for name in inbound:
        for i, item in enumerate(Fields("gatewayz", inbound, "inbound_gateways.").array(name)):
            entry = Fields("gatewayz", item, f"inbound_gateways.{name}[{i}].")
            entry.flag("configured")
            if (conn := _connection(entry, (name, INBOUND))) is not None:
                connections.append(conn)
    if len({conn.cid for conn in connections}) != len(connections):
        raise ScrapeError("gatewayz", DECODE, "/gatewayz lists a cid twice")
    return Gateways(connections, configured)


class GatewayzCollector(PeerCollector):
    """Reads /gatewayz (without account details) each refresh and folds its connections per
    remote cluster and direction, as the /routez collector does per peer: counters monotonic
    across reconnects (by ``cid``), disconnects counted, a gateway with no connection left kept
    at connections 0 for ``--gatewayz.peer-ttl``, everything afresh when the server restarts.

    nats_gateway_configured: /gatewayz lists only connected gateways, so a configured gateway
    whose remote cluster is down is missing from it. The collector exports the remote clusters
    /varz lists under gateway.gateways (``ServerInfo.gateways``, the server's own cluster
    left out), and each configured outbound gateway /gatewayz showed since the server started.
    """

    name = "gatewayz"
    endpoint = "gatewayz"
    help = "per-remote-cluster gateway connections and traffic from /gatewayz"
    families = m.GATEWAYZ

    peer_noun = "a gateway (remote cluster and direction)"
    counters = len(_COUNTERS)

    def __init__(self, server: ServerContext, options: PeerOptions | None = None) -> None:
        super().__init__(server, options)
        #: Remote clusters configured as outbound gateways, seen since the server started.
        self._configured: set[str] = set()

    def restarted(self) -> None:
        super().restarted()
        self._configured.clear()

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        gateways = await self.read(source, info, decode)
        # /varz names the configured gateways, connected or not; /gatewayz adds those that
        # gossip made known and were configured on the fly.
        self._configured.update(gateways.configured)
        self._configured.update(info.gateways)
        peers = self._fold.update(((c.cid, c.key, c.counts) for c in gateways.connections),
                                  self.clock())
        rtt: dict[tuple[str, str], float] = {}
        for conn in gateways.connections:
            rtt[conn.key] = max(rtt.get(conn.key, 0.0), conn.rtt)
        out: Samples = {
            m.NATS_GATEWAY_CONNECTIONS.name: [(k, t.connections) for k, t in peers.items()],
            # Only a measured round trip: a new connection says 0s until it has one.
            m.NATS_GATEWAY_RTT_SECONDS.name: [(k, rtt[k]) for k in peers if rtt.get(k)],
            m.NATS_GATEWAY_DISCONNECTS_TOTAL.name: [
                (k, t.disconnects) for k, t in peers.items()],
            m.NATS_GATEWAY_CONFIGURED.name: [((name,), 1) for name in sorted(self._configured)],
        }
        for i, family in enumerate(_COUNTER_FAMILIES):
            out[family.name] = [(k, t.counts[i]) for k, t in peers.items()]
        self._samples = out
