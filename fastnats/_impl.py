"""Picks the implementation of the core: the compiled ``_core``, or ``_reference`` on request.

The reference runs only when ``FASTNATS_NO_EXTENSIONS=1`` is set; a missing or broken extension
is an error, never a silent slowdown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING


def _not_built() -> str:
    here = Path(__file__).resolve().parent
    if (here.parent / "pyproject.toml").exists() and (here / "_core.pyx").exists():
        # A checkout on sys.path (the current directory, with python -m) hides an installed
        # fastnats; its own core is built only by an editable install.
        return (f"fastnats._core is not built in the source checkout {here.parent}, which Python "
                f"imported instead of an installed fastnats; run from another directory, or build "
                f"the core in place with: pip install -e {here.parent}")
    return ("fastnats._core is not built; reinstall fastnats (pip install --force-reinstall "
            "fastnats), or set FASTNATS_NO_EXTENSIONS=1 to run the slow pure-Python reference")


if TYPE_CHECKING:
    # Callers are checked against the compiled core's stub; _reference keeps the same contract.
    from . import _core as impl
elif os.environ.get("FASTNATS_NO_EXTENSIONS") == "1":
    from . import _reference as impl
else:
    try:
        from . import _core as impl
    except ImportError as exc:
        raise ImportError(_not_built()) from exc
    if getattr(impl, "__file__", None) is None:
        # Without the built module, the folder of its include parts imports as an empty
        # namespace package.
        raise ImportError(_not_built())

IMPLEMENTATION: str = impl.IMPLEMENTATION
render_text = impl.render_text

__all__ = ["IMPLEMENTATION", "impl", "render_text"]
