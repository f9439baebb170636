"""A real Prometheus (Debian's `prometheus` package) on a free port, for the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.process import free_port, require_tool, stop_process, wait_until


class Prometheus:
    """A Prometheus process scraping ``targets`` as job ``job`` every second; ``scrape``
    adds settings to the job (scheme, tls_config, basic_auth), and ``more_jobs`` whole jobs."""

    def __init__(self, binary: str, workdir: Path, job: str, targets: Sequence[str],
                 rule_files: Sequence[Path], scrape: dict | None = None,
                 more_jobs: Sequence[dict] = ()) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        # JSON is YAML; json.dumps quotes every value safely. No scrape_protocols or
        # Accept override: Prometheus negotiates the format as it would in production.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}], **(scrape or {})},
                *more_jobs],
        }, indent=2))
        self.log_path = workdir / "prometheus.log"
        # Prometheus cannot be told to pick its own port and report it, so a free port is
        # picked here; if another process takes it first, Prometheus exits and start retries.
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:  # not listening yet, or 503 while the TSDB opens
            return False

    def api(self, path: str, **params: str) -> object:
        """``data`` of a successful API answer; an error answer fails the test with its text."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector of ``expr`` now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The value of a single-series ``expr``; None while it has no series."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} has {len(result)} series: {result}"
        return float(result[0]["value"][1])

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def start_prometheus(tmp_path_factory) -> Iterator:
    """``start_prometheus(job, targets, rule_files=(), scrape=None, more_jobs=())`` returns a
    ready Prometheus; all the ones started are stopped when the module's tests are done."""
    binary = require_tool("prometheus")
    started: list[Prometheus] = []

    def start(job: str, targets: Sequence[str], rule_files: Sequence[Path] = (),
              scrape: dict | None = None, more_jobs: Sequence[dict] = ()) -> Prometheus:
        for _attempt in range(3):
            prometheus = Prometheus(binary, tmp_path_factory.mktemp("prometheus"), job, targets,
                                    rule_files, scrape, more_jobs)
            started.append(prometheus)
            try:
                wait_until(prometheus.ready, timeout=30, interval=0.1)
                return prometheus
            except RuntimeError as exc:
                if "address already in use" not in str(exc):
                    raise
        raise AssertionError(f"prometheus found no free port:\n{started[-1].log()}")

    yield start
    for prometheus in started:
        prometheus.stop()
