"""The /varz collector: the seed server metrics, the server's identity, and the facts the other
collectors read (``ServerInfo``). It runs first at every refresh; a server whose /varz cannot be
read is down.
"""

from __future__ import annotations

import asyncio

from .. import metrics as m
from ..errors import ScrapeError
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json

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


def listener_ports(varz: Fields) -> dict[int, str]:
    """Map each NATS listening port of a /varz document to its listener name.

    Listeners that are not configured (no section, port 0 or a negative placeholder) are left
    out. The monitoring port (``http_port``/``https_port``) is never included: its HTTP traffic
    is not NATS traffic.
    """
    ports: dict[int, str] = {}
    for name, section, keys in _VARZ_PORT_KEYS:
        where = varz if section is None else varz.object(section)
        if where is None:
            continue
        for key in keys:
            if not where.has(key):
                continue
            port = where.gauge(key, signed=True)
            if type(port) is not int or port > 65535:
                raise ScrapeError("varz", DECODE, f"/varz {where.path}{key} is {port!r}, not a "
                                                  f"port number from 1 to 65535")
            if port > 0:
                if port in ports:
                    raise ScrapeError("varz", DECODE, f"/varz {where.path}{key} is port {port}, "
                                                      f"already the {ports[port]} listener")
                ports[port] = name
            break
    return ports


def varz_samples(varz: Fields) -> Samples:
    """The /varz-derived families of one server, keyed by metric name."""
    out: Samples = {}
    for metric in m.SEED:
        if metric.varz is not None:
            value = (varz.counter(metric.varz) if metric.type == m.COUNTER
                     else varz.gauge(metric.varz))
            out[metric.name] = [((), value)]
    version = varz.text("version")
    out[m.NATS_SERVER_VERSION.name] = [((version,), 1)]
    uptime_ns = varz.time_ns("now") - varz.time_ns("start")
    out[m.NATS_SERVER_UPTIME_SECONDS.name] = [((), max(uptime_ns, 0) / 1e9)]
    cluster = varz.object("cluster")
    out[m.NATS_SERVER_INFO.name] = [(
        (varz.text("server_name", ""), varz.text("server_id"), version,
         cluster.text("name", "") if cluster is not None else ""), 1)]
    return out


def server_info(varz: Fields) -> ServerInfo:
    """What the server's other collectors need from its /varz."""
    return ServerInfo(
        server_id=varz.text("server_id"), start=varz.text("start"),
        connections=varz.counter("connections"),
        total_connections=varz.counter("total_connections"), listeners=listener_ports(varz),
        cluster=cluster.text("name", "") if (cluster := varz.object("cluster")) else "",
        leafnodes=varz.counter("leafnodes") if varz.has("leafnodes") else 0)


def decode(body: bytes | bytearray) -> tuple[Samples, ServerInfo]:
    """The samples and the ``ServerInfo`` of a /varz body; any problem is a decode error."""
    varz = Fields("varz", decode_json("varz", body))
    return varz_samples(varz), server_info(varz)


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
        body = await source.get(self.endpoint)
        # Decoding a big document would hold the event loop; /varz is small, so only past
        # a few pages does it go to a thread.
        if len(body) > 65536:
            samples, info = await asyncio.to_thread(decode, body)
        else:
            samples, info = decode(body)
        self._samples = samples
        return info

    def samples(self) -> Samples:
        return self._samples

    async def server_down(self) -> None:
        self._samples = {}
