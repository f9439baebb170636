"""``--compat=prometheus-nats-exporter`` against a real JetStream nats-server: every metric and
label name the official dashboards query (tests/data/compat-prometheus-nats-exporter.txt) is in the
exposition, under the official namespaces and under ``--compat.prefix=nats`` for the Helm
dashboards; and the gnatsd_connz_* sums equal /connz summed over every connection, past the
1,024 of one page."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.support.crowd import HeldCrowd
from tests.support.process import exporting, http_get, running_nats, wait_until
from tests.support.series import Series
from tests.support.storedseries import parse

sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))
import extract_compat_names as tool  # noqa: E402

pytestmark = pytest.mark.integration

LIST = Path(__file__).parents[1] / "data" / "compat-prometheus-nats-exporter.txt"
FLAGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2",
         "--compat=prometheus-nats-exporter", "--collector.jsz", "--jsz.level=consumers")
CROWD = 1500
#: Each gnatsd_connz family and the /connz field it sums (None: it counts connections).
CONNZ = {"num_connections": None, "total": None, "subscriptions": "subscriptions",
         "pending_bytes": "pending_bytes", "in_msgs": "in_msgs", "out_msgs": "out_msgs",
         "in_bytes": "in_bytes", "out_bytes": "out_bytes"}

async def stream_and_consumer(port: int) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
        for i in range(5):
            await js.publish(f"orders.{i}", b"order")
        await js.add_consumer("ORDERS", ConsumerConfig(durable_name="worker",
                                                       ack_policy=AckPolicy.EXPLICIT))
    finally:
        await nc.close()


def connz_sums(monitor_url: str) -> dict[str, float]:
    """/connz summed over every open connection, page by page."""
    sums = dict.fromkeys(CONNZ, 0.0)
    offset = 0
    while True:
        page = json.loads(http_get(f"{monitor_url}/connz?offset={offset}&limit=1024"))
        for conn in page["connections"]:
            for family, field in CONNZ.items():
                sums[family] += 1 if field is None else conn[field]
        offset += len(page["connections"])
        if not page["connections"] or offset >= page["total"]:
            return sums


def missing(series: Series, names: dict[str, set[str]]) -> list[str]:
    """The listed names absent from the exposition, or present without a listed label."""
    out = []
    for name, labels in sorted(names.items()):
        present = set().union(*(set(sample_labels) for sample_labels, _ in series.get(name, [])))
        if name not in series or not labels <= present:
            out.append(f"{name} {sorted(labels - present)}")
    return out


def test_every_dashboard_name_is_served_and_connz_sums_cover_every_connection(tmp_path):
    names = tool.parse(LIST.read_text())
    official = {n: labels for n, labels in names.items() if not n.startswith("nats_")}
    helm = {n: labels for n, labels in names.items() if n.startswith("nats_")}
    assert official and helm
    with running_nats("-js", "-sd", str(tmp_path / "js"), "-n", "compat-1") as server:
        asyncio.run(stream_and_consumer(server.client_port))
        crowd = HeldCrowd(server.client_port, CROWD, "compat", groups=3, varied=True)
        try:
            with exporting(server.monitor_url, *FLAGS) as exporter, \
                    exporting(server.monitor_url, *FLAGS, "--compat.prefix=nats") as helm_exporter:
                def complete(exporter, listed):
                    series = parse(exporter.scrape())
                    return series if not missing(series, listed) else None

                try:
                    series = wait_until(lambda: complete(exporter, official), timeout=30)
                    wait_until(lambda: complete(helm_exporter, helm), timeout=30)
                except AssertionError:
                    pytest.fail("missing: " + ", ".join(
                        missing(parse(exporter.scrape()), official)
                        + missing(parse(helm_exporter.scrape()), helm)))

                [(labels, _)] = series["jetstream_stream_total_messages"]
                assert (labels["stream_name"], labels["server_name"]) == ("ORDERS", "compat-1")
                [(labels, pending)] = series["jetstream_consumer_num_pending"]
                assert (labels["consumer_name"], pending) == ("worker", 5)
                [(labels, _)] = series["gnatsd_varz_connections"]
                assert labels == {"server_id": json.loads(http_get(
                    f"{server.monitor_url}/varz"))["server_id"]}

                last: list[tuple[dict, dict]] = []

                def connz_agrees():
                    scraped = parse(exporter.scrape())
                    exported = {family: scraped[f"gnatsd_connz_{family}"][0][1]
                                for family in CONNZ}
                    last[:] = [(exported, connz_sums(server.monitor_url))]
                    return exported == last[0][1]

                try:
                    wait_until(connz_agrees, timeout=30)
                except AssertionError:
                    pytest.fail(f"gnatsd_connz_* {last[0][0]} != /connz sums {last[0][1]}")
                exported = last[0][0]
                assert exported["num_connections"] >= CROWD > 1024
                assert exported["subscriptions"] > 0 and exported["in_msgs"] > 0
        finally:
            crowd.close()
