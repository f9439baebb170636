"""What a running fastnats-exporter costs, by connection count: CPU share, RSS, refresh time.

    python bench/sizing.py --json                          # 1k, 10k and 19k real, 50k replayed
    python bench/sizing.py --real 10000 --replayed "" --seconds 30 --json

prints one JSON object. For each size the exporter runs as its own process (the installed
``fastnats-exporter``, default flags but a free listen port and ``--refresh-interval``) against a
real nats-server with N client connections held by helper processes (bench/e2e.py's
``hold_clients``), or, above what one machine's file cap allows, against bench/e2e.py's loopback
``replay_monitor`` of a body cloned from the recorded one. After a warm-up of three refreshes,
it samples the process's CPU time (utime + stime from /proc) over ``--seconds`` and reports:

- ``cpu_share``: CPU seconds per wall second (0.01 is 1% of one core);
- ``rss_mb``, ``peak_rss_mb``: VmRSS at the end, VmHWM over the whole run;
- ``refresh_seconds``: the median of ``fastnats_refresh_duration_seconds`` scraped once per
  refresh during the sample, as the exporter itself measures it (fetch included).

These figures fill the sizing table of docs/deploy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import checkout  # noqa: F401
from e2e import REAL_MAX, RECORDED, hold_clients, replay_monitor, sizes
from prometheus_client.parser import text_string_to_metric_families

from tests.support import connzgen
from tests.support.process import start_nats

LISTENING = re.compile(r"serving \S+ on (http://\S+) for")
TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat, after the command name in parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


WATCHED = ("fastnats_refresh_duration_seconds", "fastnats_refreshes_total",
           "nats_client_connections")


def scrape(url: str) -> dict[str, float]:
    """Each watched metric summed over its series."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(WATCHED, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in out:
                out[sample.name] += sample.value
    return out


def measure(monitor_url: str, n: int, interval: float, seconds: float,
            extra: list[str]) -> dict:
    exe = shutil.which("fastnats-exporter")
    if exe is None:
        raise SystemExit("fastnats-exporter is not on PATH; pip install the package first")
    proc = subprocess.Popen(
        [exe, monitor_url, "--web.listen-address", "127.0.0.1:0",
         "--refresh-interval", str(interval), "--timeout", str(max(3.0, interval - 1)), *extra],
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            line = proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("the exporter did not start")
            match = LISTENING.search(line)
            url = match[1] if match else None
        # Keep reading its log, or a full pipe would stall the exporter.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        while scrape(url)["fastnats_refreshes_total"] < 3:
            time.sleep(interval / 4)
        seen = scrape(url)
        if seen["nats_client_connections"] != n:
            raise RuntimeError(f"the exporter counts {seen['nats_client_connections']} "
                               f"connections, expected {n}")
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        durations = []
        last = seen["fastnats_refreshes_total"]
        while time.monotonic() - start < seconds:
            time.sleep(interval / 4)
            now = scrape(url)
            if now["fastnats_refreshes_total"] != last:
                last = now["fastnats_refreshes_total"]
                durations.append(now["fastnats_refresh_duration_seconds"])
        cpu = cpu_seconds(proc.pid) - start_cpu
        wall = time.monotonic() - start
        status = proc_status(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)
    return {"connections": n, "cpu_share": round(cpu / wall, 4),
            "rss_mb": round(status["VmRSS"], 1), "peak_rss_mb": round(status["VmHWM"], 1),
            "refresh_seconds": statistics.median(durations) if durations else None,
            "refreshes": len(durations)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=sizes, default=[1000, 10_000, 19_000])
    parser.add_argument("--replayed", type=sizes, default=[50_000])
    parser.add_argument("--refresh-interval", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU sample per size")
    parser.add_argument("--exporter-arg", action="append", default=[], metavar="ARG",
                        help="one more fastnats-exporter argument (repeatable), e.g. "
                             "--exporter-arg=--no-collector.wire")
    parser.add_argument("--json", action="store_true", help="print one compact JSON object")
    args = parser.parse_args(argv)
    if any(n > REAL_MAX for n in args.real):
        parser.error(f"real sizes must stay at or below {REAL_MAX}")
    results = []
    for n in args.real:
        server = start_nats()
        try:
            clients = hold_clients(server.client_port, n, 5000, 300)
            try:
                result = measure(server.monitor_url, n, args.refresh_interval, args.seconds,
                                 args.exporter_arg)
            finally:
                clients.close()
        finally:
            server.stop()
        results.append({"mode": "real nats-server", **result})
    for n in args.replayed:
        replay = replay_monitor(connzgen.scale_recorded(RECORDED.read_bytes(), n, 1), n)
        try:
            result = measure(replay.url, n, args.refresh_interval, args.seconds, args.exporter_arg)
        finally:
            replay.close()
        results.append({"mode": "replayed body", **result})
    report = {"refresh_interval": args.refresh_interval, "seconds": args.seconds,
              "exporter_args": args.exporter_arg,
              "nproc": os.cpu_count(), "results": results}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
