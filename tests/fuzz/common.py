"""What the atheris harnesses share: the entry point and what a finding is.

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

import os
import sys
from collections.abc import Callable

import atheris

#: Whether the harnesses compare the core with the reference (see the module docstring).
REFERENCE = os.environ.get("FASTNATS_FUZZ_REFERENCE", "1") != "0"


class Finding(AssertionError):
    """The core broke its contract on an input: a wrong exception, a bad offset, a difference
    from the reference that is not one of the documented ones, or state changed by a failure."""


def main(test_one_input: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
