"""The /subsz collector: the subscription list's statistics from a body recorded from nats-server
2.15, and every field checked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collector import NatsCollector, ServerCollector, default_options
from fastnats.collectors.subsz import SubszCollector, subsz_samples
from fastnats.errors import ScrapeError
from fastnats.target import Target

DATA = Path(__file__).parents[1] / "data"
VARZ = (DATA / "varz.json").read_bytes()
# Five subscriptions and a wildcard of one client, then 40 publishes on 7 subjects.
SUBSZ = orjson.loads((DATA / "subsz.json").read_bytes())
FIELDS = ("num_cache", "num_inserts", "num_removes", "num_matches", "cache_hit_rate",
          "max_fanout", "avg_fanout")


def test_a_recorded_subsz():
    samples = subsz_samples(orjson.dumps(SUBSZ))
    assert samples == {
        "nats_sublist_cache_entries": [((), 12)],
        "nats_sublist_cache_hit_ratio": [((), 0.07692307692307693)],
        "nats_sublist_inserts_total": [((), 66)],
        "nats_sublist_removes_total": [((), 0)],
        "nats_sublist_matches_total": [((), 13)],
        "nats_sublist_fanout_average": [((), 1.25)],
        "nats_sublist_fanout_max": [((), 2)],
    }
    assert list(samples) == [metric.name for metric in m.SUBSZ]


def test_the_largest_values_pass():
    samples = subsz_samples(orjson.dumps(dict(
        SUBSZ, num_cache=2**32 - 1, num_inserts=2**64 - 1, num_removes=2**64 - 1,
        num_matches=2**64 - 1, max_fanout=2**32 - 1, avg_fanout=1e300, cache_hit_rate=1)))
    assert samples["nats_sublist_inserts_total"] == [((), 2**64 - 1)]
    assert samples["nats_sublist_fanout_average"] == [((), 1e300)]
    assert samples["nats_sublist_cache_hit_ratio"] == [((), 1)]


def test_a_hit_ratio_past_one_is_one():
    # nats-server reads its hit counter after its match counter, while others match.
    samples = subsz_samples(orjson.dumps(dict(SUBSZ, cache_hit_rate=1.0000001)))
    assert samples["nats_sublist_cache_hit_ratio"] == [((), 1.0)]


HOSTILE = [
    *[(key, bad) for key in ("num_inserts", "num_removes", "num_matches")
      for bad in ("4", -1, 1.5, 2**64, True, None, [], {})],
    *[(key, bad) for key in ("num_cache", "cache_hit_rate", "max_fanout", "avg_fanout")
      for bad in ("4", -1, -0.5, True, None, [], float("nan"), float("inf"), 10**400)],
]


@pytest.mark.parametrize("key, bad", HOSTILE, ids=lambda x: repr(x)[:30])
def test_every_field_is_checked(key, bad):
    body = json.dumps(dict(SUBSZ, **{key: bad})).encode()
    with pytest.raises(ScrapeError) as info:
        subsz_samples(body)
    assert (info.value.endpoint, info.value.reason) == ("subsz", "decode")
    assert f"/subsz {key} " in str(info.value) or "malformed JSON" in str(info.value)


@pytest.mark.parametrize("key", FIELDS)
def test_every_field_is_required(key):
    subsz = dict(SUBSZ)
    del subsz[key]
    with pytest.raises(ScrapeError, match=f"/subsz has no {key}"):
        subsz_samples(orjson.dumps(subsz))


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b"{}", b"<html></html>"])
def test_a_body_that_is_not_subsz_is_a_decode_error(body):
    with pytest.raises(ScrapeError) as info:
        subsz_samples(body)
    assert info.value.reason == "decode"


class Source:
    def __init__(self, subsz) -> None:
        self.subsz = subsz
        self.asked: list[tuple[str, object]] = []

    async def get(self, endpoint, params=None, *, max_bytes=None, statuses=(200,)):
        if endpoint == "varz":
            return bytearray(VARZ)
        self.asked.append((endpoint, params))
        if isinstance(self.subsz, ScrapeError):
            raise self.subsz
        return bytearray(self.subsz)


def families(server: ServerCollector):
    collector = NatsCollector([server])
    asyncio.run(collector.refresh())
    return {metric.name: samples for metric, _, samples in collector.families()}


def test_off_by_default_and_switched_on_by_its_flag():
    assert SubszCollector.default is False
    assert "subsz" not in default_options()
    assert build_parser().parse_args([]).collector_subsz is False
    assert build_parser().parse_args(["--collector.subsz"]).collector_subsz is True


def test_the_collector_asks_without_the_subscription_list_and_keeps_a_good_read():
    source = Source(orjson.dumps(SUBSZ))
    server = ServerCollector(Target("a", "http://a"), source, {"subsz": None})
    assert families(server)["nats_sublist_matches_total"] == [((), 13)]
    assert source.asked == [("subsz", None)]
    # A bad body keeps the last good series until the collector is stale.
    source.subsz = b'{"num_cache": "x"}'
    found = families(server)
    assert found["nats_sublist_matches_total"] == [((), 13)]
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("subsz",), 0)]
    # A failed request drops them at once, well before the collector is stale.
    source.subsz = ScrapeError("subsz", "timeout", "no answer")
    found = families(server)
    assert found["nats_sublist_matches_total"] == []
    assert (("subsz", "timeout"), 1) in found["fastnats_refresh_errors_total"]
    source.subsz = orjson.dumps(SUBSZ)
    assert families(server)["nats_sublist_matches_total"] == [((), 13)]
    # An older server without /subsz: nothing of it, and no error.
    source.subsz = ScrapeError("subsz", "http_status", "HTTP 404", status=404)
    found = families(server)
    assert found["nats_sublist_matches_total"] == []
    assert (("subsz", "http_status"), 0) in found["fastnats_refresh_errors_total"]
