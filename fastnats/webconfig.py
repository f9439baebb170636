"""``--web.config.file``: reads the exporter-toolkit YAML format and builds the server's Gate.

``load(path)`` parses the file as strictly as exporter-toolkit's UnmarshalStrict does: unknown
or duplicate keys, a value of the wrong type, more than one document or a file over 1 MiB are
errors, and every error names the file, the line and the key (``web.yml:7: tls_server_config:
unknown key 'cert_fil'``) but never a password, a hash or key material. An empty file is a valid
config: no TLS, no authentication, no rate limit. Relative file names are relative to the
config file's directory. All the work is done at load -- certificates and keys are loaded into
the ``ssl.SSLContext`` and bcrypt hashes are checked -- so a config that loads can be served.

How the toolkit's TLS settings map onto Python's ``ssl`` (a server context, ALPN ``http/1.1``,
client-initiated renegotiation off):

=============================  ==============================================================
client_auth_type               NoClientCert (or empty) and RequestClientCert -> CERT_NONE: ssl
                               cannot ask for a certificate without verifying it, and an
                               unverified certificate is never read, so who gets in is the
                               same. VerifyClientCertIfGiven -> CERT_OPTIONAL,
                               RequireAndVerifyClientCert -> CERT_REQUIRED, both need
                               client_ca_file or client_ca. RequireAnyClientCert and its alias
                               RequireClientCert are refused (ssl cannot require a certificate
                               without verifying it). A client CA with NoClientCert is an
                               error, as in the toolkit.
client_allowed_sans            needs a verifying client_auth_type; checked after the handshake
                               against the DNS, email, IP Address and URI SANs (``check_peer``).
min_version / max_version      TLS10..TLS13 -> minimum_version / maximum_version (defaults TLS12
                               and TLS13); TLS10/TLS11 are refused when the local OpenSSL's
                               security level would refuse every such handshake anyway.
cipher_suites                  Go names of TLS 1.2 suites -> OpenSSL names for set_ciphers();
                               TLS 1.3 suites are refused: neither Go nor Python's ssl can
                               restrict them (Go ignores them in this list).
curve_preferences              one curve -> set_ecdh_curve (CurveP256=prime256v1,
                               CurveP384=secp384r1, CurveP521=secp521r1, X25519); more than one
                               is refused, ssl sets a single curve.
prefer_server_cipher_suites    OP_CIPHER_SERVER_PREFERENCE (default on).
http2                          accepted; the server speaks HTTP/1.1 only, as Prometheus does.
=============================  ==============================================================

Inline ``cert`` and ``key`` go through a private temporary file (mode 0600, removed as soon as
OpenSSL has read it); an inline ``client_ca`` is passed as data. A named file is read as the
config is (a regular file only, bounded, never blocking) and OpenSSL reads a private copy.
Any TLS key set while TLS is off (no cert, key, client CA or client_auth_type) is an error
rather than silently ignored.

``WebGate`` is the ``fastnats.server.Gate`` built from a ``WebConfig``: a token bucket for
``rate_limit``, the SAN check, and HTTP Basic authentication against bcrypt hashes ($2a$, $2b$,
$2y$). bcrypt runs in a worker thread, one check at a time as in the toolkit; identical checks
in flight share one result, and at most 64 distinct checks may be in flight, so a flood of
wrong guesses is refused at once (counted as ``busy``, not as a wrong password) instead of
queueing unbounded work. An unknown user is checked against a dummy hash of the highest
configured cost, so it takes as long as a wrong password.
Successes are remembered (256 at most, least recently used first out) under an HMAC of user,
hash and password with a per-process random key: no password is kept, a wrong password can
never hit, and a changed hash misses. Passwords are cut to 72 bytes, as Go's bcrypt does.

``Reloader`` keeps the last good config: it reloads on ``request_reload()`` (SIGHUP) and when a
watched file changes (polled by ``run()``), and logs one line per reload or distinct failure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, cast

import bcrypt
import yaml

from .errors import WebConfigError
from .files import FileRefused, FileTooLarge, read_regular

if TYPE_CHECKING:
    from .server import Gate

__all__ = ["MAX_CONFIG_BYTES", "MAX_PENDING_CHECKS", "Reloader", "VerifyStats", "WebConfig",
           "WebGate", "load"]

log = logging.getLogger("fastnats.http")

MAX_CONFIG_BYTES = 1024 * 1024
#: A certificate, key or CA bundle named by the config; a system CA bundle is a few hundred KB.
MAX_PEM_BYTES = 16 << 20
#: Distinct password checks that may be running or waiting; more are refused at once.
MAX_PENDING_CHECKS = 64
#: Remembered successful logins.
CACHE_SIZE = 256
#: Longest Authorization header looked at; a Basic credential is far shorter.
MAX_AUTHORIZATION = 4096
# bcrypt reads 72 bytes of a password; the Python binding refuses longer ones instead.
BCRYPT_MAX_PASSWORD = 72

_TOP_KEYS = ("tls_server_config", "http_server_config", "rate_limit", "basic_auth_users")
_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "cipher_suites", "curve_preferences", "min_version", "max_version",
             "prefer_server_cipher_suites", "client_allowed_sans")
# Any of these turns TLS on, as in the toolkit.
_TLS_SWITCHES = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file",
                 "client_auth_type")
_TLS_STRINGS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
                "client_ca_file", "min_version", "max_version")
_HTTP_KEYS = ("http2", "headers")
_RATE_KEYS = ("interval", "burst")

# client_auth_type -> (verify mode, verifies the certificate).
_CLIENT_AUTH = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
_UNVERIFIED_REQUIRED = ("RequireAnyClientCert", "RequireClientCert")

_VERSIONS = {"TLS10": 0x0301, "TLS11": 0x0302, "TLS12": 0x0303, "TLS13": 0x0304}

# Go's names (tls.CipherSuites() and tls.InsecureCipherSuites()) of TLS 1.2 suites.
_CIPHERS = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                  "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
           "X25519": "X25519"}

# The headers the toolkit lets a config add, with the values it allows (None: any).
_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_HEADER_VALUE = re.compile(r"[ -~]*")  # printable ASCII: no CR, LF or other control character

_BCRYPT_HASH = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_INT64_MAX = 2**63 - 1

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()  # reads integers the way YAML 1.1 writes them
_KINDS = {_STR: "a string", _NULL: "null", _BOOL: "a boolean", _INT: "an integer",
          "tag:yaml.org,2002:float": "a fractional number", "tag:yaml.org,2002:timestamp": "a date",
          "tag:yaml.org,2002:binary": "binary data"}


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a map"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, f"a value tagged {node.tag}")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def parse_duration(text: str) -> int:
    """A Go duration (``time.ParseDuration``: ``1m30s``, ``100ms``, ``1.5h``, ``0``) in
    nanoseconds; negative durations are refused. Raises ValueError."""
    body = text[1:] if text[:1] == "+" else text
    if text[:1] == "-":
        raise ValueError(f"negative duration {text!r}")
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        assert match is not None  # every part of the pattern may be empty
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r} (ns, us, ms, s, m or h)")
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > _INT64_MAX:
            raise ValueError(f"duration {text!r} is too long")
        pos = match.end()
    return total


@dataclass(frozen=True, eq=False)
class WebConfig:
    """A loaded web config. Holds no plaintext secret: the TLS key lives in ``ssl_context``."""

    path: str
    #: None: plain HTTP.
    ssl_context: ssl.SSLContext | None = None
    #: The toolkit's client_auth_type ("NoClientCert" when unset).
    client_auth: str = "NoClientCert"
    allowed_sans: tuple[str, ...] = ()
    #: ``b"Name: value\r\n"`` lines added to every response.
    headers: bytes = b""
    http2: bool = True
    #: User -> bcrypt hash; empty: no authentication.
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: Checked for unknown users; as costly as the costliest hash in ``users``.
    dummy_hash: bytes = field(default=b"", repr=False)
    #: Seconds per token of the rate limiter; 0: no limit.
    rate_interval: float = 0.0
    rate_burst: int = 0
    #: The config file and every file it names, which the reloader watches.
    files: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the log, with nothing secret in it."""
        if self.ssl_context is None:
            parts = ["TLS off"]
        else:
            detail = {"VerifyClientCertIfGiven": "client certificates verified when given",
                      "RequireAndVerifyClientCert": "client certificates required"}
            notes = [detail[self.client_auth]] if self.client_auth in detail else []
            if self.allowed_sans:
                count = len(self.allowed_sans)
                notes.append(f"{count} allowed SAN{'s' if count != 1 else ''}")
            parts = ["TLS on" + (f" ({', '.join(notes)})" if notes else "")]
        count = len(self.users)
        parts.append(f"basic auth for {count} user{'s' if count != 1 else ''}" if count
                     else "no basic auth")
        if self.rate_interval > 0:
            parts.append(f"rate limit {_rate(self.rate_interval)} burst {self.rate_burst}")
        else:
            parts.append("no rate limit")
        if self.headers:
            count = self.headers.count(b"\r\n")
            parts.append(f"{count} extra header{'s' if count != 1 else ''}")
        return ", ".join(parts)


