"""TLS certificates for the tests, from trustme: a throwaway CA and server certificates for
127.0.0.1 with a chosen lifetime, written where a nats-server conf can name them."""

from __future__ import annotations

import datetime
from pathlib import Path

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
