"""Picks the implementation of the core: the compiled ``_core``, or ``_reference`` on request.

The reference runs only when ``FASTNATS_NO_EXTENSIONS=1`` is set; a missing or broken extension
is an error, never a silent slowdown.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Callers are checked against the compiled core's stub; _reference keeps the same contract.
    from . import _core as impl
elif os.environ.get("FASTNATS_NO_EXTENSIONS") == "1":
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
