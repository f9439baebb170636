# /leafz aggregate: the LeafzAggregator class and step 3 of its update, the commit. Included by
# _core.pyx, after the /connz parts whose JSON cursor, durations, string table, id map and
# closed-body scan it uses; its scan is in leafz_scan.pxi, its snapshot in leafz_snapshot.pxi.
#
# An update is three steps, so that the collector can ask /connz for closed leafnodes only when
# some are gone: scan() reads a /leafz body without the GIL into one record per leafnode and says
# how many held leafnodes it lacks; match_closed() reads /connz?state=closed pages and keeps the
# final counters of those it finds; commit() folds it all into the state and the snapshot. Until
# commit() nothing a caller can see changes, and a decode error in any step changes nothing.
#
# Counting rules, which _reference.LeafzAggregator follows too. A listed leafnode's counters count
# in its group. A held id the body lacks has vanished: its last-seen counters join the group's
# closed total and it counts once in the group's closes. Once its closed entry is found (the same
# commit, or a later one while it waits), what the entry adds to the last-seen counters joins
# too. An entry not found within LZ_ABSENT_GRACE more commits and closed_slack seconds is given up:
# the leafnode counts in the group's lost total. An id listed again while it waits takes back
# what was folded (the closes stay counted). An id listed with a counter below the one held is
# another leafnode (a restart nobody saw): the held one vanishes and is lost at once. The first
# listing of an id wins over later ones in the same body. A full table (max_groups) sends the new
# groups' leafnodes to _other; a group with no leafnode held goes after group_ttl.

from fastnats.errors import LeafzDecodeError
from fastnats.metrics import (
    CONNZ_RTT_BUCKETS as _LZ_RTT_BOUNDS,
    DEFAULT_LEAF_GROUP_BY as _DEFAULT_LEAF_GROUP_BY,
    LEAF_GROUP_BY_FIELDS as _LEAF_GROUP_BY_FIELDS,
    LEAFZ as _LEAFZ,
    NATS_LEAFNODE_CONNECTION_RTT_SECONDS,
)


# ---------------------------------------------------------------------------------------------
# Phase 3: the commit. Its allocations are made first; the commit itself cannot fail.

cdef int lz_reserve_commit(LeafzAggregator agg) except -1 nogil:
    cdef Py_ssize_t new = 0, k, groups
    for k in range(agg.recs.n):
        if agg.recs.v[k].flags & LZ_REC_NEW:
            new += 1
    cz_map_reserve(&agg.ids, new)
    cz_reserve(<void **>&agg.leafs, &agg.leafs_cap, agg.nleaf_slots + new, sizeof(LzLeaf))
    cz_reserve(<void **>&agg.leafs_free, &agg.leafs_free_cap, agg.nleaf_slots + new + 1,
               sizeof(int32_t))
    groups = new + 1 if new < agg.max_groups else agg.max_groups + 1
    cz_reserve(<void **>&agg.groups, &agg.groups_cap, agg.ngroup_slots + groups, sizeof(LzGroup))
    return 0


cdef inline void lz_fold(LeafzAggregator agg, LzGroup *g, const uint64_t *ctr,
                         double now) noexcept nogil:
    cdef int q
    for q in range(CZ_NCTR):
        g.closed[q] = cz_sat_add(g.closed[q], ctr[q])
    g.last_active = now


cdef void lz_drop_group(LeafzAggregator agg, int32_t slot) noexcept nogil:
    cdef LzGroup *g = &agg.groups[slot]
    cdef int k
    g.live = 0
    agg.rows_stale = True
    if g.other:
        agg.other = -1
        return
    for k in range(agg.nfields):
        agg.strs.ents[g.key[k]].refs -= 1
    agg.gkeys.ents[g.gkey].refs -= 1
    agg.group_at[g.gkey] = -1
    agg.ngroups -= 1


