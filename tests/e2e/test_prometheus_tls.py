"""End to end: a real Prometheus scrapes the exporter over TLS, with mutual TLS and basic auth
from a ``--web.config.file``, the way a production job would; and the jobs that lack the
password or the client certificate are refused, each for its own reason."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import bcrypt
import pytest
import trustme

from tests.e2e.conftest import Prometheus
from tests.support.process import Exporter, exporting, running_nats, wait_until

pytestmark = pytest.mark.e2e

JOB = "nats"


@dataclass
class Stack:
    exporter: Exporter
    prometheus: Prometheus
    password: str
    hashed: str


@pytest.fixture(scope="module")
def stack(start_prometheus, tmp_path_factory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    for name, issuer in (("prometheus", ca), ("stranger", other_ca)):
        client = issuer.issue_cert(f"{name}.example")
        client.cert_chain_pems[0].write_to_path(str(folder / f"{name}.pem"))
        client.private_key_pem.write_to_path(str(folder / f"{name}-key.pem"))
    password = secrets.token_urlsafe(16)
    (folder / "password").write_text(password)
    (folder / "wrong-password").write_text(password + "x")
    # A production cost: what an operator's htpasswd -B would write.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
    web_config = folder / "web.yml"
    web_config.write_text(json.dumps({
        "tls_server_config": {"cert_file": "server.pem", "key_file": "server.pem",
                              "client_auth_type": "RequireAndVerifyClientCert",
                              "client_ca_file": "ca.pem"},
        "basic_auth_users": {"prometheus": hashed},
    }))

    def job(name: str, client: str, password_file: str) -> dict:
        return {"scheme": "https",
                "tls_config": {"ca_file": str(folder / "ca.pem"),
                               "cert_file": str(folder / f"{client}.pem"),
                               "key_file": str(folder / f"{client}-key.pem")},
                "basic_auth": {"username": "prometheus",
                               "password_file": str(folder / password_file)},
                **({"job_name": name} if name != JOB else {})}

    with running_nats() as nats, exporting(
            nats.monitor_url, "--web.listen-address", "127.0.0.1:0",
            "--web.config.file", str(web_config), "--refresh-interval", "0.5") as exporter:
        assert exporter.url.startswith("https://"), exporter.url
        target = exporter.url.split("/")[2]
        targets = [{"targets": [target]}]
        prometheus = start_prometheus(
            JOB, [target], scrape=job(JOB, "prometheus", "password"),
            more_jobs=[{**job("no_password", "prometheus", "wrong-password"),
                        "static_configs": targets},
                       {**job("wrong_ca", "stranger", "password"), "static_configs": targets}])
        yield Stack(exporter, prometheus, password, hashed)


def target_health(prometheus: Prometheus) -> dict[str, tuple[str, str]]:
    active = prometheus.api("targets", state="active")["activeTargets"]  # type: ignore[index]
    return {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}


def scraped(prometheus: Prometheus, job: str) -> dict[str, tuple[str, str]]:
    """Every job's (health, last error), once ``job`` has been scraped."""
    return wait_until(lambda: (h := target_health(prometheus))[job][0] != "unknown" and h)


def test_prometheus_scrapes_over_mutual_tls_with_basic_auth(stack):
    wait_until(lambda: stack.prometheus.value(f'up{{job="{JOB}"}}') == 1, timeout=30)
    wait_until(lambda: stack.prometheus.value(f'nats_up{{job="{JOB}"}}') == 1, timeout=30)


def test_a_wrong_password_is_refused_with_401(stack):
    health = scraped(stack.prometheus, "no_password")
    state, error = health["no_password"]
    assert state == "down" and "401" in error, health
    assert stack.prometheus.value('up{job="no_password"}') == 0
    # The exporter counts what it refused, and the job that gets in reads the count.
    wait_until(lambda: (stack.prometheus.value(
        f'fastnats_http_refused_total{{job="{JOB}",reason="unauthorized"}}') or 0) > 0)


def test_a_client_certificate_from_another_ca_is_refused(stack):
    health = scraped(stack.prometheus, "wrong_ca")
    state, error = health["wrong_ca"]
    assert state == "down" and "401" not in error, health
    wait_until(lambda: (stack.prometheus.value(
        f'fastnats_http_refused_total{{job="{JOB}",reason="tls_handshake"}}') or 0) > 0)
    # The refused scrapes stored nothing of the exporter's.
    assert stack.prometheus.query('nats_up{job=~"no_password|wrong_ca"}') == []


def test_the_log_holds_no_password_or_hash(stack):
    wait_until(lambda: target_health(stack.prometheus)["no_password"][0] == "down")
    log = "".join(stack.exporter.log)
    assert "TLS" in log  # the startup line says what the web config turned on
    for secret in (stack.password, stack.password + "x", stack.hashed, stack.hashed[7:29]):
        assert secret not in log
