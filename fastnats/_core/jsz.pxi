# JszListing: what one refresh reads of /jsz, page by page; the twin of _reference/jsz.py, with
# the same attributes and values. Included by _core.pyx.
#
# read() scans a page without the GIL (jsz_scan.pxi), then walks the recorded offsets as the
# reference walks its decoded dicts, creating Python objects only for what is exported: the
# server's families, accounts, the streams read here, their sources and replicas, the durable
# consumers led here and the top-K entries. Consumers led elsewhere are never decoded, and
# ephemeral ones are summed in C.

from fastnats.metrics import (
    NATS_JETSTREAM_ACCOUNTS as _JZ_ACCOUNTS,
    NATS_JETSTREAM_API_LEVEL as _JZ_API_LEVEL,
    NATS_JETSTREAM_BYTES as _JZ_BYTES,
    NATS_JETSTREAM_CONSUMERS as _JZ_CONSUMERS,
    NATS_JETSTREAM_HA_ASSETS as _JZ_HA_ASSETS,
    NATS_JETSTREAM_MESSAGES as _JZ_MESSAGES,
    NATS_JETSTREAM_META_CLUSTER_SIZE as _JZ_META_CLUSTER_SIZE,
    NATS_JETSTREAM_META_LEADER as _JZ_META_LEADER,
    NATS_JETSTREAM_META_LEADER_INFO as _JZ_META_LEADER_INFO,
    NATS_JETSTREAM_META_PEER_CURRENT as _JZ_META_PEER_CURRENT,
    NATS_JETSTREAM_META_PEER_LAG as _JZ_META_PEER_LAG,
    NATS_JETSTREAM_META_PEER_LAST_SEEN_SECONDS as _JZ_META_PEER_LAST_SEEN_SECONDS,
    NATS_JETSTREAM_META_PEER_OFFLINE as _JZ_META_PEER_OFFLINE,
    NATS_JETSTREAM_META_PEERS as _JZ_META_PEERS,
    NATS_JETSTREAM_META_PENDING as _JZ_META_PENDING,
    NATS_JETSTREAM_STREAMS as _JZ_STREAMS,
)

cdef object JZ_UNLIMITED_FROM = 1 << 63


cdef struct JzEphemeral:
    # Ephemeral consumers of one stream led here; sums carry into *_carry past 2**64.
    uint64_t count
    uint64_t pending_sum
    uint64_t pending_carry
    uint64_t pending_max
    uint64_t ack_sum
    uint64_t ack_carry
    uint64_t ack_max


cdef inline void jz_add(uint64_t *total, uint64_t *carry, uint64_t v) noexcept nogil:
    total[0] += v
    if total[0] < v:
        carry[0] += 1


cdef inline object jz_limit(object value):
    # A configured limit, or None when unlimited (-1 or 0).
    return value if value > 0 else None


cdef inline object jz_reserved(object value):
    # An account's limit (uint64): None for unlimited (-1 cast) and for 0.
    return value if 0 < value < JZ_UNLIMITED_FROM else None


cdef class JszListing:
    """What one refresh reads of /jsz, page by page; ``read`` raises the /jsz decode error
    (ScrapeError) on a page that does not decode, and the listing is then dropped."""

    def __init__(self, str me, options):
        self.me = me
        self.me_utf8 = me.encode("utf-8", "surrogatepass")
        self.clustered = False
        self.settled = True
        self.replicated = False
        self.depth = options.depth
        self.replicas = options.replicas
        self.stream_keys = tuple(options.stream_meta_keys)
        self.consumer_keys = tuple(options.consumer_meta_keys)
        if len(self.stream_keys) > 64 or len(self.consumer_keys) > 64:
            raise ValueError("at most 64 metadata keys")
        self.stream_keys_utf8 = [k.encode("utf-8", "surrogatepass") for k in self.stream_keys]
        self.consumer_keys_utf8 = [k.encode("utf-8", "surrogatepass")
                                   for k in self.consumer_keys]
        self.top_k = options.top_k
        self.server = None
        self.meta_snapshot = None
        self.disabled = False
        self.total = 0
        self.paged = False
        self.streams_held = 0
        self.consumers_held = 0
        self.accounts_seen = set()
        self.accounts = []
        self.account_streams = {}
        self.streams = []
        self.sources = {}
        self.replica_rows = []
        self.durables = []
        self.ephemeral = []
        self.top = []
        self.at_account = self.at_stream = self.at_consumer = -1

    def __dealloc__(self):
        cdef int k
        for k in range(3):
            free(self.scan.levels[k].v)

    def read(self, body) -> int:
        """Take one page; returns how many accounts it listed."""
        cdef Py_buffer view
        PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
        try:
            try:
                with nogil:
                    jz_body(&self.scan, <const unsigned char *>view.buf, view.len)
            except ConnzDecodeError as e:
                raise jz_error(f"malformed JSON: {e}") from None
            self.b = <const unsigned char *>view.buf
            self.n = view.len
            self.at_account = self.at_stream = self.at_consumer = -1
            return jz_read(self)
        finally:
            self.b = NULL
            self.n = 0
            PyBuffer_Release(&view)


