"""JszListing: the compiled walk of a /jsz page against the reference, and the rules both follow.

Every body goes to both implementations with the same options: both must accept it with equal
listings (every attribute, values and types alike), or both refuse it with the /jsz decode
error. Bodies: the recorded ones, seeded synthetic ones (tests/support/jszgen.py) over every
option, and hostile variants of a small one (wrong types, negative and oversized numbers,
escaped and non-ASCII names, ``_other`` names, missing fields, repeated keys, every
truncation). A failure prints its seed; FASTNATS_JSZ_SEED replays it as the extra scenario.
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path

import orjson
import pytest

from fastnats import _core, _reference
from fastnats.collectors.base import DECODE
from fastnats.collectors.jsz import JszOptions
from fastnats.errors import ScrapeError
from tests.support import jszgen

DATA = Path(__file__).resolve().parents[1] / "data"
EXTRA_SEED = int(os.environ.get("FASTNATS_JSZ_SEED") or random.SystemRandom().randrange(2**32))
ATTRIBUTES = ("me", "clustered", "depth", "replicas", "stream_keys", "consumer_keys", "top_k",
              "server", "meta_snapshot", "disabled", "total", "paged", "streams_held",
              "consumers_held", "accounts_seen", "accounts", "account_streams", "streams",
              "sources", "replica_rows", "durables", "ephemeral", "top")
OPTIONS = [
    JszOptions("server"), JszOptions("accounts"), JszOptions("streams"),
    JszOptions("streams", replicas=True), JszOptions("consumers"),
    JszOptions("consumers", replicas=True, top_k=3, stream_meta_keys=("team", "env.tier"),
               consumer_meta_keys=("owner",)),
    JszOptions("consumers", top_k=0, consumer_meta_keys=("owner", "missing")),
    JszOptions("consumers", top_k=1000),
]


def typed(value: object) -> object:
    """A value with the type of every number in it, so that 1 and 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", tuple((typed(k), typed(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(map(repr, value))))
    return (type(value).__name__, value)


def state(listing) -> dict:
    return {name: typed(getattr(listing, name)) for name in ATTRIBUTES}


def outcome(cls, me: str, options: JszOptions, pages: list[bytes]) -> object:
    listing = cls(me, options)
    try:
        counts = [listing.read(page) for page in pages]
    except ScrapeError as e:
        assert e.reason == DECODE and e.endpoint == "jsz", e
        return "refused"
    return counts, state(listing)


def same(pages: list[bytes] | bytes, me: str = "A1", options: JszOptions = OPTIONS[5]) -> object:
    pages = [pages] if isinstance(pages, (bytes, bytearray)) else pages
    core = outcome(_core.JszListing, me, options, pages)
    reference = outcome(_reference.JszListing, me, options, pages)
    assert core == reference, (me, options)
    return core


def test_the_core_is_compiled():
    assert _core.__file__.endswith(".so")


@pytest.mark.parametrize("server", ["a1", "a2", "a3", "solo"])
@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_recorded_bodies(server, options):
    body = (DATA / f"jsz_{server}.json").read_bytes()
    for me in ("A1", "A2", "A3", "solo", ""):
        assert same(body, me, options) != "refused"


def generated(seed: int) -> tuple[dict, str]:
    rng = random.Random(seed)
    plan = jszgen.Plan(streams=rng.randrange(0, 30), consumers=rng.randrange(0, 120),
                       accounts=rng.randrange(1, 5), me=rng.choice(jszgen.SERVERS),
                       r3=rng.random(), mirrors=rng.random() / 3, sourced=rng.random() / 3,
                       durable=rng.random())
    return jszgen.document(plan, seed), plan.me


@pytest.mark.parametrize("seed", [*range(40), EXTRA_SEED])
def test_generated_bodies(seed):
    print(f"seed {seed}")
    doc, me = generated(seed)
    rng = random.Random(seed)
    for options in OPTIONS:
        assert same(jszgen.render(doc), me, options) != "refused"
    pages = [orjson.dumps(jszgen.page(doc, k, 2))
             for k in range(0, len(doc["account_details"]), 2)]
    same(pages, me, rng.choice(OPTIONS))


def small() -> dict:
    return jszgen.document(jszgen.Plan(streams=4, consumers=12, accounts=2, r3=0.5, durable=0.5,
                                       mirrors=0.3, sourced=0.3), 7)


