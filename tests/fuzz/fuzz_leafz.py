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

Its seeds are written by tests/fuzz/make_corpus.py with the others.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import ConnzDecodeError, LeafzDecodeError
    from fastnats.metrics import LEAF_GROUP_LABELS

from tests.fuzz.common import (
    REFERENCE,
    STEPS,
    Finding,
    check_accepted,
    lenient_copy,
    main,
    nesting,
    read_once_last_wins,
    refresh_sections,
    rendered,
)
from tests.fuzz.fuzz_connz import LENIENT

GROUPINGS = [(), ("account", "name"), ("name",), ("ip",), ("is_spoke",),
             ("account", "name", "ip", "is_spoke"), ("ip", "account"), ("name", "is_spoke")]


def config_of(byte: int) -> tuple[dict, float]:
    small = bool(byte & 0x10)
    config = dict(group_by=GROUPINGS[byte & 7], max_groups=2 if small else 1000,
                  top_k=1 if small else 3, group_ttl=10.0 if small else 3600.0,
                  closed_slack=0.0 if byte & 8 else 2.0)
    return config, STEPS[(byte >> 5) & 3]


def refreshes(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    return [(body, closed.split(b"\x01") if closed else [])
            for body, closed in refresh_sections(data)]


#: The lenient twin of the reference: fuzz_connz's, reading the closed pages too.
LENIENT_LEAFZ = lenient_copy("fastnats._reference.leafz", _read_body=LENIENT._read_body)


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
    return read_once_last_wins(
        [body, *pages],
        lambda fixed: run(_core.LeafzAggregator(**config), fixed[0], fixed[1:], now))


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
    check_accepted(core, twin, strict, lambda: run(twin, body, pages, now),
                   lambda agg: (agg.count, agg.closed, agg.lost),
                   lambda agg: rendered(agg, config["group_by"], LEAF_GROUP_LABELS))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    config, step = config_of(data[0])
    core = _core.LeafzAggregator(**config)
    twin = LENIENT_LEAFZ.LeafzAggregator(**config) if REFERENCE else None
    for k, (body, pages) in enumerate(refreshes(data[1:])):
        refresh(core, twin, config, body, pages, 1000.0 + step * k)


if __name__ == "__main__":
    main(test_one_input)