cdef int32_t lz_new_group(LeafzAggregator agg, const LzRec *r, bint other,
                          double now) noexcept nogil:
    cdef int32_t slot = -1, k
    cdef LzGroup *g
    if agg.ngroups + (agg.other >= 0) < agg.ngroup_slots:
        for k in range(agg.ngroup_slots):
            if not agg.groups[k].live:
                slot = k
                break
    if slot < 0:
        slot = <int32_t>agg.ngroup_slots
        agg.ngroup_slots += 1
    g = &agg.groups[slot]
    memset(g, 0, sizeof(LzGroup))
    g.live = 1
    agg.rows_stale = True
    g.last_active = now
    if other:
        g.other = 1
        g.gkey = -1
        agg.other = slot
        return slot
    for k in range(agg.nfields):
        g.key[k] = r.ids[agg.fields[k]]
        agg.strs.ents[g.key[k]].refs += 1
    g.gkey = r.gkey
    agg.gkeys.ents[r.gkey].refs += 1
    agg.group_at[r.gkey] = slot
    agg.ngroups += 1
    return slot


cdef int32_t lz_group_of(LeafzAggregator agg, const LzRec *r, double now) noexcept nogil:
    # The group of a new leafnode; in a full table, _other.
    cdef int32_t slot = agg.group_at[r.gkey]
    if slot >= 0:
        return slot
    if agg.ngroups < agg.max_groups:
        return lz_new_group(agg, r, False, now)
    agg.overflow += 1
    if agg.other >= 0:
        return agg.other
    return lz_new_group(agg, r, True, now)


cdef int32_t lz_new_leaf(LeafzAggregator agg, const LzRec *r, double now) noexcept nogil:
    cdef int32_t st, k
    cdef LzLeaf *c
    if agg.nleafs_free:
        agg.nleafs_free -= 1
        st = agg.leafs_free[agg.nleafs_free]
    else:
        st = <int32_t>agg.nleaf_slots
        agg.nleaf_slots += 1
    c = &agg.leafs[st]
    memset(c, 0, sizeof(LzLeaf))
    c.id = r.id
    c.used = 1
    c.absent = -1
    c.listed = agg.scan_seq
    c.group = lz_group_of(agg, r, now)
    agg.groups[c.group].members += 1
    c.labels[0] = r.ids[LZ_L_NAME]
    c.labels[1] = r.ids[LZ_L_ACCOUNT]
    c.labels[2] = r.ids[LZ_L_IP]
    for k in range(3):
        agg.strs.ents[c.labels[k]].refs += 1
    cz_map_put(&agg.ids, r.id, st)
    return st


cdef void lz_forget(LeafzAggregator agg, int32_t st) noexcept nogil:
    cdef LzLeaf *c = &agg.leafs[st]
    cdef int k
    agg.groups[c.group].members -= 1
    for k in range(3):
        agg.strs.ents[c.labels[k]].refs -= 1
    cz_map_del(&agg.ids, c.id)
    c.used = 0
    agg.leafs_free[agg.nleafs_free] = st
    agg.nleafs_free += 1


cdef void lz_vanish(LeafzAggregator agg, int32_t st, double now) noexcept nogil:
    # A listed leafnode is gone: its last-seen counters join the closed total, once.
    cdef LzLeaf *c = &agg.leafs[st]
    cdef LzGroup *g = &agg.groups[c.group]
    if c.absent >= 0:
        return
    lz_fold(agg, g, c.ctr, now)
    g.closes = cz_sat_add(g.closes, 1)
    agg.closed = cz_sat_add(agg.closed, 1)
    c.absent = 0
    c.absent_since = now


cdef void lz_lose(LeafzAggregator agg, int32_t st) noexcept nogil:
    cdef LzGroup *g = &agg.groups[agg.leafs[st].group]
    g.lost = cz_sat_add(g.lost, 1)
    agg.lost = cz_sat_add(agg.lost, 1)
    lz_forget(agg, st)


cdef inline bint lz_better(const LzRank *a, const LzRank *b) noexcept nogil:
    if a.ikey != b.ikey:
        return a.ikey > b.ikey
    if a.fkey != b.fkey:
        return a.fkey > b.fkey
    return a.id < b.id


