"""Unit tests of ConnzAggregator: the compiled one, and the reference where both must agree.

Bodies are written by hand here, so each test shows the case it checks; the seeded generator
(tests/support/connzgen.py) drives the churn tests and the differential suite.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from fastnats import _core, _reference
from fastnats.errors import ConnzDecodeError
from fastnats.metrics import (
    CONNZ,
    CONNZ_IDLE_LE,
    CONNZ_PENDING_LE,
    CONNZ_RTT_LE,
    CONNZ_SUBS_LE,
    DISTRIBUTION,
    GROUP_LABELS,
    NATS_CLIENT_CONNECTION_IDLE_SECONDS,
    NATS_CLIENT_CONNECTION_PENDING_BYTES,
    NATS_CLIENT_CONNECTION_RTT_SECONDS,
    NATS_CLIENT_CONNECTION_SUBSCRIPTIONS,
    OTHER_GROUP,
    UNKNOWN_GROUP,
)
from tests.support import connzgen
from tests.support.connzagg import IMPLS, body, conn, samples

DATA = Path(__file__).resolve().parents[1] / "data"
U64_MAX = 2**64 - 1


def distribution(agg, metric) -> tuple[tuple[int, ...], int | float]:
    """The one sample of a distribution: cumulative bucket counts (+Inf last) and the sum."""
    [(labels, value)] = agg.families()[metric.name]
    assert labels == ()
    return value


def test_the_core_is_the_compiled_extension():
    assert _core.__file__.endswith(".so"), _core.__file__
    assert _core.IMPLEMENTATION == "cython"


# -- catalogue --------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_families_follow_the_catalogue(impl):
    agg = impl(group_by=("lang", "account"), per_connection=True)
    assert set(agg.families()) == {m.name for m in CONNZ}
    agg.update(body(conn(1, pending_bytes=5)), None, 1.0)
    agg.update(body(conn(1, pending_bytes=5, in_msgs=3, out_msgs=2)), None, 2.0)
    for metric in CONNZ:
        names = ("lang", "account") if metric.labels == (GROUP_LABELS,) else metric.labels
        assert agg.families()[metric.name], metric.name
        for values, _ in agg.families()[metric.name]:
            assert len(values) == len(names), metric.name
    assert agg.families()["nats_client_top_pending_bytes"][0][0] == ("1", "svc", "A", "10.0.0.1")


DISTRIBUTIONS = [(NATS_CLIENT_CONNECTION_RTT_SECONDS, CONNZ_RTT_LE),
                 (NATS_CLIENT_CONNECTION_PENDING_BYTES, CONNZ_PENDING_LE),
                 (NATS_CLIENT_CONNECTION_IDLE_SECONDS, CONNZ_IDLE_LE),
                 (NATS_CLIENT_CONNECTION_SUBSCRIPTIONS, CONNZ_SUBS_LE)]


def test_catalogue_distributions_are_histograms_and_names_unique():
    names = [m.name for m in CONNZ]
    assert len(set(names)) == len(names)
    assert [m for m in CONNZ if m.type == DISTRIBUTION] == [m for m, _ in DISTRIBUTIONS]
    for metric, les in DISTRIBUTIONS:
        assert metric.buckets == les
        assert les[-1] == "+Inf"
        assert metric.exposed_type == "histogram"
        assert metric.labels == ()
        assert not metric.name.endswith(("_bucket", "_sum", "_count"))


@pytest.mark.parametrize("impl", IMPLS)
def test_distribution_samples_have_the_catalogue_shape(impl):
    agg = impl()
    assert all(agg.families()[m.name] == [] for m, _ in DISTRIBUTIONS)
    agg.update(body(conn(1), conn(2, rtt="", idle="3s", subscriptions=4)), None, 1.0)
    for metric, les in DISTRIBUTIONS:
        counts, total = distribution(agg, metric)
        assert type(counts) is tuple and len(counts) == len(les)
        assert list(counts) == sorted(counts)
        assert counts[-1] == (1 if metric is NATS_CLIENT_CONNECTION_RTT_SECONDS else 2)
        assert type(total) is (int if metric.name.endswith(("_bytes", "_subscriptions"))
                               else float)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kwargs", [
    {"group_by": ("host",)}, {"group_by": ("name", "name")}, {"max_groups": 0},
    {"group_ttl": -1.0}, {"group_ttl": float("nan")}, {"top_k": -1}, {"top_k": 10_001},
    {"per_connection_max": -1},
])
def test_bad_settings_are_refused(impl, kwargs):
    with pytest.raises(ValueError):
        impl(**kwargs)


# -- Go durations -----------------------------------------------------------------------------

DURATIONS = [
    ("0s", 0), ("0", 0), ("-0", 0), ("1ns", 1), ("500µs", 500_000), ("500μs", 500_000),
    ("500us", 500_000), ("818µs", 818_000), ("1.234ms", 1_234_000), ("2m3.5s", 123_500_000_000),
    ("1h2m", 3_720_000_000_000), ("1.5h", 5_400_000_000_000), ("-1.5s", -1_500_000_000),
    ("+2s", 2_000_000_000), (".5s", 500_000_000), ("5.s", 5_000_000_000),
    ("2m58.121936993s", 178_121_936_993), ("1y2d3h4m5s", 31_719_845_000_000_000),
    ("16d2h0m1s", 1_389_601_000_000_000), ("1.0000000000000000009s", 1_000_000_000),
    ("9223372036854775807ns", 2**63 - 1), ("1s1h", 3_601_000_000_000),
]
BAD_DURATIONS = ["", "s", "1", "1x", ".s", "1sm", "--1s", "1 s", "9223372036854775808ns",
                 "3000000h", "1.5", "µs", "1e3s"]


@pytest.mark.parametrize("parse", [_core.parse_go_duration, _reference.parse_go_duration],
                         ids=["core", "reference"])
@pytest.mark.parametrize("text,ns", DURATIONS)
def test_go_durations(parse, text, ns):
    assert parse(text) == ns


@pytest.mark.parametrize("parse", [_core.parse_go_duration, _reference.parse_go_duration],
                         ids=["core", "reference"])
@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_bad_go_durations(parse, text):
    with pytest.raises(ValueError):
        parse(text)


# -- a body recorded from nats-server 2.15.1 -----------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_recorded_body_sums_match_connz_and_varz(impl):
    open_body = (DATA / "connz_open.json").read_bytes()
    closed_body = (DATA / "connz_closed.json").read_bytes()
    varz = json.loads((DATA / "connz_varz.json").read_bytes())
    listed = json.loads(open_body)["connections"] + json.loads(closed_body)["connections"]
    agg = impl(group_by=())
    agg.update(open_body, closed_body, 1.0)
    assert (agg.total, agg.count) == (4, 4)
    assert samples(agg, "nats_client_connections") == {(): varz["connections"]}
    for metric, key in (("in_messages", "in_msgs"), ("out_messages", "out_msgs"),
                        ("in_bytes", "in_bytes"), ("out_bytes", "out_bytes")):
        got = samples(agg, f"nats_client_{metric}_total")[()]
        assert got == sum(c[key] for c in listed) == varz[key]
    by_account = impl(group_by=("account", "name"))
    by_account.update(open_body, closed_body, 1.0)
    conns = samples(by_account, "nats_client_connections")
    assert conns[("A", "orders-é中")] == 1
    assert conns[("A", 'quote"back\\slash')] == 1
    assert conns[("B", "svc\nnl")] == 1
    assert conns[("B", "")] == 1        # no name given
    assert conns[("A", "batch-job")] == 0   # closed, still counted in the totals
    assert samples(by_account, "nats_client_in_messages_total")[("A", "batch-job")] == 1
    rtt_counts, _ = distribution(by_account, NATS_CLIENT_CONNECTION_RTT_SECONDS)
    assert rtt_counts[-1] == 4


# -- strings, numbers and layout ----------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_escapes_unicode_and_compact_layout(impl):
    raw = (b'{"connections":[{"\\u0063id":1,"name":"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\/ '
           b'\\b\\f\\n\\r\\t","account":"\xc3\xbc\xe4\xb8\xad\xf0\x9f\x98\x80","type":"","kind"'
           b':"Client","ip":"::1","rtt":"1\\u00b5s","in_msgs":3}],"total":1}')
    agg = impl(group_by=("name", "account", "kind"))
    agg.update(raw, None, 1.0)
    key = ('café 😀 "q" \\ / \b\f\n\r\t', "ü中😀", "Client")
    assert samples(agg, "nats_client_in_messages_total") == {key: 3}
    assert distribution(agg, NATS_CLIENT_CONNECTION_RTT_SECONDS)[1] == 1e-06


@pytest.mark.parametrize("impl", IMPLS)
def test_type_refines_kind(impl):
    agg = impl(group_by=("kind",))
    agg.update(body(conn(1, type="websocket"), conn(2, type="mqtt"), conn(3)), None, 1.0)
    assert samples(agg, "nats_client_connections") == {("websocket",): 1, ("mqtt",): 1,
                                                       ("nats",): 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_counters_up_to_2_64_minus_1_and_sums_saturate(impl):
    agg = impl(group_by=())
    agg.update(body(conn(1, in_msgs=U64_MAX, out_bytes=U64_MAX - 1), conn(2, out_bytes=1)),
               None, 1.0)
    assert samples(agg, "nats_client_out_bytes_total") == {(): U64_MAX}
    agg2 = impl(group_by=("name",))
    agg2.update(body(conn(1, in_msgs=U64_MAX, name="a")), None, 1.0)
    assert samples(agg2, "nats_client_in_messages_total") == {("a",): U64_MAX}
    agg.update(body(conn(1, in_msgs=U64_MAX), conn(2, in_msgs=5)), None, 2.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): U64_MAX}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("connections", [b"null", b"[]"])
def test_no_connections(impl, connections):
    agg = impl()
    agg.update(b'{"total": 0, "connections": ' + connections + b"}", None, 1.0)
    assert (agg.total, agg.count) == (0, 0)
    assert agg.families()["nats_client_connections"] == []
    assert distribution(agg, NATS_CLIENT_CONNECTION_PENDING_BYTES) == ((0,) * 11, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_every_buffer_type_and_pages(impl):
    conns = [conn(cid, name=f"n{cid % 3}") for cid in range(1, 8)]
    whole = impl()
    whole.update(body(*conns), None, 1.0)
    for buf in (bytearray(body(*conns)), memoryview(body(*conns))):
        agg = impl()
        agg.update(buf, None, 1.0)
        assert agg.families() == whole.families()
    paged = impl()
    pages = list(connzgen.paginate(conns, 3, overlap=1))
    assert len(pages) == 3
    paged.update(pages, None, 1.0)
    assert (paged.total, paged.count) == (7, 7)   # repeated cids are read once
    assert paged.families() == whole.families()
    with pytest.raises(TypeError):
        impl().update("not bytes", None, 1.0)
    with pytest.raises(ValueError):
        impl().update([], None, 1.0)


# -- malformed input ----------------------------------------------------------------------------

MALFORMED = [
    # (body, offset the core reports)
    (b"", 0),
    (b"   ", 3),
    (b"[]", 0),
    (b'{"total": 1}', 11),
    (b'{"connections": {}}', 16),
    (b'{"connections": [1]}', 17),
    (b'{"connections": [{"name": "x"}]}', 17),
    (b'{"connections": [{"cid": null}]}', 17),
    (b'{"connections": [{"cid": -1}]}', 25),
    (b'{"connections": [{"cid": 1.5}]}', 25),
    (b'{"connections": [{"cid": 1e3}]}', 25),
    (b'{"connections": [{"cid": 01}]}', 25),
    (b'{"connections": [{"cid": 18446744073709551616}]}', 25),
    (b'{"connections": [{"cid": 1, "in_msgs": "7"}]}', 39),
    (b'{"connections": [{"cid": 1, "name": 7}]}', 36),
    (b'{"connections": [{"cid": 1, "rtt": "1 s"}]}', 36),
    (b'{"connections": [{"cid": 1, "idle": "5x"}]}', 37),
    (b'{"connections": [{"cid": 1,}]}', 27),
    (b'{"connections": [{"cid": 1} {"cid": 2}]}', 28),
    (b'{"connections": [{"cid": 1, "name": "a\x01"}]}', 38),
    (b'{"connections": [{"cid": 1, "name": "\\x"}]}', 37),
    (b'{"connections": [{"cid": 1, "name": "\\u12g4"}]}', 37),
    (b'{"connections": [{"cid": 1, "name": "\\ud800"}]}', 37),
    (b'{"connections": [{"cid": 1, "name": "\\udc00x"}]}', 37),
    (b'{"connections": [{"cid": 1, "name": "ok\xff"}]}', 39),
    (b'{"connections": [{"cid": 1, "name": "\xed\xa0\x80"}]}', 37),
    (b'{"connections": [{"cid": 1, "tls": tru}]}', 35),
    (b'{"connections": [{"cid": 1, "port": -}]}', 36),
    (b'{"connections": [{"cid": 1, "x": [1, 2}]}', 38),
    (b'{"connections": []} x', 20),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("raw,offset", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_raise_with_the_offset(impl, raw, offset):
    agg = impl()
    with pytest.raises(ConnzDecodeError) as err:
        agg.update(raw, None, 1.0)
    assert str(err.value).startswith("open body: ")
    if impl is _core.ConnzAggregator:
        assert err.value.offset == offset, str(err.value)


@pytest.mark.parametrize("impl", IMPLS)
def test_every_truncation_raises_and_changes_nothing(impl):
    good = (DATA / "connz_open.json").read_bytes()
    closed = (DATA / "connz_closed.json").read_bytes()
    agg, twin = impl(), impl()
    agg.update(good, closed, 1.0)
    twin.update(good, closed, 1.0)
    before = agg.families()
    for cut in range(len(good.rstrip())):
        with pytest.raises(ConnzDecodeError) as err:
            agg.update(good[:cut], None, 2.0)
        if impl is _core.ConnzAggregator:
            assert 0 <= err.value.offset <= cut
    for cut in range(len(closed.rstrip())):
        with pytest.raises(ConnzDecodeError, match="^closed body: "):
            agg.update(good, closed[:cut], 2.0)
    assert agg.families() is before
    assert (agg.total, agg.count) == (4, 4)
    # The failures left no trace: both see the same next refresh the same way.
    agg.update(good, None, 3.0)
    twin.update(good, None, 3.0)
    assert agg.families() == twin.families()


def test_nesting_of_skipped_values_is_bounded():
    deep = b'{"connections": [], "x": ' + b"[" * 600 + b"]" * 600 + b"}"
    with pytest.raises(ConnzDecodeError, match="nesting too deep") as err:
        _core.ConnzAggregator().update(deep, None, 1.0)
    assert err.value.offset == 25 + 511     # the body object is the first of 512 levels
    fine = b'{"connections": [], "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    _core.ConnzAggregator().update(fine, None, 1.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_error_names_the_page(impl):
    with pytest.raises(ConnzDecodeError, match=r"^open body page 2: "):
        impl().update([body(conn(1)), b'{"connections": [{}]}'], None, 1.0)
    with pytest.raises(ConnzDecodeError, match=r"^closed body: "):
        impl().update(body(conn(1)), b"{", 1.0)


def test_invalid_label_value_on_a_later_page_leaves_state_unchanged():
    agg = _core.ConnzAggregator(group_by=("name",))
    agg.update(body(conn(1, name="a")), None, 1.0)
    before = agg.families()
    bad = [body(conn(2, name="b")), body(conn(3, name="c")) .replace(b'"c"', b'"\xc0"')]
    with pytest.raises(ConnzDecodeError, match="page 2: invalid UTF-8"):
        agg.update(bad, None, 2.0)
    assert agg.families() is before
    agg.update(body(conn(1, name="a"), conn(2, name="b")), None, 3.0)
    assert samples(agg, "nats_client_connections") == {("a",): 1, ("b",): 1}


# -- counters through churn ---------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_departed_connections_fold_into_closed_totals(impl):
    agg = impl(group_by=("name",))
    agg.update(body(conn(1, in_msgs=10, name="a"), conn(2, in_msgs=5, name="a")), None, 1.0)
    assert samples(agg, "nats_client_in_messages_total") == {("a",): 15}
    # cid 1 closed with 12 (the closed body has its final counters); cid 2 vanished unseen
    # after 5; cid 3 opened and closed between refreshes.
    closed = body(conn(1, in_msgs=12, name="a"), conn(3, in_msgs=4, name="a"))
    agg.update(body(), closed, 2.0)
    assert samples(agg, "nats_client_in_messages_total") == {("a",): 12 + 5 + 4}
    assert samples(agg, "nats_client_connections") == {("a",): 0}
    # The same closed entries again are not counted twice.
    agg.update(body(conn(4, in_msgs=1, name="a")), closed, 3.0)
    assert samples(agg, "nats_client_in_messages_total") == {("a",): 12 + 5 + 4 + 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_cid_missing_from_one_open_body_is_not_counted_twice(impl):
    # Paging while connections close can skip a connection that is still open.
    agg = impl(group_by=())
    agg.update(body(conn(1, in_msgs=10), conn(2, in_msgs=20)), None, 1.0)
    agg.update(body(conn(2, in_msgs=25)), None, 2.0)             # cid 1 skipped
    assert samples(agg, "nats_client_in_messages_total") == {(): 35}
    assert samples(agg, "nats_client_connections") == {(): 1}
    agg.update(body(conn(1, in_msgs=14), conn(2, in_msgs=25)), None, 3.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): 39}
    # Its rate spans the time since it was last seen.
    assert agg.families()["nats_client_top_in_messages_per_second"][0] == \
        (("1", "svc", "A", "10.0.0.1"), 2.0)
    # Missing again, then closed: the closed body adds what it did after it was last seen.
    agg.update(body(conn(2, in_msgs=25)), None, 4.0)
    agg.update(body(conn(2, in_msgs=25)), body(conn(1, in_msgs=16)), 5.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): 41}


CLOSED_TWICE = {
    # Closes during a paged read shift the pages: the next page repeats the end of the last.
    "across-pages": [body(conn(6, account="A", in_msgs=1), conn(5, account="A", in_msgs=2)),
                     body(conn(5, account="A", in_msgs=2))],
    # The same cid again with other labels (fuzz_connz): its second listing makes no group.
    "other-labels": body(conn(5, account="A", in_msgs=2), conn(6, account="A", in_msgs=1),
                         conn(5, account="B", in_msgs=2)),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("closed", CLOSED_TWICE.values(), ids=CLOSED_TWICE.keys())
def test_a_cid_closed_twice_in_the_first_read_counts_once(impl, closed):
    # The core kept no cid of the first update in ``seen`` (its floor settles them all at the
    # end of it), so it counted a closed cid once per listing there, and only there.
    agg = impl(group_by=("account",))
    agg.update(body(), closed, 1.0)
    # Nothing open: empty distributions, and no top-K or per-connection series.
    empty = {m.name: [((), ((0,) * len(m.buckets), 0.0 if m.name.endswith("_seconds") else 0))]
             for m, _ in DISTRIBUTIONS}
    empty |= {m.name: [] for m in CONNZ
              if m.name.startswith(("nats_client_top_", "nats_connection_"))}
    assert agg.families() == {
        "nats_client_connections": [(("A",), 0)],
        "nats_client_subscriptions": [(("A",), 0)],
        "nats_client_pending_bytes": [(("A",), 0)],
        "nats_client_in_messages_total": [(("A",), 3)],
        "nats_client_out_messages_total": [(("A",), 0)],
        "nats_client_in_bytes_total": [(("A",), 0)],
        "nats_client_out_bytes_total": [(("A",), 0)],
        "nats_client_groups": [((), 1)],
        "nats_client_group_overflow_total": [((), 0)],
        "nats_client_group_evictions_total": [((), 0)],
        "nats_client_connections_lost_total": [(("A",), 0), ((UNKNOWN_GROUP,), 0)],
        **empty,
    }
    assert list(agg.families()) == [m.name for m in CONNZ]
    assert (agg.total, agg.count, agg.lost_known, agg.lost_unknown) == (0, 0, 0, 0)
    # Read again by the next refresh, it still counts once.
    agg.update(body(), closed, 2.0)
    assert samples(agg, "nats_client_in_messages_total") == {("A",): 3}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("leaf_body", ["open", "closed"])
def test_a_cid_read_as_a_leafnode_is_not_a_client_closed_in_the_same_first_read(impl, leaf_body):
    # The same rule: once read, a cid counts no more in that update, the first one included.
    agg = impl(group_by=())
    leaf, client = conn(6, kind="Leafnode"), conn(6, in_msgs=3)
    if leaf_body == "open":
        agg.update(body(leaf), body(client), 1.0)
    else:
        agg.update(body(), body(leaf, client), 1.0)
    assert samples(agg, "nats_client_in_messages_total") == {}
    assert samples(agg, "nats_client_groups") == {(): 0}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_missing_cid_is_forgotten_after_three_refreshes(impl):
    agg = impl(group_by=())
    agg.update(body(conn(1, in_msgs=10), conn(2)), None, 1.0)
    for now in (2.0, 3.0, 4.0, 5.0):
        agg.update(body(conn(2)), None, now)
    assert samples(agg, "nats_client_in_messages_total") == {(): 10}
    # Forgotten: its closed entry and a reappearance are no longer matched to it.
    agg.update(body(conn(2)), body(conn(1, in_msgs=12)), 6.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): 10}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_reused_cid_is_a_new_connection(impl):
    # After a server restart cids start again from 1, with new start times.
    agg = impl(group_by=())
    agg.update(body(conn(1, in_msgs=100)), None, 1.0)
    agg.update(body(conn(1, in_msgs=3, start="2026-11-26T00:00:00Z")), None, 2.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): 103}
    agg.update(body(conn(1, in_msgs=1, start="2026-11-26T00:00:00Z")), None, 3.0)
    assert samples(agg, "nats_client_in_messages_total") == {(): 104}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_connection_listed_before_its_connect_joins_its_group_once_named(impl):
    # /connz lists a connection before the server reads its CONNECT: no name, lang or version.
    # Without auth a client may publish first (telnet demos do).
    unnamed = {"name": "", "lang": "", "version": "", "account": ""}
    agg = impl(group_by=("account", "name"))
    agg.update(body(conn(1, **unnamed), conn(2, **unnamed, in_msgs=2, in_bytes=20)), None, 1.0)
    assert samples(agg, "nats_client_connections") == {("", ""): 2}
    agg.update(body(conn(1, in_msgs=5, in_bytes=50),
                    conn(2, **unnamed, in_msgs=3, in_bytes=30)), None, 2.0)
    assert samples(agg, "nats_client_connections") == {("", ""): 1, ("A", "svc"): 1}
    assert samples(agg, "nats_client_in_messages_total") == {("", ""): 3, ("A", "svc"): 5}
    # What cid 2 counted unnamed stays with the unnamed group; the rest goes to its own.
    agg.update(body(conn(1, in_msgs=6, in_bytes=60), conn(2, name="late", in_msgs=7, in_bytes=70)),
               None, 3.0)
    assert samples(agg, "nats_client_connections") == {
        ("", ""): 0, ("A", "svc"): 1, ("A", "late"): 1}
    assert samples(agg, "nats_client_in_messages_total") == {
        ("", ""): 3, ("A", "svc"): 6, ("A", "late"): 4}
    assert agg.families()["nats_client_top_in_messages_per_second"] == [
        (("2", "late", "A", "10.0.0.1"), 4.0), (("1", "svc", "A", "10.0.0.1"), 1.0)]
    # Closed with its final counters, it adds to its new group only.
    agg.update(body(conn(1, in_msgs=6, in_bytes=60)),
               body(conn(2, name="late", in_msgs=9, in_bytes=90)), 4.0)
    assert samples(agg, "nats_client_in_messages_total") == {
        ("", ""): 3, ("A", "svc"): 6, ("A", "late"): 6}
    assert samples(agg, "nats_client_connections") == {
        ("", ""): 0, ("A", "svc"): 1, ("A", "late"): 0}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", [3, 17, 2024])
def test_churn_keeps_counters_monotonic_and_totals_exact(impl, seed):
    print(f"connzgen seed {seed}")
    # One scenario lists some connections before their CONNECT is read.
    server = connzgen.Server(seed, closed_max=100_000, unconnected=0.3 if seed == 2024 else 0.0)
    agg = impl(group_by=("account", "lang"), group_ttl=1e9)
    last: dict[tuple[str, tuple], int] = {}
    counters = [m.name for m in CONNZ if m.type == "counter" and m.labels == (GROUP_LABELS,)]
    every_conn: dict[int, dict] = {}
    for step in range(25):
        server.step(opens=40 if step < 5 else 15, closes=15, flashes=3)
        every_conn.update(server.open)
        every_conn.update({c["cid"]: c for c in server.closed})
        open_body = server.open_body()
        if step % 3 == 1:
            # Pages that skip connections at their edges, as paging under churn can.
            open_body = list(connzgen.paginate(list(server.open.values()), 97, overlap=-1))
        agg.update(open_body, server.closed_body(), server.now)
        for name in counters:
            for labels, value in agg.families()[name]:
                assert value >= last.get((name, labels), 0), (seed, step, name, labels)
                last[(name, labels)] = value
        if step % 3 == 1:
            continue    # skipped connections count what they had when last seen, until seen
        for name, key in (("nats_client_in_messages_total", "in_msgs"),
                          ("nats_client_out_bytes_total", "out_bytes")):
            total = sum(v for _, v in agg.families()[name])
            assert total == sum(c[key] for c in every_conn.values()), (seed, step, name)
        assert sum(v for _, v in agg.families()["nats_client_connections"]) == len(server.open)


# -- cardinality bounds ---------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_max_groups_overflow_into_other(impl):
    agg = impl(group_by=("name", "lang"), max_groups=2)
    conns = [conn(cid, name=f"n{cid}", in_msgs=cid) for cid in range(1, 6)]
    agg.update(body(*conns), None, 1.0)
    other = (OTHER_GROUP, OTHER_GROUP)
    assert samples(agg, "nats_client_connections") == {("n1", "go"): 1, ("n2", "go"): 1, other: 3}
    assert samples(agg, "nats_client_in_messages_total")[other] == 3 + 4 + 5
    assert samples(agg, "nats_client_groups") == {(): 2}
    assert samples(agg, "nats_client_group_overflow_total") == {(): 3}
    # Connections already counted in _other stay there; the overflow counter counts each once.
    agg.update(body(*conns), None, 2.0)
    assert samples(agg, "nats_client_group_overflow_total") == {(): 3}


@pytest.mark.parametrize("impl", IMPLS)
def test_group_ttl(impl):
    agg = impl(group_by=("name",), group_ttl=60.0)
    agg.update(body(conn(1, name="gone", in_msgs=9), conn(2, name="stays")), None, 100.0)
    agg.update(body(conn(2, name="stays")), body(conn(1, name="gone", in_msgs=9)), 110.0)
    assert samples(agg, "nats_client_in_messages_total")[("gone",)] == 9
    agg.update(body(conn(2, name="stays")), None, 170.0)     # 60 s after it emptied: kept
    assert ("gone",) in samples(agg, "nats_client_in_messages_total")
    agg.update(body(conn(2, name="stays")), None, 170.5)
    assert samples(agg, "nats_client_connections") == {("stays",): 1}
    assert samples(agg, "nats_client_groups") == {(): 1}


@pytest.mark.parametrize("impl", IMPLS)
def test_expired_groups_make_room(impl):
    agg = impl(group_by=("name",), max_groups=1, group_ttl=0.0)
    agg.update(body(conn(1, name="a")), None, 1.0)
    agg.update(body(conn(2, name="b")), body(conn(1, name="a")), 2.0)
    assert samples(agg, "nats_client_connections") == {("a",): 0, (OTHER_GROUP,): 1}
    # "a" expires before this refresh places its new connections, so "c" gets the room.
    agg.update(body(conn(2, name="b"), conn(3, name="c")), None, 3.0)
    assert samples(agg, "nats_client_connections") == {(OTHER_GROUP,): 1, ("c",): 1}


# -- top-K and per-connection series ------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_top_pending_bytes(impl):
    pend = [0, 700, 50, 700, 9000, 1, 0, 3]
    conns = [conn(cid, pending_bytes=p, name=f"c{cid}", ip=f"10.0.0.{cid}")
             for cid, p in enumerate(pend, 1)]
    agg = impl(top_k=3)
    agg.update(body(*conns), None, 1.0)
    top = agg.families()["nats_client_top_pending_bytes"]
    assert top == [(("5", "c5", "A", "10.0.0.5"), 9000), (("2", "c2", "A", "10.0.0.2"), 700),
                   (("4", "c4", "A", "10.0.0.4"), 700)]
    none = impl(top_k=0)
    none.update(body(*conns), None, 1.0)
    assert none.families()["nats_client_top_pending_bytes"] == []


@pytest.mark.parametrize("impl", IMPLS)
def test_top_message_rates_between_two_updates(impl):
    agg = impl(top_k=2)
    first = [conn(1, in_msgs=100, out_msgs=0), conn(2, in_msgs=0, out_msgs=50), conn(3)]
    agg.update(body(*first), None, 10.0)
    assert agg.families()["nats_client_top_in_messages_per_second"] == []
    second = [conn(1, in_msgs=400, out_msgs=0), conn(2, in_msgs=30, out_msgs=250), conn(3),
              conn(4, in_msgs=10**6)]   # new since the last refresh: no rate yet
    agg.update(body(*second), None, 14.0)
    assert [(v[0], r) for v, r in agg.families()["nats_client_top_in_messages_per_second"]] == \
        [("1", 75.0), ("2", 7.5)]
    assert [(v[0], r) for v, r in agg.families()["nats_client_top_out_messages_per_second"]] == \
        [("2", 50.0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_per_connection_series_are_capped(impl):
    conns = [conn(cid, pending_bytes=cid, name=f"c{cid}") for cid in (9, 3, 7, 1, 5)]
    off = impl()
    off.update(body(*conns), None, 1.0)
    assert off.families()["nats_connection_pending_bytes"] == []
    agg = impl(per_connection=True, per_connection_max=3)
    agg.update(body(*conns), None, 1.0)
    series = agg.families()["nats_connection_pending_bytes"]
    assert [values for values, _ in series] == [("1", "c1", "A", "10.0.0.1"),
                                               ("3", "c3", "A", "10.0.0.1"),
                                               ("5", "c5", "A", "10.0.0.1")]
    assert samples(agg, "nats_connection_series_omitted") == {(): 2}
    assert samples(agg, "nats_connection_rtt_seconds")[("1", "c1", "A", "10.0.0.1")] == 0.001


@pytest.mark.parametrize("impl", IMPLS)
def test_distributions_are_cumulative(impl):
    conns = [conn(1, rtt="50µs", idle="2m1s", subscriptions=0),
             conn(2, rtt="3ms", idle="0s", subscriptions=7),
             conn(3, rtt="10s", idle="1y0d0h0m0s", subscriptions=20000, pending_bytes=2000)]
    del conns[2]["rtt"]
    agg = impl()
    agg.update(body(*conns), None, 1.0)
    rtt_counts, rtt_sum = distribution(agg, NATS_CLIENT_CONNECTION_RTT_SECONDS)
    assert rtt_counts == (1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2)
    assert rtt_sum == 50e-6 + 3e-3
    assert distribution(agg, NATS_CLIENT_CONNECTION_IDLE_SECONDS)[1] == 121.0 + 31536000.0
    subs, subs_sum = distribution(agg, NATS_CLIENT_CONNECTION_SUBSCRIPTIONS)
    by_le = dict(zip(CONNZ_SUBS_LE, subs))
    assert (by_le["0"], by_le["5"], by_le["10"], by_le["10000"], by_le["+Inf"]) == (1, 1, 2, 2, 3)
    assert subs_sum == 20007
    pending_counts, _ = distribution(agg, NATS_CLIENT_CONNECTION_PENDING_BYTES)
    pending = dict(zip(CONNZ_PENDING_LE, pending_counts))
    assert (pending["0"], pending["1024"], pending["4096"]) == (2, 2, 3)


# -- threads -------------------------------------------------------------------------------------

def test_the_scan_runs_without_the_gil():
    # With a switch interval of a minute the interpreter never takes the GIL away from a thread
    # by itself, so the main thread only runs again before the update ends if the update lets
    # the GIL go.
    big = connzgen.synthetic_body(20_000, seed=5)
    agg = _core.ConnzAggregator()
    entering = threading.Event()
    finished = []

    def refresh():
        entering.set()
        agg.update(big, None, 1.0)
        finished.append(True)

    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        worker = threading.Thread(target=refresh)
        worker.start()
        entering.wait()
        ran_during_update = not finished
        with pytest.raises(RuntimeError, match="already running"):
            agg.update(big, None, 2.0)
    finally:
        sys.setswitchinterval(old)
    worker.join()
    assert ran_during_update
    assert agg.count == 20_000
