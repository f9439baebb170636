"""The /healthz collector: what it asks, how it reads the bodies nats-server 2.15 sends healthy
and unhealthy, and that anything else is its own scrape error, never an unhealthy server."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import orjson
import pytest

from fastnats import metrics as m
from fastnats.cli import build_parser
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import OPTIONAL
from fastnats.collectors.base import ServerContext, ServerInfo
from fastnats.collectors.healthz import HealthzCollector, HealthzOptions, health
from fastnats.errors import ScrapeError
from fastnats.target import Target

DATA = Path(__file__).parents[1] / "data"
VARZ = (DATA / "varz.json").read_bytes()
# Recorded from nats-server 2.15.1: 200 when healthy; 503 from a JetStream server of a
# three-server cluster with one peer up and no meta leader (plain, and with details=true).
OK = (DATA / "healthz_ok.json").read_bytes()
NO_LEADER = (DATA / "healthz_no_meta_leader.json").read_bytes()
NO_LEADER_DETAILS = (DATA / "healthz_details_no_meta_leader.json").read_bytes()
RECOVERING = (DATA / "healthz_recovering.json").read_bytes()
INFO = ServerInfo("N1", "2026-01-01T00:00:00Z", 0, 0, {4222: "client"})

# The shape of a details report with several failing checks, from nats-server's HealthzError
# (type, error, and the account, stream and consumer it concerns).
SEVERAL = orjson.dumps({"status": "error", "status_code": 503, "errors": [
    {"type": "STREAM", "account": "T1", "stream": "ORDERS", "error": "stream not current"},
    {"type": "CONSUMER", "account": "T1", "stream": "ORDERS", "consumer": "c1",
     "error": "consumer not current"},
    {"type": "STREAM", "account": "T2", "stream": "EVENTS", "error": "stream not current"}]})


class Healthz:
    """A source that answers /healthz by query, and records what it was asked."""

    def __init__(self, bodies: dict[str, bytes | ScrapeError], varz: bytes = VARZ) -> None:
        self.bodies = bodies
        self.varz = varz
        self.asked: list[tuple[str, dict | None, tuple[int, ...]]] = []

    async def get(self, endpoint, params=None, *, max_bytes=None, statuses=(200,)):
        if endpoint == "varz":
            return bytearray(self.varz)
        self.asked.append((endpoint, params, tuple(statuses)))
        key = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        body = self.bodies[key]
        if isinstance(body, ScrapeError):
            raise body
        return bytearray(body)


def refreshed(bodies, options: HealthzOptions | None = None):
    collector = HealthzCollector(ServerContext("a", "a"), options)
    source = Healthz(bodies)
    asyncio.run(collector.refresh(source, INFO))
    return collector.samples(), source.asked


def test_recorded_bodies():
    assert health(OK) == (True, None)
    assert health(NO_LEADER) == (False, None)
    assert health(RECOVERING) == (False, None)
    assert health(NO_LEADER_DETAILS) == (False, {"JETSTREAM": 1})
    assert health(SEVERAL) == (False, {"STREAM": 2, "CONSUMER": 1})


def test_a_healthy_server_asked_for_details():
    samples, asked = refreshed({"details=true": OK})
    assert asked == [("healthz", {"details": "true"}, (200, 503))]
    # Only failing kinds of check have series: none here.
    assert samples == {"nats_server_healthy": [((), 1)]}


def test_an_unhealthy_server_is_an_answer_with_its_failures_by_type():
    samples, _ = refreshed({"details=true": NO_LEADER_DETAILS})
    assert samples == {"nats_server_healthy": [((), 0)],
                       "nats_server_health_failures": [(("JETSTREAM",), 1)]}
    samples, _ = refreshed({"details=true": SEVERAL})
    assert samples["nats_server_health_failures"] == [(("CONSUMER",), 1), (("STREAM",), 2)]


def test_without_details_no_failures_family():
    samples, asked = refreshed({"": NO_LEADER}, HealthzOptions(details=False))
    assert asked == [("healthz", None, (200, 503))]
    assert samples == {"nats_server_healthy": [((), 0)]}
    # A server that ignores details=true (it answers the plain report) has no failure list.
    samples, _ = refreshed({"details=true": NO_LEADER})
    assert samples == {"nats_server_healthy": [((), 0)]}


def test_jetstream_checks_are_one_request_each():
    samples, asked = refreshed(
        {"details=true": NO_LEADER_DETAILS, "js-enabled-only=true": OK,
         "js-server-only=true": NO_LEADER},
        HealthzOptions(jetstream=("enabled-only", "server-only")))
    assert asked == [("healthz", {"details": "true"}, (200, 503)),
                     ("healthz", {"js-enabled-only": "true"}, (200, 503)),
                     ("healthz", {"js-server-only": "true"}, (200, 503))]
    assert samples["nats_server_jetstream_healthy"] == [(("enabled-only",), 1),
                                                         (("server-only",), 0)]


@pytest.mark.parametrize("body", [
    b"", b"{", b"null", b"[]", b'"ok"', b"<html>503 Service Unavailable</html>", b"\xff",
    b"{}", b'{"status": null}', b'{"status": 1}', b'{"status": true}', b'{"status": ["ok"]}',
    b'{"status": "error", "errors": "JETSTREAM"}', b'{"status": "error", "errors": {}}',
    b'{"status": "error", "errors": [5]}', b'{"status": "error", "errors": [{}]}',
    b'{"status": "error", "errors": [{"type": 5}]}',
    b'{"status": "error", "errors": [{"type": null, "error": "x"}]}',
    b'{"status": "error", "errors": [{"type": "STREAM"}, "x"]}',
    b'{"status": "ok", "errors": 1e999}', json.dumps({"status": "ok", "x": float("nan")}).encode(),
])
def test_a_body_that_is_not_a_health_report_is_a_decode_error(body):
    with pytest.raises(ScrapeError) as info:
        refreshed({"details=true": body})
    assert (info.value.endpoint, info.value.reason) == ("healthz", "decode")


def test_decode_errors_name_the_field():
    with pytest.raises(ScrapeError, match=r"/healthz errors\[1\]\.type is 5, not a string"):
        health(b'{"status": "error", "errors": [{"type": "STREAM"}, {"type": 5}]}')
    with pytest.raises(ScrapeError, match="/healthz has no status"):
        health(b'{"error": "x"}')
    with pytest.raises(ScrapeError, match="/healthz errors is 'x', not an array"):
        health(b'{"status": "error", "errors": "x"}')


def test_huge_and_odd_but_well_formed_reports():
    many = {"status": "error", "errors": [{"type": ("STREAM", "CONSUMER", "T")[i % 3]}
                                          for i in range(30000)]}
    assert health(orjson.dumps(many))[1] == {"STREAM": 10000, "CONSUMER": 10000, "_other": 10000}
    # Any status but "ok" is unhealthy; extra fields are ignored.
    assert health(b'{"status": "OK"}') == (False, None)
    assert health(b'{"status": "", "status_code": 99999999999999999999}') == (False, None)
    assert health(b'{"status": "ok", "errors": [], "x": [1e308]}') == (True, {})


def test_types_nats_server_does_not_send_are_summed_into_other():
    # 10,000 distinct types, among them the markers and the known names in other spellings,
    # then one failure of each type nats-server sends.
    odd = [f"T{i}" for i in range(9990)] + ["_other", "__other", "_unknown", "jetstream",
                                             "STREAM ", "", "unknown", "é", "a" * 4096, "0"]
    # nats-server's HealthZErrorType names.
    known = ["ACCOUNT", "BAD_REQUEST", "CONNECTION", "CONSUMER", "JETSTREAM", "STREAM"]
    body = orjson.dumps({"status": "error", "errors": [
        {"type": kind, "error": "x"} for kind in odd + known]})
    samples, _ = refreshed({"details=true": body})
    assert samples["nats_server_health_failures"] == [
        *(((kind,), 1) for kind in known), (("_other",), 10000)]


def server(bodies, options: HealthzOptions | None = None) -> ServerCollector:
    return ServerCollector(Target("a", "http://a"), Healthz(bodies), {"healthz": options})


def families(server_collector: ServerCollector):
    collector = NatsCollector([server_collector])
    asyncio.run(collector.refresh())
    return {metric.name: samples for metric, _, samples in collector.families()}


def test_an_unhealthy_server_is_no_scrape_error():
    found = families(server({"details=true": NO_LEADER_DETAILS}))
    assert found["nats_server_healthy"] == [((), 0)]
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("healthz",), 1)]
    assert all(count == 0 for _, count in found["fastnats_refresh_errors_total"])


@pytest.mark.parametrize("error", [
    ScrapeError("healthz", "http_status", "HTTP 500 from /healthz", status=500),
    ScrapeError("healthz", "timeout", "no answer"),
])
def test_a_failed_read_drops_the_series_at_once(error):
    bodies: dict[str, bytes | ScrapeError] = {"details=true": OK}
    collector = server(bodies)
    assert families(collector)["nats_server_healthy"] == [((), 1)]
    bodies["details=true"] = error
    found = families(collector)
    assert found["nats_server_healthy"] == []
    assert (("healthz", error.reason), 1) in found["fastnats_refresh_errors_total"]
    assert found["fastnats_collector_success"] == [(("varz",), 1), (("healthz",), 0)]


def test_a_bad_body_drops_the_series_too():
    bodies: dict[str, bytes | ScrapeError] = {"details=true": NO_LEADER_DETAILS}
    collector = server(bodies)
    families(collector)
    bodies["details=true"] = b"<html>oops</html>"
    found = families(collector)
    assert found["nats_server_healthy"] == found["nats_server_health_failures"] == []
    assert (("healthz", "decode"), 1) in found["fastnats_refresh_errors_total"]


def test_a_server_without_healthz_exports_nothing_of_it():
    error = ScrapeError("healthz", "http_status", "HTTP 404", status=404)
    found = families(server({"details=true": error}))
    assert found["nats_server_healthy"] == []
    assert all(count == 0 for _, count in found["fastnats_refresh_errors_total"])


def test_a_failed_jetstream_check_fails_the_collector():
    error = ScrapeError("healthz", "http_status", "HTTP 500", status=500)
    found = families(server({"details=true": OK, "js-server-only=true": error},
                            HealthzOptions(jetstream=("server-only",))))
    assert found["nats_server_healthy"] == found["nats_server_jetstream_healthy"] == []


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_flags():
    assert HealthzCollector in OPTIONAL and HealthzCollector.default is True
    assert HealthzCollector.configure(parse(), 1.0) == HealthzOptions(True, ())
    assert HealthzCollector.configure(parse("--no-healthz.details"), 1.0).details is False
    assert HealthzCollector.configure(parse("--healthz.details"), 1.0).details is True
    assert HealthzCollector.configure(
        parse("--healthz.jetstream", "server-only, enabled-only"), 1.0).jetstream == (
        "server-only", "enabled-only")
    assert HealthzCollector.configure(parse("--healthz.jetstream", ""), 1.0).jetstream == ()
    assert parse("--no-collector.healthz").collector_healthz is False


@pytest.mark.parametrize("bad", ["meta", "enabled-only,enabled-only", "js-server-only"])
def test_bad_jetstream_checks_are_refused(bad, capsys):
    with pytest.raises(SystemExit):
        parse("--healthz.jetstream", bad)
    assert "--healthz.jetstream" in capsys.readouterr().err


def test_the_catalogue_families_are_the_collectors():
    assert HealthzCollector.families == m.HEALTHZ
    assert {metric.name for metric in m.HEALTHZ} == {
        "nats_server_healthy", "nats_server_jetstream_healthy", "nats_server_health_failures"}
