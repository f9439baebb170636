# /jsz typed reads: the values at the offsets jsz_scan.pxi recorded, under the reference's rules
# (collectors.decode.Fields: a count is an integer in 0..2**64-1, a gauge a finite number, a
# text a string, a flag true or false, an object or array absent or null when optional), with
# errors that name the field's path. Included by _core.pyx; JszListing's walk is in jsz.pxi.

from fastnats.errors import ScrapeError as _JzScrapeError
from fastnats.metrics import client_value as _jz_client_value


cdef object jz_error(str what):
    return _JzScrapeError("jsz", "decode", "/jsz " + what)


cdef str jz_path(JszListing self, str sub):
    # The path of the object being read, as the reference's Fields names it.
    cdef str path = ""
    if self.at_account >= 0:
        path = f"account_details[{self.at_account}]."
    if self.at_stream >= 0:
        path += f"stream_detail[{self.at_stream}]."
    if self.at_consumer >= 0:
        path += f"consumer_detail[{self.at_consumer}]."
    return path + sub


cdef int jz_bad(JszListing self, Py_ssize_t off, str sub, str key, str expected) except -1:
    if off < 0:
        raise jz_error(f"has no {jz_path(self, sub)}{key}")
    raise jz_error(f"{jz_path(self, sub)}{key} is not {expected}")


cdef object jz_counter(JszListing self, Py_ssize_t off, str sub, str key):
    cdef uint64_t v
    if not jz_uint(self.b, self.n, off, &v):
        jz_bad(self, off, sub, key, "a count from 0 to 2**64-1")
    return v


cdef object jz_count(JszListing self, Py_ssize_t off, str sub, str key):
    # A count nats-server leaves out when it is 0 (Go omitempty).
    return 0 if off < 0 else jz_counter(self, off, sub, key)


cdef bint jz_flag(JszListing self, Py_ssize_t off, str sub, str key) except -1:
    if jz_is(self.b, off, b't'):
        return True
    if not jz_is(self.b, off, b'f'):
        jz_bad(self, off, sub, key, "true or false")
    return False


cdef bint jz_object(JszListing self, Py_ssize_t off, str sub, str key) except -1:
    # Whether an optional object is there (absent and null are not).
    if jz_null(self.b, off):
        return False
    if self.b[off] != b'{':
        jz_bad(self, off, sub, key, "an object")
    return True


cdef bint jz_array(JszListing self, Py_ssize_t off, str sub, str key) except -1:
    if jz_null(self.b, off):
        return False
    if self.b[off] != b'[':
        jz_bad(self, off, sub, key, "an array")
    return True


cdef str jz_decode(JszListing self, Py_ssize_t off):
    # The string whose opening quote is at off.
    cdef bint esc = False
    cdef Py_ssize_t end = cz_string_end(self.b, self.n, off + 1, &esc) - 1, length
    cdef const unsigned char *s = self.b + off + 1
    cdef unsigned char *buf
    length = end - off - 1
    if not esc:
        if cz_utf8_error(s, length) >= 0:
            raise jz_error(f"invalid UTF-8 in a string (byte {off})")
        return PyUnicode_DecodeUTF8(<const char *>s, length, NULL)
    buf = <unsigned char *>PyMem_Malloc(length + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        try:
            length = cz_unescape(s, length, buf, off + 1)
        except ConnzDecodeError as e:
            raise jz_error(str(e)) from None
        if cz_utf8_error(buf, length) >= 0:
            raise jz_error(f"invalid UTF-8 in a string (byte {off})")
        return PyUnicode_DecodeUTF8(<const char *>buf, length, NULL)
    finally:
        PyMem_Free(buf)


cdef str jz_text(JszListing self, Py_ssize_t off, str sub, str key, str default=None):
    if off < 0 and default is not None:
        return default
    if not jz_is(self.b, off, b'"'):
        jz_bad(self, off, sub, key, "a string")
    return jz_decode(self, off)


cdef bint jz_is_me(JszListing self, Py_ssize_t off) except -1:
    # Whether the value at off is a string equal to this server's name.
    cdef bint esc = False
    cdef Py_ssize_t end, length = len(self.me_utf8)
    if not jz_is(self.b, off, b'"'):
        return False
    end = cz_string_end(self.b, self.n, off + 1, &esc) - 1
    if esc:
        return jz_decode(self, off) == self.me
    return end - off - 1 == length and memcmp(self.b + off + 1, <const char *>self.me_utf8,
                                              length) == 0


cdef object jz_gauge(JszListing self, Py_ssize_t off, str sub, str key):
    # A finite number, signed: an int as orjson reads one (-2**63..2**64-1), else a float.
    cdef const unsigned char *b = self.b
    cdef Py_ssize_t end
    cdef uint64_t v
    cdef double d
    if off < 0 or not (b[off] == b'-' or cz_digit(b[off])):
        jz_bad(self, off, sub, key, "a finite number")
    end = jz_number_end(b, self.n, off)
    if jz_uint(b, self.n, off, &v):
        return v
    if b[off] == b'-' and jz_uint(b, self.n, off + 1, &v) and v <= <uint64_t>1 << 63:
        return -<object>v
    d = float(PyBytes_FromStringAndSize(<const char *>b + off, end - off))
    if d == INFINITY or d == -INFINITY:
        jz_bad(self, off, sub, key, "a finite number")
    return d


cdef int jz_fields_at(JszListing self, Py_ssize_t off, int table, Py_ssize_t *out) except -1:
    # The keys of the object at off (the caller checked it is one).
    jz_clear(out, jz_tables[table].count)
    with nogil:
        jz_fields(self.b, self.n, off, &jz_tables[table], out, 8)
    return 0


cdef tuple jz_metadata(JszListing self, Py_ssize_t off, tuple keys, list keys_utf8, str sub):
    # The label values of keys from a metadata object at off; "" for a key it lacks.
    cdef Py_ssize_t offs[64]
    cdef const char *names[64]
    cdef Py_ssize_t lens[64]
    cdef JzTable table
    cdef int j
    if not keys:
        return ()
    if not jz_object(self, off, sub, "metadata"):
        return ("",) * len(keys)
    table.count = len(keys)
    table.names = names
    table.lens = lens
    for j in range(table.count):
        names[j] = <bytes>keys_utf8[j]
        lens[j] = len(keys_utf8[j])
        offs[j] = -1
    with nogil:
        jz_fields(self.b, self.n, off, &table, offs, 8)
    values = []
    for j in range(table.count):
        values.append(_jz_client_value(jz_text(self, offs[j], sub + "metadata.", keys[j]))
                      if offs[j] >= 0 else "")
    return tuple(values)
