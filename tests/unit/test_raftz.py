"""The /raftz collector: the meta group's log indexes from bodies recorded from nats-server
2.15.1 (a three-server JetStream cluster while streams were being added, so that applied,
committed and pindex differ), every field checked, and what it asks of either source."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collector import NatsCollector, ServerCollector, default_options
from fastnats.collectors import ALL
from fastnats.collectors import raftz as raftz_module
from fastnats.collectors.decode import THREAD_ABOVE
from fastnats.collectors.raftz import QUERY, RaftzCollector, raftz_samples
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import BodyLimits
from fastnats.sources.system import options_json, reply_data
from fastnats.target import Target

DATA = Path(__file__).parents[1] / "data"
VARZ = (DATA / "varz.json").read_bytes()
LEADER = (DATA / "raftz_leader.json").read_bytes()
FOLLOWER = (DATA / "raftz_follower.json").read_bytes()
FIELDS = ("applied", "committed", "pindex")
APPLIED, COMMITTED, LAST = (metric.name for metric in m.RAFTZ)


def with_meta(**changes) -> bytes:
    """The leader's body with its meta group's fields changed; a value of ... deletes one."""
    doc = orjson.loads(LEADER)
    meta = doc["SYS"]["_meta_"]
    for key, value in changes.items():
        if value is ...:
            del meta[key]
        else:
            meta[key] = value
    return json.dumps(doc).encode()


class Source:
    def __init__(self, raftz) -> None:
        self.raftz = raftz
        self.asked: list[tuple[str, object, object]] = []

    async def get(self, endpoint, params=None, *, expect=None, statuses=(200,)):
        if endpoint == "varz":
            return bytearray(VARZ)
        self.asked.append((endpoint, params, expect))
        if isinstance(self.raftz, ScrapeError):
            raise self.raftz
        return bytearray(self.raftz)


def families(server: ServerCollector):
    collector = NatsCollector([server])
    asyncio.run(collector.refresh())
    return {metric.name: samples for metric, _, samples in collector.families()}


def test_recorded_bodies():
    assert raftz_samples(LEADER) == {APPLIED: [((), 84)], COMMITTED: [((), 85)],
                                     LAST: [((), 86)]}
    assert raftz_samples(FOLLOWER) == {APPLIED: [((), 97)], COMMITTED: [((), 106)],
                                       LAST: [((), 107)]}
    assert list(raftz_samples(LEADER)) == [metric.name for metric in m.RAFTZ]


def test_the_families_are_gauges_of_the_server_alone():
    # An index falls back on a restart or a truncated log: a counter would read that as a reset.
    assert all(metric.type == m.GAUGE and metric.labels == () for metric in m.RAFTZ)
    assert RaftzCollector.families == m.RAFTZ


def test_the_system_account_may_have_any_name():
    # Operator mode names the system account by its public key.
    doc = orjson.loads(FOLLOWER)
    renamed = orjson.dumps({"ADPJ6YV5HGV2XKX4ZJ4HZ2OYA4Y5EF3IEUZUJ6YRLGAKV6CY7NLFUXJK":
                            doc["SYS"]})
    assert raftz_samples(renamed) == raftz_samples(FOLLOWER)


@pytest.mark.parametrize("body", [b"{}", b'{"SYS": {}}', b'{"SYS": null}',
                                  b'{"SYS": {"_meta_": null}}',
                                  b'{"T1": {"S-R3F-abc": {"applied": 5}}}'])
def test_no_meta_group_is_no_series(body):
    assert raftz_samples(body) == {}


def test_other_groups_are_not_read():
    doc = orjson.loads(LEADER)
    doc["SYS"]["S-R3F-x"] = "not a group"
    doc["T1"] = {"C-R3F-y": {"applied": -1}}
    assert raftz_samples(orjson.dumps(doc)) == raftz_samples(LEADER)


def test_the_largest_indexes_pass():
    samples = raftz_samples(with_meta(applied=2**64 - 1, committed=2**64 - 1, pindex=0))
    assert samples[APPLIED] == samples[COMMITTED] == [((), 2**64 - 1)]
    assert samples[LAST] == [((), 0)]


@pytest.mark.parametrize("key, bad", [(key, bad) for key in FIELDS
                                      for bad in ("4", -1, 1.5, 2**64, True, None, [], {})],
                         ids=repr)
def test_every_field_is_checked(key, bad):
    with pytest.raises(ScrapeError) as info:
        raftz_samples(with_meta(**{key: bad}))
    assert (info.value.endpoint, info.value.reason) == ("raftz", "decode")
    assert f"/raftz SYS._meta_.{key} is " in str(info.value)


@pytest.mark.parametrize("key", FIELDS)
def test_every_field_is_required(key):
    with pytest.raises(ScrapeError, match=f"/raftz has no SYS._meta_.{key}$"):
        raftz_samples(with_meta(**{key: ...}))


@pytest.mark.parametrize("body, where", [
    (b'{"SYS": 5}', "/raftz SYS is 5, not an object"),
    (b'{"SYS": []}', "/raftz SYS is [], not an object"),
    (b'{"SYS": {"_meta_": "up"}}', "/raftz SYS._meta_ is 'up', not an object"),
    (b'{"SYS": {"_meta_": [1]}}', "/raftz SYS._meta_ is [1], not an object"),
])
def test_a_group_or_account_that_is_no_object_is_named(body, where):
    with pytest.raises(ScrapeError, match=where.replace("[", r"\[").replace("]", r"\]")) as info:
        raftz_samples(body)
    assert info.value.reason == "decode"


def test_two_meta_groups_are_a_decode_error():
    doc = orjson.loads(LEADER)
    doc["OTHER"] = doc["SYS"]
    with pytest.raises(ScrapeError, match="lists a _meta_ group in 2 accounts"):
        raftz_samples(orjson.dumps(doc))


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b"No Raft nodes registered",
                                  b"<html></html>", b'{"SYS": {"_meta_": {"applied": 1e400}}}',
                                  LEADER[:len(LEADER) // 2]])
def test_a_body_that_is_not_raftz_is_a_decode_error(body):
    with pytest.raises(ScrapeError) as info:
        raftz_samples(body)
    assert (info.value.endpoint, info.value.reason) == ("raftz", "decode")


def test_a_meta_group_of_4000_peers_fits_the_bound_and_decodes_off_the_loop(monkeypatch):
    threads: list[int] = []

    def spied(body):
        threads.append(threading.get_ident())
        return raftz_samples(body)

    monkeypatch.setattr(raftz_module, "raftz_samples", spied)
    doc = orjson.loads(LEADER)
    doc["SYS"]["_meta_"]["peers"] = {
        f"P{i:07d}": {"name": f"nats-{i}.nats.example.svc", "known": True,
                      "last_replicated_index": 2**40, "last_seen": "123.456789ms"}
        for i in range(4000)}
    body = json.dumps(doc, indent=3).encode()   # as nats-server's MarshalIndent
    assert THREAD_ABOVE < len(body) < BodyLimits().for_request("raftz", QUERY)
    source = Source(body)
    server = ServerCollector(Target("a", "http://a"), source, {"raftz": None})
    assert families(server)[COMMITTED] == [((), 85)]
    # Decoded on a worker thread, not on the event loop's.
    assert threads and threading.get_ident() not in threads


def test_over_the_system_account_the_query_is_the_same_json_option():
    assert options_json("raftz", QUERY) == {"group": "_meta_"}
    assert options_json("raftz", {"acc": "SYS"}) == {"account": "SYS"}
    # A reply's data is the document HTTP serves.
    reply = (b'{"server":{"name":"A3","id":"NDBN","ver":"2.15.1"},"data":'
             + orjson.dumps(orjson.loads(LEADER)) + b"}")
    assert raftz_samples(reply_data("raftz", reply)) == raftz_samples(LEADER)
    assert raftz_samples(reply_data("raftz", b'{"server":{"id":"NB"},"data":{}}')) == {}


def test_off_by_default_and_switched_on_by_its_flag():
    assert RaftzCollector in ALL
    assert RaftzCollector.default is False
    assert "raftz" not in default_options()
    assert build_parser().parse_args([]).collector_raftz is False
    assert build_parser().parse_args(["--collector.raftz"]).collector_raftz is True


def test_the_collector_asks_for_the_meta_group_alone_within_its_bound():
    source = Source(FOLLOWER)
    server = ServerCollector(Target("a", "http://a"), source, {"raftz": None})
    found = families(server)
    assert found[APPLIED] == [((), 97)]
    # A document: no entries expected; its limit is the source's (BodyLimits).
    assert source.asked == [("raftz", {"group": "_meta_"}, None)]
    # A bad body keeps the last good series until the collector is stale.
    source.raftz = with_meta(applied="97")
    found = families(server)
    assert found[APPLIED] == [((), 97)]
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("raftz",), 0)]
    assert (("raftz", "decode"), 1) in found["fastnats_refresh_errors_total"]
    # A failed request drops them at once.
    source.raftz = ScrapeError("raftz", "too_large", "over its limit")
    assert families(server)[APPLIED] == []


def test_a_server_without_a_meta_group_exports_nothing_and_no_error():
    # Over HTTP: 404 "No Raft nodes registered" (no clustered JetStream).
    source = Source(ScrapeError("raftz", "http_status", "HTTP 404", status=404))
    server = ServerCollector(Target("a", "http://a"), source, {"raftz": None})
    found = families(server)
    assert found[APPLIED] == found[LAST] == []
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("raftz",), 1)]
    assert all(count == 0 for (endpoint, _), count in found["fastnats_refresh_errors_total"]
               if endpoint == "raftz")
    # Over the system account: an empty document.
    source.raftz = b"{}"
    found = families(server)
    assert found[COMMITTED] == []
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("raftz",), 1)]
