"""The docs against the real programs: the --help blocks are what the command prints, and the
examples in docs/deploy.md and docs/metrics.md pass `nats-server -t` and promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from fastnats import cli
from fastnats.nats import natsconf
from tests.e2e.support import (
    DEPLOY_MD,
    JOB,
    RULE_FILES,
    assert_current,
    code_blocks,
    exporter_settings,
    load_metrics_doc_generator,
    promtool_lint,
    sample_names,
)
from tests.support.process import require_tool

pytestmark = pytest.mark.integration

gen = load_metrics_doc_generator()


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
    expected = set()
    for metric in gen.m.CATALOGUE:
        if metric.exposed_type == "histogram":
            expected.update(metric.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            expected.add(metric.name)
    assert sample_names(samples) == expected
    # Parsing is the point here (promtool_lint fails on a parse error); which lint findings
    # are acceptable is decided once, on a real exposition, in test_deploy.py.
    promtool_lint(samples)


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


def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of container args: a defined variable is replaced,
    anything else is left as written."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), text)


def test_fleet_statefulset_gives_each_replica_its_shard_and_real_flags(tmp_path):
    objects = kubernetes_objects()
    secret, service, stateful = objects["Secret"], objects["Service"], objects["StatefulSet"]
    name, namespace = stateful["metadata"]["name"], stateful["metadata"]["namespace"]
    replicas = stateful["spec"]["replicas"]
    pod = stateful["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert stateful["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None", "one DNS name per pod"
    assert service["spec"]["selector"] == pod["metadata"]["labels"]
    assert stateful["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]

    # The Secret's password, mounted where --nats.password-file looks for it.
    [volume] = pod["spec"]["volumes"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    [mount] = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    mounted = tmp_path / "password"
    mounted.write_text(secret["stringData"]["password"])

    # The Prometheus job of the sharding section names one target per replica.
    [job] = [doc for block in code_blocks(DEPLOY_MD, "yaml") for doc in yaml.safe_load_all(block)
             if isinstance(doc, list) and doc and doc[0].get("job_name") == JOB]
    targets = job[0]["static_configs"][0]["targets"]

    shards, ports = [], set()
    for ordinal in range(replicas):
        # What the StatefulSet controller and the downward API give replica ``ordinal``.
        labels = {**pod["metadata"]["labels"], "apps.kubernetes.io/pod-index": str(ordinal)}
        env = {}
        for var in container["env"]:
            field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field_path)
            assert label, field_path
            env[var["name"]] = labels[label[1]]
        argv = [kubernetes_expand(arg, env) for arg in container["args"]]
        password_file = f"{mount['mountPath']}/password"
        assert f"--nats.password-file={password_file}" in argv
        argv = [arg.replace(password_file, str(mounted)) for arg in argv]
        # The exporter's own parser refuses an unknown flag (SystemExit).
        settings = exporter_settings(argv)
        assert settings.fleet is not None, "fleet mode (--nats.url)"
        assert settings.fleet.password == secret["stringData"]["password"]
        shards.append(settings.fleet.shard)
        ports.add(settings.port)
        assert targets[ordinal] == f"{name}-{ordinal}.{name}.{namespace}.svc:{settings.port}"
    assert [(s.index, s.count) for s in shards] == [(i, replicas) for i in range(replicas)]
    assert len(targets) == replicas
    assert ports == {p["containerPort"] for p in container["ports"]} == {
        p["port"] for p in service["spec"]["ports"]}

    # Older clusters: the docs' shell form takes the ordinal from the pod's hostname.
    [shell_shard] = re.findall(r'--fleet\.shard "(\$\{HOSTNAME##\*-\}/\d+)"',
                               DEPLOY_MD.read_text())
    for ordinal in range(replicas):
        out = subprocess.run([require_tool("sh"), "-c", f'printf %s "{shell_shard}"'],
                             env={"HOSTNAME": f"{name}-{ordinal}"}, capture_output=True,
                             text=True, timeout=30, check=True).stdout
        assert cli.build_parser().parse_args(
            ["--nats.url=nats://x:4222", f"--fleet.shard={out}"]).fleet_shard == shards[ordinal]


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
