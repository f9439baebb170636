"""atheris harness of the /leafz scanner and aggregator, ``_core.LeafzAggregator``.

An input is one configuration byte, then up to three refreshes: sections separated by NUL, the
/leafz body and the closed /connz pages in turn (pages separated by \\x01; an empty closed
section is none). Every refresh goes to the core and to the reference, and the harness checks
the contract:

- the core raises nothing but LeafzDecodeError from ``scan`` and ConnzDecodeError ("closed body:
  ...") from ``match_closed``, with an offset inside the body or page; a refused refresh leaves
  the snapshot and the totals as they were;
- core and reference accept and refuse the same refreshes, except for the differences
  documented in fuzz_connz (checked here the same way: the lenient twin of the reference reads
  any bytes and numbers, nesting past 511 levels, repeated keys), and after an accepted refresh
  their snapshots are equal and render to the same bytes.

    python -m tests.fuzz.fuzz_leafz --make-corpus     (writes tests/fuzz/corpus/leafz/)
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import shutil
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import ConnzDecodeError, LeafzDecodeError
    from fastnats.metrics import BY_NAME, LEAF_GROUP_LABELS

from tests.fuzz.common import REFERENCE, Finding, main
from tests.fuzz.fuzz_connz import LAZY, LENIENT, LenientJson, last_wins, nesting

GROUPINGS = [(), ("account", "name"), ("name",), ("ip",), ("is_spoke",),
             ("account", "name", "ip", "is_spoke"), ("ip", "account"), ("name", "is_spoke")]
STEPS = (0.0, 1.0, 15.0, 4000.0)
MAX_REFRESHES = 3
CORPUS = Path(__file__).resolve().parent / "corpus" / "leafz"


def config_of(byte: int) -> tuple[dict, float]:
    small = bool(byte & 0x10)
    config = dict(group_by=GROUPINGS[byte & 7], max_groups=2 if small else 1000,
                  top_k=1 if small else 3, group_ttl=10.0 if small else 3600.0,
                  closed_slack=0.0 if byte & 8 else 2.0)
    return config, STEPS[(byte >> 5) & 3]


def refreshes(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    sections = data.split(b"\x00")[:2 * MAX_REFRESHES]
    out = []
    for k in range(0, len(sections), 2):
        closed = sections[k + 1] if k + 1 < len(sections) and sections[k + 1] else b""
        out.append((sections[k], closed.split(b"\x01") if closed else []))
    return out


def lenient_reference():
    """A copy of _reference.leafz that reads JSON with fuzz_connz's LenientJson."""
    spec = importlib.util.find_spec("fastnats._reference.leafz")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.orjson = LenientJson          # type: ignore[attr-defined]
    module._read_body = LENIENT._read_body  # type: ignore[attr-defined]
    return module


LENIENT_LEAFZ = lenient_reference()


def run(agg, body: bytes, pages: list[bytes], now: float) -> None:
    agg.update(body, pages or None, now)


def verdict(body: bytes, pages: list[bytes], now: float) -> str | None:
    try:
        run(_reference.LeafzAggregator(), body, pages, now)
    except (LeafzDecodeError, ConnzDecodeError) as e:
        return str(e)
    return None


def documented(error: Exception, config: dict, body: bytes, pages: list[bytes],
               now: float) -> bool:
    """Whether a refresh the reference reads was refused by the core for a documented reason."""
    page = body if isinstance(error, LeafzDecodeError) else None
    if "nesting too deep" in str(error):
        return any(nesting(p) >= 512 for p in ([page] if page else pages))
    rewritten = [last_wins(p) for p in [body, *pages]]
    if not any(rewritten):
        return False
    fixed = [new or old for new, old in zip(rewritten, [body, *pages])]
    try:
        run(_core.LeafzAggregator(**config), fixed[0], fixed[1:], now)
    except (LeafzDecodeError, ConnzDecodeError):
        return False
    return True


