"""The system-account source without a server: the reply envelope, the options mapping, the
compressed replies and the secrets."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import ssl
import urllib.parse
from collections.abc import Callable

import cramjam
import nats.errors
import nkeys  # type: ignore[import-untyped]
import pytest

from fastnats._impl import impl
from fastnats.errors import ScrapeError
from fastnats.sources import system
from fastnats.sources.monitor import BodyLimits
from fastnats.sources.system import (
    NatsOptions,
    SystemAccount,
    SystemSource,
    inflate,
    options_json,
    reply_data,
    reply_server_id,
)
from fastnats.sources.tls import ClientTLS
from tests.support import connzgen

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
    with caplog.at_level(logging.INFO, logger="fastnats.fleet"):
        asyncio.run(account._on_error(OSError("nats://u:hunter2@host:4222 refused hunter2")))
        asyncio.run(account._on_error(OSError("nats://u:hunter2@host:4222 refused hunter2")))
    assert account.events["error"] == 2
    assert len(caplog.records) == 1
    assert "hunter2" not in caplog.text


def test_an_outage_logs_each_error_once_until_the_connection_is_back(
        caplog: pytest.LogCaptureFixture) -> None:
    # Revoked credentials, with a timeout between two refusals on a loaded server: one
    # outage, so the refusal is not logged a second time.
    account = SystemAccount(NatsOptions(("nats://127.0.0.1:4222",), user="sys", password="p"))
    account._nc = object()  # type: ignore[assignment]
    refusal = nats.errors.Error("nats: 'Authorization Violation'")

    async def scenario() -> None:
        for exc in (refusal, TimeoutError(), refusal, TimeoutError(), refusal):
            await account._on_error(exc)
        account._nc = None  # reconnected: what follows is a new outage
        await account._on_reconnected()
        account._nc = object()  # type: ignore[assignment]
        await account._on_error(refusal)

    with caplog.at_level(logging.INFO, logger="fastnats.fleet"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert account.events["error"] == 6
    assert sum("refused" in m for m in messages) == 2, messages
    assert sum("TimeoutError" in m for m in messages) == 1, messages
    assert len(messages) == 4, messages


class PagedAccount:
    """A system account over a simulated server (tests.support.connzgen) whose CONNZ replies
    must fit ``max_payload``; ``between`` runs before each request after the first."""

    def __init__(self, server: connzgen.Server, max_payload: int | None,
                 between: Callable[[int], None] | None = None, compress: bool = False) -> None:
        self.server = server
        self.compress = compress
        self.max_payload = max_payload
        self.between = between
        self.requests: list[dict] = []

    async def request_sized(self, server_id: str, endpoint: str, body: dict | None, *,
                            timeout: float, max_bytes: int | None = None,
                            compress: bool | None = None) -> tuple[bytes, int]:
        options = body or {}
        if self.requests and self.between is not None:
            self.between(len(self.requests))
        self.requests.append(options)
        offset, limit = options.get("offset", 0), options.get("limit", 1024)
        if options.get("state") == 1:
            data = self.server.closed_listing(offset, limit, indent=False)
        else:
            conns = [self.server.open[cid] for cid in sorted(self.server.open)]
            data = connzgen.render_body(conns[offset:offset + limit], indent=False,
                                        clock_ns=self.server.clock_ns, total=len(conns),
                                        offset=offset, limit=limit)
        reply = b'{"server":{"id":"NABC"},"data":' + data + b"}"
        # The bytes that travel: snappy, as the source asks CONNZ replies.
        wire = len(cramjam.snappy.compress(reply)) if self.compress else len(reply)
        if self.max_payload is not None:
            assert wire <= self.max_payload, (wire, options)
        return reply, wire


OPEN = {"state": "open", "limit": 1000, "auth": "true", "subs": "false"}


def crowded(seed: int = 7, opens: int = 600) -> connzgen.Server:
    print(f"connzgen seed {seed}")
    server = connzgen.Server(seed)
    server.step(opens=opens)
    server.step(closes=150)
    return server


def cids(pages: list[bytearray]) -> list[int]:
    return [c["cid"] for page in pages for c in json.loads(page)["connections"]]


def test_a_small_max_payload_pages_an_open_listing_into_what_one_read_gives() -> None:
    server = crowded()
    whole = asyncio.run(SystemSource(PagedAccount(server, None), "NABC", 5).get_pages(
        "connz", OPEN))
    assert len(whole) == 1
    account = PagedAccount(server, 32 * 1024, compress=True)
    source = SystemSource(account, "NABC", 5)
    pages = asyncio.run(source.get_pages("connz", OPEN))
    assert len(pages) == len(account.requests) > 3
    assert sorted(set(cids(pages))) == cids(whole) == sorted(server.open)
    # The same aggregates as one read, the overlap counted once.
    one, paged = impl.ConnzAggregator(), impl.ConnzAggregator()
    one.update(whole[0], None, server.now)
    paged.update(pages, None, server.now)
    assert paged.count == one.count == len(server.open)
    assert paged.families() == one.families()
    # The second read sizes its pages from the bytes each connection took, compressed.
    again = asyncio.run(source.get_pages("connz", OPEN))
    assert sorted(set(cids(again))) == sorted(server.open)
    assert len(again) < len(pages)


def test_pages_read_again_from_further_back_when_connections_close_between_them() -> None:
    server = crowded(11)
    kept = set(server.open)

    def close_first(request: int) -> None:
        # Many connections closed before where the next page starts: the list shifts left.
        victims = sorted(server.open)[:40]
        for cid in victims:
            kept.discard(cid)
            server._close(server.open[cid])

    account = PagedAccount(server, 32 * 1024, between=close_first)
    pages = asyncio.run(SystemSource(account, "NABC", 5).get_pages("connz", OPEN))
    assert kept <= set(cids(pages))
    assert any(r.get("offset", 0) for r in account.requests)


def test_closed_pages_and_small_reads_are_read_as_asked() -> None:
    server = crowded(5)
    account = PagedAccount(server, 24 * 1024)
    source = SystemSource(account, "NABC", 5)
    closed = {"state": "closed", "sort": "stop", "auth": "true", "offset": 20, "limit": 120}
    pages = asyncio.run(source.get_pages("connz", closed))
    whole = json.loads(server.closed_listing(20, 120, indent=False))["connections"]
    assert len(pages) > 1 and cids(pages) == [c["cid"] for c in whole]
    account.requests.clear()
    small = asyncio.run(source.get_pages("connz", {"state": "open", "limit": 3}))
    assert len(small) == 1 and account.requests == [{"state": 0, "limit": 3}]


def test_max_payload_is_the_smaller_of_the_server_and_the_cap() -> None:
    options = NatsOptions(("nats://host:4222",))
    assert SystemAccount(options).max_payload is None
    assert SystemAccount(options, max_payload=4096).max_payload == 4096

    class Connected:
        max_payload = 1 << 20

    account = SystemAccount(options, max_payload=65536)
    account._nc = Connected()  # type: ignore[assignment]
    assert account.max_payload == 65536
    account._max_payload = None
    assert account.max_payload == 1 << 20
    with pytest.raises(ValueError):
        SystemAccount(options, max_payload=0)


def test_a_reset_while_connecting_without_a_client_certificate_says_one_may_be_needed() -> None:
    # The reset may come from connect() itself, not only through the error callback.
    account = SystemAccount(NatsOptions(urls=("tls://127.0.0.1:4222",)))
    for dropped in (ConnectionResetError(104, "Connection reset by peer"),
                    BrokenPipeError(32, "Broken pipe")):
        message = account._connect_failure(dropped, 5)
        assert "requires a client certificate" in message and "--nats.tls.cert" in message
    other = account._connect_failure(OSError(111, "Connection refused"), 5)
    assert "client certificate" not in other


def test_a_reset_while_connecting_with_a_client_certificate_says_what_the_server_said() -> None:
    # nats-py writes CONNECT right after the handshake, and may read the reset before the
    # alert; the probe that only reads gets the alert, and its words are given.
    tls = ClientTLS(cert="/etc/client.pem", key="/etc/client-key.pem")
    account = SystemAccount(NatsOptions(urls=("tls://127.0.0.1:4222",), tls=tls))
    dropped = BrokenPipeError(32, "Broken pipe")
    unheard = account._connect_failure(dropped, 5)
    assert "does not trust the client certificate" in unheard and "--nats.tls.cert" in unheard
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"
    heard = account._connect_failure(dropped, 5, alert)
    assert "the server refused the client certificate (tlsv1 alert unknown ca)" in heard
    assert "Broken pipe" not in heard


class SizedAccount:
    """A system account whose one server replies ``data`` snappy-compressed, inflated under the
    limit the source gives, as ``SystemAccount`` inflates it; each limit is recorded."""

    max_payload = None

    def __init__(self, data: bytes) -> None:
        reply = b'{"server":{"id":"NABC"},"data":' + data + b"}"
        self.payload = bytes(cramjam.snappy.compress(reply))
        self.limits: list[int | None] = []

    async def request_sized(self, server_id: str, endpoint: str, body: dict | None, *,
                            timeout: float, max_bytes: int | None = None,
                            compress: bool | None = None) -> tuple[bytes | bytearray, int]:
        self.limits.append(max_bytes)
        return inflate(endpoint, "snappy", self.payload, max_bytes), len(self.payload)


def test_the_flags_bound_every_reply_as_over_http() -> None:
    data = b'{"pad":"' + b"x" * 5000 + b'"}'
    account = SizedAccount(data)
    # Without a per-entry allowance: the document's limit, once.
    source = SystemSource(account, "NABC", 5, BodyLimits(1000, 0))
    for endpoint, expect in (("varz", None), ("leafz", {"leafnodes": 3})):
        account.limits.clear()
        with pytest.raises(ScrapeError) as err:
            asyncio.run(source.get(endpoint, expect=expect))
        assert account.limits == [1000]
        assert err.value.reason == "too_large"
        assert "over its limit of 1000 bytes" in err.value.detail
        assert "--monitor.max-body-size" in err.value.detail
    # /jsz's document is a sixteenth of the flag's, and grows when passed.
    account.limits.clear()
    source = SystemSource(account, "NABC", 5, BodyLimits(16 * 5000, 0))
    assert asyncio.run(source.get("jsz", {}, expect={"accounts": 3})) == data
    assert account.limits == [5000, 20000]
    # A leafnode's allowance is --monitor.max-body-size-per-connection.
    account.limits.clear()
    source = SystemSource(account, "NABC", 5, BodyLimits(1000, 8 * 1024))
    assert asyncio.run(source.get("leafz", expect={"leafnodes": 1})) == data
    assert account.limits == [1000 + 8 * 1024]
    # The defaults when no limits are given, as MonitorClient's.
    account.limits.clear()
    asyncio.run(SystemSource(account, "NABC", 5).get("varz"))
    assert account.limits == [BodyLimits().document]


class ScriptedClient:
    """A stand-in for nats-py's Client whose connect() raises the next of ``failures`` (shared
    by every instance), then connects."""

    failures: list[Exception] = []
    made: list[ScriptedClient] = []

    def __init__(self) -> None:
        self.is_connected = self.is_closed = False
        self.last_error: Exception | None = None
        self.connected_url = urllib.parse.urlparse("nats://127.0.0.1:4222")
        ScriptedClient.made.append(self)

    async def connect(self, **kwargs: object) -> None:
        if ScriptedClient.failures:
            raise ScriptedClient.failures.pop(0)
        self.is_connected = True

    async def close(self) -> None:
        self.is_connected, self.is_closed = False, True


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """nats-py's Client scripted; returns the backoff delays the revival slept."""
    monkeypatch.setattr(system, "Client", ScriptedClient)
    ScriptedClient.failures, ScriptedClient.made = [], []
    slept: list[float] = []
    sleep = asyncio.sleep

    async def no_wait(delay: float) -> None:
        if delay:  # sleep(0), the test's own yield, is not a backoff
            slept.append(delay)
        await sleep(0)

    monkeypatch.setattr(system.asyncio, "sleep", no_wait)
    return slept


