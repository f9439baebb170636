"""The metric catalogue: every family fastnats can expose, with its type, help text and labels.

The text writer, ``describe()``, the docs and the tests all read this module; a metric that is not
listed here does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

GAUGE = "gauge"
COUNTER = "counter"
#: A gauge histogram: how a quantity is spread over what exists now (the open connections), not
#: a cumulative count of events. The text format has no such type, so it is exposed as one
#: ``histogram`` family (``_bucket``, ``_sum``, ``_count``) and ``histogram_quantile()`` works.
#: A sample's value is ``(cumulative bucket counts, sum)``, one count per ``buckets`` bound with
#: +Inf last; ``_count`` is the +Inf bucket.
DISTRIBUTION = "distribution"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()
    #: A /varz key whose value is the sample, for the metrics that are a plain copy of one.
    varz: str | None = None
    #: False for process-wide metrics that never carry the ``server`` label.
    per_server: bool = True
    #: Where the value comes from, for docs/metrics.md.
    source: str = ""
    #: The ``le`` label values of a distribution, +Inf last.
    buckets: tuple[str, ...] = ()
    #: A plausible value, for the samples in docs/metrics.md.
    example: int | float | tuple[tuple[int, ...], int | float] = 1

    @property
    def exposed_type(self) -> str:
        """The type in ``# TYPE`` lines."""
        return "histogram" if self.type == DISTRIBUTION else self.type


# The thirteen seed metrics; names, help texts and types are byte-exact with
# shared/SEED-METRICS.txt and must never change.
NATS_SERVER_VERSION = Metric(
    "nats_server_version", GAUGE, "NATS server version", ("version",),
    source="/varz version, as label `version`; value 1")
NATS_SERVER_UPTIME_SECONDS = Metric(
    "nats_server_uptime_seconds", GAUGE, "Uptime of the NATS server in seconds",
    source="/varz now - start, in seconds", example=86400.5)
NATS_SERVER_CLIENTS = Metric(
    "nats_server_clients", GAUGE, "The number of connected clients", varz="connections",
    source="/varz connections", example=1532)
NATS_SERVER_TOTAL_CONNECTIONS = Metric(
    "nats_server_total_connections", COUNTER, "The total number of connections accepted",
    varz="total_connections", source="/varz total_connections", example=20417)
NATS_SERVER_TOTAL_BYTES_SENT = Metric(
    "nats_server_total_bytes_sent", COUNTER, "The total number of bytes sent by the server",
    source="kernel socket counters (tcp_info bytes_acked) over the server's NATS listeners; "
           "protocol overhead included", example=918273645)
NATS_SERVER_TOTAL_BYTES_RECEIVED = Metric(
    "nats_server_total_bytes_received", COUNTER,
    "The total number of bytes received by the server",
    source="kernel socket counters (tcp_info bytes_received) over the server's NATS listeners; "
           "protocol overhead included", example=512384096)
NATS_SERVER_TOTAL_MESSAGES_SENT = Metric(
    "nats_server_total_messages_sent", COUNTER, "The total number of messages sent by the server",
    varz="out_msgs", source="/varz out_msgs", example=4410233)
NATS_SERVER_TOTAL_MESSAGES_RECEIVED = Metric(
    "nats_server_total_messages_received", COUNTER,
    "The total number of messages received by the server", varz="in_msgs", source="/varz in_msgs",
    example=2205116)
NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT = Metric(
    "nats_server_total_payload_bytes_sent", COUNTER,
    "The total number of payload bytes sent by the server", varz="out_bytes",
    source="/varz out_bytes (message headers + payload)", example=705521280)
NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED = Metric(
    "nats_server_total_payload_bytes_received", COUNTER,
    "The total number of payload bytes received by the server", varz="in_bytes",
    source="/varz in_bytes (message headers + payload)", example=352760640)
NATS_SERVER_SLOW_CONSUMERS = Metric(
    "nats_server_slow_consumers", COUNTER, "The number of slow consumers detected",
    varz="slow_consumers", source="/varz slow_consumers", example=3)
NATS_SERVER_MEMORY_BYTES = Metric(
    "nats_server_memory_bytes", GAUGE, "Current memory usage in bytes", varz="mem",
    source="/varz mem", example=73138176)
NATS_SERVER_CPU_CORES = Metric(
    "nats_server_cpu_cores", GAUGE, "The number of CPU cores available to the NATS server process",
    varz="cores", source="/varz cores", example=8)

SEED = (
    NATS_SERVER_VERSION,
    NATS_SERVER_UPTIME_SECONDS,
    NATS_SERVER_CLIENTS,
    NATS_SERVER_TOTAL_CONNECTIONS,
    NATS_SERVER_TOTAL_BYTES_SENT,
    NATS_SERVER_TOTAL_BYTES_RECEIVED,
    NATS_SERVER_TOTAL_MESSAGES_SENT,
    NATS_SERVER_TOTAL_MESSAGES_RECEIVED,
    NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT,
    NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED,
    NATS_SERVER_SLOW_CONSUMERS,
    NATS_SERVER_MEMORY_BYTES,
    NATS_SERVER_CPU_CORES,
)

# Health of each monitored server.
NATS_UP = Metric(
    "nats_up", GAUGE,
    "1 if the last refresh read the NATS server's monitoring endpoints, 0 if it failed",
    source="outcome of the last refresh")
NATS_SERVER_INFO = Metric(
    "nats_server_info", GAUGE, "Identity of the NATS server; the value is always 1",
    ("server_name", "server_id", "version", "cluster", "domain", "tags"),
    source="/varz server_name, server_id, version, cluster.name, jetstream.config.domain, and "
           "tags (sorted, comma-separated)")

HEALTH = (NATS_UP, NATS_SERVER_INFO)

# /varz beyond the seed metrics. A field an older server lacks leaves its family out; the
# JetStream families exist only while the server runs JetStream.
NATS_SERVER_CPU_RATIO = Metric(
    "nats_server_cpu_ratio", GAUGE,
    "CPU used by the NATS server process, as a ratio of one core (1.5 is one and a half cores)",
    source="/varz cpu / 100", example=0.35)
NATS_SERVER_MAX_PAYLOAD_BYTES = Metric(
    "nats_server_max_payload_bytes", GAUGE,
    "Largest message payload the server accepts from a connection (max_payload)",
    varz="max_payload", source="/varz max_payload", example=1048576)
NATS_SERVER_GO_MEMLIMIT_BYTES = Metric(
    "nats_server_go_memlimit_bytes", GAUGE,
    "Soft memory limit of the NATS server's Go runtime (GOMEMLIMIT); no series when none is set",
    varz="gomemlimit", source="/varz gomemlimit (left out by the server when unset)",
    example=4294967296)
NATS_SERVER_SUBSCRIPTIONS = Metric(
    "nats_server_subscriptions", GAUGE, "Subscriptions in the server's subscription list",
    varz="subscriptions", source="/varz subscriptions", example=1830)
NATS_SERVER_ROUTES = Metric(
    "nats_server_routes", GAUGE, "Route connections of the server (pooled routes counted each)",
    varz="routes", source="/varz routes", example=6)
NATS_SERVER_REMOTES = Metric(
    "nats_server_remotes", GAUGE, "Remote servers of the cluster the server is routed to",
    varz="remotes", source="/varz remotes", example=2)
NATS_SERVER_LEAFNODES = Metric(
    "nats_server_leafnodes", GAUGE, "Leafnode connections of the server", varz="leafnodes",
    source="/varz leafnodes", example=310)
NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL = Metric(
    "nats_server_slow_consumer_detections_total", COUNTER,
    "Slow consumers detected, by the kind of connection (clients, routes, gateways, leafs)",
    ("kind",), source="/varz slow_consumer_stats", example=3)
NATS_SERVER_STALE_CONNECTIONS_TOTAL = Metric(
    "nats_server_stale_connections_total", COUNTER,
    "Connections closed because they missed too many pings", varz="stale_connections",
    source="/varz stale_connections", example=12)
NATS_SERVER_STALLED_CLIENTS_TOTAL = Metric(
    "nats_server_stalled_clients_total", COUNTER,
    "Times a producer was stalled because a consumer's pending buffer was full",
    varz="stalled_clients", source="/varz stalled_clients", example=0)
NATS_SERVER_CONFIG_LOAD_TIMESTAMP_SECONDS = Metric(
    "nats_server_config_load_timestamp_seconds", GAUGE,
    "Unix time the server last loaded its configuration", source="/varz config_load_time",
    example=1767225600.5)
NATS_SERVER_TLS_CERT_NOT_AFTER_TIMESTAMP_SECONDS = Metric(
    "nats_server_tls_cert_not_after_timestamp_seconds", GAUGE,
    "Unix time the TLS certificate of the listener expires", ("listener",),
    source="/varz tls_cert_not_after of the client listener and of the cluster, gateway, "
           "leaf, websocket and mqtt sections, where present", example=1798761600)
NATS_ROUTE_CONFIGURED_URLS = Metric(
    "nats_route_configured_urls", GAUGE,
    "Route URLs in the server's cluster configuration (what it was told to connect to)",
    source="/varz cluster.urls, counted; only a server with a route listener", example=3)
NATS_SERVER_JETSTREAM_MEMORY_BYTES = Metric(
    "nats_server_jetstream_memory_bytes", GAUGE, "Memory used by JetStream on the server",
    source="/varz jetstream.stats.memory", example=1048576)
