# /leafz scan: steps 1 and 2 of a LeafzAggregator update (leafz.pxi). Included by _core.pyx.
#
# scan() reads a /leafz body without the GIL into one record per leafnode: numbers parsed, label
# values left as spans of the borrowed body; then it tells the records of leafnodes the state
# holds from new ones, whose labels it interns, and counts the held leafnodes the body lacks.
# match_closed() reads /connz closed pages with the /connz scanner and keeps the final counters
# of those. Neither changes what a caller can see.


cdef enum:
    # The fields of a leafnode object the scan reads; the rest it skips. The counters follow
    # CZ_CTR_* order, the spans LZ_L_* order.
    LZ_F_OTHER = 0
    LZ_F_ID
    LZ_F_IN_MSGS
    LZ_F_OUT_MSGS
    LZ_F_IN_BYTES
    LZ_F_OUT_BYTES
    LZ_F_SUBS
    LZ_F_RTT
    LZ_F_IS_SPOKE
    LZ_F_ACCOUNT
    LZ_F_NAME
    LZ_F_IP

cdef enum:
    LZ_TOP_OTHER = 0
    LZ_TOP_LEAFS
    LZ_TOP_LEAFNODES


# ---------------------------------------------------------------------------------------------
# Phase 1: a body to records, without the GIL.

cdef inline int lz_field(const unsigned char *k, Py_ssize_t n) noexcept nogil:
    if n == 2:
        if k[0] == b'i' and k[1] == b'd':
            return LZ_F_ID
        if k[0] == b'i' and k[1] == b'p':
            return LZ_F_IP
    elif n == 3:
        if memcmp(k, b"rtt", 3) == 0:
            return LZ_F_RTT
    elif n == 4:
        if memcmp(k, b"name", 4) == 0:
            return LZ_F_NAME
    elif n == 7:
        if memcmp(k, b"in_msgs", 7) == 0:
            return LZ_F_IN_MSGS
        if memcmp(k, b"account", 7) == 0:
            return LZ_F_ACCOUNT
    elif n == 8:
        if memcmp(k, b"out_msgs", 8) == 0:
            return LZ_F_OUT_MSGS
        if memcmp(k, b"in_bytes", 8) == 0:
            return LZ_F_IN_BYTES
        if memcmp(k, b"is_spoke", 8) == 0:
            return LZ_F_IS_SPOKE
    elif n == 9:
        if memcmp(k, b"out_bytes", 9) == 0:
            return LZ_F_OUT_BYTES
    elif n == 13:
        if memcmp(k, b"subscriptions", 13) == 0:
            return LZ_F_SUBS
    return LZ_F_OTHER


cdef inline int lz_top_field(const unsigned char *k, Py_ssize_t n) noexcept nogil:
    if n == 5 and memcmp(k, b"leafs", 5) == 0:
        return LZ_TOP_LEAFS
    if n == 9 and memcmp(k, b"leafnodes", 9) == 0:
        return LZ_TOP_LEAFNODES
    return LZ_TOP_OTHER


cdef Py_ssize_t lz_key(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, bint top,
                       int *field) except -1 nogil:
    # i is at the opening quote of a key; returns the cursor at its value. An escaped spelling of
    # a known key is still that key (decoding never lengthens).
    cdef bint esc = False
    cdef Py_ssize_t start = i + 1, klen
    cdef unsigned char tmp[96]
    cdef const unsigned char *k = b + start
    if b[i] != b'"':
        return cz_fail("expected a key", i)
    i = cz_string_end(b, n, start, &esc)
    klen = i - 1 - start
    if esc:
        if klen > 96:
            field[0] = LZ_F_OTHER
            return cz_colon(b, n, i)
        klen = cz_unescape(k, klen, tmp, start)
        k = tmp
    field[0] = lz_top_field(k, klen) if top else lz_field(k, klen)
    return cz_colon(b, n, i)


