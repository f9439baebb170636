"""Checks of what deploy/ ships against the real tools: the Prometheus rules and their unit
tests under promtool, and the Grafana dashboard and `promtool check metrics` against a real
exposition of every family the dashboard reads."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import metrics
from fastnats.nats import launcher
from tests.e2e.support import (
    ALLOWED_LINT,
    DASHBOARD,
    RULE_FILES,
    RULE_TESTS,
    alert_names,
    catalogue_series_names,
    dashboard_metric_names,
    mixed_label_schemas,
    promtool_lint,
    recorded_names,
    sample_names,
)
from tests.support.certs import server_certificate
from tests.support.cluster import ACCOUNTS, TENANTS, Supercluster
from tests.support.jetstream import JetStreamAssets
from tests.support.leafcrowd import LeafCrowd
from tests.support.natsclient import Traffic, stall_a_consumer
from tests.support.process import (
    Exporter,
    exporting,
    require_tool,
    running_nats,
    wait_until,
)

pytestmark = pytest.mark.integration

# Families the dashboard queries that the exposition used by these tests cannot contain, with
# why. Everything else the dashboard reads must show up in it.
NOT_IN_TEST_EXPOSITION: dict[str, str] = {}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          timeout=60)


# -- Prometheus rules

def test_promtool_check_rules():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout))
    assert found == len(alert_names()) + len(recorded_names()) > 0, result.stdout


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


# -- a real exposition: exporter, nats-servers and traffic, all real

#: Leafnodes on the supercluster's hub while the exposition is taken.
LEAVES = 200
#: Flags that turn on every collector and every health check the dashboard reads; the
#: fixture adds --jsz.max-consumers.
EVERY_COLLECTOR = ("--collector.accstatz", "--collector.subsz",
                   "--healthz.jetstream", "enabled-only,server-only",
                   "--collector.jsz", "--jsz.level", "consumers")
#: Families only a fleet exporter renders, and the web server's refusals (only with
#: --web.config.file): a second exporter, in fleet mode with a web config, renders them.
FLEET_AND_WEB = frozenset(m.name for m in metrics.FLEET + metrics.WEB)


def fleet_exporter_args(supercluster: Supercluster, folder: Path) -> list[str]:
    """A fleet exporter on the supercluster's system account, expecting its servers, with an
    empty web config: no TLS and no password, and the refusal counters at 0."""
    user, password = ACCOUNTS["SYS"]
    (folder / "password").write_text(password + "\n", encoding="utf-8")
    (folder / "web.yml").write_text("", encoding="utf-8")
    return ["--nats.url", f"nats://127.0.0.1:{supercluster.hub.client_port}",
            "--nats.user", user, "--nats.password-file", str(folder / "password"),
            "--fleet.expected-servers", str(len(supercluster.nodes)),
            "--web.config.file", str(folder / "web.yml"),
            "--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2"]


@contextmanager
def troubled_server(folder: Path) -> Iterator[launcher.NatsServer]:
    """A JetStream server with TLS on its client listener, in a cluster whose one route leads
    to a port bound here and never listened on: its JetStream waits for a meta leader for good,
    so /healthz fails with a JETSTREAM check as long as it runs."""
    cert, key, _ = server_certificate(folder, "troubled", days=30)
    with socket.socket() as nowhere:
        # Bound and never listening: the route is refused, and no one else can take the port.
        nowhere.bind(("127.0.0.1", 0))
        conf = folder / "nats.conf"
        conf.write_text(f"""\
server_name: troubled
host: 127.0.0.1
port: -1
http_port: -1
tls {{ cert_file: "{cert}", key_file: "{key}" }}
jetstream {{ store_dir: "{folder / 'js'}", max_memory_store: 64MB, max_file_store: 1GB }}
cluster {{ name: X, host: 127.0.0.1, port: -1,
          routes: ["nats-route://127.0.0.1:{nowhere.getsockname()[1]}"] }}
