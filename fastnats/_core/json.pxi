# JSON cursor and skipper: the reading primitives of the /connz scan. Included by _core.pyx.
#
# Each takes the body, its length and a cursor, checks the cursor against the length before
# every read, and returns the cursor after what it read (or raises ConnzDecodeError naming the
# byte offset). Nothing here allocates or needs the GIL, except to raise.

from fastnats.errors import ConnzDecodeError


cdef unsigned char cz_ws[256]
cdef unsigned char cz_str_stop[256]     # bytes that end a run of plain string content
cdef int cz_i
for cz_i in range(256):
    cz_ws[cz_i] = cz_i in (0x20, 0x0A, 0x0D, 0x09)
    cz_str_stop[cz_i] = cz_i < 0x20 or cz_i == 0x22 or cz_i == 0x5C

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


cdef inline bint cz_minus_zero(const unsigned char *b, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # Whether the number at i is -0, a whole -0 and not the start of -0.5 or -0e1.
    if i + 2 > n or b[i + 1] != b'0':
        return False
    return i + 2 == n or not (cz_digit(b[i + 2]) or b[i + 2] == b'.' or b[i + 2] == b'e'
                              or b[i + 2] == b'E')


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
            if cz_minus_zero(b, n, start):
                # JSON readers read -0 as the integer 0, and so does the reference.
                out[0] = 0
                return start + 2
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


# ---------------------------------------------------------------------------------------------
# String content the scan keeps (label values, escaped keys): escapes decoded to UTF-8, and the
# check that what it keeps is UTF-8.

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
