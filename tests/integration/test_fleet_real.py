"""Fleet mode against the real supercluster: one exporter connected to A1's system account sees
all four servers, its per-server counts equal each server's HTTP /connz, a stopped server is
down within one refresh, two shards cover every server once, and wrong credentials exit 2."""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import ACCOUNTS, AccountClient, Supercluster
from tests.support.process import exporting, wait_until

pytest.importorskip("nats")

REFRESH = "0.5s"


def fleet_args(supercluster: Supercluster, password_file, *extra: str) -> list[str]:
    return ["--nats.url", f"nats://127.0.0.1:{supercluster.hub.client_port}",
            "--nats.user", ACCOUNTS["SYS"][0], "--nats.password-file", str(password_file),
            "--web.listen-address", "127.0.0.1:0", "--refresh-interval", REFRESH,
            "--timeout", "1s", *extra]


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "password"
    path.write_text(ACCOUNTS["SYS"][1] + "\n")
    return path


def series(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by_server(text: str, family: str, **match: str) -> dict[str, float]:
    """The family's samples that carry ``match``, summed per server."""
    out: dict[str, float] = {}
    for labels, value in series(text, family).items():
        found = dict(labels)
        if all(found.get(k) == v for k, v in match.items()):
            out[found["server"]] = out.get(found["server"], 0) + value
    return out


def test_one_exporter_sees_the_whole_supercluster(supercluster, password_file):
    supercluster.wait_formed()
    names = {node.name for node in supercluster.nodes}
    with ExitStack() as stack:
        for node in supercluster.nodes:
            for i in range(1 + (node.name == "A2")):
                client = AccountClient(node.client_port, "t1", "t1",
                                       name=f"fleet-t1-{node.name}-{i}")
                stack.callback(client.close)
                client.flush()
        exporter = stack.enter_context(exporting(*fleet_args(supercluster, password_file,
                                                              "--fleet.expected-servers", "4")))

        differences: list[object] = []

        def settled():
            # Every server up, and each one's counts the same as its /connz right now.
            text = exporter.scrape()
            # A discovery reply may miss one refresh's gap: wait for a refresh that had all.
            exported = (by_server(text, "nats_up"), by_server(text, "nats_server_clients"),
                        by_server(text, "nats_client_connections", account="T1"),
                        series(text, "nats_fleet_servers_discovered"),
                        series(text, "nats_fleet_servers_responding"))
            expected = (dict.fromkeys(names, 1.0), {}, {},
                        {(("scope", "all"),): 4.0, (("scope", "shard"),): 4.0}, {(): 4.0})
            for node in supercluster.nodes:
                connz = node.get("connz", limit=100000, auth="true")
                expected[1][node.name] = connz["num_connections"]
                expected[2][node.name] = sum(c.get("account") == "T1"
                                             for c in connz["connections"])
            differences[:] = [exported, expected]
            return exported == expected and text

        try:
            text = wait_until(settled, timeout=20)
        except AssertionError:
            raise AssertionError(f"exported, /connz: {differences}") from None
        info = series(text, "nats_server_info")
        assert {(d["server"], d["server_name"], d["cluster"])
                for d in map(dict, info)} == {(n.name, n.name, n.cluster)
                                             for n in supercluster.nodes}
        assert series(text, "nats_fleet_servers_expected") == {(): 4.0}
        # Unlike the user name, the password appears in no other text: this can fail.
        assert ACCOUNTS["SYS"][1] not in "".join(exporter.log)
        assert ACCOUNTS["SYS"][1] not in text


def test_a_password_in_a_url_without_a_scheme_is_shown_nowhere(supercluster):
    supercluster.wait_formed()
    user, password = ACCOUNTS["SYS"]
    port = supercluster.hub.client_port
    with exporting("--nats.url", f"{user}:{password}@127.0.0.1:{port}", "--web.listen-address",
                   "127.0.0.1:0", "--refresh-interval", REFRESH, "--timeout", "1s") as exporter:
        text = wait_until(lambda: (t := exporter.scrape()) and set(
            by_server(t, "nats_up").values()) == {1.0} and t)
    log = "".join(exporter.log)
    assert f"for the fleet at nats://***@127.0.0.1:{port}, shard" in log
    assert password not in log
    assert password not in text


def test_a_stopped_server_is_down_within_one_refresh(supercluster, password_file):
    supercluster.wait_formed()
    names = {node.name for node in supercluster.nodes}
    with exporting(*fleet_args(supercluster, password_file)) as exporter:
        wait_until(lambda: by_server(exporter.scrape(), "nats_up") == dict.fromkeys(names, 1.0))
        node = supercluster.node("A3")
        try:
            node.stop()
            # One refresh (0.5s) plus its discovery and timeout, with room for a busy host.
            text = wait_until(lambda: (t := exporter.scrape()) and
                              by_server(t, "nats_up").get("A3") == 0 and t, timeout=5)
            assert by_server(text, "nats_up") == {**dict.fromkeys(names, 1.0), "A3": 0.0}
            assert "A3" not in by_server(text, "nats_server_clients")
            assert "A1" in by_server(text, "nats_server_clients")
        finally:
            node.start()
            supercluster.wait_formed()
        wait_until(lambda: by_server(exporter.scrape(), "nats_up") == dict.fromkeys(names, 1.0))


def test_two_shards_cover_every_server_once(supercluster, password_file):
    supercluster.wait_formed()
    names = sorted(node.name for node in supercluster.nodes)
    with exporting(*fleet_args(supercluster, password_file, "--fleet.shard", "0/2")) as first, \
            exporting(*fleet_args(supercluster, password_file, "--fleet.shard", "1/2")) as second:
        def covered():
            texts = [exporter.scrape() for exporter in (first, second)]
            seen = [server for text in texts
                    for server, value in by_server(text, "nats_up").items() if value == 1]
            # Each shard discovers the whole fleet, and reads its own part of it.
            fleet = [series(text, "nats_fleet_servers_discovered")[(("scope", "all"),)]
                     for text in texts]
            return sorted(seen) == names and fleet == [4.0, 4.0] and seen
        wait_until(covered, timeout=20)


def test_wrong_credentials_exit_2_with_a_clear_message(supercluster, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    # A refusal is final: the exporter exits on it, without retrying until its 120 s timeout
    # (the subprocess guard below is far shorter).
    result = subprocess.run(
        [sys.executable, "-m", "fastnats", *fleet_args(supercluster, wrong), "--timeout", "120s"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("fastnats-exporter: error: "), result.stderr
    assert "authoriz" in lines[-1].lower(), lines[-1]
    assert "not-the-password" not in result.stderr


def check_run(supercluster: Supercluster, password_file, *extra: str):
    args = [a for a in fleet_args(supercluster, password_file, *extra)
            if a not in ("--web.listen-address", "127.0.0.1:0")]
    return subprocess.run([sys.executable, "-m", "fastnats", *args, "--check"],
                          capture_output=True, text=True, timeout=60)


def test_check_reads_every_server_of_the_fleet_once(supercluster, password_file):
    supercluster.wait_formed()
    result = check_run(supercluster, password_file, "--fleet.expected-servers", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "4 servers discovered" in lines[0] and "shard 0/1" in lines[0], lines[0]
    for node in supercluster.nodes:
        [line] = [line for line in lines if line.startswith(f"server {node.name} ")]
        assert line.endswith(": up"), line
    assert lines[-1] == "OK: every endpoint was read"


def test_check_says_when_the_fleet_is_smaller_than_expected(supercluster, password_file):
    supercluster.wait_formed()
    result = check_run(supercluster, password_file, "--fleet.expected-servers", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "4 servers discovered, ERROR: --fleet.expected-servers is 5" in result.stdout
