"""atheris harness of the text writer, ``_core.render_text``.

The input drives an atheris FuzzedDataProvider that builds families the way the collectors do,
and sometimes the ways they must not: metrics from ``fastnats.metrics.CATALOGUE``, label values
with quotes, backslashes, newlines, NUL, lone surrogates and non-strings, label counts that do not
match, numbers from -0.0 and NaN to 2**64 and integers too long to print, histogram samples of the
wrong shape. The contract:

- the compiled writer and the reference (``_reference.render_text``) write the same bytes, or
  both raise the same exception, and that exception is a ValueError or TypeError;
- what they write parses back (prometheus_client's text parser) to the families given: every
  series with its label values unescaped and its value.
"""

from __future__ import annotations

import math
import re

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference, metrics
    from fastnats.metrics import CATALOGUE, DISTRIBUTION

from prometheus_client.parser import text_string_to_metric_families

from tests.fuzz.common import REFERENCE, Finding, main

HOSTILE = ["", "\\", '"', "\n", "\\n", '\\"', "\r", "\t", "\x00", "}", '{a="b"} 1', "# HELP x",
           "a b", "=", ",", "é中😀", "\u2028", "\ufeff", "\x7f", "_other", "le", "+Inf", "NaN",
           "x" * 300, "\\\n\"", "\ud800", "a\udfffb"]
NUMBERS = [0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 1, -(2**63) - 1, 10**30,
           0.0, -0.0, 0.1, 1.5, 1e15, 1e15 - 1, 999999999999999.9, 1e16, 1.5e15, 2.0**53 + 1,
           5e-324, 1e300, -1e300, math.nan, math.inf, -math.inf, True, False]
#: Exceptions a bad family may raise; the writers agree on which.
ALLOWED = (ValueError, TypeError)


#: The labels a marker may stand for beyond its defaults: any group-by field, any metadata key.
_CHOICES = {metrics.GROUP_LABELS: metrics.GROUP_BY_FIELDS,
            metrics.LEAF_GROUP_LABELS: metrics.LEAF_GROUP_BY_FIELDS}


def group_markers() -> dict[str, tuple[str, ...]]:
    """Each label marker of the catalogue (``metrics.LABEL_MARKERS``) and the labels a
    deployment may put in its place: the group-by fields where it groups, else its defaults
    plus a metadata label. A label of the catalogue that is no label name and no known marker
    stops the harness: fuzzing with it would only find that the parser refuses it."""
    markers = {marker: _CHOICES.get(marker, (*defaults, "meta_team"))
               for marker, (_, defaults) in metrics.LABEL_MARKERS.items()}
    unknown = {label for metric in CATALOGUE for label in metric.labels
               if label not in markers and not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label)}
    if unknown:
        raise RuntimeError(f"catalogue labels the text harness cannot expand: {sorted(unknown)}")
    return markers


#: Group-label marker -> the fields it may be expanded to.
GROUP_MARKERS = group_markers()


def label_value(fdp: atheris.FuzzedDataProvider):
    kind = fdp.ConsumeIntInRange(0, 15)
    if kind == 0:
        return fdp.PickValueInList([None, 7, b"bytes", 1.5])
    if kind == 1:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12))
    if kind < 8:
        return fdp.PickValueInList(HOSTILE)
    return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))


def number(fdp: atheris.FuzzedDataProvider):
    kind = fdp.ConsumeIntInRange(0, 12)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 24))
    if kind == 1:
        return fdp.ConsumeFloat()
    if kind == 2:
        return fdp.ConsumeRegularFloat()
    if kind == 3:
        return fdp.PickValueInList(["1.5", "nan", "-inf", "x", "", None, 10**5000, [1]])
    if kind < 8:
        return fdp.PickValueInList(NUMBERS)
    return fdp.ConsumeIntInRange(-(10**6), 10**6)


