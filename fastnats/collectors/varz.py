"""The /varz collector: the seed server metrics, the server's identity, and the facts the other
collectors read (``ServerInfo``). It runs first at every refresh; a server whose /varz cannot be
read is down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from .. import metrics as m
from ..errors import ScrapeError
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source
from .decode import decode_json, parse_rfc3339_ns

# Where /varz puts each listener's port. nats-server 2.15 reports the route listener as
# cluster.cluster_port; older servers used cluster.port, so both are read.
_VARZ_PORT_KEYS = (
    ("client", None, ("port",)),
    ("cluster", "cluster", ("cluster_port", "port")),
    ("gateway", "gateway", ("port",)),
    ("leafnode", "leaf", ("port",)),
    ("websocket", "websocket", ("port",)),
    ("mqtt", "mqtt", ("port",)),
)


def listener_ports(varz: Mapping[str, object]) -> dict[int, str]:
    """Map each NATS listening port of a /varz document to its listener name.

    Listeners that are not configured (no section, port 0 or a negative placeholder) are left
    out. The monitoring port (``http_port``/``https_port``) is never included: its HTTP traffic
    is not NATS traffic.
    """
    if not isinstance(varz, Mapping):
        raise TypeError(f"varz must be a mapping, not {type(varz).__name__}")
    ports: dict[int, str] = {}
    for name, section, keys in _VARZ_PORT_KEYS:
        where = varz if section is None else varz.get(section)
        if where is None:
            continue
        if not isinstance(where, Mapping):
            raise ValueError(f"/varz {section!r} is a {type(where).__name__}, not an object")
        for key in keys:
            if key not in where:
                continue
            port = where[key]
            path = key if section is None else f"{section}.{key}"
            if isinstance(port, bool) or not isinstance(port, int):
                raise ValueError(f"/varz {path} is {port!r}, not a port number")
            if port > 65535:
                raise ValueError(f"/varz {path} is {port}, beyond 65535")
            if port > 0:
                if port in ports:
                    raise ValueError(f"/varz {path} is port {port}, already the "
                                     f"{ports[port]} listener")
                ports[port] = name
            break
    return ports


def _number(varz: Mapping[str, object], key: str) -> int | float:
    value = varz[key]
    if type(value) not in (int, float):
        raise ValueError(f"/varz {key} is {value!r}, not a number")
    return value  # type: ignore[return-value]


def _count(varz: Mapping[str, object], key: str) -> int:
    value = varz[key]
    if type(value) is not int or value < 0:
        raise ValueError(f"/varz {key} is {value!r}, not a count")
    return value


def _text(varz: Mapping[str, object], key: str) -> str:
    value = varz[key]
    if not isinstance(value, str):
        raise ValueError(f"/varz {key} is {value!r}, not a string")
    return value


@contextlib.contextmanager
def _content() -> Iterator[None]:
    """Turns what a malformed document raises into the server's decode error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ScrapeError("varz", DECODE, f"unexpected /varz content: {exc!r}") from None


def varz_samples(varz: Mapping[str, object]) -> Samples:
    """The /varz-derived families of one server, keyed by metric name."""
    with _content():
        return _varz_samples(varz)


def server_info(varz: Mapping[str, object]) -> ServerInfo:
    """What the server's other collectors need from its /varz."""
    with _content():
        return ServerInfo(
            server_id=_text(varz, "server_id"), start=_text(varz, "start"),
            connections=_count(varz, "connections"),
            total_connections=_count(varz, "total_connections"),
            listeners=listener_ports(varz))


def _varz_samples(varz: Mapping[str, object]) -> Samples:
    out: Samples = {}
    for metric in m.SEED:
        if metric.varz is not None:
            out[metric.name] = [((), _number(varz, metric.varz))]
    version = _text(varz, "version")
    out[m.NATS_SERVER_VERSION.name] = [((version,), 1)]
    uptime_ns = parse_rfc3339_ns(_text(varz, "now")) - parse_rfc3339_ns(_text(varz, "start"))
    out[m.NATS_SERVER_UPTIME_SECONDS.name] = [((), max(uptime_ns, 0) / 1e9)]
    cluster = varz.get("cluster") or {}
    if not isinstance(cluster, Mapping):
        raise ValueError(f"/varz cluster is {cluster!r}, not an object")
    out[m.NATS_SERVER_INFO.name] = [(
        (str(varz.get("server_name", "")), str(varz["server_id"]), version,
         str(cluster.get("name", ""))), 1)]
    return out


class VarzCollector(Collector):
    """Reads /varz; cannot be switched off, since it tells whether the server is up."""

    endpoint = "varz"
    #: The seed metrics but the wire bytes, which come from the kernel (``sockdiag``).
    families = (m.NATS_SERVER_VERSION, m.NATS_SERVER_UPTIME_SECONDS,
                *(seed for seed in m.SEED if seed.varz is not None), m.NATS_SERVER_INFO)

    def __init__(self, server: ServerContext, options: object = None) -> None:
        super().__init__(server, options)
        self._samples: Samples = {}

    async def read(self, source: Source) -> ServerInfo:
        """Read /varz; returns the ``ServerInfo`` that the other collectors of the server get."""
        varz = decode_json(self.endpoint, await source.get(self.endpoint))
        samples = varz_samples(varz)
        info = server_info(varz)
        self._samples = samples
        return info

    def samples(self) -> Samples:
        return self._samples

    async def server_down(self) -> None:
        self._samples = {}
