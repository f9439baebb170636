"""What ``--web.config.file`` costs a scrape: basic auth (cached) and TLS against plain HTTP,
side by side on exporters serving the same nats-server.

    python bench/auth.py --json                       # 300 clients, 10 rounds of 1000 scrapes
    python bench/auth.py --clients 1000 --scrapes 500 --rounds 20 --json

prints one JSON object. A real nats-server runs on random loopback ports with ``--clients``
connections held by helper processes (bench/e2e.py's ``hold_clients``), so /metrics carries
the per-group families of a small deployment. Four exporters monitor it, each its own
``python -m fastnats`` process listening on a free loopback port, one per contender:

- ``plain``: no web config;
- ``basic``: ``basic_auth_users`` with a bcrypt hash of cost 10 (what ``htpasswd -B`` writes);
  every scrape sends the right password, so all but the first are admitted from the cache;
- ``tls``: ``tls_server_config`` with a trustme certificate (ECDSA P-256 unless ``--key-type
  rsa``), no authentication;
- ``tls_basic``: both.

The exporters refresh once at start and then every hour (``--refresh-interval 1h``): no
refresh runs while scrapes are measured, so the exporter's CPU is the scrapes' alone. A
scrape is a GET of /metrics with ``Accept-Encoding: gzip`` and the other headers Prometheus
sends, read to the end; each answer must be a gzip-encoded 200. Two ways of scraping:

- ``keepalive``: ``--scrapes`` GETs over one connection, opened (and handshaken) by an untimed
  GET first, as Prometheus reuses its connections;
- ``new_connection``: ``--scrapes`` GETs each on a new connection (for TLS a full handshake:
  http.client resumes no session), closed after the answer.

The contenders take turns in ``--rounds`` rounds, their order rotated each round, so that a
slow moment of the machine hits all of them. Per contender and way of scraping the report
gives the median and 90th percentile of the client's latency over every scrape, and the
exporter's CPU per scrape: utime + stime from /proc/PID/stat (every thread) before and after
each batch, summed over the batches and divided by the scrapes (``cpu_ticks`` says how many
10 ms clock ticks that total holds: its resolution). ``ratios`` are ``basic/plain`` (the
issue's: a cached authenticated scrape within 2x an unauthenticated one), ``tls_basic/tls``,
and ``tls/plain`` for information.

``uncached`` shows what the cache saves: before the rounds, each of ``--uncached`` further
users (each with its own cost-10 hash) scrapes once over a warm keep-alive connection, which
pays the bcrypt check; ``first/cached`` compares it with the same contender's keep-alive
scrapes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import bcrypt
import checkout  # noqa: F401  (tests.support within reach)
import trustme
import yaml
from e2e import Deadline, hold_clients, timed_get
from sizing import TICK, cpu_seconds

from tests.support.process import Exporter, start_exporter, start_nats

T = TypeVar("T")
CONTENDERS = ("plain", "basic", "tls", "tls_basic")
MODES = ("keepalive", "new_connection")
RATIOS = (("basic", "plain"), ("tls_basic", "tls"), ("tls", "plain"))
#: The issue's bound on basic/plain.
GOAL = 2.0
BCRYPT_COST = 10
USER = "prometheus"
#: Headers in the shape of a Prometheus scrape's, besides Authorization; the exporter reads
#: Accept-Encoding only, but parses them all.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
              "application/openmetrics-text;version=0.0.1;q=0.4,"
              "text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/3.0.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Target:
    """One contender's exporter and how to reach it."""

    name: str
    exporter: Exporter
    context: ssl.SSLContext | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.exporter.process.pid

    def connection(self) -> http.client.HTTPConnection:
        host, port = self.exporter.url.split("/")[2].rsplit(":", 1)
        if self.context is None:
            return http.client.HTTPConnection(host, int(port), timeout=30)
        return http.client.HTTPSConnection(host, int(port), timeout=30, context=self.context)

    def scrape(self, conn: http.client.HTTPConnection,
               authorization: str | None = None) -> int:
        """One GET of /metrics read to the end; its body size."""
        headers = dict(self.headers)
        if authorization is not None:
            headers["Authorization"] = authorization
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or response.getheader("Content-Encoding") != "gzip":
            raise RuntimeError(f"{self.name}: HTTP {response.status}, Content-Encoding "
                               f"{response.getheader('Content-Encoding')}")
        return len(body)


def keepalive_batch(target: Target, scrapes: int) -> list[float]:
    conn = target.connection()
    try:
        target.scrape(conn)  # connects, and handshakes for TLS
        times = []
        for _ in range(scrapes):
            start = time.perf_counter()
            target.scrape(conn)
            times.append(time.perf_counter() - start)
        return times
    finally:
        conn.close()