cdef void lz_offer(LzTop *t, int32_t most, int64_t ikey, double fkey, uint64_t ident,
                   int32_t rec) noexcept nogil:
    # Insertion into a short array kept best first; ties go to the lower id.
    cdef LzRank cand
    cdef int32_t pos = t.n
    cand.ikey = ikey
    cand.fkey = fkey
    cand.id = ident
    cand.rec = rec
    if t.n == most:
        if not lz_better(&cand, &t.v[most - 1]):
            return
        pos = most - 1
    else:
        t.n += 1
    while pos > 0 and lz_better(&cand, &t.v[pos - 1]):
        t.v[pos] = t.v[pos - 1]
        pos -= 1
    t.v[pos] = cand


cdef void lz_count(LeafzAggregator agg, LzRec *r, int32_t k, int32_t st, double now) noexcept nogil:
    # Record k, the leafnode in slot st, is listed now: its group, the distribution, the top-K.
    cdef LzLeaf *c = &agg.leafs[st]
    cdef LzGroup *g = &agg.groups[c.group]
    cdef int32_t most = <int32_t>agg.top_k
    cdef int q
    memcpy(c.ctr, r.ctr, sizeof(c.ctr))
    c.seen_at = now
    c.epoch = agg.epoch
    r.state = st
    g.conns += 1
    g.subs = cz_sat_add(g.subs, r.subs)
    for q in range(CZ_NCTR):
        g.open_ctr[q] = cz_sat_add(g.open_ctr[q], r.ctr[q])
    g.last_active = now
    if r.flags & LZ_REC_RTT:
        cz_dist_add(&agg.rtt, r.rtt_ns)
        agg.rtt.fsum += <double>r.rtt_ns / 1e9
    if not most:
        return
    if r.flags & LZ_REC_RTT and r.rtt_ns > 0:
        lz_offer(&agg.top[LZ_T_RTT], most, r.rtt_ns, 0.0, r.id, k)
    if r.flags & LZ_REC_RATE:
        if r.rate[0] > 0:
            lz_offer(&agg.top[LZ_T_IN_RATE], most, 0, r.rate[0], r.id, k)
        if r.rate[1] > 0:
            lz_offer(&agg.top[LZ_T_OUT_RATE], most, 0, r.rate[1], r.id, k)


cdef Py_ssize_t lz_commit_listed(LeafzAggregator agg, double now) noexcept nogil:
    # Every leafnode of the body, once. Returns how many.
    cdef Py_ssize_t k, count = 0
    cdef LzRec *r
    cdef LzLeaf *c
    cdef int32_t st
    cdef int q
    cdef double dt
    for k in range(agg.recs.n):
        r = &agg.recs.v[k]
        if r.flags & LZ_REC_DUP:
            continue
        st = cz_map_get(&agg.ids, r.id)
        if st >= 0 and agg.leafs[st].epoch == agg.epoch:
            r.flags |= LZ_REC_DUP
            continue
        if st >= 0 and r.flags & LZ_REC_NEW:
            # The same id with a counter that went back: another leafnode (a restart nobody
            # saw). The one held left no closed entry that could be told from this one.
            lz_vanish(agg, st, now)
            lz_lose(agg, st)
            st = -1
        if st < 0:
            st = lz_new_leaf(agg, r, now)
        else:
            c = &agg.leafs[st]
            if c.absent >= 0:
                # Listed again while its closed entry was awaited: it counts as listed again.
                for q in range(CZ_NCTR):
                    agg.groups[c.group].closed[q] = cz_sat_sub(agg.groups[c.group].closed[q],
                                                               c.ctr[q])
                c.absent = -1
            dt = now - c.seen_at
            if dt > 0:
                r.rate[0] = <double>(r.ctr[CZ_CTR_IN_MSGS] - c.ctr[CZ_CTR_IN_MSGS]) / dt
                r.rate[1] = <double>(r.ctr[CZ_CTR_OUT_MSGS] - c.ctr[CZ_CTR_OUT_MSGS]) / dt
                r.flags |= LZ_REC_RATE
        lz_count(agg, r, <int32_t>k, st, now)
        count += 1
    return count