HOSTILE_VALUES = [None, True, False, -1, -0, 0, 1, 2**63, 2**64 - 1, 2**64, -2**63 - 1, 1.5,
                  -1.5, 0.0, 1e300, "", "x", "_other", "__unknown", "A1", "é\u2028𝄞", [], [1],
                  {}, {"a": 1}]


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):
            out += paths(item, (*prefix, index))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_hostile_values_everywhere(seed):
    doc = small()
    rng = random.Random(seed)
    targets = paths(doc)[1:]
    for path in rng.sample(targets, min(len(targets), 150)):
        bad = copy.deepcopy(doc)
        target = bad
        for key in path[:-1]:
            target = target[key]
        if rng.random() < 0.15 and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = rng.choice(HOSTILE_VALUES)
        body = json.dumps(bad, ensure_ascii=rng.random() < 0.5).encode()
        same(body, rng.choice(["A1", "A2", "A3"]), rng.choice(OPTIONS))


def test_every_truncation_and_repeated_keys():
    body = orjson.dumps(jszgen.document(jszgen.Plan(streams=2, consumers=4, accounts=1,
                                                    durable=0.5), 2))
    for cut in range(len(body)):
        assert same(body[:cut]) == "refused"
    text = body.decode()
    for key in ("streams", "config", "cluster", "name", "num_pending", "durable_name", "leader"):
        at = text.find(f'"{key}":')
        if at >= 0:
            doubled = text[:at] + f'"{key}":null,' + text[at:]
            same(doubled.encode())


DISABLED, ENABLED = "disabled", "enabled"


# Each body with its fate: refused with a decode error whose message says this (in words both
# implementations use), or read as a page of no accounts from a server with JetStream disabled
# or enabled.
@pytest.mark.parametrize("body, fate", [
    (b"", "malformed JSON"), (b"[]", "JSON object"), (b"null", "JSON object"),
    (b'{"disabled": true}', DISABLED), (b'{"disabled": null}', "disabled is"),
    (b'{"disabled": false}', "has no api"),
    (b'{"api": {"level": 1}, "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, '
     b'"accounts": 0, "ha_assets": 0}', ENABLED),
    (b'{"api": {"level": 1}, "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, '
     b'"accounts": 0, "ha_assets": 0} x', "malformed JSON"),
    (b'{"\\u0061pi": {"level": 1}, "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, '
     b'"accounts": 0, "ha_assets": 0, "account_details": null}', ENABLED),
])
def test_small_documents(body, fate):
    for options in OPTIONS:
        same(body, "A1", options)
        for cls in (_core.JszListing, _reference.JszListing):
            listing = cls("A1", options)
            if fate not in (DISABLED, ENABLED):
                with pytest.raises(ScrapeError, match=fate) as refused:
                    listing.read(body)
                assert refused.value.reason == DECODE and refused.value.endpoint == "jsz"
                continue
            assert listing.read(body) == 0, cls
            assert listing.disabled == (fate == DISABLED), cls
            assert (listing.server is None) == (fate == DISABLED), cls


# Raw JSON for the replicas of every cluster block of small(), each now led by A1, and what
# becomes of A1's claims: kept, refused (A1 listed among the replicas, under the lenient
# reading both walks share), or a decode error (a stream leader's replicas are read strictly).
SELF_LISTINGS = [
    ('null', "kept"), ('[]', "kept"), ('[{"name": "A2", "current": true}]', "kept"),
    ('[{"name": "a1", "current": true}]', "kept"), ('[{"name": "A1", "current": true}]', "refused"),
    ('[{"name": "A2", "current": true}, {"current": false, "name": "A1"}]', "refused"),
    ('[{"name": "A\\u0031", "current": true}]', "refused"),
    ('[{"n\\u0061me": "A1", "current": true}]', "refused"),
    ('[{"name": "A1", "name": "A2", "current": true}]', "kept"),
    ('[{"name": "A2", "name": "A1", "current": true}]', "refused"),
    ('[{"name": "A1"}]', "refused"), ('["A1"]', "error"), ('{}', "error"), ('"A1"', "error"),
    ('[null, {"name": "A1", "current": true}]', "refused"), ('[{"name": 1}]', "error"),
]


@pytest.mark.parametrize("replicas, fate", SELF_LISTINGS)
def test_a_leader_listing_itself_among_the_replicas_is_refused_alike(replicas, fate):
    doc = small()
    for account in doc["account_details"]:
        for stream in account.get("stream_detail", []):
            for item in (stream, *stream.get("consumer_detail", [])):
                if "cluster" in item:
                    item["cluster"].update(leader="A1", replicas="@")
    body = orjson.dumps(doc).replace(b'"replicas":"@"', b'"replicas":' + replicas.encode())
    for options in OPTIONS:
        same(body, "A1", options)
    for cls in (_core.JszListing, _reference.JszListing):
        listing = cls("A1", JszOptions("consumers", top_k=0))
        if fate == "error":
            with pytest.raises(ScrapeError, match="replicas"):
                listing.read(body)
            continue
        listing.read(body)
        led = [row for row in listing.streams if row[1] == "leader"]
        claims = (len(led), bool(listing.durables), bool(listing.ephemeral))
        assert claims == ((0, False, False) if fate == "refused" else (4, True, True)), cls