def new_connection_batch(target: Target, scrapes: int) -> list[float]:
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        conn = target.connection()
        try:
            target.scrape(conn)
            times.append(time.perf_counter() - start)
        finally:
            conn.close()
    return times


BATCHES: dict[str, Callable[[Target, int], list[float]]] = {
    "keepalive": keepalive_batch, "new_connection": new_connection_batch}


@dataclass
class Tally:
    """Every scrape time and the exporter CPU of one contender scraped one way."""

    times: list[float] = field(default_factory=list)
    cpu: float = 0.0

    def report(self) -> dict:
        ordered = sorted(self.times)
        return {"median_seconds": statistics.median(ordered),
                "p90_seconds": ordered[int(0.9 * (len(ordered) - 1))],
                "exporter_cpu_seconds": self.cpu / len(ordered),
                "cpu_ticks": round(self.cpu * TICK),
                "scrapes": len(ordered)}


def measured(pid: int, run: Callable[..., T], *args: object) -> tuple[T, float]:
    """What ``run(*args)`` returns, and the CPU seconds process ``pid`` spent meanwhile."""
    before = cpu_seconds(pid)
    result = run(*args)
    return result, cpu_seconds(pid) - before


def uncached(target: Target, passwords: dict[str, str], main: str) -> tuple[list[float], float]:
    """Each user's first scrape (the bcrypt check) over a warm keep-alive connection: the
    times, and the exporter's CPU over all of them."""
    times, cpu = [], 0.0
    conn = target.connection()
    try:
        target.scrape(conn, main)  # connects, handshakes; the main user is cached already
        for user, password in passwords.items():
            authorization = basic(user, password)
            start = time.perf_counter()
            cpu += measured(target.pid, target.scrape, conn, authorization)[1]
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
    return times, cpu


def uncached_report(times: list[float], cpu: float, cached: dict) -> dict:
    """The first scrapes against the same contender's cached keep-alive scrapes."""
    first = statistics.median(times)
    return {"first_scrape_seconds": first,
            "exporter_cpu_seconds": cpu / len(times),
            "first/cached": {"latency": round(first / cached["median_seconds"]),
                             "cpu": round(cpu / len(times) / cached["exporter_cpu_seconds"])
                             if cached["exporter_cpu_seconds"] else None},
            "users": len(times)}


