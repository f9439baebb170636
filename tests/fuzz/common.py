"""What the atheris harnesses share: the entry point and what a finding is, and for the /connz and
/leafz harnesses the layout of an input, the lenient twin of the reference and the checks of a
refresh.

Each harness is run as a module from the checkout root, with libFuzzer's flags after it::

    python -m tests.fuzz.fuzz_connz -runs=100000 /tmp/out tests/fuzz/corpus/connz

libFuzzer writes the inputs that reach new coverage into the first directory and reads the
others as seeds; an exception from a harness is a finding, saved as ``crash-<sha1>`` (see
``-artifact_prefix``) and replayed by passing that file instead of directories.

With ``FASTNATS_FUZZ_REFERENCE=0`` a harness checks the core's own contract only and leaves the
reference out: the long runs under AddressSanitizer use it, where the pure-Python reference would
take nine tenths of the time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from types import ModuleType

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import ConnzDecodeError, LeafzDecodeError
    from fastnats.metrics import BY_NAME

#: Whether the harnesses compare the core with the reference (see the module docstring).
REFERENCE = os.environ.get("FASTNATS_FUZZ_REFERENCE", "1") != "0"


class Finding(AssertionError):
    """The core broke its contract on an input: a wrong exception, a bad offset, a difference
    from the reference that is not one of the documented ones, or state changed by a failure."""


def main(test_one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


# --- /connz and /leafz: the input layout -------------------------------------------------------

#: Seconds between refreshes, chosen by two bits of the configuration byte.
STEPS = (0.0, 1.0, 15.0, 4000.0)
MAX_REFRESHES = 3


def refresh_sections(data: bytes) -> list[tuple[bytes, bytes | None]]:
    """The (body, closed section) of each refresh in an input after its configuration byte:
    sections separated by NUL, in turn; an empty or missing closed section is None."""
    sections = data.split(b"\x00")[:2 * MAX_REFRESHES]
    return [(sections[k], sections[k + 1] if k + 1 < len(sections) and sections[k + 1] else None)
            for k in range(0, len(sections), 2)]


# --- the lenient twin of the reference ---------------------------------------------------------

#: Refusals of the strict reference that the core need not share (see fuzz_connz).
LAZY = re.compile(r"not valid UTF-8|surrogate|number is infinity")


def _huge_int(text: str) -> int | float:
    # The core never reads an integer of over 20 digits; past Python's 4300 it is only a value.
    return int(text) if len(text) < 4000 else float("inf")


def _no_constant(name: str):
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


class LenientJson:
    """orjson's interface, over the standard library, reading any bytes as UTF-8."""

    JSONDecodeError = json.JSONDecodeError

    @staticmethod
    def loads(body):
        text = bytes(body).decode("utf-8", "surrogateescape")
        return json.loads(text, parse_int=_huge_int, parse_constant=_no_constant)


def lenient_copy(name: str, **replaced: object) -> ModuleType:
    """A second copy of the reference module ``name`` whose JSON reader is LenientJson, and whose
    other ``replaced`` attributes are the ones given."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attribute, value in {"orjson": LenientJson, **replaced}.items():
        setattr(module, attribute, value)
    return module


# --- confirming a documented difference --------------------------------------------------------

def nesting(page: bytes) -> int:
    """The deepest nesting of arrays and objects in a page, strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for c in page:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif c in (0x5D, 0x7D):
            depth -= 1
    return deepest


def last_wins(page: bytes) -> bytes | None:
    """The page with every repeated key given once, its last value; None if no key repeats."""
    repeated = False

    def pairs(items):
        nonlocal repeated
        keys = [k for k, _ in items]
        repeated = repeated or len(set(keys)) != len(keys)
        return dict(items)

    try:
        doc = json.loads(page, object_pairs_hook=pairs)
    except RecursionError:
        return None
    return json.dumps(doc).encode() if repeated else None


def read_once_last_wins(pages: list[bytes], update: Callable[[list[bytes]], None]) -> bool:
    """Whether ``update`` (a fresh core) reads the pages once their repeated keys are given once;
    False if no key repeats."""
    rewritten = [last_wins(p) for p in pages]
    if not any(rewritten):
        return False
    try:
        update([new or old for new, old in zip(rewritten, pages)])
    except (ConnzDecodeError, LeafzDecodeError):
        return False
    return True


# --- an accepted refresh -----------------------------------------------------------------------

def rendered(agg, group_by: tuple[str, ...], group_labels: object) -> bytes:
    """The core's text of an aggregator's snapshot, checked against the reference's writer; the
    families labelled ``group_labels`` are labelled by ``group_by``."""
    families = []
    for name, samples in agg.families().items():
        metric = BY_NAME[name]
        labels = group_by if metric.labels == (group_labels,) else metric.labels
        families.append((metric, labels, samples))
    text = _core.render_text(families)
    if REFERENCE and _reference.render_text(families) != text:
        raise Finding("the text writers differ on the core's snapshot")
    return text


def check_accepted(core, twin, strict: str | None, update_twin: Callable[[], None],
                   totals: Callable[[object], tuple], render: Callable[[object], bytes]) -> None:
    """The checks of a refresh the core read: the strict reference read it too (or refused it for
    a documented reason), and the lenient twin, given it with ``update_twin``, ends with the same
    totals and snapshot. Without a twin, the snapshot renders."""
    if twin is None:
        render(core)
        return
    if strict is not None and not LAZY.search(strict):
        raise Finding(f"the core reads what the reference refuses: {strict}")
    try:
        update_twin()
    except (ConnzDecodeError, LeafzDecodeError) as e:
        raise Finding(f"the core reads what the lenient reference refuses: {e}") from None
    if totals(core) != totals(twin):
        raise Finding(f"totals differ: core {totals(core)}, reference {totals(twin)}")
    if core.families() != twin.families():
        raise Finding("the snapshots differ")
    if render(core) != render(twin):
        raise Finding("the snapshots render differently")
