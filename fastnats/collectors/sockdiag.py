"""The wire byte collector: bytes on the wire per NATS listener, from the kernel's counters of the
server's accepted TCP sockets (NETLINK_SOCK_DIAG), for a server that runs on this host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from .. import metrics as m
from .._impl import impl
from ..errors import ScrapeError, WireProtocolError
from ..flags import positive_seconds
from ..sources.sockdiag import SockDiag, is_local_host
from .base import Collector, Samples, ServerContext, ServerInfo, Source

log = logging.getLogger("fastnats.scrape")

NETLINK = "netlink"
#: Destroy events the kernel dropped because the exporter's socket buffer was full; those
#: connections count up to their last poll only.
EVENTS_LOST = "events_lost"
#: ``nats_wire_mode_info`` of a server whose counter does not run.
OFF = "off"
#: Most refreshes between two tries to start a counter that could not start for a reason that
#: can pass. nats-server serves /varz before its client port listens (JetStream recovery runs in
#: between and can take minutes), so a sidecar that starts with it finds no listener at first.
RETRY_CAP = 32


@dataclass(frozen=True, slots=True)
class _Off:
    """Why the counter cannot start now."""

    why: str
    #: It can pass (no listener yet, a failed netlink call): try again at a later refresh.
    retry: bool
    #: A netlink call failed: counted as a ``netlink`` error.
    failed: bool = False


@dataclass(frozen=True, slots=True)
class WireOptions:
    #: None: on when the server's listeners are visible here; True: insist (a failure to start
    #: is logged as an error).
    force: bool | None = None
    #: Seconds between polls; below the refresh interval it adds polls between refreshes,
    #: which narrows what poll mode loses of a closing connection.
    interval: float = 5.0
    refresh_interval: float = 5.0


class SockdiagCollector(Collector):
    """Polls the kernel's counters of one local server's listening sockets.

    It polls right after each read of /varz, so wire bytes and payload bytes describe the same
    moment. The dump runs in a worker thread; the parse and the state update run on the event
    loop, so ``samples()`` never sees half an update.
    """

    name = "wire"
    endpoint = "wire"
    help = ("wire byte counter from kernel socket counters (nats_server_total_bytes_*, "
            "nats_wire_*); auto: on when the server's listening sockets are visible here")
    default = None
    families = (m.NATS_SERVER_TOTAL_BYTES_SENT, m.NATS_SERVER_TOTAL_BYTES_RECEIVED, *m.WIRE)
    reasons = (NETLINK, EVENTS_LOST)

    options: WireOptions

    def __init__(self, server: ServerContext, options: WireOptions | None = None) -> None:
        super().__init__(server, options or WireOptions())
        if self.options.interval < self.options.refresh_interval:
            self.poll_interval = self.options.interval
        self.counter: impl.WireCounter | None = None
        self._diag: SockDiag | None = None
        self._ports: Mapping[int, str] | None = None
        self._identity: tuple[str, str] | None = None
        self._events_lost = 0
        # A poll between refreshes and the one after /varz share one netlink socket: one dump
        # at a time, or their replies interleave.
        self._polling = asyncio.Lock()
        #: The off state was logged; the next start says the bytes are available now.
        self._said_off = False
        #: Refreshes of the same server to wait before the next try; None: never again.
        self._retry_in: int | None = None
        self._backoff = 0

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--wire.poll-interval", dest="wire_interval", type=positive_seconds,
            metavar="DURATION", help="time between wire counter polls (default: the refresh "
                                    "interval)")

    @classmethod
    def configure(cls, args: argparse.Namespace, refresh_interval: float) -> WireOptions:
        return WireOptions(args.collector_wire, args.wire_interval or refresh_interval,
                           refresh_interval)

    async def refresh(self, source: Source, info: ServerInfo) -> None:
        """Poll after each successful read of /varz; start first, or start afresh when the
        server restarted (its identity changed), since a new server counts from zero. A counter
        that could not start tries again after 1, 2, 4 ... up to ``RETRY_CAP`` refreshes while
        the reason can pass."""
        if info.identity == self._identity and info.listeners == self._ports:
            if self.counter is not None:
                await self.poll()
                return
            if self._retry_in is None:
                return
            self._retry_in -= 1
            if self._retry_in > 0:
                return
        else:
            await self.close()
            self._identity = info.identity
            self._ports = info.listeners
            self._backoff = 0
        off = await asyncio.to_thread(self._why_not, info.listeners)
        if off is not None:
            self._stay_off(off)
            return
        assert self._diag is not None
        self.counter = impl.WireCounter(info.listeners, self._diag.mode)
        log.info("wire byte counter on for %s%s: listeners %s, mode %s%s", self.server.name,
                 " (wire bytes available now)" if self._said_off else "",
                 ", ".join(f"{name}:{port}" for port, name in sorted(info.listeners.items())),
                 self._diag.mode,
                 f" ({self._diag.destroy_events_error})" if self._diag.destroy_events_error
                 else "")
        self._said_off = False
        await self.poll()

    def _stay_off(self, off: _Off) -> None:
        if off.failed:
            self.server.errors[(self.endpoint, NETLINK)] += 1
        if off.retry:
            self._backoff = min(max(1, 2 * self._backoff), RETRY_CAP)
            self._retry_in = self._backoff
        else:
            self._retry_in = None
        if not self._said_off:
            level = logging.ERROR if self.options.force else logging.INFO
            log.log(level, "wire byte counter off for %s: %s; nats_server_total_bytes_* are not "
                           "exported%s", self.server.name, off.why,
                    "; trying again at later refreshes" if off.retry else "")
            self._said_off = True

    def _why_not(self, ports: Mapping[int, str]) -> _Off | None:
        ok, reason = SockDiag.available()
        if not ok:
            return _Off(reason, retry=False)
        if not is_local_host(self.server.host):
            return _Off(f"{self.server.host} is not an address of this host", retry=False)
        try:
            diag = SockDiag(ports)
        except ValueError as exc:
            return _Off(f"sock_diag: {exc}", retry=False)
        except OSError as exc:
            return _Off(f"sock_diag: {exc}", retry=True, failed=True)
        client_ports = {port for port, name in ports.items() if name == "client"}
        try:
            visible = diag.listening_ports()
        except (OSError, WireProtocolError) as exc:
            diag.close()
            return _Off(f"sock_diag: {exc}", retry=True, failed=True)
        if not client_ports <= visible:
            diag.close()
            return _Off("the server's listening sockets are not visible in this network "
                        "namespace (yet)", retry=True)
        self._diag = diag
        self._events_lost = 0
        return None

    async def poll(self) -> None:
        async with self._polling:
            diag, counter = self._diag, self.counter
            if diag is None or counter is None:
                return      # stopped while this poll waited for the one before
            try:
                buffers = await asyncio.to_thread(diag.dump)
                counter.update(buffers)
            except (OSError, WireProtocolError) as exc:
                raise ScrapeError(self.endpoint, NETLINK, f"poll failed: {exc}") from None
            finally:
                lost, self._events_lost = diag.events_lost - self._events_lost, diag.events_lost
                if lost:
                    self.server.errors[(self.endpoint, EVENTS_LOST)] += lost
                    log.warning("wire byte counter of %s: the kernel dropped destroy events "
                                "%d time(s); those connections count up to their last poll",
                                self.server.name, lost)

    def samples(self) -> Samples:
        if self.counter is not None:
            # families() builds new lists each call, so widening their int samples is safe.
            return cast(Samples, self.counter.families())
        if self._identity is None:
            return {}
        # What an operator alerts on: the bytes are missing and this says why not.
        return {m.NATS_WIRE_MODE_INFO.name: [((OFF,), 1)]}

    # A server that fails a refresh (hung, stopped, slow) keeps its sockets and its counts:
    # the counter carries on when it answers again, and restarts only with a new identity.

    async def close(self) -> None:
        # Let a dump in its worker thread finish before the socket closes under it.
        async with self._polling:
            if self._diag is not None:
                self._diag.close()
                self._diag = None
            self.counter = None
            self._ports = None
            self._identity = None