def ratios(results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    def ratio(a: str, b: str, key: str) -> float | None:
        # None when the denominator's CPU stayed under one clock tick: raise --scrapes.
        return round(results[a][key] / results[b][key], 2) if results[b][key] else None

    return {f"{a}/{b}": {"latency": ratio(a, b, "median_seconds"),
                         "cpu": ratio(a, b, "exporter_cpu_seconds")} for a, b in RATIOS}


def say(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def write_configs(folder: Path, key_type: str, passwords: dict[str, str]) -> dict[str, Path]:
    """The CA file and one web config per contender that has one."""
    ca = trustme.CA(key_type=trustme.KeyType[key_type.upper()])
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    leaf.private_key_pem.write_to_path(str(folder / "server-key.pem"))
    users = {user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
             for user, password in passwords.items()}
    tls = {"cert_file": "server.pem", "key_file": "server-key.pem"}
    configs = {"basic": {"basic_auth_users": users}, "tls": {"tls_server_config": tls},
               "tls_basic": {"tls_server_config": tls, "basic_auth_users": users}}
    paths = {"ca": folder / "ca.pem"}
    for name, config in configs.items():
        paths[name] = folder / f"{name}.yml"
        paths[name].write_text(yaml.safe_dump(config))
    return paths


def start_targets(monitor_url: str, paths: dict[str, Path], main: str,
                  deadline: Deadline) -> dict[str, Target]:
    client_context = ssl.create_default_context(cafile=str(paths["ca"]))
    targets: dict[str, Target] = {}
    try:
        for name in CONTENDERS:
            web = ["--web.config.file", str(paths[name])] if name in paths else []
            exporter = start_exporter(monitor_url, "--web.listen-address", "127.0.0.1:0",
                                      "--refresh-interval", "1h", *web,
                                      timeout=deadline.left(60))
            headers = dict(SCRAPE_HEADERS)
            if name.endswith("basic"):
                headers["Authorization"] = main
            targets[name] = Target(name, exporter, client_context if "tls" in name else None,
                                   headers)
        for target in targets.values():
            wait_served(target, deadline)
    except BaseException:
        for target in targets.values():
            target.exporter.stop()
        raise
    return targets


def wait_served(target: Target, deadline: Deadline) -> None:
    """Until the first refresh is served (503 before it)."""
    end = time.monotonic() + deadline.left(60)
    while True:
        conn = target.connection()
        try:
            target.scrape(conn)  # for basic auth, the first (uncached) check of the main user
            return
        except RuntimeError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)
        finally:
            conn.close()


def payload_sizes(target: Target) -> dict[str, int]:
    conn = target.connection()
    try:
        gzip = target.scrape(conn)
        conn.request("GET", "/metrics")
        text = len(conn.getresponse().read())
    finally:
        conn.close()
    return {"text_bytes": text, "gzip_bytes": gzip}


def tls_session(target: Target) -> dict[str, str]:
    conn = target.connection()
    try:
        target.scrape(conn)
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        return {"version": str(sock.version()), "cipher": sock.cipher()[0]}
    finally:
        conn.close()


def measure(args: argparse.Namespace, deadline: Deadline) -> dict:
    main_password = secrets.token_urlsafe(16)
    fresh = {f"fresh-{i}": secrets.token_urlsafe(16) for i in range(args.uncached)}
    with tempfile.TemporaryDirectory(prefix="fastnats-bench-auth-") as tmp:
        say(f"certificates and {1 + len(fresh)} bcrypt hashes of cost {BCRYPT_COST}")
        paths = write_configs(Path(tmp), args.key_type, {USER: main_password, **fresh})
        server = start_nats()
        try:
            say(f"{args.clients} client connections")
            crowd = hold_clients(server.client_port, args.clients, 5000, deadline.left(300))
            try:
                varz = json.loads(timed_get(server.ports["http"], "/varz", 30)[1])
                if varz["connections"] != args.clients:
                    raise RuntimeError(f"nats-server reports {varz['connections']} "
                                       f"connections, expected {args.clients}")
                targets = start_targets(server.monitor_url, paths,
                                        basic(USER, main_password), deadline)
                try:
                    report = scrape_rounds(args, targets, fresh, basic(USER, main_password))
                finally:
                    for target in targets.values():
                        target.exporter.stop()
            finally:
                crowd.close()
        finally:
            server.stop()
    report["nats_server"] = varz["version"]
    return report


def scrape_rounds(args: argparse.Namespace, targets: dict[str, Target], fresh: dict[str, str],
                  main: str) -> dict:
    say("first scrapes of fresh users (bcrypt)")
    first = {name: uncached(targets[name], fresh, main)
             for name in CONTENDERS if name.endswith("basic")} if fresh else {}
    tallies = {mode: {name: Tally() for name in CONTENDERS} for mode in MODES}
    load = os.getloadavg()[0]
    for number in range(args.rounds):
        say(f"round {number + 1}/{args.rounds}")
        order = CONTENDERS[number % len(CONTENDERS):] + CONTENDERS[:number % len(CONTENDERS)]
        for mode in MODES:
            for name in order:
                tally = tallies[mode][name]
                times, cpu = measured(targets[name].pid, BATCHES[mode], targets[name],
                                      args.scrapes)
                tally.times += times
                tally.cpu += cpu
    results = {mode: {name: tally.report() for name, tally in by_name.items()}
               for mode, by_name in tallies.items()}
    first_report = {name: uncached_report(*got, results["keepalive"][name])
                    for name, got in first.items()}
    all_ratios = {mode: ratios(results[mode]) for mode in MODES}
    measured_goal = all_ratios["keepalive"]["basic/plain"]
    return {
        "clients": args.clients, "scrapes": args.scrapes, "rounds": args.rounds,
        "bcrypt_cost": BCRYPT_COST, "key_type": args.key_type,
        "tls": tls_session(targets["tls"]), "payload": payload_sizes(targets["plain"]),
        "nproc": os.cpu_count(), "loadavg_1m": load,
        "results": results, "ratios": all_ratios, "uncached": first_report,
        "goal": {"basic/plain at most": GOAL, "measured": measured_goal,
                 "met": None if None in measured_goal.values()
                 else max(v for v in measured_goal.values() if v is not None) <= GOAL},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300,
                        help="NATS client connections, for a realistic /metrics")
    parser.add_argument("--scrapes", type=int, default=1000,
                        help="timed scrapes per contender, way of scraping and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--uncached", type=int, default=5,
                        help="users whose first (bcrypt) scrape is timed; 0 for none")
    parser.add_argument("--key-type", choices=("ecdsa", "rsa"), default="ecdsa",
                        help="the server certificate's key")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds in all")
    parser.add_argument("--json", action="store_true", help="print one compact JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 5000:
        parser.error("--clients must be between 1 and 5000")
    if args.scrapes < 1 or args.rounds < 1 or args.uncached < 0:
        parser.error("--scrapes and --rounds must be at least 1, --uncached at least 0")
    report = measure(args, Deadline(args.deadline))
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("FASTNATS_NO_EXTENSIONS", None)
    sys.exit(main())
