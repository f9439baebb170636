"""Command line: flags and conf-derived settings, parsed in this process (the command's exit
statuses and messages are checked in tests/integration/test_cli.py)."""

from __future__ import annotations

import logging

import pytest

from fastnats import cli
from fastnats.collectors import ConnzOptions, WireOptions
from fastnats.target import Target


def settings(*argv: str) -> cli.Settings:
    return cli.resolve(cli.build_parser().parse_args(list(argv)))


def test_defaults():
    s = settings()
    assert s.targets == [Target("127.0.0.1:8222", "http://127.0.0.1:8222")]
    assert (s.host, s.port, s.telemetry_path) == ("", 7777, "/metrics")
    assert (s.refresh_interval, s.timeout) == (5.0, 3.0)


def test_several_named_servers():
    s = settings("east=http://e:8222", "http://w:9222", "--web.listen-address", "127.0.0.1:9",
                 "--refresh-interval", "0.5", "--timeout", "1")
    assert [t.name for t in s.targets] == ["east", "w:9222"]
    assert (s.host, s.port, s.refresh_interval, s.timeout) == ("127.0.0.1", 9, 0.5, 1.0)


def test_config_gives_monitor_url_and_listen_port(tmp_path):
    conf = tmp_path / "nats.conf"
    conf.write_text('server { http { addr: "0.0.0.0:18222" }\n metrics { port: 19100 } }\n')
    s = settings("--config", str(conf))
    assert s.targets[0].url == "http://127.0.0.1:18222"
    assert (s.host, s.port) == ("", 19100)
    # An explicit flag wins over the conf.
    assert settings("--config", str(conf), "--web.listen-address", ":1234").port == 1234


@pytest.mark.parametrize("text, seconds", [
    ("5", 5.0), ("2.5", 2.5), ("500ms", 0.5), ("5s", 5.0), ("1m", 60.0), ("1m30s", 90.0),
    ("1h", 3600.0), ("250us", 0.00025),
])
def test_every_duration_flag_takes_seconds_or_go_durations(text, seconds):
    s = settings("--refresh-interval", text, "--timeout", text, "--connz.group-ttl", text,
                 "--wire.poll-interval", text)
    assert (s.refresh_interval, s.timeout) == (seconds, seconds)
    connz, wire = s.collectors["connz"], s.collectors["wire"]
    assert isinstance(connz, ConnzOptions) and connz.group_ttl == seconds
    assert isinstance(wire, WireOptions) and wire.interval == seconds


def test_telemetry_path_gains_its_leading_slash():
    assert settings("--web.telemetry-path", "metrics").telemetry_path == "/metrics"
    assert settings("--web.telemetry-path", "/x/y").telemetry_path == "/x/y"


def test_collector_flags_come_from_the_collectors():
    s = settings()
    defaults = {"connz", "wire", "routez", "gatewayz", "leafz", "healthz"}
    assert set(s.collectors) == defaults
    assert s.collectors["wire"] == WireOptions(None, 5.0, 5.0)
    assert s.collectors["connz"] == ConnzOptions()
    s = settings("--no-collector.connz", "--collector.wire", "--refresh-interval", "10s")
    assert set(s.collectors) == defaults - {"connz"}
    assert s.collectors["wire"] == WireOptions(True, 10.0, 10.0)
    assert set(settings("--no-collector.wire").collectors) == defaults - {"wire"}
    assert set(settings("--collector.accstatz", "--collector.subsz",
                        "--no-collector.leafz").collectors) == (
        defaults - {"leafz"} | {"accstatz", "subsz"})
    assert settings("--connz.group-by", "account,lang", "--connz.top-k", "3").collectors[
        "connz"] == ConnzOptions(group_by=("account", "lang"), top_k=3)


def test_config_in_the_article_dialect_warns_naming_each_line(tmp_path, caplog):
    conf = tmp_path / "seed.conf"
    conf.write_text('server {\n  http { addr: ":18222" }\n  metrics { port: 19100 }\n}\n')
    caplog.set_level(logging.WARNING, logger="fastnats")
    settings("--config", str(conf))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (f"{conf}:1: `server {{ }}` is fastnats's dialect; nats-server refuses it "
                        f"(unknown field \"server\")")
    assert lines[1].startswith(f"{conf}:2: `http {{ }}` is fastnats's dialect")
    assert lines[2].startswith(f"{conf}:3: `metrics {{ }}` is read by fastnats only")
    assert "--nats.launch" in lines[3] and "--web.listen-address" in lines[3]
    # Run under the exporter, the dialect is translated: nothing to warn about.
    caplog.clear()
    settings("--config", str(conf), "--nats.launch")
    assert not caplog.records


def test_a_real_conf_gives_no_warning(tmp_path, caplog):
    conf = tmp_path / "nats.conf"
    conf.write_text("port: 4222\nhttp: 8222\n")
    caplog.set_level(logging.WARNING, logger="fastnats")
    assert settings("--config", str(conf)).targets[0].url == "http://127.0.0.1:8222"
    assert not caplog.records


@pytest.mark.parametrize(("url", "basic_auth"), [
    ("http://127.0.0.1:7777/metrics", False),
    ("https://127.0.0.1:7777/metrics", False),
    ("https://127.0.0.1:7777/metrics", True),
])
def test_the_demo_banner_gives_a_scrape_config_that_matches_the_web_config(url, basic_auth):
    import types

    import yaml

    from fastnats.nats import demo

    child = types.SimpleNamespace(client_port=4222, monitor_url="http://127.0.0.1:8222")
    text = demo.banner(child, 20, url, basic_auth)  # type: ignore[arg-type]
    block = text.split("Prometheus scrape config:\n")[1].split("\n\n")[0]
    [job] = yaml.safe_load(block)["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:7777"]}]
    assert job.get("scheme", "http") == url.split(":")[0]
    assert ("tls_config" in job) == url.startswith("https")
    assert ("basic_auth" in job) == basic_auth