def rendered(agg, config: dict) -> bytes:
    families = []
    for name, samples in agg.families().items():
        metric = BY_NAME[name]
        labels = config["group_by"] if metric.labels == (LEAF_GROUP_LABELS,) else metric.labels
        families.append((metric, labels, samples))
    text = _core.render_text(families)
    if REFERENCE and _reference.render_text(families) != text:
        raise Finding("the text writers differ on the core's snapshot")
    return text


def refresh(core, twin, config: dict, body: bytes, pages: list[bytes], now: float) -> None:
    before, totals = core.families(), (core.count, core.closed, core.lost)
    strict = verdict(body, pages, now) if REFERENCE else None
    try:
        run(core, body, pages, now)
    except (LeafzDecodeError, ConnzDecodeError) as e:
        if isinstance(e, ConnzDecodeError):
            if not str(e).startswith("closed body: "):
                raise Finding(f"a closed-page error without its body: {e}") from None
            if not any(0 <= e.offset <= len(p) for p in pages):
                raise Finding(f"offset {e.offset} outside every closed page: {e}") from None
        elif not 0 <= e.offset <= len(body):
            raise Finding(f"offset {e.offset} outside the {len(body)}-byte body: {e}") from None
        if core.families() is not before or (core.count, core.closed, core.lost) != totals:
            raise Finding(f"a refused refresh changed the snapshot: {e}") from None
        if REFERENCE and strict is None and not documented(e, config, body, pages, now):
            raise Finding(f"the core refuses what the reference reads: {e}") from None
        return
    if twin is None:
        rendered(core, config)
        return
    if strict is not None and not LAZY.search(strict):
        raise Finding(f"the core reads what the reference refuses: {strict}")
    try:
        run(twin, body, pages, now)
    except (LeafzDecodeError, ConnzDecodeError) as e:
        raise Finding(f"the core reads what the lenient reference refuses: {e}") from None
    if (core.count, core.closed, core.lost) != (twin.count, twin.closed, twin.lost):
        raise Finding("totals differ")
    if core.families() != twin.families():
        raise Finding("the snapshots differ")
    if rendered(core, config) != rendered(twin, config):
        raise Finding("the snapshots render differently")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    config, step = config_of(data[0])
    core = _core.LeafzAggregator(**config)
    twin = LENIENT_LEAFZ.LeafzAggregator(**config) if REFERENCE else None
    for k, (body, pages) in enumerate(refreshes(data[1:])):
        refresh(core, twin, config, body, pages, 1000.0 + step * k)


def make_corpus() -> None:
    """Seeds from simulated hubs (tests/support/leafzgen.py) in every body format and the
    malformed bodies of tests/unit/test_leafz_core.py; seeded, so a rerun writes the same."""
    from tests.support import leafzgen
    from tests.unit.test_leafz_core import MALFORMED

    rng = random.Random(20261129)
    seeds = [bytes([0x00]) + raw for raw, _ in MALFORMED]
    for seed in range(24):
        hub = leafzgen.Hub(seed, odd=seed % 2 == 0, closed_max=6, names=5)
        sections = []
        for _ in range(rng.randint(1, 3)):
            hub.step(opens=rng.randint(1, 4), closes=rng.randint(0, 2),
                     reconnects=rng.randint(0, 2), clients=rng.randint(0, 2),
                     seconds=rng.choice([1, 15]))
            fmt = dict(indent=rng.random() < 0.3, ascii_only=rng.random() < 0.3)
            sections += [hub.leafz_body(**fmt),
                         hub.closed_listing(0, 4, **fmt) if rng.random() < 0.7 else b""]
        seeds.append(bytes([rng.randrange(256)]) + b"\x00".join(sections))
    shutil.rmtree(CORPUS, ignore_errors=True)
    CORPUS.mkdir(parents=True)
    for seed_bytes in seeds:
        if len(seed_bytes) <= 12_000:
            (CORPUS / hashlib.sha1(seed_bytes).hexdigest()).write_bytes(seed_bytes)


if __name__ == "__main__":
    if sys.argv[1:] == ["--make-corpus"]:
        make_corpus()
    else:
        main(test_one_input)
