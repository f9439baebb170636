"""The suite tests the compiled build: a pure-Python stand-in must never pass for it."""

import importlib.machinery
import os
import subprocess
import sys

import fastnats._core
from fastnats import _impl


def test_core_is_a_compiled_extension():
    assert fastnats._core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), (
        f"fastnats._core was loaded from {fastnats._core.__file__}, not a compiled extension; "
        f"build it with `pip install -e .` or `python setup.py build_ext --inplace`")
    assert fastnats._core.IMPLEMENTATION == "cython"


def test_the_exporter_uses_the_compiled_core():
    assert os.environ.get("FASTNATS_NO_EXTENSIONS") != "1"
    assert _impl.impl is fastnats._core
    assert _impl.IMPLEMENTATION == "cython"


def test_reference_runs_only_when_asked_and_says_so():
    code = ("from fastnats import _impl, collector, metrics;"
            "print(_impl.IMPLEMENTATION)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTNATS_NO_EXTENSIONS": "1"}, check=True)
    assert out.stdout.strip() == "reference"