cdef void lz_commit_gone(LeafzAggregator agg, double now) noexcept nogil:
    # Held leafnodes the body did not list: they vanish, take what their closed entry adds, or,
    # after the grace, are lost.
    cdef Py_ssize_t j
    cdef LzLeaf *c
    cdef LzGroup *g
    cdef int q
    for j in range(agg.nleaf_slots):
        c = &agg.leafs[j]
        if not c.used or c.epoch == agg.epoch:
            continue
        if c.absent < 0:
            lz_vanish(agg, <int32_t>j, now)
        else:
            c.absent += 1
        if c.found == agg.scan_seq:
            g = &agg.groups[c.group]
            for q in range(CZ_NCTR):
                if c.final[q] > c.ctr[q]:
                    g.closed[q] = cz_sat_add(g.closed[q], c.final[q] - c.ctr[q])
            g.last_active = now
            lz_forget(agg, <int32_t>j)
        elif c.absent >= LZ_ABSENT_GRACE and now - c.absent_since >= agg.closed_slack:
            lz_lose(agg, <int32_t>j)


cdef void lz_commit(LeafzAggregator agg, double now) noexcept nogil:
    cdef Py_ssize_t k
    cdef LzGroup *g
    agg.epoch += 1
    # Expire first, so that the room an expired group leaves is there for new leafnodes.
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        if g.live and g.members == 0 and now - g.last_active > agg.group_ttl:
            lz_drop_group(agg, <int32_t>k)
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        g.conns = g.subs = 0
        memset(g.open_ctr, 0, sizeof(g.open_ctr))
    memset(agg.rtt.counts, 0, sizeof(agg.rtt.counts))
    agg.rtt.fsum = 0.0
    for k in range(LZ_NTOP):
        agg.top[k].n = 0
    agg.count = lz_commit_listed(agg, now)
    lz_commit_gone(agg, now)


# ---------------------------------------------------------------------------------------------

