"""The docs follow the code: the generated parts are current, and the examples in docs/deploy.md
hold up against the real tools (the exporter's command line, `nats-server -t`, promtool)."""

from __future__ import annotations

import difflib
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from fastnats import cli

from fastnats.nats import natsconf
from tests.conftest import require_tool
from tests.e2e.support import JOB, ROOT, RULE_FILES, promtool_lint, sample_names

DOCS = ROOT / "docs"
DEPLOY_MD = DOCS / "deploy.md"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_metrics_doc",
                                                  ROOT / "tools" / "gen_metrics_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def assert_current(path: Path, expected: str) -> None:
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(
            actual.splitlines(keepends=True), expected.splitlines(keepends=True),
            f"{path.name} (in the tree)", f"{path.name} (generated)", n=1))[:40])
        pytest.fail(f"{path.relative_to(ROOT)} is stale; regenerate it with: "
                    f"{gen.COMMAND}\n{diff}", pytrace=False)


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", path.read_text(), re.M | re.S)


# -- generated parts

def test_metrics_md_is_generated_from_the_catalogue():
    assert_current(gen.METRICS_MD, gen.metrics_markdown())


@pytest.mark.parametrize("page", gen.HELP_PAGES, ids=lambda page: page.name)
def test_pages_show_the_live_help(page):
    current = page.read_text(encoding="utf-8")
    assert_current(page, gen.with_live_help(current))
    block = current.split(gen.HELP_BEGIN)[1].split(gen.HELP_END)[0]
    for action in cli.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in block, flag


def test_metrics_md_samples_are_a_valid_exposition_of_every_family():
    samples = "".join(code_blocks(gen.METRICS_MD, ""))
    assert sample_names(samples) == {m.name for m in gen.m.CATALOGUE}
    # Parsing is the point here (promtool_lint fails on a parse error); which lint findings
    # are acceptable is decided once, on a real exposition, in test_deploy.py.
    promtool_lint(samples)


def test_doc_links_and_repository_paths_exist():
    for doc in DOCS.glob("*.md"):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name} links {target}, which is missing"
        for path in re.findall(r"`((?:deploy|docs|tools|fastnats|tests)/[\w./*-]+)`", text):
            assert list(ROOT.glob(path)), f"{doc.name} names {path}, which is missing"


# -- docs/deploy.md against the real tools

def exporter_settings(argv: list[str]) -> cli.Settings:
    """What the exporter makes of ``argv``: its own parser and checks, as at startup."""
    return cli.resolve(cli.build_parser().parse_args(argv))


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


def kubernetes_objects() -> dict[str, dict]:
    objects = [doc for block in code_blocks(DEPLOY_MD, "yaml")
               for doc in yaml.safe_load_all(block) if doc and "kind" in doc]
    return {obj["kind"]: obj for obj in objects}


def test_kubernetes_sidecar_shares_the_pod_and_matches_its_annotations(tmp_path, monkeypatch):
    objects = kubernetes_objects()
    conf_text = objects["ConfigMap"]["data"]["nats-server.conf"]
    pod = objects["Deployment"]["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"nats", "fastnats"}, "both containers in one pod"

    # nats-server accepts the conf, with the environment the pod gives it.
    conf = tmp_path / "nats-server.conf"
    conf.write_text(conf_text)
    monkeypatch.setenv("POD_NAME", "nats-0")
    check = subprocess.run([require_tool("nats-server"), "-t", "-c", str(conf)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    nats = containers["nats"]
    mount = nats["volumeMounts"][0]["mountPath"]
    assert nats["args"] == ["-c", f"{mount}/nats-server.conf"]

    # The exporter reads the monitoring port the conf opens, over the pod's loopback.
    settings = exporter_settings(containers["fastnats"]["args"])
    assert [t.url for t in settings.targets] == [natsconf.load(conf).monitor_url]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.port
    assert annotations["prometheus.io/path"] == settings.telemetry_path
    ports = {p["name"]: p["containerPort"] for p in containers["fastnats"]["ports"]}
    assert ports["metrics"] == settings.port
    probe = containers["fastnats"]["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/healthz", "metrics")


def test_prometheus_configs_pass_promtool(tmp_path):
    configs = [doc for block in code_blocks(DEPLOY_MD, "yaml")
               for doc in yaml.safe_load_all(block) if doc and "scrape_configs" in doc]
    assert len(configs) == 2
    for i, config in enumerate(configs):
        assert [job["job_name"] for job in config["scrape_configs"]] == [JOB]
        assert [Path(p).name for p in config["rule_files"]] == [p.name for p in RULE_FILES]
        # The documented paths are the operator's; check against the files shipped here.
        config["rule_files"] = [str(p) for p in RULE_FILES]
        for job in config["scrape_configs"]:
            # Debian builds Prometheus without Kubernetes discovery, so promtool here rejects
            # the field itself; the relabelling it feeds is still checked.
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["10.0.0.1:7777"]}]
        path = tmp_path / f"prometheus-{i}.yml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run([require_tool("promtool"), "check", "config", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
