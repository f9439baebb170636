# /connz scanner and aggregator. Included by _core.pyx.
#
# One pass over the borrowed body, without the GIL, reads every connection into a C record; the
# records then fold into long-lived C state (per-cid counters, per-group totals) so the exported
# counters stay monotonic while connections come and go. Python objects are made only for label
# values, once per distinct value, and for the published snapshot.
#
# An update runs in three phases. Scan and intern may fail (ConnzDecodeError, MemoryError) and
# change nothing a caller can see; commit starts only after every allocation it needs is made, so
# it cannot fail half-way. The snapshot that families() returns is rebuilt after a commit only.
#
# Counting rules, which _reference.ConnzAggregator follows too: a connection's counters count in
# its group while it is open. When it leaves, its final counters from the closed body (else the
# last seen) join the group's closed total. A cid missing from an open body but not closed is
# remembered for CZ_ABSENT_GRACE refreshes, so that it is not counted twice if it was only
# skipped. A closed cid above every cid read before opened and closed between two refreshes and
# counts once. A cid listed again with another start time is another connection (a restart).
# /connz lists a connection before its CONNECT is read, without name, lang or version: such a
# connection moves to the group of the labels its CONNECT gives once they show. What it counted
# before stays in the old group (folded there); the new group owes it back (``debt``).

from fastnats.errors import ConnzDecodeError
from fastnats.metrics import (
    CONNZ as _CONNZ,
    CONNZ_IDLE_BUCKETS as _IDLE_BUCKETS,
    CONNZ_IDLE_LE as _IDLE_LE,
    CONNZ_PENDING_BUCKETS as _PENDING_BUCKETS,
    CONNZ_PENDING_LE as _PENDING_LE,
    CONNZ_RTT_BUCKETS as _RTT_BUCKETS,
    CONNZ_RTT_LE as _RTT_LE,
    CONNZ_SUBS_BUCKETS as _SUBS_BUCKETS,
    CONNZ_SUBS_LE as _SUBS_LE,
    DEFAULT_GROUP_BY as _DEFAULT_GROUP_BY,
    GROUP_BY_FIELDS as _GROUP_BY_FIELDS,
    GROUP_LABELS as _GROUP_LABELS,
    OTHER_GROUP as _OTHER_GROUP,
)

# ---------------------------------------------------------------------------------------------
# JSON reading primitives. Each takes the body, its length and a cursor, checks the cursor against
# the length before every read, and returns the cursor after what it read (or raises).

cdef enum:
    # Refreshes a cid missing from the open body is remembered for, in case it was only skipped
    # (paging while connections close shifts the pages), before it counts as closed for good.
    CZ_ABSENT_GRACE = 3
    CZ_MAX_DEPTH = 512      # levels of nesting, the body object included; bounds C recursion
    CZ_EMPTY = -1
    CZ_DELETED = -2

cdef unsigned char cz_ws[256]
cdef unsigned char cz_str_stop[256]     # bytes that end a run of plain string content
cdef int cz_i
for cz_i in range(256):
    cz_ws[cz_i] = cz_i in (0x20, 0x0A, 0x0D, 0x09)
    cz_str_stop[cz_i] = cz_i < 0x20 or cz_i == 0x22 or cz_i == 0x5C

cdef double cz_pow10[19]
for cz_i in range(19):
    cz_pow10[cz_i] = float(10 ** cz_i)

