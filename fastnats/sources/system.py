"""The NATS system account as a source: monitoring endpoints requested over NATS itself.

A connection to the system account reaches every server of a supercluster:
``$SYS.REQ.SERVER.PING.<ENDPOINT>`` asks them all, ``$SYS.REQ.SERVER.<id>.<ENDPOINT>`` asks
one. A reply is ``{"server": {...}, "data": {...}}`` (or ``"error"`` in place of ``"data"``);
``SystemSource`` hands the collectors the bytes of ``"data"``, the same document the HTTP
endpoint serves, so they never know which way their bytes came.

Large replies are asked for compressed. nats-server (server/events.go, ``getAcceptEncoding``)
answers an ``Accept-Encoding`` naming ``snappy`` or ``s2`` with the snappy framing format
(``Content-Encoding: snappy``, written by s2 in its snappy-compatible mode), else ``gzip``.
Snappy costs the server about a tenth of what gzip does, and cramjam inflates it at about
1.5 GB/s into a buffer sized beforehand from the frames' own lengths, so the size limit is
checked before anything is inflated.

A reply travels as one NATS message. nats-server does not hold its own replies to
``max_payload``: with ``max_payload: 64KB``, a CONNZ of 400 connections (159 KB plain, 21 KB
snappy) reaches a client connected to that very server whole (nats-server 2.15.1, measured by
tests/integration/test_fleet_paging_real.py). A server that receives it over a leafnode
connection does: one over its own ``max_payload`` closes that leafnode connection ("Maximum
Payload Violation"), so a reply must fit the smallest ``max_payload`` on its way, which may be
neither the replying server's nor the exporter's (a middle leaf of a chain, measured by
tests/integration/test_fleet_leafnode_paging_real.py). The exporter counts on the smallest it
knows (``SystemAccount.max_payload``: its own server's, a cap, and the fleet's smallest).
``SystemSource.get_pages`` splits a CONNZ read whose reply would not fit into offset/limit pages
that do. /jsz pages itself by account: ``SystemSource`` is a ``BoundedSource``
(collectors/base.py), whose ``reply_budget`` is that ``max_payload`` less room for the reply's
headers, and whose ``get_sized`` tells each reply's size on the wire, from which the /jsz
collector sizes its next pages. Other replies are not split.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import ssl
import time
import zlib
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cramjam
import nats
import nats.errors
import nkeys  # type: ignore[import-untyped]  # nats-py[nkeys] brings it, untyped
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from ..errors import FastNatsError, ScrapeError
from ..target import redact_urls, redact_userinfo
from .monitor import TOO_LARGE_HINT, BodyLimits, read_within
from .tls import (
    PROBE_WAIT,
    ClientTLS,
    TLSConfigError,
    describe_failure,
    dropped_hint,
    read_flag_file,
    refusal,
)

log = logging.getLogger("fastnats.fleet")


class _StartTlsEof(logging.Filter):
    """nats-py moves to TLS with start_tls under a stream protocol that still thinks it is
    plain, so asyncio warns at every TLS close that its EOF answer is ignored: noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("returning true from eof_received()")


_START_TLS_EOF = _StartTlsEof()

_STATUS = "Status"
_NO_RESPONDERS = "503"
_CONTENT_ENCODING = "Content-Encoding"
#: Endpoints whose replies grow with the server (connections, accounts, streams): asked for
#: compressed. /varz and /healthz are a few KB: compressing them costs more than it saves.
_COMPRESSED = frozenset({"CONNZ", "LEAFZ", "JSZ", "SUBSZ", "ROUTEZ", "GATEWAYZ", "STATZ"})
_ACCEPT = {"Accept-Encoding": "snappy"}
#: The most a subscription may hold unread: a reply of a large server is tens of MB.
_PENDING_BYTES = 1 << 30
#: The shortest wait for another PING reply after the last one.
_MIN_GAP = 0.05
#: While replies are still expected, a ping waits this many times as long as its slowest
#: reply took the time before.
_PATIENCE = 1.5
#: Distinct errors logged in one outage; more are only counted (events["error"]).
_LOGGED_ERRORS = 32
_INFLATE_STEP = 1 << 20
#: Seconds between attempts to reconnect after a failure nats-py does not retry (a creds file
#: made malformed meanwhile): doubled at each, up to the second.
_REVIVE_BACKOFF = (1.0, 30.0)


class SystemAccountError(FastNatsError):
    """The system account could not be reached: bad credentials, no server, or an account
    that is not the system account."""


@dataclass(frozen=True)
class NatsOptions:
    """How to connect to the system account; ``password`` and ``token`` never show in repr."""

    urls: tuple[str, ...]
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    nkey: str | None = None
    token: str | None = None
    tls: ClientTLS = ClientTLS()
    name: str = "fastnats"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={'<hidden>' if key in ('password', 'token') and value else value!r}"
            for key, value in (
                ("urls", tuple(map(redact_userinfo, self.urls))), ("creds", self.creds),
                ("user", self.user), ("password", self.password), ("nkey", self.nkey),
                ("token", self.token), ("tls", self.tls), ("name", self.name)))
        return f"NatsOptions({shown})"

    def tls_context(self) -> ssl.SSLContext | None:
        """The context of ``tls``; None when it is not configured and no URL is tls://
        (nats-py then makes its own, should a server require TLS). Raises TLSConfigError."""
        if not (self.tls.configured or any(u.startswith("tls://") for u in self.urls)):
            return None
        return self.tls.context()


#: How a connection the server dropped shows: a reset, or a write into it after the close.
_DROPPED = (ConnectionResetError, BrokenPipeError)
#: The first two characters of a user's nkey seed.
_USER_SEED = b"SU"


def check_credential_files(options: NatsOptions) -> str | None:
    """Read --nats.nkey and --nats.creds as nats-py will at each connection, so that a bad file
    is one clear SystemAccountError now, not a failed connection later; returns the public key
    of the nkey seed, if any. Quotes no secret."""
    public_key = None if options.nkey is None else _public_key(options.nkey)
    if options.creds is not None:
        text = read_flag_file("--nats.creds", options.creds, SystemAccountError)
        if b"BEGIN NATS USER JWT" not in text or b"BEGIN USER NKEY SEED" not in text:
            raise SystemAccountError(
                f"--nats.creds {options.creds}: not a NATS credentials file (it holds a user "
                f"JWT and the user's nkey seed, each between -----BEGIN and -----END lines)")
    return public_key


