# /connz state: the groups and the connections a ConnzAggregator holds across updates, and the
# steps the commit (connz_aggregate.pxi) changes them by. Included by _core.pyx. None of it
# allocates: cz_reserve_commit made the room before the commit started.
#
# Group table policy. At most max_groups groups (and _other). When a new group finds the table
# full, it takes the place of a group with no connection held, in this order: first the groups
# that never carried traffic, then those whose connections all lived between two reads (never
# seen open), least recently active first, then oldest; the groups that existed when the commit
# began, and that are still such, are the candidates. Only if none is left does the connection
# go to _other. A client that opens throwaway names fills the table with groups of the first two
# kinds, which the next real client evicts; to hold a place, a group needs a connection that
# stays open across a refresh and carries traffic. Groups the table does not need keep their
# counters for group_ttl after their last connection left.


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


cdef void cz_gindex_remove(ConnzAggregator agg, int32_t g) noexcept nogil:
    # Deletion from linear probing: the entries after the hole that may not skip it move back.
    cdef Py_ssize_t mask = agg.gicap - 1, hole, j, home
    hole = agg.groups[g].hash & mask
    while agg.gindex[hole] != g:
        hole = (hole + 1) & mask
    j = hole
    while True:
        j = (j + 1) & mask
        if agg.gindex[j] < 0:
            break
        home = agg.groups[agg.gindex[j]].hash & mask
        if (hole < j and hole < home <= j) or (hole > j and (home > hole or home <= j)):
            continue
        agg.gindex[hole] = agg.gindex[j]
        hole = j
    agg.gindex[hole] = -1


cdef inline int32_t cz_evict_class(const CzGroup *g) noexcept nogil:
    cdef int q
    if g.lost == 0:
        for q in range(CZ_NCTR):
            if g.closed[q]:
                break
        else:
            return CZ_EVICT_IDLE
    return CZ_EVICT_NEVER if g.opened else CZ_EVICT_FLEETING


cdef inline bint cz_evictable(const CzGroup *g) noexcept nogil:
    return g.live and not g.other and g.members == 0 and cz_evict_class(g) != CZ_EVICT_NEVER


cdef int cz_cmp_victim(const void *a, const void *b) noexcept nogil:
    cdef const CzVictim *x = <const CzVictim *>a
    cdef const CzVictim *y = <const CzVictim *>b
    if x.cls != y.cls:
        return -1 if x.cls < y.cls else 1
    if x.last_active != y.last_active:
        return -1 if x.last_active < y.last_active else 1
    return (x.seq > y.seq) - (x.seq < y.seq)


cdef int32_t cz_next_victim(ConnzAggregator agg) noexcept nogil:
    # The next group a full table gives up, or -1; the list is made once per commit, in the
    # order of the table policy above (cz_reserve_commit made its room).
    cdef Py_ssize_t k
    cdef CzGroup *g
    cdef CzVictim *v
    if not agg.victims_ready:
        agg.nvictims = 0
        for k in range(agg.ngroup_slots):
            g = &agg.groups[k]
            if cz_evictable(g) and g.seq < agg.commit_seq:
                v = &agg.victims[agg.nvictims]
                v.cls = cz_evict_class(g)
                v.last_active = g.last_active
                v.seq = g.seq
                v.slot = <int32_t>k
                agg.nvictims += 1
        qsort(agg.victims, agg.nvictims, sizeof(CzVictim), cz_cmp_victim)
        agg.victim_at = 0
        agg.victims_ready = True
    while agg.victim_at < agg.nvictims:
        v = &agg.victims[agg.victim_at]
        agg.victim_at += 1
        g = &agg.groups[v.slot]
        # Since the list was made it may have taken a connection or traffic, or gone.
        if g.seq == v.seq and cz_evictable(g) and cz_evict_class(g) == v.cls:
            return v.slot
    return -1


cdef void cz_drop_group(ConnzAggregator agg, int32_t g) noexcept nogil:
    # A group without members leaves the table, with its label values; the caller rebuilds or
    # updates the index.
    cdef int q
    cdef CzGroup *grp = &agg.groups[g]
    grp.live = 0
    if grp.other:
        agg.other = -1
        return
    for q in range(agg.nfields):
        agg.strs.ents[grp.key[q]].refs -= 1
    agg.ngroups -= 1


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
    grp.seq = agg.group_seq
    agg.group_seq += 1
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
    # The group of a connection seen for the first time; in a full table it takes the place of
    # a group the policy gives up, else it goes to _other.
    cdef int32_t key[6]
    cdef int32_t k, g, victim
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
    victim = cz_next_victim(agg)
    if victim >= 0:
        cz_gindex_remove(agg, victim)
        cz_drop_group(agg, victim)
        agg.evictions += 1
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


