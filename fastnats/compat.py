"""``--compat=prometheus-nats-exporter``: the official exporter's family names and labels, next to
the native families, so that its published Grafana dashboards work unchanged.

The compat families are built at render time from the same per-server samples as the native
families (``NatsCollector.families()`` appends them after the native ones); nothing here reads a
monitoring endpoint. A compat family is exported when the native families it is built from are
(the collector that owns them is on), and a server contributes nothing while it is down.

Names follow the official exporter: ``gnatsd_<endpoint>_<field>`` for the core endpoints and
``jetstream_<server|account|stream|consumer>_<name>`` for /jsz. ``--compat.prefix`` replaces both
namespaces, as its ``-prefix`` option does: the NATS Helm chart runs it with ``-prefix=nats``
(``nats_varz_*``, ``nats_stream_*``, ...), which its ``-helm`` dashboards query. Every name is
checked against the native catalogue when the mapping is built: a prefix that would make a compat
name collide with a native family is refused.

Deliberate differences from the official exporter:

- ``server_id`` is the server's own id (/varz ``server_id``), as with the official
  ``-use_internal_server_id``, not the monitoring URL the official exporter uses by default.
  With several monitored servers the native ``server`` label is kept as well.
- Counters are typed ``counter`` (the official exporter types everything but the connz totals as
  ``gauge``): gnatsd_varz_{in,out}_{msgs,bytes}, total_connections, slow_consumers,
  stale_connections, stalled_clients, slow_consumer_stats_*, jetstream_stats_api_{total,errors},
  and the gnatsd_leafz_conn_{in,out}_{msgs,bytes}. Names are unchanged (no ``_total``), so every
  query works as before; ``rate()`` is now also correct for Prometheus' type-aware tooling.
- gnatsd_connz_*: summed over every open connection (the official exporter sums the first /connz
  page, at most 1,024 connections). ``num_connections`` and ``total`` are both the number of open
  connections. The in/out messages and bytes include the final counts of closed connections, so
  they never fall when a client disconnects (the official sums fall). ``offset`` and ``limit``
  (paging parameters) are not exported.
- gnatsd_leafz_*: one series per leafnode group of ``--leafz.group-by`` (default account and
  name), not per leafnode connection; ``port`` is empty, ``ip`` is empty unless leafnodes are
  grouped by ip, ``account_id`` equals ``account``. ``gnatsd_leafz_info`` is the number of open
  leafnodes of the group (the official exporter exports 1 per leafnode, so ``sum()`` agrees).
  ``conn_rtt`` and the per-subscription ``conn_subscriptions`` are not exported.
- gnatsd_routez: only ``num_routes`` (route connections, summed over the peers' pooled routes),
  which is what the official exporter derives from /routez.
- gnatsd_healthz_status is 0 when healthy and 1 otherwise, as officially;
  ``status_value{value}`` is not exported (fastnats keeps no status text). The JetStream-only
  checks of ``--healthz.jetstream`` give gnatsd_healthz_js_{enabled,server}_only_status.
- gnatsd_varz: the numeric /varz fields fastnats reads (not every field of /varz): cpu (percent,
  as /varz reports it), mem, cores, connections, total_connections, subscriptions, routes,
  remotes, leafnodes, in/out msgs and bytes, slow_consumers, slow_consumer_stats_*,
  stale_connections, stalled_clients, config_load_time (Unix milliseconds) and the jetstream
  config and stats; and ``server_id``, ``server_name``, ``version`` as ``{value}`` gauges.
- jetstream_stream_*: each stream once, from its leader (the official exporter reports every
  replica, so ``sum by (stream_name)`` counted each replica); the follower rows of
  ``--jsz.replicas`` are left out. ``stream_leader`` is the exporting server's name,
  ``is_stream_leader`` is ``"true"``, ``stream_raft_group`` is empty; ``account``,
  ``account_name`` and ``account_id`` all carry the account's id (its name too, outside operator
  mode). Metadata labels (``--jsz.stream-meta-keys``) are ``stream_meta_<key>`` as officially.
  ``limit_bytes`` and ``limit_messages`` are -1 when unlimited, as officially. Mirror and source
  lag and activity come with ``mirror_name``/``source_name``; their ``*_api`` and ``*_deliver``
  labels are empty.
- jetstream_consumer_*: durable consumers only, each from its leader; ephemeral consumers are
  aggregated natively (nats_jetstream_stream_ephemeral_*) and have no per-consumer series, and
  durables past ``--jsz.max-consumers`` are summed into the consumer ``_other``.
  ``consumer_desc`` is empty; ``last_delivery_seconds`` and ``last_ack_seconds`` are not exported.
  Consumer series carry ``consumer_meta_<key>`` (``--jsz.consumer-meta-keys``) but not the
  stream's metadata labels. The per-consumer families need ``--jsz.level=consumers``, as the
  official ones need ``-jsz=consumers``.
- jetstream_account_*: summed over the account's storage tiers; ``max_memory``/``max_storage``
  are the sums of the tiers' limits (no series when unlimited).
- jetstream_server_jetstream_disabled is 0 for a server whose /jsz was read; a server without
  JetStream has no jetstream_server_* series.

``--compat=surveyor``: the ``nats_core_*`` and ``nats_survey_*`` names that nats-surveyor's
published Grafana dashboards query (tests/data/compat-surveyor.txt), with Surveyor's labels
(``server_cluster``, ``server_name``, ``server_id`` per server; ``server_id``, ``server_name``,
``cluster_name`` on the JetStream server families; ``account``, ``account_name`` on the account
ones). Names are fixed (no prefix). Served: info, connection_count, total_connection_count,
subs_count, sent/recv msgs and bytes, slow_consumer_count, mem_bytes, go_memlimit_bytes,
core_count, cpu_percentage, route_count (/varz); route_* per route peer (/routez);
gateway_count and gateway_* per gateway (/gatewayz); jetstream_info, jetstream_enabled, the
jetstream filestore/memstore size, used and reserved bytes and api_requests/api_errors (/varz);
jetstream_ha_assets, jetstream_api_pending, jetstream_cluster_raft_group_{info,leader,replicas},
jetstream_cluster_raft_group_replica_peer_{active,current,offline}, jetstream_meta_snapshot_*,
jetstream_server_total_{stream,consumer}_leaders and account_jetstream_* (/jsz);
raftz_meta_{applied,committed,pindex} (/raftz); nats_survey_{expected,surveyed}_count and
nats_survey_duration_seconds_{sum,count} (the exporter's own refreshes). In fleet mode only
(``SURVEYOR_FLEET_ONLY``): rtt_nanoseconds and nats_survey_nats_reconnects. A name not served
would be in ``SURVEYOR_NOT_SERVED``, with the reason; none is.

Deliberate differences from Surveyor:

- Counters are typed ``counter``, slow_consumer_count included (a gauge in Surveyor).
- route_*: one series per route peer, its pooled routes summed (Surveyor: one per route
  connection); ``server_route_name_id`` is the peer's server id, not a route id; peers with no
  route now are left out.
- gateway_*: one series per remote cluster, both directions summed; ``server_gateway_name_id``
  is empty. gateway_count counts the remote clusters with an open outbound gateway.
- jetstream_info: ``server_host`` is empty (fastnats keeps no host); ``server_domain`` and
  raft_group_info's ``jetstream_domain`` are ``Default`` for the empty domain, as in Surveyor.
- server_total_consumer_leaders: the durable consumers the server leads (those past
  ``--jsz.max-consumers`` counted) plus its ephemeral ones; needs ``--jsz.level=consumers``.
  server_total_stream_leaders and account_jetstream_stream_count need ``--jsz.level`` streams.
- account_jetstream_*: one series per account for the whole fleet (no ``server`` label even
  with several servers), usage from the first server that reports the account (each reports the
  cluster's figure); ``account_name`` is the account's id; reserved is 0 when unlimited.
  consumer_count and replica_count are per stream from its leader: state.consumer_count, and 1
  plus the followers the leader lists; ``raft_group`` is empty.
- nats_survey_expected_count is the number of monitored servers, nats_survey_surveyed_count
  those read at their last refresh.
- go_memlimit_bytes is 0 for a server whose /varz has no gomemlimit (GOMEMLIMIT unset), as in
  Surveyor.
- rtt_nanoseconds (fleet mode) is the round trip of the exporter's discovery ping to each
  server, as Surveyor's is of its statsz ping; no series for a server whose reply missed it.
- raft_group_replica_peer_*: the meta group's peers as its leader reports them in /jsz (Surveyor
  reads the leader's statsz, the same peer list); peer_active has no series for a peer the
  leader never heard from (Surveyor: 0).
- jetstream_meta_snapshot_*: last_timestamp_seconds and last_duration_seconds have no series
  before the server's first meta snapshot since it started (Surveyor: Go's zero time,
  -62135596800, and 0). Needs ``--collector.jsz``.
- nats_survey_duration_seconds_{sum,count}: two counter families, not one summary; the sum of
  every server's refresh time and the number of refreshes (fastnats_refresh_seconds_total and
  fastnats_refreshes_total summed over the servers; a server forgotten in fleet mode leaves its
  count in, so they never fall), so their ratio is the mean time to refresh one server;
  Surveyor's is the mean time of one poll of the whole fleet.
- nats_survey_nats_reconnects (fleet mode) counts the reconnects of the system-account
  connection (fastnats_nats_connection_events_total{event="reconnected"}), from 0; no ``name``
  label.
- raftz_meta_*: need ``--collector.raftz`` (Surveyor's ``--raftz``). ``server_id`` and
  ``cluster_name`` carry the server's id and cluster; Surveyor's carry them swapped (it fills
  its JetStream server labels with values in its statsz order, cluster first). The dashboards
  use ``server_name`` only, which both get right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from . import metrics as m
from .collectors.base import Samples
from .interop import Family, Sample

#: The ``--compat`` profiles.
PROMETHEUS_NATS_EXPORTER = "prometheus-nats-exporter"
SURVEYOR = "surveyor"
PROFILES = (PROMETHEUS_NATS_EXPORTER, SURVEYOR)
#: The official exporter's namespaces, which ``--compat.prefix`` replaces.
CORE = "gnatsd"
JETSTREAM = "jetstream"
_PREFIX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

SERVER_ID = ("server_id",)
_JS_SERVER = ("server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader")
_JS_ACCOUNT = (*_JS_SERVER, "account", "account_name", "account_id")
_JS_STREAM = (*_JS_ACCOUNT, "stream_name", "stream_leader", "is_stream_leader",
              "stream_raft_group")
_JS_CONSUMER = (*_JS_STREAM, "consumer_name", "consumer_leader", "is_consumer_leader",
                "consumer_desc")
_LEAF = ("server_id", "account", "account_id", "ip", "port", "name")
#: The value of the native ``replica_role`` label (``--jsz.replicas``) on a leader's rows.
LEADER_ROLE = "leader"


@dataclass(frozen=True, slots=True)
class _Spec:
    """One compat family: its namespace (core or jetstream), the rest of its name, its type,
    help and labels, and the native families it is built from (exported when any of them is)."""

    jetstream: bool
    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    sources: tuple[m.Metric, ...]
    #: One series for the whole fleet, never labelled by ``server`` (surveyor's account and
    #: survey families).
    fleet: bool = False


def _core(name: str, kind: str, help: str, labels: tuple[str, ...],
          *sources: m.Metric) -> _Spec:
    return _Spec(False, name, kind, help, labels, sources)


def _js(name: str, kind: str, help: str, labels: tuple[str, ...], *sources: m.Metric) -> _Spec:
    return _Spec(True, name, kind, help, labels, sources)


G, C = m.GAUGE, m.COUNTER
#: /varz fields: (field, native family, factor from the native unit to /varz's).
_VARZ_FIELDS: tuple[tuple[str, m.Metric, int], ...] = (
    ("cpu", m.NATS_SERVER_CPU_RATIO, 100),
    ("mem", m.NATS_SERVER_MEMORY_BYTES, 1),
    ("cores", m.NATS_SERVER_CPU_CORES, 1),
    ("connections", m.NATS_SERVER_CLIENTS, 1),
    ("total_connections", m.NATS_SERVER_TOTAL_CONNECTIONS, 1),
    ("subscriptions", m.NATS_SERVER_SUBSCRIPTIONS, 1),
    ("routes", m.NATS_SERVER_ROUTES, 1),
    ("remotes", m.NATS_SERVER_REMOTES, 1),
    ("leafnodes", m.NATS_SERVER_LEAFNODES, 1),
    ("in_msgs", m.NATS_SERVER_TOTAL_MESSAGES_RECEIVED, 1),
    ("out_msgs", m.NATS_SERVER_TOTAL_MESSAGES_SENT, 1),
    ("in_bytes", m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED, 1),
    ("out_bytes", m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT, 1),
    ("slow_consumers", m.NATS_SERVER_SLOW_CONSUMERS, 1),
    ("stale_connections", m.NATS_SERVER_STALE_CONNECTIONS_TOTAL, 1),
    ("stalled_clients", m.NATS_SERVER_STALLED_CLIENTS_TOTAL, 1),
    ("config_load_time", m.NATS_SERVER_CONFIG_LOAD_TIMESTAMP_SECONDS, 1000),
    ("jetstream_config_max_memory", m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES, 1),
    ("jetstream_config_max_storage", m.NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES, 1),
    ("jetstream_stats_memory", m.NATS_SERVER_JETSTREAM_MEMORY_BYTES, 1),
    ("jetstream_stats_storage", m.NATS_SERVER_JETSTREAM_STORAGE_BYTES, 1),
    ("jetstream_stats_reserved_memory", m.NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES, 1),
    ("jetstream_stats_reserved_storage", m.NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES, 1),
    ("jetstream_stats_api_total", m.NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL, 1),
    ("jetstream_stats_api_errors", m.NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL, 1),
)
_VARZ_IDENTITY = ("server_id", "server_name", "version")
_SLOW_KINDS = ("clients", "routes", "gateways", "leafs")
#: gnatsd_connz_* and the native group family each sums.
_CONNZ = (("num_connections", G, m.NATS_CLIENT_CONNECTIONS),
          ("total", G, m.NATS_CLIENT_CONNECTIONS),
          ("pending_bytes", G, m.NATS_CLIENT_PENDING_BYTES),
          ("subscriptions", G, m.NATS_CLIENT_SUBSCRIPTIONS),
          ("in_msgs", C, m.NATS_CLIENT_IN_MESSAGES_TOTAL),
          ("out_msgs", C, m.NATS_CLIENT_OUT_MESSAGES_TOTAL),
          ("in_bytes", C, m.NATS_CLIENT_IN_BYTES_TOTAL),
          ("out_bytes", C, m.NATS_CLIENT_OUT_BYTES_TOTAL))
_LEAFZ = (("conn_in_msgs", C, m.NATS_LEAFNODE_IN_MESSAGES_TOTAL),
          ("conn_out_msgs", C, m.NATS_LEAFNODE_OUT_MESSAGES_TOTAL),
          ("conn_in_bytes", C, m.NATS_LEAFNODE_IN_BYTES_TOTAL),
          ("conn_out_bytes", C, m.NATS_LEAFNODE_OUT_BYTES_TOTAL),
          ("conn_subscriptions_total", G, m.NATS_LEAFNODE_SUBSCRIPTIONS))
_HEALTH_CHECKS = (("js_enabled_only", "enabled-only"), ("js_server_only", "server-only"))
_JS_SERVER_FIELDS = (("total_streams", m.NATS_JETSTREAM_STREAMS),
                     ("total_consumers", m.NATS_JETSTREAM_CONSUMERS),
                     ("total_messages", m.NATS_JETSTREAM_MESSAGES),
                     ("total_message_bytes", m.NATS_JETSTREAM_BYTES),
                     ("max_memory", m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES),
                     ("max_storage", m.NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES))
_JS_ACCOUNT_FIELDS = (("memory_used", m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES),
                      ("storage_used", m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES),
                      ("max_memory", m.NATS_JETSTREAM_ACCOUNT_MAX_MEMORY_BYTES),
                      ("max_storage", m.NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES))
_JS_STREAM_FIELDS = (("total_messages", m.NATS_JETSTREAM_STREAM_MESSAGES),
                     ("total_bytes", m.NATS_JETSTREAM_STREAM_BYTES),
                     ("first_seq", m.NATS_JETSTREAM_STREAM_FIRST_SEQUENCE),
                     ("last_seq", m.NATS_JETSTREAM_STREAM_LAST_SEQUENCE),
                     ("consumer_count", m.NATS_JETSTREAM_STREAM_CONSUMERS),
                     ("subject_count", m.NATS_JETSTREAM_STREAM_SUBJECTS))
#: Stream limits: -1 when the native family has no series for the stream (unlimited).
_JS_STREAM_LIMITS = (("limit_bytes", m.NATS_JETSTREAM_STREAM_MAX_BYTES),
                     ("limit_messages", m.NATS_JETSTREAM_STREAM_MAX_MESSAGES))
_JS_CONSUMER_FIELDS = (
    ("delivered_consumer_seq", m.NATS_JETSTREAM_CONSUMER_DELIVERED_CONSUMER_SEQUENCE),
    ("delivered_stream_seq", m.NATS_JETSTREAM_CONSUMER_DELIVERED_STREAM_SEQUENCE),
    ("num_ack_pending", m.NATS_JETSTREAM_CONSUMER_ACK_PENDING_MESSAGES),
    ("num_redelivered", m.NATS_JETSTREAM_CONSUMER_REDELIVERED_MESSAGES),
    ("num_waiting", m.NATS_JETSTREAM_CONSUMER_WAITING_REQUESTS),
    ("num_pending", m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES),
    ("ack_floor_stream_seq", m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_STREAM_SEQUENCE),
    ("ack_floor_consumer_seq", m.NATS_JETSTREAM_CONSUMER_ACK_FLOOR_CONSUMER_SEQUENCE))
_JS_SOURCES = (("source", "source"), ("mirror", "mirror"))


def _specs() -> tuple[_Spec, ...]:
    info = m.NATS_SERVER_INFO
    specs = [_core(f"varz_{field}", C if native.type == C else G,
                   f"/varz {field} (fastnats: {native.name})", SERVER_ID, native)
             for field, native in ((f, n) for f, n, _ in _VARZ_FIELDS)]
    specs += [_core(f"varz_slow_consumer_stats_{kind}", C,
                    f"/varz slow_consumer_stats.{kind} (fastnats: "
                    f"{m.NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL.name})", SERVER_ID,
                    m.NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL) for kind in _SLOW_KINDS]
    specs += [_core(f"varz_{field}", G, f"/varz {field} as label value; value 1",
                    ("server_id", "value"), info) for field in _VARZ_IDENTITY]
    specs += [_core(f"connz_{field}", kind, f"/connz {field} summed over every open connection "
                    f"(fastnats: sum of {native.name})", SERVER_ID, native)
              for field, kind, native in _CONNZ]
    specs.append(_core("routez_num_routes", G, "/routez num_routes (fastnats: sum of "
                       f"{m.NATS_ROUTE_CONNECTIONS.name})", SERVER_ID, m.NATS_ROUTE_CONNECTIONS))
    specs.append(_core("leafz_conn_nodes_total", G, "Leafnode connections (fastnats: sum of "
                       f"{m.NATS_LEAFNODE_CONNECTIONS.name})", SERVER_ID,
                       m.NATS_LEAFNODE_CONNECTIONS))
    specs.append(_core("leafz_info", G, "Open leafnodes of the group (fastnats: "
                       f"{m.NATS_LEAFNODE_CONNECTIONS.name})", _LEAF, m.NATS_LEAFNODE_CONNECTIONS))
    specs += [_core(f"leafz_{field}", kind, f"Leafnode {field.removeprefix('conn_')} of the "
                    f"group (fastnats: {native.name})", _LEAF, native)
              for field, kind, native in _LEAFZ]
    specs.append(_core("healthz_status", G, "0 if /healthz says ok, else 1 (fastnats: "
                       f"{m.NATS_SERVER_HEALTHY.name})", SERVER_ID, m.NATS_SERVER_HEALTHY))
    specs += [_core(f"healthz_{name}_status", G, f"0 if /healthz?{name.replace('_', '-')}=true "
                    f"says ok, else 1", SERVER_ID, m.NATS_SERVER_JETSTREAM_HEALTHY)
              for name, _ in _HEALTH_CHECKS]
    specs.append(_js("server_jetstream_disabled", G, "0: the server's /jsz was read",
                     _JS_SERVER, m.NATS_JETSTREAM_STREAMS))
    specs += [_js(f"server_{field}", G, f"JetStream {field} of the server (fastnats: "
                  f"{native.name})", _JS_SERVER, native, m.NATS_JETSTREAM_STREAMS)
              for field, native in _JS_SERVER_FIELDS]
    specs += [_js(f"account_{field}", G, f"JetStream account {field}, summed over its tiers "
                  f"(fastnats: {native.name})", _JS_ACCOUNT, native)
              for field, native in _JS_ACCOUNT_FIELDS]
    specs += [_js(f"stream_{field}", G, f"Stream {field}, from the stream's leader (fastnats: "
                  f"{native.name})", _JS_STREAM, native) for field, native in _JS_STREAM_FIELDS]
    specs += [_js(f"stream_{field}", G, f"Stream {field}, -1 when unlimited (fastnats: "
                  f"{native.name})", _JS_STREAM, native, m.NATS_JETSTREAM_STREAM_MESSAGES)
              for field, native in _JS_STREAM_LIMITS]
    for kind, prefix in _JS_SOURCES:
        labels = (*_JS_STREAM, f"{prefix}_name", f"{prefix}_api", f"{prefix}_deliver")
        specs.append(_js(f"stream_{kind}_lag", G, f"Messages the stream's {kind} is behind",
                         labels, m.NATS_JETSTREAM_STREAM_SOURCE_LAG))
        specs.append(_js(f"stream_{kind}_active_duration_ns", G,
                         f"Nanoseconds since the stream's {kind} was last active", labels,
                         m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS))
    specs += [_js(f"consumer_{field}", G, f"Durable consumer {field}, from the consumer's "
                  f"leader (fastnats: {native.name})", _JS_CONSUMER, native)
              for field, native in _JS_CONSUMER_FIELDS]
    return tuple(specs)


SPECS = _specs()


class _Server:
    """One server's snapshot, read through the label names of the exported native families;
    a family that is not exported (its collector is off) has no samples here."""

    def __init__(self, samples: Samples, label_names: Mapping[str, tuple[str, ...]]) -> None:
        self.samples = {name: rows for name, rows in samples.items() if name in label_names}
        self.label_names = label_names

    def has(self, metric: m.Metric) -> bool:
        return metric.name in self.samples

    def value(self, metric: m.Metric) -> int | float | None:
        return next((value for _, value in self.rows(metric)), None)

    def rows(self, metric: m.Metric) -> Iterator[tuple[dict[str, str], int | float]]:
        names = self.label_names.get(metric.name, ())
        for values, value in self.samples.get(metric.name, ()):
            if not isinstance(value, tuple):
                yield dict(zip(names, values)), value

    def total(self, metric: m.Metric) -> int | float:
        return sum(value for _, value in self.rows(metric))


def _scaled(value: int | float, factor: int) -> int | float:
    if factor == 1:
        return value
    # Back to /varz's unit; rounding drops the float error of the native division.
    return round(value * factor, 6) if factor == 100 else int(round(value * factor))


#: Native stream/consumer labels that are not metadata keys.
_STREAM_KEYS = {"account", "stream", "consumer", "replica_role", "source", "kind"}


def _meta(row: dict[str, str], prefix: str) -> tuple[tuple[str, str], ...]:
    """The metadata labels of a native stream or consumer row, named as officially
    (``stream_meta_<key>``, ``consumer_meta_<key>``)."""
    return tuple((f"{prefix}_meta_{name.removeprefix('meta_')}", value)
                 for name, value in row.items() if name not in _STREAM_KEYS)


class Compat:
    """The compat families of one profile and prefix; raises ValueError when a name would
    collide with a native family or with another profile's."""

    def __init__(self, profile: str = PROMETHEUS_NATS_EXPORTER, prefix: str | None = None) -> None:
        if profile not in PROFILES:
            raise ValueError(f"no compatibility profile {profile!r}; choose from "
                             f"{', '.join(PROFILES)}")
        if prefix is not None and not _PREFIX.fullmatch(prefix):
            raise ValueError(f"compat prefix {prefix!r} is not a metric name prefix")
        if prefix is not None and profile != PROMETHEUS_NATS_EXPORTER:
            raise ValueError(f"a prefix applies to {PROMETHEUS_NATS_EXPORTER} only; "
                             f"{profile} names are fixed")
        self.profile = profile
        self.prefix = prefix
        #: Each family by its spec key (``varz_cpu``; ``js:stream_total_bytes`` for /jsz ones;
        #: the full name for surveyor's).
        self.metrics: dict[str, m.Metric] = {}
        self._sources: dict[str, tuple[m.Metric, ...]] = {}
        self._fleet: set[str] = set()
        #: Surveyor's survey counters, summed over servers that come and go.
        self._survey = {family: _RunningSum() for family, _ in _SV_DURATION}
        others = _other_names(profile)
        for key, name, spec in _named(profile, prefix):
            if name in m.BY_NAME:
                raise ValueError(f"compat family {name} would collide with the native family of "
                                 f"that name; choose another --compat.prefix")
            if name in others:
                raise ValueError(f"compat family {name} would collide with a family of "
                                 f"another --compat profile; choose another --compat.prefix")
            if any(metric.name == name for metric in self.metrics.values()):
                raise ValueError(f"compat family {name} is defined twice")
            self.metrics[key] = m.Metric(name, spec.type, spec.help, spec.labels,
                                         source="--compat " + profile)
            self._sources[key] = spec.sources
            if spec.fleet:
                self._fleet.add(key)

    def enabled(self, label_names: Mapping[str, tuple[str, ...]]) -> list[str]:
        """The keys of the compat families whose native sources are exported."""
        return [key for key, sources in self._sources.items()
                if any(source.name in label_names for source in sources)]

    def families(self, servers: Sequence[tuple[str, Samples]],
                 label_names: Mapping[str, tuple[str, ...]], labelled: bool,
                 process: Samples | None = None) -> list[Family]:
        """The compat families of every server's snapshot and of the exporter's process-wide
        samples; with ``labelled``, each per-server series also carries the native ``server``
        label first."""
        per_family: dict[str, list[Sample]] = {}
        extra: dict[str, tuple[str, ...]] = {}
        views = [(name, _Server(samples, label_names)) for name, samples in servers]
        if self.profile == SURVEYOR:
            found: Iterable[tuple[str, str, Iterable[tuple[str, str]], int | float]] = \
                _surveyor(views, _Server(process or {}, label_names), self._survey)
        else:
            found = ((server_name, *sample) for server_name, view in views
                     for sample in self._server(view))
        for server_name, name, labels, value in found:
            metric = self.metrics[name]
            fixed = dict(labels)
            values = tuple(fixed.pop(label, "") for label in metric.labels)
            if fixed:
                # Metadata labels past the official ones, in the order they came.
                extra.setdefault(name, tuple(fixed))
                values += tuple(fixed.get(label, "") for label in extra[name])
            if labelled and name not in self._fleet:
                values = (server_name, *values)
            per_family.setdefault(name, []).append((values, value))
        out: list[Family] = []
        for key in self.enabled(label_names):
            metric = self.metrics[key]
            names = (*metric.labels, *extra.get(key, ()))
            if labelled and key not in self._fleet:
                names = ("server", *names)
            out.append((metric, names, per_family.get(key, [])))
        return out

    def _server(self, server: _Server) -> Iterator[tuple[str, Iterable[tuple[str, str]],
                                                         int | float]]:
        """Every compat sample of one server: (spec key, labels, value)."""
        info = next(server.rows(m.NATS_SERVER_INFO), None)
        if info is None:
            return      # down: no identity, and no native samples either
        server_id = (("server_id", info[0]["server_id"]),)
        yield from self._varz(server, server_id, info[0])
        yield from self._connz(server, server_id)
        yield from self._leafz(server, server_id)
        yield from self._healthz(server, server_id)
        yield from self._jetstream(server, info[0])

    def _varz(self, server: _Server, server_id: tuple[tuple[str, str], ...],
              info: dict[str, str]) -> Iterator[tuple[str, Iterable[tuple[str, str]],
                                                      int | float]]:
        for field, native, factor in _VARZ_FIELDS:
            value = server.value(native)
            if value is not None:
                yield f"varz_{field}", server_id, _scaled(value, factor)
        for row, value in server.rows(m.NATS_SERVER_SLOW_CONSUMER_DETECTIONS_TOTAL):
            yield f"varz_slow_consumer_stats_{row['kind']}", server_id, value
        for field in _VARZ_IDENTITY:
            yield f"varz_{field}", (*server_id, ("value", info[field])), 1

    def _connz(self, server: _Server, server_id: tuple[tuple[str, str], ...]
               ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
        for field, _, native in _CONNZ:
            if server.has(native):
                yield f"connz_{field}", server_id, server.total(native)
        if server.has(m.NATS_ROUTE_CONNECTIONS):
            yield "routez_num_routes", server_id, server.total(m.NATS_ROUTE_CONNECTIONS)

    def _leafz(self, server: _Server, server_id: tuple[tuple[str, str], ...]
               ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
        if not server.has(m.NATS_LEAFNODE_CONNECTIONS):
            return
        yield "leafz_conn_nodes_total", server_id, server.total(m.NATS_LEAFNODE_CONNECTIONS)

        def leaf(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
            account = row.get("account", "")
            return (*server_id, ("account", account), ("account_id", account),
                    ("ip", row.get("ip", "")), ("port", ""), ("name", row.get("name", "")))

        # Groups that differ only by labels the official exporter lacks (is_spoke) are summed.
        for field, native in (("info", m.NATS_LEAFNODE_CONNECTIONS),
                              *((f, n) for f, _, n in _LEAFZ)):
            sums: dict[tuple[tuple[str, str], ...], int | float] = {}
            for row, value in server.rows(native):
                key = leaf(row)
                sums[key] = sums.get(key, 0) + value
            for key, value in sums.items():
                if field != "info" or value:
                    yield f"leafz_{field}", key, value

    def _healthz(self, server: _Server, server_id: tuple[tuple[str, str], ...]
                 ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
        healthy = server.value(m.NATS_SERVER_HEALTHY)
        if healthy is not None:
            yield "healthz_status", server_id, 0 if healthy else 1
        checks = {row["check"]: value
                  for row, value in server.rows(m.NATS_SERVER_JETSTREAM_HEALTHY)}
        for name, check in _HEALTH_CHECKS:
            if check in checks:
                yield f"healthz_{name}_status", server_id, 0 if checks[check] else 1

    def _jetstream(self, server: _Server, info: dict[str, str]
                   ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
        name = info["server_name"]
        leader = next(server.rows(m.NATS_JETSTREAM_META_LEADER_INFO), None)
        is_leader = server.value(m.NATS_JETSTREAM_META_LEADER)
        # A server without a meta group (JetStream outside a cluster) has no meta leader
        # series; the official exporter calls it the meta leader.
        meta_leader = "true" if is_leader is None or is_leader == 1 else "false"
        labels = (("server_id", info["server_id"]), ("server_name", name),
                  ("cluster", info["cluster"]), ("domain", info["domain"]),
                  ("meta_leader", leader[0]["leader"] if leader else ""),
                  ("is_meta_leader", meta_leader))
        if server.has(m.NATS_JETSTREAM_STREAMS):
            yield "js:server_jetstream_disabled", labels, 0
            for field, native in _JS_SERVER_FIELDS:
                value = server.value(native)
                if value is not None:
                    yield f"js:server_{field}", labels, value

        for field, native in _JS_ACCOUNT_FIELDS:
            sums: dict[str, int | float] = {}
            for row, value in server.rows(native):
                sums[row["account"]] = sums.get(row["account"], 0) + value
            for account, value in sums.items():
                yield f"js:account_{field}", (*labels, *_account(account)), value

        def stream(row: dict[str, str], meta: str = "stream"
                   ) -> tuple[tuple[str, str], ...] | None:
            if row.get("replica_role", LEADER_ROLE) != LEADER_ROLE:
                return None
            return (*labels, *_account(row["account"]), ("stream_name", row["stream"]),
                    ("stream_leader", name), ("is_stream_leader", "true"),
                    ("stream_raft_group", ""), *_meta(row, meta))

        streams: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        for field, native in _JS_STREAM_FIELDS:
            for row, value in server.rows(native):
                if (key := stream(row)) is not None:
                    streams[(row["account"], row["stream"])] = key
                    yield f"js:stream_{field}", key, value
        for field, native in _JS_STREAM_LIMITS:
            limits = {(row["account"], row["stream"]): value for row, value in server.rows(native)
                      if stream(row) is not None}
            for ident, key in streams.items():
                yield f"js:stream_{field}", key, limits.get(ident, -1)
        for native, suffix, factor in ((m.NATS_JETSTREAM_STREAM_SOURCE_LAG, "lag", 1),
                                       (m.NATS_JETSTREAM_STREAM_SOURCE_LAST_SEEN_SECONDS,
                                        "active_duration_ns", 1_000_000_000)):
            for row, value in server.rows(native):
                kind = row["kind"]
                base = streams.get((row["account"], row["stream"]))
                if base is None or kind not in ("source", "mirror"):
                    continue
                yield (f"js:stream_{kind}_{suffix}",
                       (*base, (f"{kind}_name", row["source"]), (f"{kind}_api", ""),
                        (f"{kind}_deliver", "")),
                       int(round(value * factor)) if factor != 1 else value)

        for field, native in _JS_CONSUMER_FIELDS:
            for row, value in server.rows(native):
                base = stream(row, "consumer")
                if base is None:
                    continue
                yield (f"js:consumer_{field}",
                       (*base, ("consumer_name", row["consumer"]), ("consumer_leader", name),
                        ("is_consumer_leader", "true"), ("consumer_desc", "")), value)


def _account(account: str) -> tuple[tuple[str, str], ...]:
    return ("account", account), ("account_name", account), ("account_id", account)


# --compat=surveyor.

_SV_SERVER = ("server_cluster", "server_name", "server_id")
_SV_INFO = (*_SV_SERVER, "server_version")
_SV_ROUTE = (*_SV_SERVER, "server_route_name", "server_route_name_id")
_SV_GATEWAY = (*_SV_SERVER, "server_gateway_name", "server_gateway_name_id")
_SV_JS = ("server_id", "server_name", "cluster_name")
_SV_JS_INFO = ("server_name", "server_host", "server_id", "server_cluster", "server_domain",
               "server_version", "server_jetstream")
_SV_RAFT_INFO = ("jetstream_domain", "raft_group", "server_id", "server_name", "cluster_name",
                 "leader")
_SV_ACCOUNT = ("account", "account_name")
_SV_PEER = ("server_id", "server_name", "peer", "cluster_name")
_SV_ACCOUNT_STREAM = (*_SV_ACCOUNT, "stream", "raft_group")
#: Surveyor's stand-in for the empty JetStream domain.
DEFAULT_DOMAIN = "Default"
#: Surveyor's per-server statsz families: (name, type, native family, factor to its unit).
_SV_STATSZ: tuple[tuple[str, str, m.Metric, int], ...] = (
    ("nats_core_connection_count", G, m.NATS_SERVER_CLIENTS, 1),
    ("nats_core_total_connection_count", C, m.NATS_SERVER_TOTAL_CONNECTIONS, 1),
    ("nats_core_subs_count", G, m.NATS_SERVER_SUBSCRIPTIONS, 1),
    ("nats_core_sent_msgs_count", C, m.NATS_SERVER_TOTAL_MESSAGES_SENT, 1),
    ("nats_core_sent_bytes", C, m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_SENT, 1),
    ("nats_core_recv_msgs_count", C, m.NATS_SERVER_TOTAL_MESSAGES_RECEIVED, 1),
    ("nats_core_recv_bytes", C, m.NATS_SERVER_TOTAL_PAYLOAD_BYTES_RECEIVED, 1),
    ("nats_core_slow_consumer_count", C, m.NATS_SERVER_SLOW_CONSUMERS, 1),
    ("nats_core_mem_bytes", G, m.NATS_SERVER_MEMORY_BYTES, 1),
    ("nats_core_core_count", G, m.NATS_SERVER_CPU_CORES, 1),
    ("nats_core_cpu_percentage", G, m.NATS_SERVER_CPU_RATIO, 100),
    ("nats_core_route_count", G, m.NATS_SERVER_ROUTES, 1),
)
#: Surveyor's JetStream server families from statsz, which fastnats reads in /varz.
_SV_JS_VARZ: tuple[tuple[str, str, m.Metric], ...] = (
    ("nats_core_jetstream_filestore_size_bytes", G, m.NATS_SERVER_JETSTREAM_MAX_STORAGE_BYTES),
    ("nats_core_jetstream_memstore_size_bytes", G, m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES),
    ("nats_core_jetstream_filestore_used_bytes", G, m.NATS_SERVER_JETSTREAM_STORAGE_BYTES),
    ("nats_core_jetstream_memstore_used_bytes", G, m.NATS_SERVER_JETSTREAM_MEMORY_BYTES),
    ("nats_core_jetstream_filestore_reserved_bytes", G,
     m.NATS_SERVER_JETSTREAM_RESERVED_STORAGE_BYTES),
    ("nats_core_jetstream_memstore_reserved_bytes", G,
     m.NATS_SERVER_JETSTREAM_RESERVED_MEMORY_BYTES),
    ("nats_core_jetstream_api_requests", C, m.NATS_SERVER_JETSTREAM_API_REQUESTS_TOTAL),
    ("nats_core_jetstream_api_errors", C, m.NATS_SERVER_JETSTREAM_API_ERRORS_TOTAL),
)
#: Per route peer: (name, type, native family).
_SV_ROUTES = (("nats_core_route_sent_msg_count", C, m.NATS_ROUTE_OUT_MESSAGES_TOTAL),
              ("nats_core_route_sent_bytes", C, m.NATS_ROUTE_OUT_BYTES_TOTAL),
              ("nats_core_route_recv_msg_count", C, m.NATS_ROUTE_IN_MESSAGES_TOTAL),
              ("nats_core_route_recv_bytes", C, m.NATS_ROUTE_IN_BYTES_TOTAL),
              ("nats_core_route_pending_bytes", G, m.NATS_ROUTE_PENDING_BYTES))
#: Per gateway, both directions summed: (name, native family).
_SV_GATEWAYS = (("nats_core_gateway_sent_msgs_count", m.NATS_GATEWAY_OUT_MESSAGES_TOTAL),
                ("nats_core_gateway_sent_bytes", m.NATS_GATEWAY_OUT_BYTES_TOTAL),
                ("nats_core_gateway_recv_msg_count", m.NATS_GATEWAY_IN_MESSAGES_TOTAL),
                ("nats_core_gateway_recv_bytes", m.NATS_GATEWAY_IN_BYTES_TOTAL))
#: Account JetStream usage and limits: (name, native family), the limit 0 when unlimited.
_SV_ACCOUNT_JS = (
    ("nats_core_account_jetstream_memory_used", m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES),
    ("nats_core_account_jetstream_storage_used", m.NATS_JETSTREAM_ACCOUNT_STORAGE_BYTES),
    ("nats_core_account_jetstream_memory_reserved", m.NATS_JETSTREAM_ACCOUNT_MAX_MEMORY_BYTES),
    ("nats_core_account_jetstream_storage_reserved",
     m.NATS_JETSTREAM_ACCOUNT_MAX_STORAGE_BYTES))
_SV_META = (m.NATS_JETSTREAM_META_LEADER, m.NATS_JETSTREAM_META_LEADER_INFO)
#: The meta group's peers, from its leader: (name, native family, factor to Surveyor's unit).
_SV_PEERS = (
    ("nats_core_jetstream_cluster_raft_group_replica_peer_active",
     m.NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS, 1_000_000_000),
    ("nats_core_jetstream_cluster_raft_group_replica_peer_current",
     m.NATS_JETSTREAM_META_PEER_CURRENT, 1),
    ("nats_core_jetstream_cluster_raft_group_replica_peer_offline",
     m.NATS_JETSTREAM_META_PEER_OFFLINE, 1))
#: The server's meta snapshot statistics: (name, native family, whether in whole seconds as
#: Surveyor's timestamp, Go's Time.Unix).
_SV_SNAPSHOT = (
    ("nats_core_jetstream_meta_snapshot_pending_entries",
     m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_ENTRIES, False),
    ("nats_core_jetstream_meta_snapshot_pending_bytes",
     m.NATS_JETSTREAM_META_SNAPSHOT_PENDING_BYTES, False),
    ("nats_core_jetstream_meta_snapshot_last_duration_seconds",
     m.NATS_JETSTREAM_META_SNAPSHOT_LAST_DURATION_SECONDS, False),
    ("nats_core_jetstream_meta_snapshot_last_timestamp_seconds",
     m.NATS_JETSTREAM_META_SNAPSHOT_LAST_TIMESTAMP_SECONDS, True))
#: The meta group's raft log: (name, native family).
_SV_RAFTZ = (("nats_core_raftz_meta_applied", m.NATS_JETSTREAM_META_APPLIED_INDEX),
             ("nats_core_raftz_meta_committed", m.NATS_JETSTREAM_META_COMMITTED_INDEX),
             ("nats_core_raftz_meta_pindex", m.NATS_JETSTREAM_META_LAST_INDEX))
#: The exporter's refreshes, summed over the servers: (name, native family).
_SV_DURATION = (("nats_survey_duration_seconds_sum", m.FASTNATS_REFRESH_SECONDS_TOTAL),
                ("nats_survey_duration_seconds_count", m.FASTNATS_REFRESHES_TOTAL))

#: Names the nats-surveyor dashboards query that fastnats does not serve, and why.
SURVEYOR_NOT_SERVED: dict[str, str] = {}
#: Names served in fleet mode only (``--nats.url``), and why not over HTTP.
SURVEYOR_FLEET_ONLY: dict[str, str] = {
    "nats_core_rtt_nanoseconds":
        "the round trip of the fleet's discovery ping (nats_fleet_server_rtt_seconds); HTTP "
        "mode sends no ping",
    "nats_survey_nats_reconnects":
        "the reconnects of the fleet's system-account connection "
        "(fastnats_nats_connection_events_total); HTTP mode has no NATS connection",
}
#: Labels the nats-surveyor dashboards use with a served name that Surveyor does not export on
#: it either: Prometheus' target labels, labels a query joins in from another family
#: (``group_left``), and a legend that names no label.
SURVEYOR_FOREIGN_LABELS: dict[str, frozenset[str]] = {
    "*": frozenset({"job", "instance"}),
    "nats_core_jetstream_cluster_raft_group_leader": frozenset({"server_cluster",
                                                                "server_domain"}),
    "nats_core_jetstream_cluster_raft_group_replicas": frozenset({"server_cluster",
                                                                  "server_domain"}),
    "nats_core_jetstream_cluster_raft_group_info": frozenset({"server_domain"}),
    "nats_core_jetstream_cluster_raft_group_replica_peer_offline": frozenset({"label_name"}),
}


def _surveyor_specs() -> tuple[_Spec, ...]:
    info, streams = m.NATS_SERVER_INFO, m.NATS_JETSTREAM_STREAMS
    specs = [_core("nats_core_info", G, "Server identity; value 1", _SV_INFO, info)]
    specs += [_core(name, kind, f"statsz (fastnats: {native.name})", _SV_SERVER, native)
              for name, kind, native, _ in _SV_STATSZ]
    specs.append(_core("nats_core_go_memlimit_bytes", G, "GOMEMLIMIT, 0 if not set (fastnats: "
                       f"{m.NATS_SERVER_GO_MEMLIMIT_BYTES.name})", _SV_SERVER,
                       m.NATS_SERVER_GO_MEMLIMIT_BYTES))
    specs.append(_core("nats_core_rtt_nanoseconds", G, "Round trip of the discovery ping "
                       f"(fastnats: {m.NATS_FLEET_SERVER_RTT_SECONDS.name})", _SV_SERVER,
                       m.NATS_FLEET_SERVER_RTT_SECONDS))
    specs.append(_core("nats_core_gateway_count", G, "Remote clusters with an outbound gateway "
                       f"(fastnats: {m.NATS_GATEWAY_CONNECTIONS.name})", _SV_SERVER,
                       m.NATS_GATEWAY_CONNECTIONS))
    specs += [_core(name, kind, f"Route peer (fastnats: sum of {native.name} per peer)",
                    _SV_ROUTE, native) for name, kind, native in _SV_ROUTES]
    specs += [_core(name, C, f"Gateway, both directions (fastnats: {native.name})",
                    _SV_GATEWAY, native) for name, native in _SV_GATEWAYS]
    specs.append(_core("nats_core_jetstream_info", G, "JetStream identity of the server; "
                       "value 1", _SV_JS_INFO, info))
    specs.append(_core("nats_core_jetstream_enabled", G, "1 if JetStream is enabled, else 0",
                       _SV_JS, info))
    specs += [_core(name, kind, f"statsz jetstream (fastnats: {native.name})", _SV_JS, native)
              for name, kind, native in _SV_JS_VARZ]
    specs.append(_core("nats_core_jetstream_ha_assets", G, "Replicated assets (fastnats: "
                       f"{m.NATS_JETSTREAM_HA_ASSETS.name})", _SV_JS, m.NATS_JETSTREAM_HA_ASSETS))
    specs.append(_core("nats_core_jetstream_api_pending", G, "Meta group API requests queued "
                       f"(fastnats: {m.NATS_JETSTREAM_META_PENDING.name})", _SV_JS,
                       m.NATS_JETSTREAM_META_PENDING))
    specs.append(_core("nats_core_jetstream_cluster_raft_group_info", G, "The meta group and "
                       "its leader; value 1 (0 without a meta group)", _SV_RAFT_INFO, streams))
    specs.append(_core("nats_core_jetstream_cluster_raft_group_leader", G, "1 if the server "
                       f"leads the meta group (fastnats: {m.NATS_JETSTREAM_META_LEADER.name})",
                       _SV_JS, *_SV_META))
    specs.append(_core("nats_core_jetstream_cluster_raft_group_replicas", G, "Meta group peers "
                       "the leader sees, 0 on a follower (fastnats: sum of "
                       f"{m.NATS_JETSTREAM_META_PEERS.name})", _SV_JS, *_SV_META))
    specs += [_core(name, G, f"Meta group peer, from the leader (fastnats: {native.name})",
                    _SV_PEER, native) for name, native, _ in _SV_PEERS]
    specs += [_core(name, G, f"Meta snapshot (fastnats: {native.name})", _SV_JS, native)
              for name, native, _ in _SV_SNAPSHOT]
    specs += [_core(name, G, f"Meta group raft log (fastnats: {native.name})", _SV_JS, native)
              for name, native in _SV_RAFTZ]
    specs.append(_core("nats_core_jetstream_server_total_stream_leaders", G, "Streams the server "
                       f"leads (fastnats: sum of {m.NATS_JETSTREAM_ACCOUNT_STREAMS.name})",
                       _SV_JS, m.NATS_JETSTREAM_ACCOUNT_STREAMS))
    specs.append(_core("nats_core_jetstream_server_total_consumer_leaders", G, "Consumers the "
                       "server leads: durable and ephemeral (--jsz.level=consumers)", _SV_JS,
                       m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES))
    fleet = [_core("nats_core_account_jetstream_enabled", G, "1 for an account with JetStream",
                   _SV_ACCOUNT, m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES)]
    fleet += [_core(name, G, f"Account JetStream (fastnats: {native.name}; 0 when unlimited)",
                    _SV_ACCOUNT, native) for name, native in _SV_ACCOUNT_JS]
    fleet.append(_core("nats_core_account_jetstream_stream_count", G, "Streams of the account "
                       f"(fastnats: sum over servers of {m.NATS_JETSTREAM_ACCOUNT_STREAMS.name})",
                       _SV_ACCOUNT, m.NATS_JETSTREAM_ACCOUNT_STREAMS))
    fleet.append(_core("nats_core_account_jetstream_consumer_count", G, "Consumers of the stream "
                       f"(fastnats: {m.NATS_JETSTREAM_STREAM_CONSUMERS.name})",
                       _SV_ACCOUNT_STREAM, m.NATS_JETSTREAM_STREAM_CONSUMERS))
    fleet.append(_core("nats_core_account_jetstream_replica_count", G, "Replicas of the stream "
                       f"(fastnats: 1 + its {m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT.name} "
                       "followers)", _SV_ACCOUNT_STREAM, m.NATS_JETSTREAM_STREAM_CONSUMERS))
    fleet.append(_core("nats_survey_expected_count", G, "Servers the exporter monitors", (),
                       info))
    fleet.append(_core("nats_survey_surveyed_count", G, "Servers read at their last refresh", (),
                       info))
    fleet += [_core(name, C, f"Refreshes of every server (fastnats: sum of {native.name})", (),
                    native) for name, native in _SV_DURATION]
    fleet.append(_core("nats_survey_nats_reconnects", C, "Reconnects of the system-account "
                       f"connection (fastnats: {m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL.name})",
                       (), m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL))
    return (*specs, *(replace(spec, fleet=True) for spec in fleet))


SURVEYOR_SPECS = _surveyor_specs()


def _named(profile: str, prefix: str | None) -> Iterator[tuple[str, str, _Spec]]:
    """Each family of a profile: (key, exported name, spec)."""
    if profile == SURVEYOR:
        for spec in SURVEYOR_SPECS:
            yield spec.name, spec.name, spec
        return
    core, jetstream = (prefix, prefix) if prefix else (CORE, JETSTREAM)
    for spec in SPECS:
        key = ("js:" if spec.jetstream else "") + spec.name
        yield key, f"{jetstream if spec.jetstream else core}_{spec.name}", spec


def _other_names(profile: str) -> set[str]:
    """The names of the other profiles (the official exporter's with its own namespaces and
    with the Helm chart's ``nats`` prefix)."""
    if profile == SURVEYOR:
        return {name for prefix in (None, "nats")
                for _, name, _ in _named(PROMETHEUS_NATS_EXPORTER, prefix)}
    return {spec.name for spec in SURVEYOR_SPECS}


Found = Iterator[tuple[str, str, Iterable[tuple[str, str]], int | float]]


class _RunningSum:
    """A sum of per-server counters that never falls: a server forgotten (fleet mode) leaves
    its last value in it, as its refreshes happened all the same."""

    def __init__(self) -> None:
        self.last: dict[str, int | float] = {}
        self.gone: int | float = 0

    def total(self, values: Mapping[str, int | float]) -> int | float:
        for name in self.last.keys() - values.keys():
            self.gone += self.last.pop(name)
        self.last.update(values)
        return self.gone + sum(values.values())


def _surveyor(views: Sequence[tuple[str, _Server]], process: _Server,
              survey: Mapping[str, _RunningSum]) -> Found:
    """Every surveyor sample: (server, family name, labels, value); ``process`` holds the
    exporter's process-wide samples, ``survey`` the running sums of the survey counters."""
    up = [(name, view, next(view.rows(m.NATS_SERVER_INFO))[0]) for name, view in views
          if next(view.rows(m.NATS_SERVER_INFO), None) is not None]
    for name, view, info in up:
        for family, labels, value in _surveyor_server(view, info):
            yield name, family, labels, value
    fleet = next(iter(views), ("", None))[0]
    for family, labels, value in _surveyor_accounts([view for _, view, _ in up]):
        yield fleet, family, labels, value
    yield fleet, "nats_survey_expected_count", (), len(views)
    yield fleet, "nats_survey_surveyed_count", (), len(up)
    for family, native in _SV_DURATION:
        yield fleet, family, (), survey[family].total(
            {name: view.total(native) for name, view in views})
    for row, value in process.rows(m.FASTNATS_NATS_CONNECTION_EVENTS_TOTAL):
        if row["event"] == "reconnected":
            yield fleet, "nats_survey_nats_reconnects", (), value


def _surveyor_server(view: _Server, info: dict[str, str]
                     ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
    server_name = info["server_name"] or info["server_id"]
    server = (("server_cluster", info["cluster"]), ("server_name", server_name),
              ("server_id", info["server_id"]))
    yield "nats_core_info", (*server, ("server_version", info["version"])), 1
    for family, _, native, factor in _SV_STATSZ:
        value = view.value(native)
        if value is not None:
            yield family, server, _scaled(value, factor)
    yield "nats_core_go_memlimit_bytes", server, view.value(m.NATS_SERVER_GO_MEMLIMIT_BYTES) or 0
    if (rtt := view.value(m.NATS_FLEET_SERVER_RTT_SECONDS)) is not None:
        yield "nats_core_rtt_nanoseconds", server, int(round(rtt * 1e9))

    live = {row["remote_id"] for row, value in view.rows(m.NATS_ROUTE_CONNECTIONS) if value}
    for family, _, native in _SV_ROUTES:
        for row, value in view.rows(native):
            if row["remote_id"] in live:
                yield family, (*server, ("server_route_name", row["remote_name"]),
                               ("server_route_name_id", row["remote_id"])), value
    if view.has(m.NATS_GATEWAY_CONNECTIONS):
        outbound = {row["gateway"] for row, value in view.rows(m.NATS_GATEWAY_CONNECTIONS)
                    if value and row["direction"] == "outbound"}
        yield "nats_core_gateway_count", server, len(outbound)
        connected = {row["gateway"] for row, value in view.rows(m.NATS_GATEWAY_CONNECTIONS)
                     if value}
        for family, native in _SV_GATEWAYS:
            sums: dict[str, int | float] = {}
            for row, value in view.rows(native):
                if row["gateway"] in connected:
                    sums[row["gateway"]] = sums.get(row["gateway"], 0) + value
            for gateway, value in sums.items():
                yield family, (*server, ("server_gateway_name", gateway),
                               ("server_gateway_name_id", "")), value

    js = (("server_id", info["server_id"]), ("server_name", server_name),
          ("cluster_name", info["cluster"]))
    enabled = view.value(m.NATS_SERVER_JETSTREAM_MAX_MEMORY_BYTES) is not None
    yield "nats_core_jetstream_info", (
        ("server_name", info["server_name"]), ("server_host", ""),
        ("server_id", info["server_id"]), ("server_cluster", info["cluster"]),
        ("server_domain", info["domain"] or DEFAULT_DOMAIN), ("server_version", info["version"]),
        ("server_jetstream", "true" if enabled else "false")), 1
    yield "nats_core_jetstream_enabled", js, 1 if enabled else 0
    if not enabled:
        return
    for family, _, native in _SV_JS_VARZ:
        value = view.value(native)
        if value is not None:
            yield family, js, value
    for family, native in (("nats_core_jetstream_ha_assets", m.NATS_JETSTREAM_HA_ASSETS),
                           ("nats_core_jetstream_api_pending", m.NATS_JETSTREAM_META_PENDING)):
        value = view.value(native)
        if value is not None:
            yield family, js, value
    if view.value(m.NATS_JETSTREAM_STREAMS) is not None:
        leader = view.value(m.NATS_JETSTREAM_META_LEADER)
        if leader is None:
            # JetStream without a meta group: Surveyor's row of empty labels, value 0.
            yield "nats_core_jetstream_cluster_raft_group_info", js[:2], 0
        else:
            named = next(view.rows(m.NATS_JETSTREAM_META_LEADER_INFO), None)
            yield "nats_core_jetstream_cluster_raft_group_info", (
                ("jetstream_domain", info["domain"] or DEFAULT_DOMAIN), ("raft_group", "_meta_"),
                *js[:2], ("cluster_name", info["cluster"]),
                ("leader", named[0]["leader"] if named else "")), 1
            yield "nats_core_jetstream_cluster_raft_group_leader", js, leader
            yield ("nats_core_jetstream_cluster_raft_group_replicas", js,
                   view.total(m.NATS_JETSTREAM_META_PEERS) if leader else 0)
    for family, native, factor in _SV_PEERS:
        for row, value in view.rows(native):
            yield (family, (*js[:2], ("peer", row["peer"]), js[2]),
                   int(round(value * factor)) if factor != 1 else value)
    for family, native, whole in _SV_SNAPSHOT:
        value = view.value(native)
        if value is not None:
            yield family, js, int(value) if whole else value
    for family, native in _SV_RAFTZ:
        value = view.value(native)
        if value is not None:
            yield family, js, value
    if view.has(m.NATS_JETSTREAM_ACCOUNT_STREAMS):
        yield ("nats_core_jetstream_server_total_stream_leaders", js,
               view.total(m.NATS_JETSTREAM_ACCOUNT_STREAMS))
    if view.has(m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES):
        durable = sum(1 for row, _ in view.rows(m.NATS_JETSTREAM_CONSUMER_PENDING_MESSAGES)
                      if row["consumer"] != m.OTHER_GROUP)
        yield ("nats_core_jetstream_server_total_consumer_leaders", js,
               durable + (view.value(m.NATS_JETSTREAM_CONSUMER_OVERFLOW) or 0)
               + view.total(m.NATS_JETSTREAM_STREAM_EPHEMERAL_CONSUMERS))


def _surveyor_accounts(views: Sequence[_Server]
                       ) -> Iterator[tuple[str, Iterable[tuple[str, str]], int | float]]:
    """The account and stream families, once for the fleet: an account's usage as the first
    server that reports it heard it, its streams from their leaders."""
    usage: dict[str, dict[str, int | float]] = {}
    for view in views:
        seen: dict[str, dict[str, int | float]] = {}
        for family, native in _SV_ACCOUNT_JS:
            for row, value in view.rows(native):
                sums = seen.setdefault(row["account"], {})
                sums[family] = sums.get(family, 0) + value
        for row, _ in view.rows(m.NATS_JETSTREAM_ACCOUNT_MEMORY_BYTES):
            seen.setdefault(row["account"], {})
        for account, values in seen.items():
            usage.setdefault(account, values)
    streams: dict[str, int | float] = {}
    consumers: dict[tuple[str, str], int | float] = {}
    replicas: dict[tuple[str, str], int] = {}
    counted = any(view.has(m.NATS_JETSTREAM_ACCOUNT_STREAMS) for view in views)
    for view in views:
        for row, value in view.rows(m.NATS_JETSTREAM_ACCOUNT_STREAMS):
            streams[row["account"]] = streams.get(row["account"], 0) + value
        for row, value in view.rows(m.NATS_JETSTREAM_STREAM_CONSUMERS):
            if row.get("replica_role", LEADER_ROLE) == LEADER_ROLE:
                consumers[(row["account"], row["stream"])] = value
        for row, _ in view.rows(m.NATS_JETSTREAM_STREAM_REPLICA_CURRENT):
            key = (row["account"], row["stream"])
            replicas[key] = replicas.get(key, 0) + 1
    for account, values in usage.items():
        labels = (("account", account), ("account_name", account))
        yield "nats_core_account_jetstream_enabled", labels, 1
        for family, _ in _SV_ACCOUNT_JS:
            yield family, labels, values.get(family, 0)
        if counted:
            yield "nats_core_account_jetstream_stream_count", labels, streams.get(account, 0)
    for (account, stream), value in consumers.items():
        stream_labels = (("account", account), ("account_name", account), ("stream", stream),
                         ("raft_group", ""))
        yield "nats_core_account_jetstream_consumer_count", stream_labels, value
        yield ("nats_core_account_jetstream_replica_count", stream_labels,
               1 + replicas.get((account, stream), 0))