def _public_key(path: str) -> str:
    """The public key of the user seed in ``path``; raises SystemAccountError."""
    seed = bytearray(read_flag_file("--nats.nkey", path, SystemAccountError).strip())
    try:
        if not seed.startswith(_USER_SEED):
            raise ValueError("not a user seed")
        pair = nkeys.from_seed(seed)
        public_key = pair.public_key.decode()
        pair.wipe()
    except (nkeys.NkeysError, ValueError, TypeError):
        raise SystemAccountError(
            f"--nats.nkey {path}: holds no user nkey seed (one line starting with "
            f"{_USER_SEED.decode()}, as `nk -gen user` writes it; its public key, starting with "
            f"U, goes in the server's conf)") from None
    finally:
        seed[:] = bytes(len(seed))
    return public_key


class SystemAccount:
    """One connection to the system account, shared by every server's ``SystemSource``.

    ``events`` counts ``disconnected``, ``reconnected`` and ``error`` (asynchronous errors);
    each change of state is logged once.

    nats-py reconnects by itself after a lost connection, but gives up on one that the server
    closes with an error, as it does when a conf reload revokes the credentials (authorization
    violation): a new client then connects in the background until the server accepts it.

    ``max_payload`` caps the size of the replies counted on, below the ``max_payload`` that the
    connected server announces (``SystemSource.get_pages``); so does ``fleet_max_payload``, the
    smallest of every server's, which the fleet sets as it learns them.
    """

    def __init__(self, options: NatsOptions, max_payload: int | None = None) -> None:
        if max_payload is not None and max_payload < 1:
            raise ValueError(f"max_payload must be positive, not {max_payload}")
        self.options = options
        self._max_payload = max_payload
        self.fleet_max_payload: int | None = None
        self.events: collections.Counter[str] = collections.Counter()
        self._nc: Client | None = None
        #: Tasks reading the replies that came after a ping's gap.
        self._late_readers: set[asyncio.Task[None]] = set()
        #: Seconds the slowest reply to the last ping of each subject took.
        self._slowest: dict[str, float] = {}
        self._last_error: str | None = None
        self._last_reset = False
        #: Set during connect() by an error that retrying cannot mend.
        self._hopeless: asyncio.Event | None = None
        self._nkey_public: str | None = None
        #: The errors logged since the connection was last up (each once; at most _LOGGED_ERRORS).
        self._logged_errors: set[str] = set()
        self._closing = False
        self._connect_kwargs: dict[str, Any] = {}
        self._revival: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def max_payload(self) -> int | None:
        """The largest reply the exporter counts on receiving: the connected server's
        ``max_payload``, capped by the constructor's and by ``fleet_max_payload``; None before
        the first connection when neither is set."""
        announced = self._nc.max_payload if self._nc is not None else None
        limits = [limit for limit in (announced, self._max_payload, self.fleet_max_payload)
                  if limit is not None]
        return min(limits) if limits else None

    def _redact(self, text: str) -> str:
        text = redact_userinfo(text)
        for secret in (self.options.password, self.options.token):
            if secret:
                text = text.replace(secret, "<hidden>")
        return text

    async def _on_error(self, exc: Exception) -> None:
        self._last_reset = isinstance(exc, _DROPPED)
        what = self._redact(describe_failure(exc) or str(exc) or type(exc).__name__)
        if isinstance(exc, _DROPPED) and _refused(self._last_error or ""):
            # nats-server closes a refused connection right after its -ERR, which the client
            # may read as a reset: the same refusal, not a change.
            what = self._last_error or what
        self._last_error = what
        if self._nc is None or self._closing:
            # During connect: connect() reports it, at once when retrying cannot help. Every
            # server of a fleet shares the system account, so a refusal from one is final; a
            # TLS failure is final when there is no other seed URL to try.
            if self._hopeless is not None and self._is_final(exc, what):
                self._hopeless.set()
            return
        self.events["error"] += 1
        self._log_error(what)

    def _is_final(self, exc: Exception, what: str) -> bool:
        """Whether an error while connecting is one that retrying cannot mend."""
        if _refused(what):
            return True
        o = self.options
        if len(o.urls) > 1:
            return False    # another seed may have the certificate this one lacks
        tls = o.tls.configured or o.urls[0].startswith("tls://")
        return describe_failure(exc) is not None or (tls and isinstance(exc, _DROPPED))

    def _refusal(self) -> str:
        urls = redact_urls(self.options.urls)
        return (f"credentials refused (authorization violation from {urls}); every server is "
                f"down until they are accepted again")

    def _log_error(self, what: str) -> None:
        """Log each error once until the connection is back: a refusal that alternates with
        timeouts on a loaded server is one outage, not a new one each time."""
        if _refused(what):
            what = self._refusal()
        if what not in self._logged_errors and len(self._logged_errors) < _LOGGED_ERRORS:
            self._logged_errors.add(what)
            log.warning("system account: %s", what)

    async def _on_disconnected(self) -> None:
        if self._nc is None or self._closing:
            return
        self.events["disconnected"] += 1
        log.warning("system account: disconnected; reconnecting")

    async def _on_closed(self) -> None:
        nc = self._nc
        if nc is None or self._closing or not nc.is_closed or self._revival is not None:
            return
        self._last_error = self._redact(str(nc.last_error or "the server closed the connection"))
        self._log_error(self._last_error)
        self._revival = asyncio.create_task(self._revive(), name="fastnats-system-reconnect")

    async def _revive(self) -> None:
        """Connect a new client; nats-py retries every ``reconnect_time_wait``, and each
        refusal reaches ``_on_error``. What nats-py does not retry (its connect() raises, as
        for a creds file made malformed meanwhile) is counted, logged once per change and
        tried again with a backoff: giving up would leave every server down for good."""
        delay, longest = _REVIVE_BACKOFF
        while True:
            nc = Client()
            try:
                await nc.connect(**self._connect_kwargs)
                break
            except Exception as exc:  # noqa: BLE001  (whatever nats-py let through)
                await _quiet_close(nc)
                self.events["error"] += 1
                o = self.options
                hint = f" ({self._credentials_hint()})" if o.creds or o.nkey else ""
                self._log_error(self._redact(f"cannot reconnect: {type(exc).__name__}: {exc}"
                                             f"{hint}; trying again"))
            except BaseException:
                await _quiet_close(nc)
                raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, longest)
        self._nc, self._revival = nc, None
        await self._on_reconnected()

    async def _on_reconnected(self) -> None:
        self.events["reconnected"] += 1
        self._last_error = None
        self._logged_errors.clear()
        url = self._nc.connected_url if self._nc is not None else None
        where = redact_userinfo(url.geturl()) if url is not None else "a server"
        log.info("system account: reconnected to %s", where)

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect, and check that the account is the system account; any failure raises
        ``SystemAccountError`` with what to check."""
        o = self.options
        kwargs: dict[str, Any] = dict(
            servers=list(o.urls), name=o.name, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
            connect_timeout=min(timeout, 2.0), max_reconnect_attempts=-1,
            reconnect_time_wait=1.0, allow_reconnect=True)
        if o.creds:
            kwargs["user_credentials"] = o.creds
        if o.nkey:
            kwargs["nkeys_seed"] = o.nkey
        if o.user is not None:
            kwargs.update(user=o.user, password=o.password)
        if o.token:
            kwargs["token"] = o.token
        try:
            tls = o.tls_context()
        except TLSConfigError as exc:
            raise SystemAccountError(str(exc)) from None
        self._nkey_public = check_credential_files(o)
        if tls is not None:
            kwargs["tls"] = tls
            logging.getLogger("asyncio").addFilter(_START_TLS_EOF)
        self._connect_kwargs = kwargs
        self._last_error = None
        self._last_reset = False
        nc = Client()
        # With reconnects on, nats-py retries a refused first connection for ever: wait until
        # it connects, an error says retrying is hopeless, or the timeout.
        self._hopeless = asyncio.Event()
        connecting = asyncio.ensure_future(nc.connect(**kwargs))
        hopeless = asyncio.ensure_future(self._hopeless.wait())
        try:
            await asyncio.wait((connecting, hopeless), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            hopeless.cancel()
            self._hopeless = None
        failure: BaseException | None = None
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            failure = (asyncio.TimeoutError() if self._last_error is None
                       else ConnectionError(self._last_error))
        elif connecting.exception() is not None:
            failure = connecting.exception()
        if failure is not None:
            await _quiet_close(nc)
            alert = None
            if tls is not None and (self._last_reset or isinstance(failure, _DROPPED)):
                alert = await self._tls_refusal(tls, timeout)
            raise SystemAccountError(self._connect_failure(failure, timeout, alert)) from None
        self._nc = nc
        try:
            await self._check_system(timeout)
        except BaseException:
            await self.close()
            raise

    async def _tls_refusal(self, context: ssl.SSLContext,
                           timeout: float) -> BaseException | None:
        """The TLS alert a seed gives a connection that only reads (``tls.refusal``): nats-py
        writes CONNECT at once, and may read the reset before the alert."""
        seeds = [urlsplit(url) for url in self.options.urls]
        probes = [refusal(seed.hostname, seed.port or 4222, context, min(timeout, PROBE_WAIT),
                          nats=True) for seed in seeds if seed.hostname]
        return next((alert for alert in await asyncio.gather(*probes) if alert), None)

    def _connect_failure(self, exc: BaseException, timeout: float,
                         alert: BaseException | None = None) -> str:
        last = self._last_error or self._redact(str(exc) or type(exc).__name__)
        urls = redact_urls(self.options.urls)
        if _refused(last):
            return f"authorization violation from {urls}: {self._credentials_hint()}"
        if isinstance(exc, asyncio.TimeoutError) and self._last_error is None:
            return f"no NATS server answered at {urls} within {timeout:g}s"
        described = describe_failure(alert) if alert is not None else None
        if described is not None:
            return f"cannot connect to {urls}: {described}"
        if self._last_reset or isinstance(exc, _DROPPED):
            # Over TLS 1.3 a server judges the client certificate once the handshake is over,
            # and may drop the connection without a word.
            last += f" ({dropped_hint(self.options.tls.cert is not None)})"
        return f"cannot connect to {urls}: {last}"

    def _credentials_hint(self) -> str:
        """What to check when the server refuses the credentials."""
        o = self.options
        if o.creds:
            return "check --nats.creds (a user of the system account)"
        if o.nkey:
            return (f"check --nats.nkey: the public key of its seed ({self._nkey_public}) must "
                    f"be a user of the system account")
        if o.user is not None:
            return "check --nats.user and its password"
        if o.token:
            return "check --nats.token"
        return ("the server requires credentials: give those of a system-account user "
                "(--nats.creds, --nats.nkey, --nats.user with a password, or --nats.token)")

    async def _check_system(self, timeout: float) -> None:
        try:
            await self.ping("IDZ", None, timeout=timeout, expected=1)
        except ScrapeError as exc:
            if exc.reason == "timeout":
                raise SystemAccountError(f"no server answered $SYS.REQ.SERVER.PING.IDZ within "
                                         f"{timeout:g}s") from None
            account = await self._account_name(timeout)
            raise SystemAccountError(
                f"the user is in account {account or '(unknown)'}, which is not the system "
                f"account: no server answers $SYS.REQ.SERVER requests there; give the "
                f"credentials of a system-account user (--nats.creds/--nats.user)") from None

    async def _account_name(self, timeout: float) -> str | None:
        assert self._nc is not None
        try:
            msg = await self._nc.request("$SYS.REQ.USER.INFO", b"", timeout=timeout)
            account = orjson.loads(msg.data).get("data", {}).get("account")
        except Exception:
            return None
        return account if isinstance(account, str) else None

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        revival, self._revival = self._revival, None
        self._closing = True
        readers, self._late_readers = self._late_readers, set()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        try:
            if revival is not None:
                revival.cancel()
                await asyncio.gather(revival, return_exceptions=True)
            if nc is not None:
                await _quiet_close(nc)
        finally:
            self._closing = False

    def _client(self, endpoint: str) -> Client:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise ScrapeError(endpoint.lower(), "connect", "not connected to the system account")
        return nc

    async def ping(self, endpoint: str, body: dict | None, *, timeout: float,
                   expected: int | None = None) -> list[bytes]:
        """Ask every server (``$SYS.REQ.SERVER.PING.<ENDPOINT>``) and return their raw replies.

        Waiting stops at ``expected`` replies, at ``timeout``, or a gap after the last reply
        of three times the longest interval seen between replies (50 ms at least); while
        replies are still expected, the gap lasts until at least 1.5 times as long after the
        request as the slowest reply to the last ping of the endpoint took.
        """
        return [msg.data for msg in await self._ping(
            f"$SYS.REQ.SERVER.PING.{endpoint.upper()}", endpoint, body, timeout=timeout,
            expected=expected)]

    async def ping_timed(self, endpoint: str, body: dict | None, *, timeout: float,
                         expected: int | None = None,
                         expected_of: Callable[[bytes], int | None] | None = None,
                         late: Callable[[bytes, float], None] | None = None,
                         ) -> list[tuple[bytes, float]]:
        """``ping``, each reply with the seconds from the request to its arrival.

        ``expected_of`` reads from a reply how many replies to expect (STATSZ's
        ``active_servers``): waiting stops as soon as the largest number read, or ``expected``,
        have come. When the gap ends the wait short of it, the replies that still come before
        ``timeout`` go to ``late`` (reply, seconds), from a task of their own: a slow server
        delays no one, and is not missed either."""
        arrivals: list[float] = []
        replies = await self._ping(f"$SYS.REQ.SERVER.PING.{endpoint.upper()}", endpoint, body,
                                   timeout=timeout, expected=expected, arrivals=arrivals,
                                   expected_of=expected_of, late=late)
        return [(msg.data, rtt) for msg, rtt in zip(replies, arrivals)]

    async def _ping(self, subject: str, endpoint: str, body: dict | None, *, timeout: float,
                    expected: int | None, headers: dict[str, str] | None = None,
                    arrivals: list[float] | None = None,
                    expected_of: Callable[[bytes], int | None] | None = None,
                    late: Callable[[bytes, float], None] | None = None) -> list[Msg]:
        nc = self._client(endpoint)
        # Not loop.time(): uvloop's clock ticks in milliseconds, and a loopback round trip
        # is shorter than that.
        start = time.perf_counter()
        deadline = start + timeout
        # While replies are still expected, wait at least as long as the slowest reply to
        # this ping took last time (a remote cluster behind a gateway), with a margin.
        patient_until = start + _PATIENCE * self._slowest.get(subject, 0.0)
        sub = await nc.subscribe(nc.new_inbox(), pending_bytes_limit=_PENDING_BYTES)
        replies: list[Msg] = []
        want = expected
        handed_over = False
        try:
            await nc.publish(subject, _payload(body), reply=sub.subject, headers=headers)
            last = None
            widest = 0.0
            while want is None or len(replies) < want:
                now = time.perf_counter()
                wait = deadline - now
                if last is not None:
                    gap = max(_MIN_GAP, 3 * widest) - (now - last)
                    if want is not None:
                        gap = max(gap, patient_until - now)
                    wait = min(wait, gap)
                if wait <= 0:
                    break
                try:
                    msg = await sub.next_msg(timeout=wait)
                except nats.errors.TimeoutError:
                    break
                if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
                    raise ScrapeError(endpoint.lower(), "connect",
                                      f"no responders on {subject}")
                now = time.perf_counter()
                if last is not None:
                    widest = max(widest, now - last)
                last = now
                replies.append(msg)
                if arrivals is not None:
                    arrivals.append(now - start)
                if expected_of is not None and (told := expected_of(msg.data)) is not None \
                        and (want is None or told > want):
                    want = told
            self._slowest[subject] = last - start if last is not None else 0.0
            if late is not None and want is not None and len(replies) < want \
                    and time.perf_counter() < deadline:
                task = asyncio.create_task(
                    self._stragglers(sub, subject, want - len(replies), start, deadline,
                                     late),
                    name=f"fastnats-ping-{endpoint.lower()}-stragglers")
                self._late_readers.add(task)
                task.add_done_callback(self._late_readers.discard)
                handed_over = True
        finally:
            if not handed_over:
                await _quiet_unsubscribe(sub)
        return replies

    async def _stragglers(self, sub: Any, subject: str, count: int, start: float,
                          deadline: float, late: Callable[[bytes, float], None]) -> None:
        """The replies to a ping that come after its gap, up to ``count`` of them and until
        ``deadline``, each to ``late``; the next ping waits for the slowest."""
        try:
            while count > 0 and (wait := deadline - time.perf_counter()) > 0:
                try:
                    msg = await sub.next_msg(timeout=wait)
                except nats.errors.TimeoutError:
                    break
                if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
                    break
                count -= 1
                took = time.perf_counter() - start
                self._slowest[subject] = max(self._slowest.get(subject, 0.0), took)
                late(msg.data, took)
        except Exception as exc:  # noqa: BLE001  (a closed connection ends it, as a timeout would)
            log.debug("late ping replies no longer read: %s", exc)
        finally:
            await _quiet_unsubscribe(sub)

    async def request(self, server_id: str, endpoint: str, body: dict | None, *,
                      timeout: float, max_bytes: int | None = None,
                      compress: bool | None = None) -> bytes | bytearray:
        """Ask one server (``$SYS.REQ.SERVER.<id>.<ENDPOINT>``) and return its reply inflated.

        ``compress`` asks for a compressed reply; by default, for the endpoints whose replies
        grow with the server. ``max_bytes`` bounds the inflated reply.
        """
        return (await self.request_sized(server_id, endpoint, body, timeout=timeout,
                                         max_bytes=max_bytes, compress=compress))[0]

    async def request_sized(self, server_id: str, endpoint: str, body: dict | None, *,
                            timeout: float, max_bytes: int | None = None,
                            compress: bool | None = None) -> tuple[bytes | bytearray, int]:
        """``request``, and the size of the reply's payload as it travelled."""
        name = endpoint.upper()
        subject = f"$SYS.REQ.SERVER.{server_id}.{name}"
        return await self._request(subject, endpoint, body, timeout=timeout,
                                   max_bytes=max_bytes,
                                   compress=name in _COMPRESSED if compress is None
                                   else compress)

    async def _request(self, subject: str, endpoint: str, body: dict | None, *,
                       timeout: float, max_bytes: int | None,
                       compress: bool) -> tuple[bytes | bytearray, int]:
        nc = self._client(endpoint)
        label = endpoint.lower()
        sub = await nc.subscribe(nc.new_inbox(), max_msgs=1, pending_bytes_limit=_PENDING_BYTES)
        try:
            await nc.publish(subject, _payload(body), reply=sub.subject,
                             headers=_ACCEPT if compress else None)
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                raise ScrapeError(label, "timeout", f"no reply on {subject} within "
                                                    f"{timeout:g}s") from None
        finally:
            await _quiet_unsubscribe(sub)
        headers = msg.headers or {}
        if headers.get(_STATUS) == _NO_RESPONDERS:
            raise ScrapeError(label, "connect", f"no responders on {subject}: the server is "
                                                f"gone, or does not serve {endpoint.upper()}")
        coding = headers.get(_CONTENT_ENCODING, "identity").strip().lower()
        return inflate(label, coding, msg.data, max_bytes), len(msg.data)

    async def account_statz(self, server_id: str, server_name: str, body: dict | None, *,
                            timeout: float, max_bytes: int | None = None) -> bytes | bytearray:
        """The account statistics of one server. nats-server serves them only as
        ``$SYS.REQ.ACCOUNT.PING.STATZ``, which every server answers: the request names the
        server (``server_name``, exactly) to keep the others silent, and only the reply of
        ``server_id`` is kept."""
        request = dict(body or {}, server_name=server_name, exact_match=True)
        subject = "$SYS.REQ.ACCOUNT.PING.STATZ"
        for msg in await self._ping(subject, "accstatz", request, timeout=timeout,
                                    expected=1, headers=_ACCEPT):
            coding = (msg.headers or {}).get(_CONTENT_ENCODING, "identity").strip().lower()
            reply = inflate("accstatz", coding, msg.data, max_bytes)
            if reply_server_id("accstatz", reply) == server_id:
                return reply
        raise ScrapeError("accstatz", "timeout", f"no reply from server {server_id} on "
                                                 f"{subject} within {timeout:g}s")


