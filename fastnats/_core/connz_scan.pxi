# /connz scan: phases 1 and 2 of ConnzAggregator.update(). Included by _core.pyx.
#
# Phase 1 reads every page of a body, without the GIL, into one C record per connection: numbers
# parsed, label values left as spans of the borrowed body. Phase 2 turns the label spans of the
# connections the aggregator does not hold yet into interned ids. Neither changes what a caller
# can see, so a ConnzDecodeError or MemoryError from here leaves the aggregator as it was.


# ---------------------------------------------------------------------------------------------
# A body: its top-level object, the connections array, one connection object and its fields.

cdef inline int cz_field(const unsigned char *k, Py_ssize_t n) noexcept nogil:
    if n == 2:
        return CZ_F_IP if k[0] == b'i' and k[1] == b'p' else CZ_F_OTHER
    if n == 3:
        if memcmp(k, b"cid", 3) == 0:
            return CZ_F_CID
        if memcmp(k, b"rtt", 3) == 0:
            return CZ_F_RTT
    elif n == 4:
        if memcmp(k, b"name", 4) == 0:
            return CZ_F_NAME
        if memcmp(k, b"lang", 4) == 0:
            return CZ_F_LANG
        if memcmp(k, b"kind", 4) == 0:
            return CZ_F_KIND
        if memcmp(k, b"type", 4) == 0:
            return CZ_F_TYPE
        if memcmp(k, b"idle", 4) == 0:
            return CZ_F_IDLE
    elif n == 5:
        if memcmp(k, b"start", 5) == 0:
            return CZ_F_START
    elif n == 7:
        if memcmp(k, b"in_msgs", 7) == 0:
            return CZ_F_IN_MSGS
        if memcmp(k, b"version", 7) == 0:
            return CZ_F_VERSION
        if memcmp(k, b"account", 7) == 0:
            return CZ_F_ACCOUNT
    elif n == 8:
        if memcmp(k, b"out_msgs", 8) == 0:
            return CZ_F_OUT_MSGS
        if memcmp(k, b"in_bytes", 8) == 0:
            return CZ_F_IN_BYTES
    elif n == 9:
        if memcmp(k, b"out_bytes", 9) == 0:
            return CZ_F_OUT_BYTES
    elif n == 13:
        if memcmp(k, b"pending_bytes", 13) == 0:
            return CZ_F_PENDING
        if memcmp(k, b"subscriptions", 13) == 0:
            return CZ_F_SUBS
    return CZ_F_OTHER


cdef Py_ssize_t cz_key(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, int *field) except -1 nogil:
    # i is at the opening quote of a key; returns the cursor at the start of the value.
    cdef bint esc = False
    cdef Py_ssize_t start = i + 1, klen
    cdef unsigned char tmp[96]
    if b[i] != b'"':
        return cz_fail("expected a key", i)
    i = cz_string_end(b, n, start, &esc)
    klen = i - 1 - start
    if not esc:
        field[0] = cz_field(b + start, klen)
    elif klen <= 96:
        # An escaped spelling of a known key is still that key (decoding never lengthens).
        field[0] = cz_field(tmp, cz_unescape(b + start, klen, tmp, start))
    else:
        field[0] = CZ_F_OTHER
    return cz_colon(b, n, i)


cdef Py_ssize_t cz_string_field(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                                CzSpan *span) except -1 nogil:
    cdef bint esc = False
    if b[i] != b'"':
        return cz_fail("expected a string", i)
    span.off = i + 1
    i = cz_string_end(b, n, i + 1, &esc)
    if i - 1 - span.off > 0x7FFFFFFF:
        return cz_fail("string longer than 2 GiB", span.off)
    span.len = <int32_t>(i - 1 - span.off)
    span.flags = CZ_SPAN_SET | (CZ_SPAN_ESC if esc else 0)
    return i


