"""Command line: flags and conf-derived settings, parsed in this process (the command's exit
statuses and messages are checked in tests/integration/test_cli.py)."""

from __future__ import annotations

import logging

import pytest

from fastnats import cli
from fastnats.collectors import ConnzOptions, WireOptions
from fastnats.target import Target, redact_userinfo


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
    ("http://127.0.0.1:7777/nats/stats", False),
    ("https://127.0.0.1:7777/a:b,\"c'", True),
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
    assert job.get("metrics_path", "/metrics") == "/" + url.split("/", 3)[3]


@pytest.mark.parametrize("path", ["/métrics", "/m?x=1", "/m#top", "/a b", "/m\x00", "/m\t",
                                  "m\x7f"])
def test_telemetry_path_that_no_request_can_ask_for_is_a_usage_error(path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--web.telemetry-path", path])
    assert exited.value.code == 2
    assert "--web.telemetry-path" in capsys.readouterr().err


def test_telemetry_path_may_hold_percent_escapes_and_reserved_characters():
    path = "/m%C3%A9trics;v=1/a:b@c!$&'()*+,~"
    assert settings("--web.telemetry-path", path).telemetry_path == path


@pytest.mark.parametrize("url", ["http://h:8222/?x=1", "http://h:8222?x", "http://h:8222/#f",
                                 "http://h:8222/?", "h:8222#", "n=http://u:s%3Fx@h:8222/?q"])
def test_monitoring_url_with_a_query_or_fragment_is_a_usage_error(url):
    with pytest.raises(cli.UsageError, match="no query or fragment") as refused:
        settings(url)
    assert "s%3Fx" not in str(refused.value)


def test_monitoring_url_with_a_path_prefix_and_encoded_password_is_accepted():
    target, = settings("http://u:p%3F%23w@h:8222/nats/").targets
    assert (target.url, target.user, target.password) == ("http://h:8222/nats", "u", "p?#w")


def test_schemeless_fleet_url_is_read_as_nats_and_its_password_is_masked(caplog):
    fleet = settings("--nats.url", "sys:s3cret@127.0.0.1:4222", "--nats.url", "tls://h:4222",
                     "--nats.tls.insecure-skip-verify").fleet
    assert fleet is not None
    assert fleet.urls == ("nats://sys:s3cret@127.0.0.1:4222", "tls://h:4222")
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "nats://***@127.0.0.1:4222" in warned and "s3cret" not in warned


@pytest.mark.parametrize(("text", "shown"), [
    ("u:s3cret@127.0.0.1:4222", "***@127.0.0.1:4222"),
    ("nats://u:s3cret@h:4222", "nats://***@h:4222"),
    ("nats://u:s3c@ret@h:4222/x", "nats://***@h:4222/x"),
    ("at nats://h:1, u:s3cret@h:2 and 'u:s3cret@h:3'", "at nats://h:1, ***@h:2 and '***@h:3'"),
    ("nats://u:s3cret@a:1,nats://v:s3cret@b:2", "nats://***@a:1,nats://***@b:2"),
    ("nats://h:4222 failed", "nats://h:4222 failed"),
])
def test_credentials_in_urls_are_masked_with_or_without_a_scheme(text, shown):
    assert redact_userinfo(text) == shown
