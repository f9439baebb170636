"""https:// monitoring URLs against a real nats-server whose monitoring port serves TLS.

With --nats.tls.ca the exporter reads it (``nats_up 1``, real /varz values); without, or with a
client certificate the server does not trust, the server is down, the failure is counted with
reason ``tls`` and logged once with its cause; --nats.tls.insecure-skip-verify reads it and says
loudly what that exposes; credentials in the URL show nowhere; --check reads https too.

nats-server's https monitor asks for no client certificate, even with ``verify: true``
(server.go, ``startMonitoring``), unless OCSP peer checking is on: then it requires and
verifies one. The client-certificate server here turns it on, and accepts the unknown OCSP
status of a test certificate.
"""

from __future__ import annotations

import datetime
import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats.nats import launcher
from tests.support.certs import PkiFiles, write_pki
from tests.support.process import exporting, require_tool, wait_until

pytestmark = pytest.mark.integration

ARGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2s", "--timeout", "2s")
PASSWORD = "tls-url-secret-7"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def https_nats(pki: PkiFiles, folder: Path, *, client_certificates: bool = False
               ) -> Iterator[launcher.NatsServer]:
    """nats-server with its monitoring port on https (and so TLS on its client port too)."""
    verify = ("ca_file: \"{ca}\", verify: true, ocsp_peer: {{ verify: true, "
              "unknown_is_good: true, allow_when_ca_unreachable: true }}"
              if client_certificates else "")
    conf = folder / "https.conf"
    conf.write_text(f"""server_name: tls-monitor
https: "127.0.0.1:-1"
tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}"
       {verify.format(ca=pki.ca)} }}
""")
    require_tool("nats-server")
    # No -m: nats-server refuses http and https monitoring together.
    server = launcher.start(["-c", str(conf), "-p", "-1", "-a", "127.0.0.1"])
    try:
        assert server.monitor_url.startswith("https://"), server.log_lines
        yield server
    finally:
        server.stop()


def varz(server: launcher.NatsServer, pki: PkiFiles) -> dict:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=10,
                                context=context) as resp:
        return json.loads(resp.read())


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for metric in text_string_to_metric_families(text)
            for sample in metric.samples if sample.name == family}


TLS_FAILURES = (("endpoint", "varz"), ("reason", "tls"))


def up_text(exporter) -> str:
    return wait_until(lambda: (t := exporter.scrape()) and samples(t, "nats_up").get(()) == 1
                      and t)


def tls_failure_text(exporter) -> str:
    """The exposition once a TLS failure was counted, and the server shown down."""
    return wait_until(lambda: (t := exporter.scrape()) and
                      samples(t, "fastnats_refresh_errors_total").get(TLS_FAILURES, 0) >= 2 and
                      samples(t, "nats_up").get(()) == 0 and t)


def down_lines(exporter) -> list[str]:
    wait_until(lambda: any("is down" in line for line in exporter.log))
    return [line for line in exporter.log if "is down" in line]


def test_https_with_the_ca_reads_the_real_varz(pki, tmp_path):
    with https_nats(pki, tmp_path) as server, exporting(
            server.monitor_url, "--nats.tls.ca", str(pki.ca), *ARGS) as exporter:
        text = up_text(exporter)
        expected = varz(server, pki)
    [(info, value)] = samples(text, "nats_server_info").items()
    assert value == 1
    assert dict(info)["server_id"] == expected["server_id"]
    assert dict(info)["server_name"] == "tls-monitor"
    # The client port's certificate, as /varz reports it, is the one the CA signed.
    assert samples(text, "nats_server_tls_cert_not_after_timestamp_seconds")[
        (("listener", "client"),)] == datetime.datetime.fromisoformat(
        expected["tls_cert_not_after"].replace("Z", "+00:00")).timestamp()
    assert samples(text, "fastnats_refresh_errors_total").get(TLS_FAILURES, 0) == 0


def test_https_without_the_ca_is_down_counted_and_logged_once(pki, tmp_path):
    with https_nats(pki, tmp_path) as server, exporting(server.monitor_url, *ARGS) as exporter:
        tls_failure_text(exporter)
        [line] = down_lines(exporter)
    assert f"server 127.0.0.1:{server.ports['https']} is down: varz: tls: " in line
    assert "the server's certificate is not trusted" in line and "--nats.tls.ca" in line


def test_insecure_skip_verify_reads_it_and_warns_once(pki, tmp_path):
    with https_nats(pki, tmp_path) as server, exporting(
            server.monitor_url, "--nats.tls.insecure-skip-verify", *ARGS) as exporter:
        up_text(exporter)
        warnings = [line for line in exporter.log if "insecure-skip-verify" in line]
    assert len(warnings) == 1, warnings
    assert " WARNING " in warnings[0] and server.monitor_url in warnings[0]
    assert "not checked" in warnings[0] and "pose as these servers" in warnings[0]


def test_a_server_that_requires_a_client_certificate(pki, tmp_path):
    with https_nats(pki, tmp_path, client_certificates=True) as server:
        with exporting(server.monitor_url, "--nats.tls.ca", str(pki.ca), "--nats.tls.cert",
                       str(pki.client_cert), "--nats.tls.key", str(pki.client_key),
                       *ARGS) as exporter:
            up_text(exporter)
        with exporting(server.monitor_url, "--nats.tls.ca", str(pki.ca), *ARGS) as exporter:
            tls_failure_text(exporter)
            [missing] = down_lines(exporter)
        with exporting(server.monitor_url, "--nats.tls.ca", str(pki.ca), "--nats.tls.cert",
                       str(pki.stranger_cert), "--nats.tls.key", str(pki.stranger_key),
                       *ARGS) as exporter:
            tls_failure_text(exporter)
            [refused] = down_lines(exporter)
    assert "the server requires a client certificate" in missing
    assert "give one with --nats.tls.cert and --nats.tls.key" in missing
    assert "the server refused the client certificate" in refused


def test_url_credentials_over_https_show_nowhere(pki, tmp_path):
    with https_nats(pki, tmp_path) as server:
        port = server.ports["https"]
        url = f"https://exporter:{PASSWORD}@127.0.0.1:{port}"
        shown = f"https://exporter:***@127.0.0.1:{port}"
        with exporting(url, "--nats.tls.ca", str(pki.ca), *ARGS) as exporter:
            text = up_text(exporter)
            log = "".join(exporter.log)
        assert shown in log
        # Failing, the error names the URL too: masked.
        with exporting(url, "--nats.tls.insecure-skip-verify", "--nats.tls.cert",
                       str(pki.client_cert), "--nats.tls.key", str(pki.client_key),
                       *ARGS) as insecure, exporting(url, *ARGS) as untrusted:
            up_text(insecure)
            failed = tls_failure_text(untrusted)
            [line] = down_lines(untrusted)
            log += "".join(insecure.log) + "".join(untrusted.log)
    assert shown in line and "monitoring password" in log
    assert PASSWORD not in log and PASSWORD not in text and PASSWORD not in failed


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastnats", "--check", *args],
                          capture_output=True, text=True, timeout=60)


def test_check_reads_https(pki, tmp_path):
    with https_nats(pki, tmp_path) as server:
        good = run_check(server.monitor_url, "--nats.tls.ca", str(pki.ca))
        bad = run_check(server.monitor_url)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0].endswith(f"({server.monitor_url}): up")
    assert good.stdout.splitlines()[-1] == "OK: every endpoint was read"
    assert bad.returncode == 1
    assert "varz     ERROR varz: tls: " in bad.stdout and "not trusted" in bad.stdout
