"""The suite tests the compiled build: a pure-Python stand-in must never pass for it. The core's
sources keep their layout (.pyx/.pxd/.pyi together, one concern per include part) and their
dependency rules, and they ship in the sdist and the wheel."""

import ast
import glob
import importlib.machinery
import importlib.util
import os
import re
from pathlib import Path

import pytest

import fastnats._core
from fastnats import _impl

PACKAGE = Path(fastnats.__file__).parent
ROOT = PACKAGE.parent
PARTS = PACKAGE / "_core"
CORE_SOURCES = [PACKAGE / "_core.pyx", PACKAGE / "_core.pxd", *sorted(PARTS.glob("*.pxi"))]
REFERENCE_SOURCES = sorted((PACKAGE / "_reference").glob("*.py"))


def test_core_is_a_compiled_extension():
    assert fastnats._core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), (
        f"fastnats._core was loaded from {fastnats._core.__file__}, not a compiled extension; "
        f"build it with `pip install -e .` or `python setup.py build_ext --inplace`")
    assert fastnats._core.IMPLEMENTATION == "cython"
    # The directory of include parts beside it is not a package that could shadow it.
    assert importlib.util.find_spec("fastnats._core").origin == fastnats._core.__file__


def test_the_exporter_uses_the_compiled_core():
    assert os.environ.get("FASTNATS_NO_EXTENSIONS") != "1"
    assert _impl.impl is fastnats._core
    assert _impl.IMPLEMENTATION == "cython"


def test_the_extension_is_built_from_the_current_sources():
    built = Path(fastnats._core.__file__).stat().st_mtime
    stale = [p.name for p in CORE_SOURCES if p.stat().st_mtime > built]
    assert not stale, (f"{', '.join(stale)} changed after fastnats._core was built; rebuild it "
                       f"with `pip install -e . --no-build-isolation`")


def test_core_parts_are_included_once_and_stay_small():
    assert not (PARTS / "__init__.py").exists()
    included = re.findall(r'^include "_core/(\w+\.pxi)"$', (PACKAGE / "_core.pyx").read_text(),
                          re.MULTILINE)
    assert sorted(included) == sorted(p.name for p in PARTS.glob("*.pxi"))
    assert len(set(included)) == len(included)
    for path in CORE_SOURCES:
        lines = path.read_text().count("\n")
        assert lines <= 600, f"{path.name} has {lines} lines; split it by concern"


def python_imports(source: str) -> set[str]:
    """Modules a Cython or Python source imports at run time (cimports excluded)."""
    out = set()
    for match in re.finditer(r"^\s*from\s+([\w.]+)\s+import\s|^\s*import\s+([\w.]+)", source,
                             re.MULTILINE):
        out.add(match[1] or match[2])
    return out


def test_core_imports_only_errors_the_catalogue_and_the_time_parser():
    for path in CORE_SOURCES:
        assert python_imports(path.read_text()) <= {"fastnats.errors", "fastnats.metrics",
                                                     "fastnats.rfc3339"}, path


def test_reference_imports_neither_the_core_nor_prometheus_client():
    for path in REFERENCE_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" if node.module else a.name
                         for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert "_core" not in name.split(".") and "prometheus_client" not in name, \
                    f"{path.name} imports {name}"


def test_family_names_come_from_the_catalogue():
    # A family named by a string literal could drift from metrics.py unseen.
    literal = re.compile(r"""["'](?:nats|fastnats)_\w+["']""")
    for path in CORE_SOURCES + REFERENCE_SOURCES:
        found = literal.findall(path.read_text())
        assert not found, f"{path.name} spells family names: {found}"


def test_sdist_and_wheel_carry_the_core_sources():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "fastnats._reference" in config["packages"]
    # setuptools globs each pattern in the package's directory.
    shipped = {name for pattern in config["package-data"]["fastnats"]
               for name in glob.glob(pattern, root_dir=PACKAGE)}
    for path in [PACKAGE / "_core.pyi", *CORE_SOURCES]:
        relative = path.relative_to(PACKAGE).as_posix()
        assert relative in shipped, f"{relative} would not ship"