cdef int cz_decoded(const unsigned char *s, Py_ssize_t n, Py_ssize_t at, int64_t *duration,
                    uint64_t *hash) except -1 nogil:
    # An escaped duration or start time is read as what it decodes to: the nanoseconds of the
    # one, the hash of the other. Nothing but a hostile body escapes them, so this path may
    # allocate.
    cdef unsigned char small[64]
    cdef unsigned char *buf = small
    cdef Py_ssize_t length
    if n > 64:
        buf = <unsigned char *>malloc(n)
        if buf == NULL:
            with gil:
                raise MemoryError()
    try:
        length = cz_unescape(s, n, buf, at)
        if duration != NULL:
            cz_duration(buf, length, at, duration)
        else:
            hash[0] = cz_hash(buf, length)
    finally:
        if buf != small:
            free(buf)
    return 0


cdef Py_ssize_t cz_duration_field(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                                  CzRec *r, uint32_t flag, int64_t *out) except -1 nogil:
    cdef CzSpan span
    span.off = span.len = span.flags = 0
    i = cz_string_field(b, n, i, &span)
    if span.len == 0:
        # An empty duration means "not measured", like an absent field.
        r.flags &= ~flag
        return i
    if span.flags & CZ_SPAN_ESC:
        cz_decoded(b + span.off, span.len, span.off, out, NULL)
    else:
        cz_duration(b + span.off, span.len, span.off, out)
    r.flags |= flag
    return i


cdef void cz_null_field(CzRec *r, int field) noexcept nogil:
    # null reads as absent, whatever the field.
    if field == CZ_F_CID:
        r.flags &= ~CZ_REC_CID
    elif field == CZ_F_RTT:
        r.flags &= ~CZ_REC_RTT
    elif field == CZ_F_IDLE:
        r.flags &= ~CZ_REC_IDLE
    elif field >= CZ_F_ACCOUNT:
        r.span[field - CZ_F_ACCOUNT].flags = 0
    elif field == CZ_F_START:
        r.start_hash = cz_hash(b"", 0)
    elif field == CZ_F_PENDING:
        r.pending = 0
    elif field == CZ_F_SUBS:
        r.subs = 0
    elif field >= CZ_F_IN_MSGS:
        r.ctr[field - CZ_F_IN_MSGS] = 0


cdef inline Py_ssize_t cz_conn_value(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                                     CzRec *r, int field) except -1 nogil:
    # i is at the value of a field the scan reads; returns the cursor after it.
    cdef CzSpan span
    cdef uint64_t *num
    if b[i] == b'n':
        i = cz_literal(b, n, i, b"null", 4)
        cz_null_field(r, field)
        return i
    if field >= CZ_F_ACCOUNT:
        return cz_string_field(b, n, i, &r.span[field - CZ_F_ACCOUNT])
    if field == CZ_F_START:
        i = cz_string_field(b, n, i, &span)
        if span.flags & CZ_SPAN_ESC:
            cz_decoded(b + span.off, span.len, span.off, NULL, &r.start_hash)
        else:
            r.start_hash = cz_hash(b + span.off, span.len)
        return i
    if field == CZ_F_RTT:
        return cz_duration_field(b, n, i, r, CZ_REC_RTT, &r.rtt_ns)
    if field == CZ_F_IDLE:
        return cz_duration_field(b, n, i, r, CZ_REC_IDLE, &r.idle_ns)
    if field == CZ_F_CID:
        num = &r.cid
        r.flags |= CZ_REC_CID
    elif field == CZ_F_PENDING:
        num = &r.pending
    elif field == CZ_F_SUBS:
        num = &r.subs
    else:
        num = &r.ctr[field - CZ_F_IN_MSGS]
    return cz_uint(b, n, i, num)


