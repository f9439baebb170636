"""The /subsz collector: the statistics of the server's subscription list (its match cache,
inserts, removes, lookups and fanout). The subscription count is nats_server_subscriptions, from
/varz; the list of subscriptions itself is never asked for.
"""

from __future__ import annotations

from .. import metrics as m
from .base import Collector, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json

_GAUGES = ((m.NATS_SUBLIST_CACHE_ENTRIES, "num_cache"),
           (m.NATS_SUBLIST_FANOUT_AVERAGE, "avg_fanout"),
           (m.NATS_SUBLIST_FANOUT_MAX, "max_fanout"))
_COUNTERS = ((m.NATS_SUBLIST_INSERTS_TOTAL, "num_inserts"),
             (m.NATS_SUBLIST_REMOVES_TOTAL, "num_removes"),
             (m.NATS_SUBLIST_MATCHES_TOTAL, "num_matches"))


def subsz_samples(body: bytes | bytearray) -> Samples:
    """The families of a /subsz body; every field is required, as every nats-server sends it."""
    subsz = Fields("subsz", decode_json("subsz", body))
    out: Samples = {}
    for metric, key in _GAUGES:
        out[metric.name] = [((), subsz.gauge(key))]
    for metric, key in _COUNTERS:
        out[metric.name] = [((), subsz.counter(key))]
    # nats-server loads its match counter, then its hit counter, while other goroutines go on
    # matching: with nearly every match a hit, the quotient can pass 1 by a hair.
    out[m.NATS_SUBLIST_CACHE_HIT_RATIO.name] = [((), min(subsz.gauge("cache_hit_rate"), 1.0))]
    return {metric.name: out[metric.name] for metric in m.SUBSZ}


class SubszCollector(Collector):
    """Reads /subsz without its subscription list. A body that does not decode keeps the last
    good series until ``STALE_AFTER``; a failed request drops them at once, as most endpoints
    do (``Collector.failed``)."""

    name = "subsz"
    endpoint = "subsz"
    help = "subscription list cache and fanout statistics from /subsz"
    default = False
    families = m.SUBSZ

    def __init__(self, server: ServerContext, options: object = None) -> None:
        super().__init__(server, options)
        self._samples: Samples = {}

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        self._samples = subsz_samples(await source.get(self.endpoint))