cdef Py_ssize_t jz_read(JszListing self) except -1:
    cdef Py_ssize_t *off = self.scan.doc.off
    cdef JzNode *detail
    cdef Py_ssize_t k
    if off[JZ_D_DISABLED] >= 0 and jz_flag(self, off[JZ_D_DISABLED], "", "disabled"):
        self.disabled = True
        return 0
    if self.server is None:
        self.server = jz_server(self)
    self.paged = off[JZ_D_TOTAL] >= 0
    self.total = jz_counter(self, off[JZ_D_TOTAL if self.paged else JZ_D_ACCOUNTS], "",
                            "total" if self.paged else "accounts")
    self.streams_held = jz_counter(self, off[JZ_D_STREAMS], "", "streams")
    self.consumers_held = jz_counter(self, off[JZ_D_CONSUMERS], "", "consumers")
    if not jz_array(self, off[JZ_D_DETAILS], "", "account_details"):
        return 0
    for k in range(self.scan.doc.count):
        self.at_account = k
        detail = &self.scan.levels[0].v[self.scan.doc.first + k]
        if self.b[detail.at] != b'{':
            raise jz_error(f"account_details[{k}] is not an object")
        jz_account(self, detail)
    return self.scan.doc.count


cdef dict jz_server(JszListing self):
    cdef Py_ssize_t *off = self.scan.doc.off
    cdef Py_ssize_t api[1]
    cdef Py_ssize_t meta[5]
    cdef Py_ssize_t snap[4]
    if not jz_object(self, off[JZ_D_API], "", "api"):
        raise jz_error("has no api")
    jz_fields_at(self, off[JZ_D_API], JZ_T_API, api)
    out = {
        _JZ_STREAMS.name: [((), jz_counter(self, off[JZ_D_STREAMS], "", "streams"))],
        _JZ_CONSUMERS.name: [((), jz_counter(self, off[JZ_D_CONSUMERS], "", "consumers"))],
        _JZ_MESSAGES.name: [((), jz_counter(self, off[JZ_D_MESSAGES], "", "messages"))],
        _JZ_BYTES.name: [((), jz_counter(self, off[JZ_D_BYTES], "", "bytes"))],
        _JZ_ACCOUNTS.name: [((), jz_counter(self, off[JZ_D_ACCOUNTS], "", "accounts"))],
        _JZ_HA_ASSETS.name: [((), jz_counter(self, off[JZ_D_HA_ASSETS], "", "ha_assets"))],
        _JZ_API_LEVEL.name: [((), jz_counter(self, api[0], "api.", "level"))],
    }
    self.clustered = jz_object(self, off[JZ_D_META], "", "meta_cluster")
    if not self.clustered:
        # A server without a meta group (JetStream outside a cluster).
        return out
    jz_fields_at(self, off[JZ_D_META], JZ_T_META, meta)
    leader = jz_text(self, meta[0], "meta_cluster.", "leader", "")
    leading = leader != "" and leader == self.me
    # No meta leader: recovering or cut off; see _reference/jsz.py (settled).
    self.settled = leader != ""
    out[_JZ_META_LEADER.name] = [((), 1 if leading else 0)]
    out[_JZ_META_LEADER_INFO.name] = [((leader,), 1)] if leader else []
    out[_JZ_META_CLUSTER_SIZE.name] = [((), jz_counter(self, meta[1], "meta_cluster.",
                                                       "cluster_size"))]
    out[_JZ_META_PENDING.name] = [((), jz_count(self, meta[2], "meta_cluster.", "pending"))]
    per_peer = ([], [], [], [])
    peers = jz_meta_peers(self, meta[3], per_peer)
    # Only the leader knows how the others are doing.
    out[_JZ_META_PEERS.name] = [((state,), n) for state, n in peers.items()] if leading else []
    for metric, samples in zip((_JZ_META_PEER_CURRENT, _JZ_META_PEER_OFFLINE, _JZ_META_PEER_LAG,
                                _JZ_META_PEER_LAST_SEEN_SECONDS), per_peer):
        out[metric.name] = samples if leading else []
    if jz_object(self, meta[4], "meta_cluster.", "snapshot"):
        jz_fields_at(self, meta[4], JZ_T_SNAPSHOT, snap)
        sub = "meta_cluster.snapshot."
        self.meta_snapshot = (jz_counter(self, snap[0], sub, "pending_entries"),
                              jz_counter(self, snap[1], sub, "pending_size"),
                              jz_text(self, snap[2], sub, "last_time", ""),
                              jz_count(self, snap[3], sub, "last_duration"))
    return out


