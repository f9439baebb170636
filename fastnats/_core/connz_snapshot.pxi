# /connz snapshot: the families ConnzAggregator.families() returns, built with the GIL after a
# commit, and the release of label values nothing refers to any more. Included by _core.pyx.
#
# Every family name comes from its catalogue entry; a label value becomes a Python str once, when
# its interned id is first published (escaped by metrics.client_value, so that no client value
# reads as one of the exporter's markers), and is reused until the id is dropped.

from fastnats.metrics import (
    CONNZ as _CONNZ,
    NATS_CLIENT_CONNECTIONS,
    NATS_CLIENT_CONNECTIONS_LOST_TOTAL,
    NATS_CLIENT_GROUP_EVICTIONS_TOTAL,
    NATS_CLIENT_GROUP_OVERFLOW_TOTAL,
    NATS_CLIENT_GROUPS,
    NATS_CLIENT_IN_BYTES_TOTAL,
    NATS_CLIENT_IN_MESSAGES_TOTAL,
    NATS_CLIENT_OUT_BYTES_TOTAL,
    NATS_CLIENT_OUT_MESSAGES_TOTAL,
    NATS_CLIENT_PENDING_BYTES,
    NATS_CLIENT_SUBSCRIPTIONS,
    NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND,
    NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND,
    NATS_CLIENT_TOP_PENDING_BYTES,
    NATS_CONNECTION_IN_BYTES_TOTAL,
    NATS_CONNECTION_IN_MESSAGES_TOTAL,
    NATS_CONNECTION_OUT_BYTES_TOTAL,
    NATS_CONNECTION_OUT_MESSAGES_TOTAL,
    NATS_CONNECTION_PENDING_BYTES,
    NATS_CONNECTION_RTT_SECONDS,
    NATS_CONNECTION_SERIES_OMITTED,
    NATS_CONNECTION_SUBSCRIPTIONS,
    OTHER_GROUP as _OTHER_GROUP,
    UNKNOWN_GROUP as _UNKNOWN_GROUP,
    client_value as _client_value,
)

# The top-K families in CZ_T_* order.
_TOPS = (NATS_CLIENT_TOP_PENDING_BYTES, NATS_CLIENT_TOP_IN_MESSAGES_PER_SECOND,
         NATS_CLIENT_TOP_OUT_MESSAGES_PER_SECOND)


cdef dict cz_publish(ConnzAggregator agg):
    cdef dict fams = {m.name: [] for m in _CONNZ}
    cz_publish_strs(agg)
    cz_publish_groups(agg, fams)
    cz_publish_dists(agg, fams)
    cz_publish_tops(agg, fams)
    if agg.per_connection:
        cz_publish_per_conn(agg, fams)
    return fams


cdef int cz_publish_strs(ConnzAggregator agg) except -1:
    # The Python str of every id interned by this update that something refers to.
    cdef Py_ssize_t k
    cdef int32_t ident
    cdef CzStr *s
    if len(agg.py_strs) < agg.strs.n:
        agg.py_strs.extend([None] * (agg.strs.n - len(agg.py_strs)))
    for k in range(agg.strs.nfresh):
        ident = agg.strs.fresh[k]
        s = &agg.strs.ents[ident]
        if s.live and s.refs > 0:
            agg.py_strs[ident] = _client_value(PyUnicode_DecodeUTF8(s.data, s.len, NULL))
    agg.strs.nfresh = 0
    return 0


cdef inline str cz_py_str(ConnzAggregator agg, int32_t ident):
    return <str>agg.py_strs[ident]


cdef tuple cz_conn_labels(ConnzAggregator agg, int32_t st):
    # Values of metrics.CONNECTION_LABELS.
    cdef CzConn *c = &agg.conns[st]
    return (str(c.cid), cz_py_str(agg, c.name), cz_py_str(agg, c.account), cz_py_str(agg, c.ip))


cdef inline uint64_t cz_group_total(const CzGroup *g, int q) noexcept nogil:
    return cz_sat_sub(cz_sat_add(g.closed[q], g.open_ctr[q]), g.debt[q])


