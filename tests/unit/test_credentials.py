"""Credentials in monitoring URLs: sent as HTTP Basic authentication, and masked in the label,
every message, the check report and the exposition; the password-file and environment flags."""

from __future__ import annotations

import asyncio
import base64
import logging

import orjson
import pytest

from fastnats import check, cli
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.errors import ScrapeError
from fastnats.exposition import render
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target, parse_target
from tests.support.bodysource import VARZ, FakeClient

SECRET = "s3cr:et@/%"
QUOTED = "s3cr%3Aet%40%2F%25"
RAW_URL = f"http://alice:{QUOTED}@127.0.0.1:8222"


def settings(*argv: str, environ=None) -> cli.Settings:
    args = cli.build_parser().parse_args(list(argv))
    s = cli.resolve(args)
    s.targets = cli.resolve_monitor_password(
        [parse_target(u) for u in args.urls], args, environ or {})
    return s


def no_secret(text: str) -> None:
    assert SECRET not in text and QUOTED not in text and "s3cr" not in text


# The label, the URL and the one redacted form.

def test_credentials_leave_the_url_and_the_label():
    target = parse_target(RAW_URL)
    assert (target.name, target.url, target.user, target.password) == (
        "127.0.0.1:8222", "http://127.0.0.1:8222", "alice", SECRET)
    assert target.shown == "http://alice:***@127.0.0.1:8222"
    no_secret(repr(target))


def test_named_and_portless_urls_and_a_user_alone():
    assert parse_target(f"east=http://u:{QUOTED}@nats-1").url == "http://nats-1:8222"
    bob = parse_target("bob@nats-1:9222")
    assert (bob.name, bob.url, bob.user, bob.password) == ("nats-1:9222", "http://nats-1:9222",
                                                           "bob", None)
    assert bob.shown == "http://bob:***@nats-1:9222"


def test_an_equals_sign_in_a_password_never_becomes_a_label():
    target = parse_target("u:pa=ss@nats-1:8222")
    assert (target.name, target.password) == ("nats-1:8222", "pa=ss")


@pytest.mark.parametrize("spec", [f"ftp://u:{SECRET}@h", f"http://u:{QUOTED}@h:port"])
def test_parse_errors_mask_the_password(spec):
    with pytest.raises(ValueError) as info:
        parse_target(spec)
    no_secret(str(info.value))
    assert "u:***@" in str(info.value)


def test_a_user_with_a_colon_is_refused():
    with pytest.raises(ValueError, match="cannot hold ':'"):
        parse_target("http://a%3Ab:p@h:1")


# The client: Basic authentication sent, errors masked.

async def answering(status: str, seen: list[bytes]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        body = b'{"server_id": "N"}'
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


def authorization(request: bytes) -> str:
    for line in request.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "authorization":
            return base64.b64decode(value.split()[1]).decode()
    return ""


@pytest.mark.parametrize("how", ["url", "arguments"])
def test_the_client_sends_basic_auth_percent_decoded(how):
    async def main():
        seen: list[bytes] = []
        server = await answering("200 OK", seen)
        port = server.sockets[0].getsockname()[1]
        async with new_session() as session:
            if how == "url":
                client = MonitorClient(f"http://alice:{QUOTED}@127.0.0.1:{port}", session, 5)
            else:
                client = MonitorClient(f"http://127.0.0.1:{port}", session, 5, user="alice",
                                       password=SECRET)
            assert await client.get("varz") == b'{"server_id": "N"}'
            no_secret(client.base_url + client.shown_url)
        server.close()
        return seen

    [request] = asyncio.run(main())
    assert authorization(request) == f"alice:{SECRET}"
    no_secret(request.decode().split("\r\n")[0])


def test_client_errors_name_the_redacted_url():
    async def main():
        seen: list[bytes] = []
        server = await answering("401 Unauthorized", seen)
        port = server.sockets[0].getsockname()[1]
        errors = []
        async with new_session() as session:
            client = MonitorClient(f"http://alice:{QUOTED}@127.0.0.1:{port}", session, 5)
            with pytest.raises(ScrapeError) as refused:
                await client.get("varz")
            errors.append(refused.value)
            server.close()
            await server.wait_closed()
            with pytest.raises(ScrapeError) as closed:
                await client.get("varz")
            errors.append(closed.value)
        return errors

    refused, closed = asyncio.run(main())
    assert (refused.reason, refused.status) == ("http_status", 401)
    assert closed.reason == "connect"
    for error in (refused, closed):
        no_secret(str(error))
        assert "http://alice:***@127.0.0.1:" in str(error)


# The collector, the check report and the exposition, with a source that quotes its URL whole.

def failing(exc: Exception) -> ServerCollector:
    return ServerCollector(parse_target(RAW_URL), FakeClient({"varz": exc}), {})


@pytest.mark.parametrize("exc", [
    ScrapeError("varz", "connect", f"{RAW_URL}/varz: refused"),
    ScrapeError("varz", "connect", f"refused for password {SECRET}"),
    ValueError(f"odd reply from {RAW_URL}/varz"),
])
def test_no_password_in_logs_check_report_or_metrics(exc, caplog):
    caplog.set_level(logging.DEBUG)
    server = failing(exc)
    collector = NatsCollector([server])
    asyncio.run(collector.refresh())
    assert not server.up
    text, ok = check.report(collector)
    assert not ok and "http://alice:***@127.0.0.1:8222" in text
    exposition, _ = render(collector.families())
    assert b'reason="' in exposition
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "is down" in logged
    for out in (logged, text, exposition.decode(), *(str(p) for p in server.problems)):
        no_secret(out)


def test_a_failing_collector_is_masked_too(caplog):
    caplog.set_level(logging.DEBUG)
    server = ServerCollector(parse_target(RAW_URL), FakeClient({
        "varz": orjson.dumps(VARZ),
        "subsz": ScrapeError("subsz", "body", f"{RAW_URL}/subsz: cut short")}), {"subsz": None})
    asyncio.run(server.refresh())
    assert server.up and [p.endpoint for p in server.problems] == ["subsz"]
    assert "alice:***@" in caplog.text
    no_secret(caplog.text)
    no_secret(str(server.problems[0]))


def test_the_startup_line_masks_the_password(caplog):
    caplog.set_level(logging.INFO)
    s = settings(RAW_URL, "--web.listen-address", "127.0.0.1:0", "--timeout", "0.2")

    async def stop_at_once(server) -> int:
        return 0

    assert asyncio.run(cli._exporter(s, stop_at_once)) == 0
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("serving")]
    assert "127.0.0.1:8222 (http://alice:***@127.0.0.1:8222)" in line
    no_secret(caplog.text)


