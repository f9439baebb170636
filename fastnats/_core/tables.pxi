# Tables of the /connz aggregator: growable arrays, the interned label values and the cid map.
# Included by _core.pyx. All of it runs without the GIL; only a failed allocation takes it, to
# raise MemoryError.


cdef int cz_reserve(void **arr, Py_ssize_t *cap, Py_ssize_t want, size_t item) except -1 nogil:
    # Grows arr (of cap items of the given size) to hold at least want items.
    cdef Py_ssize_t c = cap[0] if cap[0] > 0 else 16
    cdef void *p
    if want <= cap[0]:
        return 0
    while c < want:
        c *= 2
    p = realloc(arr[0], c * item)
    if p == NULL:
        with gil:
            raise MemoryError()
    arr[0] = p
    cap[0] = c
    return 0


# ---------------------------------------------------------------------------------------------
# Interned label values: each distinct byte string gets a small integer id, kept while a cid or a
# group refers to it, so a label value is decoded and turned into a Python str once in its life.

cdef inline uint64_t cz_hash(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    # Not cryptographic: it only spreads label values and start times over hash-table slots.
    cdef uint64_t h = <uint64_t>0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * <uint64_t>0xFF51AFD7ED558CCDULL
        h ^= h >> 32
        p += 8
        n -= 8
    w = 0
    memcpy(&w, p, n)
    h = (h ^ w) * <uint64_t>0xC4CEB9FE1A85EC53ULL
    h ^= h >> 29
    return h


cdef int cz_strtab_rehash(CzStrTab *t, Py_ssize_t icap) except -1 nogil:
    cdef int32_t *index = <int32_t *>malloc(icap * sizeof(int32_t))
    cdef Py_ssize_t k, slot
    if index == NULL:
        with gil:
            raise MemoryError()
    memset(index, 0xFF, icap * sizeof(int32_t))
    for k in range(t.n):
        if t.ents[k].live:
            slot = t.ents[k].hash & (icap - 1)
            while index[slot] != CZ_EMPTY:
                slot = (slot + 1) & (icap - 1)
            index[slot] = <int32_t>k
    free(t.index)
    t.index = index
    t.icap = icap
    t.deleted = 0
    return 0


cdef int32_t cz_intern(CzStrTab *t, const unsigned char *p, Py_ssize_t length, Py_ssize_t at,
                       bint escaped) except -2 nogil:
    cdef uint64_t h = cz_hash(p, length)
    cdef Py_ssize_t slot, bad, icap
    cdef int32_t e, ident
    cdef CzStr *s
    cdef char *data
    if (t.used + t.deleted + 1) * 2 > t.icap:
        icap = t.icap if t.icap else 64
        while (t.used + 1) * 4 > icap:
            icap *= 2
        cz_strtab_rehash(t, icap)
    slot = h & (t.icap - 1)
    while True:
        e = t.index[slot]
        if e == CZ_EMPTY:
            break
        if e >= 0:
            s = &t.ents[e]
            if s.hash == h and s.len == length and memcmp(s.data, p, length) == 0:
                return e
        slot = (slot + 1) & (t.icap - 1)
    bad = cz_utf8_error(p, length)
    if bad >= 0:
        # Inside an escaped string the decoded index no longer maps to the body; name the string.
        cz_fail("invalid UTF-8 in string", at if escaped else at + bad)
    # Room first, so a failed allocation leaves the table as it was. free_ids always has room
    # for every id, so that dropping entries never allocates.
    cz_reserve(<void **>&t.ents, &t.cap, t.n + 1, sizeof(CzStr))
    cz_reserve(<void **>&t.free_ids, &t.free_cap, t.n + 1, sizeof(int32_t))
    cz_reserve(<void **>&t.fresh, &t.fresh_cap, t.nfresh + 1, sizeof(int32_t))
    data = <char *>malloc(length if length else 1)
    if data == NULL:
        with gil:
            raise MemoryError()
    if t.nfree:
        t.nfree -= 1
        ident = t.free_ids[t.nfree]
    else:
        ident = <int32_t>t.n
        t.n += 1
    s = &t.ents[ident]
    s.data = data
    memcpy(s.data, p, length)
    s.len = length
    s.hash = h
    s.refs = 0
    s.live = 1
    # The probe above ended on an empty slot; deleted slots stay until the next rehash.
    t.index[slot] = ident
    t.used += 1
    t.fresh[t.nfresh] = ident
    t.nfresh += 1
    return ident


cdef void cz_strtab_drop(CzStrTab *t, int32_t ident) noexcept nogil:
    # Removes an entry nothing refers to; cz_intern keeps room in free_ids for every id.
    cdef CzStr *s = &t.ents[ident]
    cdef Py_ssize_t slot = s.hash & (t.icap - 1)
    while t.index[slot] != ident:
        slot = (slot + 1) & (t.icap - 1)
    t.index[slot] = CZ_DELETED
    t.deleted += 1
    t.used -= 1
    free(s.data)
    s.data = NULL
    s.live = 0
    t.free_ids[t.nfree] = ident
    t.nfree += 1


cdef void cz_strtab_free(CzStrTab *t) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(t.n):
        if t.ents[k].live:
            free(t.ents[k].data)
    free(t.ents)
    free(t.free_ids)
    free(t.index)
    free(t.fresh)
    memset(t, 0, sizeof(CzStrTab))


# ---------------------------------------------------------------------------------------------
# cid -> slot map (open addressing, linear probing), for the per-connection state.

cdef inline Py_ssize_t cz_mix(uint64_t k) noexcept nogil:
    k *= <uint64_t>0x9E3779B97F4A7C15ULL
    return <Py_ssize_t>(k >> 17)


cdef int32_t cz_map_get(const CzMap *m, uint64_t key) noexcept nogil:
    cdef Py_ssize_t mask = m.cap - 1, slot
    if m.cap == 0:
        return -1
    slot = cz_mix(key) & mask
    while True:
        if m.slots[slot].val == CZ_EMPTY:
            return -1
        if m.slots[slot].val >= 0 and m.slots[slot].key == key:
            return m.slots[slot].val
        slot = (slot + 1) & mask


cdef int cz_map_reserve(CzMap *m, Py_ssize_t extra) except -1 nogil:
    # After this, `extra` insertions cannot fail or trigger a rehash.
    cdef Py_ssize_t cap = m.cap if m.cap else 64, k, slot
    cdef CzSlot *slots
    if (m.used + m.deleted + extra) * 2 <= m.cap:
        return 0
    while (m.used + extra) * 4 > cap:
        cap *= 2
    slots = <CzSlot *>malloc(cap * sizeof(CzSlot))
    if slots == NULL:
        with gil:
            raise MemoryError()
    for k in range(cap):
        slots[k].val = CZ_EMPTY
    for k in range(m.cap):
        if m.slots[k].val >= 0:
            slot = cz_mix(m.slots[k].key) & (cap - 1)
            while slots[slot].val != CZ_EMPTY:
                slot = (slot + 1) & (cap - 1)
            slots[slot] = m.slots[k]
    free(m.slots)
    m.slots = slots
    m.cap = cap
    m.deleted = 0
    return 0


cdef void cz_map_put(CzMap *m, uint64_t key, int32_t val) noexcept nogil:
    # The key is absent and cz_map_reserve made room.
    cdef Py_ssize_t mask = m.cap - 1
    cdef Py_ssize_t slot = cz_mix(key) & mask
    while m.slots[slot].val >= 0:
        slot = (slot + 1) & mask
    if m.slots[slot].val == CZ_DELETED:
        m.deleted -= 1
    m.slots[slot].key = key
    m.slots[slot].val = val
    m.used += 1


cdef void cz_map_del(CzMap *m, uint64_t key) noexcept nogil:
    cdef Py_ssize_t mask = m.cap - 1
    cdef Py_ssize_t slot = cz_mix(key) & mask
    while True:
        if m.slots[slot].val == CZ_EMPTY:
            return
        if m.slots[slot].val >= 0 and m.slots[slot].key == key:
            m.slots[slot].val = CZ_DELETED
            m.used -= 1
            m.deleted += 1
            return
        slot = (slot + 1) & mask


cdef void cz_map_clear(CzMap *m) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(m.cap):
        m.slots[k].val = CZ_EMPTY
    m.used = 0
    m.deleted = 0