cdef void cz_lose(ConnzAggregator agg, int32_t st) noexcept nogil:
    # The connection left without a closed entry to read: what was last seen of it is counted
    # (folded already), what it did after is lost.
    cdef CzGroup *g = &agg.groups[agg.conns[st].group]
    g.lost = cz_sat_add(g.lost, 1)
    agg.lost_known = cz_sat_add(agg.lost_known, 1)


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
    agg.clients_read += 1
    return st


# ---------------------------------------------------------------------------------------------
# The cids read, and the floor below which every cid is settled (see connz_aggregate.pxi).

cdef void cz_map_drop_all(CzMap *m) noexcept nogil:
    # Empties a map; a big one gives its memory back (cz_map_reserve starts again from 0).
    if m.cap > 4096:
        free(m.slots)
        m.slots = NULL
        m.cap = 0
        m.used = m.deleted = 0
    else:
        cz_map_clear(m)


cdef inline void cz_saw(ConnzAggregator agg, uint64_t cid) noexcept nogil:
    # A read showed this cid; cz_reserve_commit made room for it. Within an update, ``seen`` is
    # also what makes a cid listed twice count once (cz_commit_closed): so the first update
    # keeps what it reads too, although its floor settles it all at its end (cz_advance_floor).
    if cid > agg.floor and cz_map_get(&agg.seen, cid) < 0:
        cz_map_put(&agg.seen, cid, 0)


cdef void cz_advance_floor(ConnzAggregator agg, double now) noexcept nogil:
    # Moves the floor up to the highest cid of old enough updates and counts the holes it
    # passes (see the top of connz_aggregate.pxi).
    cdef uint64_t new_floor = agg.floor, lost_to = agg.floor, nseen_lost = 0, key, lost, most, read
    cdef uint32_t epoch = agg.floor_epoch
    cdef Py_ssize_t k
    cdef int32_t at
    if agg.epoch == 1:
        # What the first update did not show is history: nothing to count.
        agg.floor = agg.watermark
        agg.floor_epoch = agg.epoch
        agg.first_accepted = agg.accepted
        agg.first_reads = agg.clients_read
        cz_map_drop_all(&agg.seen)
        return
    while agg.hist_len and agg.hist_epoch[agg.hist_head] + CZ_FLOOR_LAG <= agg.epoch and (
            now - agg.hist_now[agg.hist_head] >= agg.closed_slack or agg.hist_len == CZ_HISTORY):
        at = agg.hist_head
        if agg.overflow_epoch > epoch:
            lost_to = agg.hist_watermark[at]
        new_floor = agg.hist_watermark[at]
        epoch = agg.hist_epoch[at]
        agg.hist_head = (agg.hist_head + 1) % CZ_HISTORY
        agg.hist_len -= 1
    at = (agg.hist_head + agg.hist_len) % CZ_HISTORY
    agg.hist_now[at] = now
    agg.hist_watermark[at] = agg.watermark
    agg.hist_epoch[at] = agg.epoch
    agg.hist_len += 1
    agg.floor_epoch = epoch
    if new_floor == agg.floor:
        return
    for k in range(agg.seen.cap):
        if agg.seen.slots[k].val >= 0:
            key = agg.seen.slots[k].key
            if key <= new_floor:
                if key <= lost_to:
                    nseen_lost += 1
                agg.seen.slots[k].val = CZ_DELETED
                agg.seen.used -= 1
                agg.seen.deleted += 1
    lost = cz_sat_add(agg.lost_unknown, lost_to - agg.floor - nseen_lost)
    if agg.first_accepted >= 0 and agg.accepted >= agg.first_accepted:
        # Routes, gateways and the server's own clients take cids too: no more connections
        # were lost unseen than clients accepted since the first update, less those read.
        most = <uint64_t>(agg.accepted - agg.first_accepted)
        read = agg.clients_read - agg.first_reads
        most = most - read if most > read else 0
        if lost > most:
            lost = most if most > agg.lost_unknown else agg.lost_unknown
    agg.lost_unknown = lost
    agg.floor = new_floor
    if agg.seen.used == 0:
        cz_map_drop_all(&agg.seen)
