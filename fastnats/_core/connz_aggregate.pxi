# /connz aggregate: the ConnzAggregator class and phase 3 of its update(), the commit. Included by
# _core.pyx.
#
# The scan (connz_scan.pxi) reads every connection into a C record; the commit folds the records
# into long-lived C state (per-cid counters, per-group totals) so the exported counters stay
# monotonic while connections come and go. The snapshot that families() returns is rebuilt after
# a commit only (connz_snapshot.pxi). The commit starts only after every allocation it needs is
# made (cz_reserve_commit), so it cannot fail half-way.
#
# Counting rules, which _reference.ConnzAggregator follows too: a connection's counters count in
# its group while it is open. When it leaves, its final counters from the closed body (else the
# last seen) join the group's closed total. A cid missing from an open body but not closed is
# remembered for CZ_ABSENT_GRACE refreshes and closed_slack seconds, so that it is not counted
# twice if it was only skipped and so that a late closed entry still finds it; if none came, it
# is lost (counted in its group's lost total, with the counters last seen). A closed cid that
# no read showed before opened and closed between two refreshes and counts once. A cid listed
# again with another start time is another connection (a restart); the old one is lost.
# /connz lists a connection before its CONNECT is read, without name, lang or version: such a
# connection moves to the group of the labels its CONNECT gives once they show, open or closed.
# What it counted before stays in the old group (folded there); the new group owes it back
# (``debt``), or, at its close, gets only what it did since.
#
# Leafnodes. /connz lists leafnode connections (kind "Leafnode") with the clients, open and closed;
# they are not clients (nor in /varz connections and total_connections), so no group counts them,
# but their cids count as read for the floor below. /leafz has them (leafz.pxi).
#
# Lost connections nobody saw. nats-server numbers every connection (routes and its own internal
# clients too) from one counter, and keeps only the last max_closed_clients closed ones. Every
# cid at or below ``floor`` is settled; the cids above it that a read showed are in ``seen``.
# The floor moves up to the highest cid of an update once CZ_FLOOR_LAG updates and closed_slack
# seconds have passed since it, so a late open or closed listing still counts. The cids it then
# passes that no read ever showed are holes: lost connections if a closed read overflowed (the
# caller says so: the server's ring turned over before the read reached what was read before)
# since the floor last moved, else cids the server gave to something that /connz never lists.
# Given /varz total_connections (``accepted``), the lost count never exceeds the clients
# accepted since the first update less those read since: the holes of an overflow can be the
# server's own, and a lost cid above the highest one read waits for a later cid to show.

from fastnats.errors import ConnzDecodeError
from fastnats.metrics import (
    CONNZ as _CONNZ,
    CONNZ_IDLE_BUCKETS as _IDLE_BUCKETS,
    CONNZ_PENDING_BUCKETS as _PENDING_BUCKETS,
    CONNZ_RTT_BUCKETS as _RTT_BUCKETS,
    CONNZ_SUBS_BUCKETS as _SUBS_BUCKETS,
    DEFAULT_GROUP_BY as _DEFAULT_GROUP_BY,
    GROUP_BY_FIELDS as _GROUP_BY_FIELDS,
    NATS_CLIENT_CONNECTION_IDLE_SECONDS,
    NATS_CLIENT_CONNECTION_PENDING_BYTES,
    NATS_CLIENT_CONNECTION_RTT_SECONDS,
    NATS_CLIENT_CONNECTION_SUBSCRIPTIONS,
)

# The distributions in CZ_D_* order: catalogue entry, upper bounds, and whether the values are
# durations (kept in nanoseconds, bounds given in seconds).
_DISTRIBUTIONS = (
    (NATS_CLIENT_CONNECTION_RTT_SECONDS, _RTT_BUCKETS, True),
    (NATS_CLIENT_CONNECTION_PENDING_BYTES, _PENDING_BUCKETS, False),
    (NATS_CLIENT_CONNECTION_IDLE_SECONDS, _IDLE_BUCKETS, True),
    (NATS_CLIENT_CONNECTION_SUBSCRIPTIONS, _SUBS_BUCKETS, False),
)


