"""AccstatzTable: the compiled core against the reference, on generated sequences of bodies.

Each example is a simulated nats-server listing its accounts refresh after refresh: accounts
appear, vanish and come back, counters move or fall without a restart, gauges move, names are
hostile (markers, NUL, non-ASCII, escaped or not, long, empty), the exporter's clock advances,
sometimes past the TTL, and the server's clock stands still or goes back. Both tables get every
body: their samples must be identical (keys, order, labels, ints, floats) and their renderings
the same bytes. Hostile bodies (wrong types, numbers out of range, repeated keys, escapes, deep
nesting, invalid UTF-8, every truncation, mutations) are refused alike or read alike, and a
refused body changes nothing: the next good body gives what it would have given without it.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnats import _core, _reference
from fastnats.collectors.base import DECODE
from fastnats.errors import ScrapeError
from fastnats.metrics import BY_NAME
from tests.support.series import assert_well_formed

NAMES = ["A", "B", "C", "D", "E", "_other", "__other", "_unknown", "a\x00b", "é", "名前",
         "\U0001F600", "x" * 300, "", "Z", "AA", "a\"b\\c\n"]
U64_MAX = 2**64 - 1
START = 1_800_000_000


def tables(max_accounts: int = 2, ttl: float = 60.0, top_k: int = 2):
    return (_core.AccstatzTable(max_accounts, ttl, top_k, "sim"),
            _reference.AccstatzTable(max_accounts, ttl, top_k, "sim"))


def stamp(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:09d}Z" if frac else text + "Z"


def entry(name: str, gauges, counters, extra: bool = True) -> dict:
    sent = {"msgs": counters[0], "bytes": counters[1]}
    received = {"msgs": counters[2], "bytes": counters[3]}
    out = {"acc": name, "conns": gauges[0], "leafnodes": gauges[1],
           "num_subscriptions": gauges[2], "sent": sent, "received": received,
           "slow_consumers": counters[4]}
    if extra:
        out["name"] = name
        out["total_conns"] = gauges[0] + gauges[1]
        sent["routes"] = received["leafs"] = {"msgs": 0, "bytes": 0}
    return out


def render(entries: list[dict], now_ns: int = START * 10**9, *, ascii_only: bool = False,
           indent: int | None = None) -> bytes:
    doc = {"server_id": "NSIM", "now": stamp(now_ns), "account_statz": entries}
    return json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode()


def outcome(table, body: bytes, now: float) -> object:
    try:
        return table.update(body, now)
    except ScrapeError as e:
        assert e.endpoint == "accstatz" and e.reason == DECODE, e
        return "refused"


def text_of(samples: dict) -> bytes:
    return _reference.render_text([(BY_NAME[name], BY_NAME[name].labels, rows)
                                   for name, rows in samples.items()])


def same(core, ref, body: bytes, now: float) -> object:
    got = outcome(core, body, now)
    want = outcome(ref, body, now)
    assert got == want
    if got != "refused":
        assert [list(map(repr, rows)) for rows in got.values()] == \
            [list(map(repr, rows)) for rows in want.values()], "a value differs in type"
        text = _core.render_text([(BY_NAME[name], BY_NAME[name].labels, rows)
                                  for name, rows in got.items()])
        assert text == text_of(want)
        assert_well_formed(text)
        assert (core.listed, core.folds, core.first_folded) == \
            (ref.listed, ref.folds, ref.first_folded)
    return got


counter = st.one_of(st.integers(0, 1000), st.sampled_from([2**32, 2**63, U64_MAX - 1, U64_MAX]))


@st.composite
def scenario(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    config = (draw(st.integers(1, 4)), draw(st.sampled_from([0.0, 30.0, 3600.0])),
              draw(st.integers(0, 3)))
    state = {name: [[0, 0, 0], [0, 0, 0, 0, 0]] for name in names}
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        listed = draw(st.lists(st.sampled_from(names), unique=True))
        entries = []
        for name in listed:
            gauges, counters = state[name]
            for k in range(3):
                gauges[k] = draw(st.sampled_from([gauges[k], 0, 1, 3, U64_MAX]))
            for k in range(5):
                move = draw(st.sampled_from(["same", "same", "up", "fall", "jump"]))
                if move == "up":
                    counters[k] = min(U64_MAX, counters[k] + draw(st.integers(1, 500)))
                elif move == "fall":
                    counters[k] = draw(st.integers(0, counters[k]))
                elif move == "jump":
                    counters[k] = draw(counter)
            entries.append(entry(name, list(gauges), list(counters), draw(st.booleans())))
        seconds = draw(st.sampled_from([0.0, 1.0, 10.0, 29.5, 30.0, 100.0, 5000.0]))
        server = draw(st.sampled_from([-5, 0, 0, 1, 15, 2.5]))
        steps.append((entries, seconds, server, draw(st.booleans()),
                      draw(st.sampled_from([None, 2]))))
    return config, steps


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_generated_sequences_agree(case):
    (max_accounts, ttl, top_k), steps = case
    core, ref = tables(max_accounts, ttl, top_k)
    now, server_ns = 1000.0, START * 10**9
    for entries, seconds, server, ascii_only, indent in steps:
        now += seconds
        server_ns += int(server * 1e9)
        same(core, ref, render(entries, server_ns, ascii_only=ascii_only, indent=indent), now)


def test_many_accounts_and_long_runs_agree():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    core, ref = tables(max_accounts=50, ttl=100.0, top_k=10)
    names = [f"ACC{i:04d}" for i in range(400)]
    state = {name: [0] * 5 for name in names}
    now = 0.0
    for step in range(40):
        now += rng.choice([5.0, 15.0, 60.0])
        entries = []
        for name in rng.sample(names, rng.randrange(200, 400)):
            c = state[name]
            if rng.random() < 0.3:
                c[rng.randrange(5)] += rng.randrange(1, 1000)
            if rng.random() < 0.01:
                c[0] = 0
            entries.append(entry(name, [rng.randrange(3), rng.randrange(2), rng.randrange(9)],
                                 list(c)))
        same(core, ref, render(entries, (START + step * 15) * 10**9), now)


def test_sums_past_2_64_stay_exact():
    core, ref = tables(max_accounts=1, top_k=1)
    big = [U64_MAX] * 5
    for step, counters in enumerate([big, [1] * 5, big, [0] * 5, big]):
        entries = [entry("A", [1, 0, 0], counters), entry("B", [U64_MAX, U64_MAX, U64_MAX],
                                                          counters)]
        out = same(core, ref, render(entries, (START + step) * 10**9), float(step))
    assert max(value for _, value in out["nats_account_sent_messages_total"]) > U64_MAX


def test_ties_go_by_name():
    # Accounts alike but for their names: who is placed, who loses its place and who leads the
    # top-K depend on the names only, never on the order of the body or of the table.
    sent = "nats_account_sent_messages_total"
    for impl in (_core, _reference):
        table = impl.AccstatzTable(2, 3600.0, 1)
        busy = [entry(name, [1, 0, 0], [1, 0, 0, 0, 0]) for name in "DCBA"]
        out = table.update(render(busy, START * 10**9), 0.0)
        assert [labels for labels, _ in out[sent]] == [("A",), ("B",), ("_other",)]
        # A and B gone since the same refresh: the lower name gives its place up first.
        out = table.update(render([entry("C", [1, 0, 0], [2, 0, 0, 0, 0])],
                                  (START + 10) * 10**9), 10.0)
        assert [labels for labels, _ in out[sent]] == [("B",), ("C",), ("_other",)]
        # C and D moved alike: the top-K names the higher label.
        out = table.update(render([entry("C", [1, 0, 0], [7, 0, 0, 0, 0]),
                                   entry("D", [1, 0, 0], [6, 0, 0, 0, 0])],
                                  (START + 20) * 10**9), 20.0)
        assert out["nats_account_top_sent_messages_per_second"] == [(("D",), 0.5)]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789\u0663\u0966-:.TZtz+ \n", min_size=18, max_size=34)
       | st.tuples(st.sampled_from(["1970-01-01T00:00:00", "2026-02-28T23:59:59",
                                    "2024-02-29T12:00:00", "0001-01-01T00:00:00",
                                    "9999-12-31T23:59:59", "2026-13-01T00:00:00"]),
                   st.text(alphabet="019\u0663\u0966", max_size=12),
                   st.sampled_from(["Z", "+05:30", "-23:59", "+00:99", "+24:00", "Z\n", "z"]),
                   ).map(lambda p: p[0] + ("." + p[1] if p[1] else "") + p[2]))
def test_server_clocks_are_read_alike(now):
    # The rate of an account that moved 10**18 messages shows the seconds between the clocks.
    core, ref = tables(max_accounts=1, top_k=1)
    first = render([entry("A", [1, 0, 0], [0] * 5)], 1_000_000_000 * 10**9)
    moved = json.dumps({"now": now, "account_statz": [entry("A", [1, 0, 0], [10**18] * 5)]})
    for body in (first, moved.encode(), render([entry("A", [1, 0, 0], [2 * 10**18] * 5)],
                                               2_000_000_000 * 10**9)):
        same(core, ref, body, 1.0)


# --- hostile bodies --------------------------------------------------------------------------

GOOD = [entry("A", [1, 0, 2], [5, 50, 1, 10, 0]), entry("B", [0, 0, 0], [0, 0, 0, 0, 0])]
NOW = '"now": "2026-11-29T19:05:42Z"'


def doc(*members: str) -> bytes:
    return ("{" + ", ".join(members) + "}").encode()


def statz(*entries: str) -> str:
    return '"account_statz": [' + ", ".join(entries) + "]"


def account(acc: str = '"A"', **fields: str) -> str:
    values = {"acc": acc, "conns": "1", "leafnodes": "0", "num_subscriptions": "2",
              "slow_consumers": "0", "sent": '{"msgs": 5, "bytes": 50}',
              "received": '{"msgs": 1, "bytes": 10}'}
    values.update(fields)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items() if v is not None) + "}"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE = {
    "empty": b"", "spaces": b"  ", "array": b"[]", "null": b"null", "string": b'"x"',
    "bom": b"\xef\xbb\xbf" + doc(NOW, statz()), "trailing": doc(NOW, statz()) + b" x",
    "two-docs": doc(NOW, statz()) * 2, "nul-after": doc(NOW, statz()) + b"\x00",
    "no-now": doc(statz()), "now-number": doc('"now": 5', statz()),
    "now-null": doc('"now": null', statz()),
    "now-offset": doc('"now": "2026-11-29T19:05:42.5+05:30"', statz(account())),
    "now-long-fraction": doc('"now": "2026-11-29T19:05:42.1234567891234Z"', statz(account())),
    "now-bad-day": doc('"now": "2026-02-30T19:05:42Z"', statz()),
    "now-hour-24": doc('"now": "2026-11-29T24:00:00Z"', statz()),
    "now-offset-24": doc('"now": "2026-11-29T19:05:42+24:00"', statz()),
    "now-offset-minutes": doc('"now": "2026-11-29T19:05:42+01:60"', statz()),
    "now-newline": doc('"now": "2026-11-29T19:05:42Z\\n"', statz(account())),
    "now-arabic-fraction": doc('"now": "2026-11-29T19:05:42.\\u0663Z"', statz(account())),
    "now-arabic-year": doc('"now": "\\u0662026-11-29T19:05:42Z"', statz(account())),
    "now-escaped": doc('"now": "2026-11-29T19:05:42\\u005a"', statz(account())),
    "now-lowercase": doc('"now": "2026-11-29t19:05:42z"', statz()),
    "now-twice": doc('"now": 5', NOW, statz(account())),
    "no-list": doc(NOW), "list-null": doc(NOW, '"account_statz": null'),
    "list-object": doc(NOW, '"account_statz": {}'),
    "list-twice-bad-first": doc(NOW, statz("5"), statz(account())),
    "list-twice-bad-last": doc(NOW, statz(account()), '"account_statz": 5'),
    "list-twice-good": doc(NOW, statz(account('"X"')), statz(account(), account('"B"'))),
    "entry-number": doc(NOW, statz("5")), "entry-null": doc(NOW, statz("null")),
    "entry-empty": doc(NOW, statz("{}")),
    "acc-number": doc(NOW, statz(account("7"))), "acc-null": doc(NOW, statz(account("null"))),
    "acc-missing": doc(NOW, statz(account(None))),
    "acc-empty": doc(NOW, statz(account('""'))),
    "acc-nul": doc(NOW, statz(account('"a\\u0000b"'))),
    "acc-pair": doc(NOW, statz(account('"\\ud83d\\ude00"'))),
    "acc-lone-high": doc(NOW, statz(account('"\\ud83d"'))),
    "acc-lone-low": doc(NOW, statz(account('"\\ude00x"'))),
    "acc-high-high": doc(NOW, statz(account('"\\ud83d\\ud83d"'))),
    "acc-high-then-letter": doc(NOW, statz(account('"\\ud83d\\u0041"'))),
    "acc-bad-escape": doc(NOW, statz(account('"\\x41"'))),
    "acc-short-escape": doc(NOW, statz(account('"\\u41"'))),
    "acc-control": doc(NOW, statz(account('"a\tb"'))),
    "acc-escapes": doc(NOW, statz(account('"\\"\\\\\\/\\b\\f\\n\\r\\t"'))),
    "acc-long": doc(NOW, statz(account('"' + "\\u00e9" * 5000 + '"'))),
    "acc-utf8": doc(NOW, statz(account('"\u00e9\u540d"'))),
    "acc-bad-utf8": doc(NOW, statz(account('"a'))).replace(b'"a', b'"a\xff'),
    "acc-overlong": doc(NOW, statz(account('"a'))).replace(b'"a', b'"a\xc0\x80'),
    "acc-utf8-surrogate": doc(NOW, statz(account('"a'))).replace(b'"a', b'"a\xed\xa0\x80'),
    "acc-cut-utf8": doc(NOW, statz(account('"a'))).replace(b'"a', b'"a\xe5\x90'),
    "twice": doc(NOW, statz(account(), account('"B"'), account())),
    "twice-escaped": doc(NOW, statz(account(), account('"\\u0041"'))),
    "conns-negative": doc(NOW, statz(account(conns="-1"))),
    "conns-minus-zero": doc(NOW, statz(account(conns="-0"))),
    "conns-minus-zero-float": doc(NOW, statz(account(conns="-0.0"))),
    "conns-float": doc(NOW, statz(account(conns="1.0"))),
    "conns-exponent": doc(NOW, statz(account(conns="1e3"))),
    "conns-true": doc(NOW, statz(account(conns="true"))),
    "conns-string": doc(NOW, statz(account(conns='"1"'))),
    "conns-null": doc(NOW, statz(account(conns="null"))),
    "conns-missing": doc(NOW, statz(account(conns=None))),
    "conns-max": doc(NOW, statz(account(conns=str(U64_MAX)))),
    "conns-2-64": doc(NOW, statz(account(conns=str(2**64)))),
    "conns-huge": doc(NOW, statz(account(conns="9" * 400))),
    "conns-leading-zero": doc(NOW, statz(account(conns="01"))),
    "conns-twice-bad-first": doc(NOW, statz(account(conns='"x", "conns": 3'))),
    "conns-twice-bad-last": doc(NOW, statz(account(conns='3, "conns": -3'))),
    "sent-null": doc(NOW, statz(account(sent="null"))),
    "sent-missing": doc(NOW, statz(account(sent=None))),
    "sent-number": doc(NOW, statz(account(sent="5"))),
    "sent-empty": doc(NOW, statz(account(sent="{}"))),
    "sent-no-bytes": doc(NOW, statz(account(sent='{"msgs": 1}'))),
    "sent-twice": doc(NOW, statz(account(sent='{"msgs": "x"}, "sent": {"msgs": 1, "bytes": 2}'))),
    "sent-then-number": doc(NOW, statz(account(sent='{"msgs": 1, "bytes": 2}, "sent": 4'))),
    "sent-msgs-twice": doc(NOW, statz(account(sent='{"msgs": 1, "bytes": 2, "msgs": 9}'))),
    "received-deep": doc(NOW, statz(account(received='{"msgs": 1, "bytes": 2, "x": '
                                            + deep(508) + "}"))),
    "received-too-deep": doc(NOW, statz(account(received='{"msgs": 1, "bytes": 2, "x": '
                                                + deep(509) + "}"))),
    "top-deep": doc(NOW, statz(account()), '"x": ' + deep(511)),
    "top-too-deep": doc(NOW, statz(account()), '"x": ' + deep(512)),
    "escaped-keys": doc('"n\\u006fw": "2026-11-29T19:05:42Z"', statz(account()).replace(
        "conns", "\\u0063onns")),
    "escaped-long-key": doc(NOW, statz(account(num_subscriptions=None)[:-1] + ', "'
                                       + "".join(f"\\u{ord(c):04x}" for c in "num_subscriptions")
                                       + '": 4}')),
    "key-lone-surrogate": doc(NOW, statz(account()), '"\\ud800": 1'),
    "unknown-lone-surrogate": doc(NOW, statz(account(x='"\\udfff"'))),
    "unknown-pair": doc(NOW, statz(account(x='["\\ud800\\udc00"]'))),
    "unknown-infinite": doc(NOW, statz(account(x="1e400"))),
    "unknown-minus-infinite": doc(NOW, statz(account(x="[-1e400]"))),
    "unknown-max-double": doc(NOW, statz(account(x="1.7976931348623158e308"))),
    "unknown-past-double": doc(NOW, statz(account(x="1.7976931348623159e308"))),
    "unknown-tiny": doc(NOW, statz(account(x="1e-400"))),
    "unknown-long-int": doc(NOW, statz(account(x="1" * 308))),
    "unknown-longer-int": doc(NOW, statz(account(x="1" * 309))),
    "unknown-long-fraction": doc(NOW, statz(account(x="0." + "0" * 400 + "1"))),
    "unknown-bad-utf8": doc(NOW, statz(account(x='"\xff"'))).replace(b"\xc3\xbf", b"\xff"),
    "unknown-literals": doc(NOW, statz(account(x="[true, false, null, -1.5e-3, {}]"))),
    "unknown-bad-literal": doc(NOW, statz(account(x="nul"))),
    "unknown-bad-number": doc(NOW, statz(account(x="-"))),
    "unknown-plus": doc(NOW, statz(account(x="+1"))),
    "unknown-bad-escape": doc(NOW, statz(account(x='"\\q"'))),
    "compact": doc(NOW, statz(account())).replace(b", ", b",").replace(b": ", b":"),
    "whitespace": doc(NOW, statz(account())).replace(b", ", b" ,\r\n\t").replace(b": ", b"\t:"),
    "missing-comma": doc(NOW, statz(account())).replace(b", ", b" ", 1),
    "extra-comma": doc(NOW, statz(account() + ",")),
    "single-quotes": doc(NOW, statz(account("'A'"))),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_are_refused_alike_and_change_nothing(name):
    before = render(GOOD, START * 10**9)
    after = render([entry("A", [0, 1, 0], [7, 70, 1, 10, 1]), entry("C", [1, 0, 0], [1] * 5)],
                   (START + 10) * 10**9)
    core, ref = tables()
    clean_core, clean_ref = tables()
    for table in (core, ref, clean_core, clean_ref):
        table.update(before, 1.0)
    result = same(core, ref, HOSTILE[name], 2.0)
    if result == "refused":
        assert same(core, ref, after, 3.0) == clean_core.update(after, 3.0) == \
            clean_ref.update(after, 3.0)


def test_every_truncation_is_refused_alike():
    body = render([entry("A\u00e9", [1, 0, 2], [5, 50, 1, 10, 0]), entry("\\B", [0] * 3, [0] * 5)],
                  indent=2).replace(b"A\\u00e9", b"A\\u00e9\\ud83d\\ude00")
    core, ref = tables()
    for cut in range(len(body)):
        assert same(core, ref, body[:cut], 1.0) == "refused", cut
    assert same(core, ref, body, 1.0) != "refused"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_bodies_agree(data):
    body = bytearray(render([entry("A\u00e9", [1, 0, 2], [5, 50, 1, 10, 0]),
                             entry("B", [0, 0, 0], [2**64 - 1, 0, 0, 0, 1])],
                            ascii_only=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        cut = data.draw(st.integers(0, 4))
        insert = data.draw(st.sampled_from([
            b"", b'"', b"\\", b"\\u", b"\\ud800", b"\\udc00", b"{", b"}", b"[", b"]", b",", b":",
            b"0", b"-", b"1e999", b".5", b"e", b"null", b"true", b"\xff", b"\xc3", b" ", b"\x00",
            b'"acc"', b'"conns"', b'"sent"', b'"account_statz"', b'"now"', b"18446744073709551616",
        ]))
        body[at:at + cut] = insert
    core, ref = tables()
    same(core, ref, bytes(body), 1.0)
    same(core, ref, bytes(body), 2.0)


@pytest.mark.parametrize("impl", [_core, _reference], ids=["core", "reference"])
def test_bad_settings_are_refused(impl):
    for args in [(0, 1.0, 1), (1, -1.0, 1), (1, float("nan"), 1), (1, 1.0, -1)]:
        with pytest.raises(ValueError):
            impl.AccstatzTable(*args)


def test_a_bytearray_is_read_like_bytes():
    core, ref = tables()
    body = render(GOOD)
    assert core.update(bytearray(body), 1.0) == ref.update(body, 1.0)
