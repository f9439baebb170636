"""Fleet mode's ways in, against real nats-servers: a client port that requires TLS (reached as
tls://, checked with --nats.tls.ca; with ``verify: true`` also a client certificate), and a
system-account user authenticated by an nkey (--nats.nkey). Each works (``nats_up 1``); each way
of getting it wrong exits 2 with one line that says what to fix and quotes no secret. And in
operator mode, a system-account user's credentials file (--nats.creds): the operator, account and
user JWTs are made here with nkeys, the server resolves the account from memory.

User and password from --nats.password-file are the TLS servers' users here; their refusal and
recovery are tests/integration/test_fleet_credentials_real.py's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastnats.sources.tls import client_context, describe_failure, refusal
from tests.support.certs import PkiFiles, write_pki
from tests.support.process import exporting, running_nats, wait_until

pytestmark = pytest.mark.integration
nkeys = pytest.importorskip("nkeys")

PASSWORD = "fleet-tls-secret-3"
ARGS = ("--web.listen-address", "127.0.0.1:0", "--refresh-interval", "0.2s", "--timeout", "1s")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_pki(tmp_path_factory.mktemp("pki"))


def tls_conf(tmp_path: Path, pki: PkiFiles, *, verify: bool) -> Path:
    conf = tmp_path / "nats.conf"
    client_ca = f', ca_file: "{pki.ca}", verify: true' if verify else ""
    conf.write_text(f"""server_name: fleet-tls
tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}"{client_ca} }}
accounts {{ SYS: {{ users: [{{ user: sys, password: "{PASSWORD}" }}] }} }}
system_account: SYS
""")
    return conf


def user_seed() -> bytes:
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


def nkey_conf(tmp_path: Path, seed: bytes) -> Path:
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"""server_name: fleet-nkey
accounts {{ SYS: {{ users: [{{ nkey: {public} }}] }} }}
system_account: SYS
""")
    return conf


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_pair(prefix: int):
    """A new nkey pair of a role (operator, account, user): (seed, public key, pair)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(bytearray(seed))
    return seed, pair.public_key.decode(), pair


def signed_jwt(signer, subject: str, name: str, nats: dict) -> str:
    """A NATS JWT (version 2) of ``subject``, signed by ``signer``'s nkey (ed25519)."""
    claims = {"iat": int(time.time()), "iss": signer.public_key.decode(), "name": name,
              "sub": subject, "nats": {**nats, "version": 2}}
    claims["jti"] = base64.b32encode(hashlib.sha256(
        json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signer.sign(f'{head}.{body}'.encode()))}"