cdef class LeafzAggregator:
    """Reads /leafz bodies and keeps per-group leafnode aggregates, an rtt distribution and
    top-K, with the final counters of closed leafnodes from /connz?state=closed.

    Built once per monitored server. Per refresh: ``scan(body)`` (returns how many leafnodes
    held before the body lacks), ``match_closed(page)`` for closed /connz pages while some are
    wanted, then ``commit(now)``; or ``update()`` for all three. The scans run without the GIL.
    ``families()`` returns the snapshot of the last commit.
    """

    def __cinit__(self):
        self.other = -1
        self.snapshot = {m.name: [] for m in _LEAFZ}

    def __init__(self, group_by=_DEFAULT_LEAF_GROUP_BY, Py_ssize_t max_groups=1000,
                 double group_ttl=3600.0, Py_ssize_t top_k=10, double closed_slack=2.0):
        cdef int k
        if self.ready:
            raise TypeError("a LeafzAggregator is initialised once")
        group_by = tuple(group_by)
        for f in group_by:
            if f not in _LEAF_GROUP_BY_FIELDS:
                raise ValueError(f"cannot group leafnodes by {f!r}; choose from "
                                 f"{', '.join(_LEAF_GROUP_BY_FIELDS)}")
        if len(set(group_by)) != len(group_by):
            raise ValueError(f"group_by lists a field twice: {group_by!r}")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not group_ttl >= 0:
            raise ValueError("group_ttl must be a non-negative number of seconds")
        if not 0 <= top_k <= 10_000:
            raise ValueError("top_k must be from 0 to 10000")
        if not 0 <= closed_slack <= 3600:
            raise ValueError("closed_slack must be from 0 to 3600 seconds")
        if len(_LZ_RTT_BOUNDS) > CZ_MAX_BOUNDS or \
                len(NATS_LEAFNODE_CONNECTION_RTT_SECONDS.buckets) != len(_LZ_RTT_BOUNDS) + 1:
            raise ValueError("the rtt buckets of the catalogue do not fit the distribution")
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = group_ttl
        self.top_k = top_k
        self.closed_slack = closed_slack
        self.nfields = len(group_by)
        for k in range(self.nfields):
            self.fields[k] = _LEAF_GROUP_BY_FIELDS.index(group_by[k])
        self.py_strs = []
        self.rtt.nb = len(_LZ_RTT_BOUNDS)
        for k, bound in enumerate(_LZ_RTT_BOUNDS):
            self.rtt.bounds[k] = cz_seconds_ns(bound)
        for k in range(LZ_NTOP):
            self.top[k].v = <LzRank *>PyMem_Malloc((top_k + 1) * sizeof(LzRank))
            if self.top[k].v == NULL:
                raise MemoryError()
        self.ready = True

    def __dealloc__(self):
        cdef int k
        free(self.recs.v)
        free(self.closed_recs.v)
        cz_strtab_free(&self.strs)
        cz_strtab_free(&self.gkeys)
        free(self.group_at)
        free(self.ids.slots)
        free(self.leafs)
        free(self.leafs_free)
        free(self.groups)
        free(self.scratch)
        for k in range(LZ_NTOP):
            PyMem_Free(self.top[k].v)

    def families(self):
        """The snapshot of the last commit: metric name -> [(label values, value), ...].

        Every LEAFZ family is a key (empty until the first commit). The distribution's one
        sample is ``((), (cumulative bucket counts, sum))``, a count per ``le`` of its catalogue
        entry. The dict is never changed after it is returned.
        """
        return self.snapshot

    cdef int _enter(self) except -1:
        if not self.ready:
            raise TypeError("the LeafzAggregator is not initialised")
        if self.busy:
            raise RuntimeError("the LeafzAggregator is already in use on another thread")
        self.busy = True
        return 0

    def scan(self, body):
        """Read a /leafz body (bytes, bytearray or memoryview). Returns how many leafnodes held
        from earlier commits it does not list: the closed entries ``match_closed`` should find.

        Raises LeafzDecodeError naming the byte offset; nothing a caller sees changes until
        ``commit``. A scan replaces one not committed.
        """
        cdef Py_buffer view
        self._enter()
        try:
            self.scanned = False
            lz_sweep_tab(&self.strs, self.py_strs)
            lz_sweep_tab(&self.gkeys, None)
            PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
            try:
                with nogil:
                    lz_scan(self, <const unsigned char *>view.buf, view.len)
            except ConnzDecodeError as e:
                raise LeafzDecodeError(str(e).removesuffix(f" (byte {e.offset})"),
                                       e.offset) from None
            finally:
                PyBuffer_Release(&view)
            self.scanned = True
            return self.wanted
        finally:
            self.busy = False

    def match_closed(self, page):
        """Read one /connz?state=closed page; keep the final counters of the leafnodes the last
        scan lacks that it lists (by cid, the leafnode's id). Returns how many are still not
        found. Raises ConnzDecodeError ("closed body: ...") and then keeps nothing of the page.
        """
        cdef Py_buffer view
        self._enter()
        try:
            if not self.scanned:
                raise RuntimeError("match_closed() needs a scan() first")
            PyObject_GetBuffer(page, &view, PyBUF_SIMPLE)
            try:
                with nogil:
                    lz_match(self, <const unsigned char *>view.buf, view.len)
            except ConnzDecodeError as e:
                raise ConnzDecodeError("closed body: " + str(e).removesuffix(
                    f" (byte {e.offset})"), e.offset) from None
            finally:
                PyBuffer_Release(&view)
            return self.wanted - self.matched
        finally:
            self.busy = False

    def commit(self, double now):
        """Fold the scanned body and the closed entries found into the state, and make the
        snapshot. ``now`` is the refresh time in seconds, for TTLs and rates."""
        self._enter()
        try:
            if not self.scanned:
                raise RuntimeError("commit() needs a scan() first")
            self.scanned = False
            lz_reserve_commit(self)
            with nogil:
                lz_commit(self, now)
            self.snapshot = lz_publish(self)
        finally:
            lz_sweep_tab(&self.strs, self.py_strs)
            lz_sweep_tab(&self.gkeys, None)
            self.busy = False

    def update(self, body, closed_body, double now):
        """``scan(body)``, ``match_closed`` for each page of ``closed_body`` (a buffer, a list
        of them, or None), then ``commit(now)``; a decode error changes nothing."""
        cdef list pages = [] if closed_body is None else cz_pages(closed_body, "closed_body")
        self.scan(body)
        try:
            for page in pages:
                self.match_closed(page)
        except BaseException:
            self.scanned = False
            raise
        self.commit(now)
