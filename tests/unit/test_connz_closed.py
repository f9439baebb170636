"""Closed and lost connections, client-chosen label values and the group table: the rules of
ConnzAggregator behind the defects seen in the field, for the compiled core and the reference.

- A closed entry counts once by its cid, however late nats-server files it and however often
  the closed list is read again (the churn shortfall under CPU load).
- A connection seen open whose closed entry never came is lost in its group; cids no read ever
  showed are lost in the ``_unknown`` group if, and only if, a closed read overflowed.
- A connection seen before its CONNECT that closes named counts its last part in its own group.
- No client value can produce the exporter's markers.
- A full table gives up groups that never carried traffic, then those that only lived between
  two reads, before anything goes to ``_other``.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import _core, _reference
from fastnats.metrics import OTHER_GROUP, UNKNOWN_GROUP, client_value
from tests.support.connzagg import IMPLS, body, conn, families, samples

LOST = "nats_client_connections_lost_total"
IN_MSGS = "nats_client_in_messages_total"
UNNAMED = {"name": "", "lang": "", "version": "", "account": ""}


def lost(agg) -> dict[tuple[str, ...], int]:
    return samples(agg, LOST)


def render(agg) -> str:
    return _core.render_text(families(agg)).decode()


def series_of(text: str) -> list[tuple[str, frozenset]]:
    return [(s.name, frozenset(s.labels.items()))
            for family in text_string_to_metric_families(text) for s in family.samples]


# -- closed entries count once, however late ------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_entry_filed_after_a_higher_cid_was_read_still_counts(impl):
    # nats-server numbers a connection before it lists it, and files its closed entry from a
    # goroutine of its own: cid 4 can close unseen and show up after cid 5 was read. It used to
    # be taken for one counted already (at or below the highest cid read) and dropped.
    agg = impl(group_by=("name",))
    agg.update(body(conn(1, name="a")), None, 1.0)
    agg.update(body(conn(1, name="a"), conn(5, name="b")), body(), 2.0)
    agg.update(body(conn(1, name="a"), conn(5, name="b")),
               body(conn(4, name="c", in_msgs=7)), 3.0)
    assert samples(agg, IN_MSGS) == {("a",): 0, ("b",): 0, ("c",): 7}
    assert (agg.lost_known, agg.lost_unknown) == (0, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_closed_entries_read_again_count_once(impl):
    # Reads overlap by the slack: the same entries come back refresh after refresh.
    agg = impl(group_by=("name",))
    agg.update(body(conn(1, name="a", in_msgs=3)), None, 1.0)
    closed = body(conn(1, name="a", in_msgs=5), conn(2, name="a", in_msgs=4),
                  conn(3, name="b", in_msgs=6))
    for now in range(2, 12):
        agg.update(body(conn(4, name="c")), closed, float(now), now % 3 == 0)
        assert samples(agg, IN_MSGS) == {("a",): 9, ("b",): 6, ("c",): 0}, now
    assert (agg.lost_known, agg.lost_unknown) == (0, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_cid_read_twice_in_one_read_counts_once(impl):
    # Closes during a paged read shift the pages: the next page repeats the end of the last.
    agg = impl(group_by=())
    agg.update(body(), None, 1.0)
    pages = [body(conn(3, in_msgs=1), conn(2, in_msgs=2)), body(conn(2, in_msgs=2))]
    agg.update(body(), pages, 2.0)
    assert samples(agg, IN_MSGS) == {(): 3}


# -- lost connections -----------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
def test_a_connection_that_left_no_closed_entry_is_lost_in_its_group(impl):
    agg = impl(group_by=("name",), closed_slack=2.0)
    agg.update(body(conn(1, name="a", in_msgs=10), conn(2, name="b")), None, 1.0)
    for now in (2.0, 3.0, 4.0):
        agg.update(body(conn(2, name="b")), body(), now)
        assert lost(agg) == {("a",): 0, ("b",): 0, (UNKNOWN_GROUP,): 0}, now
    agg.update(body(conn(2, name="b")), body(), 5.0)
    assert lost(agg) == {("a",): 1, ("b",): 0, (UNKNOWN_GROUP,): 0}
    # What it counted while it was seen stays counted.
    assert samples(agg, IN_MSGS) == {("a",): 10, ("b",): 0}
    assert (agg.lost_known, agg.lost_unknown) == (1, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_entry_within_the_slack_is_not_lost(impl):
    # Gone from the open list at 2.0, filed only at 9.0: the slack keeps the connection waiting.
    agg = impl(group_by=("name",), closed_slack=10.0)
    agg.update(body(conn(1, name="a", in_msgs=10)), None, 1.0)
    for now in range(2, 9):
        agg.update(body(), body(), float(now))
    agg.update(body(), body(conn(1, name="a", in_msgs=12)), 9.0)
    assert samples(agg, IN_MSGS) == {("a",): 12}
    assert lost(agg) == {("a",): 0, (UNKNOWN_GROUP,): 0}


def holes_after(impl, overflow: bool, late: tuple[int, ...] = ()):
    """cids 2 to 9 are numbered between two reads; only ``late`` ever show, closed."""
    agg = impl(group_by=("name",), closed_slack=0.0)
    agg.update(body(conn(1, name="a")), None, 1.0)
    agg.update(body(conn(1, name="a"), conn(10, name="a")), body(), 2.0, overflow)
    agg.update(body(conn(1, name="a"), conn(10, name="a")),
               body(*(conn(cid, name="b", in_msgs=1) for cid in late)), 3.0)
    agg.update(body(conn(1, name="a"), conn(10, name="a")), body(), 4.0)
    return agg


@pytest.mark.parametrize("impl", IMPLS)
def test_cids_never_read_are_lost_only_when_the_closed_list_overflowed(impl):
    agg = holes_after(impl, overflow=True)
    assert (agg.lost_known, agg.lost_unknown) == (0, 8)
    assert lost(agg) == {("a",): 0, (UNKNOWN_GROUP,): 8}
    # Without an overflow, a cid nobody listed was no client's (a route, an internal client).
    assert holes_after(impl, overflow=False).lost_unknown == 0
    # A late closed entry fills its hole.
    late = holes_after(impl, overflow=True, late=(4, 7))
    assert late.lost_unknown == 6
    assert samples(late, IN_MSGS) == {("a",): 0, ("b",): 2}


@pytest.mark.parametrize("impl", IMPLS)
def test_cids_the_server_gave_to_something_else_are_not_lost_clients(impl):
    # A fresh server: its own clients took cids 1 to 4 before the first read showed nothing.
    # Then 20 clients come and go while the closed list keeps 5 of them; /varz counts 20.
    agg = impl(group_by=("name",), closed_slack=0.0)
    agg.update(body(), None, 1.0, accepted=0)
    kept = body(*(conn(cid, name="a", in_msgs=1) for cid in range(20, 25)))
    agg.update(body(), kept, 2.0, True, accepted=20)
    for now in (3.0, 4.0):
        agg.update(body(), kept, now, accepted=20)
    assert agg.lost_unknown == 15
    assert samples(agg, IN_MSGS) == {("a",): 5}


@pytest.mark.parametrize("impl", IMPLS)
def test_cids_below_the_first_read_are_history(impl):
    agg = impl(group_by=("name",), closed_slack=0.0)
    agg.update(body(conn(7, name="a")), None, 1.0)
    for now in (2.0, 3.0, 4.0, 5.0):
        agg.update(body(conn(7, name="a")), body(), now, True)
    assert agg.lost_unknown == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_without_group_by_lost_connections_are_one_series(impl):
    agg = holes_after(lambda **kw: impl(**{**kw, "group_by": ()}), overflow=True)
    assert lost(agg) == {(): 8}
    fresh = impl(group_by=())
    fresh.update(body(), None, 1.0)
    assert lost(fresh) == {(): 0}


# -- a connection seen before its CONNECT ---------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("absent_first", [False, True], ids=["closed", "absent-then-closed"])
def test_a_connection_seen_unnamed_that_closes_named_counts_in_its_own_group(impl, absent_first):
    # It published 2 messages before its CONNECT was read and 3 after; the closed entry names it.
    agg = impl(group_by=("account", "name"))
    agg.update(body(conn(1, **UNNAMED, in_msgs=2)), None, 1.0)
    if absent_first:
        agg.update(body(), body(), 2.0)
    agg.update(body(), body(conn(1, name="late", in_msgs=5)), 3.0)
    assert samples(agg, IN_MSGS) == {("", ""): 2, ("A", "late"): 3}
    assert samples(agg, "nats_client_connections") == {("", ""): 0, ("A", "late"): 0}


# -- client values and the markers ----------------------------------------------------------------

@pytest.mark.parametrize("value, exported", [
    ("_other", "__other"), ("__other", "___other"), ("_unknown", "__unknown"),
    ("___unknown", "____unknown"), ("other", "other"), ("_", "_"), ("", ""), ("_others", "_others"),
    ("x_other", "x_other"), ("_other_", "_other_"), ("_Other", "_Other"),
])
def test_client_values_that_look_like_a_marker_get_one_more_underscore(value, exported):
    assert client_value(value) == exported


def test_no_client_value_is_exported_as_a_marker_or_as_another_value():
    values = ["", "_", "__", "other", "unknown", "x"] + [
        "_" * n + stem for n in range(1, 5) for stem in ("other", "unknown")]
    exported = [client_value(v) for v in values]
    assert len(set(exported)) == len(values)
    assert not {OTHER_GROUP, UNKNOWN_GROUP} & set(exported)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_client_named_like_a_marker_never_shares_its_series(impl):
    # A client named _other used to export a second series next to the overflow group, and
    # Prometheus kept one of the two.
    names = ["_other", "__other", "_unknown", "x", "y"]
    agg = impl(group_by=("name",), max_groups=2, top_k=5, per_connection=True)
    agg.update(body(*(conn(k + 1, name=n, pending_bytes=k + 1) for k, n in enumerate(names))),
               None, 1.0)
    assert samples(agg, "nats_client_connections") == {
        ("__other",): 1, ("___other",): 1, (OTHER_GROUP,): 3}
    assert lost(agg) == {("__other",): 0, ("___other",): 0, (OTHER_GROUP,): 0,
                         (UNKNOWN_GROUP,): 0}
    assert {labels[1] for labels, _ in agg.families()["nats_client_top_pending_bytes"]} == {
        "__other", "___other", "__unknown", "x", "y"}
    text = render(agg)
    rows = series_of(text)
    assert len(rows) == len(set(rows)), "duplicate series"
    connections = [v for f in text_string_to_metric_families(text)
                   if f.name == "nats_client_connections" for v in f.samples]
    assert sum(s.value for s in connections) == len(names)


# -- the group table ------------------------------------------------------------------------------

def throwaway(first_cid: int, count: int, prefix: str, **fields) -> list[dict]:
    return [conn(first_cid + k, name=f"{prefix}{k}", **fields) for k in range(count)]


@pytest.mark.parametrize("impl", IMPLS)
def test_throwaway_names_do_not_keep_a_real_client_out(impl):
    # 10 names opened and closed between two refreshes fill a table of 10.
    agg = impl(group_by=("name",), max_groups=10)
    agg.update(body(), None, 1.0)
    agg.update(body(), body(*throwaway(100, 10, "junk")), 2.0)
    assert samples(agg, "nats_client_groups") == {(): 10}
    agg.update(body(conn(200, name="real", in_msgs=1)), None, 3.0)
    connections = samples(agg, "nats_client_connections")
    assert connections[("real",)] == 1 and (OTHER_GROUP,) not in connections
    assert samples(agg, "nats_client_group_evictions_total") == {(): 1}
    assert samples(agg, "nats_client_group_overflow_total") == {(): 0}


@pytest.mark.parametrize("impl", IMPLS)
def test_a_full_table_gives_up_idle_groups_first_then_fleeting_ones_oldest_first(impl):
    agg = impl(group_by=("name",), max_groups=4)
    agg.update(body(conn(1, name="kept", in_msgs=1)), None, 1.0)
    # Fleeting with traffic (lived between two reads), then idle (no traffic, seen open).
    agg.update(body(conn(1, name="kept", in_msgs=1), conn(2, name="idle")),
               body(conn(3, name="fleeting-old", in_msgs=1)), 2.0)
    agg.update(body(conn(1, name="kept", in_msgs=1)),
               body(conn(2, name="idle"), conn(4, name="fleeting-new", in_msgs=1)), 3.0)
    assert set(samples(agg, "nats_client_connections")) == {
        ("kept",), ("idle",), ("fleeting-old",), ("fleeting-new",)}
    order = []
    for k, now in enumerate((4.0, 5.0, 6.0)):
        before = set(samples(agg, "nats_client_connections"))
        agg.update(body(conn(1, name="kept", in_msgs=1), *(conn(10 + j, name=f"new{j}",
                                                                in_msgs=1)
                                                           for j in range(k + 1))), None, now)
        order += sorted(before - set(samples(agg, "nats_client_connections")))
    assert order == [("idle",), ("fleeting-old",), ("fleeting-new",)]
    # What is left has connections or was seen open with traffic: _other takes the next one.
    agg.update(body(conn(1, name="kept", in_msgs=1),
                    *(conn(10 + j, name=f"new{j}", in_msgs=1) for j in range(4))), None, 7.0)
    assert samples(agg, "nats_client_connections")[(OTHER_GROUP,)] == 1
    assert samples(agg, "nats_client_group_evictions_total") == {(): 3}


@pytest.mark.parametrize("impl", IMPLS)
def test_groups_made_by_the_same_read_do_not_evict_each_other(impl):
    # Their traffic would vanish unpublished; the rest of that read goes to _other instead.
    agg = impl(group_by=("name",), max_groups=2)
    agg.update(body(), None, 1.0)
    agg.update(body(), body(*throwaway(10, 4, "burst", in_msgs=5)), 2.0)
    assert samples(agg, IN_MSGS) == {("burst0",): 5, ("burst1",): 5, (OTHER_GROUP,): 10}
    assert samples(agg, "nats_client_group_evictions_total") == {(): 0}


def test_the_reference_and_the_core_evict_alike_under_churn():
    # Throwaway names every refresh, some with traffic, next to real clients that stay.
    configs = dict(group_by=("name",), max_groups=6, group_ttl=30.0)
    core, ref = _core.ConnzAggregator(**configs), _reference.ConnzAggregator(**configs)
    cid = 1
    for step in range(30):
        real = [conn(k + 1, name=f"real{k}", in_msgs=step) for k in range(3)]
        junk = throwaway(1000 + cid, 3, f"j{step}-", in_msgs=step % 2)
        cid += 3
        for agg in (core, ref):
            agg.update(body(*real), body(*junk), float(step))
        assert core.families() == ref.families(), step
    assert samples(core, "nats_client_group_evictions_total")[()] > 0
