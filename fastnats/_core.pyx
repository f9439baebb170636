# cython: language_level=3, embedsignature=True
"""fastnats' compiled core: /connz scanner and aggregator, wire byte counter, text writer.

The parts live in include files (the uvloop layout) so each stays readable on its own.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.math cimport INFINITY, fabs, floor
from libc.stdio cimport snprintf
from libc.string cimport memcpy, strlen
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset, strerror
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcmp


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    char *PyOS_double_to_string(double val, char format_code, int precision,
                                int flags, int *ptype) except NULL


IMPLEMENTATION = "cython"

include "_writer.pxi"
include "_connz.pxi"
include "_wire.pxi"