cdef class ConnzAggregator:
    """Reads /connz bodies and keeps per-group client aggregates, distributions and top-K.

    Built once per monitored server and fed every refresh with ``update()``, from a worker thread:
    the scan runs without the GIL. ``families()`` returns the snapshot of the last good update.
    """

    def __cinit__(self):
        self.other = -1
        self.snapshot = {m.name: [] for m in _CONNZ}

    def __init__(self, group_by=_DEFAULT_GROUP_BY, Py_ssize_t max_groups=1000,
                 double group_ttl=3600.0, Py_ssize_t top_k=10, bint per_connection=False,
                 Py_ssize_t per_connection_max=1000, double closed_slack=2.0):
        cdef int k
        if self.ready:
            raise TypeError("a ConnzAggregator is initialised once")
        group_by = tuple(group_by)
        for f in group_by:
            if f not in _GROUP_BY_FIELDS:
                raise ValueError(f"cannot group connections by {f!r}; choose from "
                                 f"{', '.join(_GROUP_BY_FIELDS)}")
        if len(set(group_by)) != len(group_by):
            raise ValueError(f"group_by lists a field twice: {group_by!r}")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not group_ttl >= 0:
            raise ValueError("group_ttl must be a non-negative number of seconds")
        if not 0 <= top_k <= 10_000:
            raise ValueError("top_k must be from 0 to 10000")
        if per_connection_max < 0:
            raise ValueError("per_connection_max must not be negative")
        if not 0 <= closed_slack <= 3600:
            raise ValueError("closed_slack must be from 0 to 3600 seconds")
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = group_ttl
        self.top_k = top_k
        self.per_connection = per_connection
        self.per_connection_max = per_connection_max
        self.closed_slack = closed_slack
        self.nfields = len(group_by)
        for k in range(self.nfields):
            self.fields[k] = _GROUP_BY_FIELDS.index(group_by[k])
        self.py_strs = []
        cz_init_dists(self)
        for k in range(CZ_NTOP):
            self.top[k].idx = <int32_t *>PyMem_Malloc((top_k + 1) * sizeof(int32_t))
            if self.top[k].idx == NULL:
                raise MemoryError()
        self.ready = True

    def __dealloc__(self):
        cdef int k
        free(self.open_recs.v)
        free(self.closed_recs.v)
        cz_strtab_free(&self.strs)
        free(self.cids.slots)
        free(self.seen.slots)
        free(self.victims)
        free(self.conns)
        free(self.conns_free)
        free(self.groups)
        free(self.gindex)
        free(self.per_conn)
        free(self.scratch)
        for k in range(CZ_NTOP):
            PyMem_Free(self.top[k].idx)

    def families(self):
        """The snapshot of the last good update: metric name -> [(label values, value), ...].

        Every CONNZ family is a key (empty until it has samples). A distribution's one sample is
        ``((), (cumulative bucket counts, sum))``, a count per ``le`` of its catalogue entry. The
        dict is never changed after it is returned; the next update builds a new one.
        """
        return self.snapshot

    def update(self, open_body, closed_body, double now, bint closed_overflow=False,
               accepted=None):
        """Read one refresh: ``open_body`` from ``/connz?state=open``, ``closed_body`` from
        ``state=closed`` or None. Each is a buffer (bytes, bytearray, memoryview) or a list of
        them, one per page. ``now`` is the refresh time in seconds, for TTLs and rates.
        ``closed_overflow`` says that the closed read reached the end of the server's list
        before the connections it had read before: some closed connections were dropped unread.
        ``accepted`` is /varz total_connections, read before the bodies, if known: cids that no
        read showed are counted lost no more than client connections can be missing.

        Raises ConnzDecodeError, naming the body and byte offset, and then changes nothing.
        """
        cdef list pages = cz_pages(open_body, "open_body")
        cdef Py_ssize_t nopen = len(pages), npages, k, acquired = 0
        cdef Py_buffer *views
        cdef CzPage *spans
        cdef int64_t clients = -1
        if accepted is not None:
            if type(accepted) is not int or not 0 <= accepted < 2**63:
                raise ValueError("accepted must be a count of connections")
            clients = accepted
        if closed_body is not None:
            pages += cz_pages(closed_body, "closed_body")
        npages = len(pages)
        if self.busy:
            raise RuntimeError("ConnzAggregator.update() is already running on another thread")
        views = <Py_buffer *>PyMem_Malloc(npages * sizeof(Py_buffer) + 1)
        spans = <CzPage *>PyMem_Malloc(npages * sizeof(CzPage) + 1)
        if views == NULL or spans == NULL:
            PyMem_Free(views)
            PyMem_Free(spans)
            raise MemoryError()
        self.busy = True
        try:
            for k in range(npages):
                PyObject_GetBuffer(pages[k], &views[k], PyBUF_SIMPLE)
                acquired += 1
                spans[k].buf = <const unsigned char *>views[k].buf
                spans[k].len = views[k].len
            try:
                with nogil:
                    cz_scan(self, spans, nopen, npages)
                    cz_intern_new(self, spans)
                    cz_reserve_commit(self)
                    self.accepted = clients
                    cz_commit(self, now, closed_overflow)
            except ConnzDecodeError as e:
                raise cz_located(self, e, nopen, npages - nopen) from None
            self.snapshot = cz_publish(self)
        finally:
            cz_sweep(self)
            for k in range(acquired):
                PyBuffer_Release(&views[k])
            PyMem_Free(views)
            PyMem_Free(spans)
            self.busy = False


