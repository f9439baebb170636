"""Closed connections and the group table against a real nats-server.

What the collector relies on, checked on the real thing: ``state=closed&sort=stop`` lists the
most recent close first and pages by offset and limit, and the list keeps the last
``max_closed_clients``. Then what it does with them: closes beyond that list counted as lost and
logged, a client named like the overflow group kept apart from it, and names thrown away in a
burst unable to keep a real client out of the group table.
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats.collectors import ConnzOptions
from fastnats.collectors.connz import CLOSED_PAGE
from fastnats.metrics import UNKNOWN_GROUP
from fastnats.rfc3339 import parse_rfc3339_ns
from tests.support.crowd import Crowd
from tests.support.inprocess import InProcess
from tests.support.natsclient import RawClient, pub
from tests.support.process import (
    FAST,
    exporting,
    get_json,
    running_nats,
    start_exporter,
    wait_until,
)
from tests.support.refreshes import two_refreshes_later
from tests.support.series import Series, by_name, parse, single, total

pytestmark = pytest.mark.integration


def server_keeping(tmp_path, closed: int):
    conf = tmp_path / "closed.conf"
    conf.write_text(f"max_closed_clients: {closed}\n")
    return running_nats("-c", str(conf))


def closed_page(monitor: str, offset: int = 0, limit: int = 1000) -> dict:
    return get_json(f"{monitor}/connz?state=closed&sort=stop&offset={offset}&limit={limit}")


def test_the_closed_list_is_most_recent_first_keeps_the_last_closes_and_pages(tmp_path):
    with server_keeping(tmp_path, 20) as server:
        order = []
        for k in range(30):
            client = RawClient(server.client_port, name=f"c{k}")
            client.close()
            # One close at a time: each is filed before the next, so their order is known.
            wait_until(lambda k=k: closed_page(server.monitor_url, limit=1)["connections"]
                       and closed_page(server.monitor_url, limit=1)["connections"][0]["name"]
                       == f"c{k}")
            order.append(f"c{k}")
        whole = closed_page(server.monitor_url)
        assert whole["total"] == 20
        listed = whole["connections"]
        assert [c["name"] for c in listed] == order[::-1][:20]
        stops = [parse_rfc3339_ns(c["stop"]) for c in listed]
        assert stops == sorted(stops, reverse=True)
        assert parse_rfc3339_ns(whole["now"]) >= stops[0]
        pages = [closed_page(server.monitor_url, offset, 7) for offset in (0, 7, 14, 21)]
        assert [p["connections"] for p in pages[:3]] == [listed[:7], listed[7:14], listed[14:]]
        assert [(p["offset"], p["limit"], p["total"], p["num_connections"]) for p in pages] == [
            (0, 7, 20, 7), (7, 7, 20, 7), (14, 7, 20, 6), (21, 7, 20, 0)]


def settled_closed_list(monitor: str) -> None:
    """Wait until nats-server has filed every close: the newest entry stops changing."""
    last: list[object] = [None]

    def same_twice() -> bool:
        newest = closed_page(monitor, limit=1)["connections"][:1]
        same, last[0] = newest == last[0], newest
        return same
    wait_until(same_twice, interval=0.25)


def test_closes_beyond_max_closed_clients_are_counted_lost_and_logged(tmp_path, caplog):
    """2,000 connections each publish a message and close between two refreshes; the server
    keeps 100. The 1,900 others are lost: counted, logged by the refreshes that count them, and
    their messages are exactly what the totals miss.

    Which 100 the server keeps depends on the order it closes them in, not on their cids: the
    lost cids above the highest one read are counted once a later connection shows one."""
    caplog.set_level(logging.WARNING, "fastnats.scrape")
    with server_keeping(tmp_path, 100) as server:
        exporter = InProcess(server.monitor_url, {"connz": ConnzOptions(group_by=("name",))})
        later = None
        try:
            exporter.refresh()
            crowd = Crowd(server.client_port, 2000, "flash", groups=4,
                          commands=pub("flash", b"x"))
            crowd.close()
            wait_until(lambda: get_json(f"{server.monitor_url}/varz")["connections"] == 0)
            settled_closed_list(server.monitor_url)
            for _ in range(3):
                samples = exporter.refresh()
            aggregator = exporter.collector("connz").aggregator
            assert aggregator.lost_known == 0 and 0 < aggregator.lost_unknown <= 1900
            later = RawClient(server.client_port, name="later")
            for _ in range(3):
                samples = exporter.refresh()
            varz = get_json(f"{server.monitor_url}/varz")
        finally:
            exporter.close()
            if later is not None:
                later.close()
    assert (aggregator.lost_known, aggregator.lost_unknown) == (0, 1900)
    lost = dict(samples["nats_client_connections_lost_total"])
    assert lost[(UNKNOWN_GROUP,)] == 1900
    counted = sum(v for _, v in samples["nats_client_in_messages_total"])
    assert counted == 100 and varz["in_msgs"] == 2000
    counts = [int(r.getMessage().split(": ", 1)[1].split()[0]) for r in caplog.records
              if "left nats-server's list" in r.getMessage()]
    assert 1 <= len(counts) <= 2 and sum(counts) == 1900, counts


def test_a_client_named_like_the_overflow_group_keeps_its_own_series(nats_server):
    # It used to share the overflow group's series: sum(nats_client_connections) read 3 while
    # nats_server_clients read 5.
    port, monitor = nats_server.client_port, nats_server.monitor_url
    clients = [RawClient(port, name=name) for name in ("_other", "a", "b", "c", "c")]
    exporter = start_exporter(monitor, *FAST, "--connz.group-by", "name",
                              "--connz.max-groups", "2")
    try:
        text = exporter.scrape()
        rows = [(s.name, tuple(sorted(s.labels.items())))
                for family in text_string_to_metric_families(text) for s in family.samples]
        assert len(rows) == len(set(rows)), "duplicate series"
        series = parse(text)
        assert by_name(series, "nats_client_connections") == {"__other": 1, "a": 1, "_other": 3}
        assert total(series, "nats_client_connections") == single(
            series, "nats_server_clients") == 5
    finally:
        exporter.stop()
        for client in clients:
            client.close()


def test_names_thrown_away_in_a_burst_do_not_keep_a_real_client_out(nats_server):
    # With the default table of 1,000 groups, 1,000 names opened and closed in a fraction of a
    # second used to fill it, and the next real client went to _other for the group TTL (1 h).
    port = nats_server.client_port
    with exporting(nats_server.monitor_url, *FAST) as exporter:
        Crowd(port, 1000, "junk", groups=1000).close()
        two_refreshes_later(exporter)
        wait_until(lambda: single(parse(exporter.scrape()), "nats_client_groups") == 1000)
        real = RawClient(port, name="real")
        try:
            real.pub("work", b"payload")
            real.flush()

            def own_group() -> Series | None:
                series = parse(exporter.scrape())
                groups = by_name(series, "nats_client_connections")
                return series if groups.get("real") == 1 else None
            series = wait_until(own_group)
        finally:
            real.close()
    assert by_name(series, "nats_client_in_messages_total")["real"] == 1
    assert single(series, "nats_client_group_evictions_total") >= 1
    assert "_other" not in by_name(series, "nats_client_connections")


def test_closed_connections_are_requested_by_pages_down_to_the_watermark(tmp_path):
    """The requests themselves: one small first page when little closed, whole pages in a burst,
    never past the server's list."""
    with server_keeping(tmp_path, 10_000) as server:
        exporter = InProcess(server.monitor_url, {"connz": ConnzOptions()})
        asked: list[dict] = []
        source = exporter.server.source
        get = source.get

        async def recording(endpoint, params=None, **kw):
            if endpoint == "connz" and params and params.get("state") == "closed":
                asked.append(dict(params))
            return await get(endpoint, params, **kw)
        source.get = recording  # type: ignore[method-assign]
        try:
            exporter.refresh()
            exporter.refresh()
            assert [(a["offset"], a["limit"]) for a in asked] == [(0, 64)]
            Crowd(server.client_port, 2500, "burst").close()
            wait_until(lambda: closed_page(server.monitor_url, limit=1)["total"] == 2500)
            asked.clear()
            samples = exporter.refresh()
            assert [(a["offset"], a["limit"]) for a in asked] == [
                (0, CLOSED_PAGE), (1000, CLOSED_PAGE), (2000, CLOSED_PAGE)]
            assert samples["nats_client_connections"] == [(("", "burst"), 0)]
            assert samples["nats_client_in_messages_total"] == [(("", "burst"), 0)]
        finally:
            exporter.close()