NATS_SERVER_JETSTREAM_STORAGE_BYTES = Metric(
    "nats_server_jetstream_storage_bytes", GAUGE, "File storage used by JetStream on the server",
    source="/varz jetstream.stats.storage", example=73400320)
NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES = Metric(
    "nats_server_jetstream_reserved_memory_bytes", GAUGE,
    "Memory reserved by the JetStream accounts' limits on the server",
    source="/varz jetstream.stats.reserved_memory", example=0)
NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES = Metric(
    "nats_server_jetstream_reserved_storage_bytes", GAUGE,
    "File storage reserved by the JetStream accounts' limits on the server",
    source="/varz jetstream.stats.reserved_storage", example=0)
NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES = Metric(
    "nats_server_jetstream_max_memory_bytes", GAUGE,
    "Memory JetStream may use on the server, as configured",
    source="/varz jetstream.config.max_memory", example=17179869184)
NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES = Metric(
    "nats_server_jetstream_max_storage_bytes", GAUGE,
    "File storage JetStream may use on the server, as configured",
    source="/varz jetstream.config.max_storage", example=1099511627776)
NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL = Metric(
    "nats_server_jetstream_api_requests_total", COUNTER, "JetStream API requests the server served",
    source="/varz jetstream.stats.api.total", example=40211)
NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL = Metric(
    "nats_server_jetstream_api_errors_total", COUNTER,
    "JetStream API requests that returned an error", source="/varz jetstream.stats.api.errors",
    example=12)

VARZ: tuple[Metric, ...] = (
    NATS_SERVER_CPU_RATIO,
    NATS_SERVER_MAX_PAYLOAD_BYTES,
    NATS_SERVER_GO_MEMLIMIT_BYTES,
    NATS_SERVER_SUBSCRIPTIONS,
    NATS_SERVER_ROUTES,
    NATS_SERVER_REMOTES,
    NATS_SERVER_LEAFNODES,
    NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL,
    NATS_SERVER_STALE_CONNECTIONS_TOTAL,
    NATS_SERVER_STALLED_CLIENTS_TOTAL,
    NATS_SERVER_CONFIG_LOAD_TIMESTAMP_SECONDS,
    NATS_SERVER_TLS_CERT_NOT_AFTER_TIMESTAMP_SECONDS,
    NATS_ROUTE_CONFIGURED_URLS,
    NATS_SERVER_JETSTREAM_MEMORY_BYTES,
    NATS_SERVER_JETSTREAM_STORAGE_BYTES,
    NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES,
    NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES,
    NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES,
    NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES,
    NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL,
    NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL,
)

# Per-client aggregates, distributions and top-K from /connz (see the connz section of docs).
#
# The labels of the group families depend on --connz.group-by, so the catalogue lists them as the
# single marker GROUP_LABELS; ``ConnzCollector.label_names`` expands it to the configured fields,
# in the configured order.
GROUP_LABELS = "<group_by>"
#: The /connz fields a deployment may group clients by; ``kind`` is the connection type (nats,
#: websocket, mqtt), because /connz reports every connection's ``kind`` as ``Client``.
GROUP_BY_FIELDS = ("account", "name", "lang", "version", "kind", "ip")
DEFAULT_GROUP_BY = ("account", "name")
#: Label value of every group-by label on the group that collects the overflow of
#: --connz.max-groups.
OTHER_GROUP = "_other"
#: Label value of every group-by label on the series of lost connections that were never read,
#: so their group is unknown (nats_client_connections_lost_total).
UNKNOWN_GROUP = "_unknown"
#: The label values the exporter itself gives; no client value is exported as one of them.
MARKERS = (OTHER_GROUP, UNKNOWN_GROUP)


def client_value(value: str) -> str:
    """The label value a client-chosen value (name, account, lang, ...) is exported as.

    A value made of one or more underscores and then ``other`` or ``unknown`` (what a marker is,
    or what a marker escaped once is) gets one more leading underscore: ``_other`` becomes
    ``__other``, ``__other`` becomes ``___other``. Every other value is exported as it is. The
    rule is one-to-one, and no client value comes out as a marker, so a client cannot make its
    series collide with the exporter's own.
    """
    stem = value.lstrip("_")
    if stem != value and "_" + stem in MARKERS:
        return "_" + value
    return value

#: Labels that identify one connection in the top-K and per-connection families.
CONNECTION_LABELS = ("cid", "name", "account", "ip")

# Upper bounds of the distribution buckets; +Inf is implied. Seconds are floats, counts are ints.
CONNZ_RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1.0, 2.5, 5.0)
CONNZ_PENDING_BUCKETS = (0, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                         67108864)
CONNZ_IDLE_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 21600.0, 86400.0)
CONNZ_SUBS_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 500, 1000, 10000)


def _le(bound: float | int) -> str:
    return repr(bound) if isinstance(bound, int) else repr(float(bound)).removesuffix(".0")


#: The ``le`` label values of each distribution, +Inf last; both implementations render these.
CONNZ_RTT_LE = tuple(map(_le, CONNZ_RTT_BUCKETS)) + ("+Inf",)
CONNZ_PENDING_LE = tuple(map(_le, CONNZ_PENDING_BUCKETS)) + ("+Inf",)
CONNZ_IDLE_LE = tuple(map(_le, CONNZ_IDLE_BUCKETS)) + ("+Inf",)
CONNZ_SUBS_LE = tuple(map(_le, CONNZ_SUBS_BUCKETS)) + ("+Inf",)

_GROUP_SRC = ("/connz of every open connection, plus the final counters of closed ones; grouped "
              "by --connz.group-by")
NATS_CLIENT_CONNECTIONS = Metric(
    "nats_client_connections", GAUGE, "Open client connections", (GROUP_LABELS,),
    source="/connz: open connections in the group", example=12)
NATS_CLIENT_SUBSCRIPTIONS = Metric(
    "nats_client_subscriptions", GAUGE, "Subscriptions held by the open client connections",
    (GROUP_LABELS,), source="/connz subscriptions, summed over the group's open connections",
    example=48)
NATS_CLIENT_PENDING_BYTES = Metric(
    "nats_client_pending_bytes", GAUGE,
    "Bytes the server has queued for delivery to the open client connections", (GROUP_LABELS,),
    source="/connz pending_bytes, summed over the group's open connections", example=4096)
NATS_CLIENT_IN_MESSAGES_TOTAL = Metric(
    "nats_client_in_messages_total", COUNTER,
    "Messages received by the server from the clients (what they published), closed "
    "connections included", (GROUP_LABELS,), source=_GROUP_SRC + "; /connz in_msgs",
    example=1830255)
NATS_CLIENT_OUT_MESSAGES_TOTAL = Metric(
    "nats_client_out_messages_total", COUNTER,
    "Messages sent by the server to the clients (what they received), closed connections "
    "included", (GROUP_LABELS,), source=_GROUP_SRC + "; /connz out_msgs", example=3660510)
NATS_CLIENT_IN_BYTES_TOTAL = Metric(
    "nats_client_in_bytes_total", COUNTER,
    "Message bytes received by the server from the clients, closed connections included",
    (GROUP_LABELS,), source=_GROUP_SRC + "; /connz in_bytes (headers + payload)",
    example=146420400)
NATS_CLIENT_OUT_BYTES_TOTAL = Metric(
    "nats_client_out_bytes_total", COUNTER,
    "Message bytes sent by the server to the clients, closed connections included",
    (GROUP_LABELS,), source=_GROUP_SRC + "; /connz out_bytes (headers + payload)",
    example=292840800)
NATS_CLIENT_GROUPS = Metric(
    "nats_client_groups", GAUGE,
    "Client groups tracked, the _other group excluded; at most --connz.max-groups",
    source="/connz aggregator", example=37)
NATS_CLIENT_GROUP_OVERFLOW_TOTAL = Metric(
    "nats_client_group_overflow_total", COUNTER,
    "Connections counted in the _other group because --connz.max-groups groups already existed "
    "and none could be evicted",
    source="/connz aggregator", example=0)
NATS_CLIENT_GROUP_EVICTIONS_TOTAL = Metric(
    "nats_client_group_evictions_total", COUNTER,
    "Groups without open connections dropped to make room for a new group under "
    "--connz.max-groups: first those that never carried traffic, then those whose connections "
    "all lived between two refreshes",
    source="/connz aggregator", example=0)
NATS_CLIENT_CONNECTIONS_LOST_TOTAL = Metric(
    "nats_client_connections_lost_total", COUNTER,
    "Client connections whose final counters the exporter could not read: nats-server dropped "
    "them from its list of closed connections (max_closed_clients) first. A connection seen "
    "open counts in its group, with the counters last seen; one never seen counts in the "
    "group labelled _unknown",
    (GROUP_LABELS,), source="/connz: cids seen open and missing from state=closed, and cids "
    "never listed while the closed list overflowed", example=0)


def _distribution(name: str, what: str, field: str, buckets: tuple[str, ...],
                  example_sum: int | float) -> Metric:
    # The example puts 12 connections in the upper half of the buckets.
    half = len(buckets) // 2
    example = (tuple(0 if k < half else 12 for k in range(len(buckets))), example_sum)
    return Metric(name, DISTRIBUTION, f"Open client connections by {what}", buckets=buckets,
                  source=f"/connz {field} of every open connection, as a gauge histogram",
                  example=example)


NATS_CLIENT_CONNECTION_RTT_SECONDS = _distribution(
    "nats_client_connection_rtt_seconds", "round-trip time in seconds", "rtt", CONNZ_RTT_LE,
    0.0094)
