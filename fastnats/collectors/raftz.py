"""The /raftz collector: where the server's JetStream meta group log stands (the last entry it
applied, the last it knows committed, the last it holds), for nats-server 2.11 and later.

Only the meta group is asked for (``group=_meta_``): nats-server looks that one group up, so
the reply holds it alone, about 1 KB plus up to about 220 bytes per peer, however many other
raft groups the server runs. The account is left out: nats-server then takes the system
account, whatever its name (a public key in operator mode). Over the system account the same
options go as JSON (``{"group": "_meta_"}`` on ``$SYS.REQ.SERVER.<id>.RAFTZ``).

No series when the server has no meta group. Over HTTP, a server without clustered JetStream
answers 404 ("No Raft nodes registered"), which is an endpoint not served; over the system
account, and from a clustered server whose meta group is not up yet, the reply is ``{}``.
"""

from __future__ import annotations

from .. import metrics as m
from ..errors import ScrapeError
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json, off_loop

ENDPOINT = "raftz"
#: nats-server's name of the JetStream meta group (``defaultMetaGroupName``).
META_GROUP = "_meta_"
QUERY = {"group": META_GROUP}

#: Each family and the field of the group's entry it copies.
_FIELDS = ((m.NATS_JETSTREAM_META_APPLIED_INDEX, "applied"),
           (m.NATS_JETSTREAM_META_COMMITTED_INDEX, "committed"),
           (m.NATS_JETSTREAM_META_LAST_INDEX, "pindex"))


def raftz_samples(body: bytes | bytearray) -> Samples:
    """The families of a /raftz body (account -> group name -> group), from its meta group;
    none without one. Other groups are not read."""
    accounts = Fields(ENDPOINT, decode_json(ENDPOINT, body))
    found: list[Fields] = []
    for account in accounts.doc:
        groups = accounts.object(account)
        meta = groups.object(META_GROUP) if groups is not None else None
        if meta is not None:
            found.append(meta)
    if not found:
        return {}
    if len(found) > 1:
        raise ScrapeError(ENDPOINT, DECODE, f"/raftz lists a {META_GROUP} group in "
                                            f"{len(found)} accounts")
    meta = found[0]
    return {metric.name: [((), meta.counter(key))] for metric, key in _FIELDS}


class RaftzCollector(Collector):
    """Reads /raftz?group=_meta_. A body that does not decode keeps the last good series until
    ``STALE_AFTER``, as most endpoints do."""

    name = "raftz"
    endpoint = ENDPOINT
    help = "the JetStream meta group's raft log indexes from /raftz?group=_meta_"
    default = False
    families = m.RAFTZ

    def __init__(self, server: ServerContext, options: object = None) -> None:
        super().__init__(server, options)
        self._samples: Samples = {}

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        body = await source.get(self.endpoint, QUERY)
        self._samples = await off_loop(len(body), raftz_samples, body)