cdef int cz_init_dists(ConnzAggregator agg) except -1:
    cdef int k, j
    for k, (metric, bounds, seconds) in enumerate(_DISTRIBUTIONS):
        if len(bounds) > CZ_MAX_BOUNDS or len(metric.buckets) != len(bounds) + 1:
            raise ValueError(f"{metric.name}: {len(bounds)} bounds for le values "
                             f"{metric.buckets!r}; at most {CZ_MAX_BOUNDS} bounds and +Inf")
        agg.dist[k].nb = len(bounds)
        for j, bound in enumerate(bounds):
            agg.dist[k].bounds[j] = cz_seconds_ns(bound) if seconds else bound
    return 0


cdef object cz_located(ConnzAggregator agg, object error, Py_ssize_t nopen, Py_ssize_t nclosed):
    # The decode error again, its message led by the body and page it comes from.
    cdef str where = "closed body" if agg.where_closed else "open body"
    cdef Py_ssize_t count = nclosed if agg.where_closed else nopen
    if count > 1:
        where += f" page {agg.where_page - (nopen if agg.where_closed else 0) + 1}"
    msg = str(error).removesuffix(f" (byte {error.offset})")
    return ConnzDecodeError(f"{where}: {msg}", error.offset)


# ---------------------------------------------------------------------------------------------
# Allocations the commit needs, made while failing still changes nothing.

