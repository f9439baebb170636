"""What one CONNZ refresh costs nats-server and the exporter: through the system account (fleet
mode, compressed and not) against HTTP /connz, side by side on one server.

    python bench/fleet.py --json                      # 15,000 connections
    python bench/fleet.py --connections 5000 --runs 3 --batch 5

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
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


def server_cpu(pid: int) -> float:
    """nats-server's CPU seconds so far, user and system."""
    # The command name in field 2 is in parentheses and may hold spaces: split after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- worker process: one contender, one batch ---------------------------------------------------

class Http:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.params = {"state": "open", "limit": with_margin(args.connections + 1),
                       "auth": "true", "subs": "false"}
        self.wire = 0

    async def __aenter__(self) -> Http:
        self.stack = contextlib.AsyncExitStack()
        session = await self.stack.enter_async_context(new_session())
        self.client = MonitorClient(self.args.monitor_url, session, self.args.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def fetch(self) -> bytes | bytearray:
        body = await self.client.get("connz", self.params)
        self.wire = len(body)
        return body


class Fleet:
    def __init__(self, args: argparse.Namespace, compressed: bool) -> None:
        self.args = args
        self.compressed = compressed
        self.options = {"state": 0, "limit": with_margin(args.connections + 1), "auth": True,
                        "subscriptions": False}
        self.wire = 0

    async def __aenter__(self) -> Fleet:
        inflate = system.inflate

        def counted(endpoint, coding, data, max_bytes):
            # What came over the wire, before the source inflates it.
            self.wire = len(data)
            return inflate(endpoint, coding, data, max_bytes)

        system.inflate = counted
        self.account = system.SystemAccount(system.NatsOptions(
            urls=(self.args.nats_url,), user="sys", password="sys", name="fastnats-bench"))
        await self.account.connect(timeout=self.args.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.account.close()

    async def fetch(self) -> bytes | bytearray:
        reply = await self.account.request(self.args.server_id, "CONNZ", self.options,
                                           timeout=self.args.timeout,
                                           compress=self.compressed)
        return system.reply_data("CONNZ", reply)


async def batch(args: argparse.Namespace) -> dict:
    contender = Http(args) if args.worker == "http" else Fleet(
        args, args.worker == "fleet_compressed")
    aggregator = impl.ConnzAggregator()
    clock = 0.0
    async with contender:
        async def refresh() -> int:
            nonlocal clock
            body = await contender.fetch()
            clock += 15.0
            aggregator.update(body, None, clock)
            return len(body)

        for _ in range(args.warmup):
            await refresh()
        times = []
        cpu, server = own_cpu(), server_cpu(args.server_pid)
        for _ in range(args.batch):
            start = time.perf_counter()
            decoded = await refresh()
            times.append(time.perf_counter() - start)
        cpu, server = own_cpu() - cpu, server_cpu(args.server_pid) - server
    if not contender.wire:
        raise RuntimeError("no reply size was recorded: has system.inflate moved?")
    return {"refresh_seconds": statistics.median(times),
            "exporter_cpu_seconds": cpu / args.batch,
            "server_cpu_seconds": server / args.batch,
            "wire_bytes": contender.wire, "decoded_bytes": decoded,
            "connections_seen": aggregator.count}


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


def measure(args: argparse.Namespace, deadline: Deadline) -> dict:
    with tempfile.TemporaryDirectory(prefix="fastnats-bench-fleet-") as tmp:
        conf = Path(tmp) / "nats-server.conf"
        conf.write_text(CONF)
        server = start_nats("-c", str(conf))
        try:
            say(f"{args.connections} client connections")
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
                          "--connections", str(args.connections), "--batch", str(args.batch),
                          "--warmup", str(args.warmup), "--timeout", str(args.timeout)]
                batches: dict[str, list[dict]] = {name: [] for name in args.contenders}
                load = os.getloadavg()[0]
                for run in range(args.runs):
                    for name in args.contenders:
                        say(f"run {run + 1}/{args.runs}: {name}")
                        batches[name].append(run_worker(["--worker", name, *common], deadline))
            finally:
                crowd.close()
        finally:
            server.stop()
    results = {name: median_report(rows) for name, rows in batches.items()}
    report = {"connections": args.connections, "runs": args.runs, "batch": args.batch,
              "warmup": args.warmup, "nproc": os.cpu_count(), "loadavg_1m": load,
              "nats_server": varz["version"], "server_idle_cpu_per_second": idle,
              "results": results, "batches": batches}
    if "http" in results:
        base = results["http"]
        report["ratios"] = {
            f"{name}/http": {k: round(results[name][k] / base[k], 3) for k in (
                "server_cpu_seconds", "exporter_cpu_seconds", "refresh_seconds", "wire_bytes")
                if base[k]}
            for name in results if name != "http"}
        if "fleet_compressed" in results:
            ratio = report["ratios"]["fleet_compressed/http"].get("server_cpu_seconds")
            report["goal"] = {"fleet_compressed/http server CPU at most": 0.6,
                              "measured": ratio, "met": ratio is not None and ratio <= 0.6}
    return report


def contenders(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = set(names) - set(CONTENDERS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"contenders are {', '.join(CONTENDERS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=15_000)
    parser.add_argument("--contenders", type=contenders, default=CONTENDERS,
                        help=f"comma-separated, of {','.join(CONTENDERS)}")
    parser.add_argument("--runs", type=int, default=7, help="worker processes per contender")
    parser.add_argument("--batch", type=int, default=10, help="timed refreshes per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed refreshes per worker")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds of quiet to measure nats-server's idle CPU")
    parser.add_argument("--per-helper", type=int, default=5000, help="sockets per helper")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds in all")
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
