"""Hostile /connz bodies: every one is refused with a ConnzDecodeError that names its byte, or read
in a documented way, by the compiled core and the reference alike, and none crashes.

The cases: truncation at every structural point, a wrong type for every field the scan reads,
numbers out of range (negative, 2**64, 2**64+1, floats, huge exponents), deep nesting, huge
strings, invalid UTF-8 and escapes, and repeated keys. A refused body leaves the aggregator as it
was. Where the two implementations legitimately differ, the case says so (``reference=False``)
and checks that difference instead of hiding it:

- the core checks UTF-8 and surrogate pairs only in the strings it decodes, and reads no number it
  skips; orjson checks them all, and refuses a skipped number that overflows a double;
- the core refuses nesting deeper than 511 levels below the body, orjson deeper than 1024;
- for a repeated key both keep the last value, but the core also type-checks the earlier ones.

The same cases seed the fuzz corpus (tests/fuzz/make_corpus.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import pytest

from fastnats import _core, _reference
from fastnats.errors import ConnzDecodeError

BASE = {"cid": 7, "kind": "Client", "type": "nats", "ip": "10.0.0.1", "port": 4222,
        "start": "2026-11-25T08:00:00.000000001Z", "rtt": "1.5ms", "idle": "3s",
        "pending_bytes": 12, "in_msgs": 1, "out_msgs": 2, "in_bytes": 3, "out_bytes": 4,
        "subscriptions": 5, "name": "svc", "lang": "go", "version": "1.0", "account": "A"}
MARK = "\x00MARK\x00"
MARK_JSON = orjson.dumps(MARK)
U64 = 2**64
COUNT_FIELDS = ("cid", "pending_bytes", "subscriptions", "in_msgs", "out_msgs", "in_bytes",
                "out_bytes")
LABEL_FIELDS = ("account", "name", "lang", "version", "kind", "ip", "type", "start")
DURATION_FIELDS = ("rtt", "idle")
# The labels the default aggregator decodes: its group_by (account, name) and the connection's
# own (name, account, ip); the others it only steps over.
DECODED = ("account", "name", "ip")
LAZY = r"not valid UTF-8|surrogate|number is infinity"


@dataclass(frozen=True)
class Refused:
    """The core refuses the body: its message matches ``message`` and names byte ``at``. The
    reference refuses it too, unless ``reference`` is False (a documented difference: it reads
    the body)."""

    message: str
    at: int
    reference: bool = True
    closed: Read | None = None     # the expectation in a closed body, where it differs


@dataclass(frozen=True)
class Read:
    """Both read the body to the same snapshot, and ``count`` open connections; with
    ``reference`` False, the reference refuses it for a reason matching ``LAZY`` instead."""

    count: int = 1
    reference: bool = True
    labels: tuple[str, ...] | None = None   # the one group's label values, if checked


def conn_body(field: str, raw: bytes, **changes) -> tuple[bytes, int]:
    """A compact one-connection body whose ``field`` is the raw JSON ``raw``, and the offset of
    that value."""
    conn = {**BASE, **changes, field: MARK}
    body = orjson.dumps({"server_id": "X", "num_connections": 1, "total": 1, "offset": 0,
                         "connections": [conn]})
    return body.replace(MARK_JSON, raw), body.index(MARK_JSON)


def top_body(field: str, raw: bytes) -> tuple[bytes, int]:
    body = orjson.dumps({"server_id": "X", "connections": [BASE], field: MARK})
    return body.replace(MARK_JSON, raw), body.index(MARK_JSON)


def cases() -> list:
    out = []

    def add(case_id: str, body: bytes, expect) -> None:
        out.append(pytest.param(body, expect, id=case_id))

    # -- wrong types and out-of-range numbers, for every field the scan reads ----------------
    not_a_count = {b'"7"': "expected an unsigned integer", b"true": "expected an unsigned integer",
                   b"[]": "expected an unsigned integer", b"{}": "expected an unsigned integer",
                   b"NaN": "expected an unsigned integer", b"1.5": "expected an integer",
                   b"1e3": "expected an integer", b"1E400": "expected an integer",
                   b"0.0": "expected an integer", b"123e-2": "expected an integer",
                   b"-1": "negative number", b"-0.0": "negative number",
                   b"-9223372036854775809": "negative number", b"-": "negative number",
                   str(U64).encode(): r"integer above 2\*\*64-1",
                   str(U64 + 1).encode(): r"integer above 2\*\*64-1",
                   b"99999999999999999999": r"integer above 2\*\*64-1",
                   b"1" + b"0" * 400: r"integer above 2\*\*64-1",
                   b"01": "number with a leading zero"}
    for field in COUNT_FIELDS:
        for raw, message in not_a_count.items():
            body, at = conn_body(field, raw)
            add(f"{field}={raw[:24].decode()}", body, Refused(message, at))
        body, _ = conn_body(field, str(U64 - 1).encode())
        add(f"{field}=2**64-1", body, Read())
        body, _ = conn_body(field, b"-0")
        add(f"{field}=-0", body, Read())
        if field != "cid":
            body, _ = conn_body(field, b"null")
            add(f"{field}=null", body, Read())
    for field in ("total", "num_connections"):
        for raw, message in not_a_count.items():
            body, at = top_body(field, raw)
            add(f"top.{field}={raw[:24].decode()}", body, Refused(message, at))
        for raw in (b"null", b"-0", str(U64 - 1).encode()):
            add(f"top.{field}={raw.decode()}", top_body(field, raw)[0], Read())
    body, at = conn_body("cid", b"null")
    add("cid=null", body, Refused("connection without cid", body.index(b'{"cid"')))
    for field in LABEL_FIELDS + DURATION_FIELDS:
        for raw in (b"7", b"true", b"[]", b"{}", b"1.5", b"-0"):
            body, at = conn_body(field, raw)
            add(f"{field}={raw.decode()}", body, Refused("expected a string", at))
        add(f"{field}=null", conn_body(field, b"null")[0], Read())
        add(f"{field}=empty", conn_body(field, b'""')[0], Read())
    for field in DURATION_FIELDS:
        for raw, message in {b'"1 s"': "invalid duration unit", b'"5x"': "invalid duration unit",
                             b'"1e3s"': "invalid duration unit", b'"1.5.5s"': "invalid duration",
                             b'"ms"': "invalid duration", b'"-"': "invalid duration",
                             b'"9223372036854775808ns"': "duration out of range",
                             b'"106752d"': "duration out of range",
                             b'"\\u0031x"': "invalid duration unit"}.items():
            body, at = conn_body(field, raw)
            add(f"{field}={raw.decode()}", body, Refused(message, at + 1))
        for raw in (b'"0"', b'"-1ms"', b'"1h2m3.5s"', b'"1y2d3h4m5s"', b'"2\\u00b5s"',
                    b'"\\u0031ms"', b'"' + b"0" * 70 + b'\\u0031ms"', b'"0.0000000000000000001s"'):
            add(f"{field}={raw[:20].decode()}", conn_body(field, raw)[0], Read())

    # -- strings: invalid UTF-8, escapes, control characters, huge ones ----------------------
    bad_utf8 = {"ff": b"\xff", "overlong": b"\xc0\x80", "surrogate": b"\xed\xa0\x80",
                "cut": b"\xe2\x82", "above-10ffff": b"\xf4\x90\x80\x80", "lone-cont": b"\x80"}
    expect: Refused | Read
    for field in LABEL_FIELDS:
        for what, raw in bad_utf8.items():
            body, at = conn_body(field, b'"ok' + raw + b'"')
            if field in DECODED:
                # A closed connection's labels are decoded for its group only: not its ip.
                closed = Read(reference=False) if field == "ip" else None
                expect = Refused("invalid UTF-8 in string", at + 3, closed=closed)
            else:
                expect = Read(reference=False)
            add(f"{field}-utf8-{what}", body, expect)
    for what, raw in {"x": b'"\\x"', "hex": b'"\\u12g4"', "short": b'"\\u12"'}.items():
        body, at = conn_body("lang", raw)
        add(f"escape-{what}", body, Refused("invalid .*escape in string", at + 1))
    for what, (raw, message) in {"high": (b'"\\ud800"', "lone high surrogate"),
                                 "low": (b'"\\udc00x"', "lone low surrogate"),
                                 "bad-pair": (b'"\\ud800\\u0041"', "lone high surrogate")}.items():
        body, at = conn_body("name", raw)
        add(f"name-{what}-surrogate", body, Refused(message, at + 1))
        add(f"lang-{what}-surrogate", conn_body("lang", raw)[0], Read(reference=False))
    for what, raw in {"ctl": b"\x01", "newline": b"\n", "tab": b"\t", "del-ok": b"\x7f"}.items():
        body, at = conn_body("name", b'"a' + raw + b'"')
        expect = Read() if what == "del-ok" else Refused("control character in string", at + 2)
        add(f"name-{what}", body, expect)
    add("name-escaped-same-as-raw", conn_body("name", b'"\\u00e9t\\u00e9 \\ud83d\\ude00"')[0],
        Read(labels=("A", "été 😀")))
    add("name-escaped-nul", conn_body("name", b'"a\\u0000b"')[0], Read(labels=("A", "a\x00b")))
    add("name-1MiB", conn_body("name", orjson.dumps("n" * 2**20))[0],
        Read(labels=("A", "n" * 2**20)))
    add("skipped-4MiB", conn_body("x", orjson.dumps("s" * 2**22))[0], Read())
    add("key-1MiB", orjson.dumps({"connections": [BASE], "k" * 2**20: 1}), Read())
    add("key-escaped-cid", conn_body("name", b'"svc"')[0].replace(b'"cid"', b'"\\u0063id"'),
        Read())
    add("key-escaped-connections", top_body("x", b"1")[0].replace(b'"connections"',
                                                                b'"\\u0063onnections"'), Read())
    add("key-bad-utf8", top_body("x", b"1")[0].replace(b'"x"', b'"\xff"'), Read(reference=False))
    add("key-lone-surrogate", top_body("x", b"1")[0].replace(b'"x"', b'"\\ud800"'),
        Refused("lone high surrogate", top_body("x", b"1")[0].index(b'"x"') + 1))
    body, at = conn_body("name", b'"svc"')
    add("key-not-a-string", body.replace(b'{"cid"', b'{7:1,"cid"'),
        Refused("expected a key", body.index(b'{"cid"') + 1))

    # -- numbers the scan skips ---------------------------------------------------------------
    for what, raw in {"1e400": b"1e400", "digits": b"1" * 100_000, "-1e400": b"-1e400"}.items():
        add(f"skipped-{what}", conn_body("port", raw)[0], Read(reference=False))
    for raw in (b"-0", b"1e-400", str(U64 + 1).encode(), b"-9223372036854775809", b"0.5e+10"):
        add(f"skipped-{raw.decode()}", conn_body("port", raw)[0], Read())
    for raw, message, shift in ((b"01", "expected ',' or '}' in a connection", 1),
                                (b"1.", "invalid number", 0), (b"1e", "invalid number", 0),
                                (b"+1", "unexpected character", 0),
                                (b"Infinity", "unexpected character", 0),
                                (b"0x10", "expected ',' or '}' in a connection", 1)):
        body, at = conn_body("port", raw)
        add(f"skipped-{raw.decode()}", body, Refused(message, at + shift))

    # -- nesting ------------------------------------------------------------------------------
    for depth in (510, 511, 1100):
        body, at = conn_body("tags", b"[" * depth + b"]" * depth)
        expect = Read() if depth == 510 else Refused("nesting too deep", at + 510,
                                                     reference=depth > 1000)
        add(f"nested-{depth}", body, expect)
    for depth in (511, 512):
        body, at = top_body("x", b"[" * depth + b"]" * depth)
        expect = Read() if depth == 511 else Refused("nesting too deep", at + 511,
                                                     reference=False)
        add(f"top-nested-{depth}", body, expect)
    body, at = top_body("x", b'{"a":' * 600 + b"1" + b"}" * 600)
    add("top-nested-objects", body, Refused("nesting too deep", at + 5 * 511, reference=False))

    # -- repeated keys: the last value counts --------------------------------------------------
    body = conn_body("name", b'"a"')[0]
    add("repeated-cid", body.replace(b'{"cid":7', b'{"cid":7,"cid":9'), Read())
    add("repeated-name", body.replace(b'"name":"a"', b'"name":"a","name":"b"'),
        Read(labels=("A", "b")))
    add("repeated-name-null", body.replace(b'"name":"a"', b'"name":"a","name":null'),
        Read(labels=("A", "")))
    add("repeated-connections", body.replace(b'"server_id"', b'"connections":[],"server_id"'),
        Read())
    add("repeated-connections-emptied", body[:-1] + b',"connections":null}', Read(count=0))
    add("repeated-total", body.replace(b'"total":1', b'"total":5,"total":1'), Read())
    at = body.index(b'"cid":7') + 6
    add("repeated-cid-bad-first", body.replace(b'{"cid":7', b'{"cid":"x","cid":9'),
        Refused("expected an unsigned integer", at, reference=False))
    at = body.index(b'"server_id"') + 15
    add("repeated-connections-bad-first",
        body.replace(b'"server_id"', b'"connections":[1],"connections":[],"server_id"', 1),
        Refused("a connection is not an object", at, reference=False))

    # -- the body itself ---------------------------------------------------------------------
    good = conn_body("name", b'"svc"')[0]
    for raw, message, at in ((b"", "empty body", 0), (b" \n\t\r", "empty body", 4),
                             (b"[]", "not a JSON object", 0), (b"null", "not a JSON object", 0),
                             (b'"connections"', "not a JSON object", 0),
                             (b"{}", "no connections array", 1),
                             (b'{"total":1}', "no connections array", 10),
                             (b'{"connections":{}}', "connections is not an array", 15),
                             (b'{"connections":"[]"}', "connections is not an array", 15),
                             (b"\xef\xbb\xbf" + good, "not a JSON object", 0),
                             (good + b"x", "data after the JSON object", len(good)),
                             (good + good, "data after the JSON object", len(good)),
                             (b'{"connections":[]}\x00', "data after the JSON object", 18)):
        add(f"body-{raw[:12]!r}", raw, Refused(message, at))
    add("body-padded", b" \r\n\t" + good + b" \n", Read())
    return out


def truncations() -> list:
    """A two-connection body cut before and after every structural byte."""
    body = orjson.dumps({"server_id": "X", "total": 2, "connections": [
        {**BASE, "tags": ["a", {"b": [1, None, True]}]}, {**BASE, "cid": 8, "name": "é"}]})
    cuts = sorted({k + d for k, c in enumerate(body) if c in b'{}[]:,"' for d in (0, 1)})
    return [pytest.param(body[:cut], id=f"cut-{cut}") for cut in cuts if cut < len(body)]


CASES = cases()
# An open body whose one connection (cid 1) is none of the cases' (cid 7).
GOOD = conn_body("name", b'"svc"', cid=1)[0]


def outcome(impl, open_body, closed_body=None):
    agg = impl()
    try:
        agg.update(open_body, closed_body, 1.0)
    except ConnzDecodeError as e:
        return agg, e
    return agg, None


@pytest.mark.parametrize("where", ["open", "closed"])
@pytest.mark.parametrize("body, expect", CASES)
def test_hostile_body(body, expect, where):
    args = (body, None) if where == "open" else (GOOD, body)
    if where == "closed" and isinstance(expect, Refused) and expect.closed is not None:
        expect = expect.closed
    core, core_error = outcome(_core.ConnzAggregator, *args)
    ref, ref_error = outcome(_reference.ConnzAggregator, *args)
    if isinstance(expect, Refused):
        assert core_error is not None, "the core read a body it must refuse"
        assert str(core_error).startswith(f"{where} body: "), str(core_error)
        assert re.search(expect.message, str(core_error)), str(core_error)
        assert core_error.offset == expect.at, str(core_error)
        assert str(core_error).endswith(f"(byte {expect.at})")
        if expect.reference:
            assert ref_error is not None, "the reference read a body the core refuses"
        else:
            assert ref_error is None, f"documented difference gone: {ref_error}"
        return
    assert core_error is None, str(core_error)
    if not expect.reference:
        assert ref_error is not None and re.search(LAZY, str(ref_error)), ref_error
        return
    assert ref_error is None, str(ref_error)
    assert core.families() == ref.families()
    if where == "closed":
        return
    assert (core.count, ref.count) == (expect.count, expect.count)
    if expect.labels is not None:
        assert [labels for labels, _ in core.families()["nats_client_connections"]] \
            == [expect.labels]


@pytest.mark.parametrize("body", truncations())
def test_truncated_body(body):
    for impl in (_core.ConnzAggregator, _reference.ConnzAggregator):
        with pytest.raises(ConnzDecodeError) as err:
            impl().update(body, None, 1.0)
        if impl is _core.ConnzAggregator:
            assert 0 <= err.value.offset <= len(body), str(err.value)


def test_a_refused_body_changes_nothing_and_the_next_is_read():
    agg, twin = _core.ConnzAggregator(), _reference.ConnzAggregator()
    for a in (agg, twin):
        a.update(GOOD, None, 1.0)
    before = agg.families()
    for param in CASES + truncations():
        body, *expect = param.values
        if expect and not isinstance(expect[0], Refused):
            continue
        with pytest.raises(ConnzDecodeError):
            agg.update(body, None, 2.0)
        assert agg.families() is before and (agg.total, agg.count) == (1, 1)
    second = conn_body("name", b'"svc"', cid=1, in_msgs=10)[0]
    for a in (agg, twin):
        a.update(second, None, 3.0)
    assert agg.families() == twin.families()


def test_an_escaped_start_is_the_same_start():
    # The same start time, escaped, is the same connection: its counters go on, not restart.
    agg, twin = _core.ConnzAggregator(), _reference.ConnzAggregator()
    first = conn_body("start", b'"2026"', in_msgs=5)[0]
    second = conn_body("start", b'"\\u0032026"', in_msgs=7)[0]
    for a in (agg, twin):
        a.update(first, None, 1.0)
        a.update(second, None, 2.0)
    assert agg.families() == twin.families()
    assert dict(agg.families()["nats_client_in_messages_total"]) == {("A", "svc"): 7}
