# /accstatz scan: step 1 of AccstatzTable.update (accstatz.pxi). Included by _core.pyx, after
# the /jsz scan whose key tables and member stepping it uses.
#
# az_body() reads a whole body without the GIL into one AzRec per account. The reference reads
# the body with orjson, which refuses more than the /connz cursor does: invalid UTF-8 anywhere, a
# lone \u surrogate in any string, a number that reads as an infinite double. So the values this
# scan steps over are checked by az_skip, cz_skip_value with those checks added, and the body's
# bytes by az_utf8_error; the nesting bound is CZ_MAX_DEPTH, and the reference keeps it too. A
# repeated key's last value wins, as in orjson: an entry's fields are read once the entry is
# scanned, and a wrong account in an account_statz array that a later one replaces is no error.

from libc.string cimport memchr


# The layouts of the /accstatz parts (here rather than in _core.pxd, which holds the layouts the
# other parts share). Account names are interned in a CzStrTab, whose ids are the account slots.

cdef extern from *:
    """
    typedef unsigned __int128 az_u128;
    """
    # Sums of counters past 2**64-1 (folded falls, _other), exact as the reference's ints.
    ctypedef unsigned long long az_u128

cdef struct AzRec:
    Py_ssize_t name_at     # the name's bytes: in the body, or in AccstatzTable.names if esc
    Py_ssize_t name_len
    uint64_t hash
    uint64_t gauges[3]     # conns, leafnodes, num_subscriptions
    uint64_t raw[5]        # sent msgs, bytes, received msgs, bytes, slow_consumers
    char *data             # a copy of the name for a new account, made before the commit
    int32_t slot           # the account held under the name, or -1
    int32_t esc

cdef struct AzAccount:
    az_u128 base[5]        # what folded falls added to raw
    uint64_t raw[5]        # as the server reported them last
    uint64_t gauges[3]
    uint64_t listed        # the update that last listed it
    uint64_t active        # the last update it had a connection or a counter moved; 0: never
    double seen_at
    int32_t placed         # exported on its own, else summed in _other
    int32_t live
    int32_t label_ok       # AccstatzTable.labels holds its label

cdef struct AzSort:
    # One account in an ordering of the commit (newcomers, busiest, victims).
    az_u128 key
    double t
    int32_t cls
    int32_t slot
    const unsigned char *name
    Py_ssize_t len

cdef struct AzScan:
    Py_ssize_t now_at      # where the values of now and of the last account_statz start
    Py_ssize_t list_at
    Py_ssize_t entries     # entries of the account_statz array being read
    Py_ssize_t bad_index   # its first entry that is no account (-1: none), and why
    const char *bad_field
    int32_t bad_kind


cdef enum:
    # Keys of the document (az_doc_keys), of an entry (az_entry_keys), of sent and received.
    AZ_D_NOW = 0
    AZ_D_LIST = 1
    AZ_E_ACC = 0
    AZ_E_CONNS = 1
    AZ_E_LEAFNODES = 2
    AZ_E_SUBS = 3
    AZ_E_SLOW = 4
    AZ_E_SENT = 5
    AZ_E_RECEIVED = 6
    AZ_P_MSGS = 0
    AZ_P_BYTES = 1
    AZ_KEY_ROOM = 128      # escaped keys up to this long are decoded; a known key is 17 at most

cdef enum:
    # Why an entry is no account (AzScan.bad_kind).
    AZ_BAD_OBJECT = 1      # the entry is not an object
    AZ_BAD_MISSING = 2     # bad_field is absent (or null, for sent and received)
    AZ_BAD_TYPE = 3        # bad_field has the wrong type or is out of range


cdef const char *az_doc_names[2]
cdef Py_ssize_t az_doc_lens[2]
cdef const char *az_entry_names[7]
cdef Py_ssize_t az_entry_lens[7]
cdef const char *az_part_names[2]
cdef Py_ssize_t az_part_lens[2]
cdef JzTable az_doc_keys, az_entry_keys, az_part_keys
cdef tuple _AZ_KEYS = ((b"now", b"account_statz"),
                       (b"acc", b"conns", b"leafnodes", b"num_subscriptions", b"slow_consumers",
                        b"sent", b"received"),
                       (b"msgs", b"bytes"))


cdef void az_table(JzTable *t, const char **names, Py_ssize_t *lens, tuple keys):
    cdef int j
    t.names = names
    t.lens = lens
    t.count = len(keys)
    for j in range(t.count):
        names[j] = <bytes>keys[j]
        lens[j] = len(keys[j])


az_table(&az_doc_keys, az_doc_names, az_doc_lens, _AZ_KEYS[0])
az_table(&az_entry_keys, az_entry_names, az_entry_lens, _AZ_KEYS[1])
az_table(&az_part_keys, az_part_names, az_part_lens, _AZ_KEYS[2])


