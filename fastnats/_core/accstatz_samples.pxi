# /accstatz samples: what AccstatzTable.update returns after its commit (accstatz.pxi), in the
# reference's order: the placed accounts by label, then _other once used, then the counts and
# the top-K rates. Included by _core.pyx after accstatz.pxi; Python objects are made here only.

from fastnats.metrics import (
    NATS_ACCOUNT_CONNECTIONS as _AZ_CONNECTIONS,
    NATS_ACCOUNT_LEAFNODES as _AZ_LEAFNODES,
    NATS_ACCOUNT_OVERFLOW as _AZ_OVERFLOW,
    NATS_ACCOUNT_RECEIVED_BYTES_TOTAL as _AZ_RECEIVED_BYTES,
    NATS_ACCOUNT_RECEIVED_MESSAGES_TOTAL as _AZ_RECEIVED_MESSAGES,
    NATS_ACCOUNT_SENT_BYTES_TOTAL as _AZ_SENT_BYTES,
    NATS_ACCOUNT_SENT_MESSAGES_TOTAL as _AZ_SENT_MESSAGES,
    NATS_ACCOUNT_SLOW_CONSUMERS_TOTAL as _AZ_SLOW_CONSUMERS,
    NATS_ACCOUNT_SUBSCRIPTIONS as _AZ_SUBSCRIPTIONS,
    NATS_ACCOUNT_TOP_RECEIVED_MESSAGES_PER_SECOND as _AZ_TOP_RECEIVED,
    NATS_ACCOUNT_TOP_SENT_MESSAGES_PER_SECOND as _AZ_TOP_SENT,
    NATS_ACCOUNTS as _AZ_ACCOUNTS,
    OTHER_GROUP as _AZ_OTHER,
    client_value as _az_client_value,
)

cdef tuple _AZ_GAUGES = (_AZ_CONNECTIONS.name, _AZ_LEAFNODES.name, _AZ_SUBSCRIPTIONS.name)
cdef tuple _AZ_COUNTERS = (_AZ_SENT_MESSAGES.name, _AZ_SENT_BYTES.name, _AZ_RECEIVED_MESSAGES.name,
                           _AZ_RECEIVED_BYTES.name, _AZ_SLOW_CONSUMERS.name)
cdef tuple _AZ_OTHER_LABELS = (_AZ_OTHER,)


cdef tuple az_label(AccstatzTable t, int32_t slot):
    # The account's (label,), made once while the account holds the slot.
    cdef AzAccount *a = &t.accs[slot]
    cdef CzStr *s
    if not a.label_ok:
        s = &t.strs.ents[slot]
        t.labels[slot] = (_az_client_value(PyUnicode_DecodeUTF8(s.data, s.len, NULL)),)
        a.label_ok = 1
    return <tuple>t.labels[slot]


cdef list az_top(AccstatzTable t, AzSort *v, Py_ssize_t n, object seconds):
    # The top_k of v by messages moved, ties by the higher label, as rates.
    cdef Py_ssize_t k = t.top_k, m = n, j
    qsort(v, n, sizeof(AzSort), az_cmp_moved)
    if n > k:
        m = k
        while m < n and v[m].key == v[k - 1].key:
            m += 1
    ranked = sorted([(<uint64_t>v[j].key, az_label(t, v[j].slot)) for j in range(m)],
                    reverse=True)
    return [(labels, moved / seconds) for moved, labels in ranked[:k]]


cdef dict az_samples(AccstatzTable t, object listed_at):
    cdef dict out = {name: [] for name in _AZ_GAUGES + _AZ_COUNTERS}
    cdef list gauges = [out[name] for name in _AZ_GAUGES]
    cdef list counters = [out[name] for name in _AZ_COUNTERS]
    cdef AzAccount *a
    cdef int32_t slot
    cdef int q
    cdef tuple labels
    top_sent, top_received = [], []
    if t.top_k and t.listed_at is not None and listed_at > t.listed_at:
        seconds = (listed_at - t.listed_at) / 1e9
        top_sent = az_top(t, t.sent_v, t.nsent, seconds)
        top_received = az_top(t, t.received_v, t.nreceived, seconds)
    if t.rows_stale:
        t.rows = sorted([(az_label(t, <int32_t>k)[0], k) for k in range(t.strs.n)
                         if t.accs[k].live and t.accs[k].placed])
        t.rows_stale = False
    for _, slot in t.rows:
        a = &t.accs[slot]
        labels = <tuple>t.labels[slot]
        for q in range(3):
            (<list>gauges[q]).append((labels, a.gauges[q]))
        for q in range(5):
            (<list>counters[q]).append((labels, az_py(a.raw[q] + a.base[q])))
    if t.other_used:
        for q in range(3):
            (<list>gauges[q]).append((_AZ_OTHER_LABELS, az_py(t.other_gauges[q])))
        for q in range(5):
            (<list>counters[q]).append((_AZ_OTHER_LABELS, az_py(t.other[q])))
    out[_AZ_ACCOUNTS.name] = [((), t.nrecs)]
    out[_AZ_OVERFLOW.name] = [((), t.overflow)]
    out[_AZ_TOP_SENT.name] = top_sent
    out[_AZ_TOP_RECEIVED.name] = top_received
    return out
