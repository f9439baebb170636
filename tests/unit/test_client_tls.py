"""TLS toward NATS, in this process: the client context the --nats.tls.* flags build (checked by
real handshakes with a loopback TLS server), the errors that name the flag and the file and
never what the file holds, what a failed handshake is called, and the flags' checks."""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fastnats import cli
from fastnats.errors import ScrapeError
from fastnats.sources.monitor import MonitorClient, new_session
from fastnats.sources.tls import (
    ClientTLS,
    TLSConfigError,
    client_context,
    describe_failure,
    speaks_no_tls,
)
from tests.support.certs import PkiFiles, server_context, write_pki
from tests.support.monitor import serving as serving_handler
from tests.support.process import require_tool

BODY = b'{"server_id": "N1"}'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return write_pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def serving(context: ssl.SSLContext | None = None, *, host: str = "127.0.0.1",
            greeting: bytes = b"") -> Iterator[int]:
    """An HTTP server on a free port of ``host`` (TLS with ``context``; OpenSSL on the server
    side too, as in the servers the exporter meets, which tell a refused client why) that
    answers BODY, after ``greeting``."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            if greeting:
                self.wfile.write(greeting)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving_handler(Handler, host=host, context=context) as port:
        yield port


def read(url: str, client: ssl.SSLContext | None) -> bytearray:
    """GET /varz at ``url`` with MonitorClient, on a session with ``client``."""
    async def get() -> bytearray:
        async with new_session(client) as session:
            return await MonitorClient(url, session, 5.0, tls=client).get("varz")
    return asyncio.run(get())


def failure(url: str, client: ssl.SSLContext | None) -> ScrapeError:
    with pytest.raises(ScrapeError) as info:
        read(url, client)
    return info.value


def https(port: int, host: str = "127.0.0.1") -> str:
    return f"https://{host}:{port}"


# The context, by real handshakes.

def test_the_default_context_checks_certificate_and_name_with_tls_1_2_at_least():
    context = client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_the_ca_flag_trusts_that_ca_only(pki):
    context = client_context(str(pki.ca))
    assert len(context.get_ca_certs()) == 1
    with serving(server_context(pki.server)) as port:
        assert read(https(port), context) == BODY


def test_an_unknown_ca_fails_the_read_with_reason_tls(pki):
    with serving(server_context(pki.server)) as port:
        error = failure(https(port), client_context(str(pki.stranger_ca)))
        # Without --nats.tls.ca: the system's trust store, which knows no test CA either.
        assert failure(https(port), None).detail == error.detail
    assert (error.endpoint, error.reason) == ("varz", "tls")
    assert error.detail == (
        f"{https(port)}/varz: the server's certificate is not trusted (unable to get local "
        f"issuer certificate): give the CA that signed it with --nats.tls.ca")


def test_a_host_the_certificate_does_not_name_fails(pki):
    # The certificate names 127.0.0.1 and localhost; 127.0.0.2 is loopback too on Linux.
    with serving(server_context(pki.server), host="0.0.0.0") as port:
        assert read(https(port), client_context(str(pki.ca))) == BODY
        error = failure(https(port, "127.0.0.2"), client_context(str(pki.ca)))
    assert error.reason == "tls"
    assert "not valid for this host" in error.detail and "'127.0.0.2'" in error.detail


def test_insecure_skip_verify_reads_an_untrusted_server(pki):
    context = client_context(insecure_skip_verify=True)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    with serving(server_context(pki.server), host="0.0.0.0") as port:
        assert read(https(port, "127.0.0.2"), context) == BODY


def test_a_client_certificate_is_presented_and_required(pki):
    with serving(server_context(pki.server, client_ca=pki.authority)) as port:
        assert read(https(port), client_context(str(pki.ca), str(pki.client_cert),
                                                str(pki.client_key))) == BODY
        missing = failure(https(port), client_context(str(pki.ca)))
        stranger = failure(https(port), client_context(str(pki.ca), str(pki.stranger_cert),
                                                       str(pki.stranger_key)))
    assert missing.reason == stranger.reason == "tls"
    assert missing.detail.endswith(
        "the server requires a client certificate (tlsv13 alert certificate required): give "
        "one with --nats.tls.cert and --nats.tls.key")
    assert "the server refused the client certificate (tlsv1 alert unknown ca)" in \
        stranger.detail


def test_a_connection_dropped_without_a_word_after_the_handshake_says_what_it_may_mean(pki):
    # A server that judges the client certificate after the handshake may reset the
    # connection without an alert; the probe that only reads then hears nothing either.
    class Dropping(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.request.close()
            self.close_connection = True

        def finish(self) -> None:
            pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving_handler(Dropping, context=server_context(pki.server)) as port:
        error = failure(https(port), client_context(str(pki.ca)))
    assert error.reason == "connect", error
    assert error.detail.endswith(
        "(a server that requires a client certificate, or does not trust the one given, drops "
        "the connection: check --nats.tls.cert and --nats.tls.key)"), error.detail


def test_https_to_a_plain_port_says_so_and_to_the_nats_port_names_it(pki):
    with serving() as port:
        error = failure(https(port), client_context(str(pki.ca)))
    assert error.reason == "tls"
    assert "does not speak TLS" in error.detail and error.detail.endswith(
        "a plain monitoring port is read with http://")
    with serving(greeting=b'INFO {"server_id":"N1"}\r\n') as port:
        error = failure(https(port), client_context(str(pki.ca)))
    assert error.reason == "connect" and "is the NATS client port" in error.detail


def test_plain_http_ignores_the_tls_context(pki):
    with serving() as port:
        assert read(f"http://127.0.0.1:{port}", client_context(str(pki.ca))) == BODY


# Errors in the files: the flag, the file, never the content.

def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and "-----" not in line]


def config_error(*args, **kwargs) -> str:
    with pytest.raises(TLSConfigError) as info:
        client_context(*args, **kwargs)
    return str(info.value)


def test_cert_and_key_go_together_and_insecure_takes_no_ca(pki):
    assert "go together" in config_error(cert=str(pki.client_cert))
    assert "go together" in config_error(key=str(pki.client_key))
    message = config_error(str(pki.ca), insecure_skip_verify=True)
    assert "--nats.tls.insecure-skip-verify" in message and "--nats.tls.ca" in message


def test_unreadable_files_name_flag_file_and_cause(pki, tmp_path):
    missing = tmp_path / "missing.pem"
    message = config_error(str(missing))
    assert message == f"--nats.tls.ca {missing}: cannot read: No such file or directory"
    message = config_error(str(pki.ca), str(missing), str(pki.client_key))
    assert message.startswith(f"--nats.tls.cert {missing}: cannot read")
    message = config_error(str(pki.ca), str(pki.client_cert), str(missing))
    assert message.startswith(f"--nats.tls.key {missing}: cannot read")


def test_files_that_are_not_what_they_should_be(pki, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert "--nats.tls.ca" in config_error(str(text)) and "no PEM certificate" in \
        config_error(str(text))
    assert config_error(str(broken)).startswith(f"--nats.tls.ca {broken}: not a valid PEM")
    assert config_error(cert=str(broken), key=str(pki.client_key)).startswith(
        f"--nats.tls.cert {broken}: not a valid PEM")
    # The key given as the certificate, and the certificate as the key.
    message = config_error(cert=str(pki.client_key), key=str(pki.client_key))
    assert message.startswith(f"--nats.tls.cert {pki.client_key}: holds no PEM certificate")
    message = config_error(cert=str(pki.client_cert), key=str(pki.client_cert))
    assert message.startswith(f"--nats.tls.key {pki.client_cert}: holds no PEM private key")
    for line in key_lines(pki.client_key):
        assert line not in message


def test_a_key_of_another_certificate_is_named_and_not_shown(pki):
    message = config_error(cert=str(pki.client_cert), key=str(pki.stranger_key))
    assert message == (f"--nats.tls.key {pki.stranger_key} is not the key of the certificate in "
                       f"--nats.tls.cert {pki.client_cert}")


def test_an_encrypted_key_is_refused_without_a_prompt(pki, tmp_path):
    openssl = require_tool("openssl")
    encrypted = tmp_path / "encrypted-key.pem"
    subprocess.run([openssl, "pkey", "-in", str(pki.client_key), "-aes256", "-passout", "pass:pw",
                    "-out", str(encrypted)], check=True, stdin=subprocess.DEVNULL)
    message = config_error(cert=str(pki.client_cert), key=str(encrypted))
    assert message.startswith(f"--nats.tls.key {encrypted}: the key is encrypted")
    for line in key_lines(encrypted):
        assert line not in message


def test_client_tls_is_the_flags():
    assert not ClientTLS().configured
    assert ClientTLS(insecure_skip_verify=True).configured
    assert ClientTLS(insecure_skip_verify=True).context().verify_mode == ssl.CERT_NONE


# What a failure is called.

def test_describe_failure_finds_the_ssl_error_in_a_chain():
    assert describe_failure(OSError("refused")) is None
    try:
        try:
            raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1)")
        except ssl.SSLError as exc:
            raise ConnectionError("wrapped") from exc
    except ConnectionError as outer:
        wrapped = outer
    # An SSLError built in Python has no reason: only the words are left.
    assert describe_failure(wrapped) == "TLS handshake failed (wrong version number)"
    assert not speaks_no_tls(wrapped)


# The flags.

def settings(*argv: str) -> cli.Settings:
    return cli.resolve(cli.build_parser().parse_args(list(argv)))


def test_tls_flags_apply_to_https_urls(pki):
    s = settings("https://127.0.0.1:8443", "--nats.tls.ca", str(pki.ca))
    assert s.tls == ClientTLS(ca=str(pki.ca))
    assert settings("http://127.0.0.1:8222").tls is None


@pytest.mark.parametrize("argv, message", [
    (("http://127.0.0.1:8222", "--nats.tls.ca", "{ca}"), "no monitoring URL here is https://"),
    (("--nats.tls.insecure-skip-verify",), "no monitoring URL here is https://"),
    (("https://h:8443", "--nats.tls.cert", "{cert}"), "go together"),
    (("https://h:8443", "--nats.tls.ca", "{ca}", "--nats.tls.insecure-skip-verify"),
     "give one or the other"),
    (("https://h:8443", "--nats.tls.ca", "/nonexistent/ca.pem"),
     "--nats.tls.ca /nonexistent/ca.pem: cannot read"),
    (("--nats.url", "tls://h:4222", "--nats.tls.cert", "{cert}"), "go together"),
])
def test_tls_usage_errors(pki, argv, message):
    argv = tuple(a.format(ca=pki.ca, cert=pki.client_cert) for a in argv)
    with pytest.raises(cli.UsageError, match=message):
        settings(*argv)


def test_tls_flags_are_not_fleet_only_and_the_fleet_gets_them(pki):
    s = settings("--nats.url", "tls://127.0.0.1:4222", "--nats.tls.ca", str(pki.ca),
                 "--nats.tls.cert", str(pki.client_cert), "--nats.tls.key", str(pki.client_key))
    assert s.fleet is not None and s.fleet.tls == s.tls == ClientTLS(
        str(pki.ca), str(pki.client_cert), str(pki.client_key))


def test_insecure_skip_verify_warns_once_naming_what_is_exposed(caplog):
    with caplog.at_level(logging.WARNING, logger="fastnats"):
        settings("https://u:hunter2@127.0.0.1:8443", "http://127.0.0.1:8222",
                 "--nats.tls.insecure-skip-verify")
    [record] = [r for r in caplog.records if "insecure-skip-verify" in r.getMessage()]
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "https://u:***@127.0.0.1:8443" in text and "8222" not in text
    assert "not checked" in text and "monitoring password" in text
    assert "hunter2" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastnats"):
        settings("--nats.url", "tls://s:p@127.0.0.1:4222", "--nats.tls.insecure-skip-verify")
    [record] = [r for r in caplog.records if "insecure-skip-verify" in r.getMessage()]
    assert "system account" in record.getMessage() and "s:p@" not in record.getMessage()


def test_help_places_the_tls_flags_under_tls_toward_nats(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    section = out.split("TLS toward NATS")[1].split("\n\n")[0]
    for flag in ("--nats.tls.ca", "--nats.tls.cert", "--nats.tls.key",
                 "--nats.tls.insecure-skip-verify"):
        assert flag in section


@pytest.mark.parametrize("flag", ["--nats.tls.ca", "--nats.password-file"])
def test_a_fifo_named_by_a_flag_is_refused_without_blocking(tmp_path, flag):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it to read would block for ever
    argv = ["https://u@127.0.0.1:8222" if flag == "--nats.password-file" else
            "https://127.0.0.1:8222", flag, str(fifo)]
    with pytest.raises(cli.UsageError, match=r"not a regular file \(a FIFO\)"):
        cli.resolve(cli.build_parser().parse_args(argv))
