"""Exception hierarchy of fastnats; pure Python so the compiled core and the reference share it."""


class FastNatsError(Exception):
    """Base class of every fastnats error."""


class ConfError(FastNatsError, ValueError):
    """A nats-server.conf could not be read; the message starts with ``file:line:``."""


class WebConfigError(FastNatsError, ValueError):
    """A --web.config.file could not be used; the message starts with ``file:line:`` when the
    fault has a place in the file, and never holds a password or key material."""


class ConnzDecodeError(FastNatsError, ValueError):
    """A /connz body is malformed or truncated; ``offset`` is the byte where decoding stopped."""

    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(f"{msg} (byte {offset})")
        self.offset = offset


class LeafzDecodeError(FastNatsError, ValueError):
    """A /leafz body is malformed or truncated; ``offset`` is the byte where decoding stopped."""

    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(f"{msg} (byte {offset})")
        self.offset = offset


class WireProtocolError(FastNatsError, ValueError):
    """A netlink sock_diag buffer is malformed, truncated or reports an error.

    ``offset`` is the byte of the concatenated buffers where decoding stopped (None when the
    error did not come from a decode); ``errno`` is the kernel's error number when the kernel
    answered with NLMSG_ERROR or a failed NLMSG_DONE, else None.
    """

    def __init__(self, msg: str, offset: int | None = None, errno: int | None = None) -> None:
        super().__init__(msg if offset is None else f"{msg} (byte {offset})")
        self.offset = offset
        self.errno = errno


class ScrapeError(FastNatsError):
    """A monitoring endpoint could not be read.

    ``reason`` is a short, stable word used as a metric label: ``timeout``, ``connect``,
    ``http_status``, ``body`` (the reply broke off or was malformed on the wire), ``too_large``
    (over its size limit), ``decode``, ``tls`` (the TLS handshake with an https:// monitoring URL
    failed: untrusted or misnamed certificate, client certificate missing or refused, no TLS
    on the port); the wire counter adds ``netlink`` and ``events_lost``.
    ``status`` is the HTTP status of an ``http_status`` error.
    """

    def __init__(self, endpoint: str, reason: str, detail: str, *,
                 status: int | None = None) -> None:
        super().__init__(f"{endpoint}: {reason}: {detail}")
        self.endpoint = endpoint
        self.reason = reason
        self.detail = detail
        self.status = status