NATS_CLIENT_CONNECTION_PENDING_BYTES = _distribution(
    "nats_client_connection_pending_bytes", "pending bytes", "pending_bytes", CONNZ_PENDING_LE,
    4096)
NATS_CLIENT_CONNECTION_IDLE_SECONDS = _distribution(
    "nats_client_connection_idle_seconds", "idle time in seconds", "idle", CONNZ_IDLE_LE, 95.5)
NATS_CLIENT_CONNECTION_SUBSCRIPTIONS = _distribution(
    "nats_client_connection_subscriptions", "subscription count", "subscriptions", CONNZ_SUBS_LE,
    48)

NATS_CLIENT_TOP_PENDING_BYTES = Metric(
    "nats_client_top_pending_bytes", GAUGE,
    "Pending bytes of the --connz.top-k connections with the most", CONNECTION_LABELS,
    source="/connz pending_bytes; connections with none are left out", example=4096)
NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND = Metric(
    "nats_client_top_in_messages_per_second", GAUGE,
    "Messages per second received from the --connz.top-k busiest publishing connections, "
    "between the last two refreshes", CONNECTION_LABELS,
    source="/connz in_msgs of one refresh minus the previous, over the time between them",
    example=850.5)
NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND = Metric(
    "nats_client_top_out_messages_per_second", GAUGE,
    "Messages per second sent to the --connz.top-k busiest receiving connections, between the "
    "last two refreshes", CONNECTION_LABELS,
    source="/connz out_msgs of one refresh minus the previous, over the time between them",
    example=1701.0)

def _per_connection(name: str, kind: str, help: str, field: str,
                    example: int | float) -> Metric:
    return Metric(name, kind, help, CONNECTION_LABELS, example=example,
                  source=f"/connz, one series per open connection (--connz.per-connection); "
                         f"{field}")


NATS_CONNECTION_PENDING_BYTES = _per_connection(
    "nats_connection_pending_bytes", GAUGE,
    "Bytes the server has queued for delivery to the connection", "pending_bytes", 4096)
NATS_CONNECTION_SUBSCRIPTIONS = _per_connection(
    "nats_connection_subscriptions", GAUGE, "Subscriptions of the connection", "subscriptions", 4)
NATS_CONNECTION_RTT_SECONDS = _per_connection(
    "nats_connection_rtt_seconds", GAUGE, "Round-trip time of the connection in seconds", "rtt",
    0.00078)
NATS_CONNECTION_IN_MESSAGES_TOTAL = _per_connection(
    "nats_connection_in_messages_total", COUNTER,
    "Messages received by the server from the connection", "in_msgs", 152521)
NATS_CONNECTION_OUT_MESSAGES_TOTAL = _per_connection(
    "nats_connection_out_messages_total", COUNTER, "Messages sent by the server to the connection",
    "out_msgs", 305042)
NATS_CONNECTION_IN_BYTES_TOTAL = _per_connection(
    "nats_connection_in_bytes_total", COUNTER,
    "Message bytes received by the server from the connection", "in_bytes", 12201680)
NATS_CONNECTION_OUT_BYTES_TOTAL = _per_connection(
    "nats_connection_out_bytes_total", COUNTER,
    "Message bytes sent by the server to the connection", "out_bytes", 24403360)
NATS_CONNECTION_SERIES_OMITTED = Metric(
    "nats_connection_series_omitted", GAUGE,
    "Open connections left without per-connection series by --connz.per-connection-max",
    source="/connz aggregator", example=0)

CONNZ: tuple[Metric, ...] = (
    NATS_CLIENT_CONNECTIONS,
    NATS_CLIENT_SUBSCRIPTIONS,
    NATS_CLIENT_PENDING_BYTES,
    NATS_CLIENT_IN_MESSAGES_TOTAL,
    NATS_CLIENT_OUT_MESSAGES_TOTAL,
    NATS_CLIENT_IN_BYTES_TOTAL,
    NATS_CLIENT_OUT_BYTES_TOTAL,
    NATS_CLIENT_GROUPS,
    NATS_CLIENT_GROUP_OVERFLOW_TOTAL,
    NATS_CLIENT_GROUP_EVICTIONS_TOTAL,
    NATS_CLIENT_CONNECTIONS_LOST_TOTAL,
    NATS_CLIENT_CONNECTION_RTT_SECONDS,
    NATS_CLIENT_CONNECTION_PENDING_BYTES,
    NATS_CLIENT_CONNECTION_IDLE_SECONDS,
    NATS_CLIENT_CONNECTION_SUBSCRIPTIONS,
    NATS_CLIENT_TOP_PENDING_BYTES,
    NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND,
    NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND,
    NATS_CONNECTION_PENDING_BYTES,
    NATS_CONNECTION_SUBSCRIPTIONS,
    NATS_CONNECTION_RTT_SECONDS,
    NATS_CONNECTION_IN_MESSAGES_TOTAL,
    NATS_CONNECTION_OUT_MESSAGES_TOTAL,
    NATS_CONNECTION_IN_BYTES_TOTAL,
    NATS_CONNECTION_OUT_BYTES_TOTAL,
    NATS_CONNECTION_SERIES_OMITTED,
)

# Routes, per remote server of the cluster (/routez). Pooled route connections to one peer are
# summed, so there is one series per peer; counters include the final counts of the peer's
# route connections that closed, so they stay monotonic across reconnects.
PEER_LABELS = ("remote_name", "remote_id")
_ROUTE_SRC = "/routez, summed over the route connections to the peer"
NATS_ROUTE_CONNECTIONS = Metric(
    "nats_route_connections", GAUGE,
    "Route connections to the peer; 0 for a peer that was routed to and is not now (kept for "
    "--routez.peer-ttl)", PEER_LABELS,
    source="/routez: route connections to the peer, pooled (pool_size) and per-account ones",
    example=3)
NATS_ROUTE_RTT_SECONDS = Metric(
    "nats_route_rtt_seconds", GAUGE,
    "Round-trip time to the peer in seconds, the highest of its route connections; absent "
    "until one is measured", PEER_LABELS,
    source="/routez rtt, the highest over the peer's route connections; a route says 0s until "
           "its first round trip", example=0.00031)
NATS_ROUTE_PENDING_BYTES = Metric(
    "nats_route_pending_bytes", GAUGE, "Bytes queued for delivery to the peer", PEER_LABELS,
    source=_ROUTE_SRC + "; pending_size", example=0)
NATS_ROUTE_SUBSCRIPTIONS = Metric(
    "nats_route_subscriptions", GAUGE, "Subscriptions the peer's routes carry", PEER_LABELS,
    source=_ROUTE_SRC + "; subscriptions", example=412)
NATS_ROUTE_IN_MESSAGES_TOTAL = Metric(
    "nats_route_in_messages_total", COUNTER, "Messages received from the peer over routes",
    PEER_LABELS, source=_ROUTE_SRC + "; in_msgs", example=920133)
NATS_ROUTE_OUT_MESSAGES_TOTAL = Metric(
    "nats_route_out_messages_total", COUNTER, "Messages sent to the peer over routes",
    PEER_LABELS, source=_ROUTE_SRC + "; out_msgs", example=880412)
NATS_ROUTE_IN_BYTES_TOTAL = Metric(
    "nats_route_in_bytes_total", COUNTER, "Message bytes received from the peer over routes",
    PEER_LABELS, source=_ROUTE_SRC + "; in_bytes", example=73610640)
NATS_ROUTE_OUT_BYTES_TOTAL = Metric(
    "nats_route_out_bytes_total", COUNTER, "Message bytes sent to the peer over routes",
    PEER_LABELS, source=_ROUTE_SRC + "; out_bytes", example=70432960)
NATS_ROUTE_DISCONNECTS_TOTAL = Metric(
    "nats_route_disconnects_total", COUNTER,
    "Route connections to the peer that closed; the traffic each carried between the last "
    "refresh and its close is not counted (/routez lists no closed routes)", PEER_LABELS,
    source="/routez: rids seen at one refresh and gone at the next", example=0)
NATS_ROUTE_PEERS = Metric(
    "nats_route_peers", GAUGE, "Remote servers the server has at least one route to",
    source="/routez: distinct remote_id", example=2)
NATS_CLUSTER_SIZE = Metric(
    "nats_cluster_size", GAUGE,
    "Servers in the cluster as this server sees it: itself and the peers it is routed to; "
    "servers of one cluster that disagree show a partition", ("cluster",),
    source="/routez distinct remote_id + 1; cluster from /varz cluster.name", example=3)

ROUTEZ: tuple[Metric, ...] = (
    NATS_ROUTE_CONNECTIONS,
    NATS_ROUTE_RTT_SECONDS,
    NATS_ROUTE_PENDING_BYTES,
    NATS_ROUTE_SUBSCRIPTIONS,
    NATS_ROUTE_IN_MESSAGES_TOTAL,
    NATS_ROUTE_OUT_MESSAGES_TOTAL,
    NATS_ROUTE_IN_BYTES_TOTAL,
    NATS_ROUTE_OUT_BYTES_TOTAL,
    NATS_ROUTE_DISCONNECTS_TOTAL,
    NATS_ROUTE_PEERS,
    NATS_CLUSTER_SIZE,
)

# Gateways, per remote cluster and direction (/gatewayz); counters as for routes.
GATEWAY_LABELS = ("gateway", "direction")
_GATEWAY_SRC = "/gatewayz outbound_gateways and inbound_gateways, summed per gateway and direction"
NATS_GATEWAY_CONNECTIONS = Metric(
    "nats_gateway_connections", GAUGE,
    "Gateway connections to (outbound) or from (inbound) the remote cluster; 0 for one that "
    "was connected and is not now (kept for --gatewayz.peer-ttl)", GATEWAY_LABELS,
    source=_GATEWAY_SRC, example=1)
