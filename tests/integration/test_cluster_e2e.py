"""One exporter process watching the whole supercluster (tests.support.cluster), read over HTTP
as Prometheus reads it: no family mixes two label schemas; every server of cluster A counts three
while the cluster is formed; stopping a route peer shows as nats_route_connections 0, nats_up 0
and a cluster of two on its peers, touches no other server's series, and the series as scraped,
fed to promtool, fire NATSRouteDown on both peers (and nothing without the stop); once the peer
is back under a new server id, its peers route to the new id and no counter went back.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics as m
from tests.e2e.support import ALERTS, JOB, label_schemas, mixed_label_schemas, rules
from tests.support.cluster import Supercluster
from tests.support.process import Exporter, exporting, require_tool, wait_until

pytestmark = pytest.mark.integration

FLAGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "200ms",
         "--collector.accstatz", "--collector.subsz",
         "--healthz.jetstream", "enabled-only,server-only")
ROUTES = m.NATS_ROUTE_CONNECTIONS.name
CLUSTER_SIZE = m.NATS_CLUSTER_SIZE.name
LAST_SUCCESS = m.FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name
ROUTE_FAMILIES = {metric.name for metric in m.ROUTEZ}
#: Rankings of what moved between two refreshes (rates, pending bytes): their series come and go
#: with traffic, so a server keeps its families while a peer is down except these.
TOP_K = {metric.name for metric in m.CATALOGUE if "_top_" in metric.name}
#: The peer stopped, the peers that route to it, and the servers its stop must not touch.
STOPPED, WATCHERS, BYSTANDERS = "A3", ("A1", "A2"), ("A1", "A2", "B1")
#: Seconds between the samples of the promtool tests built from the scrapes: one per scrape.
STEP = 60
#: Scrapes taken before the stop; those while it is down are as many as NATSRouteDown's `for` needs.
BEFORE = 3

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One exposition: its text, every sample by (name, sorted labels), and each sample name's
    family type."""

    text: str
    values: dict[tuple[str, Labels], float]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        values: dict[tuple[str, Labels], float] = {}
        types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in values, f"{key} twice in one exposition"
                values[key] = sample.value
                types[sample.name] = family.type
        return cls(text, values, types)

    def series(self, name: str, **match: str) -> dict[Labels, float]:
        """The samples of ``name`` whose labels include ``match``."""
        return {labels: value for (sample, labels), value in self.values.items()
                if sample == name and match.items() <= dict(labels).items()}

    def value(self, name: str, **match: str) -> float | None:
        """The one sample of ``name`` matching ``match``; None if there is none."""
        found = self.series(name, **match)
        assert len(found) <= 1, (name, match, found)
        return next(iter(found.values()), None)

    def families_of(self, server: str) -> set[str]:
        return {name for name, labels in self.values if ("server", server) in labels}

    def relevant(self) -> str:
        """The lines the waits of this module look at, for their failure messages."""
        return "\n".join(line for line in self.text.splitlines()
                         if line.startswith(("nats_up", ROUTES, CLUSTER_SIZE)))


def scrape_until(exporter: Exporter, condition: Callable[[Scrape], bool], what: str,
                 timeout: float = 30.0) -> Scrape:
    last: list[Scrape] = []

    def attempt() -> Scrape | None:
        last[:] = [Scrape.parse(exporter.scrape())]
        return last[0] if condition(last[0]) else None

    try:
        return wait_until(attempt, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"not seen within {timeout:g}s: {what}; last scrape:\n"
                             f"{last[0].relevant()}") from None


def next_refresh(exporter: Exporter, previous: Scrape) -> Scrape:
    """The first scrape after A1 (never stopped here) was refreshed again."""
    stamp = previous.value(LAST_SUCCESS, server="A1")
    return scrape_until(exporter, lambda s: s.value(LAST_SUCCESS, server="A1") > stamp,
                        "another refresh of A1")


def cluster_sizes(scrape: Scrape, servers: tuple[str, ...]) -> dict[str, float | None]:
    return {name: scrape.value(CLUSTER_SIZE, server=name, cluster="A") for name in servers}


