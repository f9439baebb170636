"""TLS toward NATS, client side: the one ``ssl.SSLContext`` that both sources use (https://
monitoring URLs, the fleet's tls:// connections), built from the --nats.tls.* flags, the words
for a handshake that failed, and the handshake that only reads to hear why a server refused one.

Every error names the flag and its file, and never quotes what a file holds.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import FastNatsError
from ..files import FileRefused, read_regular

CA_FLAG = "--nats.tls.ca"
CERT_FLAG = "--nats.tls.cert"
KEY_FLAG = "--nats.tls.key"
INSECURE_FLAG = "--nats.tls.insecure-skip-verify"

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")

# OpenSSL's reasons, by what they mean for the exporter.
_CERTIFICATE_REQUIRED = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED"})
_CERTIFICATE_REFUSED = frozenset({
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR"})
_HANDSHAKE_REFUSED = frozenset({"SSLV3_ALERT_HANDSHAKE_FAILURE"})
#: What a TLS client reads from a peer that answers in plain text.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
                      "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "RECORD_TOO_LARGE"})
#: The longest a refusal probe waits: a handshake and an alert, on a loaded machine.
PROBE_WAIT = 2.0
_OPENSSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


class TLSConfigError(FastNatsError, ValueError):
    """A --nats.tls.* flag cannot be used; the message names the flag and its file."""


@dataclass(frozen=True)
class ClientTLS:
    """The --nats.tls.* flags: the CA that signs the servers' certificates (None: the system's
    trust store), the client certificate and its key, and whether to check nothing at all."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure_skip_verify: bool = False

    @property
    def configured(self) -> bool:
        return (self.ca is not None or self.cert is not None or self.key is not None
                or self.insecure_skip_verify)

    def context(self) -> ssl.SSLContext:
        """A new context from the files as they are now; raises TLSConfigError."""
        return client_context(self.ca, self.cert, self.key, self.insecure_skip_verify)


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None,
                   insecure_skip_verify: bool = False) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, the server's certificate checked against ``ca``
    (PEM; default the system's trust store) and its host name, unless ``insecure_skip_verify``;
    ``cert`` and ``key`` (PEM, unencrypted) prove the client to servers that ask. Raises
    TLSConfigError naming the flag and the file that cannot be used."""
    if (cert is None) != (key is None):
        raise TLSConfigError(f"{CERT_FLAG} and {KEY_FLAG} go together: give both or neither")
    if insecure_skip_verify and ca is not None:
        raise TLSConfigError(f"{INSECURE_FLAG} checks no certificate, so {CA_FLAG} would go "
                             f"unused; give one or the other")
    if ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        pem = read_flag_file(CA_FLAG, ca)
        if _PEM_CERTIFICATE not in pem:
            raise TLSConfigError(f"{CA_FLAG} {ca}: holds no PEM certificate "
                                 f"({_PEM_CERTIFICATE.decode()})")
        try:
            # Only this CA, as nats-server's ca_file: not the system's trust store besides.
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                                 cadata=pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError) as exc:
            raise TLSConfigError(f"{CA_FLAG} {ca}: not a valid PEM certificate "
                                 f"({_words(exc)})") from None
    if cert is not None and key is not None:
        _load_client_certificate(context, cert, key)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str) -> None:
    cert_pem, key_pem = read_flag_file(CERT_FLAG, cert), read_flag_file(KEY_FLAG, key)
    if _PEM_CERTIFICATE not in cert_pem:
        raise TLSConfigError(f"{CERT_FLAG} {cert}: holds no PEM certificate "
                             f"({_PEM_CERTIFICATE.decode()})")
    try:
        # Parsed alone first: load_cert_chain says "PEM lib" for a bad certificate and a bad
        # key alike.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=cert_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise TLSConfigError(f"{CERT_FLAG} {cert}: not a valid PEM certificate "
                             f"({_words(exc)})") from None
    if _PEM_KEY.search(key_pem) is None:
        raise TLSConfigError(f"{KEY_FLAG} {key}: holds no PEM private key "
                             f"(-----BEGIN PRIVATE KEY-----)")

    def encrypted() -> str:
        # Called only for an encrypted key; nothing here could answer a passphrase prompt.
        raise TLSConfigError(f"{KEY_FLAG} {key}: the key is encrypted; give it unencrypted "
                             f"(readable by the exporter's user only)")

    try:
        context.load_cert_chain(cert, key, password=encrypted)
    except ssl.SSLError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"{KEY_FLAG} {key} is not the key of the certificate in "
                                 f"{CERT_FLAG} {cert}") from None
        raise TLSConfigError(f"{KEY_FLAG} {key}: not a valid PEM private key for {CERT_FLAG} "
                             f"{cert} ({_words(exc)})") from None
    except OSError as exc:
        raise TLSConfigError(f"{CERT_FLAG} {cert} / {KEY_FLAG} {key}: cannot read: "
                             f"{exc.strerror or type(exc).__name__}") from None


#: A CA bundle is the largest of these files: a system bundle is a few hundred KB.
MAX_FLAG_FILE_BYTES = 16 << 20


def read_flag_file(flag: str, path: str, error: type[Exception] = TLSConfigError) -> bytes:
    """The bytes of the file a flag names; ``error`` names the flag and why it cannot be read,
    never the content (these files hold keys and passwords)."""
    try:
        return read_regular(path, MAX_FLAG_FILE_BYTES)
    except FileRefused as exc:
        raise error(f"{flag} {path}: cannot read: {exc.reason}") from None


def _words(exc: BaseException) -> str:
    """OpenSSL's message without its tag and source line: 'tlsv1 alert unknown ca'."""
    text = exc.args[1] if isinstance(exc, OSError) and len(exc.args) > 1 else str(exc)
    return _OPENSSL_NOISE.sub("", str(text)).strip() or type(exc).__name__


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The error OpenSSL raised, deepest in ``exc``'s chain: aiohttp wraps it in errors that
    are SSLErrors too, without its reason."""
    found = None
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLError):
            found = cause
    return found


def _reason(error: ssl.SSLError | None) -> str | None:
    # Set by OpenSSL only: an SSLError made in Python has no such attribute.
    return getattr(error, "reason", None)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def speaks_no_tls(exc: BaseException) -> bool:
    """Whether ``exc`` says the peer answered a TLS handshake in plain text."""
    return _reason(_ssl_error(exc)) in _NOT_TLS


def describe_failure(exc: BaseException) -> str | None:
    """What a failed TLS handshake means, with what to do; None when ``exc`` is no TLS error."""
    error = _ssl_error(exc)
    if error is None:
        return None
    if isinstance(error, ssl.SSLCertVerificationError):
        why = (error.verify_message or _words(error)).rstrip(".")
        if "mismatch" in why:
            return (f"the server's certificate is not valid for this host ({why}): name the "
                    f"server by a host name or address its certificate holds")
        return (f"the server's certificate is not trusted ({why}): give the CA that signed it "
                f"with {CA_FLAG}")
    words, reason = _words(error), _reason(error)
    if reason in _CERTIFICATE_REQUIRED:
        return (f"the server requires a client certificate ({words}): give one with "
                f"{CERT_FLAG} and {KEY_FLAG}")
    if reason in _CERTIFICATE_REFUSED:
        return (f"the server refused the client certificate ({words}): it accepts only "
                f"certificates signed by a CA it trusts ({CERT_FLAG})")
    if reason in _HANDSHAKE_REFUSED:
        return (f"the server refused the TLS handshake ({words}): it may require a client "
                f"certificate ({CERT_FLAG} and {KEY_FLAG}), or a TLS version or cipher this "
                f"client does not offer")
    if reason in _NOT_TLS:
        return f"the server does not speak TLS on this port ({words})"
    return f"TLS handshake failed ({words})"


def dropped_hint(cert: bool | None) -> str:
    """What a connection dropped right after the handshake, with no alert heard, may mean: over
    TLS 1.3 a server judges the client certificate then. ``cert``: whether one was given, None
    when not known."""
    if cert is None:
        return (f"a server that requires a client certificate, or does not trust the one "
                f"given, drops the connection: check {CERT_FLAG} and {KEY_FLAG}")
    if cert:
        return (f"a server that does not trust the client certificate drops the connection: "
                f"check that {CERT_FLAG} is signed by a CA it trusts")
    return (f"a server that requires a client certificate drops a connection without one: "
            f"give {CERT_FLAG} and {KEY_FLAG}")


async def refusal(host: str, port: int, context: ssl.SSLContext, within: float, *,
                  nats: bool = False) -> BaseException | None:
    """The TLS error a server gives to a handshake that then only reads, if it gives one.

    Over TLS 1.3 a server judges the client certificate (or its absence) after the handshake.
    A client that is already writing may read the reset its unread bytes cause before the
    server's alert, and the alert is lost; a client that only reads gets it. With ``nats``,
    the port first says INFO in plain text, as a NATS client port does before TLS. It runs on
    a thread (a failure path only) because streams move to TLS midway only from Python 3.11.
    """
    try:
        await asyncio.to_thread(_handshake, host, port, context, within, nats)
    except OSError as exc:      # ssl.SSLError and socket timeouts included
        return exc if describe_failure(exc) is not None else None
    return None


def _handshake(host: str, port: int, context: ssl.SSLContext, within: float,
               nats: bool) -> None:
    deadline = time.monotonic() + within
    with socket.create_connection((host, port), timeout=within) as sock:
        if nats and not _requires_tls(_info_line(sock, deadline)):
            return
        sock.settimeout(_left(deadline))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.settimeout(_left(deadline))
            tls.recv(1)


def _left(deadline: float) -> float:
    """Seconds to ``deadline``, as a socket timeout (0 would make the socket non-blocking)."""
    return max(deadline - time.monotonic(), 0.001)


def _info_line(sock: socket.socket, deadline: float, limit: int = 1 << 20) -> bytes:
    """The first line the port says, read a byte at a time so that TLS starts right after."""
    line = bytearray()
    while not line.endswith(b"\n") and len(line) < limit:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


def _requires_tls(line: bytes) -> bool:
    """Whether ``line`` is the INFO of a NATS port that moves to TLS next."""
    if not line.startswith(b"INFO "):
        return False
    try:
        info = json.loads(line[5:])
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("tls_required") is True
