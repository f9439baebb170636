"""Picks the implementation of the core: the compiled ``_core``, or ``_reference`` on request.

The reference runs only when ``FASTNATS_NO_EXTENSIONS=1`` is set; a missing or broken extension
is an error, never a silent slowdown.
"""

from __future__ import annotations

import os

if os.environ.get("FASTNATS_NO_EXTENSIONS") == "1":
    from . import _reference as impl
else:
    try:
        from . import _core as impl
    except ImportError as exc:
        raise ImportError(
            "fastnats._core is not built; reinstall fastnats (pip install --force-reinstall "
            "fastnats), or set FASTNATS_NO_EXTENSIONS=1 to run the slow pure-Python reference"
        ) from exc

IMPLEMENTATION: str = impl.IMPLEMENTATION
render_text = impl.render_text

__all__ = ["IMPLEMENTATION", "impl", "render_text"]
