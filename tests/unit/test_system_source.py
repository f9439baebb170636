"""The system-account source without a server: the reply envelope, the options mapping, the
compressed replies and the secrets."""

from __future__ import annotations

import gzip
import json
import logging

import cramjam
import pytest

from fastnats.errors import ScrapeError
from fastnats.sources.system import (
    NatsOptions,
    SystemAccount,
    inflate,
    options_json,
    reply_data,
    reply_server_id,
)

SERVER = {"name": "n1", "host": "0.0.0.0", "id": "NABC", "ver": "2.15.1", "seq": 3}


def envelope(data: object, server: object = SERVER, **extra: object) -> bytes:
    return json.dumps({"server": server, "data": data, **extra},
                      separators=(",", ":")).encode()


@pytest.mark.parametrize("data", [
    {}, {"a": 1}, {"s": "brace } and { in a string", "t": "quote \\\" here }"},
    {"nested": {"x": [1, {"y": "}}}"}]}, "error": "a string named error"},
    {"conns": [{"cid": i, "name": f"c{{{i}"} for i in range(50)]},
])
def test_reply_data_is_the_data_object(data: object) -> None:
    reply = envelope(data)
    assert json.loads(reply_data("connz", reply)) == data
    assert reply_server_id("connz", reply) == "NABC"


def test_reply_data_with_whitespace_and_server_strings() -> None:
    server = {"name": 'we"ird } {', "id": "NX"}
    reply = b' { "server" : ' + json.dumps(server).encode() + b' , "data" : {"k": "v"} }\r\n'
    assert reply_data("varz", reply) == bytearray(b'{"k": "v"}')
    assert reply_server_id("varz", reply) == "NX"


def test_huge_data_span_is_cut_not_parsed() -> None:
    conns = [{"cid": i, "name": "x" * 20, "subs": "{"} for i in range(200_000)]
    reply = envelope({"connections": conns})
    data = reply_data("connz", reply)
    assert data == reply[reply.index(b'"data":') + 7:-1]


@pytest.mark.parametrize("cut", [1, 2, 10, 60, -1, -2, -5])
def test_truncated_replies_are_decode_errors(cut: int) -> None:
    # A NATS message arrives whole or not at all, so this guards against a bad server, not a
    # cut connection; the brace count is what catches a cut inside the data, and a string
    # holding exactly the missing braces would pass it (the collector's parser fails then).
    reply = envelope({"a": {"b": [1, 2, {"c": "x"}]}})
    with pytest.raises(ScrapeError) as err:
        reply_data("connz", reply[:cut])
    assert err.value.reason == "decode"


def test_error_reply_with_http_code_is_http_status() -> None:
    reply = json.dumps({"server": SERVER, "error": {"code": 404, "description": "nope"}}).encode()
    with pytest.raises(ScrapeError) as err:
        reply_data("healthz", reply)
    assert (err.value.reason, err.value.status) == ("http_status", 404)


def test_error_after_data_is_an_error() -> None:
    reply = envelope({"a": 1}, error={"code": 500, "description": "partial } data"})
    with pytest.raises(ScrapeError) as err:
        reply_data("jsz", reply)
    assert err.value.status == 500


def test_an_error_object_inside_data_is_data() -> None:
    data = {"a": 1, "error": {"code": 1, "description": "x"}}
    assert json.loads(reply_data("jsz", envelope(data))) == data


def test_error_without_http_code_is_decode() -> None:
    reply = json.dumps({"server": SERVER, "error": {"code": 10071}}).encode()
    with pytest.raises(ScrapeError) as err:
        reply_data("jsz", reply)
    assert err.value.reason == "decode"


@pytest.mark.parametrize("reply", [b"", b"[]", b'{"server":{}}', b'{"data":[1]}', b"{\"data\""])
def test_malformed_replies(reply: bytes) -> None:
    with pytest.raises(ScrapeError) as err:
        reply_data("varz", reply)
    assert err.value.reason == "decode"


def test_params_of_every_collector_request() -> None:
    # connz (open listing and closed pages), leafz's closed read, jsz, healthz, accstatz
    assert options_json("connz", {"state": "open", "limit": 100, "auth": "true",
                                  "subs": "false"}) == {
        "state": 0, "limit": 100, "auth": True, "subscriptions": False}
    assert options_json("connz", {"state": "closed", "sort": "stop", "auth": "true",
                                  "offset": "5", "limit": 10}) == {
        "state": 1, "sort": "stop", "auth": True, "offset": 5, "limit": 10}
    assert options_json("connz", {"state": "all", "subs": "detail"}) == {
        "state": 2, "subscriptions_detail": True}
    assert options_json("jsz", {"accounts": "true", "streams": "true", "config": "true",
                                "stream-leader-only": "true", "consumers": "true",
                                "offset": 0, "limit": 1024}) == {
        "accounts": True, "streams": True, "config": True, "stream_leader_only": True,
        "consumer": True, "offset": 0, "limit": 1024}
    assert options_json("healthz", {"details": "true"}) == {"details": True}
    assert options_json("healthz", {"js-enabled-only": "true"}) == {"js-enabled-only": True}
    assert options_json("healthz", {"js-server-only": "true"}) == {"js-server-only": True}
    assert options_json("accstatz", {"unused": "true"}) == {"include_unused": True}
    for endpoint in ("varz", "routez", "gatewayz", "leafz", "subsz"):
        assert options_json(endpoint, None) == {}
    with pytest.raises(ValueError):
        options_json("connz", {"nope": "1"})
    with pytest.raises(ValueError):
        options_json("connz", {"auth": "yes"})


def test_snappy_and_gzip_replies_inflate_within_limit() -> None:
    body = envelope({"x": "y" * 300_000, "n": list(range(20_000))})
    snappy = bytes(cramjam.snappy.compress(body))
    assert inflate("connz", "snappy", snappy, None) == body
    assert inflate("connz", "gzip", gzip.compress(body), len(body)) == body
    for coding, data in (("snappy", snappy), ("gzip", gzip.compress(body)),
                         ("identity", body)):
        with pytest.raises(ScrapeError) as err:
            inflate("connz", coding, data, len(body) - 1)
        assert err.value.reason == "too_large"
    with pytest.raises(ScrapeError) as err:
        inflate("connz", "snappy", snappy[:-7], None)
    assert err.value.reason == "decode"


def test_secrets_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    options = NatsOptions(("nats://u:hunter2@host:4222",), user="u", password="hunter2",
                          token="s3cret-token")
    assert "hunter2" not in repr(options) and "s3cret-token" not in repr(options)
    account = SystemAccount(options)
    account._nc = object()  # type: ignore[assignment]
    import asyncio
    with caplog.at_level(logging.INFO, logger="fastnats.fleet"):
        asyncio.run(account._on_error(OSError("nats://u:hunter2@host:4222 refused hunter2")))
        asyncio.run(account._on_error(OSError("nats://u:hunter2@host:4222 refused hunter2")))
    assert account.events["error"] == 2
    assert len(caplog.records) == 1
    assert "hunter2" not in caplog.text
