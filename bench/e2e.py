"""End-to-end cost of one exporter refresh at N connections: fetch, scan, render and peak RSS.

    python bench/e2e.py --json                                  # the defaults below
    python bench/e2e.py --connections 10000 --json              # one size
    python bench/e2e.py --sizes 10000,19000 --synthetic 50000,100000 --runs 5 --json

prints one JSON object. For each size in ``--sizes`` (default 10k and 19k) a real nats-server runs
on random loopback ports with N client connections held open by helper processes (each holds at
most ``--per-helper`` sockets and binds its own 127.0.0.x source address: every process here is
capped at 20,000 open files, nats-server included, which holds one per connection). Each client
sends CONNECT with one of N/50 names, a quarter of them subscribe, a fifth publish once, and all
answer the server's PINGs while they wait.

Against that server, each measured refresh runs in a fresh process (``--runs`` of them) that uses
the exporter's own objects: ``ServerCollector`` with a ``MonitorClient`` and ``ConnzCollector``
(default ``ConnzOptions``, wire counter off), then ``NatsCollector.families()`` and the
exposition's text writer and gzip. A process refreshes twice; the second refresh is the steady
state of a running exporter (every cid already known) and is the one reported, the first is kept
as ``first_refresh``. The refresh splits into:

- ``fetch``: the /varz GET plus the /connz GET(s), with the limit and fields that
  ConnzCollector asks for;
- ``scan_aggregate``: ``ConnzAggregator.update`` on the body (in its worker thread);
- ``snapshot``: ``ConnzAggregator.families()`` (in the synthetic runs, also the release of the
  previous snapshot, which the real runs count in ``refresh_other``);
- ``render``: ``NatsCollector.families()``, ``render_text`` and gzip, what the cache does after a
  refresh; ``total`` is ``ServerCollector.refresh`` (fetch, scan, snapshot and the thread hop)
  plus ``render``.

``peak_rss_mb`` is the process's VmHWM after both refreshes; workers make the allocator setting
fastnats-exporter makes at startup (``cli.return_freed_memory``). ``getrusage().ru_maxrss`` is
reported too (``ru_maxrss_mb``) but is not the figure to judge: Linux carries the parent's peak
into a child across fork and exec. The target is ``2 × body + 40 MB``. ``server_connz_seconds``
times the same /connz request made with http.client from this process, i.e. how long nats-server
needs to build and send the body; ``server_connz_page1024_seconds`` is the default first page (1,024
connections), all that the official exporter reads.

For each size in ``--synthetic`` (default 50k and 100k) there is no server: the body is the
recorded tests/data/connz_open.json with its connections cloned to N (``connzgen.scale_recorded``,
seeded; ``--generator simulated`` uses ``connzgen.synthetic_body`` instead), read from a file by a
fresh process that runs the same aggregator and render; there is no fetch. Unless ``--no-served``,
the same body is then also served by a loopback replay server (recorded /varz, this /connz) to
the same worker as in the real runs, so ``served`` gives the peak RSS with the exporter's own
fetch (its fetch time is only the transfer: nothing builds the body).

Everything is bounded: ``--deadline`` seconds in all, and each helper, worker and request has its
own timeout; helpers and nats-server are stopped in ``finally`` blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from checkout import ROOT

import fastnats
from fastnats import exposition
from fastnats.cli import return_freed_memory
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import ConnzCollector, ConnzOptions
from fastnats.collectors.base import with_margin
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support import connzgen
from tests.support.crowd import HeldCrowd
from tests.support.monitor import FakeMonitor
from tests.support.process import start_nats

FILE_CAP = 20_000
# nats-server also needs fds for its listeners, the monitor requests and its own files.
REAL_MAX = FILE_CAP - 500
RECORDED = ROOT / "tests" / "data" / "connz_open.json"
RECORDED_VARZ = ROOT / "tests" / "data" / "varz.json"


def hold_clients(port: int, n: int, per_helper: int, timeout: float) -> HeldCrowd:
    """``n`` client connections to ``port`` as the module docstring describes, spread over
    helper processes that each bind their own source address."""
    return HeldCrowd(port, n, "svc", groups=max(40, n // 50), varied=True,
                     per_helper=per_helper, own_sources=True, timeout=timeout)


# --- worker process: one exporter, two refreshes -------------------------------------------------

def memory() -> dict:
    hwm = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return {"peak_rss_mb": hwm, "ru_maxrss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024}


class TimedClient(MonitorClient):
    """The exporter's monitor client, noting the time and size of each GET."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gets: list[tuple[str, str, float, int]] = []

    async def get(self, endpoint, params=None):
        start = time.perf_counter()
        body = await super().get(endpoint, params)
        self.gets.append((endpoint, (params or {}).get("state", ""),
                          time.perf_counter() - start, len(body)))
        return body