cdef dict jz_meta_peers(JszListing self, Py_ssize_t at, tuple per_peer):
    # The peers counted by state; per_peer gets each one's current, offline, lag and
    # last-seen samples.
    cdef Py_ssize_t peer[5]
    cdef Py_ssize_t k = 0, i
    cdef bint offline, current
    peers = {"current": 0, "lagging": 0, "offline": 0}
    if not jz_array(self, at, "meta_cluster.", "replicas"):
        return peers
    i = cz_skip_ws(self.b, self.n, at + 1)
    while self.b[i] != b']':
        sub = f"meta_cluster.replicas[{k}]."
        if self.b[i] != b'{':
            raise jz_error(f"meta_cluster.replicas[{k}] is not an object")
        jz_fields_at(self, i, JZ_T_PEER, peer)
        labels = (jz_text(self, peer[0], sub, "name"),)
        offline = peer[1] >= 0 and jz_flag(self, peer[1], sub, "offline")
        current = jz_flag(self, peer[2], sub, "current")
        peers["offline" if offline else "current" if current else "lagging"] += 1
        per_peer[0].append((labels, 1 if current else 0))
        per_peer[1].append((labels, 1 if offline else 0))
        per_peer[2].append((labels, jz_count(self, peer[3], sub, "lag")))
        active = jz_count(self, peer[4], sub, "active")
        if active:
            per_peer[3].append((labels, active / 1e9))
        i = jz_array_next(self, i)
        k += 1
    return peers


cdef Py_ssize_t jz_array_next(JszListing self, Py_ssize_t i) except -1:
    # The cursor at the next element of a checked array after the one at i, or at its ']'.
    cdef const unsigned char *b = self.b
    i = cz_skip_ws(b, self.n, cz_skip_value(b, self.n, i, 8))
    if b[i] == b',':
        i = cz_skip_ws(b, self.n, i + 1)
    return i


cdef int jz_account(JszListing self, JzNode *acc) except -1:
    cdef Py_ssize_t *off = acc.off
    cdef JzNode *stream
    cdef Py_ssize_t j
    account = jz_text(self, off[JZ_A_ID], "", "id")
    if account in self.accounts_seen:
        # Listed by two pages: accounts made or removed between them shift the pages.
        return 0
    self.accounts_seen.add(account)
    label = _jz_client_value(account)
    self.accounts.append((
        label, jz_counter(self, off[JZ_A_MEMORY], "", "memory"),
        jz_counter(self, off[JZ_A_STORAGE], "", "storage"),
        jz_reserved(jz_counter(self, off[JZ_A_RESERVED_MEMORY], "", "reserved_memory")),
        jz_reserved(jz_counter(self, off[JZ_A_RESERVED_STORAGE], "", "reserved_storage"))))
    if self.depth < 2:
        return 0
    counts = self.account_streams.setdefault(label, [0, 0])
    if not jz_array(self, off[JZ_A_STREAMS], "", "stream_detail"):
        return 0
    for j in range(acc.count):
        self.at_stream = j
        stream = &self.scan.levels[1].v[acc.first + j]
        if self.b[stream.at] != b'{':
            raise jz_error(f"{jz_path(self, '')[:-1]} is not an object")
        jz_stream(self, account, label, counts, stream)
    self.at_stream = -1
    return 0


