# cython: language_level=3, embedsignature=True
"""fastnats' compiled core: /connz and /leafz scanners and aggregators, the /jsz listing, the
/accstatz account table, wire byte counter, text writer.

_core.pxd declares the C layouts and the state of the classes (the /accstatz parts declare their
own, to keep it within bounds); the code lives in include parts under _core/, one concern each
(the uvloop layout), so each stays readable on its own. The core imports nothing of fastnats but
``errors``, the ``metrics`` catalogue and ``rfc3339`` (the server's clock).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport INFINITY, fabs, floor
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, qsort, realloc, strtod
from libc.string cimport memcmp, memcpy, memset, strerror, strlen


IMPLEMENTATION = "cython"

include "_core/text.pxi"
include "_core/json.pxi"
include "_core/durations.pxi"
include "_core/tables.pxi"
include "_core/connz_scan.pxi"
include "_core/connz_state.pxi"
include "_core/connz_aggregate.pxi"
include "_core/connz_snapshot.pxi"
include "_core/leafz_scan.pxi"
include "_core/leafz.pxi"
include "_core/leafz_snapshot.pxi"
include "_core/jsz_scan.pxi"
include "_core/jsz_values.pxi"
include "_core/jsz.pxi"
include "_core/accstatz_scan.pxi"
include "_core/accstatz.pxi"
include "_core/accstatz_samples.pxi"
include "_core/sockdiag.pxi"
