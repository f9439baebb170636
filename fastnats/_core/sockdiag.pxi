# Wire byte counter: parses NETLINK_SOCK_DIAG inet_diag replies (dumps and destroy events) and
# keeps per-socket counters across polls. Included by _core.pyx; the layouts and states it reads
# are declared in _core.pxd.

from fastnats.errors import WireProtocolError
from fastnats.metrics import (
    NATS_SERVER_TOTAL_BYTES_RECEIVED,
    NATS_SERVER_TOTAL_BYTES_SENT,
    NATS_WIRE_CONNECTIONS,
    NATS_WIRE_MODE_INFO,
    NATS_WIRE_RECEIVED_BYTES_TOTAL,
    NATS_WIRE_SENT_BYTES_TOTAL,
)


cdef inline uint16_t wire_u16(const uint8_t *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint32_t wire_u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline int32_t wire_i32(const uint8_t *p) noexcept nogil:
    cdef int32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t wire_u64(const uint8_t *p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef int wire_fail(str msg, Py_ssize_t at, int err) except -1:
    raise WireProtocolError(msg, at, err if err else None)


cdef int wire_check_errno(int64_t code, int32_t raw, str kind, Py_ssize_t at) except -1:
    # The kernel's error codes are 1..MAX_ERRNO; anything else (-2**31 even negates to itself
    # in 32 bits) is a damaged message, not an errno to report.
    if not 0 < code <= WIRE_MAX_ERRNO:
        wire_fail(f"{kind} with error code {raw}, which is not an errno", at, 0)
    return 0


cdef str wire_strerror(int err):
    return (<bytes>strerror(err)).decode("utf-8", "replace")


cdef int wt_alloc(WireTable *t, Py_ssize_t cap) except -1:
    # cap is a power of two.
    t.slots = <WireSock *>PyMem_Malloc(cap * sizeof(WireSock))
    if t.slots == NULL:
        raise MemoryError()
    memset(t.slots, 0, cap * sizeof(WireSock))
    t.mask = cap - 1
    t.count = 0
    return 0


cdef int wt_reset(WireTable *t, Py_ssize_t cap) except -1:
    if t.slots != NULL and t.mask + 1 == cap:
        memset(t.slots, 0, cap * sizeof(WireSock))
        t.count = 0
        return 0
    PyMem_Free(t.slots)
    t.slots = NULL
    return wt_alloc(t, cap)


cdef inline Py_ssize_t wt_home(const WireTable *t, uint64_t cookie) noexcept:
    # Fibonacci hashing: cookies are sequential, the multiply spreads them over the table.
    return <Py_ssize_t>((cookie * <uint64_t>0x9E3779B97F4A7C15ULL) >> 32) & t.mask


cdef WireSock *wt_find(const WireTable *t, uint64_t cookie) noexcept:
    cdef Py_ssize_t i = wt_home(t, cookie)
    while t.slots[i].state != 0:
        if t.slots[i].cookie == cookie:
            return &t.slots[i]
        i = (i + 1) & t.mask
    return NULL


cdef int wt_grow(WireTable *t) except -1:
    cdef WireTable bigger
    cdef Py_ssize_t i, j
    wt_alloc(&bigger, 2 * (t.mask + 1))
    for i in range(t.mask + 1):
        if t.slots[i].state != 0:
            j = wt_home(&bigger, t.slots[i].cookie)
            while bigger.slots[j].state != 0:
                j = (j + 1) & bigger.mask
            bigger.slots[j] = t.slots[i]
    bigger.count = t.count
    PyMem_Free(t.slots)
    t[0] = bigger
    return 0


cdef WireSock *wt_insert(WireTable *t, uint64_t cookie) except NULL:
    # Returns the cookie's slot; a new one has state 0 and the caller must set it.
    cdef Py_ssize_t i
    if 2 * (t.count + 1) > t.mask + 1:
        wt_grow(t)
    i = wt_home(t, cookie)
    while t.slots[i].state != 0:
        if t.slots[i].cookie == cookie:
            return &t.slots[i]
        i = (i + 1) & t.mask
    t.slots[i].cookie = cookie
    t.count += 1
    return &t.slots[i]


cdef Py_ssize_t wire_table_size(Py_ssize_t sockets) noexcept:
    cdef Py_ssize_t cap = 1024
    while cap < 4 * sockets:
        cap *= 2
    return cap


cdef class WireCounter:
    """Wire bytes per NATS listener from the kernel's TCP counters, monotonic across churn.

    ``ports`` maps each listening port of the server to its listener name (see
    ``fastnats.collectors.varz.listener_ports``). ``update(buffers)`` takes the raw datagrams of
    ``fastnats.sources.sockdiag.SockDiag.dump()``: inet_diag dumps (NLM_F_MULTI messages ended by
    NLMSG_DONE) and destroy events (the same message without NLM_F_MULTI). Only sockets whose local
    port is a listener port count, the server's side of its accepted connections. An update is all
    or nothing: a malformed, truncated or kernel-refused stream raises ``WireProtocolError`` (with
    the byte offset in the concatenated buffers, and the errno when the kernel sent one) and leaves
    the counts as they were. The buffers may split messages anywhere.

    Counts come from tcp_info: sent is ``bytes_acked`` (delivered, retransmissions excluded),
    received is ``bytes_received``. Each socket is tracked by its inet_diag cookie; when it
    leaves the dump, its last seen counts move into a per-listener closed total, so the sums
    never go down. Bytes a connection moves between the last poll and its close are lost in
    poll mode: the loss is bounded by one poll interval of each closed connection's traffic.
    In destroy-events mode a destroy event replaces those counts with the final ones. A closed
    connection can count one more byte per direction: the kernel counts the FIN's sequence
    number.

    ``mode`` ("poll" or "destroy_events", as ``SockDiag.mode`` reports) is only shown in
    ``nats_wire_mode_info``; destroy events are applied whenever the buffers hold some. Create a
    new counter when the server restarts or its ports change.
    """

    def __cinit__(self):
        self._listener_of = <uint8_t *>PyMem_Malloc(65536)
        if self._listener_of == NULL:
            raise MemoryError()
        memset(self._listener_of, 0, 65536)
        wt_alloc(&self._prev, 1024)
        wt_alloc(&self._cur, 1024)

    def __dealloc__(self):
        PyMem_Free(self._listener_of)
        PyMem_Free(self._prev.slots)
        PyMem_Free(self._cur.slots)
        PyMem_Free(self._closed_sent)
        PyMem_Free(self._carry)

    def __init__(self, ports, str mode="poll"):
        cdef Py_ssize_t i
        if mode not in ("poll", "destroy_events"):
            raise ValueError(f"mode must be 'poll' or 'destroy_events', not {mode!r}")
        self._ports = wire_check_ports(ports)
        self._listeners = tuple(sorted(set(self._ports.values())))
        self._n = len(self._listeners)
        if self._n > WIRE_MAX_LISTENERS:
            raise ValueError(f"{self._n} listener names; at most {WIRE_MAX_LISTENERS}")
        self.mode = mode
        index = {name: i + 1 for i, name in enumerate(self._listeners)}
        memset(self._listener_of, 0, 65536)
        for port, name in self._ports.items():
            self._listener_of[<int>port] = <uint8_t><int>index[name]
        PyMem_Free(self._closed_sent)
        self._closed_sent = <uint64_t *>PyMem_Malloc(5 * self._n * sizeof(uint64_t))
        if self._closed_sent == NULL:
            raise MemoryError()
        memset(self._closed_sent, 0, 5 * self._n * sizeof(uint64_t))
        self._closed_received = self._closed_sent + self._n
        self._live_sent = self._closed_sent + 2 * self._n
        self._live_received = self._closed_sent + 3 * self._n
        self._live_sockets = self._closed_sent + 4 * self._n
        wt_reset(&self._prev, 1024)
        self._ready = False

    @property
    def ports(self):
        """The port -> listener name mapping the counter was built with (a copy)."""
        return dict(self._ports)

    @property
    def sockets(self):
        """Connections seen open by the last update, all listeners together."""
        cdef Py_ssize_t i
        cdef uint64_t total = 0
        for i in range(self._n):
            total += self._live_sockets[i]
        return total

    def update(self, buffers):
        """Apply one poll: ``buffers`` is a list of bytes-like objects, read as one stream."""
        cdef const uint8_t[::1] view
        if not isinstance(buffers, (list, tuple)):
            raise TypeError(f"buffers must be a list of bytes, not {type(buffers).__name__}")
        wt_reset(&self._cur, wire_table_size(self._prev.count))
        self._carry_len = 0
        self._stream_at = 0
        self._dones = 0
        self._in_multi = False
        try:
            for buf in buffers:
                view = buf
                if view.shape[0]:
                    self._feed(&view[0], view.shape[0])
            self._finish()
        except BaseException:
            wt_reset(&self._cur, 1024)
            raise
        self._commit()
        self._ready = True

    def families(self):
        """Samples by catalogue metric name; empty until the first successful update."""
        cdef Py_ssize_t i
        cdef uint64_t sent_total = 0, received_total = 0, listener_sent, listener_received
        if not self._ready:
            return {}
        sent = []
        received = []
        sockets = []
        for i in range(self._n):
            label = (self._listeners[i],)
            listener_sent = cz_sat_add(self._closed_sent[i], self._live_sent[i])
            listener_received = cz_sat_add(self._closed_received[i], self._live_received[i])
            sent.append((label, listener_sent))
            received.append((label, listener_received))
            sockets.append((label, self._live_sockets[i]))
            sent_total = cz_sat_add(sent_total, listener_sent)
            received_total = cz_sat_add(received_total, listener_received)
        return {
            NATS_WIRE_SENT_BYTES_TOTAL.name: sent,
            NATS_WIRE_RECEIVED_BYTES_TOTAL.name: received,
            NATS_WIRE_CONNECTIONS.name: sockets,
            NATS_WIRE_MODE_INFO.name: [((self.mode,), 1)],
            NATS_SERVER_TOTAL_BYTES_SENT.name: [((), sent_total)],
            NATS_SERVER_TOTAL_BYTES_RECEIVED.name: [((), received_total)],
        }

    cdef int _feed(self, const uint8_t *data, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = 0, span
        cdef uint32_t mlen
        if self._carry_len:
            pos = self._complete_carry(data, n)
        while self._carry_len == 0 and n - pos >= NL_HDRLEN:
            mlen = wire_u32(data + pos)
            if mlen < NL_HDRLEN:
                wire_fail(f"nlmsg_len {mlen} is shorter than the netlink header",
                          self._stream_at + pos, 0)
            span = (<Py_ssize_t>mlen + 3) & ~3
            if span > n - pos:
                break
            self._message(data + pos, mlen, self._stream_at + pos)
            pos += span
        if pos < n:
            self._carry_append(data + pos, n - pos, self._stream_at + pos)
        self._stream_at += n
        return 0

    cdef int _carry_append(self, const uint8_t *data, Py_ssize_t n, Py_ssize_t at) except -1:
        cdef Py_ssize_t cap
        cdef uint8_t *grown
        if self._carry_len == 0:
            self._carry_at = at
        if self._carry_len + n > self._carry_cap:
            cap = max(4096, 2 * self._carry_cap)
            while cap < self._carry_len + n:
                cap *= 2
            grown = <uint8_t *>PyMem_Realloc(self._carry, cap)
            if grown == NULL:
                raise MemoryError()
            self._carry = grown
            self._carry_cap = cap
        memcpy(self._carry + self._carry_len, data, n)
        self._carry_len += n
        return 0

    cdef Py_ssize_t _complete_carry(self, const uint8_t *data, Py_ssize_t n) except -1:
        # Moves bytes from the new buffer into the carried message until it is whole, then
        # decodes it; returns the bytes used.
        cdef Py_ssize_t used = 0, take, span
        cdef uint32_t mlen
        if self._carry_len < NL_HDRLEN:
            take = min(NL_HDRLEN - self._carry_len, n)
            self._carry_append(data, take, 0)
            used = take
            if self._carry_len < NL_HDRLEN:
                return used
        mlen = wire_u32(self._carry)
        if mlen < NL_HDRLEN:
            wire_fail(f"nlmsg_len {mlen} is shorter than the netlink header", self._carry_at, 0)
        span = (<Py_ssize_t>mlen + 3) & ~3
        take = min(span - self._carry_len, n - used)
        self._carry_append(data + used, take, 0)
        used += take
        if self._carry_len == span:
            self._carry_len = 0
            self._message(self._carry, mlen, self._carry_at)
        return used

    cdef int _finish(self) except -1:
        cdef uint32_t mlen
        if self._carry_len:
            if self._carry_len < NL_HDRLEN:
                wire_fail(f"truncated netlink header: {self._carry_len} of {NL_HDRLEN} bytes",
                          self._carry_at, 0)
            mlen = wire_u32(self._carry)
            wire_fail(f"truncated netlink message: {self._carry_len} of "
                      f"{(<Py_ssize_t>mlen + 3) & ~3} bytes", self._carry_at, 0)
        if self._in_multi:
            wire_fail("the dump stops before its NLMSG_DONE", self._stream_at, 0)
        if self._dones == 0:
            wire_fail("no complete dump: the buffers hold no NLMSG_DONE", self._stream_at, 0)
        return 0

    cdef int _message(self, const uint8_t *m, uint32_t mlen, Py_ssize_t at) except -1:
        cdef uint16_t kind = wire_u16(m + 4)
        cdef int32_t err
        cdef int64_t code
        if kind == NL_SOCK_DIAG_BY_FAMILY:
            return self._socket(m, mlen, at, wire_u16(m + 6))
        if kind == NL_DONE:
            self._in_multi = False
            self._dones += 1
            if mlen >= NL_ERRNO_AT + 4:
                err = wire_i32(m + NL_ERRNO_AT)
                if err < 0:
                    code = -<int64_t>err
                    wire_check_errno(code, err, "NLMSG_DONE", at)
                    wire_fail(f"the kernel ended the dump with error {code} "
                              f"({wire_strerror(code)})", at, code)
            return 0
        if kind == NL_ERROR:
            if mlen < NL_ERRNO_AT + 4:
                wire_fail(f"NLMSG_ERROR of {mlen} bytes has no error code", at, 0)
            err = wire_i32(m + NL_ERRNO_AT)
            if err == 0:
                return 0    # an acknowledgement
            code = -<int64_t>err if err < 0 else err
            wire_check_errno(code, err, "NLMSG_ERROR", at)
            wire_fail(f"the kernel answered with error {code} ({wire_strerror(code)})", at, code)
        if kind == NL_NOOP:
            return 0
        if kind == NL_OVERRUN:
            wire_fail("netlink reports lost data (NLMSG_OVERRUN)", at, 0)
        wire_fail(f"unexpected netlink message type {kind}", at, 0)

    cdef int _socket(self, const uint8_t *m, uint32_t mlen, Py_ssize_t at,
                     uint16_t flags) except -1:
        cdef bint destroyed = not (flags & NL_F_MULTI)
        cdef uint8_t listener, family
        cdef const uint8_t *info = NULL
        cdef Py_ssize_t info_len = 0, a = DIAG_ATTRS_AT, alen
        cdef uint64_t sent, received, cookie
        cdef WireSock *e
        if not destroyed:
            self._in_multi = True
        if mlen < DIAG_ATTRS_AT:
            wire_fail(f"sock_diag message of {mlen} bytes is shorter than inet_diag_msg",
                      at, 0)
        family = m[DIAG_FAMILY_AT]
        if family != WIRE_AF_INET and family != WIRE_AF_INET6:
            wire_fail(f"inet_diag message of address family {family}", at, 0)
        listener = self._listener_of[(m[DIAG_SPORT_AT] << 8) | m[DIAG_SPORT_AT + 1]]
        if listener == 0 or m[DIAG_STATE_AT] == WIRE_TCP_LISTEN:
            return 0
        while mlen - a >= 4:
            alen = wire_u16(m + a)
            if alen < 4 or alen > mlen - a:
                wire_fail(f"attribute of {alen} bytes does not fit its message", at + a, 0)
            if (wire_u16(m + a + 2) & NLA_TYPE_MASK) == DIAG_ATTR_INFO:
                info = m + a + 4
                info_len = alen - 4
            a += (alen + 3) & ~3
        if info == NULL:
            # TIME_WAIT and request sockets have no tcp_info and hold no counters.
            return 0
        if info_len < TCPI_NEEDED:
            wire_fail(f"tcp_info of {info_len} bytes lacks bytes_acked/bytes_received "
                      f"(needs {TCPI_NEEDED}, Linux 4.1 or later)", at + (info - m), 0)
        sent = wire_u64(info + TCPI_BYTES_ACKED_AT)
        received = wire_u64(info + TCPI_BYTES_RECEIVED_AT)
        cookie = (<uint64_t>wire_u32(m + DIAG_COOKIE_AT)
                  | (<uint64_t>wire_u32(m + DIAG_COOKIE_AT + 4) << 32))
        e = wt_insert(&self._cur, cookie)
        if e.state == 0:
            e.state = WS_DESTROYED if destroyed else WS_LIVE
            e.listener = listener
            e.sent = sent
            e.received = received
        else:
            # The same socket twice in one update: a dump that raced a hash move, or a dump
            # line and its destroy event. The larger counts are the later ones.
            if sent > e.sent:
                e.sent = sent
            if received > e.received:
                e.received = received
            if destroyed:
                e.state = WS_DESTROYED
        return 0

    cdef int _commit(self) except -1:
        # Sums saturate at 2**64-1 instead of wrapping, so that they never go down. What a
        # socket seen again had folded is taken back first, so that a saturated sum comes out
        # the same whatever the order of the sockets in the tables.
        cdef Py_ssize_t i, l
        cdef WireSock *e
        cdef WireSock *p
        cdef WireSock *g
        cdef WireTable swap
        memset(self._live_sent, 0, 3 * self._n * sizeof(uint64_t))
        for i in range(self._cur.mask + 1):
            e = &self._cur.slots[i]
            if e.state == 0:
                continue
            p = wt_find(&self._prev, e.cookie)
            if p != NULL:
                p.carried = 1
                # A socket keeps its first listener and never loses bytes, whatever the input.
                e.listener = p.listener
                if p.sent > e.sent:
                    e.sent = p.sent
                if p.received > e.received:
                    e.received = p.received
                if p.state != WS_LIVE:
                    l = p.listener - 1
                    self._closed_sent[l] = cz_sat_sub(self._closed_sent[l], p.sent)
                    self._closed_received[l] = cz_sat_sub(self._closed_received[l], p.received)
        for i in range(self._cur.mask + 1):
            e = &self._cur.slots[i]
            if e.state == 0:
                continue
            l = e.listener - 1
            if e.state == WS_DESTROYED:
                self._closed_sent[l] = cz_sat_add(self._closed_sent[l], e.sent)
                self._closed_received[l] = cz_sat_add(self._closed_received[l], e.received)
            else:
                self._live_sent[l] = cz_sat_add(self._live_sent[l], e.sent)
                self._live_received[l] = cz_sat_add(self._live_received[l], e.received)
                self._live_sockets[l] += 1
        for i in range(self._prev.mask + 1):
            p = &self._prev.slots[i]
            if p.state == 0 or p.carried:
                continue
            if p.state == WS_LIVE:
                l = p.listener - 1
                self._closed_sent[l] = cz_sat_add(self._closed_sent[l], p.sent)
                self._closed_received[l] = cz_sat_add(self._closed_received[l], p.received)
                g = wt_insert(&self._cur, p.cookie)
                g[0] = p[0]
                g.state = WS_GRAVE
                g.age = 1
            elif p.state == WS_GRAVE and p.age < WIRE_GRACE_UPDATES:
                g = wt_insert(&self._cur, p.cookie)
                g[0] = p[0]
                g.age = p.age + 1
        swap = self._prev
        self._prev = self._cur
        self._cur = swap
        return 0


cdef dict wire_check_ports(ports):
    if not isinstance(ports, dict):
        try:
            ports = dict(ports)
        except (TypeError, ValueError):
            raise TypeError(f"ports must map port numbers to listener names, "
                            f"not {type(ports).__name__}") from None
    if not ports:
        raise ValueError("ports is empty: a wire counter needs at least one listening port")
    for port, name in ports.items():
        if type(port) is bool or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"listening port {port!r} is not in 1..65535")
        if not isinstance(name, str) or not name:
            raise ValueError(f"port {port}: listener name {name!r} is not a non-empty string")
    return dict(ports)