NATS_GATEWAY_RTT_SECONDS = Metric(
    "nats_gateway_rtt_seconds", GAUGE,
    "Round-trip time of the gateway in seconds, the highest of its connections; absent until "
    "one is measured", GATEWAY_LABELS,
    source=_GATEWAY_SRC + "; rtt (0s until a connection's first round trip)", example=0.0121)
NATS_GATEWAY_IN_MESSAGES_TOTAL = Metric(
    "nats_gateway_in_messages_total", COUNTER, "Messages received over the gateway",
    GATEWAY_LABELS, source=_GATEWAY_SRC + "; in_msgs", example=51022)
NATS_GATEWAY_OUT_MESSAGES_TOTAL = Metric(
    "nats_gateway_out_messages_total", COUNTER, "Messages sent over the gateway",
    GATEWAY_LABELS, source=_GATEWAY_SRC + "; out_msgs", example=48817)
NATS_GATEWAY_IN_BYTES_TOTAL = Metric(
    "nats_gateway_in_bytes_total", COUNTER, "Message bytes received over the gateway",
    GATEWAY_LABELS, source=_GATEWAY_SRC + "; in_bytes", example=4081760)
NATS_GATEWAY_OUT_BYTES_TOTAL = Metric(
    "nats_gateway_out_bytes_total", COUNTER, "Message bytes sent over the gateway",
    GATEWAY_LABELS, source=_GATEWAY_SRC + "; out_bytes", example=3905360)
NATS_GATEWAY_DISCONNECTS_TOTAL = Metric(
    "nats_gateway_disconnects_total", COUNTER,
    "Gateway connections that closed; the traffic each carried between the last refresh and "
    "its close is not counted (/gatewayz lists no closed gateways)", GATEWAY_LABELS,
    source="/gatewayz: cids seen at one refresh and gone at the next", example=0)
NATS_GATEWAY_CONFIGURED = Metric(
    "nats_gateway_configured", GAUGE,
    "1 for each remote gateway in the server's configuration, whether connected or not",
    ("gateway",),
    source="/gatewayz outbound_gateways with configured true, remembered until the server "
           "restarts (a gateway whose remote cluster is down is missing from /gatewayz), and "
           "/varz gateway.gateways once ServerInfo carries it",
    example=1)

GATEWAYZ: tuple[Metric, ...] = (
    NATS_GATEWAY_CONNECTIONS,
    NATS_GATEWAY_RTT_SECONDS,
    NATS_GATEWAY_IN_MESSAGES_TOTAL,
    NATS_GATEWAY_OUT_MESSAGES_TOTAL,
    NATS_GATEWAY_IN_BYTES_TOTAL,
    NATS_GATEWAY_OUT_BYTES_TOTAL,
    NATS_GATEWAY_DISCONNECTS_TOTAL,
    NATS_GATEWAY_CONFIGURED,
)

# Leafnodes, aggregated like clients (/leafz). The group labels depend on --leafz.group-by.
LEAF_GROUP_LABELS = "<leafz_group_by>"
#: The /leafz fields leafnodes may be grouped by.
LEAF_GROUP_BY_FIELDS = ("account", "name", "ip", "is_spoke")
DEFAULT_LEAF_GROUP_BY = ("account", "name")
_LEAF_SRC = ("/leafz of every leafnode connection, plus the final counters of closed ones from "
             "/connz state=closed; grouped by --leafz.group-by")
NATS_LEAFNODE_CONNECTIONS = Metric(
    "nats_leafnode_connections", GAUGE, "Open leafnode connections", (LEAF_GROUP_LABELS,),
    source="/leafz: leafnode connections in the group", example=40)
NATS_LEAFNODE_SUBSCRIPTIONS = Metric(
    "nats_leafnode_subscriptions", GAUGE, "Subscriptions held by the open leafnode connections",
    (LEAF_GROUP_LABELS,), source="/leafz subscriptions, summed over the group", example=320)
NATS_LEAFNODE_IN_MESSAGES_TOTAL = Metric(
    "nats_leafnode_in_messages_total", COUNTER,
    "Messages received by the server from the leafnodes, closed connections included",
    (LEAF_GROUP_LABELS,), source=_LEAF_SRC + "; in_msgs", example=120553)
NATS_LEAFNODE_OUT_MESSAGES_TOTAL = Metric(
    "nats_leafnode_out_messages_total", COUNTER,
    "Messages sent by the server to the leafnodes, closed connections included",
    (LEAF_GROUP_LABELS,), source=_LEAF_SRC + "; out_msgs", example=240110)
NATS_LEAFNODE_IN_BYTES_TOTAL = Metric(
    "nats_leafnode_in_bytes_total", COUNTER,
    "Message bytes received by the server from the leafnodes, closed connections included",
    (LEAF_GROUP_LABELS,), source=_LEAF_SRC + "; in_bytes", example=9644240)
NATS_LEAFNODE_OUT_BYTES_TOTAL = Metric(
    "nats_leafnode_out_bytes_total", COUNTER,
    "Message bytes sent by the server to the leafnodes, closed connections included",
    (LEAF_GROUP_LABELS,), source=_LEAF_SRC + "; out_bytes", example=19208800)
NATS_LEAFNODE_CLOSED_TOTAL = Metric(
    "nats_leafnode_connections_closed_total", COUNTER,
    "Leafnode connections of the group that closed", (LEAF_GROUP_LABELS,),
    source="/leafz: ids seen at one refresh and gone at the next", example=2)
NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL = Metric(
    "nats_leafnode_connections_lost_total", COUNTER,
    "Closed leafnode connections whose final counters the exporter could not read (nats-server "
    "dropped them from its list of closed connections first); counted with the counters last "
    "seen", (LEAF_GROUP_LABELS,),
    source="/leafz ids gone, and missing from /connz state=closed", example=0)
NATS_LEAFNODE_GROUPS = Metric(
    "nats_leafnode_groups", GAUGE,
    "Leafnode groups tracked, the _other group excluded; at most --leafz.max-groups",
    source="/leafz aggregator", example=12)
NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL = Metric(
    "nats_leafnode_group_overflow_total", COUNTER,
    "Leafnode connections counted in the _other group because --leafz.max-groups groups "
    "already existed", source="/leafz aggregator", example=0)
