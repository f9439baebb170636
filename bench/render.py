"""Cost of turning one snapshot of N series into /metrics bytes, per contender.

    python bench/render.py --series 10000 --json

prints one JSON object with the median seconds (and the peak RSS) of:

- ``core``: ``_core.render_text`` on the snapshot's families;
- ``prometheus_client``: ``generate_latest`` of a registry whose collector yields the same
  families through ``interop.client_metrics``, the path ``NatsCollector.collect()`` takes;
- ``serve``: one GET of the cached page from ``fastnats.server`` over loopback, keep-alive,
  response read to its last byte (what a scrape costs once the refresh has rendered);

and the ratio ``prometheus_client / core``. Each contender runs in its own fresh process.

The snapshot is the seven per-group /connz families (labels account and name) with N series in
all, seeded: integer counters and gauges, as the aggregator publishes them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import threading

import harness
from prometheus_client import CollectorRegistry, generate_latest

from fastnats import _core, metrics
from fastnats.interop import client_metrics
from fastnats.server import Payload, start_server

GROUP_FAMILIES = [m for m in metrics.CONNZ if m.labels == (metrics.GROUP_LABELS,)]
LABELS = ("account", "name")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def snapshot(series: int, seed: int = 1) -> list:
    rng = random.Random(seed)
    per_family = -(-series // len(GROUP_FAMILIES))
    families = []
    left = series
    for metric in GROUP_FAMILIES:
        count = min(per_family, left)
        left -= count
        samples = []
        for k in range(count):
            if metric.type == metrics.COUNTER:
                value = rng.choice([rng.randrange(10**6), rng.randrange(10**15)])
            else:
                value = rng.randrange(5000)
            samples.append(((f"tenant-{k % 37}", f"client-{k}"), value))
        families.append((metric, LABELS, samples))
    return families


class _Collector:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return client_metrics(self.families)


def _core_run(families):
    return lambda: _core.render_text(families)


def _client_run(families):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families))
    return lambda: generate_latest(registry)


def _serve_run(families):
    payload = Payload(_core.render_text(families), None, CONTENT_TYPE)
    ready = threading.Event()
    address: list[int] = []

    async def serve() -> None:
        server = await start_server({"/metrics": lambda: payload}, "127.0.0.1", 0)
        address.append(server.port)
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait()
    sock = socket.create_connection(("127.0.0.1", address[0]))
    request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"
    size = len(payload.body)

    def run() -> None:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(1 << 20)
        head, _, rest = data.partition(b"\r\n\r\n")
        got = len(rest)
        while got < size:
            got += len(sock.recv(1 << 20))
    return run


CONTENDERS = {"core": _core_run, "prometheus_client": _client_run, "serve": _serve_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    families = snapshot(args.series, args.seed)
    if args.worker:
        harness.worker(CONTENDERS[args.worker](families), args.repeat)
        return 0
    results = {name: harness.isolated(__file__, ["--worker", name, "--series", str(args.series),
                                                 "--seed", str(args.seed), "--repeat",
                                                 str(args.repeat)])
               for name in args.contenders.split(",")}
    median = {name: r["median"] for name, r in results.items()}
    report = {
        "series": args.series,
        "bytes": len(_core.render_text(families)),
        "seed": args.seed,
        "median_seconds": median,
        "peak_rss_mb": {name: round(r["peak_rss_mb"], 1) for name, r in results.items()},
    }
    if "core" in median and "prometheus_client" in median:
        report["ratios"] = {
            "prometheus_client/core": round(median["prometheus_client"] / median["core"], 2)}
    harness.print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
