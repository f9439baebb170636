"""The metric catalogue: every family fastnats can expose, with its type, help text and labels.

The text writer, ``describe()``, the docs and the tests all read this module; a metric that is not
listed here does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

GAUGE = "gauge"
COUNTER = "counter"


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


# The thirteen seed metrics; names, help texts and types are byte-exact with
# shared/SEED-METRICS.txt and must never change.
NATS_SERVER_VERSION = Metric(
    "nats_server_version", GAUGE, "NATS server version", ("version",),
    source="/varz version, as label `version`; value 1")
NATS_SERVER_UPTIME_SECONDS = Metric(
    "nats_server_uptime_seconds", GAUGE, "Uptime of the NATS server in seconds",
    source="/varz now - start, in seconds")
NATS_SERVER_CLIENTS = Metric(
    "nats_server_clients", GAUGE, "The number of connected clients", varz="connections",
    source="/varz connections")
NATS_SERVER_TOTAL_CONNECTIONS = Metric(
    "nats_server_total_connections", COUNTER, "The total number of connections accepted",
    varz="total_connections", source="/varz total_connections")
NATS_SERVER_TOTAL_BYTES_SENT = Metric(
    "nats_server_total_bytes_sent", COUNTER, "The total number of bytes sent by the server",
    source="kernel socket counters (tcp_info bytes_acked) over the server's NATS listeners; "
           "protocol overhead included")
NATS_SERVER_TOTAL_BYTES_RECEIVED = Metric(
    "nats_server_total_bytes_received", COUNTER,
    "The total number of bytes received by the server",
    source="kernel socket counters (tcp_info bytes_received) over the server's NATS listeners; "
           "protocol overhead included")
NATS_SERVER_TOTAL_MESSAGES_SENT = Metric(
    "nats_server_total_messages_sent", COUNTER, "The total number of messages sent by the server",
    varz="out_msgs", source="/varz out_msgs")
NATS_SERVER_TOTAL_MESSAGES_RECEIVED = Metric(
    "nats_server_total_messages_received", COUNTER,
    "The total number of messages received by the server", varz="in_msgs", source="/varz in_msgs")
NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT = Metric(
    "nats_server_total_payload_bytes_sent", COUNTER,
    "The total number of payload bytes sent by the server", varz="out_bytes",
    source="/varz out_bytes (message headers + payload)")
NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED = Metric(
    "nats_server_total_payload_bytes_received", COUNTER,
    "The total number of payload bytes received by the server", varz="in_bytes",
    source="/varz in_bytes (message headers + payload)")
NATS_SERVER_SLOW_CONSUMERS = Metric(
    "nats_server_slow_consumers", COUNTER, "The number of slow consumers detected",
    varz="slow_consumers", source="/varz slow_consumers")
NATS_SERVER_MEMORY_BYTES = Metric(
    "nats_server_memory_bytes", GAUGE, "Current memory usage in bytes", varz="mem",
    source="/varz mem")
NATS_SERVER_CPU_CORES = Metric(
    "nats_server_cpu_cores", GAUGE, "The number of CPU cores available to the NATS server process",
    varz="cores", source="/varz cores")

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
    ("server_name", "server_id", "version", "cluster"),
    source="/varz server_name, server_id, version, cluster.name")

HEALTH = (NATS_UP, NATS_SERVER_INFO)

# Per-client aggregates, distributions and top-K from /connz (see the connz section of docs).
CONNZ: tuple[Metric, ...] = ()

# Wire bytes per listener from kernel socket counters.
WIRE: tuple[Metric, ...] = ()

# The exporter's own health.
FASTNATS_BUILD_INFO = Metric(
    "fastnats_build_info", GAUGE,
    "fastnats version and the implementation of its core (cython or reference); value 1",
    ("version", "implementation"), per_server=False, source="the running exporter")
FASTNATS_REFRESH_DURATION_SECONDS = Metric(
    "fastnats_refresh_duration_seconds", GAUGE,
    "Wall time of the last refresh of the server's metrics, fetch and parse included",
    source="refresher")
FASTNATS_REFRESHES_TOTAL = Metric(
    "fastnats_refreshes_total", COUNTER, "Refreshes attempted for the server", source="refresher")
FASTNATS_REFRESH_ERRORS_TOTAL = Metric(
    "fastnats_refresh_errors_total", COUNTER,
    "Failed reads of a monitoring endpoint, by endpoint and reason",
    ("endpoint", "reason"), source="refresher")
FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS = Metric(
    "fastnats_last_refresh_success_timestamp_seconds", GAUGE,
    "Unix time of the last refresh that read the server successfully", source="refresher")

SELF = (
    FASTNATS_BUILD_INFO,
    FASTNATS_REFRESH_DURATION_SECONDS,
    FASTNATS_REFRESHES_TOTAL,
    FASTNATS_REFRESH_ERRORS_TOTAL,
    FASTNATS_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS,
)

#: Every family, in the order the exposition lists them.
CATALOGUE: tuple[Metric, ...] = SEED + HEALTH + CONNZ + WIRE + SELF

BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate metric name in the catalogue"
