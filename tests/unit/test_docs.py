"""The docs follow the code: docs/metrics.md is generated from the catalogue, links and named
paths exist, and the exporter flags in docs/deploy.md pass the exporter's own parser (what needs a
process, the live --help, `nats-server -t` and promtool, is in tests/integration/test_docs.py)."""

from __future__ import annotations

import re
import shlex

from fastnats import cli
from tests.e2e.support import (
    DEPLOY_MD,
    DOCS,
    ROOT,
    assert_current,
    code_blocks,
    exporter_settings,
    load_metrics_doc_generator,
)

gen = load_metrics_doc_generator()


# -- generated parts

def test_metrics_md_is_generated_from_the_catalogue():
    assert_current(gen.METRICS_MD, gen.metrics_markdown())


def test_doc_links_and_repository_paths_exist():
    for doc in DOCS.glob("*.md"):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links {target}, which is missing"
        for path in re.findall(r"`((?:deploy|docs|tools|fastnats|tests)/[\w./*-]+)`", text):
            assert list(ROOT.glob(path)), f"{doc.name} names {path}, which is missing"



def test_tests_the_docs_name_exist():
    # docs/robustness.md holds each promise to a named test: the name must stay true.
    for doc in DOCS.glob("*.md"):
        text = doc.read_text()
        for path, names in re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)+)", text):
            source = (ROOT / path).read_text()
            test = names.split("::")[-1]
            assert re.search(rf"^(?:async )?def {test}\b|^class {test}\b", source, re.M), (
                f"{doc.name} names {path}{names}, which is missing")
        for test in re.findall(r"`::(test_\w+)", text):
            assert re.search(rf"def {test}\b", "".join(
                f.read_text() for f in (ROOT / "tests").rglob("test_*.py"))), (
                f"{doc.name} names ::{test}, which is missing")


# -- docs/deploy.md

def test_systemd_units_run_the_exporter_with_valid_flags():
    units = code_blocks(DEPLOY_MD, "ini")
    assert len(units) == 2
    commands = [shlex.split(line.split("=", 1)[1]) for unit in units
                for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert [argv[0].endswith("/fastnats-exporter") for argv in commands] == [True, True]
    standalone, launched = commands
    settings = exporter_settings(standalone[1:])
    assert (settings.port, [t.url for t in settings.targets]) == (7777, ["http://127.0.0.1:8222"])
    args = cli.build_parser().parse_args(launched[1:])
    assert args.launch and args.config == "/etc/nats/nats-server.conf"
    # The wire counter's netlink socket must stay allowed.
    assert "AF_NETLINK" in units[0] and "PrivateNetwork" not in units[0].replace(
        "No PrivateNetwork=", "")
