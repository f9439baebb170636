"""Renders families into the bytes served on /metrics: classic text format 0.0.4, plain and gzip.

Rendering happens once per refresh, never per request.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from ._impl import render_text
from .interop import Family

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    # wbits=31 writes a gzip header with mtime 0, so equal text gives equal bytes.
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def render(families: Iterable[Family]) -> tuple[bytes, bytes]:
    """The exposition text and its gzip encoding."""
    text = render_text(families)
    return text, gzip_bytes(text)