cdef int jz_stream(JszListing self, str account, str label, list counts,
                   JzNode *node) except -1:
    cdef Py_ssize_t *off = node.off
    cdef Py_ssize_t cluster[3]
    cdef Py_ssize_t config[5]
    cdef bint has_cluster, has_config, leading
    name = jz_text(self, off[JZ_S_NAME], "", "name")
    stream_label = _jz_client_value(name)
    has_cluster = jz_object(self, off[JZ_S_CLUSTER], "", "cluster")
    has_config = jz_object(self, off[JZ_S_CONFIG], "", "config")
    jz_clear(cluster, 3)
    jz_clear(config, 5)
    if has_cluster:
        jz_fields_at(self, off[JZ_S_CLUSTER], JZ_T_STREAM_CLUSTER, cluster)
    if has_config:
        jz_fields_at(self, off[JZ_S_CONFIG], JZ_T_STREAM_CONFIG, config)
    # See _reference/jsz.py: no cluster block is a stream alone here; a replicated stream
    # without a raft group is a server recovering its meta layer, and a leader listing itself
    # among the replicas a stale view: neither is believed.
    leader = self.me if not has_cluster else jz_text(self, cluster[0], "cluster.", "leader", "")
    # A replicated stream lives only in a cluster, whether or not meta_cluster is listed yet.
    self.replicated = (has_config and config[0] >= 0
                       and jz_counter(self, config[0], "config.", "num_replicas") > 1)
    if has_cluster and cluster[1] < 0 and self.replicated:
        leader = ""
    leading = leader != "" and leader == self.me and self.settled
    if leading and has_cluster and jz_lists_me(self, cluster[2]):
        leading = False
    labels = (label, stream_label,
              *jz_metadata(self, config[1] if has_config else -1, self.stream_keys,
                           self.stream_keys_utf8, "config."))
    if leading or self.replicas:
        values = jz_state(self, off[JZ_S_STATE])
        limits = (None, None, None)
        if has_config:
            age = jz_counter(self, config[2], "config.", "max_age")
            limits = (jz_limit(jz_gauge(self, config[3], "config.", "max_bytes")),
                      jz_limit(jz_gauge(self, config[4], "config.", "max_msgs")),
                      age / 1e9 if age else None)
        self.streams.append((labels, "leader" if leading else "follower", values, limits))
        if leading:
            counts[0] += 1
            counts[1] += values[6]
            jz_leader_view(self, label, stream_label, off, cluster[2] if has_cluster else -2)
    if self.depth >= 3:
        jz_consumers(self, account, name, label, stream_label, labels, node)
    return 0


cdef tuple jz_state(JszListing self, Py_ssize_t at):
    cdef Py_ssize_t s[7]
    if not jz_object(self, at, "", "state"):
        raise jz_error(f"has no {jz_path(self, 'state')}")
    jz_fields_at(self, at, JZ_T_STATE, s)
    return (jz_counter(self, s[0], "state.", "messages"),
            jz_counter(self, s[1], "state.", "bytes"),
            jz_counter(self, s[2], "state.", "first_seq"),
            jz_counter(self, s[3], "state.", "last_seq"),
            jz_count(self, s[4], "state.", "num_deleted"),
            jz_count(self, s[5], "state.", "num_subjects"),
            jz_counter(self, s[6], "state.", "consumer_count"))


cdef int jz_leader_view(JszListing self, str label, str stream_label, const Py_ssize_t *off,
                        Py_ssize_t replicas) except -1:
    # What only the stream's leader knows: its mirror and sources, and its followers
    # (replicas is -2 for a stream without a cluster block).
    cdef Py_ssize_t i, k = 0
    cdef Py_ssize_t peer[5]
    if jz_object(self, off[JZ_S_MIRROR], "", "mirror"):
        jz_source(self, label, stream_label, off[JZ_S_MIRROR], "mirror.", "mirror")
    if jz_array(self, off[JZ_S_SOURCES], "", "sources"):
        i = cz_skip_ws(self.b, self.n, off[JZ_S_SOURCES] + 1)
        while self.b[i] != b']':
            if self.b[i] != b'{':
                raise jz_error(f"{jz_path(self, '')}sources[{k}] is not an object")
            jz_source(self, label, stream_label, i, f"sources[{k}].", "source")
            i = jz_array_next(self, i)
            k += 1
    if replicas == -2 or not jz_array(self, replicas, "cluster.", "replicas"):
        return 0
    i = cz_skip_ws(self.b, self.n, replicas + 1)
    k = 0
    while self.b[i] != b']':
        sub = f"cluster.replicas[{k}]."
        if self.b[i] != b'{':
            raise jz_error(f"{jz_path(self, sub)[:-1]} is not an object")
        jz_fields_at(self, i, JZ_T_PEER, peer)
        offline = peer[1] >= 0 and jz_flag(self, peer[1], sub, "offline")
        self.replica_rows.append(((label, stream_label, jz_text(self, peer[0], sub, "name")),
                                  jz_flag(self, peer[2], sub, "current"), offline,
                                  jz_count(self, peer[3], sub, "lag")))
        i = jz_array_next(self, i)
        k += 1
    return 0