def closed_account(options: NatsOptions) -> SystemAccount:
    """An account whose connection nats-py gave up on (the server closed it with an error)."""
    account = SystemAccount(options)
    gone = ScriptedClient()
    gone.is_closed, gone.last_error = True, Exception("nats: maximum connections exceeded")
    account._nc = gone  # type: ignore[assignment]
    return account


def test_a_reconnect_that_nats_py_does_not_retry_is_logged_counted_and_tried_again(
        scripted: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastnats.fleet")
    # What a creds file made malformed while reconnecting raises from inside connect():
    # nats-py retries none of these.
    ScriptedClient.failures = [TypeError("object of type 'NoneType' has no len()"),
                               TypeError("object of type 'NoneType' has no len()"),
                               nkeys.ErrInvalidSeed(), nkeys.ErrInvalidSeed()]
    account = closed_account(NatsOptions(("nats://127.0.0.1:4222",), creds="/etc/sys.creds"))

    async def scenario() -> None:
        await account._on_closed()
        revival = account._revival
        assert revival is not None
        await asyncio.wait_for(revival, 10)

    asyncio.run(scenario())
    assert account.connected and account._nc is ScriptedClient.made[-1]
    assert account._revival is None
    assert scripted == [1.0, 2.0, 4.0, 8.0]
    assert account.events == {"error": 4, "reconnected": 1}
    assert [c.is_closed for c in ScriptedClient.made[1:]] == [True] * 4 + [False]
    hint = "check --nats.creds (a user of the system account)"
    assert [r.getMessage() for r in caplog.records if r.name == "fastnats.fleet"] == [
        "system account: nats: maximum connections exceeded",
        "system account: cannot reconnect: TypeError: object of type 'NoneType' has no len() "
        f"({hint}); trying again",
        f"system account: cannot reconnect: ErrInvalidSeed: nkeys: invalid seed ({hint}); "
        "trying again",
        "system account: reconnected to nats://127.0.0.1:4222"]


def test_the_backoff_stops_at_its_longest_and_close_ends_the_revival(
        scripted: list[float]) -> None:
    ScriptedClient.failures = [ValueError("bad")] * 8
    account = closed_account(NatsOptions(("nats://127.0.0.1:4222",), user="sys",
                                         password="s3cret"))

    async def backed_off() -> None:
        while len(scripted) < 7:
            await asyncio.sleep(0)

    async def scenario() -> None:
        await account._on_closed()
        await asyncio.wait_for(backed_off(), 10)
        await account.close()

    asyncio.run(scenario())
    assert scripted[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert account._revival is None and not account.connected
    assert all(c.is_closed for c in ScriptedClient.made)
