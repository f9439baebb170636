"""Cost of one /jsz refresh at ``--jsz.level consumers``, against orjson.loads alone and against
nats-server's own time to produce a comparable body.

    python bench/jsz.py --streams 5000 --consumers 50000 --json

The body is generated, seeded (``tests/support/jszgen.py``: one server of a three-server
cluster, the shape checked against a recorded 2.15 body). Prints one JSON object with the
median seconds of:

- ``loads``: ``orjson.loads`` of the body, the floor of any Python walk; ``loads_gc_paused``
  the same with the cyclic collector off, as ``Listing.read`` parses (the collections that
  hundreds of thousands of new dicts trigger cost more than the parse);
- ``read``: ``jsz.Listing.read``, the core's ``JszListing``: the page scanned without the GIL,
  then the walk (every value used checked, the streams and consumers this server leads picked
  out, ephemeral consumers aggregated, the top-K); ``read_reference`` the same by the
  reference (``_reference/jsz.py``: orjson, then the walk in Python);
- ``full``: ``read`` and the commit (the consumer table, every sample built): what a refresh
  costs the exporter, off the event loop; ``full_reference`` with the reference's listing;
- ``server``: nats-server's time to answer ``/jsz?accounts=true&streams=true&consumers=true&
  config=true``, measured on a real server with ``--server-streams`` streams and
  ``--server-consumers`` durable consumers (memory storage, JetStream outside a cluster) and
  scaled to the body's size by assets (streams + consumers; ``server_by_bytes`` scales by
  bytes instead). It is the wall time of the HTTP
  request on loopback, read to the end: it includes the transfer, and a server outside a
  cluster builds no cluster info per stream and consumer, so this is a floor of what a cluster
  member spends; the ratio below is therefore the exporter's worst case.

and ``full_per_server_tenth``: ``full`` / (``server`` / 10), the issue's test: above 1, orjson
plus Python costs more than a tenth of nats-server's own time, and the walk belongs in the core.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import checkout  # noqa: F401
import orjson
from harness import median_seconds

from fastnats import _core, _reference
from fastnats.collectors.base import ServerContext
from fastnats.collectors.jsz import JszCollector, JszOptions
from tests.support import jszgen
from tests.support.process import free_port


async def _populate(port: int, streams: int, consumers: int) -> None:
    import nats
    from nats.js.api import ConsumerConfig, StorageType, StreamConfig

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream(timeout=30)
    per_stream = [consumers // streams + (1 if i < consumers % streams else 0)
                  for i in range(streams)]
    for start in range(0, streams, 50):
        await asyncio.gather(*(
            js.add_stream(StreamConfig(name=f"S{i:05d}", subjects=[f"s{i}.>"],
                                       storage=StorageType.MEMORY, metadata={"team": "bench"}))
            for i in range(start, min(start + 50, streams))))
    for i in range(streams):
        await js.publish(f"s{i}.x", b"x" * 100)
    jobs = [(i, j) for i in range(streams) for j in range(per_stream[i])]
    for start in range(0, len(jobs), 100):
        await asyncio.gather(*(
            js.add_consumer(f"S{i:05d}", ConsumerConfig(durable_name=f"C{j:05d}",
                                                         ack_policy="explicit"))
            for i, j in jobs[start:start + 100]))
    await nc.close()


def server_seconds(streams: int, consumers: int, repeats: int) -> tuple[float, int]:
    """nats-server's median time to answer the full /jsz, and the body's size."""
    binary = Path(sys.prefix) / "bin" / "nats-server"
    with tempfile.TemporaryDirectory() as store:
        port, monitor = free_port(), free_port()
        conf = Path(store) / "bench.conf"
        conf.write_text(f"port: {port}\nhttp_port: {monitor}\nserver_name: BENCH\n"
                        f'jetstream {{ store_dir: "{store}/js", max_memory_store: 4GB }}\n')
        server = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{monitor}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            asyncio.run(_populate(port, streams, consumers))
            query = url + "/jsz?accounts=true&streams=true&consumers=true&config=true"
            size = len(urllib.request.urlopen(query).read())
            seconds = median_seconds(lambda: urllib.request.urlopen(query).read(), repeats)
        finally:
            server.terminate()
            server.wait()
    return seconds, size


def _paused(run: Callable[[], object]) -> None:
    """``run`` with the cyclic collector off, as ``Listing.read`` runs its parse."""
    gc.disable()
    try:
        run()
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--consumers", type=int, default=50000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--server-streams", type=int, default=500)
    parser.add_argument("--server-consumers", type=int, default=5000)
    parser.add_argument("--no-server", action="store_true",
                        help="skip the nats-server measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plan = jszgen.Plan(streams=args.streams, consumers=args.consumers, accounts=args.accounts)
    body = jszgen.generate(plan, args.seed)
    options = JszOptions("consumers", top_k=10)
    collector = JszCollector(ServerContext("bench", "127.0.0.1"), options)

    def reader(cls: type) -> Callable[[], object]:
        def read() -> object:
            listing = cls(plan.me, options)
            listing.read(body)
            return listing
        return read

    read, read_reference = reader(_core.JszListing), reader(_reference.JszListing)
    listing = read()
    result: dict[str, object] = {
        "streams": args.streams, "consumers": args.consumers, "accounts": args.accounts,
        "seed": args.seed, "body_bytes": len(body),
        "led_streams": sum(1 for row in listing.streams if row[1] == "leader"),
        "led_durables": len(listing.durables),
        "loads": median_seconds(lambda: orjson.loads(body), args.repeats),
        "loads_gc_paused": median_seconds(lambda: _paused(lambda: orjson.loads(body)),
                                          args.repeats),
        "read": median_seconds(read, args.repeats),
        "read_reference": median_seconds(read_reference, args.repeats),
        "full": median_seconds(lambda: collector._commit(read()), args.repeats),
        "full_reference": median_seconds(lambda: collector._commit(read_reference()),
                                         args.repeats),
    }
    if not args.no_server:
        seconds, size = server_seconds(args.server_streams, args.server_consumers,
                                       args.repeats)
        scale = (args.streams + args.consumers) / (args.server_streams + args.server_consumers)
        result.update({
            "server_streams": args.server_streams, "server_consumers": args.server_consumers,
            "server_measured": seconds, "server_body_bytes": size,
            "server": seconds * scale,
            "server_bytes_per_second": size / seconds,
            "server_by_bytes": len(body) / (size / seconds),
        })
        tenth = result["server"] / 10  # type: ignore[operator]
        result["full_per_server_tenth"] = result["full"] / tenth  # type: ignore[operator]
        result["full_reference_per_server_tenth"] = result["full_reference"] / tenth  # type: ignore[operator]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else
                  f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
