"""The /varz collector: every field it reads is checked, and anything unexpected is that
server's decode error (never another exception), by one rule shared with /connz."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors.decode import Fields, parse_rfc3339_ns
from fastnats.collectors.varz import decode, listener_ports, varz_samples
from fastnats.errors import ScrapeError
from fastnats.target import Target

VARZ = orjson.loads((Path(__file__).parents[1] / "data" / "varz.json").read_bytes())


def fields(doc: dict) -> Fields:
    return Fields("varz", doc)


def test_varz_samples_copy_every_seed_value():
    varz = dict(VARZ, connections=15, total_connections=10000, in_msgs=7, out_msgs=9,
                in_bytes=2**64 - 1, out_bytes=11, slow_consumers=5, mem=256000000, cores=8)
    samples = varz_samples(fields(varz))
    for metric in m.SEED:
        if metric.varz:
            assert samples[metric.name] == [((), varz[metric.varz])]
    assert samples["nats_server_version"] == [(("2.15.1",), 1)]
    assert samples["nats_server_info"] == [(("srv-a", VARZ["server_id"], "2.15.1", "c1"), 1)]
    uptime = samples["nats_server_uptime_seconds"][0][1]
    assert uptime == (parse_rfc3339_ns(VARZ["now"]) - parse_rfc3339_ns(VARZ["start"])) / 1e9
    assert 0 < uptime < 1
    # Wire bytes come from the kernel, never from /varz.
    assert "nats_server_total_bytes_sent" not in samples
    assert "nats_server_total_bytes_received" not in samples


def test_optional_fields_may_be_absent_or_null():
    varz = dict(VARZ, cluster=None)
    del varz["server_name"]
    samples, info = decode(orjson.dumps(varz))
    assert samples["nats_server_info"] == [(("", VARZ["server_id"], "2.15.1", ""), 1)]
    assert info.listeners == {VARZ["port"]: "client"}


# Every field the collector reads, with values it must refuse.
HOSTILE = [
    *[(key, bad) for key in ("connections", "total_connections", "in_msgs", "out_msgs",
                             "in_bytes", "out_bytes", "slow_consumers")
      for bad in ("4", -1, 1.5, 2**64, True, None, [], {})],
    *[(key, bad) for key in ("mem", "cores") for bad in ("4", -1, None, True, [], float("nan"))],
    *[(key, bad) for key in ("version", "server_id", "start", "now")
      for bad in (None, 4, [], {})],
    ("server_name", 7), ("start", "yesterday"), ("now", "2026-13-45T99:00:00Z"),
    ("port", "4222"), ("port", 70000), ("port", 4222.5), ("port", True),
    ("cluster", "c1"), ("cluster", ["c1"]), ("cluster", 5), ("cluster", {"name": 5}),
    ("cluster", {"cluster_port": "6222"}), ("cluster", {"cluster_port": VARZ["port"]}),
    ("leaf", [7422]), ("leaf", {"port": 2**40}), ("websocket", "on"), ("mqtt", {"port": []}),
]


@pytest.mark.parametrize("key, bad", HOSTILE, ids=lambda x: repr(x)[:30])
def test_every_field_read_is_checked(key, bad):
    # The stdlib writes what orjson would not: NaN, and integers past 64 bits.
    body = json.dumps(dict(VARZ, **{key: bad})).encode()
    with pytest.raises(ScrapeError) as info:
        decode(body)
    assert (info.value.endpoint, info.value.reason) == ("varz", "decode")
    assert f"/varz {key}" in str(info.value) or "malformed JSON" in str(info.value)


@pytest.mark.parametrize("key", ["connections", "total_connections", "in_msgs", "mem", "cores",
                                 "version", "server_id", "start", "now"])
def test_every_required_field_must_be_there(key):
    varz = dict(VARZ)
    del varz[key]
    with pytest.raises(ScrapeError, match=f"/varz has no {key}"):
        decode(orjson.dumps(varz))


@pytest.mark.parametrize("body", [b"{", b"[1,2]", b"", b"null", b"\xff", b'{"in_msgs": 1e999}',
                                  b'{"connections": 18446744073709551617}', b"{}" * 3])
def test_malformed_bodies_are_decode_errors(body):
    with pytest.raises(ScrapeError) as info:
        decode(body)
    assert info.value.reason == "decode"


def test_listener_ports_reads_every_nats_listener_and_never_the_monitor():
    # The shape nats-server 2.15.1 serves: the route port is cluster.cluster_port.
    varz = {"port": 4222, "http_port": 8222, "https_port": 0,
            "cluster": {"name": "c1", "cluster_port": 6222},
            "gateway": {"name": "c1", "port": 7222}, "leaf": {"port": 7422},
            "websocket": {"port": 8080, "no_tls": True}, "mqtt": {"port": 1883}}
    assert listener_ports(fields(varz)) == {4222: "client", 6222: "cluster", 7222: "gateway",
                                            7422: "leafnode", 8080: "websocket", 1883: "mqtt"}


def test_listener_ports_leaves_out_what_is_not_configured():
    assert listener_ports(fields({"port": 4222, "http_port": 8222, "cluster": {}, "gateway": {},
                                  "leaf": {}, "mqtt": {}, "websocket": {}})) == {4222: "client"}
    assert listener_ports(fields({"port": 4222, "websocket": {"port": 0}})) == {4222: "client"}
    assert listener_ports(fields({"port": 4222, "leaf": {"port": -1}})) == {4222: "client"}
    # Older servers name the route port cluster.port.
    assert listener_ports(fields({"port": 4222, "cluster": {"port": 6222}})) == {
        4222: "client", 6222: "cluster"}
    assert listener_ports(fields({})) == {}


@pytest.mark.parametrize("varz, message", [
    ({"port": "4222"}, "/varz port is '4222', not a finite number"),
    ({"port": True}, "/varz port is True"),
    ({"port": 70000}, "not a port number from 1 to 65535"),
    ({"port": 4222, "leaf": {"port": 4222}}, "already the client listener"),
    ({"port": 4222, "cluster": [6222]}, "/varz cluster is [6222], not an object"),
])
def test_listener_ports_rejects_a_malformed_varz(varz, message):
    with pytest.raises(ScrapeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        listener_ports(fields(varz))


class Scripted:
    """A source whose /varz body the test sets."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get(self, endpoint, params=None):
        return self.body