def _payload(body: dict | None) -> bytes:
    return orjson.dumps(body) if body else b""


async def _quiet_unsubscribe(sub: Any) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # the connection may have closed under it
        pass


def _refused(error: str) -> bool:
    """Whether a connection error says the server refused the credentials."""
    return "authorization" in error.lower() or "authentication" in error.lower()


async def _quiet_close(nc: Client) -> None:
    try:
        await nc.close()
    except Exception:
        pass


def inflate(endpoint: str, coding: str, data: bytes,
            max_bytes: int | None) -> bytes | bytearray:
    """A reply's payload decoded from its Content-Encoding, never inflating past ``max_bytes``."""
    if coding in ("", "identity"):
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_large(endpoint, f"{len(data)} bytes", max_bytes)
        return data
    if coding == "snappy":
        size = snappy_framed_size(endpoint, data)
        if max_bytes is not None and size > max_bytes:
            raise _too_large(endpoint, f"{size} bytes inflated from {len(data)}", max_bytes)
        out = bytearray(size)
        try:
            written = cramjam.snappy.decompress_into(data, out)
        except cramjam.DecompressionError as exc:
            raise ScrapeError(endpoint, "decode", f"bad snappy reply: {exc}") from None
        if written != size:
            raise ScrapeError(endpoint, "decode", f"bad snappy reply: {written} bytes inflated "
                                                  f"where its frames announce {size}")
        return out
    if coding == "gzip":
        return _gunzip(endpoint, data, max_bytes)
    raise ScrapeError(endpoint, "decode", f"unsupported Content-Encoding {coding!r}")