NATS_LEAFNODE_CONNECTION_RTT_SECONDS = Metric(
    "nats_leafnode_connection_rtt_seconds", DISTRIBUTION,
    "Open leafnode connections by round-trip time in seconds", buckets=CONNZ_RTT_LE,
    source="/leafz rtt of every leafnode connection, as a gauge histogram",
    example=(tuple(0 if k < len(CONNZ_RTT_LE) // 2 else 40 for k in range(len(CONNZ_RTT_LE))),
             0.52))
NATS_LEAFNODE_TOP_RTT_SECONDS = Metric(
    "nats_leafnode_top_rtt_seconds", GAUGE,
    "Round-trip time of the --leafz.top-k leafnode connections with the highest",
    CONNECTION_LABELS, source="/leafz rtt; cid is the leafnode's id", example=0.084)
NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND = Metric(
    "nats_leafnode_top_in_messages_per_second", GAUGE,
    "Messages per second received from the --leafz.top-k busiest leafnode connections, "
    "between the last two refreshes", CONNECTION_LABELS,
    source="/leafz in_msgs of one refresh minus the previous, over the time between them",
    example=120.5)
NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND = Metric(
    "nats_leafnode_top_out_messages_per_second", GAUGE,
    "Messages per second sent to the --leafz.top-k busiest leafnode connections, between the "
    "last two refreshes", CONNECTION_LABELS,
    source="/leafz out_msgs of one refresh minus the previous, over the time between them",
    example=240.0)

LEAFZ: tuple[Metric, ...] = (
    NATS_LEAFNODE_CONNECTIONS,
    NATS_LEAFNODE_SUBSCRIPTIONS,
    NATS_LEAFNODE_IN_MESSAGES_TOTAL,
    NATS_LEAFNODE_OUT_MESSAGES_TOTAL,
    NATS_LEAFNODE_IN_BYTES_TOTAL,
    NATS_LEAFNODE_OUT_BYTES_TOTAL,
    NATS_LEAFNODE_CLOSED_TOTAL,
    NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL,
    NATS_LEAFNODE_GROUPS,
    NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL,
    NATS_LEAFNODE_CONNECTION_RTT_SECONDS,
    NATS_LEAFNODE_TOP_RTT_SECONDS,
    NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND,
    NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND,
)

# Health (/healthz).
NATS_SERVER_HEALTHY = Metric(
    "nats_server_healthy", GAUGE, "1 if the server's /healthz reports ok, else 0",
    source="/healthz status (?details=true unless --no-healthz.details); a 503 with a JSON "
           "body is an unhealthy server, not a failed read", example=1)
NATS_SERVER_JETSTREAM_HEALTHY = Metric(
    "nats_server_jetstream_healthy", GAUGE,
    "1 if the server's JetStream-only health check reports ok, else 0; one series per check "
    "asked for by --healthz.jetstream", ("check",),
    source="/healthz?js-enabled-only=true (check enabled-only) and ?js-server-only=true "
           "(check server-only); a server without JetStream passes both", example=1)
NATS_SERVER_HEALTH_FAILURES = Metric(
    "nats_server_health_failures", GAUGE,
    "Failing health checks, by the kind of check (CONNECTION, BAD_REQUEST, JETSTREAM, ACCOUNT, "
    "STREAM, CONSUMER; any other type is summed into _other); kinds that pass have no series",
    ("type",), source="/healthz?details=true errors, counted by type", example=1)

HEALTHZ: tuple[Metric, ...] = (
    NATS_SERVER_HEALTHY,
    NATS_SERVER_JETSTREAM_HEALTHY,
    NATS_SERVER_HEALTH_FAILURES,
)

# Accounts (/accstatz?unused=true: every account the server holds, connected or not), capped by
# --accstatz.max-accounts with an _other bucket. The label is the account's unique name (`acc`,
# a public key in operator mode). _other's counters add what its members counted while they were
# members, so accounts moving in or out never make them fall.
ACCOUNT_LABELS = ("account",)
_ACCOUNT_SRC = "/accstatz?unused=true account_statz"
NATS_ACCOUNT_CONNECTIONS = Metric(
    "nats_account_connections", GAUGE, "Client connections of the account", ACCOUNT_LABELS,
    source=_ACCOUNT_SRC + " conns", example=120)
NATS_ACCOUNT_LEAFNODES = Metric(
    "nats_account_leafnodes", GAUGE, "Leafnode connections of the account", ACCOUNT_LABELS,
    source=_ACCOUNT_SRC + " leafnodes", example=4)
NATS_ACCOUNT_SUBSCRIPTIONS = Metric(
    "nats_account_subscriptions", GAUGE, "Subscriptions of the account", ACCOUNT_LABELS,
    source=_ACCOUNT_SRC + " num_subscriptions", example=530)
NATS_ACCOUNT_SENT_MESSAGES_TOTAL = Metric(
    "nats_account_sent_messages_total", COUNTER, "Messages the server sent to the account",
    ACCOUNT_LABELS, source=_ACCOUNT_SRC + " sent.msgs", example=2204410)
NATS_ACCOUNT_SENT_BYTES_TOTAL = Metric(
    "nats_account_sent_bytes_total", COUNTER, "Message bytes the server sent to the account",
    ACCOUNT_LABELS, source=_ACCOUNT_SRC + " sent.bytes", example=176352800)
NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL = Metric(
    "nats_account_received_messages_total", COUNTER,
    "Messages the server received from the account", ACCOUNT_LABELS,
    source=_ACCOUNT_SRC + " received.msgs", example=1102205)
NATS_ACCOUNT_RECEIVED_BYTES_TOTAL = Metric(
    "nats_account_received_bytes_total", COUNTER,
    "Message bytes the server received from the account", ACCOUNT_LABELS,
    source=_ACCOUNT_SRC + " received.bytes", example=88176400)
NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL = Metric(
    "nats_account_slow_consumers_total", COUNTER, "Slow consumers detected in the account",
    ACCOUNT_LABELS, source=_ACCOUNT_SRC + " slow_consumers", example=0)
NATS_ACCOUNTS = Metric(
    "nats_accounts", GAUGE,
    "Accounts the server reported, connected or not, exported on their own or not",
    source="/accstatz?unused=true account_statz count", example=42)
NATS_ACCOUNT_OVERFLOW = Metric(
    "nats_account_overflow", GAUGE,
    "Accounts summed in the account labelled _other because --accstatz.max-accounts were "
    "already exported", source="accounts of /accstatz account_statz summed into _other",
    example=0)
NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND = Metric(
    "nats_account_top_sent_messages_per_second", GAUGE,
    "Messages per second sent to the --accstatz.top-k busiest accounts, between the last two "
    "refreshes, whether exported on their own or not", ACCOUNT_LABELS,
    source="/accstatz sent.msgs of one refresh minus the previous, over the time between the "
           "two listings (their `now`)",
    example=310.5)
NATS_ACCOUNT_TOP_RECEIVED_MESSAGES_PER_SECOND = Metric(
    "nats_account_top_received_messages_per_second", GAUGE,
    "Messages per second received from the --accstatz.top-k busiest accounts, between the last "
    "two refreshes, whether exported on their own or not", ACCOUNT_LABELS,
    source="/accstatz received.msgs of one refresh minus the previous, over the time between "
           "the two listings (their `now`)", example=155.0)

ACCSTATZ: tuple[Metric, ...] = (
    NATS_ACCOUNT_CONNECTIONS,
    NATS_ACCOUNT_LEAFNODES,
    NATS_ACCOUNT_SUBSCRIPTIONS,
    NATS_ACCOUNT_SENT_MESSAGES_TOTAL,
    NATS_ACCOUNT_SENT_BYTES_TOTAL,
    NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL,
    NATS_ACCOUNT_RECEIVED_BYTES_TOTAL,
    NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL,
    NATS_ACCOUNTS,
    NATS_ACCOUNT_OVERFLOW,
    NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND,
    NATS_ACCOUNT_TOP_RECEIVED_MESSAGES_PER_SECOND,
)

# The subscription list (/subsz); its size is nats_server_subscriptions, from /varz.
NATS_SUBLIST_CACHE_ENTRIES = Metric(
    "nats_sublist_cache_entries", GAUGE, "Subjects in the subscription list's match cache",
    source="/subsz num_cache", example=512)
NATS_SUBLIST_CACHE_HIT_RATIO = Metric(
    "nats_sublist_cache_hit_ratio", GAUGE, "Share of matches answered from the cache, 0 to 1",
    source="/subsz cache_hit_rate (at most 1)", example=0.93)
NATS_SUBLIST_INSERTS_TOTAL = Metric(
    "nats_sublist_inserts_total", COUNTER, "Subscriptions inserted into the subscription list",
    source="/subsz num_inserts", example=20417)
NATS_SUBLIST_REMOVES_TOTAL = Metric(
    "nats_sublist_removes_total", COUNTER, "Subscriptions removed from the subscription list",
    source="/subsz num_removes", example=18587)
NATS_SUBLIST_MATCHES_TOTAL = Metric(
    "nats_sublist_matches_total", COUNTER, "Subject lookups in the subscription list",
    source="/subsz num_matches", example=4410233)
NATS_SUBLIST_FANOUT_AVERAGE = Metric(
    "nats_sublist_fanout_average", GAUGE, "Average subscriptions a cached subject matches",
    source="/subsz avg_fanout", example=1.4)
NATS_SUBLIST_FANOUT_MAX = Metric(
    "nats_sublist_fanout_max", GAUGE, "Most subscriptions a cached subject matches",
    source="/subsz max_fanout", example=12)

SUBSZ: tuple[Metric, ...] = (
    NATS_SUBLIST_CACHE_ENTRIES,
    NATS_SUBLIST_CACHE_HIT_RATIO,
    NATS_SUBLIST_INSERTS_TOTAL,
    NATS_SUBLIST_REMOVES_TOTAL,
    NATS_SUBLIST_MATCHES_TOTAL,
    NATS_SUBLIST_FANOUT_AVERAGE,
    NATS_SUBLIST_FANOUT_MAX,
)

# JetStream (/jsz). What /varz already carries (storage and memory used, reserved and
# configured, API totals and errors) is in the VARZ families; these add the rest. Every stream
# is exported once, by its leader, and every consumer by its leader; durable consumers get their
# own series under a cap, ephemeral ones are aggregated per stream.
#
# The stream and consumer labels depend on --jsz.stream-meta-keys, --jsz.consumer-meta-keys
# and --jsz.replicas: the markers below expand to them (``JszCollector.label_names``): the base
# labels, then ``meta_<key>`` per metadata key; --jsz.replicas appends ``replica_role`` to the
# stream state and limit families (``jsz.ROLE_FAMILIES``) only.
STREAM_LABELS = "<jsz_stream>"
CONSUMER_LABELS = "<jsz_consumer>"
#: The labels every stream series has, before the metadata keys.
STREAM_BASE_LABELS = ("account", "stream")
CONSUMER_BASE_LABELS = ("account", "stream", "consumer")
_JSZ = "/jsz"
NATS_JETSTREAM_STREAMS = Metric(
    "nats_jetstream_streams", GAUGE, "Streams the server holds (each replica counted)",
    source=_JSZ + " streams", example=120)
NATS_JETSTREAM_CONSUMERS = Metric(
    "nats_jetstream_consumers", GAUGE, "Consumers the server holds (each replica counted)",
    source=_JSZ + " consumers", example=2400)
NATS_JETSTREAM_MESSAGES = Metric(
    "nats_jetstream_messages", GAUGE, "Messages stored by the server's streams",
    source=_JSZ + " messages", example=18200310)
NATS_JETSTREAM_BYTES = Metric(
    "nats_jetstream_bytes", GAUGE, "Bytes stored by the server's streams",
    source=_JSZ + " bytes", example=7340032000)
NATS_JETSTREAM_ACCOUNTS = Metric(
    "nats_jetstream_accounts", GAUGE, "Accounts with JetStream enabled on the server",
    source=_JSZ + " accounts", example=12)
NATS_JETSTREAM_ACCOUNTS_UNREAD = Metric(
    "nats_jetstream_accounts_unread", GAUGE,
    "Accounts the server counted at the end of the last paged /jsz read that it did not list: "
    "accounts made or removed between its pages moved others past a page; their series are "
    "missing until the next read",
    source=_JSZ + "?accounts=true, total less the accounts the pages listed", example=0)
NATS_JETSTREAM_HA_ASSETS = Metric(
    "nats_jetstream_ha_assets", GAUGE, "Replicated (raft) assets the server takes part in",
    source=_JSZ + " ha_assets", example=61)
NATS_JETSTREAM_API_LEVEL = Metric(
    "nats_jetstream_api_level", GAUGE, "JetStream API level the server supports",
    source=_JSZ + " api.level", example=1)
NATS_JETSTREAM_META_LEADER = Metric(
    "nats_jetstream_meta_leader", GAUGE,
    "1 if the server is the leader of the JetStream meta group, else 0",
    source=_JSZ + " meta_cluster.leader equals the server's name", example=0)
NATS_JETSTREAM_META_LEADER_INFO = Metric(
    "nats_jetstream_meta_leader_info", GAUGE,
    "The meta group's leader as this server sees it; value 1, no series without a leader",
    ("leader",), source=_JSZ + " meta_cluster.leader", example=1)
NATS_JETSTREAM_META_CLUSTER_SIZE = Metric(
    "nats_jetstream_meta_cluster_size", GAUGE, "Servers the JetStream meta group expects",
    source=_JSZ + " meta_cluster.cluster_size", example=3)
NATS_JETSTREAM_META_PEERS = Metric(
    "nats_jetstream_meta_peers", GAUGE,
    "Peers of the meta group other than its leader, by state: current, lagging (not "
    "current, not offline) or offline; exported by the meta leader only (a follower does not "
    "know how the other followers are doing)", ("state",),
    source=_JSZ + " meta_cluster.replicas, on the meta leader", example=2)
NATS_JETSTREAM_META_PENDING = Metric(
    "nats_jetstream_meta_pending", GAUGE,
    "JetStream API requests queued on the server for the meta group (routed requests and "
    "info requests) and not yet processed",
    source=_JSZ + " meta_cluster.pending", example=0)
_META_PEER = _JSZ + " meta_cluster.replicas[], on the meta leader"
NATS_JETSTREAM_META_PEER_CURRENT = Metric(
    "nats_jetstream_meta_peer_current", GAUGE,
    "1 if the meta group peer is current with the leader, else 0; exported by the meta leader "
    "only, one series per peer other than itself", ("peer",),
    source=_META_PEER + "; current", example=1)
NATS_JETSTREAM_META_PEER_OFFLINE = Metric(
    "nats_jetstream_meta_peer_offline", GAUGE,
    "1 if the meta group peer is offline, else 0; exported by the meta leader only", ("peer",),
    source=_META_PEER + "; offline", example=0)
NATS_JETSTREAM_META_PEER_LAG = Metric(
    "nats_jetstream_meta_peer_lag", GAUGE,
    "Operations the meta group peer is behind the leader; exported by the meta leader only",
    ("peer",), source=_META_PEER + "; lag", example=0)
NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS = Metric(
    "nats_jetstream_meta_peer_last_seen_seconds", GAUGE,
    "Seconds since the meta leader last heard from the peer; exported by the meta leader only, "
    "no series for a peer it never heard from", ("peer",),
    source=_META_PEER + "; active (nanoseconds; 0 when never)", example=0.25)
_META_SNAPSHOT = _JSZ + " meta_cluster.snapshot"
NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES = Metric(
    "nats_jetstream_meta_snapshot_pending_entries", GAUGE,
    "Entries of the server's meta group log not yet compacted into a snapshot",
    source=_META_SNAPSHOT + ".pending_entries", example=12)
NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES = Metric(
    "nats_jetstream_meta_snapshot_pending_bytes", GAUGE,
    "Bytes of the server's meta group log not yet compacted into a snapshot",
    source=_META_SNAPSHOT + ".pending_size", example=4096)
NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS = Metric(
    "nats_jetstream_meta_snapshot_last_timestamp_seconds", GAUGE,
    "Unix time the server last took a meta group snapshot; no series before its first since "
    "it started", source=_META_SNAPSHOT + ".last_time", example=1767225600.5)
NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS = Metric(
    "nats_jetstream_meta_snapshot_last_duration_seconds", GAUGE,
    "How long the server's last meta group snapshot took; no series before its first since it "
    "started", source=_META_SNAPSHOT + ".last_duration (nanoseconds)", example=0.0031)

# /jsz has no storage tiers: an account's entry holds its usage over every tier and its
# untiered limits (reserved_memory, reserved_storage); tiered limits are not in /jsz.
_ACCOUNT = ("account",)
NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES = Metric(
    "nats_jetstream_account_memory_bytes", GAUGE,
    "Memory used by the account's streams over the cluster, every replica and tier counted, as "
    "the server last heard", _ACCOUNT,
    source=_JSZ + "?accounts=true, account_details[].memory", example=1048576)
NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES = Metric(
    "nats_jetstream_account_storage_bytes", GAUGE,
    "File storage used by the account's streams over the cluster, every replica and tier "
    "counted, as the server last heard", _ACCOUNT,
    source=_JSZ + "?accounts=true, account_details[].storage", example=73400320)
NATS_JETSTREAM_ACCOUNT_MAX_MEMORY_BYTES = Metric(
    "nats_jetstream_account_max_memory_bytes", GAUGE,
    "Memory the account may use (its untiered limit); no series when unlimited or when the "
    "account has tiered limits only", _ACCOUNT,
    source=_JSZ + "?accounts=true, account_details[].reserved_memory", example=1073741824)
NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES = Metric(
    "nats_jetstream_account_max_storage_bytes", GAUGE,
    "File storage the account may use (its untiered limit); no series when unlimited or when "
    "the account has tiered limits only", _ACCOUNT,
    source=_JSZ + "?accounts=true, account_details[].reserved_storage", example=10737418240)
NATS_JETSTREAM_ACCOUNT_STREAMS = Metric(
    "nats_jetstream_account_streams", GAUGE,
    "Streams of the account that the server leads (sum over servers: the account's streams); "
    "--jsz.level streams or consumers", _ACCOUNT,
    source=_JSZ + "?streams=true, the account's streams whose cluster.leader is the server",
    example=8)
NATS_JETSTREAM_ACCOUNT_CONSUMERS = Metric(
    "nats_jetstream_account_consumers", GAUGE,
    "Consumers on the leader replicas of the account's streams that the server leads "
    "(state.consumer_count: R1 ephemeral consumers on other servers are not counted); "
    "--jsz.level streams or consumers", _ACCOUNT,
    source=_JSZ + "?streams=true, state.consumer_count of the streams the server leads",
    example=40)

_STREAM = _JSZ + "?streams=true, exported by the stream's leader"
NATS_JETSTREAM_STREAM_MESSAGES = Metric(
    "nats_jetstream_stream_messages", GAUGE, "Messages in the stream", (STREAM_LABELS,),
    source=_STREAM + "; state.messages", example=1830255)
NATS_JETSTREAM_STREAM_BYTES = Metric(
    "nats_jetstream_stream_bytes", GAUGE, "Bytes in the stream", (STREAM_LABELS,),
    source=_STREAM + "; state.bytes", example=146420400)
NATS_JETSTREAM_STREAM_FIRST_SEQUENCE = Metric(
    "nats_jetstream_stream_first_sequence", GAUGE, "Sequence of the stream's first message",
    (STREAM_LABELS,), source=_STREAM + "; state.first_seq", example=12)
NATS_JETSTREAM_STREAM_LAST_SEQUENCE = Metric(
    "nats_jetstream_stream_last_sequence", GAUGE, "Sequence of the stream's last message",
    (STREAM_LABELS,), source=_STREAM + "; state.last_seq", example=1830266)
NATS_JETSTREAM_STREAM_DELETED_MESSAGES = Metric(
    "nats_jetstream_stream_deleted_messages", GAUGE,
    "Messages deleted inside the stream's sequence range (interior deletes)", (STREAM_LABELS,),
    source=_STREAM + "; state.num_deleted", example=0)
NATS_JETSTREAM_STREAM_SUBJECTS = Metric(
    "nats_jetstream_stream_subjects", GAUGE, "Distinct subjects in the stream",
    (STREAM_LABELS,), source=_STREAM + "; state.num_subjects", example=40)
NATS_JETSTREAM_STREAM_CONSUMERS = Metric(
    "nats_jetstream_stream_consumers", GAUGE,
    "Consumers of the stream on the leader's replica (an R1 ephemeral consumer placed on "
    "another server is not counted)", (STREAM_LABELS,),
    source=_STREAM + "; state.consumer_count", example=6)
NATS_JETSTREAM_STREAM_MAX_BYTES = Metric(
    "nats_jetstream_stream_max_bytes", GAUGE,
    "Configured byte limit of the stream; no series when unlimited", (STREAM_LABELS,),
    source=_STREAM + "; config.max_bytes", example=1073741824)
NATS_JETSTREAM_STREAM_MAX_MESSAGES = Metric(
    "nats_jetstream_stream_max_messages", GAUGE,
    "Configured message limit of the stream; no series when unlimited", (STREAM_LABELS,),
    source=_STREAM + "; config.max_msgs", example=10000000)
NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS = Metric(
    "nats_jetstream_stream_max_age_seconds", GAUGE,
    "Configured message age limit of the stream in seconds; no series when unlimited",
    (STREAM_LABELS,), source=_STREAM + "; config.max_age", example=86400)
SOURCE_LABELS = ("account", "stream", "source", "kind")
NATS_JETSTREAM_STREAM_SOURCE_LAG = Metric(
    "nats_jetstream_stream_source_lag", GAUGE,
    "Messages the stream's mirror (kind mirror) or source (kind source) is behind",
    SOURCE_LABELS, source=_STREAM + "; mirror.lag, sources[].lag", example=0)
NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS = Metric(
    "nats_jetstream_stream_source_last_seen_seconds", GAUGE,
    "Seconds since the mirror or source was last heard from", SOURCE_LABELS,
    source=_STREAM + "; mirror.active, sources[].active", example=0.4)
REPLICA_LABELS = ("account", "stream", "replica")
NATS_JETSTREAM_STREAM_REPLICA_CURRENT = Metric(
    "nats_jetstream_stream_replica_current", GAUGE,
    "1 if the stream's follower replica is current with its leader, else 0", REPLICA_LABELS,
    source=_STREAM + "; cluster.replicas[].current", example=1)
NATS_JETSTREAM_STREAM_REPLICA_OFFLINE = Metric(
    "nats_jetstream_stream_replica_offline", GAUGE,
    "1 if the stream's follower replica is offline, else 0", REPLICA_LABELS,
    source=_STREAM + "; cluster.replicas[].offline", example=0)
NATS_JETSTREAM_STREAM_REPLICA_LAG = Metric(
    "nats_jetstream_stream_replica_lag", GAUGE,
    "Operations the stream's follower replica is behind its leader", REPLICA_LABELS,
    source=_STREAM + "; cluster.replicas[].lag", example=0)

_CONSUMER = _JSZ + "?consumers=true, exported by the consumer's leader"
NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES = Metric(
    "nats_jetstream_consumer_pending_messages", GAUGE,
    "Messages of the stream the durable consumer has not yet been delivered",
    (CONSUMER_LABELS,), source=_CONSUMER + "; num_pending", example=120)
NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES = Metric(
    "nats_jetstream_consumer_ack_pending_messages", GAUGE,
    "Messages delivered to the durable consumer and not yet acknowledged", (CONSUMER_LABELS,),
    source=_CONSUMER + "; num_ack_pending", example=8)
NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES = Metric(
    "nats_jetstream_consumer_redelivered_messages", GAUGE,
    "Messages delivered more than once and not yet acknowledged", (CONSUMER_LABELS,),
    source=_CONSUMER + "; num_redelivered", example=0)
NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS = Metric(
    "nats_jetstream_consumer_waiting_requests", GAUGE,
    "Pull requests waiting on the durable consumer", (CONSUMER_LABELS,),
    source=_CONSUMER + "; num_waiting", example=1)
NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE = Metric(
    "nats_jetstream_consumer_delivered_consumer_sequence", GAUGE,
    "Consumer sequence of the last message delivered (grows while the consumer lives)",
    (CONSUMER_LABELS,), source=_CONSUMER + "; delivered.consumer_seq", example=1830200)
NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE = Metric(
    "nats_jetstream_consumer_delivered_stream_sequence", GAUGE,
    "Stream sequence of the last message delivered", (CONSUMER_LABELS,),
    source=_CONSUMER + "; delivered.stream_seq", example=1830240)
NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE = Metric(
    "nats_jetstream_consumer_ack_floor_consumer_sequence", GAUGE,
    "Consumer sequence below which every message is acknowledged", (CONSUMER_LABELS,),
    source=_CONSUMER + "; ack_floor.consumer_seq", example=1830190)
NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE = Metric(
    "nats_jetstream_consumer_ack_floor_stream_sequence", GAUGE,
    "Stream sequence below which every message is acknowledged", (CONSUMER_LABELS,),
    source=_CONSUMER + "; ack_floor.stream_seq", example=1830230)
NATS_JETSTREAM_CONSUMER_OVERFLOW = Metric(
    "nats_jetstream_consumer_overflow", GAUGE,
    "Durable consumers summed into the consumer labelled _other because "
    "--jsz.max-consumers were already exported", source=_CONSUMER, example=0)
NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS = Metric(
    "nats_jetstream_stream_ephemeral_consumers", GAUGE,
    "Ephemeral consumers of the stream that the server leads (aggregated, never one series "
    "each); a series on each server leading at least one", (STREAM_LABELS,),
    source=_CONSUMER + "; consumers without config.durable_name", example=200)
NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES = Metric(
    "nats_jetstream_stream_ephemeral_pending_messages", GAUGE,
    "Pending messages over the stream's ephemeral consumers: their sum (stat sum) and the "
    "highest of one (stat max)", (STREAM_LABELS, "stat"),
    source=_CONSUMER + "; num_pending of the ephemeral consumers", example=40)
NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES = Metric(
    "nats_jetstream_stream_ephemeral_ack_pending_messages", GAUGE,
    "Unacknowledged messages over the stream's ephemeral consumers: their sum (stat sum) and "
    "the highest of one (stat max)", (STREAM_LABELS, "stat"),
    source=_CONSUMER + "; num_ack_pending of the ephemeral consumers", example=4)
NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES = Metric(
    "nats_jetstream_consumer_top_pending_messages", GAUGE,
    "Pending messages of the --jsz.top-k consumers with the most, durable or ephemeral",
    ("account", "stream", "consumer", "durable"),
    source=_CONSUMER + "; num_pending; consumers with none are left out", example=5200)

JSZ: tuple[Metric, ...] = (
    NATS_JETSTREAM_STREAMS,
    NATS_JETSTREAM_CONSUMERS,
    NATS_JETSTREAM_MESSAGES,
    NATS_JETSTREAM_BYTES,
    NATS_JETSTREAM_ACCOUNTS,
    NATS_JETSTREAM_ACCOUNTS_UNREAD,
    NATS_JETSTREAM_HA_ASSETS,
    NATS_JETSTREAM_API_LEVEL,
    NATS_JETSTREAM_META_LEADER,
    NATS_JETSTREAM_META_LEADER_INFO,
    NATS_JETSTREAM_META_CLUSTER_SIZE,
    NATS_JETSTREAM_META_PEERS,
    NATS_JETSTREAM_META_PENDING,
    NATS_JETSTREAM_META_PEER_CURRENT,
    NATS_JETSTREAM_META_PEER_OFFLINE,
    NATS_JETSTREAM_META_PEER_LAG,
    NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS,
    NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES,
    NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES,
    NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS,
    NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS,
    NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES,
    NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES,
    NATS_JETSTREAM_ACCOUNT_MAX_MEMORY_BYTES,
    NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES,
    NATS_JETSTREAM_ACCOUNT_STREAMS,
    NATS_JETSTREAM_ACCOUNT_CONSUMERS,
    NATS_JETSTREAM_STREAM_MESSAGES,
    NATS_JETSTREAM_STREAM_BYTES,
    NATS_JETSTREAM_STREAM_FIRST_SEQUENCE,
    NATS_JETSTREAM_STREAM_LAST_SEQUENCE,
    NATS_JETSTREAM_STREAM_DELETED_MESSAGES,
    NATS_JETSTREAM_STREAM_SUBJECTS,
    NATS_JETSTREAM_STREAM_CONSUMERS,
    NATS_JETSTREAM_STREAM_MAX_BYTES,
    NATS_JETSTREAM_STREAM_MAX_MESSAGES,
    NATS_JETSTREAM_STREAM_MAX_AGE_SECONDS,
    NATS_JETSTREAM_STREAM_SOURCE_LAG,
    NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS,
    NATS_JETSTREAM_STREAM_REPLICA_CURRENT,
    NATS_JETSTREAM_STREAM_REPLICA_OFFLINE,
    NATS_JETSTREAM_STREAM_REPLICA_LAG,
    NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES,
    NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES,
    NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES,
    NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS,
    NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE,
    NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE,
    NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE,
    NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE,
    NATS_JETSTREAM_CONSUMER_OVERFLOW,
    NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS,
    NATS_JETSTREAM_STREAM_EPHEMERAL_PENDING_MESSAGES,
    NATS_JETSTREAM_STREAM_EPHEMERAL_ACK_PENDING_MESSAGES,
    NATS_JETSTREAM_CONSUMER_TOP_PENDING_MESSAGES,
)

# The JetStream meta group's raft log on each server (/raftz?group=_meta_). Gauges, not
# counters: an index is a place in the log, not a count of events. It falls back when the server
# restarts (applied starts again from the last snapshot) or when a follower truncates entries the
# leader never committed, and rate() would take that small fall for a reset and count the whole
# index again. Read differences: committed - applied (not yet applied), last - committed.
_RAFTZ = "/raftz?group=_meta_, the system account's _meta_ group"
NATS_JETSTREAM_META_APPLIED_INDEX = Metric(
    "nats_jetstream_meta_applied_index", GAUGE,
    "Index of the last meta group log entry the server applied",
    source=_RAFTZ + ": applied", example=1420)
NATS_JETSTREAM_META_COMMITTED_INDEX = Metric(
    "nats_jetstream_meta_committed_index", GAUGE,
    "Index of the last meta group log entry the server knows to be committed",
    source=_RAFTZ + ": committed", example=1422)
NATS_JETSTREAM_META_LAST_INDEX = Metric(
    "nats_jetstream_meta_last_index", GAUGE,
    "Index of the last entry in the server's meta group log, committed or not",
    source=_RAFTZ + ": pindex", example=1423)

RAFTZ: tuple[Metric, ...] = (
    NATS_JETSTREAM_META_APPLIED_INDEX,
    NATS_JETSTREAM_META_COMMITTED_INDEX,
    NATS_JETSTREAM_META_LAST_INDEX,
)

#: Each label marker a catalogue entry may hold, with the flag that sets it and the labels it
#: stands for by default; the collector that owns the family expands it (``label_names``).
LABEL_MARKERS: dict[str, tuple[str, tuple[str, ...]]] = {
    GROUP_LABELS: ("--connz.group-by", DEFAULT_GROUP_BY),
    LEAF_GROUP_LABELS: ("--leafz.group-by", DEFAULT_LEAF_GROUP_BY),
    STREAM_LABELS: ("--jsz.stream-meta-keys", STREAM_BASE_LABELS),
    CONSUMER_LABELS: ("--jsz.consumer-meta-keys", CONSUMER_BASE_LABELS),
}

# Wire bytes per listener from kernel socket counters.
_WIRE_SOURCE = ("kernel socket counters (NETLINK_SOCK_DIAG tcp_info) of the connections accepted "
                "on the listener's port")
NATS_WIRE_SENT_BYTES_TOTAL = Metric(
    "nats_wire_sent_bytes_total", COUNTER,
    "Bytes the server sent and the peer acknowledged on the listener's connections, protocol "
    "overhead included", ("listener",), source=_WIRE_SOURCE + ", tcp_info bytes_acked",
    example=918273645)
NATS_WIRE_RECEIVED_BYTES_TOTAL = Metric(
    "nats_wire_received_bytes_total", COUNTER,
    "Bytes the server received on the listener's connections, protocol overhead included",
    ("listener",), source=_WIRE_SOURCE + ", tcp_info bytes_received", example=512384096)
NATS_WIRE_CONNECTIONS = Metric(
    "nats_wire_connections", GAUGE,
    "Open TCP connections accepted on the listener, as the kernel saw them at the last poll",
    ("listener",), source=_WIRE_SOURCE, example=1534)
NATS_WIRE_MODE_INFO = Metric(
    "nats_wire_mode_info", GAUGE,
    "How closed connections are counted: destroy_events (exact final counts) or poll (counts "
    "up to the last poll before the close); off while the counter does not run for the server "
    "(no nats_server_total_bytes_*; the log says why); value 1",
    ("mode",), source="destroy_events when the kernel lets the exporter subscribe to the "
                      "sock_diag destroy multicast groups, else poll; off when the server's "
                      "listening sockets are not visible here (tried again, with backoff, while "
                      "they may yet appear) or the server is not on this host")

WIRE: tuple[Metric, ...] = (
    NATS_WIRE_SENT_BYTES_TOTAL,
    NATS_WIRE_RECEIVED_BYTES_TOTAL,
    NATS_WIRE_CONNECTIONS,
    NATS_WIRE_MODE_INFO,
)

# The exporter's own health.
FASTNATS_BUILD_INFO = Metric(
    "fastnats_build_info", GAUGE,
    "fastnats version and the implementation of its core (cython or reference); value 1",
    ("version", "implementation"), per_server=False, source="the running exporter")
FASTNATS_COLLECTOR_SUCCESS = Metric(
    "fastnats_collector_success", GAUGE,
    "1 if the collector's last read of its endpoint succeeded, 0 if it failed; after "
    "3 failures in a row the collector's series are dropped", ("collector",),
    source="refresher, per collector (like node_exporter's node_scrape_collector_success)")
FASTNATS_REFRESH_DURATION_SECONDS = Metric(
    "fastnats_refresh_duration_seconds", GAUGE,
    "Wall time of the last refresh of the server's metrics, fetch and parse included",
    source="refresher", example=0.0421)
FASTNATS_REFRESHES_TOTAL = Metric(
    "fastnats_refreshes_total", COUNTER, "Refreshes attempted for the server", source="refresher",
    example=17280)
# Not ``fastnats_refresh_duration_seconds_total``: parsers that drop a counter's ``_total``
# would take it for the gauge above.
FASTNATS_REFRESH_SECONDS_TOTAL = Metric(
    "fastnats_refresh_seconds_total", COUNTER,
    "Wall time of every refresh of the server's metrics, summed; divided by "
    "fastnats_refreshes_total, the mean refresh time", source="refresher", example=727.5)
FASTNATS_REFRESH_ERRORS_TOTAL = Metric(
    "fastnats_refresh_errors_total", COUNTER,
    "Failed reads of a monitoring endpoint, by endpoint and reason",
    ("endpoint", "reason"), source="refresher", example=2)
FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS = Metric(
    "fastnats_last_refresh_success_timestamp_seconds", GAUGE,
    "Unix time of the last refresh that read the server successfully", source="refresher",
    example=1767225600.25)

SELF = (
    FASTNATS_BUILD_INFO,
    FASTNATS_COLLECTOR_SUCCESS,
    FASTNATS_REFRESH_DURATION_SECONDS,
    FASTNATS_REFRESHES_TOTAL,
    FASTNATS_REFRESH_SECONDS_TOTAL,
    FASTNATS_REFRESH_ERRORS_TOTAL,
    FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS,
)

# The exporter's web server, with --web.config.file.
FASTNATS_HTTP_REFUSED_TOTAL = Metric(
    "fastnats_http_refused_total", COUNTER,
    "Requests and connections the exporter's web server turned away, by reason: unauthorized "
    "(401), rate_limited (429), tls_handshake (closed before its TLS handshake finished; not "
    "a TCP probe that sends nothing), plain_http (plain HTTP sent to the TLS port), "
    "client_certificate (not in client_allowed_sans), busy (401 without a password check: "
    "too many checks were waiting)", ("reason",), per_server=False,
    source="the web server (only with --web.config.file)", example=3)

WEB = (FASTNATS_HTTP_REFUSED_TOTAL,)

# Fleet mode (--nats.url): the servers the system account discovers, and its connection.
FLEET_SCOPES = ("shard", "all")
NATS_FLEET_SERVERS_EXPECTED = Metric(
    "nats_fleet_servers_expected", GAUGE,
    "Servers the whole fleet should have, as configured; compare with "
    "sum(nats_fleet_servers_responding) over the shards", per_server=False,
    source="--fleet.expected-servers (only with the flag)", example=4)
NATS_FLEET_SERVERS_DISCOVERED = Metric(
    "nats_fleet_servers_discovered", GAUGE,
    "Servers that answered the last discovery ping, in this exporter's shard (scope=shard) and "
    "in the whole fleet (scope=all)", ("scope",), per_server=False,
    source="replies to $SYS.REQ.SERVER.PING.STATSZ; a shard keeps the servers whose name "
           "hashes to it (--fleet.shard)", example=4)
NATS_FLEET_SERVERS_RESPONDING = Metric(
    "nats_fleet_servers_responding", GAUGE,
    "Servers of this exporter's shard that were read at the last refresh (nats_up 1)",
    per_server=False, source="the fleet's last refresh", example=4)
FASTNATS_NATS_CONNECTION_EVENTS_TOTAL = Metric(
    "fastnats_nats_connection_events_total", COUNTER,
    "Events of the exporter's connection to the system account: disconnected, reconnected, "
    "error (an asynchronous error, or an attempt to reconnect that failed)", ("event",),
    per_server=False, source="the NATS client's callbacks", example=1)

NATS_FLEET_SERVER_RTT_SECONDS = Metric(
    "nats_fleet_server_rtt_seconds", GAUGE,
    "Seconds from the exporter's discovery ping to the server's reply at the last refresh; no "
    "series when no reply had come by the time the server was read",
    source="the arrival of the server's reply to $SYS.REQ.SERVER.PING.STATSZ, on the "
           "exporter's clock", example=0.0012)

FLEET = (
    NATS_FLEET_SERVERS_EXPECTED,
    NATS_FLEET_SERVERS_DISCOVERED,
    NATS_FLEET_SERVERS_RESPONDING,
    FASTNATS_NATS_CONNECTION_EVENTS_TOTAL,
    NATS_FLEET_SERVER_RTT_SECONDS,
)

#: Every family, in the order the exposition lists them.
CATALOGUE: tuple[Metric, ...] = (SEED + HEALTH + VARZ + CONNZ + ROUTEZ + GATEWAYZ + LEAFZ
                                + HEALTHZ + ACCSTATZ + SUBSZ + JSZ + RAFTZ + WIRE + SELF + WEB
                                + FLEET)

BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate metric name in the catalogue"

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def is_label_name(name: str) -> bool:
    """Whether ``name`` is a label name of the text format 0.0.4 that Prometheus accepts:
    ``[a-zA-Z_][a-zA-Z0-9_]*``, not starting with ``__`` (reserved for Prometheus' own)."""
    return _LABEL_NAME.fullmatch(name) is not None and not name.startswith("__")


def check_label_names(catalogue: Iterable[Metric]) -> None:
    """Raise ValueError unless every label name the catalogue can put on a series is valid:
    each family's labels, with a marker of ``LABEL_MARKERS`` standing for any of the fields its
    flag may choose, none twice, and no ``le`` on a distribution (its writer adds one). The
    names that flags derive from user text are checked where the flags are parsed."""
    choices = {GROUP_LABELS: GROUP_BY_FIELDS, LEAF_GROUP_LABELS: LEAF_GROUP_BY_FIELDS}
    for metric in catalogue:
        names: list[str] = []
        for label in metric.labels:
            if label in LABEL_MARKERS:
                names += choices.get(label, LABEL_MARKERS[label][1])
            else:
                names.append(label)
        bad = [name for name in names if not is_label_name(name)]
        if metric.type == DISTRIBUTION and "le" in names:
            bad.append("le")
        if bad or len(set(names)) != len(names):
            raise ValueError(f"{metric.name}: invalid or repeated label names {names!r}")


# At import, so that a catalogue edit cannot ship a name the text format refuses.
check_label_names(CATALOGUE)