""", encoding="utf-8")
        require_tool("nats-server")
        server = launcher.start(["-c", str(conf)])
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def real_exposition(supercluster: Supercluster, jetstream_assets: JetStreamAssets,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Sample names (and the texts) of scrapes taken while one exporter, every collector on,
    watches: the supercluster (routes, gateways, JetStream with the streams, mirror, sources,
    durable and ephemeral consumers of ``jetstream_assets``, T2 under account limits, 200
    leafnodes on the hub, traffic across a route and the gateway); a troubled server (TLS,
    JetStream failing its health check); and a plain server under traffic with one consumer
    falling behind, then stopped. A second exporter reads the supercluster in fleet mode with
    a web config (``fleet_exporter_args``); its scrapes come first, the last is the first's.

    The names are the union over the scrapes, since some families exist only in one phase
    (pending bytes while a consumer stalls, refresh errors once the plain server is gone).
    """
    seen: set[str] = set()
    texts: list[str] = []

    def scrape_until(names: set[str], source: Exporter | None = None) -> bool:
        texts.append((source or exporter).scrape())
        seen.update(sample_names(texts[-1]))
        return names <= seen

    expected = dashboard_metric_names() & catalogue_series_names()
    needs_down = {metrics.FASTNATS_REFRESH_ERRORS_TOTAL.name}
    supercluster.wait_formed()
    with ExitStack() as stack:
        fleet = stack.enter_context(exporting(
            *fleet_exporter_args(supercluster, tmp_path_factory.mktemp("fleet"))))
        # nats_fleet_server_rtt_seconds waits for a discovery; the rest is there at once.
        try:
            wait_until(lambda: scrape_until(expected & FLEET_AND_WEB, fleet), timeout=30,
                       interval=0.1)
        except AssertionError:
            pass  # test_dashboard_metrics_appear_in_a_real_exposition names what is missing
        fleet.stop()
        plain = stack.enter_context(running_nats())
        troubled = stack.enter_context(troubled_server(tmp_path_factory.mktemp("troubled")))
        tenants = [(name, *supercluster.accounts[name]) for name in TENANTS]
        stack.enter_context(LeafCrowd(supercluster.hub.leaf_port, LEAVES, accounts=tenants,
                                      names="deploy", groups=4))
        targets = [f"{node.name}={node.monitor_url}" for node in supercluster.nodes]
        targets += [f"troubled={troubled.monitor_url}", f"plain={plain.monitor_url}"]
        # Some A server leads at least this many durables (pigeonhole): a cap one below it
        # sends at least one of them into _other, whatever the placement.
        most_led = -(-len(jetstream_assets.durables) // len(supercluster.a))
        exporter = stack.enter_context(exporting(
            *targets, *EVERY_COLLECTOR, "--jsz.max-consumers", str(most_led - 1),
            "--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2"))
        traffic = Traffic(plain.client_port, seconds=30).start()
        stack.callback(traffic.stop)
        stalled = stall_a_consumer(plain.client_port)
        for client in stalled:
            stack.callback(client.close)
        supercluster.traffic()
        try:
            wait_until(lambda: scrape_until(
                expected - needs_down - NOT_IN_TEST_EXPOSITION.keys()), timeout=30, interval=0.1)
        except AssertionError:
            pass  # test_dashboard_metrics_appear_in_a_real_exposition names what is missing
        traffic.stop()
        # A server still queueing for the stalled consumer takes its write deadline to stop.
        for client in stalled:
            client.close()
        plain.stop()
        wait_until(lambda: scrape_until(needs_down)
                   and 'nats_up{server="plain"} 0\n' in texts[-1])
        yield {"names": seen, "texts": texts}


def test_dashboard_metrics_appear_in_a_real_exposition(real_exposition):
    wanted = dashboard_metric_names() & catalogue_series_names()
    missing = wanted - real_exposition["names"] - NOT_IN_TEST_EXPOSITION.keys()
    assert not missing, (
        f"{DASHBOARD.name} queries {sorted(missing)}; fastnats.metrics lists them, but a real "
        f"exporter with every collector on, against the supercluster with leafnodes and "
        f"traffic, a troubled server and a plain one with a stalled consumer and a stop, never "
        f"rendered them. Either the collector does not produce them yet, or the dashboard must "
        f"stop using them, or NOT_IN_TEST_EXPOSITION must say why this test cannot see them.")
    assert not NOT_IN_TEST_EXPOSITION.keys() - wanted, "stale NOT_IN_TEST_EXPOSITION entries"


def test_durables_beyond_the_cap_are_summed_into_other_in_a_real_exposition(real_exposition):
    # The dashboard's consumer panels show _other and the overflow: both must be real here.
    def overflowing(text: str) -> bool:
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
        other = {s.labels["server"]: s.labels for s in
                 families.get(metrics.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES.name, ())
                 if s.labels["consumer"] == metrics.OTHER_GROUP}
        overflow = {s.labels["server"]: s.value for s in
                    families.get(metrics.NATS_JETSTREAM_CONSUMER_OVERFLOW.name, ())}
        return bool(other) and all(
            labels["account"] == labels["stream"] == metrics.OTHER_GROUP
            and overflow[server] > 0 for server, labels in other.items())

    assert any(map(overflowing, real_exposition["texts"]))


def test_promtool_check_metrics_on_a_real_exposition(real_exposition):
    # The scrape with the most families (under traffic) and the last (server stopped).
    texts = real_exposition["texts"]
    for text in (max(texts, key=lambda t: len(sample_names(t))), texts[-1]):
        findings = promtool_lint(text)
        assert findings <= ALLOWED_LINT, sorted(findings - ALLOWED_LINT)
        assert findings == {f for f in ALLOWED_LINT if f.split()[0] in sample_names(text)}


def test_no_family_mixes_label_schemas_in_a_real_exposition(real_exposition):
    # Servers with and without a cluster, JetStream, TLS or leafnodes, up and down, side by side.
    for text in real_exposition["texts"]:
        assert mixed_label_schemas(text) == {}
