"""LeafzAggregator: the compiled one against the reference, and the rules both must follow.

The differential tests run seeded simulations of a hub (tests/support/leafzgen.py) through both
implementations, with leafnodes that connect, reconnect under new ids, close with closes filed
late or dropped from a small closed list, odd and hostile label values, and a random
configuration; after every refresh both snapshots must be equal and render to the same bytes.
A failure prints its seed; FASTNATS_LEAFZ_SEED replays it as the extra scenario. The other tests
write their bodies by hand, so each shows the case it checks.
"""

from __future__ import annotations

import os
import random

import orjson
import pytest

from fastnats import _core, _reference
from fastnats.errors import ConnzDecodeError, LeafzDecodeError
from fastnats.metrics import (
    BY_NAME,
    CONNZ_RTT_LE,
    LEAF_GROUP_BY_FIELDS,
    LEAF_GROUP_LABELS,
    LEAFZ,
    NATS_LEAFNODE_CONNECTION_RTT_SECONDS,
    OTHER_GROUP,
)
from tests.support import leafzgen
from tests.support.connzagg import families as connz_families
from tests.support.connzagg import samples
from tests.support.connzagg import scenario as connz_scenario
from tests.support.series import assert_well_formed

EXTRA_SEED = int(os.environ.get("FASTNATS_LEAFZ_SEED") or random.SystemRandom().randrange(2**32))
U64_MAX = 2**64 - 1
IMPLS = [pytest.param(_core.LeafzAggregator, id="core"),
         pytest.param(_reference.LeafzAggregator, id="reference")]


def leaf(ident: int, **fields) -> dict:
    out = {"id": ident, "name": "L1", "is_spoke": False, "account": "T1", "ip": "127.0.0.1",
           "port": 58330, "rtt": "258µs", "in_msgs": 0, "out_msgs": 0, "in_bytes": 0,
           "out_bytes": 0, "subscriptions": 5, "compression": "s2_uncompressed"}
    out.update(fields)
    return out


def body(*leafs: dict, indent: bool = True) -> bytes:
    doc = {"server_id": "X", "now": "2026-11-29T19:03:54.241377117Z", "leafnodes": len(leafs),
           "leafs": list(leafs)}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)


def closed(*entries: dict) -> bytes:
    conns = [{"cid": e["id"], "kind": "Leafnode", **{k: v for k, v in e.items() if k != "id"}}
             for e in entries]
    return orjson.dumps({"server_id": "X", "num_connections": len(conns), "total": len(conns),
                         "offset": 0, "limit": 1024, "connections": conns})


def families(agg) -> list:
    return connz_families(agg, LEAF_GROUP_LABELS)


def test_the_core_is_the_compiled_extension():
    assert _core.__file__.endswith(".so"), _core.__file__


# -- differential ------------------------------------------------------------------------------

def scenario(seed: int):
    rng = random.Random(seed)
    fields = list(LEAF_GROUP_BY_FIELDS)
    rng.shuffle(fields)
    config = dict(group_by=tuple(fields[:rng.randrange(0, 5)]),
                  max_groups=rng.choice([1, 3, 10, 1000]),
                  group_ttl=rng.choice([0.0, 20.0, 3600.0]), top_k=rng.choice([0, 1, 3, 10]),
                  closed_slack=rng.choice([0.0, 2.0, 40.0]))
    hub = leafzgen.Hub(seed, odd=rng.random() < 0.6, closed_max=rng.choice([3, 30, 10_000]),
                       late=rng.choice([0.0, 0.3]))

    def refreshes():
        for _ in range(16):
            hub.step(opens=rng.randrange(25), closes=rng.randrange(8),
                     reconnects=rng.randrange(6), flashes=rng.randrange(3),
                     clients=rng.randrange(10), seconds=rng.choice([1, 15, 30]))
            if rng.random() < 0.05:
                hub.restart()
                hub.step(opens=5)
            fmt = dict(indent=rng.random() < 0.5, ascii_only=rng.random() < 0.3)
            page = rng.choice([1, 4, 50, 1000])
            pages = [hub.closed_listing(offset, page, **fmt)
                     for offset in range(0, rng.choice([0, 5, 60, 2000]), page)]
            yield hub.leafz_body(**fmt), pages, hub.now

    return config, refreshes()