cdef Py_ssize_t lz_value(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, LzRec *r,
                         int field) except -1 nogil:
    # i is at the value of a field the scan reads; null reads as absent, whatever the field.
    cdef CzSpan span
    if b[i] == b'n':
        i = cz_literal(b, n, i, b"null", 4)
        if field == LZ_F_ID:
            r.flags &= ~LZ_REC_ID
        elif field == LZ_F_RTT:
            r.flags &= ~LZ_REC_RTT
        elif field == LZ_F_IS_SPOKE:
            r.spoke = 0
        elif field >= LZ_F_ACCOUNT:
            r.span[field - LZ_F_ACCOUNT].flags = 0
        elif field == LZ_F_SUBS:
            r.subs = 0
        else:
            r.ctr[field - LZ_F_IN_MSGS] = 0
        return i
    if field >= LZ_F_ACCOUNT:
        return cz_string_field(b, n, i, &r.span[field - LZ_F_ACCOUNT])
    if field == LZ_F_IS_SPOKE:
        if b[i] == b't':
            r.spoke = 1
            return cz_literal(b, n, i, b"true", 4)
        if b[i] == b'f':
            r.spoke = 0
            return cz_literal(b, n, i, b"false", 5)
        return cz_fail("is_spoke is not a boolean", i)
    if field == LZ_F_RTT:
        span.off = span.len = span.flags = 0
        i = cz_string_field(b, n, i, &span)
        if span.len == 0:
            # An empty rtt means "not measured", like an absent one.
            r.flags &= ~LZ_REC_RTT
        elif span.flags & CZ_SPAN_ESC:
            cz_decoded(b + span.off, span.len, span.off, &r.rtt_ns, NULL)
            r.flags |= LZ_REC_RTT
        else:
            cz_duration(b + span.off, span.len, span.off, &r.rtt_ns)
            r.flags |= LZ_REC_RTT
        return i
    if field == LZ_F_ID:
        r.flags |= LZ_REC_ID
        return cz_uint(b, n, i, &r.id)
    if field == LZ_F_SUBS:
        return cz_uint(b, n, i, &r.subs)
    return cz_uint(b, n, i, &r.ctr[field - LZ_F_IN_MSGS])


cdef Py_ssize_t lz_leaf(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        LzRec *r) except -1 nogil:
    # i is at the '{' of one leafnode object.
    cdef int field = LZ_F_OTHER
    cdef Py_ssize_t at = i
    memset(r, 0, sizeof(LzRec))
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        return cz_fail("leafnode without id", at)
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        i = lz_key(b, n, i, False, &field)
        if field == LZ_F_OTHER:
            i = cz_skip_value(b, n, i, 2)
        else:
            i = lz_value(b, n, i, r, field)
        i = cz_skip_ws(b, n, i)
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif b[i] == b'}':
            break
        else:
            return cz_fail("expected ',' or '}' in a leafnode", i)
    if not (r.flags & LZ_REC_ID):
        return cz_fail("leafnode without id", at)
    return i + 1


cdef Py_ssize_t lz_leafs(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                         LzRecs *out) except -1 nogil:
    # i is at the '[' of the leafs array.
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b']':
        return i + 1
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] != b'{':
            return cz_fail("a leafnode is not an object", i)
        if out.n == out.cap:
            cz_reserve(<void **>&out.v, &out.cap, out.n + 1, sizeof(LzRec))
        i = lz_leaf(b, n, i, &out.v[out.n])
        out.n += 1
        i = cz_skip_ws(b, n, i)
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif b[i] == b']':
            return i + 1
        else:
            return cz_fail("expected ',' or ']' between leafnodes", i)