cdef Py_ssize_t az_utf8_error(const unsigned char *b, Py_ssize_t n) noexcept nogil:
    # Index of the first byte of b that is not well-formed UTF-8, or -1; ASCII a word at a time.
    cdef Py_ssize_t i = 0, need
    cdef uint64_t w
    cdef unsigned char c
    while i < n:
        if CZ_WORDWISE and i + 8 <= n:
            memcpy(&w, b + i, 8)
            if not (w & <uint64_t>0x8080808080808080ULL):
                i += 8
                continue
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        need = 2 if c < 0xE0 else 3 if c < 0xF0 else 4
        if need > n - i:
            need = n - i
        if cz_utf8_error(b + i, need) >= 0:
            return i
        i += need
    return -1


cdef int az_escapes(const unsigned char *b, Py_ssize_t i, Py_ssize_t end) except -1 nogil:
    # The content b[i:end] of a string whose escapes cz_string_end checked: refuses a \u
    # surrogate that is not half of a pair, as orjson does.
    cdef const void *p
    cdef uint32_t cp
    while True:
        p = memchr(b + i, b'\\', end - i)
        if p == NULL:
            return 0
        i = <const unsigned char *>p - b
        if b[i + 1] != b'u':
            i += 2
            continue
        cp = cz_hex4(b + i + 2)
        if 0xDC00 <= cp < 0xE000:
            cz_fail("lone low surrogate in string", i)
        if 0xD800 <= cp < 0xDC00:
            if i + 12 > end or b[i + 6] != b'\\' or b[i + 7] != b'u' or \
                    not (0xDC00 <= cz_hex4(b + i + 8) < 0xE000):
                cz_fail("lone high surrogate in string", i)
            i += 6
        i += 6


cdef Py_ssize_t az_string(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                          bint *escaped) except -1 nogil:
    # i is at the opening quote; returns the cursor past the closing one.
    cdef Py_ssize_t start = i + 1
    escaped[0] = False
    i = cz_string_end(b, n, start, escaped)
    if escaped[0]:
        az_escapes(b, start, i - 1)
    return i


cdef Py_ssize_t az_number(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) except -1 nogil:
    # A number, refused if it reads as an infinite double (orjson's rule: a fraction, an
    # exponent or an integer past 64 bits reads as a double). strtod rounds as orjson does.
    cdef Py_ssize_t end = cz_skip_number(b, n, i), k
    cdef bint wide = end - i - (b[i] == b'-') >= 20
    cdef char small[64]
    cdef char *text = small
    cdef double value
    for k in range(i, end):
        if b[k] == b'.' or b[k] == b'e' or b[k] == b'E':
            wide = True
            break
    if not wide:
        return end
    if end - i >= 64:
        text = <char *>malloc(end - i + 1)
        if text == NULL:
            with gil:
                raise MemoryError()
    memcpy(text, b + i, end - i)
    text[end - i] = 0
    value = strtod(text, NULL)
    if text != small:
        free(text)
    if value == INFINITY or value == -INFINITY:
        return cz_fail("number is infinity when read as a double", i)
    return end


cdef Py_ssize_t az_key(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, const JzTable *t,
                       int *field) except -1 nogil:
    # i is at the opening quote of a key; returns the cursor at its value. An escaped spelling of
    # a known key is that key.
    cdef bint esc = False
    cdef Py_ssize_t start = i + 1, klen
    cdef unsigned char tmp[AZ_KEY_ROOM]
    cdef const unsigned char *k = b + start
    if i >= n:
        return cz_fail("truncated body", n)
    if b[i] != b'"':
        return cz_fail("expected a key", i)
    i = az_string(b, n, i, &esc)
    klen = i - 1 - start
    field[0] = -1
    if esc:
        if klen > AZ_KEY_ROOM:
            return cz_colon(b, n, i)
        klen = cz_unescape(k, klen, tmp, start)
        k = tmp
    if klen > 0:
        field[0] = jz_match(t, k, klen)
    return cz_colon(b, n, i)


cdef Py_ssize_t az_skip(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        int depth) except -1 nogil:
    # Validates and steps over any JSON value, under orjson's rules (see the top).
    cdef bint esc = False
    cdef unsigned char c, close
    if i >= n:
        return cz_fail("truncated body", n)
    c = b[i]
    if c == b'"':
        return az_string(b, n, i, &esc)
    if c == b'-' or cz_digit(c):
        return az_number(b, n, i)
    if c != b'{' and c != b'[':
        return cz_skip_value(b, n, i, depth)
    if depth >= CZ_MAX_DEPTH:
        return cz_fail("nesting too deep", i)
    close = b'}' if c == b'{' else b']'
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == close:
        return i + 1
    while True:
        if close == b'}':
            if i >= n:
                return cz_fail("truncated body", n)
            if b[i] != b'"':
                return cz_fail("expected a key", i)
            i = cz_colon(b, n, az_string(b, n, i, &esc))
        i = az_skip(b, n, i, depth + 1)
        i = jz_next(b, n, i, close)
        if i < 0:
            return -1 - i