def creds_text(account, user_seed: bytes, user_public: str) -> bytes:
    """A credentials file of a user of ``account``: its JWT and its seed."""
    jwt = signed_jwt(account, user_public, "sys", {
        "type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
    return (f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{user_seed.decode()}\n"
            f"------END USER NKEY SEED------\n").encode()


def operator_conf(tmp_path: Path) -> tuple[Path, object]:
    """A conf in operator mode whose system account is resolved from memory; and the
    account's key pair, which signs its users."""
    _, operator_public, operator = new_pair(nkeys.PREFIX_BYTE_OPERATOR)
    _, account_public, account = new_pair(nkeys.PREFIX_BYTE_ACCOUNT)
    operator_jwt = signed_jwt(operator, operator_public, "op",
                              {"type": "operator", "system_account": account_public})
    account_jwt = signed_jwt(operator, account_public, "SYS", {"type": "account", "limits": {
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": True, "conn": -1, "leaf": -1}})
    conf = tmp_path / "nats.conf"
    conf.write_text(f"""server_name: fleet-creds
operator: {operator_jwt}
system_account: {account_public}
resolver: MEMORY
resolver_preload: {{ {account_public}: {account_jwt} }}
""")
    return conf, account


def secret_file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content + b"\n")
    path.chmod(0o600)
    return path


def up(exporter, server: str) -> str:
    def read() -> str | None:
        text = exporter.scrape()
        values = {tuple(sorted(s.labels.items())): s.value
                  for metric in text_string_to_metric_families(text)
                  for s in metric.samples if s.name == "nats_up"}
        return text if values.get((("server", server),)) == 1 else None
    return wait_until(read)


def refused(*args: str) -> str:
    """The exporter's one-line error, once it exited 2 on ``args``."""
    result = subprocess.run([sys.executable, "-m", "fastnats", *args, *ARGS],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fastnats-exporter: error: "), result.stderr
    return result.stderr


def password_args(tmp_path: Path) -> tuple[str, ...]:
    return ("--nats.user", "sys", "--nats.password-file",
            str(secret_file(tmp_path, "password", PASSWORD.encode())))


def test_a_tls_client_port_reached_as_tls_with_the_ca(pki, tmp_path):
    with running_nats("-c", str(tls_conf(tmp_path, pki, verify=False))) as server:
        url = f"tls://127.0.0.1:{server.client_port}"
        with exporting("--nats.url", url, "--nats.tls.ca", str(pki.ca),
                       *password_args(tmp_path), *ARGS) as exporter:
            up(exporter, "fleet-tls")
        log = "".join(exporter.log)
        with exporting("--nats.url", url, "--nats.tls.insecure-skip-verify",
                       *password_args(tmp_path), *ARGS) as exporter:
            up(exporter, "fleet-tls")
            warnings = [line for line in exporter.log if "insecure-skip-verify" in line]
        untrusted = refused("--nats.url", url, *password_args(tmp_path))
    assert "insecure-skip-verify" not in log and PASSWORD not in log
    # Down to the last line after the stop: nats-py's TLS close used to warn from asyncio.
    assert "stopping" in log and " WARNING " not in log and " ERROR " not in log, log
    assert len(warnings) == 1 and " WARNING " in warnings[0], warnings
    assert url in warnings[0] and "system account" in warnings[0]
    assert "the server's certificate is not trusted" in untrusted
    assert "give the CA that signed it with --nats.tls.ca" in untrusted
    assert PASSWORD not in untrusted


def test_a_client_port_that_verifies_client_certificates(pki, tmp_path):
    with running_nats("-c", str(tls_conf(tmp_path, pki, verify=True))) as server:
        url = f"tls://127.0.0.1:{server.client_port}"
        with exporting("--nats.url", url, "--nats.tls.ca", str(pki.ca),
                       "--nats.tls.cert", str(pki.client_cert),
                       "--nats.tls.key", str(pki.client_key),
                       *password_args(tmp_path), *ARGS) as exporter:
            up(exporter, "fleet-tls")
        missing = refused("--nats.url", url, "--nats.tls.ca", str(pki.ca),
                          *password_args(tmp_path))
        stranger = refused("--nats.url", url, "--nats.tls.ca", str(pki.ca),
                           "--nats.tls.cert", str(pki.stranger_cert),
                           "--nats.tls.key", str(pki.stranger_key), *password_args(tmp_path))
    assert "client certificate" in missing and "--nats.tls.cert" in missing, missing
    assert "client certificate" in stranger, stranger
    key = pki.stranger_key.read_text().splitlines()[1]
    assert key not in stranger and PASSWORD not in missing + stranger


def test_a_handshake_that_only_reads_hears_why_the_server_refuses_it(pki, tmp_path):
    # What the exporter asks when nats-py read a reset: over TLS 1.3 the alert comes after the
    # handshake, and a client that only reads cannot miss it.
    def probe(server, cert: Path | None = None, key: Path | None = None) -> str | None:
        context = client_context(ca=str(pki.ca), cert=cert and str(cert),
                                 key=key and str(key))
        alert = asyncio.run(refusal("127.0.0.1", server.client_port, context, 5.0, nats=True))
        return None if alert is None else describe_failure(alert)

    with running_nats("-c", str(tls_conf(tmp_path, pki, verify=True))) as server:
        stranger = probe(server, pki.stranger_cert, pki.stranger_key)
        missing = probe(server)
        trusted = probe(server, pki.client_cert, pki.client_key)
    assert stranger is not None and "refused the client certificate" in stranger, stranger
    assert missing is not None and "requires a client certificate" in missing, missing
    assert trusted is None
    plain = tmp_path / "plain"
    plain.mkdir()
    with running_nats("-c", str(tls_conf(plain, pki, verify=False))) as server:
        assert probe(server, pki.stranger_cert, pki.stranger_key) is None


def test_a_key_that_does_not_match_exits_2_before_connecting(pki, tmp_path):
    error = refused("--nats.url", "tls://127.0.0.1:1", "--nats.tls.cert", str(pki.client_cert),
                    "--nats.tls.key", str(pki.stranger_key))
    assert f"--nats.tls.key {pki.stranger_key} is not the key of the certificate in " \
           f"--nats.tls.cert {pki.client_cert}" in error


def test_a_system_user_by_nkey(tmp_path):
    seed = user_seed()
    with running_nats("-c", str(nkey_conf(tmp_path, seed))) as server:
        url = f"nats://127.0.0.1:{server.client_port}"
        with exporting("--nats.url", url, "--nats.nkey",
                       str(secret_file(tmp_path, "user.nk", seed)), *ARGS) as exporter:
            up(exporter, "fleet-nkey")
            log = "".join(exporter.log)
        other = user_seed()
        wrong = refused("--nats.url", url, "--nats.nkey",
                        str(secret_file(tmp_path, "other.nk", other)))
        public = nkeys.from_seed(bytearray(seed)).public_key
        not_a_seed = refused("--nats.url", url, "--nats.nkey",
                             str(secret_file(tmp_path, "public.nk", public)))
    other_public = nkeys.from_seed(bytearray(other)).public_key.decode()
    assert "authorization violation" in wrong
    assert f"check --nats.nkey: the public key of its seed ({other_public})" in wrong
    assert "holds no user nkey seed" in not_a_seed and str(tmp_path / "public.nk") in not_a_seed
    for secret in (seed, other):
        assert secret.decode() not in log + wrong + not_a_seed


def test_a_system_user_by_credentials_file_in_operator_mode(tmp_path):
    conf, account = operator_conf(tmp_path)
    seed, public, _ = new_pair(nkeys.PREFIX_BYTE_USER)
    # A user that an account the server does not know signed.
    _, _, stranger_account = new_pair(nkeys.PREFIX_BYTE_ACCOUNT)
    other_seed, other_public, _ = new_pair(nkeys.PREFIX_BYTE_USER)
    with running_nats("-c", str(conf)) as server:
        url = f"nats://127.0.0.1:{server.client_port}"
        creds = secret_file(tmp_path, "sys.creds", creds_text(account, seed, public))
        with exporting("--nats.url", url, "--nats.creds", str(creds), *ARGS) as exporter:
            up(exporter, "fleet-creds")
            log = "".join(exporter.log)
        wrong = refused("--nats.url", url, "--nats.creds", str(secret_file(
            tmp_path, "other.creds", creds_text(stranger_account, other_seed, other_public))))
        not_creds = refused("--nats.url", url, "--nats.creds",
                            str(secret_file(tmp_path, "seed.nk", seed)))
    assert "authorization violation" in wrong and "check --nats.creds" in wrong
    assert "not a NATS credentials file" in not_creds
    for secret in (seed, other_seed):
        assert secret.decode() not in log + wrong + not_creds
