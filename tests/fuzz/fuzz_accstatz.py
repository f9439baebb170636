"""atheris harness of the /accstatz account table, ``_core.AccstatzTable``.

An input is one configuration byte (max_accounts, top-K, TTL, clock steps), then up to four
bodies separated by NUL, taken in turn by one table on a simulated clock. Every input goes to the
core and to the reference, and the harness checks the contract:

- the core raises nothing but the /accstatz decode error (ScrapeError, reason ``decode``);
- core and reference refuse the same bodies and give identical samples for the others, with no
  documented difference: the core's scan refuses what the reference's orjson refuses (invalid
  UTF-8, lone surrogates, infinite numbers), and the reference refuses the nesting the core does;
- a refused body changes nothing, which the samples of the bodies after it show.

Its seeds are in tests/fuzz/corpus/accstatz.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import ScrapeError

from tests.fuzz.common import REFERENCE, Finding, main

MAX_BODIES = 4
TTLS = (0.0, 20.0, 3600.0, float("inf"))


def config_of(byte: int) -> tuple[int, float, int, float]:
    """max_accounts, account_ttl, top_k and the seconds between bodies."""
    return 1 + (byte & 3), TTLS[(byte >> 2) & 3], (byte >> 4) & 3, (1.0, 15.0)[byte >> 7]


def outcome(table, body: bytes, now: float) -> object:
    try:
        return table.update(body, now)
    except ScrapeError as e:
        if e.reason != "decode" or e.endpoint != "accstatz":
            raise Finding(f"not the /accstatz decode error: {e}") from None
        return "refused"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    max_accounts, ttl, top_k, step = config_of(data[0])
    bodies = data[1:].split(b"\x00")[:MAX_BODIES]
    core = _core.AccstatzTable(max_accounts, ttl, top_k, "fuzz")
    ref = _reference.AccstatzTable(max_accounts, ttl, top_k, "fuzz") if REFERENCE else None
    for k, body in enumerate(bodies):
        got = outcome(core, body, k * step)
        if ref is None:
            continue
        want = outcome(ref, body, k * step)
        if got != want or repr(got) != repr(want):
            raise Finding(f"body {k}: core {got!r:.300} reference {want!r:.300}")
        if (core.listed, core.folds, core.first_folded) != (ref.listed, ref.folds,
                                                            ref.first_folded):
            raise Finding(f"body {k}: listed, folds or first_folded differ")


if __name__ == "__main__":
    main(test_one_input)