cdef int cz_reserve_commit(ConnzAggregator agg) except -1 nogil:
    cdef Py_ssize_t new_conns = 0, regroups = 0, above = 0, new_groups, k
    for k in range(agg.open_recs.n):
        if agg.open_recs.v[k].flags & CZ_REC_NEW:
            new_conns += 1
        elif agg.open_recs.v[k].flags & CZ_REC_REGROUP:
            regroups += 1
        # The first update puts no open client's cid in seen (cz_commit_open).
        if agg.open_recs.v[k].cid > agg.floor and (
                agg.epoch or agg.open_recs.v[k].flags & CZ_REC_LEAF):
            above += 1
    for k in range(agg.closed_recs.n):
        if agg.closed_recs.v[k].cid > agg.floor:
            above += 1
    cz_map_reserve(&agg.cids, new_conns)
    cz_reserve(<void **>&agg.conns, &agg.conns_cap, agg.nconns_slots + new_conns,
               sizeof(CzConn))
    cz_reserve(<void **>&agg.conns_free, &agg.conns_free_cap,
               agg.nconns_slots + new_conns + 1, sizeof(int32_t))
    cz_map_reserve(&agg.seen, above)
    new_groups = new_conns + regroups + agg.closed_recs.n + 1
    if new_groups > agg.max_groups + 1:
        new_groups = agg.max_groups + 1
    cz_reserve(<void **>&agg.groups, &agg.groups_cap, agg.ngroup_slots + new_groups,
               sizeof(CzGroup))
    cz_reserve_gindex(agg, agg.ngroup_slots + new_groups)
    cz_reserve(<void **>&agg.victims, &agg.victims_cap, agg.ngroup_slots + new_groups,
               sizeof(CzVictim))
    if agg.per_connection:
        cz_reserve(<void **>&agg.per_conn, &agg.per_conn_cap, 2 * agg.open_recs.n + 2,
                   sizeof(uint64_t))
    return 0


cdef int cz_reserve_gindex(ConnzAggregator agg, Py_ssize_t groups) except -1 nogil:
    # The group index stays at most half full.
    cdef Py_ssize_t cap
    cdef int32_t *gindex
    if groups * 2 <= agg.gicap:
        return 0
    cap = agg.gicap if agg.gicap else 16
    while groups * 2 > cap:
        cap *= 2
    gindex = <int32_t *>malloc(cap * sizeof(int32_t))
    if gindex == NULL:
        with gil:
            raise MemoryError()
    free(agg.gindex)
    agg.gindex = gindex
    agg.gicap = cap
    cz_rebuild_gindex(agg)
    return 0


# ---------------------------------------------------------------------------------------------
# Distributions and rankings.

cdef int64_t cz_seconds_ns(double s):
    return <int64_t>(s * 1e9 + 0.5)


cdef inline void cz_dist_add(CzDist *d, int64_t v) noexcept nogil:
    cdef int32_t k = 0
    while k < d.nb and v > d.bounds[k]:
        k += 1
    d.counts[k] += 1


cdef inline bint cz_better(const CzRec *a, const CzRec *b, int which) noexcept nogil:
    # which is a CZ_T_*: pending bytes compare as integers, rates as doubles; ties go to the
    # older connection, so the ranking is a total order.
    if which == CZ_T_PENDING:
        return a.pending > b.pending or (a.pending == b.pending and a.cid < b.cid)
    return (a.rate[which - 1] > b.rate[which - 1]
            or (a.rate[which - 1] == b.rate[which - 1] and a.cid < b.cid))


cdef void cz_top_offer(CzTop *t, int32_t k, const CzRec *recs, int which, int32_t ri) noexcept nogil:
    # Insertion into a short array kept best first.
    cdef int32_t pos = t.n
    if t.n == k:
        if not cz_better(&recs[ri], &recs[t.idx[k - 1]], which):
            return
        pos = k - 1
    else:
        t.n += 1
    while pos > 0 and cz_better(&recs[ri], &recs[t.idx[pos - 1]], which):
        t.idx[pos] = t.idx[pos - 1]
        pos -= 1
    t.idx[pos] = ri


cdef int cz_cmp_cid(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t *>a)[0], y = (<const uint64_t *>b)[0]
    return (x > y) - (x < y)


# ---------------------------------------------------------------------------------------------
# Phase 3: the commit, in the order its steps run.

cdef void cz_commit(ConnzAggregator agg, double now, bint closed_overflow) noexcept nogil:
    cdef uint64_t top_cid = agg.watermark
    agg.epoch += 1
    if closed_overflow:
        agg.overflow_epoch = agg.epoch
    agg.victims_ready = False
    agg.commit_seq = agg.group_seq
    # Expire first, so that the room an expired group leaves is there for new connections.
    cz_expire_groups(agg, now)
    cz_clear_open_totals(agg)
    agg.count = cz_commit_open(agg, now, &top_cid)
    cz_commit_closed(agg, now, &top_cid)
    cz_age_absent(agg, now)
    cz_sort_per_conn(agg)
    agg.watermark = top_cid
    cz_advance_floor(agg, now)
    agg.total = agg.scanned_total


