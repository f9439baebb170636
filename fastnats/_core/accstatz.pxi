# /accstatz account table: the AccstatzTable class and the commit of a scanned body; the twin of
# _reference/accstatz.py, with identical samples (made in accstatz_samples.pxi). Included by
# _core.pyx after accstatz_scan.pxi, whose functions take the class before it is defined here.
#
# update() scans the body without the GIL (accstatz_scan.pxi), reads the server's clock, looks
# each name up among the accounts held (interned in a CzStrTab, whose ids are the account
# slots), reserves all the memory the commit can need, then commits without the GIL: a body
# that does not decode changes nothing, and the commit cannot fail half way. Python objects are
# made only for the samples; each account's label tuple is made once and kept in its slot.
#
# The rules are the reference's, which the AccstatzCollector docstring tells: a table of at most
# max_accounts placed accounts, the rest summed into _other; newcomers in (inactive, name) order;
# accounts in _other that became active claim places busiest first (messages moved, then name);
# a full table gives up, first, the placed accounts gone longest, then those never active, then
# those idle for AZ_IDLE_REFRESHES refreshes or more, least recently active first, ties by name;
# a counter that falls without a restart is folded; an account not listed for account_ttl
# seconds is forgotten. Sums that pass 2**64-1 are kept exact in 128 bits, as the reference's
# ints.

from fastnats.errors import ScrapeError as _AzScrapeError
from fastnats.rfc3339 import parse_rfc3339_ns as _az_time_ns

cdef enum:
    # Refreshes an account that was active must stay idle before a new one may take its place.
    AZ_IDLE_REFRESHES = 5


cdef object az_error(str what):
    return _AzScrapeError("accstatz", "decode", "/accstatz " + what)


cdef object az_py(az_u128 v):
    if (v >> 64) == 0:
        return <uint64_t>v
    return (<object><uint64_t>(v >> 64) << 64) | <object><uint64_t>v