cdef int jz_source(JszListing self, str label, str stream_label, Py_ssize_t at, str sub,
                   str kind) except -1:
    cdef Py_ssize_t s[3]
    jz_fields_at(self, at, JZ_T_SOURCE, s)
    key = (label, stream_label, _jz_client_value(jz_text(self, s[0], sub, "name")), kind)
    lag = jz_counter(self, s[1], sub, "lag")
    active = jz_gauge(self, s[2], sub, "active")
    seen = active / 1e9 if active >= 0 else None
    known = self.sources.get(key)
    if known is not None:
        # The same stream sourced twice (other filters or transforms): the worst of both.
        lag = max(lag, known[0])
        if known[1] is not None:
            seen = known[1] if seen is None else max(seen, known[1])
    self.sources[key] = (lag, seen)
    return 0


cdef int jz_consumers(JszListing self, str account, str name_of, str label, str stream_label,
                      tuple stream_labels, JzNode *node) except -1:
    cdef const unsigned char *b = self.b
    cdef Py_ssize_t at = node.off[JZ_S_CONSUMERS], k
    cdef JzNode *c
    cdef JzEphemeral eph
    cdef uint64_t pending, ack
    cdef bint durable
    if not jz_truthy(b, self.n, at):
        return 0
    if b[at] != b'[':
        raise jz_error(f"{jz_path(self, '')}consumer_detail is not an array")
    memset(&eph, 0, sizeof(eph))
    for k in range(node.count):
        self.at_consumer = k
        c = &self.scan.levels[2].v[node.first + k]
        if not jz_led_here(self, c):
            continue
        durable = jz_consumer_head(self, c, &pending, &ack)
        if durable:
            jz_durable(self, c, pending, ack, account, name_of, label, stream_label)
        else:
            eph.count += 1
            jz_add(&eph.pending_sum, &eph.pending_carry, pending)
            jz_add(&eph.ack_sum, &eph.ack_carry, ack)
            if pending > eph.pending_max:
                eph.pending_max = pending
            if ack > eph.ack_max:
                eph.ack_max = ack
        if self.top_k and pending and (len(self.top) < self.top_k or pending > self.top_floor):
            jz_top(self, c, pending, durable, label, stream_label)
    self.at_consumer = -1
    if eph.count:
        self.ephemeral.append((
            stream_labels, eph.count,
            (<object>eph.pending_carry << 64) + eph.pending_sum, eph.pending_max,
            (<object>eph.ack_carry << 64) + eph.ack_sum, eph.ack_max))
    return 0


cdef bint jz_led_here(JszListing self, JzNode *c) except -1:
    # Whether the consumer is led here: its cluster's leader is this server, not also listed
    # among its replicas; without a cluster block, when the server is outside a cluster and
    # the stream is not replicated (a clustered server lists its consumers so only while it
    # recovers its meta layer, not knowing who leads them, and for the first few milliseconds
    # of a restart it does not list meta_cluster either).
    cdef Py_ssize_t cluster = c.off[JZ_C_CLUSTER]
    if self.b[c.at] != b'{':
        raise jz_error(f"{jz_path(self, '')[:-1]} is not an object")
    if not jz_null(self.b, cluster):
        if self.b[cluster] != b'{':
            jz_bad(self, cluster, "", "cluster", "an object")
        return (self.settled and jz_is_me(self, c.off[JZ_C_LEADER])
                and not jz_lists_me(self, c.off[JZ_C_REPLICAS]))
    return not (self.clustered or self.replicated)


cdef bint jz_lists_me(JszListing self, Py_ssize_t at) except -1:
    # Whether the value at `at` is an array holding an object named as this server: a leader
    # never lists itself among the replicas, see _reference/jsz.py (_lists), read as leniently.
    cdef Py_ssize_t i
    cdef Py_ssize_t peer[5]
    if not jz_is(self.b, at, b'['):
        return False
    i = cz_skip_ws(self.b, self.n, at + 1)
    while self.b[i] != b']':
        if self.b[i] == b'{':
            jz_fields_at(self, i, JZ_T_PEER, peer)
            if jz_is_me(self, peer[0]):
                return True
        i = jz_array_next(self, i)
    return False