cdef uint64_t CZ_U64_MAX = 0xFFFFFFFFFFFFFFFFULL
cdef uint64_t CZ_I64_MAX = 0x7FFFFFFFFFFFFFFFULL

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define CZ_WORDWISE 1
    #else
    #define CZ_WORDWISE 0
    #endif
    """
    # Eight bytes at a time where the first interesting byte of a word is its lowest one.
    const bint CZ_WORDWISE
    int __builtin_ctzll(unsigned long long) nogil


cdef Py_ssize_t cz_fail(const char *msg, Py_ssize_t at) except -1 nogil:
    with gil:
        raise ConnzDecodeError(msg.decode("ascii"), at)


cdef inline Py_ssize_t cz_skip_ws(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # Indented bodies put a newline and a run of spaces before every key.
    cdef uint64_t w
    if i >= n or not cz_ws[b[i]]:
        return i
    if b[i] == b'\n':
        i += 1
    while CZ_WORDWISE and i + 8 <= n:
        memcpy(&w, b + i, 8)
        w ^= <uint64_t>0x2020202020202020ULL
        if w == 0:
            i += 8
            continue
        i += __builtin_ctzll(w) >> 3
        if not cz_ws[b[i]]:
            return i
        i += 1
    while i < n and cz_ws[b[i]]:
        i += 1
    return i


cdef inline bint cz_digit(unsigned char c) noexcept nogil:
    return <unsigned char>(c - 48) < 10


cdef inline int cz_hexval(unsigned char c) noexcept nogil:
    if cz_digit(c):
        return c - 48
    c |= 0x20
    if c >= 97 and c <= 102:
        return c - 87
    return -1


cdef Py_ssize_t cz_check_escape(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) except -1 nogil:
    # i is at a backslash; the escape is only validated here, decoding waits until a value is used.
    cdef int k
    if i + 1 >= n:
        return cz_fail("unterminated string", n)
    if b[i + 1] in b'"\\/bfnrt':
        return i + 2
    if b[i + 1] != b'u':
        return cz_fail("invalid escape in string", i)
    if i + 6 > n:
        return cz_fail("unterminated string", n)
    for k in range(2, 6):
        if cz_hexval(b[i + k]) < 0:
            return cz_fail("invalid \\u escape in string", i)
    return i + 6


cdef inline uint64_t cz_stop_bytes(uint64_t w) noexcept nogil:
    # The high bit of each byte of w that is a quote, a backslash or below 0x20. Only the lowest
    # flagged byte is exact (a borrow can flag bytes above it), which is all the caller reads.
    cdef uint64_t ones = <uint64_t>0x0101010101010101ULL
    cdef uint64_t quote = w ^ (ones * 0x22)
    cdef uint64_t slash = w ^ (ones * 0x5C)
    return (((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((w - ones * 0x20) & ~w)) \
        & <uint64_t>0x8080808080808080ULL


cdef Py_ssize_t cz_string_end(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                              bint *escaped) except -1 nogil:
    # i is just past the opening quote; returns the cursor just past the closing quote.
    cdef unsigned char c
    cdef uint64_t w, m
    while True:
        m = 0
        while CZ_WORDWISE and i + 8 <= n:
            memcpy(&w, b + i, 8)
            m = cz_stop_bytes(w)
            if m:
                i += __builtin_ctzll(m) >> 3
                break
            i += 8
        if not m:
            while i < n and not cz_str_stop[b[i]]:
                i += 1
        if i >= n:
            return cz_fail("unterminated string", n)
        c = b[i]
        if c == b'"':
            return i + 1
        if c == b'\\':
            escaped[0] = True
            i = cz_check_escape(b, n, i)
        else:
            return cz_fail("control character in string", i)


cdef Py_ssize_t cz_literal(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                           const char *lit, Py_ssize_t length) except -1 nogil:
    if i + length > n:
        if memcmp(b + i, lit, n - i) == 0:
            return cz_fail("truncated body", n)
        return cz_fail("invalid literal", i)
    if memcmp(b + i, lit, length) != 0:
        return cz_fail("invalid literal", i)
    return i + length


cdef Py_ssize_t cz_skip_number(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) except -1 nogil:
    cdef Py_ssize_t start = i
    if i < n and b[i] == b'-':
        i += 1
    if i >= n:
        return cz_fail("truncated body", n)
    if b[i] == b'0':
        i += 1
    elif cz_digit(b[i]):
        while i < n and cz_digit(b[i]):
            i += 1
    else:
        return cz_fail("invalid number", start)
    if i < n and b[i] == b'.':
        i += 1
        if i >= n or not cz_digit(b[i]):
            return cz_fail("invalid number", start)
        while i < n and cz_digit(b[i]):
            i += 1
    if i < n and (b[i] == b'e' or b[i] == b'E'):
        i += 1
        if i < n and (b[i] == b'+' or b[i] == b'-'):
            i += 1
        if i >= n or not cz_digit(b[i]):
            return cz_fail("invalid number", start)
        while i < n and cz_digit(b[i]):
            i += 1
    return i


cdef inline Py_ssize_t cz_colon(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) except -1 nogil:
    # The separator is ': ' in indented bodies and ':' in compact ones.
    if i + 2 < n and b[i] == b':' and b[i + 1] == b' ' and not cz_ws[b[i + 2]]:
        return i + 2
    i = cz_skip_ws(b, n, i)
    if i >= n:
        return cz_fail("truncated body", n)
    if b[i] != b':':
        return cz_fail("expected ':' after a key", i)
    i = cz_skip_ws(b, n, i + 1)
    if i >= n:
        return cz_fail("truncated body", n)
    return i


cdef Py_ssize_t cz_skip_value(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                              int depth) except -1 nogil:
    # Validates and steps over any JSON value without building it.
    cdef bint esc = False
    cdef unsigned char c, close
    if i >= n:
        return cz_fail("truncated body", n)
    c = b[i]
    if c == b'"':
        return cz_string_end(b, n, i + 1, &esc)
    if c == b'-' or cz_digit(c):
        return cz_skip_number(b, n, i)
    if c == b't':
        return cz_literal(b, n, i, b"true", 4)
    if c == b'f':
        return cz_literal(b, n, i, b"false", 5)
    if c == b'n':
        return cz_literal(b, n, i, b"null", 4)
    if c != b'{' and c != b'[':
        return cz_fail("unexpected character", i)
    if depth >= CZ_MAX_DEPTH:
        return cz_fail("nesting too deep", i)
    close = b'}' if c == b'{' else b']'
    i = cz_skip_ws(b, n, i + 1)
    if i < n and b[i] == close:
        return i + 1
    while True:
        if i >= n:
            return cz_fail("truncated body", n)
        if close == b'}':
            if b[i] != b'"':
                return cz_fail("expected a key", i)
            i = cz_string_end(b, n, i + 1, &esc)
            i = cz_colon(b, n, i)
        i = cz_skip_value(b, n, i, depth + 1)
        i = cz_skip_ws(b, n, i)
        if i >= n:
            return cz_fail("truncated body", n)
        if b[i] == b',':
            i = cz_skip_ws(b, n, i + 1)
        elif b[i] == close:
            return i + 1
        else:
            return cz_fail("expected ',' or the end of a container", i)


cdef Py_ssize_t cz_uint(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        uint64_t *out) except -1 nogil:
    # A JSON integer in 0..2**64-1; counters are unsigned 64-bit in nats-server.
    cdef Py_ssize_t start = i, ndig
    cdef uint64_t v = 0, d
    # Nineteen digits always fit; only a twentieth needs the overflow check.
    while i < n and cz_digit(b[i]) and i - start < 19:
        v = v * 10 + (b[i] - 48)
        i += 1
    while i < n and cz_digit(b[i]):
        i += 1
    ndig = i - start
    if ndig == 0:
        if start < n and b[start] == b'-':
            return cz_fail("negative number where a count was expected", start)
        return cz_fail("expected an unsigned integer", start)
    if ndig > 1 and b[start] == b'0':
        return cz_fail("number with a leading zero", start)
    if i < n and (b[i] == b'.' or b[i] == b'e' or b[i] == b'E'):
        return cz_fail("expected an integer", start)
    if ndig > 20:
        return cz_fail("integer above 2**64-1", start)
    if ndig == 20:
        d = b[start + 19] - 48
        if v > (CZ_U64_MAX - d) // 10:
            return cz_fail("integer above 2**64-1", start)
        v = v * 10 + d
    out[0] = v
    return i


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


cdef Py_ssize_t cz_put_utf8(unsigned char *out, uint32_t cp) noexcept nogil:
    if cp < 0x80:
        out[0] = cp
        return 1
    if cp < 0x800:
        out[0] = 0xC0 | (cp >> 6)
        out[1] = 0x80 | (cp & 0x3F)
        return 2
    if cp < 0x10000:
        out[0] = 0xE0 | (cp >> 12)
        out[1] = 0x80 | ((cp >> 6) & 0x3F)
        out[2] = 0x80 | (cp & 0x3F)
        return 3
    out[0] = 0xF0 | (cp >> 18)
    out[1] = 0x80 | ((cp >> 12) & 0x3F)
    out[2] = 0x80 | ((cp >> 6) & 0x3F)
    out[3] = 0x80 | (cp & 0x3F)
    return 4


cdef inline uint32_t cz_hex4(const unsigned char *p) noexcept nogil:
    return ((<uint32_t>cz_hexval(p[0]) << 12) | (<uint32_t>cz_hexval(p[1]) << 8)
            | (<uint32_t>cz_hexval(p[2]) << 4) | <uint32_t>cz_hexval(p[3]))


cdef Py_ssize_t cz_unescape(const unsigned char *s, Py_ssize_t n, unsigned char *out,
                            Py_ssize_t at) except -1 nogil:
    # s is string content already checked by cz_string_end; at is its offset in the body. The
    # output is never longer than the input.
    cdef Py_ssize_t i = 0, o = 0
    cdef unsigned char c
    cdef uint32_t cp, lo
    while i < n:
        c = s[i]
        if c != b'\\':
            out[o] = c
            o += 1
            i += 1
            continue
        c = s[i + 1]
        if c != b'u':
            if c == b'b':
                c = 8
            elif c == b'f':
                c = 12
            elif c == b'n':
                c = 10
            elif c == b'r':
                c = 13
            elif c == b't':
                c = 9
            out[o] = c
            o += 1
            i += 2
            continue
        cp = cz_hex4(s + i + 2)
        if 0xDC00 <= cp < 0xE000:
            return cz_fail("lone low surrogate in string", at + i)
        if 0xD800 <= cp < 0xDC00:
            if i + 12 > n or s[i + 6] != b'\\' or s[i + 7] != b'u':
                return cz_fail("lone high surrogate in string", at + i)
            lo = cz_hex4(s + i + 8)
            if not (0xDC00 <= lo < 0xE000):
                return cz_fail("lone high surrogate in string", at + i)
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            i += 6
        o += cz_put_utf8(out + o, cp)
        i += 6
    return o


cdef Py_ssize_t cz_utf8_error(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    # Index of the first byte that is not well-formed UTF-8, or -1.
    cdef Py_ssize_t i = 0
    cdef unsigned char c, lo, hi
    cdef int need, k
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            need = 1
        elif 0xE0 <= c <= 0xEF:
            need = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            need = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return i
        if i + need >= n:
            return i
        if not (lo <= s[i + 1] <= hi):
            return i
        for k in range(2, need + 1):
            if not (0x80 <= s[i + k] <= 0xBF):
                return i
        i += need + 1
    return -1


# Go durations (time.Duration.String(), e.g. "1.234ms", "2m3.5s") and nats-server's uptime form
# ("1y2d3h4m5s") to integer nanoseconds. A fraction is scaled in double precision, the way Go's
# own parser does, so both implementations agree to the nanosecond.
cdef int64_t cz_unit_ns(const unsigned char *u, Py_ssize_t n) noexcept nogil:
    if n == 1:
        if u[0] == b's':
            return 1000000000
        if u[0] == b'm':
            return 60000000000
        if u[0] == b'h':
            return 3600000000000
        if u[0] == b'd':
            return 86400000000000
        if u[0] == b'y':
            return 31536000000000000
        return 0
    if n == 2:
        if u[1] != b's':
            return 0
        if u[0] == b'n':
            return 1
        if u[0] == b'u':
            return 1000
        if u[0] == b'm':
            return 1000000
        return 0
    if n == 3 and u[2] == b's':
        if (u[0] == 0xC2 and u[1] == 0xB5) or (u[0] == 0xCE and u[1] == 0xBC):
            return 1000
    return 0


cdef int cz_duration(const unsigned char *s, Py_ssize_t n, Py_ssize_t at,
                     int64_t *out) except -1 nogil:
    cdef Py_ssize_t i = 0, j
    cdef bint neg = False, pre, post
    cdef uint64_t total = 0, v, f, part
    cdef int64_t unit
    cdef int k
    if n > 0 and (s[0] == b'-' or s[0] == b'+'):
        neg = s[0] == b'-'
        i = 1
    if n - i == 1 and s[i] == b'0':
        out[0] = 0
        return 0
    if i >= n:
        cz_fail("invalid duration", at)
    while i < n:
        v = 0
        j = i
        while i < n and cz_digit(s[i]):
            if v > (CZ_I64_MAX - (s[i] - 48)) // 10:
                cz_fail("duration out of range", at)
            v = v * 10 + (s[i] - 48)
            i += 1
        pre = i > j
        f = 0
        k = 0
        post = False
        if i < n and s[i] == b'.':
            i += 1
            j = i
            while i < n and cz_digit(s[i]):
                if k < 18:
                    f = f * 10 + (s[i] - 48)
                    k += 1
                i += 1
            post = i > j
        if not (pre or post):
            cz_fail("invalid duration", at)
        j = i
        while i < n and s[i] != b'.' and not cz_digit(s[i]):
            i += 1
        unit = cz_unit_ns(s + j, i - j)
        if unit == 0:
            cz_fail("invalid duration unit", at)
        if v > <uint64_t>(CZ_I64_MAX // unit):
            cz_fail("duration out of range", at)
        part = v * <uint64_t>unit
        if k:
            part += <uint64_t>(<double>f * (<double>unit / cz_pow10[k]))
        total += part
        if total > CZ_I64_MAX:
            cz_fail("duration out of range", at)
    out[0] = -<int64_t>total if neg else <int64_t>total
    return 0


def parse_go_duration(s):
    """Nanoseconds of a Go duration ("1.5ms", "2m3s") or nats-server uptime ("1d2h3m4s"), given
    as str or bytes; raises ConnzDecodeError (a ValueError) if it is not one."""
    cdef bytes raw = s.encode() if isinstance(s, str) else bytes(s)
    cdef int64_t ns
    cz_duration(<const unsigned char *>(<char *>raw), len(raw), 0, &ns)
    return ns


# ---------------------------------------------------------------------------------------------
# One connection as read from a body: numbers parsed, label values left as spans of the body.

cdef enum:
    # Group-by label slots, in metrics.GROUP_BY_FIELDS order.
    CZ_L_ACCOUNT = 0
    CZ_L_NAME = 1
    CZ_L_LANG = 2
    CZ_L_VERSION = 3
    CZ_L_KIND = 4
    CZ_L_IP = 5
    CZ_NLABELS = 6
    CZ_S_TYPE = 6      # 'type' refines 'kind', which /connz always reports as Client
    CZ_NSPANS = 7

cdef enum:
    CZ_CTR_IN_MSGS = 0
    CZ_CTR_OUT_MSGS = 1
    CZ_CTR_IN_BYTES = 2
    CZ_CTR_OUT_BYTES = 3
    CZ_NCTR = 4

cdef enum:
    CZ_SPAN_SET = 1
    CZ_SPAN_ESC = 2

cdef enum:
    CZ_REC_CID = 1
    CZ_REC_RTT = 2
    CZ_REC_IDLE = 4
    CZ_REC_NEW = 8         # not the connection the aggregator holds under this cid: read its labels
    CZ_REC_DUP = 16        # the cid was already read from an earlier page of this update
    CZ_REC_RATE = 32
    CZ_REC_REGROUP = 64    # the connection this cid holds now shows the labels its CONNECT gave

cdef enum:
    CZ_F_OTHER = 0
    CZ_F_CID
    CZ_F_PENDING
    CZ_F_SUBS
    CZ_F_IN_MSGS
    CZ_F_OUT_MSGS
    CZ_F_IN_BYTES
    CZ_F_OUT_BYTES
    CZ_F_START
    CZ_F_RTT
    CZ_F_IDLE
    CZ_F_ACCOUNT
    CZ_F_NAME
    CZ_F_LANG
    CZ_F_VERSION
    CZ_F_KIND
    CZ_F_IP
    CZ_F_TYPE

cdef struct CzSpan:
    uint32_t off          # pages are at most 4 GiB (cz_body checks)
    int32_t len
    int32_t flags

cdef struct CzRec:
    uint64_t cid
    uint64_t start_hash
    uint64_t ctr[4]
    uint64_t pending
    uint64_t subs
    int64_t rtt_ns
    int64_t idle_ns
    double rate[2]
    CzSpan span[7]
    int32_t ids[6]
    int32_t page
    int32_t state
    uint32_t flags

cdef struct CzRecs:
    CzRec *v
    Py_ssize_t n
    Py_ssize_t cap

cdef struct CzPage:
    const unsigned char *buf
    Py_ssize_t len


cdef int cz_reserve(void **arr, Py_ssize_t *cap, Py_ssize_t want, size_t item) except -1 nogil:
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


cdef Py_ssize_t cz_duration_field(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                                  CzRec *r, uint32_t flag, int64_t *out) except -1 nogil:
    cdef CzSpan span
    cdef unsigned char tmp[64]
    cdef Py_ssize_t length
    span.off = span.len = span.flags = 0
    i = cz_string_field(b, n, i, &span)
    if span.len == 0:
        # An empty duration means "not measured", like an absent field.
        r.flags &= ~flag
        return i
    if span.flags & CZ_SPAN_ESC:
        if span.len > 64:
            return cz_fail("invalid duration", span.off)
        length = cz_unescape(b + span.off, span.len, tmp, span.off)
        cz_duration(tmp, length, span.off, out)
    else:
        cz_duration(b + span.off, span.len, span.off, out)
    r.flags |= flag
    return i


cdef Py_ssize_t cz_conn(const unsigned char *b, Py_ssize_t n, Py_ssize_t i,
                        CzRec *r) except -1 nogil:
    # i is at the '{' of one connection object.
    cdef int field = CZ_F_OTHER
    cdef CzSpan span
    cdef uint64_t *num
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
        elif b[i] == b'n':
            # null reads as absent, whatever the field.
            i = cz_literal(b, n, i, b"null", 4)
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
        elif field >= CZ_F_ACCOUNT:
            i = cz_string_field(b, n, i, &r.span[field - CZ_F_ACCOUNT])
        elif field == CZ_F_START:
            i = cz_string_field(b, n, i, &span)
            r.start_hash = cz_hash(b + span.off, span.len)
        elif field == CZ_F_RTT:
            i = cz_duration_field(b, n, i, r, CZ_REC_RTT, &r.rtt_ns)
        elif field == CZ_F_IDLE:
            i = cz_duration_field(b, n, i, r, CZ_REC_IDLE, &r.idle_ns)
        else:
            if field == CZ_F_CID:
                num = &r.cid
                r.flags |= CZ_REC_CID
            elif field == CZ_F_PENDING:
                num = &r.pending
            elif field == CZ_F_SUBS:
                num = &r.subs
            else:
                num = &r.ctr[field - CZ_F_IN_MSGS]
            i = cz_uint(b, n, i, num)
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


cdef int cz_body(const unsigned char *b, Py_ssize_t n, CzRecs *out, int32_t page,
                 uint64_t *total) except -1 nogil:
    # Reads the top-level object of one /connz body; only 'total' and 'connections' matter.
    cdef Py_ssize_t i = cz_skip_ws(b, n, 0), ks, klen
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
        klen = i - 1 - ks
        i = cz_colon(b, n, i)
        if klen == 11 and memcmp(b + ks, b"connections", 11) == 0:
            found = True
            out.n = first        # a repeated key replaces the earlier value
            if b[i] == b'n':
                i = cz_literal(b, n, i, b"null", 4)
            elif b[i] == b'[':
                i = cz_conns(b, n, i, out, page)
            else:
                cz_fail("connections is not an array", i)
        elif klen == 5 and memcmp(b + ks, b"total", 5) == 0:
            if b[i] == b'n':
                i = cz_literal(b, n, i, b"null", 4)
                total[0] = 0
            else:
                i = cz_uint(b, n, i, total)
        elif klen == 15 and memcmp(b + ks, b"num_connections", 15) == 0 and b[i] != b'n':
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
# Interned label values: each distinct byte string gets a small integer id, kept while a cid or a
# group refers to it, so a label value is decoded and turned into a Python str once in its life.

cdef struct CzStr:
    char *data
    Py_ssize_t len
    uint64_t hash
    int32_t refs
    int32_t live

cdef struct CzStrTab:
    CzStr *ents
    Py_ssize_t n          # ids in use or freed; ents[0:n] are valid structs
    Py_ssize_t cap
    int32_t *free_ids
    Py_ssize_t nfree
    Py_ssize_t free_cap
    int32_t *index        # open addressing over ids; -1 empty, -2 deleted
    Py_ssize_t icap       # a power of two
    Py_ssize_t used
    Py_ssize_t deleted
    int32_t *fresh        # ids made since the last publish, which still need their Python str
    Py_ssize_t nfresh
    Py_ssize_t fresh_cap


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

cdef struct CzSlot:
    uint64_t key
    int32_t val          # -1 empty, -2 deleted

cdef struct CzMap:
    CzSlot *slots
    Py_ssize_t cap       # a power of two
    Py_ssize_t used
    Py_ssize_t deleted


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


# ---------------------------------------------------------------------------------------------
# Aggregation state.

cdef struct CzConn:
    uint64_t cid
    uint64_t start_hash
    uint64_t ctr[4]       # as last seen
    double seen_at        # when it was last seen open
    int32_t group
    int32_t name          # interned ids of the labels that identify the connection
    int32_t account
    int32_t ip
    uint32_t epoch        # the update that last saw it open
    int32_t absent        # -1 if that was the last update; else updates since, with ctr folded
    int32_t used
    int32_t unnamed       # listed before its CONNECT was read: no name, lang or version yet

cdef struct CzGroup:
    int32_t key[6]        # interned label ids, in group_by order
    uint64_t hash
    uint64_t closed[4]    # final counters of connections that left the group
    uint64_t open_ctr[4]  # counters of the open connections, summed at each update
    uint64_t debt[4]      # what connections that moved in had counted before, in their old group
    uint64_t conns        # open connections in this update
    uint64_t members      # cids held in the state, open or absent
    uint64_t subs
    uint64_t pending
    double last_active
    int32_t live
    int32_t other

cdef struct CzDist:
    uint64_t counts[16]   # per bucket (not cumulative); the last is +Inf
    int64_t bounds[15]
    int32_t nb
    uint64_t count
    uint64_t isum         # saturating sum, for integer distributions
    double fsum           # sum in seconds, for duration distributions

cdef struct CzTop:
    int32_t *idx          # record indices, best first
    int32_t n


cdef inline uint64_t cz_sat_add(uint64_t a, uint64_t b) noexcept nogil:
    # Sums saturate at 2**64-1 rather than wrap, so they never go backwards.
    return CZ_U64_MAX if a > CZ_U64_MAX - b else a + b


cdef inline uint64_t cz_sat_sub(uint64_t total, uint64_t part) noexcept nogil:
    # Takes back a part added with cz_sat_add; a saturated sum stays saturated.
    return total if total == CZ_U64_MAX else total - part


cdef inline void cz_dist_add(CzDist *d, int64_t v) noexcept nogil:
    cdef int32_t k = 0
    while k < d.nb and v > d.bounds[k]:
        k += 1
    d.counts[k] += 1
    d.count += 1


cdef inline bint cz_better(const CzRec *a, const CzRec *b, int which) noexcept nogil:
    # which: 0 pending bytes (compared as integers), 1 in rate, 2 out rate; ties go to the older
    # connection, so the ranking is a total order.
    if which == 0:
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


cdef int64_t cz_seconds_ns(double s):
    return <int64_t>(s * 1e9 + 0.5)


cdef inline uint64_t cz_group_total(const CzGroup *g, int q) noexcept nogil:
    return cz_sat_sub(cz_sat_add(g.closed[q], g.open_ctr[q]), g.debt[q])


cdef inline bint cz_rec_named(const CzRec *r) noexcept nogil:
    # Whether the server had read the connection's CONNECT: it gives name, lang or version.
    return ((r.span[CZ_L_NAME].flags & CZ_SPAN_SET and r.span[CZ_L_NAME].len > 0)
            or (r.span[CZ_L_LANG].flags & CZ_SPAN_SET and r.span[CZ_L_LANG].len > 0)
            or (r.span[CZ_L_VERSION].flags & CZ_SPAN_SET and r.span[CZ_L_VERSION].len > 0))


cdef class ConnzAggregator:
    """Reads /connz bodies and keeps per-group client aggregates, distributions and top-K.

    Built once per monitored server and fed every refresh with ``update()``, from a worker thread:
    the scan runs without the GIL. ``families()`` returns the snapshot of the last good update.
    """

    cdef readonly tuple group_by
    cdef readonly Py_ssize_t max_groups
    cdef readonly double group_ttl
    cdef readonly Py_ssize_t top_k
    cdef readonly bint per_connection
    cdef readonly Py_ssize_t per_connection_max
    cdef readonly uint64_t total
    cdef uint64_t scanned_total
    cdef readonly Py_ssize_t count

    cdef int32_t fields[6]        # label slot of each group_by field
    cdef int32_t nfields
    cdef bint busy
    cdef int32_t where_page
    cdef int where_closed

    cdef CzRecs open_recs
    cdef CzRecs closed_recs
    cdef CzStrTab strs
    cdef list py_strs             # id -> str, for the ids in strs that are live
    cdef CzMap cids
    cdef CzConn *conns
    cdef Py_ssize_t nconns_slots
    cdef Py_ssize_t conns_cap
    cdef int32_t *conns_free
    cdef Py_ssize_t nconns_free
    cdef Py_ssize_t conns_free_cap
    cdef CzMap closed_seen        # cids folded from the closed body during this update
    cdef CzGroup *groups
    cdef Py_ssize_t ngroup_slots
    cdef Py_ssize_t groups_cap
    cdef Py_ssize_t ngroups       # live groups, _other excluded
    cdef int32_t other
    cdef int32_t *gindex          # open addressing over group slots by key; -1 empty
    cdef Py_ssize_t gicap
    cdef uint64_t overflow
    cdef uint64_t watermark       # highest cid any earlier update read, open or closed
    cdef uint32_t epoch
    cdef CzDist dist[4]           # rtt, pending, idle, subscriptions
    cdef CzTop top[3]             # pending, in rate, out rate
    cdef uint64_t *per_conn       # (cid, record index) pairs, for the per-connection series
    cdef Py_ssize_t per_conn_cap
    cdef Py_ssize_t nper_conn
    cdef unsigned char *scratch   # decoded escaped label values
    cdef Py_ssize_t scratch_cap
    cdef dict snapshot
    cdef dict label_tuples

    def __cinit__(self):
        self.other = -1
        self.snapshot = {m.name: [] for m in _CONNZ}

    def __init__(self, group_by=_DEFAULT_GROUP_BY, Py_ssize_t max_groups=1000,
                 double group_ttl=3600.0, Py_ssize_t top_k=10, bint per_connection=False,
                 Py_ssize_t per_connection_max=1000):
        cdef int k
        if self.label_tuples is not None:
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
        self.group_by = group_by
        self.max_groups = max_groups
        self.group_ttl = group_ttl
        self.top_k = top_k
        self.per_connection = per_connection
        self.per_connection_max = per_connection_max
        self.nfields = len(group_by)
        for k in range(self.nfields):
            self.fields[k] = _GROUP_BY_FIELDS.index(group_by[k])
        self.py_strs = []
        self.label_tuples = {
            m.name: (group_by if m.labels == (_GROUP_LABELS,) else m.labels) for m in _CONNZ}
        for k, (bounds, is_seconds) in enumerate(((_RTT_BUCKETS, True), (_PENDING_BUCKETS, False),
                                                  (_IDLE_BUCKETS, True), (_SUBS_BUCKETS, False))):
            if len(bounds) > 15:
                raise ValueError("a distribution has at most 15 buckets besides +Inf")
            self.dist[k].nb = len(bounds)
            for j, bound in enumerate(bounds):
                self.dist[k].bounds[j] = cz_seconds_ns(bound) if is_seconds else bound
        for k in range(3):
            self.top[k].idx = <int32_t *>PyMem_Malloc((top_k + 1) * sizeof(int32_t))
            if self.top[k].idx == NULL:
                raise MemoryError()

    def __dealloc__(self):
        cdef int k
        free(self.open_recs.v)
        free(self.closed_recs.v)
        cz_strtab_free(&self.strs)
        free(self.cids.slots)
        free(self.closed_seen.slots)
        free(self.conns)
        free(self.conns_free)
        free(self.groups)
        free(self.gindex)
        free(self.per_conn)
        free(self.scratch)
        for k in range(3):
            PyMem_Free(self.top[k].idx)

    def label_names(self, str name):
        """Label names of a CONNZ family, in sample order: group families use ``group_by``."""
        return self.label_tuples[name]

    def families(self):
        """The snapshot of the last good update: metric name -> [(label values, value), ...].

        Every CONNZ family is a key (empty until it has samples). The dict is never changed after
        it is returned; the next update builds a new one.
        """
        return self.snapshot

    def update(self, open_body, closed_body, double now):
        """Read one refresh: ``open_body`` from ``/connz?state=open``, ``closed_body`` from
        ``state=closed`` or None. Each is a buffer (bytes, bytearray, memoryview) or a list of
        them, one per page. ``now`` is the refresh time in seconds, for TTLs and rates.

        Raises ConnzDecodeError, naming the body and byte offset, and then changes nothing.
        """
        cdef list opens = _pages(open_body, "open_body")
        cdef list closeds = [] if closed_body is None else _pages(closed_body, "closed_body")
        cdef Py_ssize_t nopen = len(opens), npages = nopen + len(closeds), k, acquired = 0
        cdef Py_buffer *views
        cdef CzPage *pages
        if self.busy:
            raise RuntimeError("ConnzAggregator.update() is already running on another thread")
        views = <Py_buffer *>PyMem_Malloc(npages * sizeof(Py_buffer) + 1)
        pages = <CzPage *>PyMem_Malloc(npages * sizeof(CzPage) + 1)
        if views == NULL or pages == NULL:
            PyMem_Free(views)
            PyMem_Free(pages)
            raise MemoryError()
        self.busy = True
        try:
            for k, page in enumerate(opens + closeds):
                PyObject_GetBuffer(page, &views[k], PyBUF_SIMPLE)
                acquired += 1
                pages[k].buf = <const unsigned char *>views[k].buf
                pages[k].len = views[k].len
            try:
                with nogil:
                    self.scan(pages, nopen, npages)
                    self.intern(pages)
                    self.reserve()
                    self.commit(now)
            except ConnzDecodeError as e:
                where = "closed body" if self.where_closed else "open body"
                count = npages - nopen if self.where_closed else nopen
                if count > 1:
                    where += f" page {self.where_page - (nopen if self.where_closed else 0) + 1}"
                msg = str(e).removesuffix(f" (byte {e.offset})")
                raise ConnzDecodeError(f"{where}: {msg}", e.offset) from None
            self.publish()
        finally:
            self.sweep()
            for k in range(acquired):
                PyBuffer_Release(&views[k])
            PyMem_Free(views)
            PyMem_Free(pages)
            self.busy = False

    # -- phase 1: scan --------------------------------------------------------------------------

    cdef int scan(self, const CzPage *pages, Py_ssize_t nopen, Py_ssize_t npages) except -1 nogil:
        cdef Py_ssize_t k
        cdef uint64_t total = 0, page_total
        self.open_recs.n = 0
        self.closed_recs.n = 0
        for k in range(npages):
            self.where_page = <int32_t>k
            self.where_closed = k >= nopen
            page_total = 0
            cz_body(pages[k].buf, pages[k].len,
                    &self.closed_recs if k >= nopen else &self.open_recs, <int32_t>k, &page_total)
            if k < nopen and page_total > total:
                total = page_total
        self.scanned_total = total
        return 0

    # -- phase 2: intern the labels of connections the state does not hold yet -----------------

    cdef int intern_rec(self, const CzPage *pages, CzRec *r, bint want_conn) except -1 nogil:
        cdef const unsigned char *buf = pages[r.page].buf
        cdef int32_t slot, k
        cdef Py_ssize_t length
        cdef const CzSpan *span
        cdef uint32_t want = 0
        for k in range(self.nfields):
            want |= 1u << self.fields[k]
        if want_conn:
            want |= (1u << CZ_L_NAME) | (1u << CZ_L_ACCOUNT) | (1u << CZ_L_IP)
        for slot in range(CZ_NLABELS):
            r.ids[slot] = -1
            if not (want & (1u << slot)):
                continue
            span = &r.span[slot]
            if slot == CZ_L_KIND and (r.span[CZ_S_TYPE].flags & CZ_SPAN_SET) and r.span[CZ_S_TYPE].len > 0:
                span = &r.span[CZ_S_TYPE]
            if not (span.flags & CZ_SPAN_SET):
                r.ids[slot] = cz_intern(&self.strs, b"", 0, 0, False)
            elif not (span.flags & CZ_SPAN_ESC):
                r.ids[slot] = cz_intern(&self.strs, buf + span.off, span.len, span.off, False)
            else:
                cz_reserve(<void **>&self.scratch, &self.scratch_cap, span.len + 1, 1)
                length = cz_unescape(buf + span.off, span.len, self.scratch, span.off)
                r.ids[slot] = cz_intern(&self.strs, self.scratch, length, span.off, True)
        return 0

    cdef int intern(self, const CzPage *pages) except -1 nogil:
        cdef Py_ssize_t k
        cdef CzRec *r
        cdef int32_t st
        cdef int c
        self.strs.nfresh = 0
        self.where_closed = 0
        for k in range(self.open_recs.n):
            r = &self.open_recs.v[k]
            st = cz_map_get(&self.cids, r.cid)
            if st >= 0 and self.conns[st].start_hash == r.start_hash:
                for c in range(CZ_NCTR):
                    if r.ctr[c] < self.conns[st].ctr[c]:
                        break
                else:
                    if not (self.conns[st].unnamed and cz_rec_named(r)):
                        continue
                    r.flags |= CZ_REC_REGROUP
                    self.where_page = r.page
                    self.intern_rec(pages, r, True)
                    continue
            r.flags |= CZ_REC_NEW
            self.where_page = r.page
            self.intern_rec(pages, r, True)
        self.where_closed = 1
        for k in range(self.closed_recs.n):
            r = &self.closed_recs.v[k]
            if r.cid > self.watermark and cz_map_get(&self.cids, r.cid) < 0:
                r.flags |= CZ_REC_NEW
                self.where_page = r.page
                self.intern_rec(pages, r, False)
        return 0

    # -- allocations the commit needs, made while failing still changes nothing ----------------

    cdef int reserve(self) except -1 nogil:
        cdef Py_ssize_t new_conns = 0, regroups = 0, new_groups, k
        cdef int32_t *gindex
        for k in range(self.open_recs.n):
            if self.open_recs.v[k].flags & CZ_REC_NEW:
                new_conns += 1
            elif self.open_recs.v[k].flags & CZ_REC_REGROUP:
                regroups += 1
        cz_map_reserve(&self.cids, new_conns)
        cz_reserve(<void **>&self.conns, &self.conns_cap, self.nconns_slots + new_conns,
                   sizeof(CzConn))
        cz_reserve(<void **>&self.conns_free, &self.conns_free_cap,
                   self.nconns_slots + new_conns + 1, sizeof(int32_t))
        cz_map_clear(&self.closed_seen)
        cz_map_reserve(&self.closed_seen, self.closed_recs.n)
        new_groups = new_conns + regroups + self.closed_recs.n + 1
        if new_groups > self.max_groups + 1:
            new_groups = self.max_groups + 1
        cz_reserve(<void **>&self.groups, &self.groups_cap, self.ngroup_slots + new_groups,
                   sizeof(CzGroup))
        if (self.ngroup_slots + new_groups) * 2 > self.gicap:
            k = self.gicap if self.gicap else 16
            while (self.ngroup_slots + new_groups) * 2 > k:
                k *= 2
            gindex = <int32_t *>malloc(k * sizeof(int32_t))
            if gindex == NULL:
                with gil:
                    raise MemoryError()
            free(self.gindex)
            self.gindex = gindex
            self.gicap = k
            self.rebuild_gindex()
        if self.per_connection:
            cz_reserve(<void **>&self.per_conn, &self.per_conn_cap, 2 * self.open_recs.n + 2,
                       sizeof(uint64_t))
        return 0

    # -- phase 3: commit -----------------------------------------------------------------------

    cdef uint64_t group_hash(self, const int32_t *key) noexcept nogil:
        cdef uint64_t h = <uint64_t>0x51ED270B27A5B3E1ULL
        cdef int32_t k
        for k in range(self.nfields):
            h = (h ^ <uint64_t>(key[k] + 1)) * <uint64_t>0x9E3779B97F4A7C15ULL
            h ^= h >> 31
        return h

    cdef void rebuild_gindex(self) noexcept nogil:
        cdef Py_ssize_t k, slot, mask = self.gicap - 1
        for k in range(self.gicap):
            self.gindex[k] = -1
        for k in range(self.ngroup_slots):
            if self.groups[k].live and not self.groups[k].other:
                slot = self.groups[k].hash & mask
                while self.gindex[slot] >= 0:
                    slot = (slot + 1) & mask
                self.gindex[slot] = <int32_t>k

    cdef int32_t new_group(self, const int32_t *key, uint64_t h, bint other, double now) noexcept nogil:
        cdef int32_t g = -1, k
        cdef Py_ssize_t slot
        cdef CzGroup *grp
        if self.ngroups + (self.other >= 0) < self.ngroup_slots:
            for k in range(self.ngroup_slots):
                if not self.groups[k].live:
                    g = k
                    break
        if g < 0:
            g = <int32_t>self.ngroup_slots
            self.ngroup_slots += 1
        grp = &self.groups[g]
        memset(grp, 0, sizeof(CzGroup))
        grp.live = 1
        grp.other = other
        grp.hash = h
        grp.last_active = now
        if other:
            self.other = g
            return g
        for k in range(self.nfields):
            grp.key[k] = key[k]
            self.strs.ents[key[k]].refs += 1
        slot = h & (self.gicap - 1)
        while self.gindex[slot] >= 0:
            slot = (slot + 1) & (self.gicap - 1)
        self.gindex[slot] = g
        self.ngroups += 1
        return g

    cdef int32_t group_of(self, const int32_t *ids, double now) noexcept nogil:
        # The group of a connection seen for the first time; overflow goes to _other.
        cdef int32_t key[6]
        cdef int32_t k, g
        cdef uint64_t h
        cdef Py_ssize_t slot, mask = self.gicap - 1
        for k in range(self.nfields):
            key[k] = ids[self.fields[k]]
        h = self.group_hash(key)
        slot = h & mask
        while self.gindex[slot] >= 0:
            g = self.gindex[slot]
            if self.groups[g].hash == h and memcmp(self.groups[g].key, key,
                                                   self.nfields * sizeof(int32_t)) == 0:
                return g
            slot = (slot + 1) & mask
        if self.ngroups < self.max_groups:
            return self.new_group(key, h, False, now)
        self.overflow += 1
        if self.other >= 0:
            return self.other
        return self.new_group(key, h, True, now)

    cdef void fold(self, int32_t st, const uint64_t *ctr, double now) noexcept nogil:
        # Counters of a connection that left (or went missing) join its group's closed total.
        cdef CzGroup *g = &self.groups[self.conns[st].group]
        cdef int k
        for k in range(CZ_NCTR):
            g.closed[k] = cz_sat_add(g.closed[k], ctr[k])
        g.last_active = now

    cdef void set_labels(self, int32_t st, const CzRec *r, double now) noexcept nogil:
        # Joins the connection to the group of the record's labels and takes its own labels.
        cdef CzConn *c = &self.conns[st]
        c.group = self.group_of(r.ids, now)
        self.groups[c.group].members += 1
        c.name = r.ids[CZ_L_NAME]
        c.account = r.ids[CZ_L_ACCOUNT]
        c.ip = r.ids[CZ_L_IP]
        self.strs.ents[c.name].refs += 1
        self.strs.ents[c.account].refs += 1
        self.strs.ents[c.ip].refs += 1
        c.unnamed = not cz_rec_named(r)

    cdef void drop_labels(self, int32_t st) noexcept nogil:
        cdef CzConn *c = &self.conns[st]
        self.groups[c.group].members -= 1
        self.strs.ents[c.name].refs -= 1
        self.strs.ents[c.account].refs -= 1
        self.strs.ents[c.ip].refs -= 1

    cdef void forget(self, int32_t st) noexcept nogil:
        # Drops a cid whose counters are already in its group's closed total.
        cdef CzConn *c = &self.conns[st]
        self.drop_labels(st)
        cz_map_del(&self.cids, c.cid)
        c.used = 0
        self.conns_free[self.nconns_free] = st
        self.nconns_free += 1

    cdef int32_t new_conn(self, const CzRec *r, double now) noexcept nogil:
        cdef int32_t st
        cdef CzConn *c
        if self.nconns_free:
            self.nconns_free -= 1
            st = self.conns_free[self.nconns_free]
        else:
            st = <int32_t>self.nconns_slots
            self.nconns_slots += 1
        c = &self.conns[st]
        c.cid = r.cid
        c.start_hash = r.start_hash
        memcpy(c.ctr, r.ctr, sizeof(c.ctr))
        c.seen_at = now
        c.absent = -1
        self.set_labels(st, r, now)
        c.used = 1
        cz_map_put(&self.cids, r.cid, st)
        return st

    cdef int commit(self, double now) except -1 nogil:
        cdef Py_ssize_t k, j
        cdef CzRec *r
        cdef CzConn *c
        cdef CzGroup *g
        cdef int32_t st, gi
        cdef bint removed
        cdef int q
        cdef double dt
        cdef uint64_t top_cid = self.watermark
        cdef uint64_t final[4]
        cdef Py_ssize_t count = 0

        self.epoch += 1
        # Expire first, so that the room an expired group leaves is there for new connections.
        removed = False
        for k in range(self.ngroup_slots):
            g = &self.groups[k]
            if g.live and g.members == 0 and now - g.last_active > self.group_ttl:
                g.live = 0
                if g.other:
                    self.other = -1
                else:
                    for q in range(self.nfields):
                        self.strs.ents[g.key[q]].refs -= 1
                    self.ngroups -= 1
                removed = True
        if removed:
            self.rebuild_gindex()
        for k in range(self.ngroup_slots):
            g = &self.groups[k]
            g.conns = g.subs = g.pending = 0
            memset(g.open_ctr, 0, sizeof(g.open_ctr))
        for q in range(4):
            memset(self.dist[q].counts, 0, sizeof(self.dist[q].counts))
            self.dist[q].count = 0
            self.dist[q].isum = 0
            self.dist[q].fsum = 0.0
        for q in range(3):
            self.top[q].n = 0
        self.nper_conn = 0

        for k in range(self.open_recs.n):
            r = &self.open_recs.v[k]
            if r.cid > top_cid:
                top_cid = r.cid
            st = cz_map_get(&self.cids, r.cid)
            if st >= 0 and self.conns[st].epoch == self.epoch:
                r.flags |= CZ_REC_DUP
                continue
            if st >= 0 and r.flags & CZ_REC_NEW:
                # The same cid on another connection (the server restarted): the old one is gone.
                if self.conns[st].absent < 0:
                    self.fold(st, self.conns[st].ctr, now)
                self.forget(st)
                st = -1
            if st < 0:
                st = self.new_conn(r, now)
            else:
                c = &self.conns[st]
                if c.absent >= 0:
                    # Back after missing from an open body without closing: take back what was
                    # folded, it counts as open again.
                    g = &self.groups[c.group]
                    for q in range(CZ_NCTR):
                        g.closed[q] = cz_sat_sub(g.closed[q], c.ctr[q])
                    c.absent = -1
                if r.flags & CZ_REC_REGROUP:
                    self.fold(st, c.ctr, now)
                    self.drop_labels(st)
                    self.set_labels(st, r, now)
                    g = &self.groups[c.group]
                    for q in range(CZ_NCTR):
                        g.debt[q] = cz_sat_add(g.debt[q], c.ctr[q])
                dt = now - c.seen_at
                if dt > 0:
                    r.rate[0] = <double>(r.ctr[CZ_CTR_IN_MSGS] - c.ctr[CZ_CTR_IN_MSGS]) / dt
                    r.rate[1] = <double>(r.ctr[CZ_CTR_OUT_MSGS] - c.ctr[CZ_CTR_OUT_MSGS]) / dt
                    r.flags |= CZ_REC_RATE
            c = &self.conns[st]
            memcpy(c.ctr, r.ctr, sizeof(c.ctr))
            c.seen_at = now
            c.epoch = self.epoch
            r.state = st
            count += 1
            g = &self.groups[c.group]
            g.conns += 1
            g.subs = cz_sat_add(g.subs, r.subs)
            g.pending = cz_sat_add(g.pending, r.pending)
            for q in range(CZ_NCTR):
                g.open_ctr[q] = cz_sat_add(g.open_ctr[q], r.ctr[q])
            g.last_active = now
            if r.flags & CZ_REC_RTT:
                cz_dist_add(&self.dist[0], r.rtt_ns)
                self.dist[0].fsum += <double>r.rtt_ns / 1e9
            cz_dist_add(&self.dist[1], <int64_t>r.pending if r.pending < CZ_I64_MAX else CZ_I64_MAX)
            self.dist[1].isum = cz_sat_add(self.dist[1].isum, r.pending)
            if r.flags & CZ_REC_IDLE:
                cz_dist_add(&self.dist[2], r.idle_ns)
                self.dist[2].fsum += <double>r.idle_ns / 1e9
            cz_dist_add(&self.dist[3], <int64_t>r.subs if r.subs < CZ_I64_MAX else CZ_I64_MAX)
            self.dist[3].isum = cz_sat_add(self.dist[3].isum, r.subs)
            if self.top_k:
                if r.pending > 0:
                    cz_top_offer(&self.top[0], <int32_t>self.top_k, self.open_recs.v, 0, <int32_t>k)
                if r.flags & CZ_REC_RATE:
                    if r.rate[0] > 0:
                        cz_top_offer(&self.top[1], <int32_t>self.top_k, self.open_recs.v, 1,
                                     <int32_t>k)
                    if r.rate[1] > 0:
                        cz_top_offer(&self.top[2], <int32_t>self.top_k, self.open_recs.v, 2,
                                     <int32_t>k)
            if self.per_connection:
                self.per_conn[2 * self.nper_conn] = r.cid
                self.per_conn[2 * self.nper_conn + 1] = <uint64_t>k
                self.nper_conn += 1

        for k in range(self.closed_recs.n):
            r = &self.closed_recs.v[k]
            if r.cid > top_cid:
                top_cid = r.cid
            st = cz_map_get(&self.cids, r.cid)
            if st >= 0:
                c = &self.conns[st]
                if c.epoch == self.epoch:
                    # Still open in this update's open body; it is folded when it leaves that.
                    continue
                # What the closed body adds to the counters already counted for this cid: the
                # last-seen ones while it was open, nothing more once it was folded as absent.
                for q in range(CZ_NCTR):
                    final[q] = c.ctr[q] if c.absent < 0 else 0
                    if c.start_hash == r.start_hash and r.ctr[q] > c.ctr[q]:
                        final[q] = r.ctr[q] - (0 if c.absent < 0 else c.ctr[q])
                self.fold(st, final, now)
                self.forget(st)
            elif r.flags & CZ_REC_NEW and cz_map_get(&self.closed_seen, r.cid) < 0:
                # Opened and closed between two refreshes: only the closed body knows it.
                cz_map_put(&self.closed_seen, r.cid, 0)
                gi = self.group_of(r.ids, now)
                g = &self.groups[gi]
                for q in range(CZ_NCTR):
                    g.closed[q] = cz_sat_add(g.closed[q], r.ctr[q])
                g.last_active = now

        # Connections neither open nor in the closed body: fold what was last seen, and keep the
        # cid a few refreshes in case it shows up again.
        for j in range(self.nconns_slots):
            c = &self.conns[j]
            if c.used and c.epoch != self.epoch:
                if c.absent < 0:
                    self.fold(<int32_t>j, c.ctr, now)
                    c.absent = 0
                else:
                    c.absent += 1
                    if c.absent >= CZ_ABSENT_GRACE:
                        self.forget(<int32_t>j)

        if self.per_connection and self.nper_conn > 1:
            for k in range(1, self.nper_conn):
                if self.per_conn[2 * k] < self.per_conn[2 * k - 2]:
                    qsort(self.per_conn, self.nper_conn, 2 * sizeof(uint64_t), cz_cmp_cid)
                    break

        self.watermark = top_cid
        self.total = self.scanned_total
        self.count = count
        return 0

    # -- after the commit, with the GIL --------------------------------------------------------

    cdef str py_str(self, int32_t ident):
        return <str>self.py_strs[ident]

    cdef publish(self):
        cdef Py_ssize_t k, j, limit
        cdef int32_t ident
        cdef CzStr *s
        cdef CzGroup *g
        cdef CzRec *r
        cdef uint64_t cum
        cdef tuple labels
        cdef list rows
        cdef dict fams = {m.name: [] for m in _CONNZ}

        if len(self.py_strs) < self.strs.n:
            self.py_strs.extend([None] * (self.strs.n - len(self.py_strs)))
        for k in range(self.strs.nfresh):
            ident = self.strs.fresh[k]
            s = &self.strs.ents[ident]
            if s.live and s.refs > 0:
                self.py_strs[ident] = PyUnicode_DecodeUTF8(s.data, s.len, NULL)
        self.strs.nfresh = 0

        rows = []
        for k in range(self.ngroup_slots):
            g = &self.groups[k]
            if not g.live:
                continue
            if g.other:
                labels = (_OTHER_GROUP,) * self.nfields
            else:
                labels = tuple([self.py_str(g.key[j]) for j in range(self.nfields)])
            rows.append((labels, k))
        rows.sort()
        for labels, k in rows:
            g = &self.groups[<Py_ssize_t>k]
            fams["nats_client_connections"].append((labels, g.conns))
            fams["nats_client_subscriptions"].append((labels, g.subs))
            fams["nats_client_pending_bytes"].append((labels, g.pending))
            fams["nats_client_in_messages_total"].append((labels, cz_group_total(g, 0)))
            fams["nats_client_out_messages_total"].append((labels, cz_group_total(g, 1)))
            fams["nats_client_in_bytes_total"].append((labels, cz_group_total(g, 2)))
            fams["nats_client_out_bytes_total"].append((labels, cz_group_total(g, 3)))
        fams["nats_client_groups"].append(((), self.ngroups))
        fams["nats_client_group_overflow_total"].append(((), self.overflow))

        for k, (base, les) in enumerate((("nats_client_connection_rtt_seconds", _RTT_LE),
                                         ("nats_client_connection_pending_bytes", _PENDING_LE),
                                         ("nats_client_connection_idle_seconds", _IDLE_LE),
                                         ("nats_client_connection_subscriptions", _SUBS_LE))):
            rows = fams[base + "_bucket"]
            cum = 0
            for j in range(self.dist[k].nb + 1):
                cum += self.dist[k].counts[j]
                rows.append(((les[j],), cum))
            fams[base + "_count"].append(((), self.dist[k].count))
            fams[base + "_sum"].append(
                ((), self.dist[k].fsum if k == 0 or k == 2 else self.dist[k].isum))

        for k, name in enumerate(("nats_client_top_pending_bytes",
                                  "nats_client_top_in_messages_per_second",
                                  "nats_client_top_out_messages_per_second")):
            rows = fams[name]
            for j in range(self.top[k].n):
                r = &self.open_recs.v[self.top[k].idx[j]]
                rows.append((self.conn_labels(r.state),
                             r.pending if k == 0 else r.rate[k - 1]))

        if self.per_connection:
            limit = min(self.nper_conn, self.per_connection_max)
            for j in range(limit):
                r = &self.open_recs.v[<Py_ssize_t>self.per_conn[2 * j + 1]]
                labels = self.conn_labels(r.state)
                fams["nats_connection_pending_bytes"].append((labels, r.pending))
                fams["nats_connection_subscriptions"].append((labels, r.subs))
                if r.flags & CZ_REC_RTT:
                    fams["nats_connection_rtt_seconds"].append((labels, <double>r.rtt_ns / 1e9))
                fams["nats_connection_in_messages_total"].append((labels, r.ctr[0]))
                fams["nats_connection_out_messages_total"].append((labels, r.ctr[1]))
                fams["nats_connection_in_bytes_total"].append((labels, r.ctr[2]))
                fams["nats_connection_out_bytes_total"].append((labels, r.ctr[3]))
            fams["nats_connection_series_omitted"].append(((), self.nper_conn - limit))
        self.snapshot = fams

    cdef tuple conn_labels(self, int32_t st):
        cdef CzConn *c = &self.conns[st]
        return (str(c.cid), self.py_str(c.name), self.py_str(c.account), self.py_str(c.ip))

    cdef void sweep(self):
        # Frees label values nothing refers to any more, including those of a failed update.
        cdef Py_ssize_t k
        cdef CzStr *s
        for k in range(self.strs.n):
            s = &self.strs.ents[k]
            if s.live and s.refs == 0:
                cz_strtab_drop(&self.strs, <int32_t>k)
                if k < len(self.py_strs):
                    self.py_strs[k] = None
        self.strs.nfresh = 0


cdef list _pages(object body, str what):
    if isinstance(body, (list, tuple)):
        if not body:
            raise ValueError(f"{what} is an empty list of pages")
        return list(body)
    return [body]
