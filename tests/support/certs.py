"""TLS for the tests, from trustme: throwaway CAs and the certificates they sign, written where a
nats-server conf or a flag can name them; the context a test's own TLS server serves them with;
and a handshake between two contexts in memory."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


def server_certificate(folder: Path, name: str, days: int) -> tuple[Path, Path, float]:
    """A certificate for 127.0.0.1 and localhost that expires in ``days``: its file, its key,
    and its notAfter as Unix seconds (whole seconds, as X.509 stores it)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = now + datetime.timedelta(days=days)
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost", common_name=name,
                                   not_before=now - datetime.timedelta(minutes=5),
                                   not_after=not_after)
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key, not_after.timestamp()


@dataclass(frozen=True)
class PkiFiles:
    """A CA, a server certificate for 127.0.0.1 and localhost and a client certificate it
    signed; and a stranger: a client certificate of another CA. The PEM files, for confs and
    flags; the CA and the server certificate also as trustme objects, for contexts made in the
    test's process."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path
    stranger_cert: Path
    stranger_key: Path
    authority: trustme.CA
    server: trustme.LeafCert


def write_pki(folder: Path) -> PkiFiles:
    """A new PkiFiles, written in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    now = datetime.datetime.now(datetime.timezone.utc)
    server = ca.issue_cert("127.0.0.1", "localhost", common_name="nats",
                           not_before=now - datetime.timedelta(minutes=5),
                           not_after=now + datetime.timedelta(days=30))
    client = ca.issue_cert("exporter@example.org", common_name="exporter")
    stranger = other.issue_cert("stranger@example.org", common_name="stranger")
    pki = PkiFiles(
        ca=folder / "ca.pem", server_cert=folder / "server.pem",
        server_key=folder / "server-key.pem", client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem", stranger_ca=folder / "stranger-ca.pem",
        stranger_cert=folder / "stranger.pem", stranger_key=folder / "stranger-key.pem",
        authority=ca, server=server)
    ca.cert_pem.write_to_path(str(pki.ca))
    other.cert_pem.write_to_path(str(pki.stranger_ca))
    for leaf, cert, key in ((server, pki.server_cert, pki.server_key),
                            (client, pki.client_cert, pki.client_key),
                            (stranger, pki.stranger_cert, pki.stranger_key)):
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
    return pki


def server_context(cert: trustme.LeafCert, client_ca: trustme.CA | None = None
                   ) -> ssl.SSLContext:
    """A TLS server's context that serves ``cert``; with ``client_ca``, it also requires a
    client certificate that CA signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext
              ) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake between two contexts over memory BIOs; raises the SSLError of the side
    that refused. Returns (server side, client side)."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            # TLS 1.3: the server reads the client's certificate after the client is done.
            with pytest.raises(ssl.SSLWantReadError):
                server_side.read(1)
            return server_side, client_side
    raise AssertionError("the handshake did not finish")
