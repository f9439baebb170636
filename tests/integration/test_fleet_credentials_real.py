"""Fleet mode when the server stops accepting the exporter's credentials: the password of the
system-account user changes and nats-server reloads, closing the exporter's connection with an
authorization violation. The exporter keeps serving with ``nats_up 0``, counts the failure,
logs the refusal once, and comes back by itself when the password is restored."""

from __future__ import annotations

import signal

from prometheus_client.parser import text_string_to_metric_families

from fastnats.fleet import FORGET_AFTER
from tests.support.process import exporting, running_nats, wait_until

PASSWORD = "fleet-creds-secret-1"
OTHER = "fleet-creds-secret-2"
CONF = """server_name: creds
accounts {{
  SYS: {{ users: [{{ user: sys, password: "{password}" }}] }}
  APP: {{ users: [{{ user: app, password: app }}] }}
}}
system_account: SYS
"""


def values(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for metric in text_string_to_metric_families(text)
            for sample in metric.samples if sample.name == family}


def reload(server, conf, password: str) -> None:
    """Rewrite the SYS user's password and have nats-server reload its conf (SIGHUP)."""
    reloads = sum("Reloaded server configuration" in line for line in server.log_lines)
    conf.write_text(CONF.format(password=password))
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: sum("Reloaded server configuration" in line
                           for line in server.log_lines) > reloads, timeout=10)


def test_revoked_credentials_show_down_once_logged_and_recover(tmp_path):
    conf = tmp_path / "nats.conf"
    conf.write_text(CONF.format(password=PASSWORD))
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    with running_nats("-c", str(conf)) as server, exporting(
            "--nats.url", f"nats://127.0.0.1:{server.client_port}", "--nats.user", "sys",
            "--nats.password-file", str(password_file), "--web.listen-address", "127.0.0.1:0",
            "--refresh-interval", "0.2s", "--timeout", "1s") as exporter:
        up = (("server", "creds"),)
        varz_connect = (("endpoint", "varz"), ("reason", "connect"), ("server", "creds"))
        disconnected = (("event", "disconnected"),)
        before = wait_until(lambda: (t := exporter.scrape()) and
                            values(t, "nats_up").get(up) == 1 and t)
        errors_before = values(before, "fastnats_refresh_errors_total")[varz_connect]
        events_before = values(before, "fastnats_nats_connection_events_total")[disconnected]
        logged = len(exporter.log)

        reload(server, conf, OTHER)
        # Down and counted, and still shown down (not forgotten) past FORGET_AFTER refreshes,
        # which also gives the refusal the time to be logged again if it would be.
        down = wait_until(lambda: (t := exporter.scrape()) and
                          values(t, "nats_up").get(up) == 0 and
                          values(t, "fastnats_refresh_errors_total")[varz_connect]
                          >= errors_before + FORGET_AFTER + 2 and t, timeout=15)
        assert values(down, "fastnats_nats_connection_events_total")[disconnected] \
            > events_before
        assert exporter.process.poll() is None
        revoked_log = exporter.log[logged:]
        refused = [line for line in revoked_log if "refused" in line]
        assert len(refused) == 1, "".join(revoked_log)
        assert "authoriz" in refused[0].lower(), refused[0]

        logged = len(exporter.log)
        reload(server, conf, PASSWORD)
        after = wait_until(lambda: (t := exporter.scrape()) and
                           values(t, "nats_up").get(up) == 1 and t, timeout=15)
        refreshes = values(after, "fastnats_refreshes_total")[up]
        wait_until(lambda: values(exporter.scrape(), "fastnats_refreshes_total")[up]
                   >= refreshes + 3)
        recovered_log = exporter.log[logged:]
        assert sum("reconnected" in line for line in recovered_log) == 1, "".join(recovered_log)
        assert not any("refused" in line for line in recovered_log), "".join(recovered_log)
        assert PASSWORD not in "".join(exporter.log)
