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
from prometheus_client.parser import text_string_to_metric_families

from fastnats import _core, _reference
from fastnats.errors import ConnzDecodeError
from fastnats.metrics import BY_NAME, GROUP_BY_FIELDS, GROUP_LABELS
from tests.support import connzgen

EXTRA_SEED = int(os.environ.get("FASTNATS_CONNZ_SEED") or random.SystemRandom().randrange(2**32))


def families(agg) -> list:
    """The aggregator's snapshot as families, with the label names the collector gives them."""
    out = []
    for name, samples in agg.families().items():
        metric = BY_NAME[name]
        labels = agg.group_by if metric.labels == (GROUP_LABELS,) else metric.labels
        out.append((metric, labels, samples))
    return out


def rendered_alike(core, ref) -> bytes:
    text = _core.render_text(families(core))
    assert _reference.render_text(families(core)) == text, "the writers differ"
    assert _reference.render_text(families(ref)) == text, "the aggregators differ"
    return text


def assert_well_formed(text: bytes) -> None:
    seen = set()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)


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
