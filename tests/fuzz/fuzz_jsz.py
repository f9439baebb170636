"""atheris harness of the /jsz listing, ``_core.JszListing``.

An input is one configuration byte (level, replicas, top-K, metadata keys, which server reads),
then up to three pages separated by NUL, read in turn by one listing. Every input goes to the
core and to the reference, and the harness checks the contract:

- the core raises nothing but the /jsz decode error (ScrapeError, reason ``decode``);
- core and reference accept and refuse the same pages, except for the differences documented
  in fuzz_connz (the reference's orjson refuses invalid UTF-8 and lone surrogates in strings
  the walk never decodes, nesting past 511 levels; the core reads a repeated key's last value
  as orjson does), and after accepted pages both listings are equal, attribute for attribute.

Its seeds are in tests/fuzz/corpus/jsz.
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.collectors.jsz import LEVELS, JszOptions
    from fastnats.errors import ScrapeError

from tests.fuzz.common import REFERENCE, Finding, LenientJson, main, nesting

ATTRIBUTES = ("clustered", "server", "disabled", "total", "paged", "streams_held",
              "consumers_held", "accounts_seen", "accounts", "account_streams", "streams",
              "sources", "replica_rows", "durables", "ephemeral", "top")
SERVERS = ("A1", "A2", "A3", "solo")


def config_of(byte: int) -> tuple[str, JszOptions]:
    options = JszOptions(LEVELS[byte & 3], replicas=bool(byte & 4),
                         top_k=(0, 2, 10)[(byte >> 3) % 3],
                         stream_meta_keys=("team",) if byte & 0x20 else (),
                         consumer_meta_keys=("owner",) if byte & 0x20 else ())
    return SERVERS[byte >> 6], options


def outcome(listing, pages: list[bytes]) -> tuple | str:
    try:
        counts = [listing.read(page) for page in pages]
    except ScrapeError as e:
        if e.reason != "decode" or e.endpoint != "jsz":
            raise Finding(f"not the /jsz decode error: {e}") from None
        return str(e)
    return counts, [getattr(listing, name) for name in ATTRIBUTES]


def lenient(me: str, options: JszOptions, pages: list[bytes]) -> tuple | str:
    """The reference with the standard library's JSON reader, reading any bytes as UTF-8."""
    original = _reference.jsz.decode_json

    def decode(endpoint, body):
        try:
            doc = LenientJson.loads(body)
        except (ValueError, RecursionError) as e:
            raise ScrapeError(endpoint, "decode", f"malformed JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ScrapeError(endpoint, "decode", "not an object")
        return doc

    _reference.jsz.decode_json = decode
    try:
        return outcome(_reference.JszListing(me, options), pages)
    finally:
        _reference.jsz.decode_json = original


def test_one_input(data: bytes) -> None:
    if not data:
        return
    me, options = config_of(data[0])
    pages = data[1:].split(b"\x00")[:3]
    core = outcome(_core.JszListing(me, options), pages)
    if not REFERENCE:
        return
    strict = outcome(_reference.JszListing(me, options), pages)
    if isinstance(core, str) and isinstance(strict, str) or core == strict:
        return
    if isinstance(core, str):
        if "nesting too deep" in core and any(nesting(p) >= 512 for p in pages):
            return
        raise Finding(f"the core refuses what the reference reads: {core}")
    twin = lenient(me, options, pages)
    if twin != core:
        raise Finding(f"core and reference differ: reference {strict!r:.300}")


if __name__ == "__main__":
    main(test_one_input)
