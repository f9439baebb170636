# /jsz scan: step 1 of JszListing.read (jsz.pxi). Included by _core.pyx.
#
# jz_body() checks a whole /jsz page without the GIL and records, for the document, each
# account, each stream and each consumer, where the values of the keys the walk reads start:
# nothing is decoded yet, and a value of the wrong type is only recorded, since whether it is
# an error depends on what the walk reads (a consumer led elsewhere is never looked at). A
# repeated key's last value wins, as in the reference's orjson. The nested objects of a
# consumer that the walk always reads (its cluster's leader and replicas, its config's
# durable_name and metadata) are indexed in the same pass, so the bulk of a page is read once.

cdef enum:
    # The key tables of the objects a /jsz page holds; JZ_T_* index jz_tables.
    JZ_T_DOC = 0
    JZ_T_ACCOUNT
    JZ_T_STREAM
    JZ_T_CONSUMER
    JZ_T_CONSUMER_CLUSTER
    JZ_T_CONSUMER_CONFIG
    JZ_T_API
    JZ_T_META
    JZ_T_PEER
    JZ_T_STREAM_CLUSTER
    JZ_T_STREAM_CONFIG
    JZ_T_STATE
    JZ_T_SOURCE
    JZ_T_SEQUENCES
    JZ_T_SNAPSHOT
    JZ_NTABLES
    JZ_MAX_KEYS = 13       # the most keys a node records, its nested objects' included

cdef enum:
    # Document keys, in JZ_T_DOC order.
    JZ_D_DISABLED = 0
    JZ_D_TOTAL
    JZ_D_ACCOUNTS
    JZ_D_STREAMS
    JZ_D_CONSUMERS
    JZ_D_MESSAGES
    JZ_D_BYTES
    JZ_D_HA_ASSETS
    JZ_D_API
    JZ_D_META
    JZ_D_DETAILS

cdef enum:
    # Account keys (JZ_T_ACCOUNT).
    JZ_A_ID = 0
    JZ_A_MEMORY
    JZ_A_STORAGE
    JZ_A_RESERVED_MEMORY
    JZ_A_RESERVED_STORAGE
    JZ_A_STREAMS

cdef enum:
    # Stream keys (JZ_T_STREAM).
    JZ_S_NAME = 0
    JZ_S_CLUSTER
    JZ_S_CONFIG
    JZ_S_STATE
    JZ_S_MIRROR
    JZ_S_SOURCES
    JZ_S_CONSUMERS

cdef enum:
    # Consumer keys (JZ_T_CONSUMER), then the keys of its cluster and config, read in the same
    # pass.
    JZ_C_CLUSTER = 0
    JZ_C_NAME
    JZ_C_PENDING
    JZ_C_ACK_PENDING
    JZ_C_CONFIG
    JZ_C_REDELIVERED
    JZ_C_WAITING
    JZ_C_DELIVERED
    JZ_C_ACK_FLOOR
    JZ_C_LEADER            # cluster.leader
    JZ_C_REPLICAS          # cluster.replicas
    JZ_C_DURABLE           # config.durable_name
    JZ_C_METADATA          # config.metadata

cdef struct JzTable:
    const char **names
    Py_ssize_t *lens
    int count


cdef tuple _JZ_KEYS = (
    (b"disabled", b"total", b"accounts", b"streams", b"consumers", b"messages", b"bytes",
     b"ha_assets", b"api", b"meta_cluster", b"account_details"),
    (b"id", b"memory", b"storage", b"reserved_memory", b"reserved_storage", b"stream_detail"),
    (b"name", b"cluster", b"config", b"state", b"mirror", b"sources", b"consumer_detail"),
    (b"cluster", b"name", b"num_pending", b"num_ack_pending", b"config", b"num_redelivered",
     b"num_waiting", b"delivered", b"ack_floor"),
    (b"leader", b"replicas"),
    (b"durable_name", b"metadata"),
    (b"level",),
    (b"leader", b"cluster_size", b"pending", b"replicas", b"snapshot"),
    (b"name", b"offline", b"current", b"lag", b"active"),
    (b"leader", b"raft_group", b"replicas"),
    (b"num_replicas", b"metadata", b"max_age", b"max_bytes", b"max_msgs"),
    (b"messages", b"bytes", b"first_seq", b"last_seq", b"num_deleted", b"num_subjects",
     b"consumer_count"),
    (b"name", b"lag", b"active"),
    (b"consumer_seq", b"stream_seq"),
    (b"pending_entries", b"pending_size", b"last_time", b"last_duration"),
)
cdef const char *jz_key_names[80]
cdef Py_ssize_t jz_key_lens[80]
cdef JzTable jz_tables[JZ_NTABLES]
cdef Py_ssize_t jz_k = 0
cdef int jz_t
cdef bytes jz_name
for jz_t in range(JZ_NTABLES):
    jz_tables[jz_t].names = &jz_key_names[jz_k]
    jz_tables[jz_t].lens = &jz_key_lens[jz_k]
    jz_tables[jz_t].count = len(_JZ_KEYS[jz_t])
    for jz_name in _JZ_KEYS[jz_t]:
        jz_key_names[jz_k] = <bytes>jz_name
        jz_key_lens[jz_k] = len(jz_name)
        jz_k += 1

