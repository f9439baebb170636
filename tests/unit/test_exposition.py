"""The text writers: golden seed output, escaping, numbers, histograms, and byte-for-byte agreement
of the compiled writer with the reference one."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import _core, _reference, exposition
from fastnats import metrics as m
from fastnats.collector import NatsCollector, ServerCollector
from fastnats.collectors import OPTIONAL, JszCollector, ServerContext, ServerInfo
from fastnats.collectors.jsz import JszOptions
from fastnats.compat import PROMETHEUS_NATS_EXPORTER, SURVEYOR, Compat
from fastnats.interop import client_metrics
from fastnats.target import Target

DATA = Path(__file__).parents[1] / "data"
SHARED_SEED = Path(__file__).parents[3] / "shared" / "SEED-METRICS.txt"
WRITERS = [pytest.param(_core.render_text, id="core"),
           pytest.param(_reference.render_text, id="reference")]


def seed_exposition() -> str:
    return "".join(line for line in (DATA / "SEED-METRICS.txt").read_text().splitlines(True)
                   if not line.startswith("#") or line.startswith(("# HELP", "# TYPE")))


def seed_families_from_text(text: str):
    """Families carrying the example values of the seed file, in its order."""
    values = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{")[0]
            labels = tuple(re.findall(r'="([^"]*)"', name_labels))
            values[name] = (labels, float(value) if "." in value else int(value))
    return [(metric, metric.labels, [values[metric.name]]) for metric in m.SEED]


def parsed(text: bytes):
    return list(text_string_to_metric_families(text.decode()))


def test_vendored_seed_matches_shared():
    if SHARED_SEED.exists():
        assert SHARED_SEED.read_bytes() == (DATA / "SEED-METRICS.txt").read_bytes()


def test_catalogue_matches_seed_names_help_and_types():
    text = seed_exposition()
    for metric in m.SEED:
        assert f"# HELP {metric.name} {metric.help}\n# TYPE {metric.name} {metric.type}\n" in text


@pytest.mark.parametrize("render", WRITERS)
def test_seed_golden_text_is_byte_exact(render):
    text = seed_exposition()
    assert render(seed_families_from_text(text)).decode() == text


@pytest.mark.parametrize("render", WRITERS)
def test_seed_counters_keep_their_names(render):
    # prometheus_client would write nats_server_total_connections_total; the seed has no suffix.
    metric = m.NATS_SERVER_TOTAL_CONNECTIONS
    assert render([(metric, (), [((), 1234)])]) == (
        b"# HELP nats_server_total_connections The total number of connections accepted\n"
        b"# TYPE nats_server_total_connections counter\n"
        b"nats_server_total_connections 1234\n")


@pytest.mark.parametrize("render", WRITERS)
def test_escaping_of_label_values_and_help(render):
    metric = m.Metric("x_info", m.GAUGE, 'help with \\ backslash\nand "quotes"', ("a", "b"))
    text = render([(metric, metric.labels, [(('q"uo\\te', "new\nline"), 1)])])
    assert text == (b'# HELP x_info help with \\\\ backslash\\nand "quotes"\n'
                    b"# TYPE x_info gauge\n"
                    b'x_info{a="q\\"uo\\\\te",b="new\\nline"} 1\n')
    [family] = parsed(text)
    assert family.documentation == 'help with \\ backslash\nand "quotes"'
    assert family.samples[0].labels == {"a": 'q"uo\\te', "b": "new\nline"}


@pytest.mark.parametrize("render", WRITERS)
def test_unicode_label_values(render):
    metric = m.Metric("x", m.GAUGE, "h", ("name",))
    text = render([(metric, metric.labels, [(("café ☕ 日本",), 2)])])
    assert "café ☕ 日本" in text.decode("utf-8")
    assert parsed(text)[0].samples[0].labels["name"] == "café ☕ 日本"


@pytest.mark.parametrize("render", WRITERS)
@pytest.mark.parametrize("value, expected", [
    (0, "0"), (15, "15"), (-3, "-3"), (2**63 - 1, str(2**63 - 1)), (2**64 - 1, str(2**64 - 1)),
    (-2**63, str(-2**63)), (2**70, str(2**70)), (True, "1"), (False, "0"), (1.0, "1"),
    (-0.0, "-0"), (12345.67, "12345.67"), (0.1, "0.1"), (1e-9, "1e-09"), (1e20, "1e+20"),
    (999999999999999.0, "999999999999999"), (-999999999999999.0, "-999999999999999"),
    # From 1e15 a whole float prints as its shortest repr, and below 1e16 that has no exponent.
    (1e15, "1000000000000000"), (2.5e15, "2500000000000000"), (1e16, "1e+16"),
    (1234567890123456.8, "1234567890123456.8"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
])
def test_number_formatting(render, value, expected):
    metric = m.Metric("x", m.GAUGE, "h")
    assert render([(metric, (), [((), value)])]) == (
        f"# HELP x h\n# TYPE x gauge\nx {expected}\n".encode())


@pytest.mark.parametrize("render", WRITERS)
def test_empty_family_is_left_out(render):
    assert render([(m.NATS_UP, (), [])]) == b""
    assert render([(m.NATS_CLIENT_CONNECTION_RTT_SECONDS, (), [])]) == b""


@pytest.mark.parametrize("render", WRITERS)
def test_label_count_mismatch_raises(render):
    with pytest.raises(ValueError, match="label values"):
        render([(m.NATS_SERVER_VERSION, ("version",), [((), 1)])])


@pytest.mark.parametrize("render", WRITERS)
def test_label_value_must_be_str(render):
    with pytest.raises(TypeError):
        render([(m.NATS_SERVER_VERSION, ("version",), [((2,), 1)])])


# -- distributions: one histogram family ---------------------------------------------------------

SUBS = m.NATS_CLIENT_CONNECTION_SUBSCRIPTIONS     # le 0 1 2 5 10 20 50 100 500 1000 10000 +Inf
SUBS_COUNTS = (1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 4, 5)
SUBS_HEAD = ("# HELP nats_client_connection_subscriptions Open client connections by subscription "
             "count\n# TYPE nats_client_connection_subscriptions histogram\n")


def histogram_lines(labels: str, counts, total) -> str:
    prefix = labels + "," if labels else ""
    lines = [f'nats_client_connection_subscriptions_bucket{{{prefix}le="{le}"}} {n}\n'
             for le, n in zip(SUBS.buckets, counts)]
    braces = f"{{{labels}}}" if labels else ""
    lines.append(f"nats_client_connection_subscriptions_sum{braces} {total}\n")
    lines.append(f"nats_client_connection_subscriptions_count{braces} {counts[-1]}\n")
    return "".join(lines)


@pytest.mark.parametrize("render", WRITERS)
def test_distribution_renders_as_one_histogram_family(render):
    text = render([(SUBS, (), [((), (SUBS_COUNTS, 20_021))])]).decode()
    assert text == SUBS_HEAD + histogram_lines("", SUBS_COUNTS, 20_021)
    assert text.count("# TYPE") == 1
    [family] = parsed(text.encode())
    assert (family.name, family.type) == ("nats_client_connection_subscriptions", "histogram")


@pytest.mark.parametrize("render", WRITERS)
def test_distribution_with_labels_puts_le_last(render):
    # The collector prepends a server label when several servers are monitored.
    zeros = (0,) * len(SUBS.buckets)
    text = render([(SUBS, ("server",), [(("a",), (SUBS_COUNTS, 2.5)),
                                        (('b"\\',), (zeros, 0))])]).decode()
    assert text == (SUBS_HEAD + histogram_lines('server="a"', SUBS_COUNTS, 2.5)
                    + histogram_lines('server="b\\"\\\\"', zeros, 0))
    rtt = m.NATS_CLIENT_CONNECTION_RTT_SECONDS
    counts = tuple(range(len(rtt.buckets)))
    text = render([(rtt, ("server", "zone"), [(("a", "z1"), (counts, 0.125))])]).decode()
    assert 'nats_client_connection_rtt_seconds_bucket{server="a",zone="z1",le="+Inf"} 15\n' in text
    assert text.endswith('nats_client_connection_rtt_seconds_sum{server="a",zone="z1"} 0.125\n'
                         'nats_client_connection_rtt_seconds_count{server="a",zone="z1"} 15\n')


@pytest.mark.parametrize("render", WRITERS)
@pytest.mark.parametrize("value", [
    (SUBS_COUNTS[:-1], 3),              # a count short
    (SUBS_COUNTS + (6,), 3),            # a count too many
    (list(SUBS_COUNTS), 3),             # counts not a tuple
    (SUBS_COUNTS,),                     # no sum
    (SUBS_COUNTS, 3, 4),
    7,                                  # a plain number
    None,
])
def test_distribution_of_the_wrong_shape_raises(render, value):
    with pytest.raises(ValueError, match="nats_client_connection_subscriptions"):
        render([(SUBS, (), [((), value)])])


@pytest.mark.parametrize("render", WRITERS)
def test_distribution_without_buckets_raises(render):
    odd = m.Metric("x", m.DISTRIBUTION, "h")
    with pytest.raises(ValueError):
        render([(odd, (), [((), ((), 0))])])


def test_collect_gives_a_gauge_histogram():
    # What NatsCollector.collect() hands prometheus_client for a distribution.
    [family, counter] = client_metrics([(SUBS, ("server",), [(("a",), (SUBS_COUNTS, 20))]),
                                        (m.NATS_SERVER_TOTAL_CONNECTIONS, (), [((), 3)])])
    assert (family.name, family.type) == (SUBS.name, "gaugehistogram")
    name = SUBS.name
    assert [(s.name, list(s.labels.items()), s.value) for s in family.samples] == [
        *((name + "_bucket", [("server", "a"), ("le", le)], n)
          for le, n in zip(SUBS.buckets, SUBS_COUNTS)),
        (name + "_gsum", [("server", "a")], 20), (name + "_gcount", [("server", "a")], 5)]
    assert [s.name for s in counter.samples] == ["nats_server_total_connections_total"]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(type("Collector", (), {"collect": lambda self: [family, counter]})())
    text = generate_latest(registry).decode()
    assert f"# TYPE {name} histogram\n" in text
    assert f'{name}_bucket{{le="+Inf",server="a"}} 5.0\n' in text
    with pytest.raises(ValueError):
        list(client_metrics([(SUBS, (), [((), (SUBS_COUNTS[1:], 0))])]))


# -- both writers, byte for byte --------------------------------------------------------------

LABEL_TEXT = st.text(alphabet='abc XYZ_-.:/"\\\n\tµ☕é', max_size=8)
NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.integers(min_value=-10**16, max_value=10**16).map(float))


@st.composite
def families(draw):
    out = []
    for i in range(draw(st.integers(0, 6))):
        labels = tuple(f"l{j}" for j in range(draw(st.integers(0, 3))))
        kind = draw(st.sampled_from((m.GAUGE, m.COUNTER, m.DISTRIBUTION)))
        les = tuple(draw(st.lists(st.sampled_from(("0.5", "1", "10", "1e+06")), min_size=0,
                                  max_size=3, unique=True))) + ("+Inf",)
        metric = m.Metric(f"fam_{i}" + ("_total" if kind == m.COUNTER and i % 2 else ""), kind,
                          draw(LABEL_TEXT), labels,
                          buckets=les if kind == m.DISTRIBUTION else ())
        if kind == m.DISTRIBUTION:
            value = st.tuples(st.tuples(*[st.integers(0, 2**64 - 1)] * len(les)), NUMBERS)
        else:
            value = NUMBERS
        samples = draw(st.lists(st.tuples(st.tuples(*[LABEL_TEXT] * len(labels)), value),
                                max_size=5, unique_by=lambda s: s[0]))
        out.append((metric, labels, samples))
    return out


@settings(max_examples=300, deadline=None)
@given(families())
def test_core_and_reference_write_the_same_bytes(fams):
    text = _core.render_text(fams)
    assert _reference.render_text(fams) == text
    # Well formed too: the parser reads one family per family written (it drops a counter's
    # _total suffix from the family name).
    written = [(metric.name, metric.type) for metric, _, samples in fams if samples]
    assert [family.name for family in parsed(text)] == [
        name.removesuffix("_total") if kind == m.COUNTER else name for name, kind in written]


def test_render_gzip_decodes_to_plain():
    text, gz = exposition.render(seed_families_from_text(seed_exposition()))
    assert gzip.decompress(gz) == text
    assert exposition.render(seed_families_from_text(seed_exposition()))[1] == gz


# -- label names --------------------------------------------------------------------------

#: The text format 0.0.4's label name, without Prometheus' reserved ``__`` prefix: the
#: exposition is read by this, not by a parser that may accept more than Prometheus does.
LABEL_NAME = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")
LABEL_PAIR = re.compile(r'([^=]*)="((?:[^"\\\n]|\\.)*)"(,|(?=}))')
#: Metadata keys that are no label names as they are.
HOSTILE_META_KEYS = ("a-b", "1x", "__x", "é", "x y", "env.tier")


def label_names_in(text: str) -> set[str]:
    """The label names of every sample line, each checked against the format's grammar."""
    names = set()
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        body, at = line[line.index("{") + 1:line.rindex("}") + 1], 0
        while body[at] != "}":
            pair = LABEL_PAIR.match(body, at)
            assert pair, line
            names.add(pair.group(1))
            at = pair.end()
    assert names
    return names


