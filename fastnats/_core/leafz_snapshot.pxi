# /leafz snapshot: the families LeafzAggregator.families() returns, built with the GIL after a
# commit, and the release of label values nothing refers to any more. Included by _core.pyx.

from fastnats.metrics import (
    LEAFZ as _LEAFZ,
    NATS_LEAFNODE_CLOSED_TOTAL,
    NATS_LEAFNODE_CONNECTION_RTT_SECONDS,
    NATS_LEAFNODE_CONNECTIONS,
    NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL,
    NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL,
    NATS_LEAFNODE_GROUPS,
    NATS_LEAFNODE_IN_BYTES_TOTAL,
    NATS_LEAFNODE_IN_MESSAGES_TOTAL,
    NATS_LEAFNODE_OUT_BYTES_TOTAL,
    NATS_LEAFNODE_OUT_MESSAGES_TOTAL,
    NATS_LEAFNODE_SUBSCRIPTIONS,
    NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND,
    NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND,
    NATS_LEAFNODE_TOP_RTT_SECONDS,
    OTHER_GROUP as _LZ_OTHER_GROUP,
    client_value as _lz_client_value,
)

# The group counter families, in CZ_CTR_* order, and the top-K ones in LZ_T_* order.
_LZ_COUNTERS = (NATS_LEAFNODE_IN_MESSAGES_TOTAL, NATS_LEAFNODE_OUT_MESSAGES_TOTAL,
                NATS_LEAFNODE_IN_BYTES_TOTAL, NATS_LEAFNODE_OUT_BYTES_TOTAL)
_LZ_TOPS = (NATS_LEAFNODE_TOP_RTT_SECONDS, NATS_LEAFNODE_TOP_IN_MESSAGES_PER_SECOND,
            NATS_LEAFNODE_TOP_OUT_MESSAGES_PER_SECOND)


cdef int lz_publish_strs(LeafzAggregator agg) except -1:
    cdef Py_ssize_t k
    cdef int32_t ident
    cdef CzStr *s
    if len(agg.py_strs) < agg.strs.n:
        agg.py_strs.extend([None] * (agg.strs.n - len(agg.py_strs)))
    for k in range(agg.strs.nfresh):
        ident = agg.strs.fresh[k]
        s = &agg.strs.ents[ident]
        if s.live and s.refs > 0:
            agg.py_strs[ident] = _lz_client_value(PyUnicode_DecodeUTF8(s.data, s.len, NULL))
    agg.strs.nfresh = 0
    return 0


cdef list lz_rows(LeafzAggregator agg):
    # The live groups' label values and slots, sorted; made again only when groups change.
    cdef list rows = []
    cdef Py_ssize_t k, j
    cdef LzGroup *g
    if not agg.rows_stale and agg.rows is not None:
        return agg.rows
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        if g.live:
            rows.append(((_LZ_OTHER_GROUP,) * agg.nfields if g.other else
                         tuple([agg.py_strs[g.key[j]] for j in range(agg.nfields)]), k))
    rows.sort()
    agg.rows = rows
    agg.rows_stale = False
    return rows


cdef dict lz_publish(LeafzAggregator agg):
    cdef dict fams = {m.name: [] for m in _LEAFZ}
    cdef list counts = [], ranked
    cdef list conns = fams[NATS_LEAFNODE_CONNECTIONS.name]
    cdef list subs = fams[NATS_LEAFNODE_SUBSCRIPTIONS.name]
    cdef list closes = fams[NATS_LEAFNODE_CLOSED_TOTAL.name]
    cdef list lost = fams[NATS_LEAFNODE_CONNECTIONS_LOST_TOTAL.name]
    cdef list totals = [fams[metric.name] for metric in _LZ_COUNTERS]
    cdef Py_ssize_t k, j
    cdef LzGroup *g
    cdef LzLeaf *c
    cdef const LzRank *rank
    cdef uint64_t cumulative = 0
    cdef tuple labels
    lz_publish_strs(agg)
    for labels, k in lz_rows(agg):
        g = &agg.groups[k]
        conns.append((labels, g.conns))
        subs.append((labels, g.subs))
        for j in range(CZ_NCTR):
            (<list>totals[j]).append((labels, cz_sat_add(g.closed[j], g.open_ctr[j])))
        closes.append((labels, g.closes))
        lost.append((labels, g.lost))
    fams[NATS_LEAFNODE_GROUPS.name].append(((), agg.ngroups))
    fams[NATS_LEAFNODE_GROUP_OVERFLOW_TOTAL.name].append(((), agg.overflow))
    for j in range(agg.rtt.nb + 1):
        cumulative += agg.rtt.counts[j]
        counts.append(cumulative)
    fams[NATS_LEAFNODE_CONNECTION_RTT_SECONDS.name].append(((), (tuple(counts), agg.rtt.fsum)))
    for k in range(LZ_NTOP):
        ranked = fams[_LZ_TOPS[k].name]
        for j in range(agg.top[k].n):
            rank = &agg.top[k].v[j]
            c = &agg.leafs[agg.recs.v[rank.rec].state]
            labels = (str(rank.id), agg.py_strs[c.labels[0]], agg.py_strs[c.labels[1]],
                      agg.py_strs[c.labels[2]])
            ranked.append((labels, <double>rank.ikey / 1e9 if k == LZ_T_RTT else rank.fkey))
    return fams


cdef void lz_sweep_tab(CzStrTab *t, list py_strs):
    cdef Py_ssize_t k
    for k in range(t.n):
        if t.ents[k].live and t.ents[k].refs == 0:
            cz_strtab_drop(t, <int32_t>k)
            if py_strs is not None and k < len(py_strs):
                py_strs[k] = None
    t.nfresh = 0