cdef bint cz_is_leafnode(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    # Whether string content (escapes undecoded) reads "Leafnode". Checked without decoding the
    # string, so that a kind the scan never decodes is never refused for a bad escape.
    cdef const char *want = b"Leafnode"
    cdef Py_ssize_t i = 0, k = 0
    cdef int c
    while i < n:
        if k == 8:
            return False
        c = s[i]
        if c == b'\\':
            if s[i + 1] == b'u' and i + 6 <= n and s[i + 2] == b'0' and s[i + 3] == b'0':
                c = (cz_hexval(s[i + 4]) << 4) | cz_hexval(s[i + 5])
                i += 6
            elif s[i + 1] == b'/':
                c = b'/'
                i += 2
            else:
                return False
        else:
            i += 1
        if c != want[k]:
            return False
        k += 1
    return k == 8


cdef Py_ssize_t cz_conn(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        CzRec *r) except -1 nogil:
    # i is at the '{' of one connection object.
    cdef int field = CZ_F_OTHER
    cdef unsigned char c
    cdef Py_ssize_t at = i
    memset(r, 0, sizeof(CzRec))
    r.start_hash = cz_hash(b"", 0)
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        return cz_fail("connection without cid", at)
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        i = cz_key(b, n, i, &field)
        if field == CZ_F_OTHER:
            i = cz_skip_value(b, n, i, 2)
        else:
            i = cz_conn_value(b, n, i, r, field)
        i = cz_skip_ws(b, n, i)
        if i >= n:
            return cz_fail("truncated body", n)
        c = b[i]
        if c == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif c == b'}':
            break
        else:
            return cz_fail("expected ',' or '}' in a connection", i)
    if not (r.flags & CZ_REC_CID):
        return cz_fail("connection without cid", at)
    if r.span[CZ_L_KIND].flags & CZ_SPAN_SET and cz_is_leafnode(b + r.span[CZ_L_KIND].off,
                                                                 r.span[CZ_L_KIND].len):
        r.flags |= CZ_REC_LEAF
    return i + 1


cdef Py_ssize_t cz_conns(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, CzRecs *out,
                         int32_t page) except -1 nogil:
    # i is at the '[' of the connections array.
    cdef CzRec *r
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b']':
        return i + 1
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] != b'{':
            return cz_fail("a connection is not an object", i)
        if out.n == out.cap:
            cz_reserve(<void **>&out.v, &out.cap, out.n + 1, sizeof(CzRec))
        r = &out.v[out.n]
        i = cz_conn(b, n, i, r)
        r.page = page
        out.n += 1
        i = cz_skip_ws(b, n, i)
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif b[i] == b']':
            return i + 1
        else:
            return cz_fail("expected ',' or ']' between connections", i)


cdef enum:
    CZ_TOP_OTHER = 0
    CZ_TOP_CONNECTIONS
    CZ_TOP_TOTAL
    CZ_TOP_NUM_CONNECTIONS


cdef int cz_top_field(const unsigned char *k, Py_ssize_t n, Py_ssize_t at,
                      bint escaped) except -1 nogil:
    # The top-level key the scan reads; an escaped spelling of one is still that key.
    cdef unsigned char tmp[96]
    if escaped:
        if n > 96:
            return CZ_TOP_OTHER
        n = cz_unescape(k, n, tmp, at)
        k = tmp
    if n == 11 and memcmp(k, b"connections", 11) == 0:
        return CZ_TOP_CONNECTIONS
    if n == 5 and memcmp(k, b"total", 5) == 0:
        return CZ_TOP_TOTAL
    if n == 15 and memcmp(k, b"num_connections", 15) == 0:
        return CZ_TOP_NUM_CONNECTIONS
    return CZ_TOP_OTHER