cdef Py_ssize_t az_fields(const unsigned char *b, Py_ssize_t n, Py_ssize_t i, const JzTable *t,
                          Py_ssize_t *off, int depth) except -1 nogil:
    # i is at the '{' of an object within depth containers; records where the values of t's keys
    # start (the last of a repeated key) in off, which the caller cleared, and steps over it.
    cdef int field
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        return i + 1
    while True:
        i = az_key(b, n, i, t, &field)
        if field >= 0:
            off[field] = i
        i = az_skip(b, n, i, depth + 1)
        i = jz_next(b, n, i, b'}')
        if i < 0:
            return -1 - i


cdef inline void az_bad(AzScan *s, int32_t kind, const char *field) noexcept nogil:
    # Keeps the first entry that is no account.
    if s.bad_index < 0:
        s.bad_index = s.entries
        s.bad_kind = kind
        s.bad_field = field


cdef bint az_count(AzScan *s, const unsigned char *b, Py_ssize_t n, Py_ssize_t off,
                   const char *field, uint64_t *out) noexcept nogil:
    # A counter (Fields.counter: an integer in 0..2**64-1); else the entry is no account.
    if off < 0:
        az_bad(s, AZ_BAD_MISSING, field)
        return False
    if not jz_uint(b, n, off, out):
        az_bad(s, AZ_BAD_TYPE, field)
        return False
    return True


cdef int az_entry(AccstatzTable t, const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                  int depth) except -1 nogil:
    # i is at the '{' of an entry of account_statz; adds its account to the records, or notes
    # why it is none. Returns the cursor past it in t.scan.entries' stead: see az_list.
    cdef AzScan *s = &t.scan
    cdef Py_ssize_t off[7]
    cdef Py_ssize_t sent[2]
    cdef Py_ssize_t received[2]
    cdef Py_ssize_t *part
    cdef AzRec *r
    cdef bint esc = False
    cdef int field
    jz_clear(off, 7)
    jz_clear(sent, 2)
    jz_clear(received, 2)
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        i += 1
    else:
        while True:
            i = az_key(b, n, i, &az_entry_keys, &field)
            if field >= 0:
                off[field] = i
            if (field == AZ_E_SENT or field == AZ_E_RECEIVED) and b[i] == b'{':
                part = &sent[0] if field == AZ_E_SENT else &received[0]
                jz_clear(part, 2)
                i = az_fields(b, n, i, &az_part_keys, part, depth + 1)
            else:
                i = az_skip(b, n, i, depth + 1)
            i = jz_next(b, n, i, b'}')
            if i < 0:
                i = -1 - i
                break
    if s.bad_index >= 0:
        return i
    # The reference's order: the sections, the name, then each counter.
    if jz_null(b, off[AZ_E_SENT]):
        az_bad(s, AZ_BAD_MISSING, "sent")
    elif b[off[AZ_E_SENT]] != b'{':
        az_bad(s, AZ_BAD_TYPE, "sent")
    elif jz_null(b, off[AZ_E_RECEIVED]):
        az_bad(s, AZ_BAD_MISSING, "received")
    elif b[off[AZ_E_RECEIVED]] != b'{':
        az_bad(s, AZ_BAD_TYPE, "received")
    elif off[AZ_E_ACC] < 0:
        az_bad(s, AZ_BAD_MISSING, "acc")
    elif b[off[AZ_E_ACC]] != b'"':
        az_bad(s, AZ_BAD_TYPE, "acc")
    if s.bad_index >= 0:
        return i
    cz_reserve(<void **>&t.recs, &t.recs_cap, t.nrecs + 1, sizeof(AzRec))
    r = &t.recs[t.nrecs]
    if not (az_count(s, b, n, off[AZ_E_CONNS], "conns", &r.gauges[0])
            and az_count(s, b, n, off[AZ_E_LEAFNODES], "leafnodes", &r.gauges[1])
            and az_count(s, b, n, off[AZ_E_SUBS], "num_subscriptions", &r.gauges[2])
            and az_count(s, b, n, sent[AZ_P_MSGS], "sent.msgs", &r.raw[0])
            and az_count(s, b, n, sent[AZ_P_BYTES], "sent.bytes", &r.raw[1])
            and az_count(s, b, n, received[AZ_P_MSGS], "received.msgs", &r.raw[2])
            and az_count(s, b, n, received[AZ_P_BYTES], "received.bytes", &r.raw[3])
            and az_count(s, b, n, off[AZ_E_SLOW], "slow_consumers", &r.raw[4])):
        return i
    r.name_at = off[AZ_E_ACC] + 1
    r.name_len = cz_string_end(b, n, r.name_at, &esc) - 1 - r.name_at
    r.esc = esc
    if esc:
        cz_reserve(<void **>&t.names, &t.names_cap, t.names_len + r.name_len, 1)
        r.name_len = cz_unescape(b + r.name_at, r.name_len, t.names + t.names_len, r.name_at)
        r.name_at = t.names_len
        t.names_len += r.name_len
    r.data = NULL
    r.slot = -1
    t.nrecs += 1
    return i