def rendered_alike(core, ref) -> bytes:
    text = _core.render_text(families(core))
    assert _reference.render_text(families(core)) == text, "the writers differ"
    assert _reference.render_text(families(ref)) == text, "the aggregators differ"
    return text


@pytest.mark.parametrize("seed", list(range(40)) + [EXTRA_SEED])
def test_generated_refreshes_agree(seed):
    print(f"leafzgen seed {seed} (FASTNATS_LEAFZ_SEED={seed} replays it)")
    config, refreshes = scenario(seed)
    core, ref = _core.LeafzAggregator(**config), _reference.LeafzAggregator(**config)
    for step, (leafz, pages, now) in enumerate(refreshes):
        if step % 3 == 0:
            core.update(leafz, pages or None, now)
            ref.update(leafz, pages or None, now)
        else:
            wanted = core.scan(leafz)
            assert ref.scan(leafz) == wanted, (seed, step)
            for page in pages:
                if not wanted:
                    break
                wanted = core.match_closed(page)
                assert ref.match_closed(page) == wanted, (seed, step)
            core.commit(now)
            ref.commit(now)
        assert (core.count, core.closed, core.lost) == (ref.count, ref.closed, ref.lost)
        assert core.families() == ref.families(), f"seed {seed} step {step} config {config}"
        assert_well_formed(rendered_alike(core, ref))


@pytest.mark.parametrize("seed", range(6))
def test_counters_never_go_back_across_reconnects(seed):
    """Leafnodes reconnect under new ids and close, some closes are filed late and some fall
    out of a small closed list: no group counter of a group that stays ever decreases, and every
    vanished id counts once in the closes."""
    print(f"leafzgen seed {seed}")
    rng = random.Random(seed)
    hub = leafzgen.Hub(seed, closed_max=rng.choice([2, 10_000]), late=0.3, names=4)
    agg = _core.LeafzAggregator(top_k=3)
    before: dict[tuple, dict] = {}
    for _ in range(25):
        hub.step(opens=rng.randrange(6), closes=rng.randrange(3), reconnects=rng.randrange(4),
                 clients=rng.randrange(4))
        agg.update(hub.leafz_body(), [hub.closed_listing(0, 10_000)], hub.now)
        now = {name: samples(agg, name) for name in agg.families()}
        for name, fam in before.items():
            if BY_NAME[name].type != "counter":
                continue
            for labels, value in fam.items():
                assert now[name][labels] >= value, (name, labels)
        before = now
    closes = sum(samples(agg, "nats_leafnode_connections_closed_total").values())
    assert closes == agg.closed > 0


# -- catalogue and settings --------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_families_follow_the_catalogue(impl):
    agg = impl(group_by=("ip", "is_spoke"))
    assert set(agg.families()) == {m.name for m in LEAFZ}
    assert all(fam == [] for fam in agg.families().values())
    agg.update(body(leaf(1), leaf(2, is_spoke=True, ip="10.0.0.2")), None, 1.0)
    agg.update(body(leaf(1, in_msgs=4, out_msgs=2), leaf(2, ip="10.0.0.2", in_msgs=2,
                                                             out_msgs=8, is_spoke=True)),
               None, 3.0)
    for metric in LEAFZ:
        names = ("ip", "is_spoke") if metric.labels == (LEAF_GROUP_LABELS,) else metric.labels
        assert agg.families()[metric.name], metric.name
        for values, _ in agg.families()[metric.name]:
            assert len(values) == len(names), metric.name
    assert samples(agg, "nats_leafnode_connections") == {("127.0.0.1", "false"): 1,
                                                         ("10.0.0.2", "true"): 1}
    assert samples(agg, "nats_leafnode_top_in_messages_per_second") == {
        ("1", "L1", "T1", "127.0.0.1"): 2.0, ("2", "L1", "T1", "10.0.0.2"): 1.0}
    [(labels, (counts, total))] = agg.families()[NATS_LEAFNODE_CONNECTION_RTT_SECONDS.name]
    assert labels == () and len(counts) == len(CONNZ_RTT_LE) and counts[-1] == 2
    assert total == pytest.approx(0.000516)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kwargs", [
    {"group_by": ("lang",)}, {"group_by": ("name", "name")}, {"max_groups": 0},
    {"group_ttl": -1.0}, {"group_ttl": float("nan")}, {"top_k": -1}, {"top_k": 10_001},
    {"closed_slack": -1.0},
])
def test_bad_settings_are_refused(impl, kwargs):
    with pytest.raises(ValueError):
        impl(**kwargs)


