"""Synthetic NATS clients for ``--demo``: they publish and subscribe all the time.

They speak the NATS text protocol over plain asyncio streams, so the demo needs nothing beyond
nats-server itself. Clients belong to a few named groups and accounts-worth of traffic shapes,
and a few of them reconnect now and then, so every metric has something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import orjson

from . import launcher

log = logging.getLogger("fastnats.demo")

GROUPS = ("orders", "billing", "inventory", "telemetry", "audit")


async def _drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Read everything the server sends, answering its PINGs, so no demo client ever becomes a
    # slow consumer by accident.
    tail = b""
    while data := await reader.read(65536):
        if b"PING\r\n" in tail + data:
            writer.write(b"PONG\r\n")
        tail = data[-5:]


async def client(host: str, port: int, index: int, stop: asyncio.Event) -> None:
    rng = random.Random(index)
    group = GROUPS[index % len(GROUPS)]
    payload = b"x" * rng.choice((16, 128, 512, 2048))
    period = rng.uniform(0.05, 0.5)
    lifetime = rng.uniform(20, 120) if index % 10 == 0 else None  # some clients churn
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            log.debug("demo client %d cannot connect: %s", index, exc)
            await asyncio.sleep(1)
            continue
        connect = {"verbose": False, "pedantic": False, "lang": "python", "version": "demo",
                   "name": f"{group}-{index % 7}", "headers": True, "protocol": 1}
        writer.write(b"CONNECT " + orjson.dumps(connect) + b"\r\n")
        writer.write(f"SUB demo.{group}.> {index}\r\n".encode())
        drain = asyncio.create_task(_drain(reader, writer))
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + lifetime if lifetime else None
        try:
            while not stop.is_set() and not drain.done():
                if ends_at is not None and loop.time() > ends_at:
                    break
                target = GROUPS[rng.randrange(len(GROUPS))]
                writer.write(f"PUB demo.{target}.{index} {len(payload)}\r\n".encode()
                             + payload + b"\r\n")
                await writer.drain()
                try:
                    await asyncio.wait_for(stop.wait(), period)
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            drain.cancel()
            writer.close()
        await asyncio.sleep(0.2)


async def run_clients(host: str, port: int, count: int, stop: asyncio.Event) -> None:
    """Run ``count`` clients until ``stop`` is set."""
    await asyncio.gather(*(client(host, port, i, stop) for i in range(count)))


@contextlib.asynccontextmanager
async def running(binary: str | None, clients: int) -> AsyncIterator[launcher.NatsServer]:
    """A nats-server on free loopback ports with ``clients`` synthetic clients, for the block."""
    child = launcher.start(["-p", "-1", "-m", "-1", "-a", "127.0.0.1"], binary=binary,
                           keep_log=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_clients("127.0.0.1", child.client_port, clients, stop))
    try:
        yield child
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        child.stop()


def banner(child: launcher.NatsServer, clients: int, metrics_url: str,
           basic_auth: bool = False) -> str:
    """What the demo prints once it serves: where to look, and a scrape config to copy (with
    the TLS and basic-auth settings a --web.config.file asks of the scraper)."""
    extra = ""
    path = "/" + metrics_url.split("/", 3)[3]
    if path != "/metrics":  # Prometheus's default
        extra += f"      metrics_path: {orjson.dumps(path).decode()}\n"
    if metrics_url.startswith("https://"):
        extra += ("      scheme: https\n"
                  "      tls_config:\n"
                  "        ca_file: /path/to/the/ca.pem   # the CA of tls_server_config's cert\n")
    if basic_auth:
        extra += ("      basic_auth:\n"
                  "        username: USER                # one of basic_auth_users\n"
                  "        password_file: /path/to/password\n")
    return f"""
fastnats demo: nats-server on nats://127.0.0.1:{child.client_port} (monitoring {child.monitor_url})
with {clients} synthetic clients.

Metrics: {metrics_url}

Prometheus scrape config:
  scrape_configs:
    - job_name: nats
      scrape_interval: 15s
{extra}      static_configs:
        - targets: ["{metrics_url.split('/')[2]}"]

Press Ctrl-C to stop.
"""