class TimedAggregator:
    """Stands in for ConnzCollector's aggregator and times its update and families calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.update_seconds = 0.0
        self.families_seconds = 0.0

    def update(self, *args):
        start = time.perf_counter()
        try:
            return self.inner.update(*args)
        finally:
            self.update_seconds += time.perf_counter() - start

    def families(self):
        start = time.perf_counter()
        try:
            return self.inner.families()
        finally:
            self.families_seconds += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.inner, name)


def render_split(collector: NatsCollector) -> dict:
    start = time.perf_counter()
    families = collector.families()
    listed = time.perf_counter()
    text = exposition.render_text(families)
    rendered = time.perf_counter()
    gz = exposition.gzip_bytes(text)
    done = time.perf_counter()
    return {"render_families": listed - start, "render_text": rendered - listed,
            "gzip": done - rendered, "render": done - start,
            "text_bytes": len(text), "gzip_bytes": len(gz)}


def connz_of(server: ServerCollector) -> ConnzCollector:
    connz = server.collector("connz")
    assert isinstance(connz, ConnzCollector)
    return connz


def connections_seen(server: ServerCollector) -> int:
    return int(sum([v for _, v in connz_of(server).samples().get("nats_client_connections", ())]))


async def real_refreshes(url: str, refreshes: int, timeout: float) -> list[dict]:
    async with new_session() as session:
        client = TimedClient(url, session, timeout)
        server = ServerCollector(Target("bench", url), client, {"connz": ConnzOptions()})
        reader = connz_of(server)
        collector = NatsCollector([server])
        out = []
        for _ in range(refreshes):
            client.gets.clear()
            timed = TimedAggregator(reader.aggregator)
            reader.aggregator = timed  # type: ignore[assignment]
            await server.refresh()
            if not server.up or server.problems:
                raise RuntimeError(f"refresh failed: {server.problems}")
            connz = [g for g in client.gets if g[0] == "connz"]
            result = {
                "fetch_varz": sum(g[2] for g in client.gets if g[0] == "varz"),
                "fetch_connz": sum(g[2] for g in connz),
                "connz_requests": len(connz),
                "body_bytes": sum(g[3] for g in connz if g[1] == "open"),
                "closed_body_bytes": sum(g[3] for g in connz if g[1] == "closed"),
                "scan_aggregate": timed.update_seconds,
                "snapshot": timed.families_seconds,
                "refresh": server.duration,
            }
            result["fetch"] = result["fetch_varz"] + result["fetch_connz"]
            # The thread hop, the /varz decode and the event loop's own work.
            result["refresh_other"] = (result["refresh"] - result["fetch"]
                                       - result["scan_aggregate"] - result["snapshot"])
            result.update(render_split(collector))
            result["total"] = result["refresh"] + result["render"]
            result["connections_seen"] = connections_seen(server)
            reader.aggregator = timed.inner
            out.append(result)
        return out


class RecordedSource:
    """Answers /varz and the open /connz from memory, and an empty closed listing."""

    def __init__(self, varz: bytes, body: bytes) -> None:
        self.varz, self.body, self.closed = varz, body, connzgen.render_body([])

    async def get(self, endpoint: str, params=None) -> bytes:
        if endpoint == "varz":
            return self.varz
        return self.closed if (params or {}).get("state") == "closed" else self.body


def synthetic_refreshes(body_path: Path, refreshes: int) -> list[dict]:
    body = body_path.read_bytes()
    # No network: the collector's source answers from memory, through the refresh path.
    server = ServerCollector(Target("bench", "http://127.0.0.1:8222"),
                             RecordedSource(RECORDED_VARZ.read_bytes(), body),
                             {"connz": ConnzOptions()})
    connz = connz_of(server)
    collector = NatsCollector([server])
    out = []
    for _ in range(refreshes):
        timed = TimedAggregator(connz.aggregator)
        connz.aggregator = timed  # type: ignore[assignment]
        asyncio.run(server.refresh())
        connz.aggregator = timed.inner
        if not server.up or server.problems:
            raise RuntimeError(f"refresh failed: {server.problems}")
        result = {"body_bytes": len(body), "scan_aggregate": timed.update_seconds,
                  "snapshot": timed.families_seconds}
        result.update(render_split(collector))
        result["total"] = result["scan_aggregate"] + result["snapshot"] + result["render"]
        result["connections_seen"] = connections_seen(server)
        out.append(result)
    return out


def worker(args: argparse.Namespace) -> None:
    return_freed_memory()   # as fastnats-exporter does at startup
    if args.worker == "real":
        refreshes = asyncio.run(real_refreshes(args.url, args.refreshes, args.timeout))
    else:
        refreshes = synthetic_refreshes(Path(args.body), args.refreshes)
    print(json.dumps({"refreshes": refreshes, **memory()}))


# --- the driver ----------------------------------------------------------------------------------

class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        left = self.end - time.monotonic()
        if left <= 1:
            raise TimeoutError("bench/e2e.py ran past --deadline")
        return min(left, cap)


def run_worker(args: list[str], deadline: Deadline) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         timeout=deadline.left(300))
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def summarize(runs: list[dict]) -> dict:
    """Medians over the fresh processes of the steady (last) refresh, and their peak RSS."""
    steady = [r["refreshes"][-1] for r in runs]
    first = [r["refreshes"][0] for r in runs]
    time_keys = [k for k in steady[0] if k not in (
        "connz_requests", "body_bytes", "closed_body_bytes", "text_bytes", "gzip_bytes",
        "connections_seen")]
    peak = [r["peak_rss_mb"] for r in runs]
    body_bytes = steady[0]["body_bytes"]
    target = 2 * body_bytes / 2**20 + 40
    return {
        "body_bytes": body_bytes,
        "text_bytes": steady[0]["text_bytes"],
        "gzip_bytes": steady[0]["gzip_bytes"],
        "connections_seen": steady[0]["connections_seen"],
        "processes": len(runs),
        "median_seconds": {k: statistics.median(r[k] for r in steady) for k in time_keys},
        "first_refresh_median_seconds": {k: statistics.median(r[k] for r in first)
                                         for k in time_keys},
        "peak_rss_mb": round(statistics.median(peak), 1),
        "peak_rss_mb_max": round(max(peak), 1),
        "ru_maxrss_mb": round(statistics.median(r["ru_maxrss_mb"] for r in runs), 1),
        "rss_target_mb": round(target, 1),
        "rss_ok": max(peak) <= target,
    }


def connz_params(n: int) -> dict[str, str | int]:
    """The open-connections request ConnzCollector makes at ``n`` connections."""
    return {"state": "open", "limit": with_margin(n), "auth": "true", "subs": "false"}


def timed_get(port: int, path: str, timeout: float) -> tuple[float, bytes]:
    """Seconds to GET ``path`` from 127.0.0.1:``port`` on a new connection, and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        seconds = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return seconds, body
    finally:
        conn.close()