def _rate(interval: float) -> str:
    for per, seconds in (("s", 1.0), ("min", 60.0), ("h", 3600.0)):
        if seconds / interval >= 1:
            return f"{seconds / interval:.3g}/{per}"
    return f"{3600.0 / interval:.3g}/h"


def load(path: str) -> WebConfig:
    """Read and check a web config file. Raises WebConfigError."""
    return _Parser(path).load()


class _EncryptedKey(Exception):
    pass


def _no_password() -> NoReturn:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    raise _EncryptedKey


def _ssl_reason(exc: ssl.SSLError) -> str:
    if exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    text = str(exc.args[1] if len(exc.args) > 1 else exc)
    return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)


@contextlib.contextmanager
def _private_pem(content: str | bytes) -> Iterator[str]:
    """A file holding PEM, for the ssl calls that only take file names."""
    fd, name = tempfile.mkstemp(prefix="fastnats-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content.encode("utf-8") if isinstance(content, str) else content)
        yield name
    finally:
        os.unlink(name)


class _Parser:
    """One load of one file. ``files`` lists the files named so far, even after a failure, so
    that the reloader can watch a file whose absence made the load fail."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.files: list[str] = [path]

    def fail(self, node: yaml.Node, where: tuple[str, ...], message: str) -> NoReturn:
        raise WebConfigError(
            f"{self.path}:{node.start_mark.line + 1}: {': '.join((*where, message))}")

    def load(self) -> WebConfig:
        root = self._compose()
        top = self.mapping(root, (), _TOP_KEYS) if root is not None else {}
        # Cheap checks first, so a typo is reported before certificates are read.
        headers, http2 = self._http(top.get("http_server_config"))
        interval, burst = self._rate_limit(top.get("rate_limit"))
        users, dummy = self._users(top.get("basic_auth_users"))
        context, client_auth, sans = self._tls(top.get("tls_server_config"))
        return WebConfig(path=self.path, ssl_context=context, client_auth=client_auth,
                         allowed_sans=sans, headers=headers, http2=http2, users=users,
                         dummy_hash=dummy, rate_interval=interval, rate_burst=burst,
                         files=tuple(dict.fromkeys(self.files)))

    def _compose(self) -> yaml.Node | None:
        try:
            data = read_regular(self.path, MAX_CONFIG_BYTES)
        except FileTooLarge:
            raise WebConfigError(f"{self.path}: larger than 1 MiB; a web config is a few "
                                 f"lines") from None
        except FileRefused as exc:
            raise WebConfigError(f"{self.path}: cannot read: {exc.reason}") from None
        loader = None
        try:
            loader = yaml.SafeLoader(data)
            return loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{self.path}:{mark.line + 1}" if mark is not None else self.path
            if exc.context and "single document" in exc.context:
                raise WebConfigError(f"{where}: a second YAML document; a web config is one "
                                     "document") from None
            raise WebConfigError(f"{where}: invalid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:  # the reader: bad encoding or a control character
            raise WebConfigError(f"{self.path}: invalid YAML: {str(exc).splitlines()[0]}") \
                from None
        except RecursionError:
            raise WebConfigError(f"{self.path}: invalid YAML: nested too deeply") from None
        finally:
            if loader is not None:
                loader.dispose()

    # Typed readers. A null value is read as absent, as Go leaves the zero value.

    def mapping(self, node: yaml.Node, where: tuple[str, ...],
                keys: tuple[str, ...] | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where, f"expected a map, got {_kind(node)}")
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                self.fail(key, where, "merge keys (<<) are not supported")
            if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                self.fail(key, where, f"keys must be strings, got {_kind(key)}")
            name = key.value
            if name in entries:
                first = entries[name][0].start_mark.line + 1
                self.fail(key, where, f"duplicate key {name!r} (first on line {first})")
            if keys is not None and name not in keys:
                self.fail(key, where, f"unknown key {name!r}")
            entries[name] = (key, value)
        return entries

    def scalar(self, node: yaml.Node, where: tuple[str, ...], tag: str,
               expected: str) -> str | None:
        if _is_null(node):
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != tag:
            self.fail(node, where, f"expected {expected}, got {_kind(node)}")
        return str(node.value)

    def string(self, node: yaml.Node, where: tuple[str, ...]) -> str | None:
        return self.scalar(node, where, _STR, "a string")

    def boolean(self, node: yaml.Node, where: tuple[str, ...]) -> bool | None:
        text = self.scalar(node, where, _BOOL, "true or false")
        return None if text is None else bool(yaml.SafeLoader.bool_values[text.lower()])

    def integer(self, node: yaml.Node, where: tuple[str, ...]) -> int | None:
        text = self.scalar(node, where, _INT, "an integer")
        # scalar() has checked that the node is a scalar.
        return None if text is None else int(
            _CONSTRUCTOR.construct_yaml_int(cast(yaml.ScalarNode, node)))

    def strings(self, node: yaml.Node, where: tuple[str, ...]) -> list[tuple[yaml.Node, str]]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, f"expected a list, got {_kind(node)}")
        items = []
        for item in node.value:
            if _is_null(item):
                self.fail(item, where, "expected a string, got null")
            items.append((item, str(self.string(item, where))))
        return items

    def _file(self, stack: contextlib.ExitStack, node: yaml.Node, name: str,
              value: str) -> tuple[str, str]:
        """(path, private copy) of a file the config names. The ssl calls take only file
        names and would open a FIFO blocking: they get a copy read as the config is."""
        path = os.path.join(self.base, value)
        self.files.append(path)
        try:
            data = read_regular(path, MAX_PEM_BYTES)
        except FileRefused as exc:
            self.fail(node, ("tls_server_config", name), f"cannot read {path}: {exc.reason}")
        return path, stack.enter_context(_private_pem(data))

    # Sections.

    def _http(self, entry: tuple[yaml.Node, yaml.Node] | None) -> tuple[bytes, bool]:
        if entry is None:
            return b"", True
        where = ("http_server_config",)
        fields = self.mapping(entry[1], where, _HTTP_KEYS)
        http2 = True
        if "http2" in fields:
            value = self.boolean(fields["http2"][1], (*where, "http2"))
            http2 = True if value is None else value
        lines = []
        if "headers" in fields:
            hwhere = (*where, "headers")
            for name, (key, node) in self.mapping(fields["headers"][1], hwhere, None).items():
                if name not in _HEADERS:
                    self.fail(key, hwhere, f"header {name!r} cannot be configured; allowed: "
                                           f"{', '.join(_HEADERS)}")
                text = self.string(node, (*hwhere, name))
                if text is None:
                    self.fail(node, (*hwhere, name), "expected a string, got null")
                if not _HEADER_VALUE.fullmatch(text):
                    self.fail(node, (*hwhere, name), "a header value must be printable ASCII, "
                                                     "without control characters")
                allowed = _HEADERS[name]
                if allowed is not None and text.lower() not in allowed:
                    self.fail(node, (*hwhere, name), f"invalid value {text!r}; expected "
                                                     f"{' or '.join(allowed)}")
                lines.append(f"{name}: {text}\r\n".encode("ascii"))
        return b"".join(lines), http2

    def _rate_limit(self, entry: tuple[yaml.Node, yaml.Node] | None) -> tuple[float, int]:
        if entry is None:
            return 0.0, 0
        where = ("rate_limit",)
        fields = self.mapping(entry[1], where, _RATE_KEYS)
        interval_ns = 0
        if "interval" in fields:
            node = fields["interval"][1]
            iwhere = (*where, "interval")
            if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
                if self.integer(node, iwhere) != 0:
                    self.fail(node, iwhere, "a duration needs a unit, e.g. 1s or 100ms")
            else:
                text = self.string(node, iwhere)
                try:
                    interval_ns = parse_duration(text) if text else 0
                except ValueError as exc:
                    self.fail(node, iwhere, str(exc))
        burst = 0
        if "burst" in fields:
            node = fields["burst"][1]
            burst = self.integer(node, (*where, "burst")) or 0
            if burst < 0:
                self.fail(node, (*where, "burst"), "must not be negative")
        if interval_ns > 0 and burst < 1:
            node = fields["burst"][1] if "burst" in fields else entry[0]
            self.fail(node, (*where, "burst") if "burst" in fields else where,
                      "burst must be at least 1 when interval is set (a burst of 0 would "
                      "refuse every request)")
        return interval_ns / 1e9, burst

    def _users(self, entry: tuple[yaml.Node, yaml.Node] | None) -> tuple[dict[str, bytes],
                                                                          bytes]:
        if entry is None:
            return {}, b""
        where = ("basic_auth_users",)
        users = {}
        for name, (key, node) in self.mapping(entry[1], where, None).items():
            if ":" in name:
                self.fail(key, where, f"{name}: a user name cannot contain ':' (Basic "
                                      "authentication could never send it)")
            text = self.string(node, (*where, name))
            hashed = (text or "").encode("ascii", "replace")
            if not _BCRYPT_HASH.fullmatch(hashed) or not _bcrypt_parses(hashed):
                self.fail(node, (*where, name), "not a bcrypt hash (expected $2a$, $2b$ or $2y$ "
                                                "with a cost from 04 to 31, 60 characters)")
            users[name] = hashed
        if not users:
            return {}, b""
        cost = max(int(hashed[4:6]) for hashed in users.values())
        return users, _dummy_hash(cost)

    def _tls(self, entry: tuple[yaml.Node, yaml.Node] | None
             ) -> tuple[ssl.SSLContext | None, str, tuple[str, ...]]:
        if entry is None:
            return None, "NoClientCert", ()
        where = ("tls_server_config",)
        fields = self.mapping(entry[1], where, _TLS_KEYS)
        text: dict[str, tuple[yaml.Node, str]] = {}
        for name in _TLS_STRINGS:
            if name in fields:
                value = self.string(fields[name][1], (*where, name))
                if value:
                    text[name] = (fields[name][1], value)
        lists: dict[str, list[tuple[yaml.Node, str]]] = {
            name: self.strings(fields[name][1], (*where, name))
            for name in ("cipher_suites", "curve_preferences", "client_allowed_sans")
            if name in fields}
        prefer = None
        if "prefer_server_cipher_suites" in fields:
            prefer = self.boolean(fields["prefer_server_cipher_suites"][1],
                                  (*where, "prefer_server_cipher_suites"))

        if not any(name in text for name in _TLS_SWITCHES):
            # The toolkit ignores these without TLS; client_allowed_sans ignored would be a
            # hole, so any of them is refused.
            for name, (name_node, _) in fields.items():
                if name in text or lists.get(name) or (
                        name == "prefer_server_cipher_suites" and prefer is not None):
                    self.fail(name_node, where, f"{name} is set but TLS is off: set cert_file (or "
                                          "cert) and key_file (or key)")
            return None, "NoClientCert", ()

        for inline, path in (("cert", "cert_file"), ("key", "key_file"),
                             ("client_ca", "client_ca_file")):
            if inline in text and path in text:
                self.fail(text[path][0], where, f"cannot specify both {path} and {inline}")
        for inline, path in (("cert", "cert_file"), ("key", "key_file")):
            if inline not in text and path not in text:
                self.fail(entry[0], where, f"missing one of {inline} or {path}")

        client_auth = text["client_auth_type"][1] if "client_auth_type" in text \
            else "NoClientCert"
        if client_auth in _UNVERIFIED_REQUIRED:
            self.fail(text["client_auth_type"][0], (*where, "client_auth_type"),
                      f"{client_auth} is not supported: Python's ssl cannot require a client "
                      "certificate without verifying it; use RequireAndVerifyClientCert with "
                      "client_ca_file")
        if client_auth not in _CLIENT_AUTH:
            self.fail(text["client_auth_type"][0], (*where, "client_auth_type"),
                      f"unknown client_auth_type {client_auth!r}; expected one of "
                      f"{', '.join(_CLIENT_AUTH)}")
        verify_mode, verifies = _CLIENT_AUTH[client_auth]
        ca = text.get("client_ca_file") or text.get("client_ca")
        if verifies and ca is None:
            self.fail(text["client_auth_type"][0], (*where, "client_auth_type"),
                      f"{client_auth} needs client_ca_file or client_ca")
        if ca is not None and client_auth == "NoClientCert":
            self.fail(ca[0], where, "client CAs are configured without a client auth policy: "
                                    "set client_auth_type to RequireAndVerifyClientCert or "
                                    "VerifyClientCertIfGiven")
        sans = lists.get("client_allowed_sans", [])
        if sans and not verifies:
            self.fail(fields["client_allowed_sans"][1], (*where, "client_allowed_sans"),
                      "needs client_auth_type RequireAndVerifyClientCert or "
                      "VerifyClientCertIfGiven (an unverified certificate proves nothing)")

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._versions(context, entry[0], text)
        if lists.get("cipher_suites"):
            self._ciphers(context, fields["cipher_suites"][1], lists["cipher_suites"])
        if lists.get("curve_preferences"):
            self._curve(context, lists["curve_preferences"])
        if prefer is False:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.set_alpn_protocols(["http/1.1"])

        with contextlib.ExitStack() as stack:
            cert = self._pem_source(stack, text, "cert", "cert_file")
            key = self._pem_source(stack, text, "key", "key_file")
            self._chain(context, cert, key)
            if "client_ca_file" in text:
                node, value = text["client_ca_file"]
                path, copy = self._file(stack, node, "client_ca_file", value)
                self._ca(context, node, "client_ca_file", path, cafile=copy)
            elif "client_ca" in text:
                node, value = text["client_ca"]
                self._ca(context, node, "client_ca", "the inline PEM", cadata=value)
        context.verify_mode = verify_mode
        return context, client_auth, tuple(value for _, value in sans)

    def _versions(self, context: ssl.SSLContext, section: yaml.Node,
                  text: dict[str, tuple[yaml.Node, str]]) -> None:
        where = ("tls_server_config",)
        chosen = []
        for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            node, value = text.get(name, (section, default))
            if value not in _VERSIONS:
                self.fail(node, (*where, name), f"unknown TLS version {value!r}; expected "
                                                f"{', '.join(_VERSIONS)}")
            if _VERSIONS[value] < _VERSIONS["TLS12"] and ssl.OPENSSL_VERSION_INFO >= (3,) \
                    and context.security_level >= 1:
                # OpenSSL 3 allows TLS 1.0 and 1.1 at security level 0 only: every such
                # handshake would fail.
                self.fail(node, (*where, name),
                          f"{value} cannot be served: the local OpenSSL (security level "
                          f"{context.security_level}) refuses TLS versions below 1.2; use TLS12 "
                          "or TLS13")
            chosen.append((node, value))
        (_, low), (high_node, high) = chosen
        if _VERSIONS[low] > _VERSIONS[high]:
            self.fail(high_node, (*where, "max_version"), f"{high} is below min_version {low}")
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated, and were asked for
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                context.minimum_version = ssl.TLSVersion(_VERSIONS[low])
                context.maximum_version = ssl.TLSVersion(_VERSIONS[high])
            except (ValueError, ssl.SSLError) as exc:
                self.fail(section, where, f"the local OpenSSL refuses TLS versions {low} to "
                                          f"{high}: {exc}")

    def _ciphers(self, context: ssl.SSLContext, node: yaml.Node,
                 names: list[tuple[yaml.Node, str]]) -> None:
        where = ("tls_server_config", "cipher_suites")
        wanted = []
        for item, name in names:
            if name in _TLS13_CIPHERS:
                self.fail(item, where, f"{name} is a TLS 1.3 suite; TLS 1.3 suites cannot be "
                                       "restricted (Go ignores them in this list too): list "
                                       "TLS 1.2 suites only")
            if name not in _CIPHERS:
                self.fail(item, where, f"unknown cipher suite {name!r}")
            wanted.append((item, name, _CIPHERS[name]))
        try:
            context.set_ciphers(":".join(openssl for _, _, openssl in wanted))
        except ssl.SSLError:
            self.fail(node, where, "none of these cipher suites is available in the local "
                                   "OpenSSL")
        available = {cipher["name"] for cipher in context.get_ciphers()}
        for item, name, openssl in wanted:
            if openssl not in available:
                self.fail(item, where, f"{name} ({openssl}) is not available in the local "
                                       "OpenSSL")

    def _curve(self, context: ssl.SSLContext, names: list[tuple[yaml.Node, str]]) -> None:
        where = ("tls_server_config", "curve_preferences")
        for item, name in names:
            if name not in _CURVES:
                self.fail(item, where, f"unknown curve {name!r}; expected one of "
                                       f"{', '.join(_CURVES)}")
        if len(names) > 1:
            self.fail(names[1][0], where, "only one curve can be set: Python's ssl module sets "
                                          "a single curve")
        item, name = names[0]
        try:
            context.set_ecdh_curve(_CURVES[name])
        except (ValueError, ssl.SSLError):
            self.fail(item, where, f"{name} is not available in the local OpenSSL")

    def _pem_source(self, stack: contextlib.ExitStack, text: dict[str, tuple[yaml.Node, str]],
                    inline: str, file: str) -> tuple[yaml.Node, str, str, str]:
        """(node, key name, description, file name) of a certificate or key."""
        if file in text:
            node, value = text[file]
            path, copy = self._file(stack, node, file, value)
            return node, file, path, copy
        node, value = text[inline]
        return node, inline, "the inline PEM", stack.enter_context(_private_pem(value))

    def _chain(self, context: ssl.SSLContext, cert: tuple[yaml.Node, str, str, str],
               key: tuple[yaml.Node, str, str, str]) -> None:
        cert_node, cert_name, cert_what, cert_path = cert
        key_node, key_name, key_what, key_path = key
        cert_where, key_where = ("tls_server_config", cert_name), ("tls_server_config", key_name)
        # OpenSSL does not say which of the two files it could not use: read the certificate
        # alone first.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_path)
        except (ssl.SSLError, ValueError):
            self.fail(cert_node, cert_where, f"{cert_what} holds no PEM certificate")
        except OSError as exc:
            self.fail(cert_node, cert_where, f"cannot read {cert_what}: {exc.strerror or exc}")
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _EncryptedKey:
            self.fail(key_node, key_where, f"{key_what} is encrypted; an unencrypted key is "
                                           "needed, as in exporter-toolkit")
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                self.fail(key_node, key_where, f"{key_what} does not match the certificate in "
                                               f"{cert_what}")
            self.fail(key_node, key_where, f"cannot load a private key from {key_what}: no "
                                           f"usable PEM key ({_ssl_reason(exc)})")
        except OSError as exc:
            self.fail(key_node, key_where, f"cannot read {key_what}: {exc.strerror or exc}")

    def _ca(self, context: ssl.SSLContext, node: yaml.Node, name: str, what: str,
            **source: str) -> None:
        try:
            context.load_verify_locations(**source)
        except ssl.SSLError as exc:
            self.fail(node, ("tls_server_config", name),
                      f"no CA certificate could be read from {what} ({_ssl_reason(exc)})")
        except ValueError:
            self.fail(node, ("tls_server_config", name), f"{what} holds no CA certificate")
        except OSError as exc:
            self.fail(node, ("tls_server_config", name),
                      f"cannot read {what}: {exc.strerror or exc}")


def _bcrypt_parses(hashed: bytes) -> bool:
    # The binding refuses some strings the pattern lets through (stray bits at the end of the
    # salt): ask it, at the cheapest cost so that checking costs a millisecond.
    try:
        bcrypt.checkpw(b"", hashed[:4] + b"04" + hashed[6:])
    except ValueError:
        return False
    return True


def _dummy_hash(cost: int) -> bytes:
    """A hash nothing matches, as slow to check as a real hash of ``cost``: a random password
    hashed at the cheapest cost, relabelled (checking it recomputes at the new cost)."""
    cheap = bcrypt.hashpw(secrets.token_urlsafe(16).encode(), bcrypt.gensalt(rounds=4))
    return b"$2b$%02d%s" % (cost, cheap[6:])


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:
        return False


def _basic_credentials(authorization: bytes) -> tuple[str, bytes] | None:
    """(user, password) from ``Basic base64(user:password)``, or None if malformed."""
    if len(authorization) > MAX_AUTHORIZATION:
        return None
    scheme, space, token = authorization.partition(b" ")
    if not space or scheme.lower() != b"basic":
        return None
    try:
        raw = base64.b64decode(token.strip(b" "), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = raw.partition(b":")
    if not colon:
        return None
    try:
        password.decode("utf-8")
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


@dataclass(slots=True)
class VerifyStats:
    """What the password checks did, monotonic across reloads. The server counts the requests
    refused busy itself (``fastnats_http_refused_total{reason="busy"}``); tests read these."""

    #: bcrypt computations run.
    bcrypt_checks: int = 0
    #: Requests admitted by a remembered success, without bcrypt.
    cache_hits: int = 0
    #: Requests that waited for an identical check already in flight.
    deduplicated: int = 0
    #: Requests refused at once because MAX_PENDING_CHECKS distinct checks were in flight.
    refused_busy: int = 0


class _Verifier:
    """The password checks and remembered successes, shared by the gates of one reloader so
    that a reload keeps both the cache and the one-check-at-a-time rule."""

    def __init__(self) -> None:
        self.stats = VerifyStats()
        self._secret = secrets.token_bytes(32)
        self._successes: OrderedDict[bytes, None] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Future[bool]] = {}
        self._one_at_a_time = asyncio.Lock()

    def key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        fields = (user.encode("utf-8"), hashed, password)
        message = b"".join(len(part).to_bytes(4, "big") + part for part in fields)
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def remembered(self, key: bytes) -> bool:
        if key not in self._successes:
            return False
        self._successes.move_to_end(key)
        self.stats.cache_hits += 1
        return True

    async def check(self, key: bytes, password: bytes, hashed: bytes,
                    known: bool) -> bool | None:
        """Whether the password matches; None when refused unchecked (too many waiting)."""
        pending = self._in_flight.get(key)
        if pending is not None:
            self.stats.deduplicated += 1
        elif len(self._in_flight) >= MAX_PENDING_CHECKS:
            self.stats.refused_busy += 1
            return None
        else:
            pending = asyncio.ensure_future(self._run(key, password, hashed, known))
            self._in_flight[key] = pending
        # Shielded: a client that hangs up must not cancel the check others wait for.
        return await asyncio.shield(pending)

    async def _run(self, key: bytes, password: bytes, hashed: bytes, known: bool) -> bool:
        try:
            async with self._one_at_a_time:
                self.stats.bcrypt_checks += 1
                matched = await asyncio.to_thread(_checkpw, password, hashed)
        finally:
            del self._in_flight[key]
        if matched and known:
            self._successes[key] = None
            if len(self._successes) > CACHE_SIZE:
                self._successes.popitem(last=False)
            return True
        return False


class WebGate:
    """The ``fastnats.server.Gate`` of a ``WebConfig``. ``previous`` is the gate it replaces:
    the new one keeps its remembered successes, its counters and its one-check-at-a-time
    rule. ``clock`` drives the rate limiter."""

    def __init__(self, config: WebConfig, *, previous: WebGate | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.ssl_context: ssl.SSLContext | None = config.ssl_context
        self.headers: bytes = config.headers
        self._users = config.users
        self._dummy = config.dummy_hash
        self._verifier: _Verifier = previous._verifier if previous is not None else _Verifier()
        self._interval = config.rate_interval
        self._burst = float(config.rate_burst)
        self._tokens = self._burst
        self._clock = clock
        self._refilled = clock() if self._interval > 0 else 0.0
        self._sans = frozenset(config.allowed_sans)
        ips = (_ip(value) for value in config.allowed_sans)
        self._san_ips = frozenset(ip for ip in ips if ip is not None)

    @property
    def stats(self) -> VerifyStats:
        return self._verifier.stats

    def allow_request(self) -> bool:
        if self._interval <= 0:
            return True
        now = self._clock()
        if now > self._refilled:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) / self._interval)
            self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def check_peer(self, peercert: dict[str, Any] | None) -> bool:
        if not self._sans:
            return True
        for kind, value in (peercert or {}).get("subjectAltName", ()):
            if kind == "IP Address":
                # OpenSSL writes IPv6 addresses in full (2001:DB8:0:0:0:0:0:1): compare values.
                if _ip(value) in self._san_ips:
                    return True
            elif kind in ("DNS", "email", "URI") and value in self._sans:
                return True
        return False

    def _credentials(self, authorization: bytes) -> tuple[bytes, bytes, bytes, bool] | None:
        """(cache key, password, hash to check, whether the user exists) of a well-formed
        Basic header; an unknown user is checked against the dummy hash."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return None
        user, password = credentials
        stored = self._users.get(user)
        hashed = stored if stored is not None else self._dummy
        return self._verifier.key(user, hashed, password), password, hashed, stored is not None

    def authorize(self, authorization: bytes | None) -> bool | None:
        if not self._users:
            return True
        found = None if authorization is None else self._credentials(authorization)
        if found is None:
            return False
        key, _, _, known = found
        # An unknown user is never remembered, and goes the slow way like a wrong password.
        return True if known and self._verifier.remembered(key) else None

    async def verify(self, authorization: bytes) -> bool | None:
        if not self._users:
            return True
        found = self._credentials(authorization)
        if found is None:
            return False
        key, password, hashed, known = found
        if known and self._verifier.remembered(key):
            return True
        return await self._verifier.check(key, password, hashed, known)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


if TYPE_CHECKING:
    def _is_a_gate(gate: WebGate) -> Gate:  # mypy checks WebGate against the protocol
        return gate


_Snapshot = dict[str, tuple[int, int, int, int] | None]


def _stat_files(paths: tuple[str, ...]) -> _Snapshot:
    # st_ino and st_dev catch a file replaced by rename (cert-manager, ConfigMap symlink swaps).
    snapshot: _Snapshot = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            snapshot[path] = None
        else:
            snapshot[path] = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    return snapshot


class Reloader:
    """Holds the current config and gate, and replaces them when the file changes.

    ``apply(gate)`` is called with each new gate (the server assigns it). A failed reload
    keeps the last good config and logs its reason once; a reload that would turn TLS on or
    off is refused, since the listener's TLS is fixed when it starts.
    """

    def __init__(self, config: WebConfig, apply: Callable[[WebGate], object], *,
                 gate: WebGate | None = None) -> None:
        self.config = config
        self.gate = gate if gate is not None else WebGate(config)
        self._apply = apply
        self._watched = config.files
        self._snapshot = _stat_files(self._watched)
        self._last_error: str | None = None
        self._reloading = asyncio.Lock()
        self._requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._drain: asyncio.Task[None] | None = None

    @property
    def watched(self) -> tuple[str, ...]:
        """The files whose change triggers a reload."""
        return self._watched

    async def reload(self) -> bool:
        """Re-read the file now; True when the new config is in force."""
        async with self._reloading:
            before = await asyncio.to_thread(_stat_files, self._watched)
            parser = _Parser(self.config.path)
            try:
                config = await asyncio.to_thread(parser.load)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, WebConfigError) else \
                    f"{self.config.path}: {type(exc).__name__}: {exc}"
                await self._watch(self.config.files + tuple(parser.files), before)
                self._failed(reason)
                return False
            if (config.ssl_context is None) != (self.config.ssl_context is None):
                await self._watch(self.config.files + config.files, before)
                running = "on" if self.config.ssl_context is not None else "off"
                new = "off" if running == "on" else "on"
                self._failed(f"{config.path}: TLS is {running} in the running server and {new} "
                             "in the new config; restart to turn TLS on or off")
                return False
            gate = WebGate(config, previous=self.gate)
            self._apply(gate)
            self.config, self.gate = config, gate
            await self._watch(config.files, before)
            self._last_error = None
            log.info("web config reloaded: %s", config.describe())
            return True

    async def _watch(self, paths: tuple[str, ...], before: _Snapshot) -> None:
        # Files known before the load keep their state from before it: a change made during
        # the load is then seen by the next poll.
        paths = tuple(dict.fromkeys(paths))
        added = await asyncio.to_thread(_stat_files, tuple(p for p in paths if p not in before))
        self._watched = paths
        self._snapshot = {p: before[p] if p in before else added[p] for p in paths}

    def _failed(self, reason: str) -> None:
        if reason != self._last_error:
            log.error("web config not reloaded, keeping the last good one: %s", reason)
            self._last_error = reason

    def request_reload(self) -> None:
        """Schedule a reload (SIGHUP). Requests made while one is pending or running add at
        most one more reload. Call it on the loop's thread, or after ``run()`` has started
        from any thread."""
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        loop.call_soon_threadsafe(self._on_request)

    def _on_request(self) -> None:
        self._requested.set()
        if not self._running and (self._drain is None or self._drain.done()):
            self._drain = asyncio.ensure_future(self._serve_requests())

    async def _serve_requests(self) -> None:
        while self._requested.is_set():
            self._requested.clear()
            await self.reload()

    async def run(self, interval: float = 1.0) -> None:
        """Poll the watched files every ``interval`` seconds and serve reload requests."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._requested.wait(), interval)
                if self._requested.is_set():
                    await self._serve_requests()
                    continue
                current = await asyncio.to_thread(_stat_files, self._watched)
                # A file that is gone is not reloaded (the last good config holds its
                # contents); its return is a change.
                if any(state is not None and state != self._snapshot.get(path)
                       for path, state in current.items()):
                    await self.reload()
                else:
                    self._snapshot = current
        finally:
            self._running = False