cdef int lz_body(const unsigned char *b, Py_ssize_t n, LzRecs *out) except -1 nogil:
    # The top-level object of a /leafz body; only 'leafs' and its count 'leafnodes' matter.
    cdef Py_ssize_t i = cz_skip_ws(b, n, 0)
    cdef int top = LZ_TOP_OTHER
    cdef bint found = False
    cdef uint64_t hint
    if n > <Py_ssize_t>0xFFFFFFFF:
        cz_fail("a body larger than 4 GiB", 0)
    if i >= n:
        cz_fail("empty body", n)
    if b[i] != b'{':
        cz_fail("body is not a JSON object", i)
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        cz_fail("body has no leafs array", i)
    while True:
        if i >= n:
            cz_fail("truncated body", n)
        i = lz_key(b, n, i, True, &top)
        if top == LZ_TOP_LEAFS:
            found = True
            out.n = 0        # a repeated key replaces the earlier value
            if b[i] == b'n':
                i = cz_literal(b, n, i, b"null", 4)
            elif b[i] == b'[':
                i = lz_leafs(b, n, i, out)
            else:
                cz_fail("leafs is not an array", i)
        elif top == LZ_TOP_LEAFNODES and b[i] != b'n':
            i = cz_uint(b, n, i, &hint)
            # A leafnode object takes at least 8 bytes; a bigger claim is not believed.
            if hint > <uint64_t>(n // 8):
                hint = n // 8
            cz_reserve(<void **>&out.v, &out.cap, out.n + <Py_ssize_t>hint, sizeof(LzRec))
        else:
            i = cz_skip_value(b, n, i, 1)
        i = cz_skip_ws(b, n, i)
        if i >= n:
            cz_fail("truncated body", n)
        if b[i] == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif b[i] == b'}':
            break
        else:
            cz_fail("expected ',' or '}'", i)
    if not found:
        cz_fail("body has no leafs array", i)
    i = cz_skip_ws(b, n, i + 1)
    if i != n:
        cz_fail("data after the JSON object", i)
    return 0


# ---------------------------------------------------------------------------------------------
# Phase 2: which records are leafnodes the state holds, and the labels of the others.

cdef inline bint lz_went_back(const uint64_t *now, const uint64_t *held) noexcept nogil:
    cdef int q
    for q in range(CZ_NCTR):
        if now[q] < held[q]:
            return True
    return False


cdef int lz_intern_rec(LeafzAggregator agg, const unsigned char *buf, LzRec *r) except -1 nogil:
    # The ids of the record's labels, and the id of its group key: the hex of the group_by ids.
    cdef int32_t slot, k
    cdef Py_ssize_t length
    cdef const CzSpan *span
    cdef char key[4 * 8 + 1]
    for slot in range(LZ_NSPANS):
        span = &r.span[slot]
        if not (span.flags & CZ_SPAN_SET):
            r.ids[slot] = cz_intern(&agg.strs, b"", 0, 0, False)
        elif not (span.flags & CZ_SPAN_ESC):
            r.ids[slot] = cz_intern(&agg.strs, buf + span.off, span.len, span.off, False)
        else:
            cz_reserve(<void **>&agg.scratch, &agg.scratch_cap, span.len + 1, 1)
            length = cz_unescape(buf + span.off, span.len, agg.scratch, span.off)
            r.ids[slot] = cz_intern(&agg.strs, agg.scratch, length, span.off, True)
    if r.spoke:
        r.ids[LZ_L_IS_SPOKE] = cz_intern(&agg.strs, b"true", 4, 0, False)
    else:
        r.ids[LZ_L_IS_SPOKE] = cz_intern(&agg.strs, b"false", 5, 0, False)
    for k in range(agg.nfields):
        snprintf(key + 8 * k, 9, b"%08x", <unsigned int>r.ids[agg.fields[k]])
    r.gkey = cz_intern(&agg.gkeys, <const unsigned char *>key, 8 * agg.nfields, 0, False)
    cz_reserve(<void **>&agg.group_at, &agg.group_at_cap, agg.gkeys.n, sizeof(int32_t))
    return 0


cdef int lz_scan(LeafzAggregator agg, const unsigned char *buf, Py_ssize_t n) except -1 nogil:
    cdef Py_ssize_t k, j
    cdef LzRec *r
    cdef LzLeaf *c
    cdef int32_t st
    agg.recs.n = 0
    lz_body(buf, n, &agg.recs)
    agg.scan_seq += 1
    agg.strs.nfresh = 0
    agg.gkeys.nfresh = 0
    for k in range(agg.recs.n):
        r = &agg.recs.v[k]
        r.state = -1
        st = cz_map_get(&agg.ids, r.id)
        if st >= 0:
            c = &agg.leafs[st]
            if c.listed == agg.scan_seq:
                r.flags |= LZ_REC_DUP
                continue
            c.listed = agg.scan_seq
            if not lz_went_back(r.ctr, c.ctr):
                continue
        r.flags |= LZ_REC_NEW
        lz_intern_rec(agg, buf, r)
    for k in range(agg.gkeys.nfresh):
        agg.group_at[agg.gkeys.fresh[k]] = -1
    agg.wanted = agg.matched = 0
    for j in range(agg.nleaf_slots):
        c = &agg.leafs[j]
        if c.used and c.listed != agg.scan_seq:
            agg.wanted += 1
    return 0


cdef int lz_match(LeafzAggregator agg, const unsigned char *buf, Py_ssize_t n) except -1 nogil:
    # The final counters of the wanted leafnodes that a /connz closed page lists, by cid.
    cdef uint64_t total = 0
    cdef Py_ssize_t k
    cdef int32_t st
    cdef LzLeaf *c
    cdef const CzRec *r
    agg.closed_recs.n = 0
    cz_body(buf, n, &agg.closed_recs, 0, &total)
    for k in range(agg.closed_recs.n):
        r = &agg.closed_recs.v[k]
        st = cz_map_get(&agg.ids, r.cid)
        if st < 0:
            continue
        c = &agg.leafs[st]
        if c.listed != agg.scan_seq and c.found != agg.scan_seq:
            c.found = agg.scan_seq
            memcpy(c.final, r.ctr, sizeof(c.final))
            agg.matched += 1
    return 0