def measure_real(n: int, args: argparse.Namespace, deadline: Deadline) -> dict:
    server = start_nats()
    try:
        http_port = server.ports["http"]
        clients = hold_clients(server.client_port, n, args.per_helper, deadline.left(300))
        try:
            varz = json.loads(timed_get(http_port, "/varz", deadline.left(30))[1])
            if varz["connections"] != n:
                raise RuntimeError(f"nats-server reports {varz['connections']} connections, "
                                   f"expected {n}")
            path = "/connz?" + urlencode(connz_params(n))
            # The first answers after the clients connect are slow and erratic (the Go heap
            # grows); the exporter sees the warm server, so the timing does too.
            for _ in range(args.server_warmup):
                timed_get(http_port, path, deadline.left(60))
            server_times = [timed_get(http_port, path, deadline.left(60))[0]
                            for _ in range(args.server_runs)]
            page_times = [timed_get(http_port, "/connz", deadline.left(60))[0]
                          for _ in range(args.server_runs)]
            load = os.getloadavg()[0]
            runs = [run_worker(["--worker", "real", "--url", server.monitor_url,
                                "--refreshes", str(args.refreshes),
                                "--timeout", str(args.timeout)], deadline)
                    for _ in range(args.runs)]
        finally:
            clients.close()
    finally:
        server.stop()
    result = {"connections": n, "mode": "real nats-server",
              **summarize(runs),
              "server_connz_seconds": statistics.median(server_times),
              "server_connz_page1024_seconds": statistics.median(page_times),
              "loadavg_1m": load}
    if result["connections_seen"] != n:
        result["warning"] = f"the aggregator counted {result['connections_seen']} of {n}"
    return result


