"""The /routez collector: the route connections of the server, one series per remote server of
its cluster. Pooled routes (``pool_size``) and per-account routes are several connections to one
peer; they are summed, so cardinality is the peer count.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import metrics as m
from .._impl import impl
from ..errors import ScrapeError
from .base import DECODE, Samples, ServerInfo, Source
from .decode import Fields, decode_json
from .peers import PeerCollector, PeerTotals

#: The counters folded per peer, in this order.
_COUNTERS = ("in_msgs", "out_msgs", "in_bytes", "out_bytes")
_COUNTER_FAMILIES = (m.NATS_ROUTE_IN_MESSAGES_TOTAL, m.NATS_ROUTE_OUT_MESSAGES_TOTAL,
                     m.NATS_ROUTE_IN_BYTES_TOTAL, m.NATS_ROUTE_OUT_BYTES_TOTAL)


def rtt_seconds(fields: Fields) -> float:
    """The connection's ``rtt`` in seconds; 0 when it has none yet (absent, or ``0s``)."""
    if not fields.has("rtt"):
        return 0.0
    text = fields.text("rtt")
    try:
        nanos = impl.parse_go_duration(text)
    except ValueError:
        nanos = None
    if nanos is None or nanos < 0:
        raise ScrapeError(fields.endpoint, DECODE, f"/{fields.endpoint} {fields.path}rtt is "
                                                   f"{text[:40]!r}, not a Go duration of at "
                                                   f"least 0")
    return nanos / 1e9


@dataclass(frozen=True, slots=True)
class Route:
    rid: int
    peer: tuple[str, str]
    rtt: float
    pending: int
    subscriptions: int
    counts: tuple[int, ...]


def decode(body: bytes | bytearray) -> list[Route]:
    """The route connections of a /routez body; any problem is a decode error."""
    doc = Fields("routez", decode_json("routez", body))
    routes = []
    for i, item in enumerate(doc.array("routes")):
        route = Fields("routez", item, f"routes[{i}].")
        routes.append(Route(
            route.counter("rid"), (route.text("remote_name", ""), route.text("remote_id")),
            rtt_seconds(route), route.counter("pending_size"), route.counter("subscriptions"),
            tuple(route.counter(key) for key in _COUNTERS)))
    if len({route.rid for route in routes}) != len(routes):
        raise ScrapeError("routez", DECODE, "/routez lists a rid twice")
    return routes


class RoutezCollector(PeerCollector):
    """Reads /routez each refresh and folds its route connections per peer.

    A route that reconnects comes back with a new ``rid`` and counters from zero: the last
    counts of a rid that is gone join the peer's totals (``peers.PeerFold``), so the counters
    stay monotonic, and nats_route_disconnects_total counts it. A peer with no route left
    exports connections 0 for ``--routez.peer-ttl``, then nothing, unless a peer of the same
    name is routed to (the same server restarted, with a new id): then its old series goes at
    once. A restarted server (a new ``ServerInfo.identity``) starts the totals afresh.
    """

    name = "routez"
    endpoint = "routez"
    help = "per-peer route connections, traffic and round-trip time from /routez"
    families = m.ROUTEZ

    peer_noun = "a route peer"
    counters = len(_COUNTERS)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        routes = await self.read(source, info, decode)
        peers = self._fold.update(((r.rid, r.peer, r.counts) for r in routes), self.clock())
        # A restarted peer comes back with a new server id: the series of its old id, at
        # connections 0, would say a route is missing when none is. It goes at once.
        routed = {peer[0] for peer, totals in peers.items() if totals.connections}
        for peer, totals in list(peers.items()):
            if not totals.connections and peer[0] and peer[0] in routed:
                self._fold.forget(peer)
                del peers[peer]
        self._samples = self._render(routes, peers, info.cluster)

    @staticmethod
    def _render(routes: list[Route], peers: dict[tuple[str, str], PeerTotals],
                cluster: str) -> Samples:
        rtt: dict[tuple[str, str], float] = {}
        pending: dict[tuple[str, str], int] = {}
        subscriptions: dict[tuple[str, str], int] = {}
        for route in routes:
            rtt[route.peer] = max(rtt.get(route.peer, 0.0), route.rtt)
            pending[route.peer] = pending.get(route.peer, 0) + route.pending
            subscriptions[route.peer] = subscriptions.get(route.peer, 0) + route.subscriptions
        out: Samples = {
            m.NATS_ROUTE_CONNECTIONS.name: [(p, t.connections) for p, t in peers.items()],
            # Only a peer with a measured round trip: a new route says 0s until it has one.
            m.NATS_ROUTE_RTT_SECONDS.name: [(p, rtt[p]) for p in peers if rtt.get(p)],
            m.NATS_ROUTE_PENDING_BYTES.name: [(p, pending.get(p, 0)) for p in peers],
            m.NATS_ROUTE_SUBSCRIPTIONS.name: [(p, subscriptions.get(p, 0)) for p in peers],
            m.NATS_ROUTE_DISCONNECTS_TOTAL.name: [(p, t.disconnects) for p, t in peers.items()],
        }
        for i, family in enumerate(_COUNTER_FAMILIES):
            out[family.name] = [(p, t.counts[i]) for p, t in peers.items()]
        routed = len({route.peer[1] for route in routes})
        out[m.NATS_ROUTE_PEERS.name] = [((), routed)]
        out[m.NATS_CLUSTER_SIZE.name] = [((cluster,), routed + 1)] if cluster else []
        return out
