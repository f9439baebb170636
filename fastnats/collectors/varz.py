"""The /varz collector: the seed server metrics and the server families past them (JetStream's
usage, TLS expiry, slow consumers by kind), the server's identity, and the facts the other
collectors read (``ServerInfo``). It runs first at every refresh; a server whose /varz cannot be
read is down.
"""

from __future__ import annotations

from .. import metrics as m
from ..errors import ScrapeError
from ..interop import Sample
from .base import DECODE, Collector, Samples, ServerContext, ServerInfo, Source
from .decode import Fields, decode_json, off_loop

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
    jetstream = _jetstream(varz)
    config = jetstream.object("config") if jetstream is not None else None
    out[m.NATS_SERVER_INFO.name] = [(
        (varz.text("server_name", ""), varz.text("server_id"), version,
         cluster.text("name", "") if cluster is not None else "",
         config.text("domain", "") if config is not None else "",
         ",".join(sorted(varz.texts("tags")))), 1)]
    out.update(_beyond_seed(varz, cluster))
    if jetstream is not None:
        out.update(_jetstream_samples(jetstream))
    return out


#: Where /varz puts each listener's TLS certificate expiry: the client listener's at the top.
_TLS_SECTIONS = tuple((name, section) for name, section, _ in _VARZ_PORT_KEYS)
#: The kinds of ``slow_consumer_stats``, in the order they are exported.
SLOW_CONSUMER_KINDS = ("clients", "routes", "gateways", "leafs")


def _timestamp(fields: Fields, key: str) -> float | None:
    """An RFC 3339 time as Unix seconds; None when absent or Go's zero time (year 1), which
    nats-server sends for "never"."""
    if not fields.has(key):
        return None
    ns = fields.time_ns(key)
    return ns / 1e9 if ns > 0 else None


def _copy(out: Samples, metric: m.Metric, fields: Fields, key: str) -> None:
    """``metric`` from ``key`` of ``fields``, when the server reports it."""
    if fields.has(key):
        out[metric.name] = [((), fields.counter(key) if metric.type == m.COUNTER
                                 else fields.gauge(key))]


def _beyond_seed(varz: Fields, cluster: Fields | None) -> Samples:
    """The server families of /varz past the seed metrics, JetStream's aside; a field an older
    server does not report leaves its family out."""
    out: Samples = {}
    if varz.has("cpu"):
        out[m.NATS_SERVER_CPU_RATIO.name] = [((), varz.gauge("cpu") / 100)]
    for metric in m.VARZ:
        if metric.varz is not None:
            _copy(out, metric, varz, metric.varz)
    slow = varz.object("slow_consumer_stats")
    if slow is not None:
        kinds: list[Sample] = [((kind,), slow.counter(kind)) for kind in SLOW_CONSUMER_KINDS
                               if slow.has(kind)]
        if kinds:
            out[m.NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL.name] = kinds
    if (loaded := _timestamp(varz, "config_load_time")) is not None:
        out[m.NATS_SERVER_CONFIG_LOAD_TIMESTAMP_SECONDS.name] = [((), loaded)]
    expiries: list[Sample] = []
    for listener, section in _TLS_SECTIONS:
        where = varz if section is None else varz.object(section)
        if where is not None and (expiry := _timestamp(where, "tls_cert_not_after")) is not None:
            expiries.append(((listener,), expiry))
    if expiries:
        out[m.NATS_SERVER_TLS_CERT_NOT_AFTER_TIMESTAMP_SECONDS.name] = expiries
    # A server without a route listener has no cluster (its section is empty, or holds only
    # a name); one with a listener and no routes to solicit has no ``urls``.
    if cluster is not None and (cluster.has("urls") or "cluster" in listener_ports(varz).values()):
        out[m.NATS_ROUTE_CONFIGURED_URLS.name] = [((), len(cluster.texts("urls")))]
    return out


def _jetstream(varz: Fields) -> Fields | None:
    """The /varz ``jetstream`` section of a server that runs JetStream, else None: a server
    without it reports an empty section, or none."""
    jetstream = varz.object("jetstream")
    if jetstream is None or jetstream.object("config") is None:
        return None
    return jetstream


_JETSTREAM_CONFIG = ((m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES, "max_memory"),
                     (m.NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES, "max_storage"))
_JETSTREAM_STATS = ((m.NATS_SERVER_JETSTREAM_MEMORY_BYTES, "memory"),
                    (m.NATS_SERVER_JETSTREAM_STORAGE_BYTES, "storage"),
                    (m.NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES, "reserved_memory"),
                    (m.NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES, "reserved_storage"))
_JETSTREAM_API = ((m.NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL, "total"),
                  (m.NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL, "errors"))


def _jetstream_samples(jetstream: Fields) -> Samples:
    out: Samples = {}
    for fields, keys in ((jetstream.object("config"), _JETSTREAM_CONFIG),
                         (stats := jetstream.object("stats"), _JETSTREAM_STATS),
                         (stats.object("api") if stats is not None else None, _JETSTREAM_API)):
        if fields is not None:
            for metric, key in keys:
                _copy(out, metric, fields, key)
    return out


def server_info(varz: Fields) -> ServerInfo:
    """What the server's other collectors need from its /varz."""
    return ServerInfo(
        server_id=varz.text("server_id"), start=varz.text("start"),
        connections=varz.counter("connections"),
        total_connections=varz.counter("total_connections"), listeners=listener_ports(varz),
        cluster=cluster.text("name", "") if (cluster := varz.object("cluster")) else "",
        server_name=varz.text("server_name", ""),
        leafnodes=varz.counter("leafnodes") if varz.has("leafnodes") else 0,
        gateways=configured_gateways(varz))


def configured_gateways(varz: Fields) -> tuple[str, ...]:
    """The remote clusters in the server's gateway configuration. A configuration often lists
    every cluster of the supercluster, its own included, which no gateway connects to."""
    gateway = varz.object("gateway")
    if gateway is None:
        return ()
    own = gateway.text("name", "")
    names = (Fields("varz", item, f"gateway.gateways[{i}].").text("name")
             for i, item in enumerate(gateway.array("gateways", required=False)))
    return tuple(sorted({name for name in names if name != own}))


def decode(body: bytes | bytearray) -> tuple[Samples, ServerInfo]:
    """The samples and the ``ServerInfo`` of a /varz body; any problem is a decode error."""
    varz = Fields("varz", decode_json("varz", body))
    return varz_samples(varz), server_info(varz)


class VarzCollector(Collector):
    """Reads /varz; cannot be switched off, since it tells whether the server is up."""

    endpoint = "varz"
    #: The seed metrics but the wire bytes, which come from the kernel (``sockdiag``).
    families = (m.NATS_SERVER_VERSION, m.NATS_SERVER_UPTIME_SECONDS,
                *(seed for seed in m.SEED if seed.varz is not None), m.NATS_SERVER_INFO,
                *m.VARZ)

    def __init__(self, server: ServerContext, options: object = None) -> None:
        super().__init__(server, options)
        self._samples: Samples = {}

    async def read(self, source: Source) -> ServerInfo:
        """Read /varz; returns the ``ServerInfo`` that the other collectors of the server get."""
        body = await source.get(self.endpoint)
        samples, info = await off_loop(len(body), decode, body)
        self._samples = samples
        return info