# The child level of each node kind, and the key that holds its children.
cdef int JZ_CHILD_KEY[3]
JZ_CHILD_KEY[:] = [JZ_D_DETAILS, JZ_A_STREAMS, JZ_S_CONSUMERS]


cdef inline int jz_match(const JzTable *t, const unsigned char *k, Py_ssize_t n) noexcept nogil:
    cdef int j
    for j in range(t.count):
        if t.lens[j] == n and t.names[j][0] == k[0] and memcmp(t.names[j], k, n) == 0:
            return j
    return -1


cdef Py_ssize_t jz_key(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, const JzTable *t,
                       int *field) except -1 nogil:
    # i is at the opening quote of a key; returns the cursor at its value. An escaped spelling of
    # a known key is still that key.
    cdef bint esc = False
    cdef Py_ssize_t start = i + 1, klen
    cdef unsigned char tmp[96]
    cdef const unsigned char *k = b + start
    if i >= n:
        return cz_fail("truncated body", n)
    if b[i] != b'"':
        return cz_fail("expected a key", i)
    i = cz_string_end(b, n, start, &esc)
    klen = i - 1 - start
    field[0] = -1
    if esc and klen <= 96:
        klen = cz_unescape(k, klen, tmp, start)
        k = tmp
    if klen > 0 and (not esc or k == tmp):
        field[0] = jz_match(t, k, klen)
    return cz_colon(b, n, i)


cdef inline Py_ssize_t jz_next(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                               unsigned char close) except -1 nogil:
    # After a member: the cursor at the next one, or -1 - (the cursor past the container).
    i = cz_skip_ws(b, n, i)
    if i >= n:
        return cz_fail("truncated body", n)
    if b[i] == b',':
        return cz_skip_ws(b, n, i + 1)
    if b[i] == close:
        return -2 - i
    return cz_fail("expected ',' or the end of a container", i)


cdef Py_ssize_t jz_fields(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, const JzTable *t,
                          Py_ssize_t *off, int depth) except -1 nogil:
    # i is at the '{' of an object with depth containers around it; records where the values of
    # t's keys start, in off (which the caller cleared), and steps over the object.
    cdef int field
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        return i + 1
    while True:
        i = jz_key(b, n, i, t, &field)
        if field >= 0:
            off[field] = i
        i = cz_skip_value(b, n, i, depth + 1)
        i = jz_next(b, n, i, b'}')
        if i < 0:
            return -1 - i


cdef inline void jz_clear(Py_ssize_t *off, int count) noexcept nogil:
    cdef int j
    for j in range(count):
        off[j] = -1


cdef Py_ssize_t jz_node(JzScan *s, const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        int kind, JzNode *node, int depth) except -1 nogil:
    # i is at the '{' of a node of the given level (JZ_T_DOC..JZ_T_CONSUMER).
    cdef int field
    cdef const JzTable *t = &jz_tables[kind]
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        return i + 1
    while True:
        i = jz_key(b, n, i, t, &field)
        if field >= 0:
            node.off[field] = i
        if field >= 0 and kind < JZ_T_CONSUMER and field == JZ_CHILD_KEY[kind] and b[i] == b'[':
            i = jz_children(s, b, n, i, kind + 1, node, depth + 1)
        elif kind == JZ_T_CONSUMER and b[i] == b'{' and field == JZ_C_CLUSTER:
            jz_clear(node.off + JZ_C_LEADER, 2)
            i = jz_fields(b, n, i, &jz_tables[JZ_T_CONSUMER_CLUSTER], node.off + JZ_C_LEADER,
                          depth + 1)
        elif kind == JZ_T_CONSUMER and b[i] == b'{' and field == JZ_C_CONFIG:
            jz_clear(node.off + JZ_C_DURABLE, 2)
            i = jz_fields(b, n, i, &jz_tables[JZ_T_CONSUMER_CONFIG], node.off + JZ_C_DURABLE,
                          depth + 1)
        else:
            i = cz_skip_value(b, n, i, depth + 1)
        i = jz_next(b, n, i, b'}')
        if i < 0:
            return -1 - i