def replay_monitor(body: bytes, n: int) -> FakeMonitor:
    """A loopback stand-in for a monitoring port that answers /varz (the recorded one, with the
    connection counts set to ``n``), the open /connz with ``body`` and the closed one empty."""
    varz = json.loads(RECORDED_VARZ.read_text())
    varz.update(connections=n, total_connections=n)
    return FakeMonitor(varz, body)


def measure_synthetic(n: int, args: argparse.Namespace, deadline: Deadline) -> dict:
    if args.generator == "recorded":
        body = connzgen.scale_recorded(args.recorded.read_bytes(), n, args.seed)
        source = f"connzgen.scale_recorded({args.recorded.relative_to(ROOT)})"
    else:
        body = connzgen.synthetic_body(n, args.seed)
        source = "connzgen.synthetic_body"
    load = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        runs = [run_worker(["--worker", "synthetic", "--body", f.name,
                            "--refreshes", str(args.refreshes)], deadline)
                for _ in range(args.runs)]
    result = {"connections": n, "mode": "synthetic", "source": source, "seed": args.seed,
              **summarize(runs), "loadavg_1m": load}
    if args.served:
        replay = replay_monitor(body, n)
        try:
            served = summarize([run_worker(["--worker", "real", "--url", replay.url,
                                            "--refreshes", str(args.refreshes),
                                            "--timeout", str(args.timeout)], deadline)
                                for _ in range(args.runs)])
        finally:
            replay.close()
        result["served"] = {k: served[k] for k in (
            "median_seconds", "peak_rss_mb", "peak_rss_mb_max", "rss_target_mb", "rss_ok")}
    return result


def sizes(text: str) -> list[int]:
    out = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    if any(n < 1 for n in out):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int,
                        help=f"one size: real up to {REAL_MAX}, synthetic above")
    parser.add_argument("--sizes", type=sizes, default=None, help="real sizes (10000,19000)")
    parser.add_argument("--synthetic", type=sizes, default=None,
                        help="synthetic sizes (50000,100000); '' for none")
    parser.add_argument("--generator", choices=("recorded", "simulated"), default="recorded")
    parser.add_argument("--recorded", type=Path, default=RECORDED)
    parser.add_argument("--no-served", dest="served", action="store_false",
                        help="skip the synthetic bodies' fetch from a loopback replay server")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per size")
    parser.add_argument("--refreshes", type=int, default=2, help="refreshes per process")
    parser.add_argument("--server-runs", type=int, default=11, help="timed /connz GETs")
    parser.add_argument("--server-warmup", type=int, default=5, help="untimed /connz GETs first")
    parser.add_argument("--per-helper", type=int, default=5000, help="sockets per helper")
    parser.add_argument("--timeout", type=float, default=30.0, help="per monitoring request")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds in all")
    parser.add_argument("--json", action="store_true", help="print one compact JSON object")
    for hidden in ("--worker", "--url", "--body"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    real, synthetic = args.sizes, args.synthetic
    if args.connections is not None:
        one = [args.connections]
        real = real if real is not None else (one if args.connections <= REAL_MAX else [])
        synthetic = synthetic if synthetic is not None else (
            [] if args.connections <= REAL_MAX else one)
    real = [10_000, 19_000] if real is None else real
    synthetic = [50_000, 100_000] if synthetic is None else synthetic
    if any(n > REAL_MAX for n in real):
        parser.error(f"real sizes must stay at or below {REAL_MAX}: nats-server holds one fd "
                     f"per connection and the cap is {FILE_CAP}")
    if args.runs < 1 or args.refreshes < 1 or args.server_runs < 1:
        parser.error("--runs, --refreshes and --server-runs must be at least 1")
    if not 1 <= args.per_helper <= FILE_CAP - 1000:
        parser.error(f"--per-helper must be between 1 and {FILE_CAP - 1000}")
    if len(range(0, max(real, default=0), args.per_helper)) > 250:
        parser.error("too many helper processes; raise --per-helper")

    # Measure the exporter as pip installs it, with its bytecode compiled: from a checkout run
    # under PYTHONDONTWRITEBYTECODE, every worker would compile the sources and count the
    # compiler's memory (1.4 MB) in its peak RSS.
    compileall.compile_dir(Path(fastnats.__file__).parent, quiet=1)
    deadline = Deadline(args.deadline)
    report = {"runs": args.runs, "refreshes_per_process": args.refreshes,
              "nproc": os.cpu_count(), "results": []}
    for n in real:
        report["results"].append(measure_real(n, args, deadline))
    for n in synthetic:
        report["results"].append(measure_synthetic(n, args, deadline))
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("FASTNATS_NO_EXTENSIONS", None)
    sys.exit(main())