cdef Py_ssize_t az_list(AccstatzTable t, const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        int depth) except -1 nogil:
    # i is at the '[' of account_statz; its entries replace those of an earlier one.
    cdef AzScan *s = &t.scan
    t.nrecs = 0
    t.names_len = 0
    s.entries = 0
    s.bad_index = -1
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b']':
        return i + 1
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] == b'{':
            i = az_entry(t, b, n, i, depth + 1)
        else:
            az_bad(s, AZ_BAD_OBJECT, "")
            i = az_skip(b, n, i, depth + 1)
        s.entries += 1
        i = jz_next(b, n, i, b']')
        if i < 0:
            return -1 - i


cdef int az_body(AccstatzTable t, const unsigned char *b, Py_ssize_t n) except -1 nogil:
    cdef AzScan *s = &t.scan
    cdef Py_ssize_t i, bad
    cdef int field
    s.now_at = s.list_at = -1
    s.bad_index = -1
    t.nrecs = 0
    t.names_len = 0
    bad = az_utf8_error(b, n)
    if bad >= 0:
        return cz_fail("invalid UTF-8", bad)
    i = cz_skip_ws(b, n, 0)
    if i >= n:
        return cz_fail("empty body", n)
    if b[i] != b'{':
        i = cz_skip_ws(b, n, az_skip(b, n, i, 0))
        if i != n:
            return cz_fail("data after the JSON value", i)
        return cz_fail("expected a JSON object", 0)
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == b'}':
        i += 1
    else:
        while True:
            i = az_key(b, n, i, &az_doc_keys, &field)
            if field == AZ_D_NOW:
                s.now_at = i
            elif field == AZ_D_LIST:
                s.list_at = i
            if field == AZ_D_LIST and b[i] == b'[':
                i = az_list(t, b, n, i, 1)
            else:
                i = az_skip(b, n, i, 1)
            i = jz_next(b, n, i, b'}')
            if i < 0:
                i = -1 - i
                break
    i = cz_skip_ws(b, n, i)
    if i != n:
        return cz_fail("data after the JSON object", i)
    return 0


cdef bint az_match(AccstatzTable t, const unsigned char *b) except -1 nogil:
    # After the scan: each record's name hashed and looked up among the accounts held. Whether
    # a name is listed twice.
    cdef Py_ssize_t cap = 16, k, slot
    cdef int32_t *index
    cdef AzRec *r
    cdef AzRec *q
    cdef const unsigned char *p
    while cap < 2 * t.nrecs:
        cap *= 2
    index = <int32_t *>malloc(cap * sizeof(int32_t))
    if index == NULL:
        with gil:
            raise MemoryError()
    memset(index, 0xFF, cap * sizeof(int32_t))
    try:
        for k in range(t.nrecs):
            r = &t.recs[k]
            p = az_name(t, b, r)
            r.hash = cz_hash(p, r.name_len)
            slot = r.hash & (cap - 1)
            while index[slot] >= 0:
                q = &t.recs[index[slot]]
                if q.hash == r.hash and q.name_len == r.name_len and \
                        memcmp(az_name(t, b, q), p, r.name_len) == 0:
                    return True
                slot = (slot + 1) & (cap - 1)
            index[slot] = <int32_t>k
            r.slot = az_find(&t.strs, p, r.name_len, r.hash)
    finally:
        free(index)
    return False


cdef inline const unsigned char *az_name(AccstatzTable t, const unsigned char *b,
                                         const AzRec *r) noexcept nogil:
    if r.esc:
        return t.names + r.name_at
    return b + r.name_at


cdef int32_t az_find(const CzStrTab *tab, const unsigned char *p, Py_ssize_t length,
                     uint64_t h) noexcept nogil:
    # The id of a name in tab, or -1; cz_intern's probe, without adding.
    cdef Py_ssize_t slot
    cdef int32_t e
    cdef const CzStr *s
    if tab.icap == 0:
        return -1
    slot = h & (tab.icap - 1)
    while True:
        e = tab.index[slot]
        if e == CZ_EMPTY:
            return -1
        if e >= 0:
            s = &tab.ents[e]
            if s.hash == h and s.len == length and memcmp(s.data, p, length) == 0:
                return e
        slot = (slot + 1) & (tab.icap - 1)
