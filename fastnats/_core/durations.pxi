# Go durations (time.Duration.String(), e.g. "1.234ms", "2m3.5s") and nats-server's uptime form
# ("1y2d3h4m5s") to integer nanoseconds, for the rtt and idle fields of /connz. Included by
# _core.pyx. A fraction is scaled in double precision, the way Go's own parser does, so both
# implementations agree to the nanosecond.

cdef double cz_pow10[19]
cdef int cz_pow10_k
for cz_pow10_k in range(19):
    cz_pow10[cz_pow10_k] = float(10 ** cz_pow10_k)


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