def _gunzip(endpoint: str, data: bytes, max_bytes: int | None) -> bytearray:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    limit = max_bytes
    try:
        while pending or not inflater.eof:
            step = _INFLATE_STEP if limit is None else min(_INFLATE_STEP, limit - len(out) + 1)
            chunk = inflater.decompress(pending, step)
            out += chunk
            if limit is not None and len(out) > limit:
                raise _too_large(endpoint, f"more than {limit} bytes inflated from "
                                           f"{len(data)}", limit)
            pending = inflater.unconsumed_tail
            if not pending and not chunk:
                break
    except zlib.error as exc:
        raise ScrapeError(endpoint, "decode", f"bad gzip reply: {exc}") from None
    if not inflater.eof:
        raise ScrapeError(endpoint, "decode", "bad gzip reply: the stream ends early")
    return out


def snappy_framed_size(endpoint: str, data: bytes | bytearray) -> int:
    """The inflated size of a snappy framing-format stream, from its frames' headers and each
    compressed block's length preamble, without inflating anything."""
    view = memoryview(data)
    pos, size, end = 0, 0, len(data)
    while pos < end:
        if pos + 4 > end:
            raise ScrapeError(endpoint, "decode", f"bad snappy reply: frame header cut short "
                                                  f"(byte {pos})")
        kind = view[pos]
        length = view[pos + 1] | view[pos + 2] << 8 | view[pos + 3] << 16
        body = pos + 4
        pos = body + length
        if pos > end:
            raise ScrapeError(endpoint, "decode", f"bad snappy reply: frame cut short "
                                                  f"(byte {body - 4})")
        if kind == 0x00:
            size += _varint(endpoint, view, body + 4, pos)
        elif kind == 0x01:
            size += length - 4
        elif 0x02 <= kind <= 0x7f:
            raise ScrapeError(endpoint, "decode", f"bad snappy reply: reserved frame type "
                                                  f"{kind:#x} (byte {body - 4})")
    return size


