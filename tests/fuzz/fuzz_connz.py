"""atheris harness of the /connz scanner and aggregator, ``_core.ConnzAggregator``.

An input is one configuration byte, then up to three refreshes: sections separated by NUL, open
body and closed body in turn (an empty closed section is None), each body's pages separated by
\\x01. Neither byte can occur in a valid body, so a seed made of real bodies splits where it was
joined. Every refresh goes to the core and to the reference, and the harness checks the contract:

- the core raises nothing but ConnzDecodeError, whose message names the body (and page) and whose
  offset lies inside that page; a refused refresh leaves the snapshot and the totals as they were;
- core and reference (``_reference.ConnzAggregator``, with orjson) accept and refuse the same
  refreshes, except for the documented differences below, and after an accepted refresh their
  snapshots are equal and render to the same bytes through both text writers.

Documented differences, each confirmed on the input rather than assumed:

- The core checks UTF-8 and ``\\u`` surrogate pairs only in the strings it decodes (label values,
  keys of up to 96 bytes), and reads no number it skips; orjson checks every string and refuses a
  skipped number that overflows a double. The core's state is then compared with a lenient twin
  of the reference that reads any bytes as UTF-8 (surrogateescape) and any number.
- The core refuses nesting deeper than 511 levels below the body; orjson allows 1024.
- A key given twice: both keep the last value, but the core also type-checks the earlier ones
  (it reads as it scans). Such a refusal is confirmed by the core reading the last-wins body.
"""

from __future__ import annotations

import re

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import ConnzDecodeError
    from fastnats.metrics import GROUP_LABELS

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

GROUPINGS = [(), ("account", "name"), ("name",), ("kind",), ("lang", "version"), ("ip",),
             ("account", "name", "lang", "version", "kind", "ip"), ("version", "account")]
WHERE = re.compile(r"^(open|closed) body(?: page (\d+))?: (.+) \(byte (\d+)\)$", re.DOTALL)


def config_of(byte: int) -> tuple[dict, float, bool]:
    """Aggregator settings, seconds between refreshes and whether to pass bytearrays."""
    small = bool(byte & 0x10)
    config = dict(group_by=GROUPINGS[byte & 7], per_connection=bool(byte & 8),
                  max_groups=2 if small else 1000, top_k=1 if small else 3,
                  per_connection_max=2 if small else 1000, group_ttl=10.0 if small else 3600.0)
    return config, STEPS[(byte >> 5) & 3], bool(byte & 0x80)


def refreshes(data: bytes) -> list[tuple[list[bytes], list[bytes] | None]]:
    return [(body.split(b"\x01"), None if closed is None else closed.split(b"\x01"))
            for body, closed in refresh_sections(data)]


def as_argument(pages: list[bytes] | None, mutable: bool):
    if pages is None:
        return None
    pages = [bytearray(p) for p in pages] if mutable else pages
    return pages[0] if len(pages) == 1 else pages


#: The lenient twin of the reference (see the module docstring).
LENIENT = lenient_copy("fastnats._reference.connz")


# --- confirming a documented difference --------------------------------------------------------

def refused_for_a_documented_reason(error: ConnzDecodeError, config: dict, open_pages,
                                    closed_pages) -> bool:
    """Whether a refresh the reference reads was refused by the core for a documented reason."""
    if "nesting too deep" in str(error):
        return nesting(page_of(error, open_pages, closed_pages)) >= 512
    nopen = len(open_pages)
    return read_once_last_wins(
        open_pages + (closed_pages or []),
        lambda fixed: _core.ConnzAggregator(**config).update(fixed[:nopen], fixed[nopen:] or None,
                                                              1.0))


def page_of(error: ConnzDecodeError, open_pages, closed_pages) -> bytes:
    match = WHERE.match(str(error))
    if match is None:
        raise Finding(f"decode error without its body and byte: {error}")
    which, page, _, offset = match.groups()
    pages = open_pages if which == "open" else (closed_pages or [])
    if (page is None) != (len(pages) == 1):
        raise Finding(f"the error names page {page} of {len(pages)}: {error}")
    index = int(page or 1) - 1
    if not 0 <= index < len(pages):
        raise Finding(f"the error names page {page} of {len(pages)}: {error}")
    if int(offset) != error.offset or not 0 <= error.offset <= len(pages[index]):
        raise Finding(f"offset {error.offset} outside the {len(pages[index])}-byte page: {error}")
    return pages[index]


# --- one refresh -------------------------------------------------------------------------------

def strict_outcome(open_pages, closed_pages, now: float) -> str | None:
    """The reference's verdict: decoding does not depend on its state, so a fresh one gives it."""
    try:
        _reference.ConnzAggregator().update(open_pages, closed_pages, now)
    except ConnzDecodeError as e:
        return str(e)
    return None


def refresh(core, twin, config: dict, open_pages, closed_pages, now: float,
            mutable: bool) -> None:
    before, before_totals = core.families(), (core.total, core.count)
    strict = strict_outcome(open_pages, closed_pages, now) if REFERENCE else None
    open_arg, closed_arg = as_argument(open_pages, mutable), as_argument(closed_pages, mutable)
    try:
        core.update(open_arg, closed_arg, now)
    except ConnzDecodeError as e:
        page_of(e, open_pages, closed_pages)
        if core.families() is not before or (core.total, core.count) != before_totals:
            raise Finding(f"a refused refresh changed the snapshot: {e}") from None
        if REFERENCE and strict is None and not refused_for_a_documented_reason(
                e, config, open_pages, closed_pages):
            raise Finding(f"the core refuses what the reference reads: {e}") from None
        return
    check_accepted(core, twin, strict, lambda: twin.update(open_pages, closed_pages, now),
                   lambda agg: (agg.total, agg.count),
                   lambda agg: rendered(agg, config["group_by"], GROUP_LABELS))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    config, step, mutable = config_of(data[0])
    core = _core.ConnzAggregator(**config)
    twin = LENIENT.ConnzAggregator(**config) if REFERENCE else None
    for k, (open_pages, closed_pages) in enumerate(refreshes(data[1:])):
        refresh(core, twin, config, open_pages, closed_pages, 1000.0 + step * k, mutable)


if __name__ == "__main__":
    main(test_one_input)
