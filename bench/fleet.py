"""What one CONNZ refresh costs nats-server and the exporter: through the system account (fleet
mode, compressed and not) against HTTP /connz, side by side on one server.

    python bench/fleet.py --json                      # 15,000 connections
    python bench/fleet.py --connections 5000 --runs 3 --batch 5
    python bench/fleet.py --variants --profile --runs 9 --json   # every request variant

prints one JSON object. A real nats-server runs on random loopback ports from a conf written here:
account SYS (user sys/sys) is its ``system_account``, account APP (user app/app) is the
``no_auth_user`` default, so the N client connections, held by helper processes as in
bench/e2e.py (named, a quarter subscribed, a fifth published once), all land in APP without
credentials on their CONNECT lines.

Three contenders, each refreshing the same listing of every open connection:

- ``http``: the request ConnzCollector makes over HTTP (``/connz?state=open&limit=L&auth=true
  &subs=false``, L covering every connection) with the exporter's ``MonitorClient``; nats-server
  never compresses, so the bytes transferred are the body;
- ``fleet_compressed``: the system-account request for the same listing
  (``$SYS.REQ.SERVER.<id>.CONNZ`` with ``{"state": 0, "limit": L, "auth": true,
  "subscriptions": false}``) with fleet mode's own ``SystemAccount.request``, which asks for a
  compressed reply (``Accept-Encoding: snappy``) and inflates it; the bytes transferred are the
  compressed payload, as the source's ``inflate`` receives it;
- ``fleet_plain``: the same request with ``compress=False``: no ``Accept-Encoding`` header, so
  the reply comes uncompressed (fleet mode asks for compression; this shows what it buys and
  costs).

A refresh is the request up to the decoded bytes (for the fleet, the ``data`` member of the
reply), then ``ConnzAggregator.update`` on them, the core aggregator ConnzCollector runs. Each
contender runs in fresh worker processes, taken in turns with the others, ``--runs`` of each;
a worker connects, makes ``--warmup`` refreshes (the first reads every connection for the first
time), then times a batch of ``--batch`` refreshes. Per batch it reports:

- ``refresh_seconds``: the median refresh of the batch;
- ``exporter_cpu_seconds``: the worker's own CPU (``getrusage``, user + system) per refresh;
- ``server_cpu_seconds``: nats-server's CPU per refresh, from ``/proc/<pid>/stat`` (utime +
  stime) before and after the batch, divided by its length;
- ``wire_bytes``: what one reply put on the wire (see above), and ``decoded_bytes``: the
  document the aggregator read.

The report gives the median over the workers of each contender, and ``ratios`` of the fleet's
to HTTP's. nats-server's idle CPU (``server_idle_cpu_per_second``: the helpers answer its PINGs)
is measured over a quiet interval and not subtracted.

``--variants`` measures every request in ``VARIANTS`` the same way on one server (the three
contenders above among them): compression none, snappy or gzip (the fleet worker then asks
with ``Accept-Encoding: gzip``); ``auth`` false (not usable by the exporter, which needs the
account names, but it shows the cost of those fields); ``limit`` exact instead of with margin;
another ``sort``; the listing in four pages (``offset``/``limit``). Each worker checks that the
reply came in the coding it asked for. Then, for each of ``ENVIRONMENTS`` (nats-server's GOGC,
GOMAXPROCS), a fresh server and clients measure the three contenders again: reported, not
something to rely on. ``goal.best_usable_fleet_variant`` is the lowest ratio among the fleet
variants the exporter can use.

``--profile`` (with ``--variants``) then records nats-server with ``perf record -g`` (frame
pointers; Go keeps them) while one worker of each profiled contender makes its refreshes, and
reports ``perf report --children`` by bucket (``PROFILE_BUCKETS``: a function's inclusive
share; ``PROFILE_SELF_PREFIXES``: self time of every symbol under a package prefix) in ms per
refresh: the share times nats-server's CPU per refresh over the recording (which perf inflates
by a few percent). ``FLEET_PERF_DIR`` keeps the recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import checkout  # noqa: F401  (tests.support within reach)
from e2e import Deadline, hold_clients, timed_get

from fastnats._impl import impl
from fastnats.collectors.base import with_margin
from fastnats.sources import system
from fastnats.sources.monitor import MonitorClient, new_session
from tests.support.process import start_nats

CONTENDERS = ("http", "fleet_compressed", "fleet_plain")
CONF = """\
accounts {
  SYS { users = [{user: sys, password: sys}] }
  APP { users = [{user: app, password: app}] }
}
system_account: SYS
no_auth_user: app
"""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    """One way to ask for the listing of every open connection.

    ``path`` is ``http`` or ``fleet``; ``coding`` the Accept-Encoding the fleet request sends
    (``None``: no header, an uncompressed reply); ``auth`` the request's auth flag (the exporter
    needs it: account names); ``limit`` ``margin`` (the exporter's ``with_margin``) or ``exact``
    (connections + 1); ``pages`` how many requests (``offset``/``limit``) cover the listing;
    ``sort`` the request's sort option (``None``: not sent, the server sorts by cid).
    """
    path: str
    coding: str | None = None
    auth: bool = True
    limit: str = "margin"
    pages: int = 1
    sort: str | None = None
    usable: bool = True  # gives the exporter everything it needs

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items()}


VARIANTS = {
    "http": Variant("http"),
    "http_noauth": Variant("http", auth=False, usable=False),
    "http_limit_exact": Variant("http", limit="exact"),
    "fleet_compressed": Variant("fleet", coding="snappy"),
    "fleet_plain": Variant("fleet"),
    "fleet_gzip": Variant("fleet", coding="gzip"),
    "fleet_compressed_noauth": Variant("fleet", coding="snappy", auth=False, usable=False),
    "fleet_plain_noauth": Variant("fleet", auth=False, usable=False),
    "fleet_compressed_limit_exact": Variant("fleet", coding="snappy", limit="exact"),
    "fleet_plain_limit_exact": Variant("fleet", limit="exact"),
    "fleet_compressed_sort_rtt": Variant("fleet", coding="snappy", sort="rtt"),
    "fleet_compressed_pages4": Variant("fleet", coding="snappy", pages=4),
}
#: nats-server environments the three contenders are measured under, each on a fresh server.
ENVIRONMENTS = {"GOGC=400": {"GOGC": "400"}, "GOMAXPROCS=1": {"GOMAXPROCS": "1"}}
#: Symbols whose inclusive share of nats-server's CPU the profile reports (perf, frame
#: pointers), by bucket: the largest share among a bucket's symbols is used.
PROFILE_BUCKETS = {
    "connz_build (Server.Connz: gather, fill, sort)": ["server.(*Server).Connz"],
    "  of which ConnInfo.fill": ["server.(*ConnInfo).fill"],
    "  of which sort": ["sort.Sort"],
    "json_marshal (encoding/json/v2.Marshal)": ["encoding/json/v2.Marshal"],
    "  of which time fields": ["encoding/json/v2.makeTimeArshaler.func3"],
    "json_indent (encoding/json.appendIndent, HTTP only)": ["encoding/json.appendIndent"],
    "deliver (client.processInboundClientMsg)": ["server.(*client).processInboundClientMsg"],
    "socket writes (internal/poll.(*FD).Write)": ["internal/poll.(*FD).Write"],
    "http serve (net/http.(*conn).serve)": ["net/http.(*conn).serve"],
    "system receive loop (Server.internalReceiveLoop)": ["server.(*Server).internalReceiveLoop"],
    "system send loop (Server.internalSendLoop)": ["server.(*Server).internalSendLoop"],
    "gc background (runtime.gcBgMarkWorker)": ["runtime.gcBgMarkWorker"],
}
#: Self time summed over every symbol starting with a prefix: s2 and flate encode blocks in
#: goroutines of their own, outside the send loop's stack.
PROFILE_SELF_PREFIXES = {
    "snappy (github.com/klauspost/compress/s2.*)": "github.com/klauspost/compress/s2.",
    "gzip (compress/flate.*)": "compress/flate.",
    "checksums (hash/crc32.*: CRC32C of snappy frames, CRC32 of gzip)": "hash/crc32.",
    "encoding/json (all)": "encoding/json",
    "runtime (all: GC, allocation, scheduler)": "runtime.",
}


def server_cpu(pid: int) -> float:
    """nats-server's CPU seconds so far, user and system."""
    # The command name in field 2 is in parentheses and may hold spaces: split after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- worker process: one contender, one batch ---------------------------------------------------

def listing_limit(args: argparse.Namespace, variant: Variant) -> int:
    """The ``limit`` covering every connection (the clients and the requester's own)."""
    n = args.connections + 1
    return with_margin(n) if variant.limit == "margin" else n


def pages(args: argparse.Namespace, variant: Variant) -> list[tuple[int, int]]:
    """(offset, limit) of each request of one refresh; the last page keeps the margin."""
    total = listing_limit(args, variant)
    if variant.pages == 1:
        return [(0, total)]
    size = -(-(args.connections + 1) // variant.pages)
    out = [(i * size, size) for i in range(variant.pages)]
    out[-1] = (out[-1][0], total - out[-1][0])
    return out


class Http:
    def __init__(self, args: argparse.Namespace, variant: Variant) -> None:
        self.args = args
        self.requests = []
        for offset, limit in pages(args, variant):
            params = {"state": "open", "limit": limit,
                      "auth": "true" if variant.auth else "false", "subs": "false"}
            if offset:
                params["offset"] = offset
            if variant.sort:
                params["sort"] = variant.sort
            self.requests.append(params)
        self.wire = 0
        self.codings: set[str] = {"identity"}

    async def __aenter__(self) -> Http:
        self.stack = contextlib.AsyncExitStack()
        session = await self.stack.enter_async_context(new_session())
        self.client = MonitorClient(self.args.monitor_url, session, self.args.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def fetch(self) -> list[bytes | bytearray]:
        bodies = [await self.client.get("connz", params) for params in self.requests]
        self.wire = sum(len(b) for b in bodies)
        return bodies


class Fleet:
    def __init__(self, args: argparse.Namespace, variant: Variant) -> None:
        self.args = args
        self.variant = variant
        self.requests = []
        for offset, limit in pages(args, variant):
            options = {"state": 0, "limit": limit, "auth": variant.auth,
                       "subscriptions": False}
            if offset:
                options["offset"] = offset
            if variant.sort:
                options["sort"] = variant.sort
            self.requests.append(options)
        self.wire = 0
        self.codings: set[str] = set()

    async def __aenter__(self) -> Fleet:
        inflate = system.inflate

        def counted(endpoint, coding, data, max_bytes):
            # What came over the wire, before the source inflates it.
            self.wire += len(data)
            self.codings.add(coding)
            return inflate(endpoint, coding, data, max_bytes)

        system.inflate = counted
        if self.variant.coding not in (None, "snappy"):
            # SystemAccount asks for snappy; this worker process asks for another coding.
            system._ACCEPT = {"Accept-Encoding": self.variant.coding}
        self.account = system.SystemAccount(system.NatsOptions(
            urls=(self.args.nats_url,), user="sys", password="sys", name="fastnats-bench"))
        await self.account.connect(timeout=self.args.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.account.close()

    async def fetch(self) -> list[bytes | bytearray]:
        self.wire = 0
        bodies = []
        for options in self.requests:
            reply = await self.account.request(self.args.server_id, "CONNZ", options,
                                               timeout=self.args.timeout,
                                               compress=self.variant.coding is not None)
            bodies.append(system.reply_data("CONNZ", reply))
        return bodies


async def batch(args: argparse.Namespace) -> dict:
    variant = VARIANTS[args.worker]
    contender = (Http if variant.path == "http" else Fleet)(args, variant)
    aggregator = impl.ConnzAggregator()
    clock = 0.0
    async with contender:
        async def refresh() -> tuple[int, int]:
            nonlocal clock
            decoded = seen = 0
            # A paged refresh hands the aggregator each page: its exporter CPU is only rough.
            for body in await contender.fetch():
                clock += 15.0
                aggregator.update(body, None, clock)
                decoded += len(body)
                seen += aggregator.count
            return decoded, seen

        for _ in range(args.warmup):
            await refresh()
        times = []
        cpu, server = own_cpu(), server_cpu(args.server_pid)
        for _ in range(args.batch):
            start = time.perf_counter()
            decoded, seen = await refresh()
            times.append(time.perf_counter() - start)
        cpu, server = own_cpu() - cpu, server_cpu(args.server_pid) - server
    if not contender.wire:
        raise RuntimeError("no reply size was recorded: has system.inflate moved?")
    expected = {variant.coding or "identity"}
    if contender.codings != expected:
        raise RuntimeError(f"asked for {expected}, the server answered {contender.codings}")
    return {"refresh_seconds": statistics.median(times),
            "exporter_cpu_seconds": cpu / args.batch,
            "server_cpu_seconds": server / args.batch,
            "wire_bytes": contender.wire, "decoded_bytes": decoded,
            "connections_seen": seen}


# --- the driver ---------------------------------------------------------------------------------

def run_worker(args: list[str], deadline: Deadline) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         timeout=deadline.left(600))
    if out.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def settle(pid: int, deadline: Deadline, quiet: float = 0.02) -> None:
    """Wait until nats-server spends under ``quiet`` of a core: for a few seconds after the
    clients connect it is busy (its heap grows and is collected), which no refresh should pay."""
    end = time.monotonic() + deadline.left(60)
    before = server_cpu(pid)
    while time.monotonic() < end:
        time.sleep(1.0)
        now = server_cpu(pid)
        if now - before < quiet:
            return
        before = now
    raise RuntimeError("nats-server stayed busy after its clients connected")


def say(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def median_report(batches: list[dict]) -> dict:
    keys = ("refresh_seconds", "exporter_cpu_seconds", "server_cpu_seconds")
    out = {k: statistics.median(b[k] for b in batches) for k in keys}
    out.update(wire_bytes=statistics.median(b["wire_bytes"] for b in batches),
               decoded_bytes=statistics.median(b["decoded_bytes"] for b in batches),
               connections_seen=min(b["connections_seen"] for b in batches))
    return out


def profile(common: list[str], pid: int, name: str, batch: int, warmup: int, tmp: str,
            deadline: Deadline) -> dict:
    """nats-server's CPU for one contender, by where it goes: ``perf record -g`` (frame
    pointers) on the server while one worker makes ``warmup + batch`` refreshes; each bucket's
    inclusive share of the samples times the server's CPU per refresh over the recording."""
    data = str(Path(PERF_DIR or tmp) / f"perf-{name}.data")
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # perf attaches to every thread
    before = server_cpu(pid)
    args = [*common, "--worker", name, "--batch", str(batch), "--warmup", str(warmup)]
    run_worker(args, deadline)
    cpu = server_cpu(pid) - before
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=deadline.left(60))
    return read_profile(data, cpu / (batch + warmup), batch + warmup, deadline)


def read_profile(data: str, per_refresh: float, refreshes: int, deadline: Deadline) -> dict:
    """A perf recording's buckets in ms per refresh, from nats-server's CPU per refresh."""
    out = subprocess.run(["perf", "report", "-i", data, "--children", "--stdio", "-g", "none",
                          "--sort", "sym", "--percent-limit", "0"],
                         capture_output=True, text=True, timeout=deadline.left(180))
    rows = []
    for line in out.stdout.splitlines():
        match = PERF_LINE.match(line)
        if match:
            rows.append((float(match[1]), float(match[2]), match[3], match[4]))
    if not rows:
        raise RuntimeError(f"perf report gave nothing:\n{out.stderr[-2000:]}")

    def ms(percent: float) -> float:
        return round(percent / 100 * per_refresh * 1000, 2)

    buckets = {}
    for bucket, symbols in PROFILE_BUCKETS.items():
        shares = [children for symbol in symbols
                  for children, _, _, sym in rows if sym.endswith(symbol)]
        if shares:
            buckets[bucket] = ms(max(shares))
    selfs = {bucket: ms(sum(self_ for _, self_, kind, sym in rows
                            if kind != "k" and sym.startswith(prefix)))
             for bucket, prefix in PROFILE_SELF_PREFIXES.items()}
    selfs["kernel (all [k] symbols)"] = ms(sum(r[1] for r in rows if r[2] == "k"))
    top_self = sorted(rows, key=lambda r: -r[1])[:15]
    return {"server_cpu_ms_per_refresh": round(per_refresh * 1000, 2),
            "refreshes": refreshes,
            "ms_per_refresh_inclusive": buckets,
            "ms_per_refresh_self": selfs,
            "top_self_ms_per_refresh": {f"[{kind}] {sym}": ms(self_)
                                        for _, self_, kind, sym in top_self}}


#: Where the perf recordings are kept (``FLEET_PERF_DIR``), else they go with the run.
PERF_DIR = os.environ.get("FLEET_PERF_DIR")
PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.+?)\s*$")


@contextlib.contextmanager
def environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def session(args: argparse.Namespace, deadline: Deadline, names: tuple[str, ...],
            env: dict[str, str], profiled: tuple[str, ...] = ()) -> dict:
    """A fresh nats-server (``env`` added to its environment) with its client connections;
    ``args.runs`` workers of each contender in turns, then a profile of each of ``profiled``."""
    with tempfile.TemporaryDirectory(prefix="fastnats-bench-fleet-") as tmp:
        conf = Path(tmp) / "nats-server.conf"
        conf.write_text(CONF)
        with environment(env):
            server = start_nats("-c", str(conf))
        try:
            say(f"{args.connections} client connections ({env or 'default environment'})")
            crowd = hold_clients(server.client_port, args.connections, args.per_helper,
                                 deadline.left(300))
            try:
                varz = json.loads(timed_get(server.ports["http"], "/varz", 30)[1])
                if varz["connections"] != args.connections:
                    raise RuntimeError(f"nats-server reports {varz['connections']} connections, "
                                       f"expected {args.connections}")
                pid = server.process.pid
                settle(pid, deadline)
                idle_before, idle_start = server_cpu(pid), time.monotonic()
                time.sleep(args.idle)
                idle = (server_cpu(pid) - idle_before) / (time.monotonic() - idle_start)
                common = ["--monitor-url", server.monitor_url,
                          "--nats-url", f"nats://127.0.0.1:{server.client_port}",
                          "--server-id", varz["server_id"], "--server-pid", str(pid),
                          "--connections", str(args.connections), "--timeout", str(args.timeout)]
                batches: dict[str, list[dict]] = {name: [] for name in names}
                load = os.getloadavg()[0]
                for run in range(args.runs):
                    for name in names:
                        say(f"run {run + 1}/{args.runs}: {name}")
                        batches[name].append(run_worker(
                            ["--worker", name, *common, "--batch", str(args.batch),
                             "--warmup", str(args.warmup)], deadline))
                profiles = {}
                for name in profiled:
                    say(f"profile: {name}")
                    profiles[name] = profile(common, pid, name, 3 * args.batch, args.warmup,
                                             tmp, deadline)
            finally:
                crowd.close()
        finally:
            server.stop()
    results = {name: median_report(rows) for name, rows in batches.items()}
    out = {"environment": env, "nats_server": varz["version"], "loadavg_1m": load,
           "server_idle_cpu_per_second": idle, "results": results,
           "ratios": ratios(results), "batches": batches}
    if profiles:
        out["profile"] = profiles
    return out


def ratios(results: dict) -> dict:
    if "http" not in results:
        return {}
    base = results["http"]
    return {f"{name}/http": {k: round(results[name][k] / base[k], 3) for k in (
        "server_cpu_seconds", "exporter_cpu_seconds", "refresh_seconds", "wire_bytes")
        if base[k]}
        for name in results if name != "http"}


def measure(args: argparse.Namespace, deadline: Deadline) -> dict:
    names = tuple(VARIANTS) if args.variants else args.contenders
    profiled = (("http", "fleet_compressed", "fleet_plain", "fleet_gzip")
                if args.variants and args.profile else ())
    main_session = session(args, deadline, names, {}, profiled)
    report = {"connections": args.connections, "runs": args.runs, "batch": args.batch,
              "warmup": args.warmup, "nproc": os.cpu_count(),
              "loadavg_1m": main_session["loadavg_1m"],
              "nats_server": main_session["nats_server"],
              "server_idle_cpu_per_second": main_session["server_idle_cpu_per_second"],
              "results": main_session["results"], "batches": main_session["batches"],
              "ratios": main_session["ratios"]}
    if "fleet_compressed" in report["results"] and "http" in report["results"]:
        ratio = report["ratios"]["fleet_compressed/http"].get("server_cpu_seconds")
        report["goal"] = {"fleet_compressed/http server CPU at most": 0.6,
                          "measured": ratio, "met": ratio is not None and ratio <= 0.6}
    if args.variants:
        report["variants"] = {name: VARIANTS[name].describe() for name in names}
        usable = {name: report["ratios"][f"{name}/http"].get("server_cpu_seconds")
                  for name in names if name != "http" and VARIANTS[name].path == "fleet"
                  and VARIANTS[name].usable}
        usable = {k: v for k, v in usable.items() if v is not None}
        if usable and "goal" in report:
            best = min(usable, key=usable.get)
            report["goal"]["best_usable_fleet_variant"] = {"name": best, "ratio": usable[best],
                                                           "met": usable[best] <= 0.6}
        if profiled:
            report["profile"] = main_session["profile"]
        report["environments"] = {}
        for label, env in ENVIRONMENTS.items():
            run = session(args, deadline, ("http", "fleet_compressed", "fleet_plain"), env)
            run.pop("batches")
            report["environments"][label] = run
    return report


def contenders(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = set(names) - set(VARIANTS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"contenders are {', '.join(VARIANTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=15_000)
    parser.add_argument("--contenders", type=contenders, default=CONTENDERS,
                        help=f"comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("--runs", type=int, default=7, help="worker processes per contender")
    parser.add_argument("--batch", type=int, default=10, help="timed refreshes per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed refreshes per worker")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds of quiet to measure nats-server's idle CPU")
    parser.add_argument("--per-helper", type=int, default=5000, help="sockets per helper")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds in all")
    parser.add_argument("--variants", action="store_true",
                        help="every request variant (VARIANTS) on one server, then the three "
                             "contenders under each nats-server environment (ENVIRONMENTS)")
    parser.add_argument("--profile", action="store_true",
                        help="with --variants: where nats-server's CPU goes (perf record)")
    parser.add_argument("--json", action="store_true", help="print one compact JSON object")
    for hidden in ("--worker", "--monitor-url", "--nats-url", "--server-id"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(batch(args))))
        return 0
    if not 1 <= args.connections <= 19_000:
        parser.error("--connections must be between 1 and 19000: every process here may hold "
                     "20,000 open files, nats-server included")
    if args.runs < 1 or args.batch < 1 or args.warmup < 1:
        parser.error("--runs, --batch and --warmup must be at least 1")
    report = measure(args, Deadline(args.deadline))
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("FASTNATS_NO_EXTENSIONS", None)
    sys.exit(main())