cdef bint jz_consumer_head(JszListing self, JzNode *c, uint64_t *pending,
                           uint64_t *ack) except -1:
    # What every consumer led here must have; returns whether it is durable (a truthy
    # config.durable_name).
    cdef const unsigned char *b = self.b
    cdef Py_ssize_t config = c.off[JZ_C_CONFIG]
    if not jz_is(b, c.off[JZ_C_NAME], b'"'):
        jz_bad(self, c.off[JZ_C_NAME], "", "name", "a string")
    if not jz_uint(b, self.n, c.off[JZ_C_PENDING], pending):
        jz_bad(self, c.off[JZ_C_PENDING], "", "num_pending", "a count from 0 to 2**64-1")
    if not jz_uint(b, self.n, c.off[JZ_C_ACK_PENDING], ack):
        jz_bad(self, c.off[JZ_C_ACK_PENDING], "", "num_ack_pending",
               "a count from 0 to 2**64-1")
    if jz_null(b, config):
        return False
    if b[config] != b'{':
        jz_bad(self, config, "", "config", "an object")
    return jz_truthy(b, self.n, c.off[JZ_C_DURABLE])


cdef int jz_durable(JszListing self, JzNode *c, uint64_t pending, uint64_t ack,
                    str account, str name_of, str label, str stream_label) except -1:
    cdef Py_ssize_t delivered[2]
    cdef Py_ssize_t floor[2]
    cdef Py_ssize_t *off = c.off
    if not jz_is(self.b, off[JZ_C_DELIVERED], b'{'):
        jz_bad(self, off[JZ_C_DELIVERED], "", "delivered", "an object")
    if not jz_is(self.b, off[JZ_C_ACK_FLOOR], b'{'):
        jz_bad(self, off[JZ_C_ACK_FLOOR], "", "ack_floor", "an object")
    jz_fields_at(self, off[JZ_C_DELIVERED], JZ_T_SEQUENCES, delivered)
    jz_fields_at(self, off[JZ_C_ACK_FLOOR], JZ_T_SEQUENCES, floor)
    values = (pending, ack,
              jz_counter(self, off[JZ_C_REDELIVERED], "", "num_redelivered"),
              jz_counter(self, off[JZ_C_WAITING], "", "num_waiting"),
              jz_counter(self, delivered[0], "delivered.", "consumer_seq"),
              jz_counter(self, delivered[1], "delivered.", "stream_seq"),
              jz_counter(self, floor[0], "ack_floor.", "consumer_seq"),
              jz_counter(self, floor[1], "ack_floor.", "stream_seq"))
    name = jz_decode(self, off[JZ_C_NAME])
    labels = (label, stream_label, _jz_client_value(name))
    if self.consumer_keys:
        labels += jz_metadata(self, off[JZ_C_METADATA], self.consumer_keys,
                              self.consumer_keys_utf8, "config.")
    self.durables.append(((account, name_of, name), labels, values))
    return 0


cdef int jz_top(JszListing self, JzNode *c, uint64_t pending, bint durable, str label,
                str stream_label) except -1:
    # The top-K min-heap, pushed and replaced as the reference does, so that ties keep the
    # same entries.
    entry = (pending, label, stream_label, _jz_client_value(jz_decode(self, c.off[JZ_C_NAME])),
             "true" if durable else "false")
    cdef list heap = self.top
    if len(heap) < self.top_k:
        heap.append(entry)
        jz_sift_down(heap, 0, len(heap) - 1)
    else:
        heap[0] = entry
        jz_sift_up(heap, 0)
    self.top_floor = heap[0][0]
    return 0


# heapq's heappush and heapreplace, step for step (Lib/heapq.py _siftdown and _siftup), so
# that the heap list is the reference's, entry for entry.

cdef int jz_sift_down(list heap, Py_ssize_t start, Py_ssize_t pos) except -1:
    cdef Py_ssize_t parent
    item = heap[pos]
    while pos > start:
        parent = (pos - 1) >> 1
        if item < heap[parent]:
            heap[pos] = heap[parent]
            pos = parent
            continue
        break
    heap[pos] = item
    return 0


cdef int jz_sift_up(list heap, Py_ssize_t pos) except -1:
    cdef Py_ssize_t end = len(heap), start = pos, child = 2 * pos + 1
    item = heap[pos]
    while child < end:
        if child + 1 < end and not heap[child] < heap[child + 1]:
            child += 1
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    return jz_sift_down(heap, start, pos)