cdef str az_decode(const unsigned char *b, Py_ssize_t n, Py_ssize_t off):
    # The string whose opening quote is at off; the scan checked its escapes and UTF-8.
    cdef bint esc = False
    cdef Py_ssize_t length = cz_string_end(b, n, off + 1, &esc) - 2 - off
    cdef unsigned char *buf
    if not esc:
        return PyUnicode_DecodeUTF8(<const char *>b + off + 1, length, NULL)
    buf = <unsigned char *>PyMem_Malloc(length + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        length = cz_unescape(b + off + 1, length, buf, off + 1)
        return PyUnicode_DecodeUTF8(<const char *>buf, length, NULL)
    finally:
        PyMem_Free(buf)


# ---------------------------------------------------------------------------------------------
# Orderings, for qsort: each AzSort carries its keys and its name.

cdef inline int az_cmp_name(const AzSort *a, const AzSort *b) noexcept nogil:
    # Code point order: UTF-8 bytes compare as the reference's str.
    cdef int c = memcmp(a.name, b.name, a.len if a.len < b.len else b.len)
    if c:
        return c
    return (a.len > b.len) - (a.len < b.len)


cdef int az_cmp_newcomers(const void *x, const void *y) noexcept nogil:
    # (not active, name)
    cdef const AzSort *a = <const AzSort *>x
    cdef const AzSort *b = <const AzSort *>y
    if a.cls != b.cls:
        return a.cls - b.cls
    return az_cmp_name(a, b)


cdef int az_cmp_busiest(const void *x, const void *y) noexcept nogil:
    # (-moved, name)
    cdef const AzSort *a = <const AzSort *>x
    cdef const AzSort *b = <const AzSort *>y
    if a.key != b.key:
        return -1 if a.key > b.key else 1
    return az_cmp_name(a, b)


cdef int az_cmp_victims(const void *x, const void *y) noexcept nogil:
    # (0, seen_at, name) for the gone, (1, active, name) for the listed: the first to go first.
    cdef const AzSort *a = <const AzSort *>x
    cdef const AzSort *b = <const AzSort *>y
    if a.cls != b.cls:
        return a.cls - b.cls
    if a.t != b.t:
        return -1 if a.t < b.t else 1
    if a.key != b.key:
        return -1 if a.key < b.key else 1
    return az_cmp_name(a, b)


cdef int az_cmp_moved(const void *x, const void *y) noexcept nogil:
    cdef const AzSort *a = <const AzSort *>x
    cdef const AzSort *b = <const AzSort *>y
    if a.key != b.key:
        return -1 if a.key > b.key else 1
    return 0


# ---------------------------------------------------------------------------------------------
# Step 2: what the scan read, checked as the reference checks its decoded document.

cdef object az_check(AccstatzTable t, const unsigned char *b, Py_ssize_t n):
    # The server's clock (Unix ns) of a scanned body, after the checks the scan left.
    cdef AzScan *s = &t.scan
    cdef str field
    if s.now_at < 0:
        raise az_error("has no now")
    if b[s.now_at] != b'"':
        raise az_error("now is not a string")
    try:
        listed_at = _az_time_ns(az_decode(b, n, s.now_at))
    except ValueError:
        raise az_error("now is not an RFC 3339 time") from None
    if s.list_at < 0 or b[s.list_at] != b'[':
        raise az_error("account_statz is not a list")
    if s.bad_index >= 0:
        field = (<bytes>s.bad_field).decode("ascii")
        if s.bad_kind == AZ_BAD_OBJECT:
            raise az_error(f"account_statz[{s.bad_index}] is not an object")
        if s.bad_kind == AZ_BAD_MISSING:
            raise az_error(f"has no account_statz[{s.bad_index}].{field}")
        raise az_error(f"account_statz[{s.bad_index}].{field} is not " + (
            "a string" if field == "acc" else "an object" if field in ("sent", "received")
            else "a count from 0 to 2**64-1"))
    return listed_at


cdef int az_reserve(AccstatzTable t) except -1:
    # Everything the commit can need: room for every record's account to be new, and a copy of
    # each new name.
    cdef CzStrTab *tab = &t.strs
    cdef Py_ssize_t fresh = 0, k, icap, slots
    cdef AzRec *r
    for k in range(t.nrecs):
        if t.recs[k].slot < 0:
            fresh += 1
    cz_reserve(<void **>&tab.ents, &tab.cap, tab.n + fresh, sizeof(CzStr))
    cz_reserve(<void **>&tab.free_ids, &tab.free_cap, tab.n + fresh + 1, sizeof(int32_t))
    if (tab.used + tab.deleted + fresh + 1) * 2 > tab.icap:
        icap = tab.icap if tab.icap else 64
        while (tab.used + fresh + 1) * 4 > icap:
            icap *= 2
        cz_strtab_rehash(tab, icap)
    slots = tab.n + fresh
    cz_reserve(<void **>&t.accs, &t.accs_cap, slots, sizeof(AzAccount))
    cz_reserve(<void **>&t.sorts, &t.sorts_cap, 4 * t.nrecs + slots + 1, sizeof(AzSort))
    t.fresh_v = t.sorts
    t.moving_v = t.sorts + t.nrecs
    t.sent_v = t.sorts + 2 * t.nrecs
    t.received_v = t.sorts + 3 * t.nrecs
    t.victims_v = t.sorts + 4 * t.nrecs
    if len(t.labels) < slots:
        t.labels.extend([None] * (slots - len(t.labels)))
    for k in range(t.nrecs):
        r = &t.recs[k]
        if r.slot < 0:
            r.data = <char *>malloc(r.name_len if r.name_len else 1)
            if r.data == NULL:
                raise MemoryError()
    return 0


cdef void az_release(AccstatzTable t) noexcept nogil:
    # The name copies a commit did not take.
    cdef Py_ssize_t k
    for k in range(t.nrecs):
        free(t.recs[k].data)
        t.recs[k].data = NULL


# ---------------------------------------------------------------------------------------------
# Step 3: the commit.

cdef int32_t az_insert(CzStrTab *tab, const unsigned char *p, Py_ssize_t length, uint64_t h,
                       char *data) noexcept nogil:
    # Adds a name az_find did not find, in the room az_reserve made; takes data.
    cdef Py_ssize_t slot = h & (tab.icap - 1)
    cdef int32_t ident
    cdef CzStr *s
    while tab.index[slot] != CZ_EMPTY:
        slot = (slot + 1) & (tab.icap - 1)
    if tab.nfree:
        tab.nfree -= 1
        ident = tab.free_ids[tab.nfree]
    else:
        ident = <int32_t>tab.n
        tab.n += 1
    s = &tab.ents[ident]
    memcpy(data, p, length)
    s.data = data
    s.len = length
    s.hash = h
    s.refs = 0
    s.live = 1
    tab.index[slot] = ident
    tab.used += 1
    return ident


cdef inline void az_sort_entry(AccstatzTable t, AzSort *e, int32_t slot, az_u128 key,
                               double time, int32_t cls) noexcept nogil:
    e.slot = slot
    e.key = key
    e.t = time
    e.cls = cls
    e.name = <const unsigned char *>t.strs.ents[slot].data
    e.len = t.strs.ents[slot].len


cdef void az_victims(AccstatzTable t) noexcept nogil:
    # The placed accounts that may lose their place, the first to go first.
    cdef Py_ssize_t k
    cdef AzAccount *a
    t.nvictims = t.victim_at = 0
    t.victims_made = True
    for k in range(t.strs.n):
        a = &t.accs[k]
        if not (a.live and a.placed):
            continue
        if a.listed != t.seq:
            az_sort_entry(t, &t.victims_v[t.nvictims], <int32_t>k, 0, a.seen_at, 0)
        elif not a.active or t.seq - a.active >= AZ_IDLE_REFRESHES:
            az_sort_entry(t, &t.victims_v[t.nvictims], <int32_t>k, a.active, 0.0, 1)
        else:
            continue
        t.nvictims += 1
    qsort(t.victims_v, t.nvictims, sizeof(AzSort), az_cmp_victims)


cdef bint az_claim(AccstatzTable t, int32_t slot, Py_ssize_t *free_places,
                   Py_ssize_t *added) noexcept nogil:
    # Whether the account gets a place: a free one, or, if it is active, the place of the first
    # victim, which goes into _other.
    cdef AzAccount *a = &t.accs[slot]
    cdef AzAccount *v
    cdef int q
    if free_places[0] <= 0 and a.active == t.seq:
        if not t.victims_made:
            az_victims(t)
        if t.victim_at < t.nvictims:
            v = &t.accs[t.victims_v[t.victim_at].slot]
            t.victim_at += 1
            v.placed = 0
            t.ntable -= 1
            t.other_used = True
            if v.listed == t.seq:
                added[0] += 1
                for q in range(3):
                    t.other_gauges[q] += v.gauges[q]
            free_places[0] += 1
    if free_places[0] <= 0:
        return False
    free_places[0] -= 1
    a.placed = 1
    t.ntable += 1
    t.rows_stale = True
    return True


cdef void az_forget(AccstatzTable t, double now) noexcept nogil:
    # Accounts the listing left out: gone, their gauges 0; dropped after the TTL.
    cdef Py_ssize_t k
    cdef AzAccount *a
    for k in range(t.strs.n):
        a = &t.accs[k]
        if not a.live or a.listed == t.seq:
            continue
        memset(a.gauges, 0, sizeof(a.gauges))
        if now - a.seen_at >= t.account_ttl:
            if a.placed:
                a.placed = 0
                t.ntable -= 1
                t.rows_stale = True
            a.live = 0
            cz_strtab_drop(&t.strs, <int32_t>k)
            t.naccounts -= 1


cdef void az_commit(AccstatzTable t, const unsigned char *b, double now) noexcept nogil:
    cdef Py_ssize_t k, known = 0, free_places, added = 0, places
    cdef uint64_t seq = t.seq + 1
    cdef uint64_t moved[5]
    cdef AzRec *r
    cdef AzAccount *a
    cdef int32_t slot
    cdef bint fell, changed
    cdef int q
    t.seq = seq
    t.overflow = 0
    t.nfresh = t.nmoving = t.nsent = t.nreceived = 0
    t.victims_made = False
    t.nvictims = t.victim_at = 0
    for q in range(3):
        t.other_gauges[q] = 0
    for k in range(t.nrecs):
        r = &t.recs[k]
        if r.slot < 0:
            t.fresh_v[t.nfresh].slot = <int32_t>k
            t.nfresh += 1
            continue
        known += 1
        a = &t.accs[r.slot]
        a.listed = seq
        a.seen_at = now
        memcpy(a.gauges, r.gauges, sizeof(a.gauges))
        changed = memcmp(a.raw, r.raw, sizeof(a.raw)) != 0
        if changed:
            fell = False
            for q in range(5):
                if r.raw[q] >= a.raw[q]:
                    moved[q] = r.raw[q] - a.raw[q]
                else:
                    # Fallen without a restart (the account made again by a reload): count on
                    # from where it was.
                    fell = True
                    a.base[q] += a.raw[q]
                    moved[q] = r.raw[q]
            if fell:
                if t.folds == 0:
                    t.folded_slot = r.slot
                t.folds += 1
            memcpy(a.raw, r.raw, sizeof(a.raw))
            a.active = seq
            if moved[0]:
                az_sort_entry(t, &t.sent_v[t.nsent], r.slot, moved[0], 0.0, 0)
                t.nsent += 1
            if moved[2]:
                az_sort_entry(t, &t.received_v[t.nreceived], r.slot, moved[2], 0.0, 0)
                t.nreceived += 1
            if not a.placed:
                for q in range(5):
                    t.other[q] += moved[q]
                az_sort_entry(t, &t.moving_v[t.nmoving], r.slot,
                              <az_u128>moved[0] + moved[2], 0.0, 0)
                t.nmoving += 1
        elif r.gauges[0] or r.gauges[1]:
            a.active = seq
            if not a.placed:
                az_sort_entry(t, &t.moving_v[t.nmoving], r.slot, 0, 0.0, 0)
                t.nmoving += 1
        if not a.placed:
            t.overflow += 1
            for q in range(3):
                t.other_gauges[q] += r.gauges[q]
    if known < t.naccounts:
        az_forget(t, now)
    # Newcomers, active ones first, then by name: the server lists accounts in no order.
    for k in range(t.nfresh):
        r = &t.recs[t.fresh_v[k].slot]
        slot = az_insert(&t.strs, az_name(t, b, r), r.name_len, r.hash, r.data)
        r.data = NULL
        a = &t.accs[slot]
        memset(a, 0, sizeof(AzAccount))
        memcpy(a.raw, r.raw, sizeof(a.raw))
        memcpy(a.gauges, r.gauges, sizeof(a.gauges))
        a.listed = seq
        a.seen_at = now
        a.live = 1
        if r.gauges[0] or r.gauges[1] or r.raw[0] or r.raw[1] or r.raw[2] or r.raw[3] or r.raw[4]:
            a.active = seq
        t.naccounts += 1
        az_sort_entry(t, &t.fresh_v[k], slot, 0, 0.0, 0 if a.active else 1)
    qsort(t.fresh_v, t.nfresh, sizeof(AzSort), az_cmp_newcomers)
    free_places = t.max_accounts - t.ntable
    for k in range(t.nfresh):
        a = &t.accs[t.fresh_v[k].slot]
        if not az_claim(t, t.fresh_v[k].slot, &free_places, &added):
            t.other_used = True
            added += 1
            for q in range(5):
                t.other[q] += a.raw[q]
            for q in range(3):
                t.other_gauges[q] += a.gauges[q]
    if t.nmoving:
        # Only as many as there are places for, the busiest first: in a full table of connected
        # accounts, none, however many are active in _other.
        if not t.victims_made and free_places < t.nmoving:
            az_victims(t)
        places = free_places + (t.nvictims - t.victim_at if t.victims_made else 0)
        if places > t.nmoving:
            places = t.nmoving
        if places > 0:
            qsort(t.moving_v, t.nmoving, sizeof(AzSort), az_cmp_busiest)
        for k in range(places):
            slot = t.moving_v[k].slot
            if az_claim(t, slot, &free_places, &added):
                added -= 1
                for q in range(3):
                    t.other_gauges[q] -= t.accs[slot].gauges[q]
    t.overflow += added


cdef class AccstatzTable:
    """The accounts of one server across /accstatz refreshes: which get their own series, the
    ``_other`` sums, counters folded over falls, and the top-K rates; the twin of
    ``_reference.AccstatzTable``. ``update`` runs its scan and commit without the GIL."""

    cdef readonly Py_ssize_t max_accounts
    cdef readonly double account_ttl
    cdef readonly Py_ssize_t top_k
    cdef readonly str server
    cdef readonly Py_ssize_t listed
    cdef readonly uint64_t folds
    cdef readonly object first_folded
    cdef bint busy
    cdef AzScan scan
    cdef AzRec *recs
    cdef Py_ssize_t nrecs
    cdef Py_ssize_t recs_cap
    cdef unsigned char *names      # escaped names, decoded
    cdef Py_ssize_t names_len
    cdef Py_ssize_t names_cap
    cdef CzStrTab strs
    cdef AzAccount *accs
    cdef Py_ssize_t accs_cap
    cdef Py_ssize_t naccounts
    cdef Py_ssize_t ntable
    cdef uint64_t seq
    cdef az_u128 other[5]
    cdef az_u128 other_gauges[3]
    cdef bint other_used
    cdef uint64_t overflow
    cdef int32_t folded_slot       # the account of the first fold, until it is named
    cdef AzSort *sorts             # one block for the orderings below
    cdef Py_ssize_t sorts_cap
    cdef AzSort *fresh_v
    cdef AzSort *moving_v
    cdef AzSort *sent_v
    cdef AzSort *received_v
    cdef AzSort *victims_v
    cdef Py_ssize_t nfresh, nmoving, nvictims, victim_at, nsent, nreceived
    cdef bint victims_made
    cdef object listed_at
    cdef list labels               # slot -> (label,), valid while label_ok
    cdef list rows                 # (label, slot) of the placed accounts, sorted
    cdef bint rows_stale

    def __cinit__(self):
        self.folded_slot = -1

    def __init__(self, Py_ssize_t max_accounts, double account_ttl, Py_ssize_t top_k,
                 str server=""):
        if self.labels is not None:
            raise TypeError("an AccstatzTable is initialised once")
        if max_accounts < 1:
            raise ValueError("max_accounts must be at least 1")
        if not account_ttl >= 0:
            raise ValueError("account_ttl must be a non-negative number of seconds")
        if top_k < 0:
            raise ValueError("top_k must be at least 0")
        self.max_accounts = max_accounts
        self.account_ttl = account_ttl
        self.top_k = top_k
        self.server = server
        self.rows = []
        self.labels = []

    def __dealloc__(self):
        az_release(self)
        free(self.recs)
        free(self.names)
        cz_strtab_free(&self.strs)
        free(self.accs)
        free(self.sorts)

    def update(self, body, double now):
        """Take one /accstatz body (bytes or bytearray) at the exporter's clock ``now``; returns
        the samples to export. Raises the /accstatz decode error, and then changes nothing."""
        cdef Py_buffer view
        cdef const unsigned char *b
        cdef bint twice
        if self.labels is None:
            raise TypeError("the AccstatzTable is not initialised")
        if self.busy:
            raise RuntimeError("the AccstatzTable is already in use on another thread")
        self.busy = True
        try:
            PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
            b = <const unsigned char *>view.buf
            try:
                try:
                    with nogil:
                        az_body(self, b, view.len)
                except ConnzDecodeError as e:
                    raise az_error(f"malformed JSON: {e}") from None
                listed_at = az_check(self, b, view.len)
                with nogil:
                    twice = az_match(self, b)
                if twice:
                    raise az_error("lists an account twice")
                az_reserve(self)
                with nogil:
                    az_commit(self, b, now)
            finally:
                az_release(self)
                PyBuffer_Release(&view)
            self.listed = self.nrecs
            if self.folded_slot >= 0:
                s = &self.strs.ents[self.folded_slot]
                self.first_folded = PyUnicode_DecodeUTF8(s.data, s.len, NULL)
                self.folded_slot = -1
            out = az_samples(self, listed_at)
            self.listed_at = listed_at
            return out
        finally:
            self.busy = False