cdef int cz_publish_groups(ConnzAggregator agg, dict fams) except -1:
    # One sample per live group in each group family, sorted by label values.
    cdef Py_ssize_t k, j
    cdef CzGroup *g
    cdef tuple labels
    cdef list rows = []
    cdef list connections = fams[NATS_CLIENT_CONNECTIONS.name]
    cdef list subscriptions = fams[NATS_CLIENT_SUBSCRIPTIONS.name]
    cdef list pending = fams[NATS_CLIENT_PENDING_BYTES.name]
    cdef list in_msgs = fams[NATS_CLIENT_IN_MESSAGES_TOTAL.name]
    cdef list out_msgs = fams[NATS_CLIENT_OUT_MESSAGES_TOTAL.name]
    cdef list in_bytes = fams[NATS_CLIENT_IN_BYTES_TOTAL.name]
    cdef list out_bytes = fams[NATS_CLIENT_OUT_BYTES_TOTAL.name]
    cdef list lost = fams[NATS_CLIENT_CONNECTIONS_LOST_TOTAL.name]
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        if not g.live:
            continue
        if g.other:
            labels = (_OTHER_GROUP,) * agg.nfields
        else:
            labels = tuple([cz_py_str(agg, g.key[j]) for j in range(agg.nfields)])
        rows.append((labels, k))
    rows.sort()
    for labels, k in rows:
        g = &agg.groups[k]
        connections.append((labels, g.conns))
        subscriptions.append((labels, g.subs))
        pending.append((labels, g.pending))
        in_msgs.append((labels, cz_group_total(g, CZ_CTR_IN_MSGS)))
        out_msgs.append((labels, cz_group_total(g, CZ_CTR_OUT_MSGS)))
        in_bytes.append((labels, cz_group_total(g, CZ_CTR_IN_BYTES)))
        out_bytes.append((labels, cz_group_total(g, CZ_CTR_OUT_BYTES)))
        lost.append((labels, g.lost))
    if agg.nfields == 0:
        # One series for everything: no group to tell the unknown ones from.
        if lost:
            lost[0] = ((), cz_sat_add(lost[0][1], agg.lost_unknown))
        else:
            lost.append(((), agg.lost_unknown))
    else:
        lost.append(((_UNKNOWN_GROUP,) * agg.nfields, agg.lost_unknown))
    fams[NATS_CLIENT_GROUPS.name].append(((), agg.ngroups))
    fams[NATS_CLIENT_GROUP_OVERFLOW_TOTAL.name].append(((), agg.overflow))
    fams[NATS_CLIENT_GROUP_EVICTIONS_TOTAL.name].append(((), agg.evictions))
    return 0


cdef int cz_publish_dists(ConnzAggregator agg, dict fams) except -1:
    # One sample per distribution: ((), (cumulative bucket counts, sum)), +Inf last.
    cdef Py_ssize_t k, j
    cdef uint64_t cumulative
    cdef const CzDist *d
    cdef list counts
    for k, (metric, bounds, seconds) in enumerate(_DISTRIBUTIONS):
        d = &agg.dist[k]
        counts = []
        cumulative = 0
        for j in range(d.nb + 1):
            cumulative += d.counts[j]
            counts.append(cumulative)
        fams[metric.name].append(((), (tuple(counts), d.fsum if seconds else d.isum)))
    return 0


cdef int cz_publish_tops(ConnzAggregator agg, dict fams) except -1:
    cdef Py_ssize_t k, j
    cdef const CzRec *r
    cdef list rows
    for k in range(CZ_NTOP):
        rows = fams[_TOPS[k].name]
        for j in range(agg.top[k].n):
            r = &agg.open_recs.v[agg.top[k].idx[j]]
            if k == CZ_T_PENDING:
                rows.append((cz_conn_labels(agg, r.state), r.pending))
            else:
                rows.append((cz_conn_labels(agg, r.state), r.rate[k - CZ_T_IN_RATE]))
    return 0


cdef int cz_publish_per_conn(ConnzAggregator agg, dict fams) except -1:
    # The first per_connection_max open connections by cid; the rest are only counted.
    cdef Py_ssize_t j, limit = min(agg.nper_conn, agg.per_connection_max)
    cdef const CzRec *r
    cdef tuple labels
    cdef list pending = fams[NATS_CONNECTION_PENDING_BYTES.name]
    cdef list subscriptions = fams[NATS_CONNECTION_SUBSCRIPTIONS.name]
    cdef list rtt = fams[NATS_CONNECTION_RTT_SECONDS.name]
    cdef list in_msgs = fams[NATS_CONNECTION_IN_MESSAGES_TOTAL.name]
    cdef list out_msgs = fams[NATS_CONNECTION_OUT_MESSAGES_TOTAL.name]
    cdef list in_bytes = fams[NATS_CONNECTION_IN_BYTES_TOTAL.name]
    cdef list out_bytes = fams[NATS_CONNECTION_OUT_BYTES_TOTAL.name]
    for j in range(limit):
        r = &agg.open_recs.v[<Py_ssize_t>agg.per_conn[2 * j + 1]]
        labels = cz_conn_labels(agg, r.state)
        pending.append((labels, r.pending))
        subscriptions.append((labels, r.subs))
        if r.flags & CZ_REC_RTT:
            rtt.append((labels, <double>r.rtt_ns / 1e9))
        in_msgs.append((labels, r.ctr[CZ_CTR_IN_MSGS]))
        out_msgs.append((labels, r.ctr[CZ_CTR_OUT_MSGS]))
        in_bytes.append((labels, r.ctr[CZ_CTR_IN_BYTES]))
        out_bytes.append((labels, r.ctr[CZ_CTR_OUT_BYTES]))
    fams[NATS_CONNECTION_SERIES_OMITTED.name].append(((), agg.nper_conn - limit))
    return 0


cdef int cz_sweep(ConnzAggregator agg) except -1:
    # Frees label values nothing refers to any more, including those of a failed update.
    cdef Py_ssize_t k
    cdef CzStr *s
    for k in range(agg.strs.n):
        s = &agg.strs.ents[k]
        if s.live and s.refs == 0:
            cz_strtab_drop(&agg.strs, <int32_t>k)
            if k < len(agg.py_strs):
                agg.py_strs[k] = None
    agg.strs.nfresh = 0
    return 0