def _varint(endpoint: str, view: memoryview, pos: int, end: int) -> int:
    value = shift = 0
    while pos < end and shift < 35:
        byte = view[pos]
        value |= (byte & 0x7f) << shift
        if not byte & 0x80:
            return value
        pos += 1
        shift += 7
    raise ScrapeError(endpoint, "decode", f"bad snappy reply: bad block length (byte {pos})")


def _too_large(endpoint: str, what: str, limit: int) -> ScrapeError:
    return ScrapeError(endpoint, "too_large", f"reply of {what}, over its limit of {limit} "
                                              f"bytes; {TOO_LARGE_HINT}")


_WS = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(rb"[^,}\]\s]+")
# Strings as a whole (so braces in them do not count), brackets, or a quote left open.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]|"', re.S)
_ERROR_MEMBER = b',"error":{"code":'


def _decode_error(endpoint: str, what: str, offset: int) -> ScrapeError:
    return ScrapeError(endpoint, "decode", f"system reply: {what} (byte {offset})")


def _skip_value(endpoint: str, buf: bytes | bytearray, pos: int) -> int:
    """The end of the JSON value at ``pos``."""
    if pos >= len(buf):
        raise _decode_error(endpoint, "cut short", pos)
    first = buf[pos]
    if first == 0x22:
        string = _STRING.match(buf, pos)
        if string is None:
            raise _decode_error(endpoint, "unterminated string", pos)
        return string.end()
    if first not in b"{[":
        scalar = _SCALAR.match(buf, pos)
        if scalar is None:
            raise _decode_error(endpoint, "value expected", pos)
        return scalar.end()
    depth = 0
    for token in _STRUCTURE.finditer(buf, pos):
        mark = buf[token.start()]
        if mark in b"{[":
            depth += 1
        elif mark in b"}]":
            depth -= 1
            if depth == 0:
                return token.end()
        elif token.end() - token.start() == 1:
            raise _decode_error(endpoint, "unterminated string", token.start())
    raise _decode_error(endpoint, "cut short", len(buf))


