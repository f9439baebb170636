# Text writer: renders families of samples into the classic exposition format (0.0.4).
# Included by _core.pyx.

cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int buf_init(Buf *b, Py_ssize_t cap) except -1:
    b.data = <char *>PyMem_Malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.len = 0
    b.cap = cap
    return 0


cdef int buf_reserve(Buf *b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char *data
    if b.len + extra <= b.cap:
        return 0
    cap = b.cap * 2
    while cap < b.len + extra:
        cap *= 2
    data = <char *>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int buf_put(Buf *b, const char *s, Py_ssize_t n) except -1:
    buf_reserve(b, n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int buf_putc(Buf *b, char c) except -1:
    buf_reserve(b, 1)
    b.data[b.len] = c
    b.len += 1
    return 0


cdef int buf_put_str(Buf *b, str s) except -1:
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    return buf_put(b, p, n)


cdef int buf_put_escaped(Buf *b, str s, bint label_value) except -1:
    # Label values escape backslash, double quote and newline; HELP escapes only the first and last.
    cdef Py_ssize_t n, i
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    cdef char c
    buf_reserve(b, 2 * n)
    for i in range(n):
        c = p[i]
        if c == b'\\':
            b.data[b.len] = b'\\'
            b.data[b.len + 1] = b'\\'
            b.len += 2
        elif c == b'\n':
            b.data[b.len] = b'\\'
            b.data[b.len + 1] = b'n'
            b.len += 2
        elif c == b'"' and label_value:
            b.data[b.len] = b'\\'
            b.data[b.len + 1] = b'"'
            b.len += 2
        else:
            b.data[b.len] = c
            b.len += 1
    return 0


cdef int buf_put_value(Buf *b, object v) except -1:
    cdef char tmp[32]
    cdef int n
    cdef double d
    cdef long long ll
    cdef char *r
    if type(v) is float:
        d = <double>v
        if d != d:
            return buf_put(b, b"NaN", 3)
        if d == INFINITY:
            return buf_put(b, b"+Inf", 4)
        if d == -INFINITY:
            return buf_put(b, b"-Inf", 4)
        # Whole numbers print without a fraction, as the Go client does.
        if d == floor(d) and fabs(d) < 1e15:
            n = snprintf(tmp, sizeof(tmp), b"%.0f", d)
            return buf_put(b, tmp, n)
        r = PyOS_double_to_string(d, b'r', 0, 0, NULL)
        try:
            return buf_put(b, r, strlen(r))
        finally:
            PyMem_Free(r)
    if type(v) is int or type(v) is bool:
        try:
            ll = v
        except OverflowError:
            # Counters up to 2**64-1 do not fit in a C long long.
            return buf_put_str(b, str(int(v)))
        n = snprintf(tmp, sizeof(tmp), b"%lld", ll)
        return buf_put(b, tmp, n)
    return buf_put_value(b, float(v))


cdef int write_family(Buf *b, object metric, tuple label_names, list samples) except -1:
    cdef str name = metric.name
    cdef tuple values
    cdef Py_ssize_t i, nlabels = len(label_names)
    buf_put(b, b"# HELP ", 7)
    buf_put_str(b, name)
    buf_putc(b, b' ')
    buf_put_escaped(b, metric.help, False)
    buf_put(b, b"\n# TYPE ", 8)
    buf_put_str(b, name)
    buf_putc(b, b' ')
    buf_put_str(b, metric.type)
    buf_putc(b, b'\n')
    for sample in samples:
        values = <tuple?>sample[0]
        if len(values) != nlabels:
            raise ValueError(
                f"{name}: {len(values)} label values for labels {label_names!r}")
        buf_put_str(b, name)
        if nlabels:
            buf_putc(b, b'{')
            for i in range(nlabels):
                if i:
                    buf_putc(b, b',')
                buf_put_str(b, <str>label_names[i])
                buf_put(b, b'="', 2)
                buf_put_escaped(b, <str?>values[i], True)
                buf_putc(b, b'"')
            buf_putc(b, b'}')
        buf_putc(b, b' ')
        buf_put_value(b, sample[1])
        buf_putc(b, b'\n')
    return 0


def render_text(families):
    """Render ``(metric, label_names, samples)`` families as classic text exposition bytes.

    ``samples`` is a list of ``(label_values, value)``; values are ints or floats. A family with
    no samples is left out entirely, so absent data never shows as an empty HELP/TYPE pair.
    """
    cdef Buf b
    buf_init(&b, 65536)
    try:
        for metric, label_names, samples in families:
            if samples:
                write_family(&b, metric, <tuple?>label_names, <list?>samples)
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        PyMem_Free(b.data)
