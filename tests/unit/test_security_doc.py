"""docs/security.md's examples stay true: its web configs load with ``webconfig.load``, the
worked example admits the client certificate its scrape config describes and no other, its
hash command makes a hash the exporter accepts, and the flags and variables it names exist."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
import shlex
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from fastnats import cli, webconfig
from fastnats.webconfig import WebConfig, WebGate
from tests.e2e.support import DOCS, code_blocks
from tests.support.certs import handshake

SECURITY_MD = DOCS / "security.md"


def yaml_blocks() -> list[dict[str, Any]]:
    return [yaml.safe_load(block) for block in code_blocks(SECURITY_MD, "yaml")]


def web_config_texts() -> list[str]:
    return [block for block in code_blocks(SECURITY_MD, "yaml")
            if "scrape_configs" not in yaml.safe_load(block)]


def scrape_job() -> dict[str, Any]:
    (config,) = [block for block in yaml_blocks() if "scrape_configs" in block]
    (job,) = config["scrape_configs"]
    return job


def shell_commands() -> list[list[str]]:
    text = "\n".join(code_blocks(SECURITY_MD, "sh")).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@dataclass
class Worked:
    """The worked example, with certificates made for the files it names."""

    folder: Path
    config: WebConfig
    exporter_ca: trustme.CA
    prometheus: trustme.LeafCert  # what the scrape config's cert_file holds
    stranger: trustme.LeafCert  # signed by the same client CA, for another name


@pytest.fixture(scope="module")
def worked(tmp_path_factory: pytest.TempPathFactory) -> Worked:
    folder = tmp_path_factory.mktemp("security-doc")
    text = web_config_texts()[0]
    tls = yaml.safe_load(text)["tls_server_config"]
    host = scrape_job()["static_configs"][0]["targets"][0].rpartition(":")[0]
    exporter_ca, prometheus_ca = trustme.CA(), trustme.CA()
    leaf = exporter_ca.issue_cert(host)
    leaf.cert_chain_pems[0].write_to_path(str(folder / tls["cert_file"]))
    leaf.private_key_pem.write_to_path(str(folder / tls["key_file"]))
    prometheus_ca.cert_pem.write_to_path(str(folder / tls["client_ca_file"]))
    (allowed,) = tls["client_allowed_sans"]
    path = folder / "web.yml"
    path.write_text(text)
    return Worked(folder, webconfig.load(str(path)), exporter_ca,
                  prometheus_ca.issue_cert(allowed), prometheus_ca.issue_cert("other.example.net"))


def scraper(worked: Worked, certificate: trustme.LeafCert | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the server's name is not what this test is about
    worked.exporter_ca.configure_trust(context)
    if certificate is not None:
        certificate.configure_cert(context)
    return context


def test_the_worked_example_loads_as_described(worked: Worked):
    config = worked.config
    assert config.ssl_context is not None
    assert config.client_auth == "RequireAndVerifyClientCert"
    job = scrape_job()
    assert job["scheme"] == "https"
    assert {"ca_file", "cert_file", "key_file"} <= set(job["tls_config"])
    assert set(job["basic_auth"]) == {"username", "password_file"}
    assert list(config.users) == [job["basic_auth"]["username"]]
    # The cost the page recommends and times.
    assert config.users[job["basic_auth"]["username"]][4:6] == b"10"


def test_the_worked_example_admits_only_the_named_client_certificate(worked: Worked):
    gate = WebGate(worked.config)
    assert worked.config.ssl_context is not None
    server, _ = handshake(worked.config.ssl_context, scraper(worked, worked.prometheus))
    assert gate.check_peer(server.getpeercert()) is True
    server, _ = handshake(worked.config.ssl_context, scraper(worked, worked.stranger))
    assert gate.check_peer(server.getpeercert()) is False
    with pytest.raises(ssl.SSLError):
        handshake(worked.config.ssl_context, scraper(worked, None))


def test_the_worked_example_refuses_a_missing_or_wrong_password(worked: Worked):
    gate = WebGate(worked.config)
    user = scrape_job()["basic_auth"]["username"]
    assert gate.authorize(None) is False
    assert asyncio.run(gate.verify(basic(user, "not the password"))) is False


def test_the_python_hash_command_makes_a_hash_the_exporter_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (command,) = [argv for argv in shell_commands() if argv[:2] == ["python3", "-c"]]
    monkeypatch.setattr("getpass.getpass", lambda prompt="Password: ": "s3cret")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(command[2], {})  # the page's own one-liner, getpass answered above
    hashed = out.getvalue().strip()
    assert hashed.startswith("$2b$10$")
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    gate = WebGate(webconfig.load(str(path)))
    assert asyncio.run(gate.verify(basic("prometheus", "s3cret"))) is True
    assert gate.authorize(basic("prometheus", "s3cret")) is True  # remembered


def test_the_headers_and_rate_limit_example_loads(write):
    (text,) = [t for t in web_config_texts() if "rate_limit" in t]
    config = webconfig.load(str(write(text, "web.yml")))
    assert config.ssl_context is None and not config.users
    assert (config.rate_interval, config.rate_burst) == (0.1, 20)
    assert config.headers.count(b"\r\n") == 2


def test_the_exporter_command_names_the_example_file():
    (command,) = [argv for argv in shell_commands() if argv[0] == "fastnats-exporter"]
    args = cli.build_parser().parse_args(command[1:])
    first_line = web_config_texts()[0].splitlines()[0]
    assert first_line == f"# {args.web_config}"


def test_the_flags_and_variables_named_exist():
    text = SECURITY_MD.read_text()
    flags = {flag for action in cli.build_parser()._actions for flag in action.option_strings}
    named = set(re.findall(r"`(--[a-z][\w.-]*\*?)", text))
    # `--nats.tls.*` stands for a family of flags.
    missing = {name for name in named if not any(
        flag.startswith(name[:-1]) if name.endswith("*") else flag == name for flag in flags)}
    assert named and not missing, missing
    source = Path(cli.__file__).read_text()
    variables = set(re.findall(r"\$(FASTNATS_\w+)", text))
    assert variables and all(f'"{name}"' in source for name in variables), variables