def _members(endpoint: str, buf: bytes | bytearray) -> Generator[tuple[bytes, int], int, None]:
    """The top-level members of a reply, as (key, value start, value end); the value end is
    found by the caller's ``_skip_value`` only when it reads on."""
    pos = _WS.match(buf).end()  # type: ignore[union-attr]
    if pos >= len(buf) or buf[pos] != 0x7b:
        raise _decode_error(endpoint, "not a JSON object", pos)
    pos += 1
    while True:
        pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
        if pos < len(buf) and buf[pos] == 0x7d:
            return
        key = _STRING.match(buf, pos)
        if key is None:
            raise _decode_error(endpoint, "member name expected", pos)
        pos = _WS.match(buf, key.end()).end()  # type: ignore[union-attr]
        if pos >= len(buf) or buf[pos] != 0x3a:
            raise _decode_error(endpoint, "':' expected", pos)
        pos = _WS.match(buf, pos + 1).end()  # type: ignore[union-attr]
        pos = yield bytes(buf[key.start() + 1:key.end() - 1]), pos
        pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
        if pos < len(buf) and buf[pos] == 0x2c:
            pos += 1
        elif pos < len(buf) and buf[pos] == 0x7d:
            return
        else:
            raise _decode_error(endpoint, "',' or '}' expected", pos)


def _api_error(endpoint: str, raw: bytes | bytearray) -> ScrapeError:
    try:
        error = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ScrapeError(endpoint, "decode", f"system reply: bad error member: {exc}")
    code = error.get("code") if isinstance(error, dict) else None
    description = error.get("description", "") if isinstance(error, dict) else ""
    if isinstance(code, int) and 100 <= code <= 599:
        return ScrapeError(endpoint, "http_status", f"status {code}: {description}",
                           status=code)
    return ScrapeError(endpoint, "decode", f"system reply error {code!r}: {description}")


def reply_data(endpoint: str, reply: bytes | bytearray) -> bytearray:
    """The bytes of a system reply's ``"data"`` object, without parsing the object.

    The members before ``"data"`` (nats-server sends ``"server"`` first, a few hundred bytes)
    are skipped token by token; the data object ends before the reply's closing brace, unless
    an ``"error"`` member follows it (nats-server writes server, data, error in that order).
    A NATS message arrives whole, so the span is checked by counting braces (C speed); a
    full scan runs only when the counts differ, which braces inside strings also cause.
    """
    members = _members(endpoint, reply)
    pos = None
    try:
        key, start = next(members)
        while True:
            if key == b"data":
                pos = start
                break
            end = _skip_value(endpoint, reply, start)
            if key == b"error":
                raise _api_error(endpoint, reply[start:end])
            key, start = members.send(end)
    except StopIteration:
        pass
    if pos is None:
        raise ScrapeError(endpoint, "decode", "system reply has neither data nor error")
    if pos >= len(reply) or reply[pos] != 0x7b:
        raise _decode_error(endpoint, "data is not an object", pos)
    close = len(reply) - 1
    while close > pos and reply[close] in b" \t\r\n":
        close -= 1
    if close <= pos or reply[close] != 0x7d:
        raise _decode_error(endpoint, "cut short", len(reply))
    error = reply.rfind(_ERROR_MEMBER, pos)
    if error != -1:
        # Top-level only if the rest is exactly one object and the reply's closing brace.
        try:
            orjson.loads(reply[error + 9:close])
        except orjson.JSONDecodeError:
            pass
        else:
            raise _api_error(endpoint, reply[error + 9:close])
    end = close
    while end > pos and reply[end - 1] in b" \t\r\n":
        end -= 1
    data = bytearray(memoryview(reply)[pos:end])
    if data[-1:] != b"}":
        raise _decode_error(endpoint, "data is not an object", end)
    if data.count(b"{") != data.count(b"}") and _skip_value(endpoint, data, 0) != len(data):
        # Braces in strings make the counts differ too; only a full scan tells.
        raise _decode_error(endpoint, "data object does not end where the reply does", pos)
    return data


def reply_server_id(endpoint: str, reply: bytes | bytearray) -> str:
    """The ``server.id`` of a system reply."""
    members = _members(endpoint, reply)
    try:
        key, start = next(members)
        while True:
            end = _skip_value(endpoint, reply, start)
            if key == b"server":
                server = orjson.loads(reply[start:end])
                ident = server.get("id") if isinstance(server, dict) else None
                if isinstance(ident, str):
                    return ident
                break
            key, start = members.send(end)
    except StopIteration:
        pass
    except orjson.JSONDecodeError as exc:
        raise ScrapeError(endpoint, "decode", f"system reply: bad server member: {exc}") from None
    raise ScrapeError(endpoint, "decode", "system reply names no server id")


_STATES = {"open": 0, "closed": 1, "all": 2, "any": 2}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

