"""Cost of a refresh with every default collector on, against the transfer of the same bodies.

    python bench/cluster.py --json
    python bench/cluster.py --connections 15000 --leafnodes 5000 --refreshes 5

Two real nats-servers on loopback, monitored by one set of the exporter's own objects
(``ServerCollector`` per server with the default collectors, ``NatsCollector``, the text writer
and gzip):

- ``clients``: a server holding ``--connections`` client connections from helper processes (as in
  bench/e2e.py: named, a quarter subscribed, a fifth published once);
- ``hub``: A1 of a real supercluster (three routed servers of cluster A with JetStream, one of
  cluster B behind a gateway: tests/support/cluster.py) holding ``--leafnodes`` leafnode
  connections from helper processes (tests/support/leafcrowd.py), in two accounts and 50 names.

Each refresh is timed per collector (its fetch and decode) and in all; the render is timed once
over both servers. Against it, ``transfer`` is the time to GET the very requests the collectors
made, with http.client on a new connection, and nothing else: what the bodies cost nats-server
to build and send. ``ratio`` is refresh / transfer: the exporter's own share of the cost.
The first refresh reads every connection for the first time; the ones after it are the steady
state of a running exporter, and the medians come from them (each part's median on its own, so
the parts need not add up to the median refresh; ``steady`` keeps every row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import checkout  # noqa: F401  (tests.support within reach)
from e2e import hold_clients, render_split, timed_get

from fastnats.collector import NatsCollector, ServerCollector, default_options
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.target import Target
from tests.support.cluster import start_supercluster
from tests.support.leafcrowd import LeafCrowd
from tests.support.process import start_nats


class RecordingClient(MonitorClient):
    """The exporter's monitor client, noting each request it makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, dict]] = []

    async def get(self, endpoint, params=None, **kwargs):
        self.requests.append((endpoint, dict(params or {})))
        return await super().get(endpoint, params, **kwargs)


def timed_collectors(server: ServerCollector) -> dict[str, float]:
    """Wrap each collector's refresh (and /varz's read) to add its seconds to the returned map."""
    seconds: dict[str, float] = {}

    def timing(name: str, call):
        def timed(*args, **kwargs):
            async def run():
                start = time.perf_counter()
                try:
                    return await call(*args, **kwargs)
                finally:
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            return run()
        return timed

    server.varz.read = timing("varz", server.varz.read)  # type: ignore[method-assign]
    for collector in server.collectors:
        collector.refresh = timing(collector.endpoint, collector.refresh)  # type: ignore[method-assign]
    return seconds


def transfer_seconds(url: str, requests: list[tuple[str, dict]], timeout: float) -> float:
    port = int(url.rsplit(":", 1)[1])
    total = 0.0
    for endpoint, params in requests:
        path = f"/{endpoint}" + (f"?{urlencode(params)}" if params else "")
        total += timed_get(port, path, timeout)[0]
    return total


async def measure(urls: dict[str, str], refreshes: int, timeout: float) -> list[dict]:
    async with new_session() as session:
        clients = {name: RecordingClient(url, session, timeout) for name, url in urls.items()}
        servers = {name: ServerCollector(Target(name, url), clients[name], default_options())
                   for name, url in urls.items()}
        timers = {name: timed_collectors(server) for name, server in servers.items()}
        collector = NatsCollector(list(servers.values()))
        out = []
        for _ in range(refreshes):
            row: dict = {}
            for name, server in servers.items():
                clients[name].requests.clear()
                timers[name].clear()
                await server.refresh()
                if not server.up or server.problems:
                    raise RuntimeError(f"{name}: refresh failed: {server.problems}")
                requests = list(clients[name].requests)
                transfer = await asyncio.to_thread(transfer_seconds, urls[name], requests,
                                                   timeout)
                row[name] = {"refresh": server.duration, "transfer": transfer,
                             "ratio": server.duration / transfer,
                             "requests": len(requests), **dict(timers[name])}
            row["render"] = render_split(collector)
            row["total"] = sum(row[n]["refresh"] for n in servers) + row["render"]["render"]
            row["transfer"] = sum(row[n]["transfer"] for n in servers)
            row["ratio"] = row["total"] / row["transfer"]
            out.append(row)
        return out


def median_of(rows: list[dict]) -> dict:
    """The per-key medians of the steady-state rows (nested one level)."""
    def med(values: list) -> float:
        return statistics.median(values)

    out: dict = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = {k: med([r[key][k] for r in rows]) for k in value
                        if isinstance(value[k], (int, float))}
        else:
            out[key] = med([r[key] for r in rows])
    return out


def say(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fastnats-bench-cluster-") as tmp:
        say("starting the supercluster and the clients' server")
        cluster = start_supercluster(Path(tmp))
        clients_server = start_nats()
        try:
            say(f"{args.connections} client connections")
            crowd = hold_clients(clients_server.client_port, args.connections, args.per_helper,
                                 300.0)
            try:
                say(f"{args.leafnodes} leafnode connections")
                accounts = [(a, *cluster.accounts[a]) for a in ("T1", "T2")]
                with LeafCrowd(cluster.hub.leaf_port, args.leafnodes, accounts=accounts,
                               names="edge", groups=50, per_helper=args.per_helper,
                               timeout=300.0):
                    listed = cluster.hub.get("leafz")["leafnodes"]
                    if listed != args.leafnodes:
                        raise RuntimeError(f"the hub lists {listed} leafnodes, not "
                                           f"{args.leafnodes}")
                    urls = {"clients": clients_server.monitor_url,
                            "hub": cluster.hub.monitor_url}
                    say(f"{args.refreshes} refreshes")
                    rows = asyncio.run(measure(urls, args.refreshes, args.timeout))
            finally:
                crowd.close()
        finally:
            clients_server.stop()
            cluster.stop()
    steady = rows[1:] or rows
    return {"connections": args.connections, "leafnodes": args.leafnodes,
            "refreshes": args.refreshes, "nproc": os.cpu_count(),
            "first_refresh": rows[0], "steady_median": median_of(steady), "steady": steady}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=15_000)
    parser.add_argument("--leafnodes", type=int, default=5_000)
    parser.add_argument("--refreshes", type=int, default=6)
    parser.add_argument("--per-helper", type=int, default=2500, help="sockets per helper")
    parser.add_argument("--timeout", type=float, default=30.0, help="per monitoring request")
    parser.add_argument("--json", action="store_true", help="print one compact JSON object")
    args = parser.parse_args(argv)
    if args.refreshes < 2:
        parser.error("--refreshes must be at least 2: the first is the cold read")
    report = run(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("FASTNATS_NO_EXTENSIONS", None)
    sys.exit(main())