@pytest.mark.parametrize("impl", IMPLS)
def test_steps_out_of_order_are_refused(impl):
    agg = impl()
    with pytest.raises(RuntimeError):
        agg.commit(1.0)
    with pytest.raises(RuntimeError):
        agg.match_closed(closed())
    agg.scan(body(leaf(1)))
    agg.commit(1.0)
    with pytest.raises(RuntimeError):
        agg.commit(2.0)
    with pytest.raises(TypeError):
        agg.scan("not bytes")


# -- the counting rules --------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_leafnode_counts_its_final_counters_from_connz(impl):
    agg = impl()
    agg.update(body(leaf(7, in_msgs=10, out_bytes=100), leaf(8)), None, 1.0)
    assert agg.scan(body(leaf(8))) == 1
    assert agg.match_closed(closed(leaf(99, in_msgs=5))) == 1      # another connection
    assert agg.match_closed(closed(leaf(7, in_msgs=12, out_bytes=150))) == 0
    agg.commit(2.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 12}
    assert samples(agg, "nats_leafnode_out_bytes_total") == {("T1", "L1"): 150}
    assert samples(agg, "nats_leafnode_connections_closed_total") == {("T1", "L1"): 1}
    assert samples(agg, "nats_leafnode_connections_lost_total") == {("T1", "L1"): 0}
    assert samples(agg, "nats_leafnode_connections") == {("T1", "L1"): 1}
    assert (agg.count, agg.closed, agg.lost) == (1, 1, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_entry_filed_late_is_still_counted(impl):
    agg = impl(closed_slack=0.0)
    agg.update(body(leaf(7, in_msgs=10)), None, 1.0)
    agg.update(body(), None, 2.0)
    # Vanished: its last-seen counters count, and it is closed; its entry is still awaited.
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 10}
    assert samples(agg, "nats_leafnode_connections_closed_total") == {("T1", "L1"): 1}
    assert agg.scan(body()) == 1
    agg.match_closed(closed(leaf(7, in_msgs=11)))
    agg.commit(3.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 11}
    assert samples(agg, "nats_leafnode_connections_closed_total") == {("T1", "L1"): 1}
    assert agg.lost == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_a_leafnode_whose_entry_never_comes_is_lost_with_its_last_counters(impl):
    agg = impl(closed_slack=5.0)
    agg.update(body(leaf(7, in_msgs=10)), None, 1.0)
    agg.update(body(), None, 2.0)
    agg.update(body(), None, 3.0)     # within closed_slack: still awaited
    assert agg.lost == 0
    assert agg.scan(body()) == 1
    agg.commit(8.0)
    assert samples(agg, "nats_leafnode_connections_lost_total") == {("T1", "L1"): 1}
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 10}
    assert agg.scan(body()) == 0
    agg.commit(9.0)
    # An entry found after it was given up adds nothing: the id is forgotten.
    agg.update(body(), [closed(leaf(7, in_msgs=50))], 10.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 10}
    assert (agg.closed, agg.lost) == (1, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_reconnects_keep_the_group_counters_monotonic(impl):
    agg = impl()
    agg.update(body(leaf(3, in_msgs=100, out_msgs=50)), None, 1.0)
    # The leafnode reconnects under a new id; its old connection's entry has more.
    agg.update(body(leaf(9, in_msgs=1)), [closed(leaf(3, in_msgs=120, out_msgs=40))], 2.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 121}
    # A closed entry lower than last seen (it cannot be) never takes counts back.
    assert samples(agg, "nats_leafnode_out_messages_total") == {("T1", "L1"): 50}
    assert samples(agg, "nats_leafnode_connections") == {("T1", "L1"): 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_an_id_whose_counters_go_back_is_another_leafnode(impl):
    agg = impl()
    agg.update(body(leaf(3, in_msgs=100)), None, 1.0)
    agg.update(body(leaf(3, in_msgs=4)), None, 2.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 104}
    assert samples(agg, "nats_leafnode_connections_lost_total") == {("T1", "L1"): 1}
    assert samples(agg, "nats_leafnode_connections_closed_total") == {("T1", "L1"): 1}
    assert samples(agg, "nats_leafnode_connections") == {("T1", "L1"): 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_leafnode_listed_again_while_awaited_counts_once(impl):
    agg = impl(closed_slack=100.0)
    agg.update(body(leaf(3, in_msgs=10)), None, 1.0)
    agg.update(body(), None, 2.0)
    agg.update(body(leaf(3, in_msgs=15)), None, 3.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 15}
    assert samples(agg, "nats_leafnode_connections") == {("T1", "L1"): 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_the_first_listing_of_an_id_wins(impl):
    agg = impl()
    agg.update(body(leaf(3, in_msgs=10), leaf(3, in_msgs=99, name="x")), None, 1.0)
    assert agg.count == 1
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 10}


@pytest.mark.parametrize("impl", IMPLS)
def test_group_cap_other_and_ttl(impl):
    agg = impl(group_by=("name",), max_groups=2, group_ttl=10.0)
    agg.update(body(leaf(1, name="a"), leaf(2, name="b"), leaf(3, name="c", in_msgs=3),
                    leaf(4, name="d")), None, 1.0)
    assert samples(agg, "nats_leafnode_connections") == {("a",): 1, ("b",): 1,
                                                         (OTHER_GROUP,): 2}
    assert samples(agg, "nats_leafnode_in_messages_total")[(OTHER_GROUP,)] == 3
    assert samples(agg, "nats_leafnode_groups") == {(): 2}
    assert samples(agg, "nats_leafnode_group_overflow_total") == {(): 2}
    # b leaves; its group keeps its counters for group_ttl, then makes room.
    agg.update(body(leaf(1, name="a"), leaf(3, name="c", in_msgs=3), leaf(4, name="d")),
               [closed(leaf(2, name="b"))], 2.0)
    assert ("b",) in samples(agg, "nats_leafnode_connections")
    agg.update(body(leaf(1, name="a"), leaf(3, name="c", in_msgs=3), leaf(4, name="d"),
                    leaf(5, name="e")), None, 20.0)
    assert samples(agg, "nats_leafnode_connections") == {("a",): 1, ("e",): 1,
                                                         (OTHER_GROUP,): 2}
    assert samples(agg, "nats_leafnode_group_overflow_total") == {(): 2}


@pytest.mark.parametrize("impl", IMPLS)
def test_label_values_are_escaped_like_client_values(impl):
    names = ["_other", "__other", "_unknown", 'q"uote\\', "new\nline", "名前😀", ""]
    agg = impl(group_by=("name",), top_k=10)
    agg.update(body(*(leaf(k + 1, name=n) for k, n in enumerate(names))), None, 1.0)
    got = set(samples(agg, "nats_leafnode_connections"))
    assert got == {("__other",), ("___other",), ("__unknown",), ('q"uote\\',), ("new\nline",),
                   ("名前😀",), ("",)}
    top = {labels[1] for labels in samples(agg, "nats_leafnode_top_rtt_seconds")}
    assert top == {labels[0] for labels in got}


@pytest.mark.parametrize("impl", IMPLS)
def test_top_k_by_rtt_and_rate(impl):
    agg = impl(group_by=(), top_k=2)
    agg.update(body(leaf(1, rtt="5ms"), leaf(2, rtt="1s"), leaf(3, rtt="5ms"), leaf(4, rtt="")),
               None, 1.0)
    assert agg.families()["nats_leafnode_top_rtt_seconds"] == [
        (("2", "L1", "T1", "127.0.0.1"), 1.0), (("1", "L1", "T1", "127.0.0.1"), 0.005)]
    assert agg.families()["nats_leafnode_top_in_messages_per_second"] == []
    agg.update(body(leaf(1, in_msgs=10), leaf(2), leaf(3, in_msgs=30, out_msgs=1)), None, 11.0)
    assert agg.families()["nats_leafnode_top_in_messages_per_second"] == [
        (("3", "L1", "T1", "127.0.0.1"), 3.0), (("1", "L1", "T1", "127.0.0.1"), 1.0)]
    assert agg.families()["nats_leafnode_top_out_messages_per_second"] == [
        (("3", "L1", "T1", "127.0.0.1"), 0.1)]


@pytest.mark.parametrize("impl", IMPLS)
def test_counters_up_to_2_64_minus_1_and_sums_saturate(impl):
    agg = impl(group_by=())
    agg.update(body(leaf(1, in_msgs=U64_MAX), leaf(2, in_msgs=5, out_bytes=U64_MAX)), None, 1.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {(): U64_MAX}
    assert samples(agg, "nats_leafnode_out_bytes_total") == {(): U64_MAX}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("leafs", [b"null", b"[]"])
def test_no_leafnodes(impl, leafs):
    agg = impl()
    agg.update(b'{"leafnodes": 0, "leafs": ' + leafs + b"}", None, 1.0)
    assert agg.count == 0
    assert agg.families()["nats_leafnode_connections"] == []
    assert agg.families()["nats_leafnode_groups"] == [((), 0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_escapes_unicode_and_compact_layout(impl):
    raw = (b'{"leafs":[{"\\u0069d":1,"name":"caf\\u00e9 \\ud83d\\ude00 \\"q\\"","account":'
           b'"\xc3\xbc\xe4\xb8\xad","ip":"::1","rtt":"1\\u00b5s","in_msgs":3,"is_spoke":true}]}')
    agg = impl(group_by=("name", "account", "is_spoke"))
    agg.update(raw, None, 1.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {
        ('café 😀 "q"', "ü中", "true"): 3}
    [(_, (_, total))] = agg.families()[NATS_LEAFNODE_CONNECTION_RTT_SECONDS.name]
    assert total == 1e-06


# -- malformed input -----------------------------------------------------------------------------

MALFORMED = [
    # (body, offset the core reports)
    (b"", 0),
    (b"[]", 0),
    (b'{"leafnodes": 1}', 15),
    (b'{"leafs": {}}', 10),
    (b'{"leafs": [1]}', 11),
    (b'{"leafs": [{"name": "x"}]}', 11),
    (b'{"leafs": [{"id": null}]}', 11),
    (b'{"leafs": [{"id": -1}]}', 18),
    (b'{"leafs": [{"id": 1.5}]}', 18),
    (b'{"leafs": [{"id": 18446744073709551616}]}', 18),
    (b'{"leafs": [{"id": 1, "in_msgs": "7"}]}', 32),
    (b'{"leafs": [{"id": 1, "subscriptions": true}]}', 38),
    (b'{"leafs": [{"id": 1, "name": 7}]}', 29),
    (b'{"leafs": [{"id": 1, "is_spoke": "yes"}]}', 33),
    (b'{"leafs": [{"id": 1, "rtt": "1 s"}]}', 29),
    (b'{"leafs": [{"id": 1, "name": "a\x01"}]}', 31),
    (b'{"leafs": [{"id": 1, "name": "ok\xff"}]}', 32),
    (b'{"leafs": [{"id": 1, "name": "\\ud800"}]}', 30),
    (b'{"leafs": [{"id": 1,}]}', 20),
    (b'{"leafs": [{"id": 1} {"id": 2}]}', 21),
    (b'{"leafs": []} x', 14),
    (b'{"leafs": [{"id": 1, "x": [1, 2}]}', 31),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("raw,offset", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_raise_with_the_offset_and_change_nothing(impl, raw, offset):
    agg = impl()
    agg.update(body(leaf(1, in_msgs=3)), None, 1.0)
    before = agg.families()
    with pytest.raises(LeafzDecodeError) as err:
        agg.scan(raw)
    if impl is _core.LeafzAggregator:
        assert err.value.offset == offset, str(err.value)
    with pytest.raises(RuntimeError):
        agg.commit(2.0)
    assert agg.families() is before
    agg.update(body(leaf(1, in_msgs=4)), None, 2.0)
    assert samples(agg, "nats_leafnode_in_messages_total") == {("T1", "L1"): 4}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_malformed_closed_page_is_a_connz_error_and_changes_nothing(impl):
    agg = impl()
    agg.update(body(leaf(1, in_msgs=3), leaf(2)), None, 1.0)
    before = agg.families()
    with pytest.raises(ConnzDecodeError, match="^closed body: "):
        agg.update(body(leaf(2)), [closed(leaf(1, in_msgs=9)), b'{"connections": [{"cid": -1}]}'],
                   2.0)
    assert agg.families() is before
    with pytest.raises(RuntimeError):
        agg.commit(2.0)


# -- /connz leaves leafnodes out of the client groups ---------------------------------------------

def connz(*conns: dict, closed: bool = False) -> bytes:
    out = [{"cid": c["cid"], "kind": c.get("kind", "Client"), "ip": "10.0.0.1",
            "start": f"2026-11-25T08:00:{c['cid'] % 60:02d}Z", "in_msgs": c.get("in_msgs", 0),
            "out_msgs": 0, "in_bytes": 0, "out_bytes": 0, "name": c.get("name", "svc"),
            "account": "T1"} for c in conns]
    return orjson.dumps({"num_connections": len(out), "total": len(out), "connections": out})


@pytest.mark.parametrize("impl", [pytest.param(_core.ConnzAggregator, id="core"),
                                  pytest.param(_reference.ConnzAggregator, id="reference")])
@pytest.mark.parametrize("kind", ["Leafnode", "Le\\u0061fnode"])
def test_connz_counts_no_leafnode_in_the_client_groups(impl, kind):
    agg = impl()
    leafnode = {"cid": 2, "kind": kind, "name": "L1", "in_msgs": 50}
    agg.update(connz({"cid": 1}, leafnode).replace(b"\\\\u", b"\\u"), None, 1.0, False, 1)
    assert samples(agg, "nats_client_connections") == {("T1", "svc"): 1}
    assert agg.count == 1
    agg.update(connz({"cid": 1}), connz(dict(leafnode, in_msgs=60)).replace(b"\\\\u", b"\\u"),
               2.0, False, 1)
    assert samples(agg, "nats_client_in_messages_total") == {("T1", "svc"): 0}
    for step in range(3, 8):
        agg.update(connz({"cid": 1}), connz(), float(step), True, 1)
    # Its cid was read: no hole, so nothing is lost.
    assert (agg.lost_known, agg.lost_unknown) == (0, 0)


@pytest.mark.parametrize("seed", range(12))
def test_connz_with_leafnodes_agrees_with_the_reference(seed):
    """The /connz differential scenarios with a share of the connections made leafnodes."""
    print(f"connzgen seed {seed}")
    rng = random.Random(seed)

    def leafy(page: bytes) -> bytes:
        doc = orjson.loads(page)
        for conn in doc["connections"] or ():
            if conn["cid"] % 3 == 0:
                conn["kind"] = "Leafnode"
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 if rng.random() < 0.5 else 0)

    def pages(body):
        if body is None:
            return None
        return [leafy(p) for p in body] if isinstance(body, list) else leafy(body)

    config, refreshes = connz_scenario(seed)
    core, ref = _core.ConnzAggregator(**config), _reference.ConnzAggregator(**config)
    for step, (open_body, closed_body, now, overflow, accepted) in enumerate(refreshes):
        open_body, closed_body = pages(open_body), pages(closed_body)
        core.update(open_body, closed_body, now, overflow, accepted)
        ref.update(open_body, closed_body, now, overflow, accepted)
        assert (core.total, core.count, core.lost_known, core.lost_unknown) == (
            ref.total, ref.count, ref.lost_known, ref.lost_unknown), (seed, step)
        assert core.families() == ref.families(), f"seed {seed} step {step}"
        for name, fam in core.families().items():
            if name.startswith("nats_client_top") or name.startswith("nats_connection_"):
                assert all(int(labels[0]) % 3 for labels, _ in fam if labels), name