#: Per endpoint: each HTTP query parameter of nats-server's handler (server/monitor.go) and the
#: JSON option it sets in the endpoint's Options struct, with the value's kind.
PARAMS: dict[str, dict[str, tuple[str, str]]] = {
    "varz": {},
    "connz": {"sort": ("sort", "str"), "auth": ("auth", "bool"), "subs": ("subscriptions", "subs"),
              "offset": ("offset", "int"), "limit": ("limit", "int"), "cid": ("cid", "int"),
              "state": ("state", "state"), "user": ("user", "str"), "acc": ("acc", "str"),
              "mqtt_client": ("mqtt_client", "str"),
              "filter_subject": ("filter_subject", "str")},
    "routez": {"subs": ("subscriptions", "subs")},
    "gatewayz": {"subs": ("subscriptions", "subs"), "accs": ("accounts", "bool"),
                 "gw_name": ("name", "str"), "acc_name": ("account_name", "str")},
    "leafz": {"subs": ("subscriptions", "bool"), "acc": ("account", "str")},
    "subsz": {"subs": ("subscriptions", "bool"), "offset": ("offset", "int"),
              "limit": ("limit", "int"), "test": ("test", "str"), "acc": ("account", "str")},
    "jsz": {"acc": ("account", "str"), "accounts": ("accounts", "bool"),
            "streams": ("streams", "bool"), "consumers": ("consumer", "bool"),
            "direct-consumers": ("direct_consumer", "bool"), "config": ("config", "bool"),
            "leader-only": ("leader_only", "bool"), "offset": ("offset", "int"),
            "limit": ("limit", "int"), "raft": ("raft", "bool"),
            "stream-leader-only": ("stream_leader_only", "bool")},
    "healthz": {"js-enabled": ("js-enabled", "bool"),
                "js-enabled-only": ("js-enabled-only", "bool"),
                "js-server-only": ("js-server-only", "bool"),
                "js-meta-only": ("js-meta-only", "bool"), "details": ("details", "bool"),
                "account": ("account", "str"), "stream": ("stream", "str"),
                "consumer": ("consumer", "str")},
    "accstatz": {"unused": ("include_unused", "bool")},
    "raftz": {"acc": ("account", "str"), "group": ("group", "str")},
}


def _bool(endpoint: str, name: str, value: str | int) -> bool:
    # Go's strconv.ParseBool, as nats-server reads a query parameter.
    text = str(value)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{endpoint}: {name}={value!r} is not a boolean")


def options_json(endpoint: str, params: Mapping[str, str | int] | None) -> dict[str, Any]:
    """The options object of a system request that asks what ``params`` ask over HTTP."""
    table = PARAMS.get(endpoint)
    if table is None:
        raise ValueError(f"no system request for endpoint {endpoint!r}")
    options: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if name not in table:
            raise ValueError(f"{endpoint}: no system option for query parameter {name!r}")
        key, kind = table[name]
        if kind == "bool":
            options[key] = _bool(endpoint, name, value)
        elif kind == "int":
            options[key] = int(value)
        elif kind == "state":
            state = _STATES.get(str(value).lower())
            if state is None:
                raise ValueError(f"{endpoint}: state={value!r} is not open, closed or all")
            options[key] = state
        elif kind == "subs":
            if str(value).lower() == "detail":
                options["subscriptions_detail"] = True
            else:
                options[key] = _bool(endpoint, name, value)
        else:
            options[key] = str(value)
    return options