# --monitor.password-file and $FASTNATS_MONITOR_PASSWORD.

@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    return str(path)


def test_password_file_goes_to_urls_with_a_user_and_no_password(password_file):
    s = settings("http://alice@a:8222", "http://b:8222", "--monitor.password-file",
                 password_file)
    assert [(t.user, t.password) for t in s.targets] == [("alice", SECRET), (None, None)]
    no_secret(repr(s))


def test_nats_password_file_is_the_monitoring_password_without_a_fleet(password_file):
    s = settings("http://alice@a:8222", "--nats.password-file", password_file)
    assert [(t.user, t.password) for t in s.targets] == [("alice", SECRET)]
    with pytest.raises(cli.UsageError, match="both give the monitoring password"):
        settings("http://alice@a:8222", "--nats.password-file", password_file,
                 "--monitor.password-file", password_file)


def test_password_from_the_environment():
    s = settings("http://alice@a:8222", environ={cli.MONITOR_PASSWORD_ENV: SECRET})
    assert s.targets[0].password == SECRET


@pytest.mark.parametrize("argv, environ, message", [
    (["http://alice@a:8222", "--monitor.password-file", "PW"],
     {cli.MONITOR_PASSWORD_ENV: "x"}, "both give the monitoring password"),
    ([f"http://alice:{QUOTED}@a:8222", "--monitor.password-file", "PW"], {},
     "gives its password in the URL"),
    ([f"http://alice:{QUOTED}@a:8222"], {cli.MONITOR_PASSWORD_ENV: "x"},
     "gives its password in the URL"),
    (["http://a:8222", "--monitor.password-file", "PW"], {}, "no monitoring URL names a user"),
    (["http://alice@a:8222", "--monitor.password-file", "/nonexistent/pw"], {},
     "cannot read /nonexistent/pw"),
])
def test_password_given_two_ways_or_for_nobody_is_refused(argv, environ, message,
                                                          password_file):
    argv = [password_file if a == "PW" else a for a in argv]
    with pytest.raises(cli.UsageError, match=message) as info:
        settings(*argv, environ=environ)
    no_secret(str(info.value))


def test_resolve_reads_the_password_file(password_file):
    s = cli.resolve(cli.build_parser().parse_args(
        ["http://alice@a:8222", "--monitor.password-file", password_file]))
    assert s.targets == [Target("a:8222", "http://a:8222", "alice", SECRET)]


# --demo binds to this host only, unless told otherwise.

def test_demo_listens_on_loopback_by_default():
    s = cli.resolve(cli.build_parser().parse_args(["--demo"]))
    assert (s.host, s.port) == ("127.0.0.1", 7777)
    s = cli.resolve(cli.build_parser().parse_args(["--demo", "--web.listen-address", ":9100"]))
    assert (s.host, s.port) == ("", 9100)
