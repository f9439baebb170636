"""ConnzAggregator under unit test: both implementations to parametrize over, /connz bodies
written by hand, the snapshot read as samples and as the families the text writers take, and the
seeded scenarios of the differential tests (tests/support/connzgen.py refreshed with churn)."""

from __future__ import annotations

import random

import orjson
import pytest

from fastnats import _core, _reference
from fastnats.metrics import BY_NAME, GROUP_BY_FIELDS, GROUP_LABELS
from tests.support import connzgen

IMPLS = [pytest.param(_core.ConnzAggregator, id="core"),
         pytest.param(_reference.ConnzAggregator, id="reference")]


def conn(cid: int, **fields) -> dict:
    out = {"cid": cid, "kind": "Client", "type": "nats", "ip": "10.0.0.1",
           "start": f"2026-11-25T08:00:{cid % 60:02d}.000000001Z", "rtt": "1ms", "idle": "0s",
           "pending_bytes": 0, "in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0,
           "subscriptions": 0, "name": "svc", "lang": "go", "version": "1.0", "account": "A"}
    out.update(fields)
    return out


def body(*conns: dict, indent: bool = True, **top) -> bytes:
    doc = {"server_id": "X", "num_connections": len(conns), "total": len(conns), "offset": 0,
           "limit": 1024, "connections": list(conns)}
    doc.update(top)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)


def samples(agg, name: str) -> dict[tuple[str, ...], int | float]:
    return dict(agg.families()[name])


def families(agg, group_labels: str = GROUP_LABELS) -> list:
    """The aggregator's snapshot as families, with the label names the collector gives them
    (``group_labels`` stands for its group-by labels: a leafnode aggregator's differ)."""
    out = []
    for name, samples in agg.families().items():
        metric = BY_NAME[name]
        labels = agg.group_by if metric.labels == (group_labels,) else metric.labels
        out.append((metric, labels, samples))
    return out


def scenario(seed: int):
    """A random configuration, and the refreshes of a simulated server to feed it."""
    rng = random.Random(seed)
    fields = list(GROUP_BY_FIELDS)
    rng.shuffle(fields)
    config = dict(group_by=tuple(fields[:rng.randrange(0, 4)]),
                  max_groups=rng.choice([1, 3, 10, 1000]),
                  group_ttl=rng.choice([0.0, 20.0, 3600.0]), top_k=rng.choice([0, 1, 3, 10]),
                  per_connection=rng.random() < 0.5, per_connection_max=rng.choice([0, 5, 1000]),
                  closed_slack=rng.choice([0.0, 2.0, 40.0]))
    server = connzgen.Server(seed, odd=rng.random() < 0.6, closed_max=rng.choice([5, 50, 10_000]),
                             unconnected=rng.choice([0.0, 0.0, 0.3]), late=rng.choice([0, 0.3]))

    def refreshes():
        for _ in range(14):
            server.step(opens=rng.randrange(40), closes=rng.randrange(30),
                        flashes=rng.randrange(6), seconds=rng.choice([1, 15, 30]))
            if rng.random() < 0.05:
                server.restart()
                server.step(opens=5)
            fmt = dict(indent=rng.random() < 0.5, ascii_only=rng.random() < 0.3)
            conns = list(server.open.values())
            if conns and rng.random() < 0.3:
                open_body = list(connzgen.paginate(conns, rng.randrange(1, 20),
                                                   overlap=rng.randrange(-2, 3), **fmt))
            else:
                open_body = server.open_body(**fmt)
            roll = rng.random()
            if roll < 0.4:
                closed_body = server.closed_body(**fmt)
            elif roll < 0.8:
                page = rng.randrange(1, 30)
                closed_body = [server.closed_listing(offset, page, **fmt)
                               for offset in range(0, rng.randrange(1, 90), page)]
            else:
                closed_body = None
            overflow = closed_body is not None and rng.random() < 0.2
            accepted = server.next_cid - 1 if rng.random() < 0.7 else None
            yield open_body, closed_body, server.now, overflow, accepted

    return config, refreshes()