def label_names_of(fdp: atheris.FuzzedDataProvider, metric) -> tuple:
    names: list[str] = []
    for label in metric.labels:
        if label in GROUP_MARKERS:
            names.extend(f for f in GROUP_MARKERS[label] if fdp.ConsumeBool())
        else:
            names.append(label)
    return tuple(names)


def sample(fdp: atheris.FuzzedDataProvider, metric, nlabels: int):
    odd = fdp.ConsumeIntInRange(0, 31)
    n = nlabels + (fdp.ConsumeIntInRange(-1, 1) if odd == 0 else 0)
    labels = tuple(label_value(fdp) for _ in range(max(n, 0)))
    if odd == 1:
        labels = list(labels)
    if metric.type == DISTRIBUTION:
        counts = tuple(number(fdp) for _ in range(len(metric.buckets) + (odd == 2)))
        value = (counts, number(fdp))
        if odd == 3:
            value = (list(counts), value[1])
        elif odd == 4:
            value = (counts,)
        elif odd == 5:
            value = number(fdp)
    else:
        value = number(fdp)
        if odd == 2:
            value = ((value,), value)
    if odd == 6:
        return (labels,)
    if odd == 7:
        return (labels, value, value)
    if odd == 8:
        return [labels, value]
    return (labels, value)


def families_of(fdp: atheris.FuzzedDataProvider) -> list:
    families = []
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        metric = fdp.PickValueInList(list(CATALOGUE))
        names = label_names_of(fdp, metric)
        odd = fdp.ConsumeIntInRange(0, 31)
        if odd == 0 and names:
            names = (*names[:-1], fdp.PickValueInList([7, None, b"x"]))
        samples: list | tuple = [sample(fdp, metric, len(names))
                                 for _ in range(fdp.ConsumeIntInRange(0, 4))]
        if odd == 1:
            samples = tuple(samples)
        families.append((metric, list(names) if odd == 2 else names, samples))
    return families


def outcome(render, families):
    try:
        return render(families)
    except ALLOWED as e:
        return type(e)


def same_value(parsed: float, given) -> bool:
    want = float(given)
    return parsed == given or float(parsed) == want or (math.isnan(parsed) and math.isnan(want))


def same_name(parsed: str, written: str) -> bool:
    # prometheus_client's parser names counter samples NAME_total whatever the family is called.
    return parsed.removesuffix("_total") == written.removesuffix("_total")


def expected_series(families) -> list[tuple[str, dict, object]]:
    series = []
    for metric, names, samples in families:
        for labels, value in samples:
            base = dict(zip(names, labels))
            if metric.type != DISTRIBUTION:
                series.append((metric.name, base, value))
                continue
            counts, total = value
            for le, count in zip(metric.buckets, counts):
                series.append((metric.name + "_bucket", {**base, "le": le}, count))
            series.append((metric.name + "_sum", base, total))
            series.append((metric.name + "_count", base, counts[-1]))
    return series


def check_parses_back(text: bytes, families) -> None:
    parsed = [(s.name, s.labels, s.value)
              for family in text_string_to_metric_families(text.decode())
              for s in family.samples]
    expected = expected_series(families)
    if len(parsed) != len(expected):
        raise Finding(f"{len(parsed)} series parsed back, {len(expected)} written")
    for (name, labels, value), (want_name, want_labels, want_value) in zip(parsed, expected):
        if (not same_name(name, want_name) or labels != want_labels
                or not same_value(value, want_value)):
            raise Finding(f"wrote {want_name}{want_labels} {want_value!r}, "
                          f"read back {name}{labels} {value!r}")


def test_one_input(data: bytes) -> None:
    families = families_of(atheris.FuzzedDataProvider(data))
    got = outcome(_core.render_text, families)
    want = outcome(_reference.render_text, families) if REFERENCE else got
    if got != want:
        raise Finding(f"compiled writer: {got!r:.300}\nreference writer: {want!r:.300}")
    if isinstance(got, bytes):
        check_parses_back(got, families)


if __name__ == "__main__":
    main(test_one_input)