cdef Py_ssize_t jz_children(JzScan *s, const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                            int kind, JzNode *parent, int depth) except -1 nogil:
    # i is at the '[' of the children of parent; each becomes a node of the given level, even
    # one that is not an object (the walk refuses it if it reads it).
    cdef JzNodes *level = &s.levels[kind - 1]
    cdef JzNode *node
    parent.first = level.n
    parent.count = 0
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b']':
        return i + 1
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        cz_reserve(<void **>&level.v, &level.cap, level.n + 1, sizeof(JzNode))
        node = &level.v[level.n]
        level.n += 1
        parent.count += 1
        node.at = i
        node.first = node.count = 0
        jz_clear(node.off, JZ_MAX_KEYS)
        if b[i] == b'{':
            i = jz_node(s, b, n, i, kind, node, depth + 1)
        else:
            i = cz_skip_value(b, n, i, depth + 1)
        i = jz_next(b, n, i, b']')
        if i < 0:
            return -1 - i


cdef int jz_body(JzScan *s, const unsigned char *b, Py_ssize_t n) except -1 nogil:
    cdef Py_ssize_t i = cz_skip_ws(b, n, 0)
    cdef int k
    for k in range(3):
        s.levels[k].n = 0
    s.doc.first = s.doc.count = 0
    jz_clear(s.doc.off, JZ_MAX_KEYS)
    if i >= n:
        return cz_fail("empty body", n)
    if b[i] != b'{':
        # The reference's orjson reads any JSON value; the walk refuses all but an object.
        i = cz_skip_value(b, n, i, 1)
        i = cz_skip_ws(b, n, i)
        if i != n:
            return cz_fail("data after the JSON value", i)
        return cz_fail("body is not a JSON object", 0)
    s.doc.at = i
    i = jz_node(s, b, n, i, JZ_T_DOC, &s.doc, 0)
    i = cz_skip_ws(b, n, i)
    if i != n:
        return cz_fail("data after the JSON object", i)
    return 0


# ---------------------------------------------------------------------------------------------
# Values at recorded offsets (the scan checked their syntax): no GIL, no error of their own.

cdef inline bint jz_is(const unsigned char *b, Py_ssize_t off, unsigned char c) noexcept nogil:
    return off >= 0 and b[off] == c


cdef inline bint jz_null(const unsigned char *b, Py_ssize_t off) noexcept nogil:
    # Absent or null: what Python's dict.get gives None for.
    return off < 0 or b[off] == b'n'


cdef bint jz_uint(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, uint64_t *out) noexcept nogil:
    # Whether the value at i is a count (cz_uint's rule: an integer in 0..2**64-1, or -0).
    cdef Py_ssize_t start = i
    cdef uint64_t v = 0, d
    if i < 0:
        return False
    if b[i] == b'-' and cz_minus_zero(b, n, i):
        out[0] = 0
        return True
    if not cz_digit(b[i]) or (b[i] == b'0' and i + 1 < n and cz_digit(b[i + 1])):
        return False
    while i < n and cz_digit(b[i]):
        d = b[i] - 48
        if i - start >= 19 and v > (CZ_U64_MAX - d) // 10:
            return False
        v = v * 10 + d
        i += 1
    if i < n and (b[i] == b'.' or b[i] == b'e' or b[i] == b'E'):
        return False
    out[0] = v
    return True


cdef bint jz_truthy(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # Python's truth of the decoded value; a number is false when every digit of its mantissa
    # is 0, or when jz_number_zero says a negative exponent makes it read as 0.0.
    cdef unsigned char c
    if i < 0:
        return False
    c = b[i]
    if c == b'"':
        return b[i + 1] != b'"'
    if c == b't':
        return True
    if c == b'[' or c == b'{':
        i = cz_skip_ws(b, n, i + 1)
        return b[i] != b']' and b[i] != b'}'
    if c == b'-' or cz_digit(c):
        return not jz_number_zero(b, n, i)
    return False


cdef bint jz_number_zero(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    cdef bint digits_zero = True
    cdef Py_ssize_t start = i, end
    cdef char small[64]
    cdef char *text = small
    cdef double value
    if b[i] == b'-':
        i += 1
    while i < n and (cz_digit(b[i]) or b[i] == b'.'):
        if b[i] != b'.' and b[i] != b'0':
            digits_zero = False
        i += 1
    if digits_zero:
        return True
    if i + 1 >= n or (b[i] != b'e' and b[i] != b'E') or b[i + 1] != b'-':
        return False
    # Only a negative exponent can make a number read as 0.0; strtod says whether it does.
    end = jz_number_end(b, n, i)
    if end - start >= 64:
        text = <char *>malloc(end - start + 1)
        if text == NULL:
            return False
    memcpy(text, b + start, end - start)
    text[end - start] = 0
    value = strtod(text, NULL)
    if text != small:
        free(text)
    return value == 0.0


cdef inline Py_ssize_t jz_number_end(const unsigned char *b, Py_ssize_t n,
                                     Py_ssize_t i) noexcept nogil:
    while i < n and (cz_digit(b[i]) or b[i] == b'+' or b[i] == b'-' or b[i] == b'.'
                     or b[i] == b'e' or b[i] == b'E'):
        i += 1
    return i