cdef void cz_expire_groups(ConnzAggregator agg, double now) noexcept nogil:
    # A group without members that saw no activity for group_ttl goes, with its label values.
    cdef Py_ssize_t k
    cdef CzGroup *g
    cdef bint removed = False
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        if g.live and g.members == 0 and now - g.last_active > agg.group_ttl:
            cz_drop_group(agg, <int32_t>k)
            removed = True
    if removed:
        cz_rebuild_gindex(agg)


cdef void cz_clear_open_totals(ConnzAggregator agg) noexcept nogil:
    # What the open connections sum to is counted afresh by every update.
    cdef Py_ssize_t k
    cdef CzGroup *g
    for k in range(agg.ngroup_slots):
        g = &agg.groups[k]
        g.conns = g.subs = g.pending = 0
        memset(g.open_ctr, 0, sizeof(g.open_ctr))
    for k in range(CZ_NDIST):
        memset(agg.dist[k].counts, 0, sizeof(agg.dist[k].counts))
        agg.dist[k].isum = 0
        agg.dist[k].fsum = 0.0
    for k in range(CZ_NTOP):
        agg.top[k].n = 0
    agg.nper_conn = 0


cdef Py_ssize_t cz_commit_open(ConnzAggregator agg, double now, uint64_t *top_cid) noexcept nogil:
    # Every open connection, once: its state, then what it adds to the sums. Returns how many.
    cdef Py_ssize_t k, count = 0
    cdef uint64_t top = top_cid[0]
    cdef CzRec *r
    cdef int32_t st
    for k in range(agg.open_recs.n):
        r = &agg.open_recs.v[k]
        if r.cid > top:
            top = r.cid
        if r.flags & CZ_REC_LEAF:
            # /connz lists leafnodes too; they are no clients, but their cids are not holes.
            cz_saw(agg, r.cid)
            continue
        st = cz_map_get(&agg.cids, r.cid)
        if st >= 0 and agg.conns[st].epoch == agg.epoch:
            r.flags |= CZ_REC_DUP
            continue
        if agg.epoch > 1:
            # The first update's open clients are in cids until its floor settles every cid it
            # read (cz_advance_floor): seen need not hold them too.
            cz_saw(agg, r.cid)
        st = cz_place_open(agg, r, st, now)
        cz_count_open(agg, r, <int32_t>k, st, now)
        count += 1
    top_cid[0] = top
    return count


cdef inline int32_t cz_place_open(ConnzAggregator agg, CzRec *r, int32_t st,
                                  double now) noexcept nogil:
    # The state slot of an open record, given the slot held under its cid (or -1): a new one for
    # a connection the state does not hold; a held one comes back from absence, moves to the
    # group its CONNECT named, and gets its message rates.
    cdef CzConn *c
    cdef CzGroup *g
    cdef int q
    cdef double dt
    if st >= 0 and r.flags & CZ_REC_NEW:
        # The same cid on another connection (the server restarted): the old one is gone.
        if agg.conns[st].absent < 0:
            cz_fold(agg, st, agg.conns[st].ctr, now)
        cz_lose(agg, st)
        cz_forget(agg, st)
        st = -1
    if st < 0:
        return cz_new_conn(agg, r, now)
    c = &agg.conns[st]
    if c.absent >= 0:
        # Back after missing from an open body without closing: take back what was folded, it
        # counts as open again.
        g = &agg.groups[c.group]
        for q in range(CZ_NCTR):
            g.closed[q] = cz_sat_sub(g.closed[q], c.ctr[q])
        c.absent = -1
    if r.flags & CZ_REC_REGROUP:
        cz_fold(agg, st, c.ctr, now)
        cz_drop_labels(agg, st)
        cz_set_labels(agg, st, r, now)
        g = &agg.groups[c.group]
        for q in range(CZ_NCTR):
            g.debt[q] = cz_sat_add(g.debt[q], c.ctr[q])
    dt = now - c.seen_at
    if dt > 0:
        r.rate[0] = <double>(r.ctr[CZ_CTR_IN_MSGS] - c.ctr[CZ_CTR_IN_MSGS]) / dt
        r.rate[1] = <double>(r.ctr[CZ_CTR_OUT_MSGS] - c.ctr[CZ_CTR_OUT_MSGS]) / dt
        r.flags |= CZ_REC_RATE
    return st


