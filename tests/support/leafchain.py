"""Servers chained by leafnodes with the system account bound across each hop (remotes with
``account: SYS``), so that one exporter connected to the hub reads every server over the system
account, and a far server's replies cross the hops on their way back.

nats-server checks a message it receives on a leafnode connection against its own
``max_payload`` and closes that connection when the message is larger ("Maximum Payload
Violation"): a middle server with a small ``max_payload`` is the hop a reply must fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fastnats.nats import launcher
from tests.support.process import http_get

#: The system account's one user, and its password.
SYS_USER = "sys"


def write_conf(directory: Path, name: str, max_payload: int, *, remote_port: int | None = None,
               listen: bool = True, jetstream_accounts: Sequence[str] = ()) -> Path:
    """The conf of server ``name``: SYS the system account, bound across a leafnode to
    ``remote_port`` when given; a leafnode listener when ``listen``. With
    ``jetstream_accounts``, JetStream in a domain of its own (stored under ``directory``) and
    each of those accounts enabled, its user and password its name in lower case; they stay
    on this server (no remote binds them)."""
    accounts = [f"SYS {{ users [{{user: {SYS_USER}, password: {SYS_USER}}}] }}"]
    accounts += [f"{account} {{ jetstream: enabled, users [{{user: {account.lower()}, "
                 f"password: {account.lower()}}}] }}" for account in jetstream_accounts]
    leafnodes = ["listen: 127.0.0.1:-1"] if listen else []
    if remote_port is not None:
        leafnodes.append(f'remotes [{{ url: "nats://{SYS_USER}:{SYS_USER}@127.0.0.1:'
                         f'{remote_port}", account: SYS }}]')
    lines = [f"server_name: {name}", f"max_payload: {max_payload}",
             "accounts {", *(f"  {account}" for account in accounts), "}",
             "system_account: SYS", "leafnodes {", *(f"  {block}" for block in leafnodes), "}"]
    if jetstream_accounts:
        lines.append(f'jetstream {{ store_dir: "{directory / name}-js", domain: {name} }}')
    path = directory / f"{name}.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def leaf_ids(server: launcher.NatsServer) -> set[tuple[str, str, str]]:
    """The server's leafnode connections: (remote name, account, connection id)."""
    leafz = json.loads(http_get(f"{server.monitor_url}/leafz"))
    return {(leaf["name"], leaf["account"], str(leaf.get("id", leaf.get("cid"))))
            for leaf in leafz["leafs"] or []}


def payload_errors(servers: Sequence[launcher.NatsServer]) -> list[str]:
    """The servers' log lines about a message over max_payload."""
    return [line for server in servers for line in server.log_lines
            if "maximum payload" in line.lower()]


def samples_of(text: str, family: str, server: str,
               labels: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
    """The samples of ``family`` for ``server`` in an exposition, by the values of
    ``labels``."""
    out: dict[tuple[str, ...], float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family and sample.labels.get("server") == server:
                out[tuple(sample.labels[label] for label in labels)] = sample.value
    return out
