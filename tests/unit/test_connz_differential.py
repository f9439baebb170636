"""Differential tests: the compiled ConnzAggregator against the reference, on generated input.

Each scenario is a seeded simulation of a nats-server (tests/support/connzgen.py) refreshed many
times with churn, restarts, paging, closes filed late, closed lists read whole or by pages and
said to overflow, and odd label values (the markers among them), under a random aggregator
configuration.
After every refresh both snapshots must be equal, and their renderings must be the same bytes:
the core's families through both writers, and the reference's families through its own. Bytes,
not parsed samples: a parser normalises names, and hid a writer that renamed families. A failure
prints its seed; set FASTNATS_CONNZ_SEED to replay it as the extra scenario.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnats import _core, _reference
from fastnats.errors import ConnzDecodeError
from tests.support import connzgen
from tests.support.connzagg import families, scenario
from tests.support.series import assert_well_formed

EXTRA_SEED = int(os.environ.get("FASTNATS_CONNZ_SEED") or random.SystemRandom().randrange(2**32))


def rendered_alike(core, ref) -> bytes:
    text = _core.render_text(families(core))
    assert _reference.render_text(families(core)) == text, "the writers differ"
    assert _reference.render_text(families(ref)) == text, "the aggregators differ"
    return text


@pytest.mark.parametrize("seed", list(range(40)) + [EXTRA_SEED])
def test_generated_refreshes_agree(seed):
    print(f"connzgen seed {seed} (FASTNATS_CONNZ_SEED={seed} replays it)")
    config, refreshes = scenario(seed)
    core, ref = _core.ConnzAggregator(**config), _reference.ConnzAggregator(**config)
    for step, (open_body, closed_body, now, overflow, accepted) in enumerate(refreshes):
        core.update(open_body, closed_body, now, overflow, accepted)
        ref.update(open_body, closed_body, now, overflow, accepted)
        assert (core.total, core.count, core.lost_known, core.lost_unknown) == (
            ref.total, ref.count, ref.lost_known, ref.lost_unknown), (seed, step)
        assert core.families() == ref.families(), f"seed {seed} step {step} config {config}"
        assert_well_formed(rendered_alike(core, ref))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789.+-nsuµμmhdyx ", max_size=14))
def test_duration_parsers_agree(text):
    try:
        expected = _reference.parse_go_duration(text)
    except ValueError:
        with pytest.raises(ValueError):
            _core.parse_go_duration(text)
    else:
        assert _core.parse_go_duration(text) == expected


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(data))
        roll = rng.random()
        if roll < 0.4:
            data[at] = rng.choice(b'{}[]",:\\0123456789-.eEnul tf\n\x00\xff\xc3')
        elif roll < 0.7:
            del data[at:at + rng.randrange(1, 8)]
        else:
            data[at:at] = rng.choice([b",", b'"', b"{", b"]", b"\\u00e9", b"\\ud83d", b"0",
                                      b'"x":1,', b"null", b"\xe2\x82"])
    return bytes(data)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_bodies(seed):
    """Damaged bodies never crash the core: it raises ConnzDecodeError inside the body, or reads
    it the way the reference does. A rejected body leaves the state as it was."""
    print(f"mutation seed {seed}")
    rng = random.Random(seed)
    server = connzgen.Server(seed, odd=True)
    server.step(opens=12)
    core, ref = _core.ConnzAggregator(top_k=3), _reference.ConnzAggregator(top_k=3)
    good = server.open_body(indent=seed % 2 == 0)
    core.update(good, None, server.now)
    ref.update(good, None, server.now)
    for k in range(300):
        bad = mutate(rng, good)
        before = core.families()
        try:
            core.update(bad, None, server.now + k + 1)
        except ConnzDecodeError as e:
            assert 0 <= e.offset <= len(bad), (seed, k, bad)
            assert core.families() is before
            continue
        try:
            ref.update(bad, None, server.now + k + 1)
        except ConnzDecodeError:
            # Only the reference checks UTF-8 and \u surrogate pairs in the fields the core
            # skips; the core checks them in the label values it reads.
            ref = _reference.ConnzAggregator(top_k=3)
            core = _core.ConnzAggregator(top_k=3)
            for agg in (core, ref):
                agg.update(good, None, server.now)
            continue
        assert core.families() == ref.families(), (seed, k, bad)
        rendered_alike(core, ref)
