"""Writes the seed corpora of the harnesses into tests/fuzz/corpus/<target>/.

    python -m tests.fuzz.make_corpus

The seeds come from the project's own test data and generators: the recorded /connz bodies
(tests/data), simulated servers (tests/support/connzgen.py) and leafnode hubs
(tests/support/leafzgen.py) in every body format, the hostile bodies of
tests/unit/test_connz_hostile.py, the malformed ones of test_leafz_core.py, simulated /accstatz
listings and the hostile bodies of test_accstatz_differential.py, synthesized kernel replies
(tests/support/sockdiaggen.py) and the hostile ones of test_wire_hostile.py, and random bytes for
the writer's data provider. Every choice is seeded, so a second run writes the same
files; a seed larger than MAX_SEED is left out, to keep the corpus small and libFuzzer's default
-max_len near the inputs that matter. The inputs of past findings, ``crash-<sha1>`` as
libFuzzer named them, are kept as they are: each replays a fixed fault in every short run.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

from tests.fuzz.fuzz_sockdiag import END_OF_POLL
from tests.support import connzgen, leafzgen
from tests.support.sockdiaggen import World, corrupt, split_randomly

# The hostile and malformed inputs are the tests' own case tables, read from there so that a case
# added to a test seeds the corpus too.
from tests.unit import (
    test_accstatz_differential,
    test_connz_hostile,
    test_leafz_core,
    test_wire_hostile,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
DATA = Path(__file__).resolve().parents[1] / "data"
MAX_SEED = 12_000
#: How the input of a finding is named; such files stay (see the module docstring).
FINDING = "crash-"
SEED = 20241129
#: The leafz seeds came later, with a seed of their own; kept, so that they are written again.
LEAFZ_SEED = 20261129


def connz_input(config: int, refreshes: list[tuple[list[bytes], list[bytes] | None]]) -> bytes:
    """The layout fuzz_connz and fuzz_leafz read: a configuration byte, then open (for /leafz,
    the one /leafz body) and closed bodies."""
    sections = []
    for open_pages, closed_pages in refreshes:
        sections += [b"\x01".join(open_pages), b"\x01".join(closed_pages or [])]
    return bytes([config]) + b"\x00".join(sections)


def connz_seeds(rng: random.Random) -> list[bytes]:
    recorded_open = (DATA / "connz_open.json").read_bytes()
    recorded_closed = (DATA / "connz_closed.json").read_bytes()
    seeds = [connz_input(config, [([recorded_open], [recorded_closed]), ([recorded_open], None)])
             for config in (0x00, 0x29, 0x5E, 0xB3)]
    for seed in range(24):
        server = connzgen.Server(seed, odd=seed % 2 == 0, closed_max=6,
                                 unconnected=0.3 if seed % 3 == 0 else 0.0)
        refreshes = []
        for _ in range(rng.randint(1, 3)):
            server.step(opens=rng.randint(1, 4), closes=rng.randint(0, 2),
                        flashes=rng.randint(0, 1), seconds=rng.choice([1, 15]))
            fmt = dict(indent=rng.random() < 0.3, ascii_only=rng.random() < 0.3)
            conns = list(server.open.values())
            if len(conns) > 2 and rng.random() < 0.3:
                open_pages = list(connzgen.paginate(conns, 2, overlap=rng.randint(-1, 1), **fmt))
            else:
                open_pages = [server.open_body(**fmt)]
            closed = [server.closed_body(**fmt)] if rng.random() < 0.7 else None
            refreshes.append((open_pages, closed))
        seeds.append(connz_input(rng.randrange(256), refreshes))
    # One hostile body in five: the fuzzer makes the others from them.
    seeds += [connz_input(rng.randrange(256), [([case.values[0]], None)])
              for case in test_connz_hostile.CASES[::5] if len(case.values[0]) <= 4096]
    return seeds


def leafz_seeds(rng: random.Random) -> list[bytes]:
    seeds = [bytes([0x00]) + raw for raw, _ in test_leafz_core.MALFORMED]   # a lone body
    for seed in range(24):
        hub = leafzgen.Hub(seed, odd=seed % 2 == 0, closed_max=6, names=5)
        refreshes = []
        for _ in range(rng.randint(1, 3)):
            hub.step(opens=rng.randint(1, 4), closes=rng.randint(0, 2),
                     reconnects=rng.randint(0, 2), clients=rng.randint(0, 2),
                     seconds=rng.choice([1, 15]))
            fmt = dict(indent=rng.random() < 0.3, ascii_only=rng.random() < 0.3)
            body = hub.leafz_body(**fmt)
            closed = [hub.closed_listing(0, 4, **fmt)] if rng.random() < 0.7 else None
            refreshes.append(([body], closed))
        seeds.append(connz_input(rng.randrange(256), refreshes))
    return seeds


def sockdiag_input(config: int, polls: list[list[bytes]]) -> bytes:
    """The layout fuzz_sockdiag reads: a configuration byte, then length-led buffers."""
    out = bytearray([config])
    for buffers in polls:
        for k, buffer in enumerate(buffers):
            out += struct.pack("<H", len(buffer) | (END_OF_POLL if k == len(buffers) - 1 else 0))
            out += buffer
    return bytes(out)


def sockdiag_seeds(rng: random.Random) -> list[bytes]:
    seeds = []
    for k in range(24):
        world = World(rng)
        destroy = k % 2 == 1
        polls = [split_randomly(rng, world.poll(destroy_events=destroy))
                 for _ in range(rng.randint(1, 2))]
        if k % 5 == 4:
            polls[-1] = corrupt(rng, polls[-1])
        # Port set 1 holds the ports World uses (bits 1-2 of the configuration byte).
        seeds.append(sockdiag_input(int(destroy) | 2, polls))
    seeds += [sockdiag_input(2, [list(case.values[0])]) for case in test_wire_hostile.CASES]
    return seeds


def accstatz_seeds(rng: random.Random) -> list[bytes]:
    """Sequences of simulated listings, and each hostile body after a good one."""
    t = test_accstatz_differential
    good = t.render(t.GOOD)
    seeds = [rng.randrange(256).to_bytes(1, "big") + good + b"\x00" + body
             for body in t.HOSTILE.values()]
    for _ in range(30):
        names = rng.sample(t.NAMES, rng.randrange(1, 6))
        counters = {name: [0] * 5 for name in names}
        bodies = []
        for step in range(rng.randrange(2, 5)):
            entries = []
            for name in rng.sample(names, rng.randrange(len(names) + 1)):
                c = counters[name]
                c[rng.randrange(5)] = rng.choice([c[0] + 5, 0, 2**64 - 1])
                entries.append(t.entry(name, [rng.randrange(3), 0, rng.randrange(5)], list(c),
                                       rng.random() < 0.5))
            bodies.append(t.render(entries, (t.START + 15 * step) * 10**9,
                                   ascii_only=rng.random() < 0.5,
                                   indent=rng.choice([None, 2])))
        seeds.append(rng.randrange(256).to_bytes(1, "big") + b"\x00".join(bodies))
    return seeds


def text_seeds(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.choice([16, 64, 256, 1024])) for _ in range(40)]


def write(target: str, seeds: list[bytes]) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if not old.name.startswith(FINDING):
            old.unlink()
    kept = [s for s in seeds if len(s) <= MAX_SEED]
    for seed in kept:
        (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{target}: {len(kept)} seeds, {sum(map(len, kept))} bytes "
          f"({len(seeds) - len(kept)} over {MAX_SEED} bytes left out)")


def main() -> None:
    write("connz", connz_seeds(random.Random(SEED)))
    write("leafz", leafz_seeds(random.Random(LEAFZ_SEED)))
    write("sockdiag", sockdiag_seeds(random.Random(SEED)))
    write("text", text_seeds(random.Random(SEED)))
    write("accstatz", accstatz_seeds(random.Random(SEED)))


if __name__ == "__main__":
    main()