def test_one_malformed_varz_marks_only_its_server_down():
    bad = copy.deepcopy(VARZ)
    bad["cluster"] = "c1"
    good = ServerCollector(Target("good", "http://g"), Scripted(orjson.dumps(VARZ)), {})
    broken = ServerCollector(Target("broken", "http://b"), Scripted(orjson.dumps(bad)), {})
    collector = NatsCollector([good, broken])
    for _ in range(3):
        asyncio.run(collector.refresh())
    families = {metric.name: samples for metric, _, samples in collector.families()}
    assert families["nats_up"] == [(("good",), 1), (("broken",), 0)]
    assert families["fastnats_refreshes_total"] == [(("good",), 3), (("broken",), 3)]
    assert (("broken", "varz", "decode"), 3) in families["fastnats_refresh_errors_total"]
    assert families["nats_server_clients"] == [(("good",), 0)]


def test_a_malformed_varz_at_startup_does_not_keep_metrics_from_the_healthy_servers():
    from fastnats.refresher import Refresher

    bad = dict(VARZ, port="4222")
    good = ServerCollector(Target("good", "http://g"), Scripted(orjson.dumps(VARZ)), {})
    broken = ServerCollector(Target("broken", "http://b"), Scripted(orjson.dumps(bad)), {})
    refresher = Refresher(NatsCollector([good, broken]), 60.0)

    async def first() -> None:
        await refresher.start()
        await refresher.stop()
    asyncio.run(first())
    assert refresher.payload is not None and refresher.healthy()
    assert b'nats_up{server="good"} 1\n' in refresher.payload.body
    assert b'nats_up{server="broken"} 0\n' in refresher.payload.body
