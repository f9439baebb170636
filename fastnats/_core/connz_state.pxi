# /connz state: the groups and the connections a ConnzAggregator holds across updates, and the
# steps the commit (connz_aggregate.pxi) changes them by. Included by _core.pyx. None of it
# allocates: cz_reserve_commit made the room before the commit started.


cdef inline uint64_t cz_sat_add(uint64_t a, uint64_t b) noexcept nogil:
    # Sums saturate at 2**64-1 rather than wrap, so they never go backwards.
    return CZ_U64_MAX if a > CZ_U64_MAX - b else a + b


cdef inline uint64_t cz_sat_sub(uint64_t total, uint64_t part) noexcept nogil:
    # Takes back a part added with cz_sat_add; a saturated sum stays saturated.
    return total if total == CZ_U64_MAX else total - part


cdef uint64_t cz_group_hash(ConnzAggregator agg, const int32_t *key) noexcept nogil:
    cdef uint64_t h = <uint64_t>0x51ED270B27A5B3E1ULL
    cdef int32_t k
    for k in range(agg.nfields):
        h = (h ^ <uint64_t>(key[k] + 1)) * <uint64_t>0x9E3779B97F4A7C15ULL
        h ^= h >> 31
    return h


cdef void cz_rebuild_gindex(ConnzAggregator agg) noexcept nogil:
    cdef Py_ssize_t k, slot, mask = agg.gicap - 1
    for k in range(agg.gicap):
        agg.gindex[k] = -1
    for k in range(agg.ngroup_slots):
        if agg.groups[k].live and not agg.groups[k].other:
            slot = agg.groups[k].hash & mask
            while agg.gindex[slot] >= 0:
                slot = (slot + 1) & mask
            agg.gindex[slot] = <int32_t>k


cdef int32_t cz_new_group(ConnzAggregator agg, const int32_t *key, uint64_t h, bint other,
                          double now) noexcept nogil:
    cdef int32_t g = -1, k
    cdef Py_ssize_t slot
    cdef CzGroup *grp
    if agg.ngroups + (agg.other >= 0) < agg.ngroup_slots:
        for k in range(agg.ngroup_slots):
            if not agg.groups[k].live:
                g = k
                break
    if g < 0:
        g = <int32_t>agg.ngroup_slots
        agg.ngroup_slots += 1
    grp = &agg.groups[g]
    memset(grp, 0, sizeof(CzGroup))
    grp.live = 1
    grp.other = other
    grp.hash = h
    grp.last_active = now
    if other:
        agg.other = g
        return g
    for k in range(agg.nfields):
        grp.key[k] = key[k]
        agg.strs.ents[key[k]].refs += 1
    slot = h & (agg.gicap - 1)
    while agg.gindex[slot] >= 0:
        slot = (slot + 1) & (agg.gicap - 1)
    agg.gindex[slot] = g
    agg.ngroups += 1
    return g


cdef int32_t cz_group_of(ConnzAggregator agg, const int32_t *ids, double now) noexcept nogil:
    # The group of a connection seen for the first time; overflow goes to _other.
    cdef int32_t key[6]
    cdef int32_t k, g
    cdef uint64_t h
    cdef Py_ssize_t slot, mask = agg.gicap - 1
    for k in range(agg.nfields):
        key[k] = ids[agg.fields[k]]
    h = cz_group_hash(agg, key)
    slot = h & mask
    while agg.gindex[slot] >= 0:
        g = agg.gindex[slot]
        if agg.groups[g].hash == h and memcmp(agg.groups[g].key, key,
                                              agg.nfields * sizeof(int32_t)) == 0:
            return g
        slot = (slot + 1) & mask
    if agg.ngroups < agg.max_groups:
        return cz_new_group(agg, key, h, False, now)
    agg.overflow += 1
    if agg.other >= 0:
        return agg.other
    return cz_new_group(agg, key, h, True, now)


cdef void cz_fold(ConnzAggregator agg, int32_t st, const uint64_t *ctr, double now) noexcept nogil:
    # Counters of a connection that left (or went missing) join its group's closed total.
    cdef CzGroup *g = &agg.groups[agg.conns[st].group]
    cdef int k
    for k in range(CZ_NCTR):
        g.closed[k] = cz_sat_add(g.closed[k], ctr[k])
    g.last_active = now


cdef void cz_set_labels(ConnzAggregator agg, int32_t st, const CzRec *r, double now) noexcept nogil:
    # Joins the connection to the group of the record's labels and takes its own labels.
    cdef CzConn *c = &agg.conns[st]
    c.group = cz_group_of(agg, r.ids, now)
    agg.groups[c.group].members += 1
    c.name = r.ids[CZ_L_NAME]
    c.account = r.ids[CZ_L_ACCOUNT]
    c.ip = r.ids[CZ_L_IP]
    agg.strs.ents[c.name].refs += 1
    agg.strs.ents[c.account].refs += 1
    agg.strs.ents[c.ip].refs += 1
    c.unnamed = not cz_rec_named(r)


cdef void cz_drop_labels(ConnzAggregator agg, int32_t st) noexcept nogil:
    cdef CzConn *c = &agg.conns[st]
    agg.groups[c.group].members -= 1
    agg.strs.ents[c.name].refs -= 1
    agg.strs.ents[c.account].refs -= 1
    agg.strs.ents[c.ip].refs -= 1


cdef void cz_forget(ConnzAggregator agg, int32_t st) noexcept nogil:
    # Drops a cid whose counters are already in its group's closed total.
    cdef CzConn *c = &agg.conns[st]
    cz_drop_labels(agg, st)
    cz_map_del(&agg.cids, c.cid)
    c.used = 0
    agg.conns_free[agg.nconns_free] = st
    agg.nconns_free += 1


cdef int32_t cz_new_conn(ConnzAggregator agg, const CzRec *r, double now) noexcept nogil:
    cdef int32_t st
    cdef CzConn *c
    if agg.nconns_free:
        agg.nconns_free -= 1
        st = agg.conns_free[agg.nconns_free]
    else:
        st = <int32_t>agg.nconns_slots
        agg.nconns_slots += 1
    c = &agg.conns[st]
    c.cid = r.cid
    c.start_hash = r.start_hash
    memcpy(c.ctr, r.ctr, sizeof(c.ctr))
    c.seen_at = now
    c.absent = -1
    cz_set_labels(agg, st, r, now)
    c.used = 1
    cz_map_put(&agg.cids, r.cid, st)
    return st