@pytest.fixture(scope="module")
def exporter(supercluster: Supercluster) -> Iterator[Exporter]:
    supercluster.wait_formed()
    targets = [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
    with exporting(*targets, *FLAGS) as exporter:
        yield exporter


def routed(supercluster: Supercluster, scrape: Scrape) -> bool:
    """Every server up, and every A server routed to both others."""
    a = [node.name for node in supercluster.a]
    return (all(scrape.value("nats_up", server=node.name) == 1 for node in supercluster.nodes)
            and all(any(scrape.series(ROUTES, server=name, remote_name=peer).values())
                    for name in a for peer in a if peer != name))


def formed(supercluster: Supercluster, scrape: Scrape) -> bool:
    """``routed``, and every A server counting three."""
    return (routed(supercluster, scrape)
            and set(cluster_sizes(scrape, ("A1", "A2", "A3")).values()) == {3})


# -- label schemas

def test_no_family_mixes_two_label_schemas(supercluster, exporter):
    supercluster.traffic()
    scrape = scrape_until(exporter, lambda s: formed(supercluster, s), "the supercluster formed")
    assert mixed_label_schemas(scrape.text) == {}
    for family, [names] in label_schemas(scrape.text).items():
        # The parser names a counter's family without its _total.
        metric = m.BY_NAME.get(family) or m.BY_NAME[family + "_total"]
        assert ("server" in names) == metric.per_server, (family, names)


# -- cluster size while formed

def test_every_a_server_counts_three_while_formed(supercluster, exporter):
    scrape = scrape_until(exporter, lambda s: routed(supercluster, s), "the supercluster routed")
    assert cluster_sizes(scrape, ("A1", "A2", "A3")) == {"A1": 3, "A2": 3, "A3": 3}
    # B1 has no route listener: a cluster of one.
    assert scrape.series(CLUSTER_SIZE, server="B1") == {(("cluster", "B"), ("server", "B1")): 1}


# -- a route peer stopped and restarted

def test_a_stopped_route_peer_fires_route_down_and_comes_back_without_a_counter_going_back(
        supercluster, exporter, tmp_path):
    stopped = supercluster.node(STOPPED)
    supercluster.traffic()
    old_id = stopped.get("varz")["server_id"]
    before = [scrape_until(exporter, lambda s: formed(supercluster, s), "the supercluster formed")]
    while len(before) < BEFORE:
        before.append(next_refresh(exporter, before[-1]))
    last = before[-1]
    routes_to_stopped = {name: last.series(ROUTES, server=name, remote_name=STOPPED)
                         for name in WATCHERS}
    for name, series in routes_to_stopped.items():
        [(labels, connections)] = series.items()
        assert dict(labels)["remote_id"] == old_id and connections > 0, (name, series)

    stopped.stop()
    try:
        down = [scrape_until(
            exporter, lambda s: s.value("nats_up", server=STOPPED) == 0 and all(
                s.value(ROUTES, server=name, remote_name=STOPPED) == 0 for name in WATCHERS),
            f"nats_up 0 for {STOPPED} and its peers' routes to it at 0")]
        # promtool needs enough samples at 0 to pass the alert's `for`, and one more.
        while len(down) < route_down_for() // STEP + 2:
            down.append(next_refresh(exporter, down[-1]))
        for scrape in down:
            assert mixed_label_schemas(scrape.text) == {}
            # The 0 is the series that was there, not a new one.
            for name in WATCHERS:
                assert scrape.series(ROUTES, server=name, remote_name=STOPPED) == {
                    labels: 0 for labels in routes_to_stopped[name]}
            assert cluster_sizes(scrape, (*WATCHERS, STOPPED)) == {"A1": 2, "A2": 2, "A3": None}
            for name in BYSTANDERS:
                assert scrape.value("nats_up", server=name) == 1, name
                lost = last.families_of(name) - scrape.families_of(name) - ROUTE_FAMILIES - TOP_K
                assert not lost, (name, sorted(lost))
                assert scrape.series("nats_server_info", server=name) == last.series(
                    "nats_server_info", server=name)
        instance = urllib.parse.urlsplit(exporter.url).netloc
        assert_route_down_fires_on_the_watchers(tmp_path, instance, before, down)
    finally:
        stopped.start()
        supercluster.wait_formed()

    new_id = stopped.get("varz")["server_id"]
    assert new_id != old_id
    both_ids: list[Scrape] = []

    def back(scrape: Scrape) -> bool:
        for name in WATCHERS:
            ids = {dict(labels)["remote_id"]: value
                   for labels, value in scrape.series(ROUTES, server=name, remote_name=STOPPED)
                   .items()}
            if ids.get(new_id) and old_id in ids:
                both_ids.append(scrape)
            if ids != {new_id: sum(routes_to_stopped[name].values())}:
                return False
        return formed(supercluster, scrape)

    after = scrape_until(exporter, back, f"routes of {WATCHERS} to the new {STOPPED} only")
    # The routez collector drops the old id's series in the refresh that sees the new id.
    assert not both_ids, both_ids[0].relevant()
    assert mixed_label_schemas(after.text) == {}
    for name in WATCHERS:
        for family in ROUTE_FAMILIES:
            assert not after.series(family, server=name, remote_id=old_id), (name, family)
    assert_no_counter_went_back(last, after, old_id)


def assert_no_counter_went_back(before: Scrape, after: Scrape, old_id: str) -> None:
    """Every counter of the bystanders in ``before`` is in ``after`` and no lower; only the
    route series of the restarted peer's old id may be gone."""
    went_back, vanished, compared = {}, [], set()
    for (name, labels), value in before.values.items():
        server = dict(labels).get("server")
        if before.types[name] != "counter" or server not in BYSTANDERS:
            continue
        compared.add(name)
        now = after.values.get((name, labels))
        if now is None:
            if name not in ROUTE_FAMILIES or dict(labels).get("remote_id") != old_id:
                vanished.append((name, labels))
        elif now < value:
            went_back[(name, labels)] = (value, now)
    assert {m.NATS_ROUTE_IN_MESSAGES_TOTAL.name, m.NATS_GATEWAY_IN_MESSAGES_TOTAL.name,
            m.NATS_SERVER_TOTAL_CONNECTIONS.name + "_total"} <= compared, sorted(compared)
    assert not went_back, went_back
    assert not vanished, vanished


# -- NATSRouteDown under promtool, from the scraped series

def route_down_rule() -> dict:
    [rule] = [rule for rule in rules(ALERTS) if rule.get("alert") == "NATSRouteDown"]
    return rule


def route_down_for() -> int:
    """NATSRouteDown's `for`, in seconds."""
    amount, unit = re.fullmatch(r"(\d+)([sm])", route_down_rule()["for"]).groups()
    return int(amount) * (60 if unit == "m" else 1)


_WITH = re.compile(r"\{\{ with \$labels\.(\w+) \}\}(.*?)\{\{ end \}\}")
_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render(template: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus renders it for ``labels``; knows only the ``$labels`` forms
    NATSRouteDown uses, and fails on any other."""
    # A label the alert does not carry raises: Prometheus would render it as "", and so would
    # promtool, so a misspelt label would pass unseen.
    text = _WITH.sub(lambda found: found[2].replace("{{ . }}", labels[found[1]])
                     if labels[found[1]] else "", template)
    text = _LABEL.sub(lambda found: labels[found[1]], text)
    assert "{{" not in text, f"render() cannot expand {template!r}"
    return text


def input_series(scrapes: list[Scrape], instance: str) -> list[dict[str, str]]:
    """nats_route_connections of every server as the scrapes saw it, one sample a scrape (``_``
    where a series was absent), under the labels Prometheus adds."""
    keys = sorted({labels for scrape in scrapes for labels in scrape.series(ROUTES)})
    out = []
    for labels in keys:
        selector = ", ".join(f"{key}={json.dumps(value)}" for key, value in
                             (("job", JOB), ("instance", instance), *labels))
        values = [scrape.series(ROUTES).get(labels) for scrape in scrapes]
        out.append({"series": f"{ROUTES}{{{selector}}}",
                    "values": " ".join("_" if v is None else f"{v:g}" for v in values)})
    return out


def run_promtool_test(path: Path, case: dict) -> None:
    path.write_text(json.dumps({"rule_files": [str(ALERTS)], "evaluation_interval": f"{STEP}s",
                                "tests": [case]}, indent=1), encoding="utf-8")
    result = subprocess.run([require_tool("promtool"), "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, (
        result.stdout + result.stderr + path.read_text())


def assert_route_down_fires_on_the_watchers(folder: Path, instance: str, before: list[Scrape],
                                            down: list[Scrape]) -> None:
    rule = route_down_rule()
    # The first 0 is at len(before) steps: pending one step later, firing `for` later.
    pending_at = (len(before) + 1) * STEP
    firing_at = len(before) * STEP + route_down_for()
    assert firing_at <= (len(before) + len(down) - 1) * STEP
    expected = []
    for name in WATCHERS:
        [labels] = down[0].series(ROUTES, server=name, remote_name=STOPPED)
        alert_labels = {"job": JOB, "instance": instance, **dict(labels), **rule["labels"]}
        annotations = {key: render(text, alert_labels)
                       for key, text in rule["annotations"].items()}
        # Written out for the summary, so that a label swapped for another also fails.
        assert annotations["summary"] == (
            f"NATS server {instance} ({name}) has no route to {STOPPED}"), annotations
        expected.append({"exp_labels": alert_labels, "exp_annotations": annotations})
    run_promtool_test(folder / "route_down.json", {
        "interval": f"{STEP}s",
        "input_series": input_series(before + down, instance),
        "alert_rule_test": [
            {"eval_time": f"{pending_at}s", "alertname": "NATSRouteDown", "exp_alerts": []},
            {"eval_time": f"{firing_at}s", "alertname": "NATSRouteDown",
             "exp_alerts": expected},
        ]})
    # The same cluster without the stop: the last scrape before it, for as long.
    run_promtool_test(folder / "route_up.json", {
        "interval": f"{STEP}s",
        "input_series": input_series(before + [before[-1]] * len(down), instance),
        "alert_rule_test": [
            {"eval_time": f"{firing_at}s", "alertname": "NATSRouteDown", "exp_alerts": []},
        ]})
