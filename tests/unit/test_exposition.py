"""The text writer: golden seed output, escaping, numbers, and agreement with prometheus_client."""

from __future__ import annotations

import gzip
import math
import random
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats import _core, _reference, exposition
from fastnats import metrics as m

DATA = Path(__file__).parents[1] / "data"
SHARED_SEED = Path(__file__).parents[3] / "shared" / "SEED-METRICS.txt"


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


def test_seed_golden_text_is_byte_exact():
    text = seed_exposition()
    assert _core.render_text(seed_families_from_text(text)).decode() == text


def test_reference_agrees_on_seed():
    families = seed_families_from_text(seed_exposition())
    assert parsed(_core.render_text(families)) == parsed(_reference.render_text(families))


def test_escaping_of_label_values_and_help():
    metric = m.Metric("x_info", m.GAUGE, 'help with \\ backslash\nand "quotes"', ("a", "b"))
    text = _core.render_text([(metric, metric.labels, [(('q"uo\\te', "new\nline"), 1)])])
    assert text == (b'# HELP x_info help with \\\\ backslash\\nand "quotes"\n'
                    b"# TYPE x_info gauge\n"
                    b'x_info{a="q\\"uo\\\\te",b="new\\nline"} 1\n')
    [family] = parsed(text)
    assert family.documentation == 'help with \\ backslash\nand "quotes"'
    assert family.samples[0].labels == {"a": 'q"uo\\te', "b": "new\nline"}


def test_unicode_label_values():
    metric = m.Metric("x", m.GAUGE, "h", ("name",))
    text = _core.render_text([(metric, metric.labels, [(("café ☕ 日本",), 2)])])
    assert "café ☕ 日本" in text.decode("utf-8")
    assert parsed(text)[0].samples[0].labels["name"] == "café ☕ 日本"


@pytest.mark.parametrize("value, expected", [
    (0, "0"), (15, "15"), (-3, "-3"), (2**63 - 1, str(2**63 - 1)), (2**64 - 1, str(2**64 - 1)),
    (True, "1"), (1.0, "1"), (12345.67, "12345.67"), (0.1, "0.1"), (1e-9, "1e-09"),
    (1e20, "1e+20"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
])
def test_number_formatting(value, expected):
    metric = m.Metric("x", m.GAUGE, "h")
    assert _core.render_text([(metric, (), [((), value)])]) == (
        f"# HELP x h\n# TYPE x gauge\nx {expected}\n".encode())


def test_empty_family_is_left_out():
    assert _core.render_text([(m.NATS_UP, (), [])]) == b""


def test_label_count_mismatch_raises():
    with pytest.raises(ValueError, match="label values"):
        _core.render_text([(m.NATS_SERVER_VERSION, ("version",), [((), 1)])])


def test_label_value_must_be_str():
    with pytest.raises(TypeError):
        _core.render_text([(m.NATS_SERVER_VERSION, ("version",), [((2,), 1)])])


def random_families(rng: random.Random):
    alphabet = 'abc XYZ_-.:/"\\\n\tµ☕'
    families = []
    for i in range(rng.randrange(1, 12)):
        labels = tuple(f"l{j}" for j in range(rng.randrange(0, 4)))
        metric = m.Metric(f"fam_{i}" + ("_total" if i % 2 else ""),
                          rng.choice((m.GAUGE, m.COUNTER)), "".join(rng.choices(alphabet, k=12)),
                          labels)
        samples, seen = [], set()
        for _ in range(rng.randrange(0, 30)):
            values = tuple("".join(rng.choices(alphabet, k=rng.randrange(0, 8))) for _ in labels)
            if values in seen:
                continue
            seen.add(values)
            value = rng.choice((rng.randrange(0, 2**64), rng.random() * 10 ** rng.randrange(-12, 18),
                                rng.randrange(-1000, 1000), float(rng.randrange(0, 10**6))))
            samples.append((values, value))
        families.append((metric, labels, samples))
    return families


def normalise(families):
    out = []
    for family in families:
        out.append((family.name, family.type, family.documentation,
                    sorted((s.name, sorted(s.labels.items()), s.value) for s in family.samples)))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_core_and_reference_agree_on_random_families(seed):
    rng = random.Random(seed)
    print(f"seed={seed}")
    families = random_families(rng)
    core = normalise(parsed(_core.render_text(families)))
    reference = normalise(parsed(_reference.render_text(families)))
    assert len(core) == len(reference)
    for a, b in zip(core, reference):
        assert a[:3] == b[:3]
        for (na, la, va), (nb, lb, vb) in zip(a[3], b[3]):
            assert (na, la) == (nb, lb)
            assert math.isclose(va, vb, rel_tol=1e-15) or va == vb


def test_render_gzip_decodes_to_plain():
    text, gz = exposition.render(seed_families_from_text(seed_exposition()))
    assert gzip.decompress(gz) == text
    assert exposition.render(seed_families_from_text(seed_exposition()))[1] == gz