class OneBody:
    """A monitoring source that answers every request with one body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get(self, endpoint, params=None, **_):
        return bytearray(self.body)


def filled(families) -> list:
    """The families, each with one sample of the right shape."""
    return [(metric, labels, [(("v",) * len(labels),
                               ((1,) * len(metric.buckets), 1.5)
                               if metric.type == m.DISTRIBUTION else 1)])
            for metric, labels, _ in families]


@pytest.mark.parametrize("render", WRITERS)
@pytest.mark.parametrize("profile", [PROMETHEUS_NATS_EXPORTER, SURVEYOR])
def test_every_label_name_of_every_family_is_valid(render, profile):
    # Every collector on, --jsz.replicas and hostile metadata keys, two servers (so the
    # server label), and a compat profile: every family the exporter can write, once.
    jsz = JszOptions("consumers", replicas=True, stream_meta_keys=HOSTILE_META_KEYS,
                     consumer_meta_keys=HOSTILE_META_KEYS)
    options = {cls.name: None for cls in OPTIONAL} | {"jsz": jsz}
    servers = [ServerCollector(Target(name, "http://127.0.0.1:1"), object(), options)
               for name in ("a", "b")]
    collector = NatsCollector(servers)
    compat = Compat(profile).families([], collector.label_names, collector.labelled)
    families = filled(collector.families()) + filled(compat)
    text = render(families).decode()
    names = label_names_in(text)
    bad = {name for name in names if not LABEL_NAME.fullmatch(name)}
    assert not bad
    assert {"server", "replica_role", "meta_a_b", "meta_1x", "meta___x", "meta__", "meta_x_y",
            "meta_env_tier"} <= names
    assert len(text.split("# TYPE ")) - 1 == len(families)


@pytest.mark.parametrize("render", WRITERS)
def test_hostile_metadata_keys_render_valid_labels_natively_and_in_compat(render):
    # Compat names metadata labels after the native ones, row by row: read a real body.
    doc = json.loads((DATA / "jsz_a1.json").read_bytes())
    for account in doc["account_details"]:
        for stream in account.get("stream_detail", []):
            for item in (stream, *stream.get("consumer_detail", [])):
                item["config"].setdefault("metadata", {}).update(
                    {key: "v" for key in HOSTILE_META_KEYS})
    collector = JszCollector(ServerContext("A1", "127.0.0.1"),
                             JszOptions("consumers", stream_meta_keys=HOSTILE_META_KEYS,
                                        consumer_meta_keys=HOSTILE_META_KEYS))
    asyncio.run(collector.refresh(OneBody(json.dumps(doc).encode()), ServerInfo(
        "NID", "start", 0, 0, {}, server_name="A1")))
    # Compat reads the server's identity from /varz.
    samples = {**collector.samples(),
               m.NATS_SERVER_INFO.name: [(("A1", "NID", "2.15.1", "A", "", ""), 1)]}
    native = (m.NATS_SERVER_INFO, *m.JSZ)
    label_names = {metric.name: collector.label_names(metric) for metric in native}
    families = [(metric, label_names[metric.name], samples.get(metric.name, []))
                for metric in native]
    families += Compat().families([("A1", samples)], label_names, False)
    names = label_names_in(render(families).decode())
    assert not {name for name in names if not LABEL_NAME.fullmatch(name)}
    assert {"meta_a_b", "meta___x", "stream_meta_a_b", "stream_meta_1x", "stream_meta___x",
            "stream_meta__", "consumer_meta_x_y", "consumer_meta_env_tier"} <= names


@pytest.mark.parametrize("labels", [
    ("a-b",), ("1x",), ("__x",), ("é",), ("",), ("ok", "ok"), ("<no marker>",),
    (m.STREAM_LABELS, "stream"), (m.GROUP_LABELS, "ip")])
def test_the_catalogue_check_refuses_a_label_name_the_format_refuses(labels):
    with pytest.raises(ValueError, match="label names"):
        m.check_label_names([m.Metric("x", m.GAUGE, "h", labels)])


def test_the_catalogue_passes_its_check_and_no_distribution_has_its_own_le():
    m.check_label_names(m.CATALOGUE)
    with pytest.raises(ValueError, match="label names"):
        m.check_label_names([m.Metric("x", m.DISTRIBUTION, "h", ("le",), buckets=("+Inf",))])
    assert all(LABEL_NAME.fullmatch(name) for name in (*m.GROUP_BY_FIELDS,
                                                         *m.LEAF_GROUP_BY_FIELDS))