cdef int cz_body(const unsigned char *b, Py_ssize_t n, CzRecs *out, int32_t page,
                 uint64_t *total) except -1 nogil:
    # Reads the top-level object of one /connz body; only 'total' and 'connections' matter.
    cdef Py_ssize_t i = cz_skip_ws(b, n, 0), ks
    cdef int top
    cdef bint esc, found = False
    cdef uint64_t hint
    cdef Py_ssize_t first = out.n
    if n > <Py_ssize_t>0xFFFFFFFF:
        cz_fail("a page larger than 4 GiB", 0)
    if i >= n:
        cz_fail("empty body", n)
    if b[i] != b'{':
        cz_fail("body is not a JSON object", i)
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        cz_fail("body has no connections array", i)
    while True:
        if i >= n:
            cz_fail("truncated body", n)
        if b[i] != b'"':
            cz_fail("expected a key", i)
        ks = i + 1
        esc = False
        i = cz_string_end(b, n, ks, &esc)
        top = cz_top_field(b + ks, i - 1 - ks, ks, esc)
        i = cz_colon(b, n, i)
        if top == CZ_TOP_CONNECTIONS:
            found = True
            out.n = first        # a repeated key replaces the earlier value
            if b[i] == b'n':
                i = cz_literal(b, n, i, b"null", 4)
            elif b[i] == b'[':
                i = cz_conns(b, n, i, out, page)
            else:
                cz_fail("connections is not an array", i)
        elif top == CZ_TOP_TOTAL:
            if b[i] == b'n':
                i = cz_literal(b, n, i, b"null", 4)
                total[0] = 0
            else:
                i = cz_uint(b, n, i, total)
        elif top == CZ_TOP_NUM_CONNECTIONS and b[i] != b'n':
            i = cz_uint(b, n, i, &hint)
            # A connection object takes at least 9 bytes; a bigger claim is not believed.
            if hint > <uint64_t>(n // 9):
                hint = n // 9
            cz_reserve(<void **>&out.v, &out.cap, out.n + <Py_ssize_t>hint, sizeof(CzRec))
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
        cz_fail("body has no connections array", i)
    i = cz_skip_ws(b, n, i + 1)
    if i != n:
        cz_fail("data after the JSON object", i)
    return 0


# ---------------------------------------------------------------------------------------------
# The phases, on the aggregator's state.

cdef list cz_pages(object body, str what):
    if isinstance(body, (list, tuple)):
        if not body:
            raise ValueError(f"{what} is an empty list of pages")
        return list(body)
    return [body]


cdef int cz_scan(ConnzAggregator agg, const CzPage *pages, Py_ssize_t nopen,
                 Py_ssize_t npages) except -1 nogil:
    # Phase 1: every page into agg.open_recs and agg.closed_recs; where_* name the page read.
    cdef Py_ssize_t k
    cdef uint64_t total = 0, page_total
    agg.open_recs.n = 0
    agg.closed_recs.n = 0
    for k in range(npages):
        agg.where_page = <int32_t>k
        agg.where_closed = k >= nopen
        page_total = 0
        cz_body(pages[k].buf, pages[k].len,
                &agg.closed_recs if k >= nopen else &agg.open_recs, <int32_t>k, &page_total)
        if k < nopen and page_total > total:
            total = page_total
    agg.scanned_total = total
    return 0


cdef inline bint cz_rec_named(const CzRec *r) noexcept nogil:
    # Whether the server had read the connection's CONNECT: it gives name, lang or version.
    return ((r.span[CZ_L_NAME].flags & CZ_SPAN_SET and r.span[CZ_L_NAME].len > 0)
            or (r.span[CZ_L_LANG].flags & CZ_SPAN_SET and r.span[CZ_L_LANG].len > 0)
            or (r.span[CZ_L_VERSION].flags & CZ_SPAN_SET and r.span[CZ_L_VERSION].len > 0))


cdef int cz_intern_rec(ConnzAggregator agg, const CzPage *pages, CzRec *r,
                       bint want_conn) except -1 nogil:
    # The ids of the record's group-by labels, and with want_conn of the labels that identify
    # the connection; the other slots get -1.
    cdef const unsigned char *buf = pages[r.page].buf
    cdef int32_t slot, k
    cdef Py_ssize_t length
    cdef const CzSpan *span
    cdef uint32_t want = 0
    agg.where_page = r.page
    for k in range(agg.nfields):
        want |= 1u << agg.fields[k]
    if want_conn:
        want |= (1u << CZ_L_NAME) | (1u << CZ_L_ACCOUNT) | (1u << CZ_L_IP)
    for slot in range(CZ_NLABELS):
        r.ids[slot] = -1
        if not (want & (1u << slot)):
            continue
        span = &r.span[slot]
        if (slot == CZ_L_KIND and (r.span[CZ_S_TYPE].flags & CZ_SPAN_SET)
                and r.span[CZ_S_TYPE].len > 0):
            span = &r.span[CZ_S_TYPE]
        if not (span.flags & CZ_SPAN_SET):
            r.ids[slot] = cz_intern(&agg.strs, b"", 0, 0, False)
        elif not (span.flags & CZ_SPAN_ESC):
            r.ids[slot] = cz_intern(&agg.strs, buf + span.off, span.len, span.off, False)
        else:
            cz_reserve(<void **>&agg.scratch, &agg.scratch_cap, span.len + 1, 1)
            length = cz_unescape(buf + span.off, span.len, agg.scratch, span.off)
            r.ids[slot] = cz_intern(&agg.strs, agg.scratch, length, span.off, True)
    return 0


cdef inline int32_t cz_held(ConnzAggregator agg, const CzRec *r) noexcept nogil:
    # The state slot of the connection the open record is, or -1: the slot held under its cid
    # counts if its start is the same and none of its counters went back.
    cdef int32_t st = cz_map_get(&agg.cids, r.cid)
    cdef int c
    if st < 0 or agg.conns[st].start_hash != r.start_hash:
        return -1
    for c in range(CZ_NCTR):
        if r.ctr[c] < agg.conns[st].ctr[c]:
            return -1
    return st


cdef int cz_intern_new(ConnzAggregator agg, const CzPage *pages) except -1 nogil:
    # Phase 2: marks the records of connections the state does not hold (CZ_REC_NEW) or that
    # now show their CONNECT's labels (CZ_REC_REGROUP), and interns their labels. A closed
    # record is new if its cid is above the settled floor and was never read before: nats-server
    # lists closed connections late, and numbers them before it lists them open, so a cid below
    # one already read may still be a connection nobody saw.
    cdef Py_ssize_t k
    cdef CzRec *r
    cdef CzConn *c
    cdef int32_t st
    agg.strs.nfresh = 0
    agg.where_closed = 0
    for k in range(agg.open_recs.n):
        r = &agg.open_recs.v[k]
        if r.flags & CZ_REC_LEAF:
            continue
        st = cz_held(agg, r)
        if st >= 0:
            if not (agg.conns[st].unnamed and cz_rec_named(r)):
                continue
            r.flags |= CZ_REC_REGROUP
        else:
            r.flags |= CZ_REC_NEW
        cz_intern_rec(agg, pages, r, True)
    agg.where_closed = 1
    for k in range(agg.closed_recs.n):
        r = &agg.closed_recs.v[k]
        if r.flags & CZ_REC_LEAF:
            continue
        st = cz_map_get(&agg.cids, r.cid)
        if st >= 0:
            c = &agg.conns[st]
            # Seen open before its CONNECT was read, it closed named: what it did since it was
            # last seen belongs to the group its labels name.
            if c.unnamed and c.start_hash == r.start_hash and cz_rec_named(r):
                r.flags |= CZ_REC_REGROUP
                cz_intern_rec(agg, pages, r, False)
        elif r.cid > agg.floor and cz_map_get(&agg.seen, r.cid) < 0:
            r.flags |= CZ_REC_NEW
            cz_intern_rec(agg, pages, r, False)
    return 0
