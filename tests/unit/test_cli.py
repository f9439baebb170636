"""Command line: flags and conf-derived settings, parsed in this process (the command's exit
statuses and messages are checked in tests/integration/test_cli.py)."""

from __future__ import annotations

from fastnats import cli
from fastnats.collector import Target


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