cdef inline void cz_count_open(ConnzAggregator agg, CzRec *r, int32_t k, int32_t st,
                               double now) noexcept nogil:
    # Record k, the connection in slot st, is seen now and counts in its group, the
    # distributions, the top-K and the per-connection series.
    cdef CzConn *c = &agg.conns[st]
    cdef CzGroup *g = &agg.groups[c.group]
    cdef int q
    memcpy(c.ctr, r.ctr, sizeof(c.ctr))
    c.seen_at = now
    c.epoch = agg.epoch
    r.state = st
    g.opened = 1
    g.conns += 1
    g.subs = cz_sat_add(g.subs, r.subs)
    g.pending = cz_sat_add(g.pending, r.pending)
    for q in range(CZ_NCTR):
        g.open_ctr[q] = cz_sat_add(g.open_ctr[q], r.ctr[q])
    g.last_active = now
    cz_count_dists(agg, r)
    if agg.top_k:
        cz_count_top(agg, r, k)
    if agg.per_connection:
        agg.per_conn[2 * agg.nper_conn] = r.cid
        agg.per_conn[2 * agg.nper_conn + 1] = <uint64_t>k
        agg.nper_conn += 1


cdef inline void cz_count_dists(ConnzAggregator agg, const CzRec *r) noexcept nogil:
    # rtt and idle count only the connections that report them.
    if r.flags & CZ_REC_RTT:
        cz_dist_add(&agg.dist[CZ_D_RTT], r.rtt_ns)
        agg.dist[CZ_D_RTT].fsum += <double>r.rtt_ns / 1e9
    cz_dist_add(&agg.dist[CZ_D_PENDING],
                <int64_t>r.pending if r.pending < CZ_I64_MAX else CZ_I64_MAX)
    agg.dist[CZ_D_PENDING].isum = cz_sat_add(agg.dist[CZ_D_PENDING].isum, r.pending)
    if r.flags & CZ_REC_IDLE:
        cz_dist_add(&agg.dist[CZ_D_IDLE], r.idle_ns)
        agg.dist[CZ_D_IDLE].fsum += <double>r.idle_ns / 1e9
    cz_dist_add(&agg.dist[CZ_D_SUBS], <int64_t>r.subs if r.subs < CZ_I64_MAX else CZ_I64_MAX)
    agg.dist[CZ_D_SUBS].isum = cz_sat_add(agg.dist[CZ_D_SUBS].isum, r.subs)


cdef inline void cz_count_top(ConnzAggregator agg, const CzRec *r, int32_t k) noexcept nogil:
    # Connections with nothing pending, or no rate yet, are not ranked.
    cdef int32_t most = <int32_t>agg.top_k
    if r.pending > 0:
        cz_top_offer(&agg.top[CZ_T_PENDING], most, agg.open_recs.v, CZ_T_PENDING, k)
    if r.flags & CZ_REC_RATE:
        if r.rate[0] > 0:
            cz_top_offer(&agg.top[CZ_T_IN_RATE], most, agg.open_recs.v, CZ_T_IN_RATE, k)
        if r.rate[1] > 0:
            cz_top_offer(&agg.top[CZ_T_OUT_RATE], most, agg.open_recs.v, CZ_T_OUT_RATE, k)


