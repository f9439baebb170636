# Text writer: renders families of samples into the classic exposition format (0.0.4). Included by
# _core.pyx; _reference/writer.py writes the same bytes.

from fastnats.metrics import DISTRIBUTION as _DISTRIBUTION


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    char *PyOS_double_to_string(double val, char format_code, int precision,
                                int flags, int *ptype) except NULL


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


cdef int write_header(Buf *b, str name, str help, str kind) except -1:
    buf_put(b, b"# HELP ", 7)
    buf_put_str(b, name)
    buf_putc(b, b' ')
    buf_put_escaped(b, help, False)
    buf_put(b, b"\n# TYPE ", 8)
    buf_put_str(b, name)
    buf_putc(b, b' ')
    buf_put_str(b, kind)
    buf_putc(b, b'\n')
    return 0


cdef tuple sample_labels(str name, tuple label_names, object label_values):
    # The label values of a sample, checked against the family's label names.
    cdef tuple values = <tuple?>label_values
    if len(values) != len(label_names):
        raise ValueError(f"{name}: {len(values)} label values for labels {label_names!r}")
    return values


cdef int write_series(Buf *b, str name, const char *suffix, tuple label_names, tuple values,
                      str le) except -1:
    # name, suffix and the label set up to the value's separator; le (if not None) comes last.
    cdef Py_ssize_t i, nlabels = len(label_names)
    buf_put_str(b, name)
    buf_put(b, suffix, strlen(suffix))
    if nlabels or le is not None:
        buf_putc(b, b'{')
        for i in range(nlabels):
            if i:
                buf_putc(b, b',')
            buf_put_str(b, <str?>label_names[i])
            buf_put(b, b'="', 2)
            buf_put_escaped(b, <str?>values[i], True)
            buf_putc(b, b'"')
        if le is not None:
            if nlabels:
                buf_putc(b, b',')
            buf_put(b, b'le="', 4)
            buf_put_escaped(b, le, True)
            buf_putc(b, b'"')
        buf_putc(b, b'}')
    buf_putc(b, b' ')
    return 0


cdef int write_family(Buf *b, str name, tuple label_names, list samples) except -1:
    cdef tuple values
    # Unpacked, so that a sample of another shape is a ValueError or a TypeError.
    for label_values, value in samples:
        values = sample_labels(name, label_names, label_values)
        write_series(b, name, b"", label_names, values, None)
        buf_put_value(b, value)
        buf_putc(b, b'\n')
    return 0


cdef int write_histogram(Buf *b, str name, tuple buckets, tuple label_names,
                         list samples) except -1:
    # A distribution's sample is (cumulative bucket counts, sum), one count per le of buckets
    # (+Inf last); its _count is the +Inf bucket.
    cdef tuple values, counts
    cdef Py_ssize_t i, nb = len(buckets)
    for label_values, value in samples:
        values = sample_labels(name, label_names, label_values)
        if type(value) is not tuple or len(<tuple>value) != 2 \
                or type((<tuple>value)[0]) is not tuple or len((<tuple>value)[0]) != nb or nb == 0:
            raise ValueError(f"{name}: a histogram sample is (counts, sum) with one count per "
                             f"bucket {buckets!r}, not {value!r}")
        counts = (<tuple>value)[0]
        for i in range(nb):
            write_series(b, name, b"_bucket", label_names, values, <str?>buckets[i])
            buf_put_value(b, counts[i])
            buf_putc(b, b'\n')
        write_series(b, name, b"_sum", label_names, values, None)
        buf_put_value(b, (<tuple>value)[1])
        buf_putc(b, b'\n')
        write_series(b, name, b"_count", label_names, values, None)
        buf_put_value(b, counts[nb - 1])
        buf_putc(b, b'\n')
    return 0


def render_text(families):
    """Render ``(metric, label_names, samples)`` families as classic text exposition bytes.

    ``samples`` is a list of ``(label_values, value)``; values are ints or floats, and for a
    distribution ``(cumulative bucket counts, sum)``, written as one histogram family. A family
    with no samples is left out entirely, so absent data never shows as an empty HELP/TYPE pair.
    """
    cdef Buf b
    cdef str name
    buf_init(&b, 65536)
    try:
        for metric, label_names, samples in families:
            if not samples:
                continue
            name = metric.name
            write_header(&b, name, metric.help, metric.exposed_type)
            if metric.type == _DISTRIBUTION:
                write_histogram(&b, name, metric.buckets, <tuple?>label_names, <list?>samples)
            else:
                write_family(&b, name, <tuple?>label_names, <list?>samples)
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        PyMem_Free(b.data)
