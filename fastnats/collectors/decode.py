"""Decoding helpers the collectors share: JSON documents, typed fields and their times."""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from typing import TypeVar

import orjson

from ..errors import ScrapeError
from ..rfc3339 import parse_rfc3339_ns
from .base import DECODE

_T = TypeVar("_T")

#: Bodies larger than this are decoded on a worker thread: a big one would hold the event loop,
#: and a thread hop costs more than a small one.
THREAD_ABOVE = 65536


async def off_loop(size: int, fn: Callable[..., _T], *args: object) -> _T:
    """``fn(*args)``, on a worker thread when it reads more than ``THREAD_ABOVE`` bytes."""
    if size > THREAD_ABOVE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


_CHUNK = 1 << 20


def check_utf8(endpoint: str, body: bytes | bytearray) -> None:
    """Raise ``ScrapeError(endpoint, "decode")`` unless ``body`` is valid UTF-8, as JSON must be.

    For a scanner that decodes only the strings it exports: a body of tens of MB is checked a
    megabyte at a time, and a chunk of ASCII (most of every body) costs a ``isascii`` pass."""
    if body.isascii():
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    at = 0
    try:
        for at in range(0, len(body), _CHUNK):
            chunk = body[at:at + _CHUNK]
            # A chunk of ASCII is valid unless a sequence was cut before it; then it starts
            # with a continuation byte, and is no ASCII.
            if not decoder.getstate()[0] and chunk.isascii():
                continue
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ScrapeError(endpoint, DECODE, f"/{endpoint} is not UTF-8: {exc.reason}, in "
                                            f"the megabyte from byte {at}") from None


def decode_json(endpoint: str, body: bytes | bytearray) -> dict:
    """The JSON object in ``body``; anything else raises ``ScrapeError(endpoint, "decode")``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ScrapeError(endpoint, DECODE, f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ScrapeError(endpoint, DECODE, f"expected a JSON object, got {type(doc).__name__}")
    return doc


#: The largest counter nats-server can report (a Go uint64).
U64_MAX = 2**64 - 1


class Fields:
    """Typed reads of one JSON object of an endpoint; every problem is that endpoint's decode
    error, naming the field and what was expected.

    One rule for every endpoint, the same as the /connz scanner's: a counter or a count is a JSON
    integer from 0 to 2**64-1 (no sign, no fraction, no exponent, not a boolean); a gauge is a
    finite JSON number, not negative unless asked; a text is a JSON string.
    """

    __slots__ = ("endpoint", "doc", "path")

    def __init__(self, endpoint: str, doc: object, path: str = "") -> None:
        if not isinstance(doc, dict):
            raise self._error_for(endpoint, path or "the document", doc, "an object")
        self.endpoint = endpoint
        self.doc = doc
        self.path = path

    @staticmethod
    def _error_for(endpoint: str, where: str, value: object, expected: str) -> ScrapeError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return ScrapeError(endpoint, DECODE, f"/{endpoint} {where} is {shown}, not {expected}")

    def _error(self, key: str, value: object, expected: str) -> ScrapeError:
        return self._error_for(self.endpoint, self.path + key, value, expected)

    def _get(self, key: str) -> object:
        try:
            return self.doc[key]
        except KeyError:
            raise ScrapeError(self.endpoint, DECODE,
                              f"/{self.endpoint} has no {self.path + key}") from None

    def has(self, key: str) -> bool:
        return key in self.doc

    def counter(self, key: str) -> int:
        """A counter or a count: an integer from 0 to 2**64-1."""
        value = self._get(key)
        if type(value) is not int or not 0 <= value <= U64_MAX:
            raise self._error(key, value, "a count from 0 to 2**64-1")
        return value

    def gauge(self, key: str, *, signed: bool = False) -> int | float:
        """A finite number; not negative unless ``signed``."""
        value = self._get(key)
        if type(value) not in (int, float) or value != value or value in (_INF, -_INF) or (
                not signed and value < 0):  # type: ignore[operator]
            raise self._error(key, value, "a finite number" if signed
                              else "a finite number of at least 0")
        return value  # type: ignore[return-value]

    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.doc:
            return default
        value = self._get(key)
        if not isinstance(value, str):
            raise self._error(key, value, "a string")
        return value

    def time_ns(self, key: str) -> int:
        """An RFC 3339 time, as Unix nanoseconds."""
        text = self.text(key)
        try:
            return parse_rfc3339_ns(text)
        except ValueError:
            raise self._error(key, text, "an RFC 3339 time") from None

    def array(self, key: str, *, required: bool = True) -> list[object]:
        """The JSON array at ``key``; null is empty, and so is absent unless ``required``."""
        if required:
            self._get(key)
        value = self.doc.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._error(key, value, "an array")
        return value

    def texts(self, key: str) -> list[str]:
        """An array of strings; absent or null is empty."""
        value = self.array(key, required=False)
        if not all(isinstance(item, str) for item in value):
            raise self._error(key, value, "an array of strings")
        return value  # type: ignore[return-value]

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if type(value) is not bool:
            raise self._error(key, value, "true or false")
        return value

    def object(self, key: str) -> Fields | None:
        """The object at ``key``; None when it is absent or null."""
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._error(key, value, "an object")
        return Fields(self.endpoint, value, f"{self.path}{key}.")


_INF = float("inf")