class SystemSource:
    """The collectors' ``Source`` for one server, over the system account."""

    def __init__(self, account: SystemAccount, server_id: str, timeout: float,
                 limits: BodyLimits | None = None) -> None:
        self.account = account
        self.server_id = server_id
        self.timeout = timeout
        self._limits = limits or BodyLimits()
        self._name: str | None = None
        #: Bytes on the wire per connection listed, by CONNZ state, from the last paged read.
        self._per_connection: dict[int, float] = {}

    async def get(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                  expect: Mapping[str, int] | None = None,
                  statuses: Collection[int] = (200,)) -> bytearray:
        """The ``data`` of ``endpoint``'s reply, bounded as over HTTP (``BodyLimits.bounds``);
        /healthz's verdict is in its data, so ``statuses`` has nothing to select here."""
        return await read_within(self._limits.bounds(endpoint, params, expect),
                                 lambda limit: self._data(endpoint, params, limit))

    async def _data(self, endpoint: str, params: Mapping[str, str | int] | None,
                    limit: int) -> bytearray:
        return (await self._read(endpoint, params, limit))[0]

    @property
    def limits(self) -> BodyLimits:
        """The size limits of its replies (a paged listing holds no more across its pages)."""
        return self._limits

    @property
    def reply_budget(self) -> int | None:
        """The most bytes a reply may take on the wire: the account's ``max_payload``, less
        ``HEADERS_ROOM``; None before it is known."""
        fits = self.account.max_payload
        return None if fits is None else max(fits - HEADERS_ROOM, 1)

    async def get_sized(self, endpoint: str, params: Mapping[str, str | int] | None = None, *,
                        expect: Mapping[str, int] | None = None) -> tuple[bytearray, int]:
        """``get``, and the size of the reply on the wire, envelope included: what
        ``reply_budget`` bounds (the /jsz pager reads it). For ``accstatz`` only, it is the
        size of the inflated reply, not the wire's: that reply comes from a ping that keeps
        a reply only once inflated, to see which server sent it."""
        return await read_within(self._limits.bounds(endpoint, params, expect),
                                 lambda limit: self._read(endpoint, params, limit))

    async def get_pages(self, endpoint: str,
                        params: Mapping[str, str | int] | None = None) -> list[bytearray]:
        """``get``, as the list of pages that a CONNZ listing takes when its reply would not fit
        the account's ``max_payload``; any other read is one page.

        The expected reply is the connections asked for (``limit``, nats-server's 1024 when
        absent) times the bytes each took on the wire in the last read of that state, or
        ``FIRST_ESTIMATE`` before any. Each page asks for what fits, with room for the
        envelope and a margin (``PAGE_FILL``).

        nats-server sorts the whole list and then cuts a page at ``offset``, so the list may
        shift between two pages. A connection that opens is listed at the end (by cid) or at
        the start (closed, by stop time), which shifts the rest towards later pages: a
        connection is read twice, and the aggregator counts a cid once. A connection that
        closes shifts the open connections after it towards earlier pages, where one could be
        skipped: so the pages of an open listing by cid overlap by ``OVERLAP`` connections,
        and a page that starts after the last cid of the page before is asked again from
        further back.
        """
        fits = self.account.max_payload
        plan = _paging(endpoint, params)
        if fits is None or plan is None:
            return [await self.get(endpoint, params)]
        state, by_cid, offset, asked = plan
        per = self._per_connection.get(state, FIRST_ESTIMATE)
        size = max(2, int(max(fits - REPLY_HEAD, 0) * PAGE_FILL / per))
        base = dict(params or {})
        pages: list[bytearray] = []
        wire = listed = 0

        async def read(at: int | None, count: int) -> tuple[bytearray, int]:
            nonlocal wire, listed
            page = params if at is None else {**base, "offset": at, "limit": count}
            data, sent = await self._read(endpoint, page,
                                          self._limits.for_request(endpoint, page))
            found = _head(data, _NUM_CONNECTIONS)
            wire += sent
            listed += found
            return data, found

        if asked <= size:
            data, _ = await read(None, asked)
            pages.append(data)
        else:
            overlap = min(OVERLAP, size // 4) if by_cid else 0
            at, end = offset, offset + asked
            while True:
                count = min(size, end - at)
                data, found = await read(at, count)
                if pages and overlap:
                    back, last = overlap, _last_cid(pages[-1])
                    for _ in range(GAP_RETRIES):
                        first = _first_cid(data) if found else None
                        if last is None or (first is not None and first <= last) or at == 0:
                            break
                        # More connections closed before ``at`` than the pages overlap.
                        back *= 4
                        at = max(at - back, 0)
                        count = min(size, end - at)
                        data, found = await read(at, count)
                pages.append(data)
                if found < count or at + found >= min(end, _head(data, _TOTAL)):
                    break
                at += found - overlap
        if listed:
            self._per_connection[state] = max(wire / listed, MIN_ESTIMATE)
        return pages

    async def _read(self, endpoint: str, params: Mapping[str, str | int] | None,
                    limit: int) -> tuple[bytearray, int]:
        """The ``data`` of ``endpoint``'s reply, inflated to no more than ``limit``, and the
        reply's size on the wire (the inflated size for ``accstatz``, see ``get_sized``)."""
        body = options_json(endpoint, params) or None
        try:
            if endpoint == "accstatz":
                reply = await self.account.account_statz(
                    self.server_id, await self._server_name(), body, timeout=self.timeout,
                    max_bytes=limit)
                sent = len(reply)
            else:
                reply, sent = await self.account.request_sized(
                    self.server_id, endpoint, body, timeout=self.timeout, max_bytes=limit)
        except ScrapeError as exc:
            if exc.reason == "connect" and "no responders" in exc.detail and \
                    await self._answers():
                raise ScrapeError(endpoint, "http_status", f"server {self.server_id} does not "
                                  f"serve {endpoint.upper()} over the system account",
                                  status=404) from None
            raise
        data = await asyncio.to_thread(reply_data, endpoint, reply) \
            if len(reply) > _OFF_LOOP else reply_data(endpoint, reply)
        return data, sent

    async def _server_name(self) -> str:
        if self._name is None:
            reply = await self.account.request(self.server_id, "IDZ", None,
                                               timeout=self.timeout, compress=False)
            try:
                name = orjson.loads(reply).get("name")
            except (orjson.JSONDecodeError, AttributeError):
                name = None
            if not isinstance(name, str):
                raise ScrapeError("accstatz", "decode", "IDZ reply names no server")
            self._name = name
        return self._name

    async def _answers(self) -> bool:
        """Whether the server is there (answers IDZ), when it did not answer an endpoint."""
        try:
            await self.account.request(self.server_id, "IDZ", None, timeout=self.timeout,
                                       compress=False)
        except ScrapeError:
            return False
        return True


#: Replies larger than this are cut out of their envelope off the event loop.
_OFF_LOOP = 1 << 20

#: Bytes per connection expected on the wire before a read measured them: about a compact
#: JSON entry, which a compressed reply takes several times less of.
FIRST_ESTIMATE = 400.0
#: The least bytes per connection a measure is taken for, lest a page grow without bound.
MIN_ESTIMATE = 16.0
#: Room for the reply envelope and the listing's head, besides the connections.
REPLY_HEAD = 2048
#: Room for a reply's NATS headers, which count towards ``max_payload`` with its payload
#: (``Content-Encoding: snappy`` takes 42 bytes).
HEADERS_ROOM = 128
#: The share of ``max_payload`` a page is sized for: entries vary in size from page to page.
PAGE_FILL = 0.75
#: Connections each page of an open listing reads again of the page before.
OVERLAP = 8
#: How many times a page that starts past the page before is asked again from further back;
#: the aggregator waits a few refreshes before it counts a connection missing from a read.
GAP_RETRIES = 3
#: nats-server's CONNZ limit when a request names none.
_DEFAULT_LIMIT = 1024

_NUM_CONNECTIONS = re.compile(rb'"num_connections":(\d+)')
_TOTAL = re.compile(rb'"total":(\d+)')
# nats-server writes ``cid`` first in each connection; a subscription's cid comes later in its
# object, and a string cannot hold '"cid":' unescaped.
_CID = re.compile(rb'\{"cid":(\d+)')
_CONNECTIONS = b'"connections":['


def _paging(endpoint: str, params: Mapping[str, str | int] | None
            ) -> tuple[int, bool, int, int] | None:
    """For a CONNZ listing that may be paged: its state, whether it is sorted by cid, its
    offset and how many connections it asks for; None for any other read."""
    if endpoint != "connz" or params is None or "cid" in params:
        return None
    options = options_json(endpoint, params)
    state = options.get("state", 0)
    sort = options.get("sort", "cid")
    return (state, sort == "cid" and state == 0, options.get("offset", 0),
            options.get("limit") or _DEFAULT_LIMIT)


def _head(data: bytes | bytearray, pattern: re.Pattern[bytes]) -> int:
    """A count from the head of a listing, before its connections."""
    match = pattern.search(data, 0, data.find(_CONNECTIONS) if _CONNECTIONS in data else 4096)
    if match is None:
        raise ScrapeError("connz", "decode", f"a CONNZ page without "
                          f"{pattern.pattern[1:pattern.pattern.index(b':') - 1].decode()}")
    return int(match[1])


def _first_cid(data: bytes | bytearray) -> int | None:
    match = _CID.search(data, max(data.find(_CONNECTIONS), 0))
    return int(match[1]) if match else None


def _last_cid(data: bytes | bytearray) -> int | None:
    at = data.rfind(b'{"cid":')
    match = _CID.match(data, at) if at >= 0 else None
    return int(match[1]) if match else None