cdef void cz_commit_closed(ConnzAggregator agg, double now, uint64_t *top_cid) noexcept nogil:
    # Every closed connection: a held one folds its final counters and is forgotten; one that
    # opened and closed between two refreshes counts once, in its group's closed total. Reads
    # overlap: a closed entry read before is skipped by its cid (``seen``, or the floor).
    cdef Py_ssize_t k
    cdef uint64_t top = top_cid[0]
    cdef CzRec *r
    cdef CzGroup *g
    cdef int32_t st
    cdef int q
    for k in range(agg.closed_recs.n):
        r = &agg.closed_recs.v[k]
        if r.cid > top:
            top = r.cid
        if r.flags & CZ_REC_LEAF:
            cz_saw(agg, r.cid)
            continue
        st = cz_map_get(&agg.cids, r.cid)
        if st >= 0:
            # Still open in this update's open body, it is folded when it leaves that.
            if agg.conns[st].epoch != agg.epoch:
                cz_close_held(agg, st, r, now)
        elif r.flags & CZ_REC_NEW and cz_map_get(&agg.seen, r.cid) < 0:
            # Only the closed body knows this one.
            cz_saw(agg, r.cid)
            agg.clients_read += 1
            g = &agg.groups[cz_group_of(agg, r.ids, now)]
            for q in range(CZ_NCTR):
                g.closed[q] = cz_sat_add(g.closed[q], r.ctr[q])
            g.last_active = now
    top_cid[0] = top


cdef void cz_close_held(ConnzAggregator agg, int32_t st, const CzRec *r, double now) noexcept nogil:
    # What the closed body adds to the counters already counted for this cid: the last-seen ones
    # while it was open (nothing once it was folded as absent), and what it did since, in the
    # group its labels name if it closed named after it was seen unnamed.
    cdef CzConn *c = &agg.conns[st]
    cdef uint64_t counted[4]
    cdef uint64_t since[4]
    cdef int q
    cdef CzGroup *g
    for q in range(CZ_NCTR):
        counted[q] = c.ctr[q] if c.absent < 0 else 0
        since[q] = 0
        if c.start_hash == r.start_hash and r.ctr[q] > c.ctr[q]:
            since[q] = r.ctr[q] - c.ctr[q]
    if r.flags & CZ_REC_REGROUP:
        cz_fold(agg, st, counted, now)
        g = &agg.groups[cz_group_of(agg, r.ids, now)]
        for q in range(CZ_NCTR):
            g.closed[q] = cz_sat_add(g.closed[q], since[q])
        g.last_active = now
    else:
        for q in range(CZ_NCTR):
            counted[q] = cz_sat_add(counted[q], since[q])
        cz_fold(agg, st, counted, now)
    cz_forget(agg, st)


cdef void cz_age_absent(ConnzAggregator agg, double now) noexcept nogil:
    # Connections neither open nor in the closed body: fold what was last seen, and keep the cid
    # a few refreshes in case it shows up again.
    cdef Py_ssize_t j
    cdef CzConn *c
    for j in range(agg.nconns_slots):
        c = &agg.conns[j]
        if c.used and c.epoch != agg.epoch:
            if c.absent < 0:
                cz_fold(agg, <int32_t>j, c.ctr, now)
                c.absent = 0
                c.absent_since = now
            else:
                c.absent += 1
                if c.absent >= CZ_ABSENT_GRACE and now - c.absent_since >= agg.closed_slack:
                    cz_lose(agg, <int32_t>j)
                    cz_forget(agg, <int32_t>j)


cdef void cz_sort_per_conn(ConnzAggregator agg) noexcept nogil:
    # The per-connection series go out in cid order, which a single page mostly has already.
    cdef Py_ssize_t k
    if not agg.per_connection:
        return
    for k in range(1, agg.nper_conn):
        if agg.per_conn[2 * k] < agg.per_conn[2 * k - 2]:
            qsort(agg.per_conn, agg.nper_conn, 2 * sizeof(uint64_t), cz_cmp_cid)
            return
