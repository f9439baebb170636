# Declarations of fastnats._core: the C layouts its parts share and the state of its classes.
# Cython reads this file before _core.pyx; the code lives in the include parts under _core/.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


# --- Text writer (_core/text.pxi) -----------------------------------------------------------

cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


# --- /connz: limits, label slots and record flags -------------------------------------------

cdef enum:
    # Refreshes a cid missing from the open body is remembered for, in case it was only skipped
    # (paging while connections close shifts the pages), before it counts as closed for good.
    CZ_ABSENT_GRACE = 3
    CZ_MAX_DEPTH = 512      # levels of nesting, the body object included; bounds C recursion
    CZ_EMPTY = -1
    CZ_DELETED = -2
    CZ_MAX_BOUNDS = 15      # distribution buckets besides +Inf
    # Updates whose highest cid waits to become the settled floor (see cz_advance_floor).
    CZ_HISTORY = 64
    CZ_FLOOR_LAG = 2        # updates, at least, between reading a cid and settling below it

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
                           # (open or closed record)
    CZ_REC_LEAF = 128      # kind "Leafnode": not a client; only its cid counts as read

cdef enum:
    # The fields of a connection object the scan reads; the rest it skips.
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

cdef enum:
    # The distributions, in the order of ConnzAggregator.dist.
    CZ_D_RTT = 0
    CZ_D_PENDING = 1
    CZ_D_IDLE = 2
    CZ_D_SUBS = 3
    CZ_NDIST = 4

cdef enum:
    # The top-K rankings, in the order of ConnzAggregator.top.
    CZ_T_PENDING = 0
    CZ_T_IN_RATE = 1
    CZ_T_OUT_RATE = 2
    CZ_NTOP = 3


# --- /connz: one connection as read from a body ---------------------------------------------
# Numbers parsed, label values left as spans of the body (_core/connz_scan.pxi).

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


# --- /connz: interned label values and the cid map (_core/tables.pxi) -----------------------

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

cdef struct CzSlot:
    uint64_t key
    int32_t val          # -1 empty, -2 deleted

cdef struct CzMap:
    CzSlot *slots
    Py_ssize_t cap       # a power of two
    Py_ssize_t used
    Py_ssize_t deleted


# --- /connz: aggregation state (_core/connz_aggregate.pxi) ----------------------------------

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
    double absent_since   # when it was first missing, for closed_slack
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
    uint64_t lost         # connections that left without a closed entry to read
    uint64_t seq          # creation order, the tie-break of evictions
    double last_active
    int32_t live
    int32_t other
    int32_t opened        # a connection of it was seen open (it did not only live between reads)

cdef struct CzDist:
    uint64_t counts[16]   # per bucket (not cumulative); the last is +Inf
    int64_t bounds[15]
    int32_t nb
    uint64_t isum         # saturating sum, for integer distributions
    double fsum           # sum in seconds, for duration distributions

cdef struct CzTop:
    int32_t *idx          # record indices, best first
    int32_t n

cdef struct CzVictim:
    # A group a full table may give up for a new one (cz_next_victim), in the order they go.
    int32_t cls           # CZ_EVICT_*
    double last_active
    uint64_t seq
    int32_t slot

cdef enum:
    # Which memberless groups a full table gives up first; the rest keep their TTL.
    CZ_EVICT_IDLE = 0     # never carried traffic
    CZ_EVICT_FLEETING = 1 # all its connections lived between two reads
    CZ_EVICT_NEVER = 2


cdef class ConnzAggregator:
    cdef readonly tuple group_by
    cdef readonly Py_ssize_t max_groups
    cdef readonly double group_ttl
    cdef readonly Py_ssize_t top_k
    cdef readonly bint per_connection
    cdef readonly Py_ssize_t per_connection_max
    cdef readonly double closed_slack
    cdef readonly uint64_t total
    cdef readonly uint64_t lost_known    # connections seen open that left no closed entry to read
    cdef readonly uint64_t lost_unknown  # connections never read, open or closed (cid holes)
    cdef uint64_t scanned_total
    cdef readonly Py_ssize_t count

    cdef int32_t fields[6]        # label slot of each group_by field
    cdef int32_t nfields
    cdef bint ready               # __init__ has run
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
    cdef CzMap seen               # cids above the floor read open or closed; values unused
    cdef CzGroup *groups
    cdef Py_ssize_t ngroup_slots
    cdef Py_ssize_t groups_cap
    cdef Py_ssize_t ngroups       # live groups, _other excluded
    cdef int32_t other
    cdef int32_t *gindex          # open addressing over group slots by key; -1 empty
    cdef Py_ssize_t gicap
    cdef uint64_t overflow
    cdef uint64_t evictions
    cdef uint64_t group_seq
    cdef uint64_t commit_seq      # group_seq when the commit began: older groups may be evicted
    cdef CzVictim *victims
    cdef Py_ssize_t victims_cap
    cdef Py_ssize_t nvictims
    cdef Py_ssize_t victim_at
    cdef bint victims_ready       # the victims of this commit were listed
    cdef uint64_t watermark       # highest cid any earlier update read, open or closed
    # Every cid at or below the floor is settled: read, or counted lost, or never a client's.
    cdef uint64_t floor
    cdef uint32_t floor_epoch     # the update whose watermark the floor is
    cdef uint32_t overflow_epoch  # the last update whose closed read overflowed, or 0
    cdef double hist_now[64]      # CZ_HISTORY updates not settled yet, oldest at hist_head
    cdef uint64_t hist_watermark[64]
    cdef uint32_t hist_epoch[64]
    # Client connections the server accepted (/varz total_connections; -1 if not given) at this
    # update and at the first, and connections read for the first time, in all and by the end
    # of the first update: how many connections can have been lost unseen at most.
    cdef int64_t accepted
    cdef int64_t first_accepted
    cdef uint64_t clients_read
    cdef uint64_t first_reads
    cdef int32_t hist_head
    cdef int32_t hist_len
    cdef uint32_t epoch
    cdef CzDist dist[4]           # by CZ_D_*
    cdef CzTop top[3]             # by CZ_T_*
    cdef uint64_t *per_conn       # (cid, record index) pairs, for the per-connection series
    cdef Py_ssize_t per_conn_cap
    cdef Py_ssize_t nper_conn
    cdef unsigned char *scratch   # decoded escaped label values
    cdef Py_ssize_t scratch_cap
    cdef dict snapshot


# --- /leafz: records, held leafnodes and groups (_core/leafz.pxi) ------------------------------
# Label values, counters, durations and the id map are the /connz ones: CzSpan, CzStrTab, CzMap,
# CzDist, and the CZ_CTR_* counter order.

cdef enum:
    # Label slots, in metrics.LEAF_GROUP_BY_FIELDS order; the first three are read as spans.
    LZ_L_ACCOUNT = 0
    LZ_L_NAME = 1
    LZ_L_IP = 2
    LZ_L_IS_SPOKE = 3
    LZ_NLABELS = 4
    LZ_NSPANS = 3
    # Updates a leafnode missing from /leafz waits, beyond the one it vanished at (and
    # closed_slack seconds), for its closed entry: nats-server files it after the leaf leaves.
    LZ_ABSENT_GRACE = 1

cdef enum:
    LZ_REC_ID = 1
    LZ_REC_RTT = 2
    LZ_REC_DUP = 4         # the id was listed earlier in the same body
    LZ_REC_NEW = 8         # no leafnode held under its id (or its counters went back): read its labels
    LZ_REC_RATE = 16

cdef enum:
    # The top-K rankings, in the order of LeafzAggregator.top.
    LZ_T_RTT = 0
    LZ_T_IN_RATE = 1
    LZ_T_OUT_RATE = 2
    LZ_NTOP = 3

cdef struct LzRec:
    uint64_t id
    uint64_t ctr[4]
    uint64_t subs
    int64_t rtt_ns
    double rate[2]
    CzSpan span[3]         # account, name, ip
    int32_t ids[4]         # interned label ids by LZ_L_*, for LZ_REC_NEW records
    int32_t gkey           # interned group key (the ids of its group_by labels), likewise
    int32_t state          # the held leafnode's slot, once committed
    int32_t spoke
    uint32_t flags

cdef struct LzRecs:
    LzRec *v
    Py_ssize_t n
    Py_ssize_t cap

cdef struct LzLeaf:
    uint64_t id
    uint64_t ctr[4]        # as last seen open
    uint64_t final[4]      # its closed entry's counters, when found == the scan's number
    double seen_at
    double absent_since
    int32_t group
    int32_t labels[3]      # interned name, account, ip
    int32_t absent         # -1 while listed; else updates since it vanished, its ctr folded
    int32_t used
    uint32_t epoch         # the commit that last counted it listed
    uint32_t listed        # the scan that last listed it
    uint32_t found         # the scan whose closed read found it

cdef struct LzGroup:
    int32_t key[4]         # interned label ids, in group_by order
    int32_t gkey           # its key in LeafzAggregator.gkeys; -1 for _other
    uint64_t closed[4]     # counters of the leafnodes that left the group (last seen, then final)
    uint64_t open_ctr[4]   # counters of the listed leafnodes, summed at each update
    uint64_t conns
    uint64_t subs
    uint64_t members       # leafnodes held, listed or awaiting their closed entry
    uint64_t closes
    uint64_t lost
    double last_active
    int32_t live
    int32_t other

cdef struct LzRank:
    int64_t ikey           # compared first (rtt in ns), then fkey (a rate), then the lower id
    double fkey
    uint64_t id
    int32_t rec

cdef struct LzTop:
    LzRank *v              # best first, room for top_k + 1
    int32_t n


cdef class LeafzAggregator:
    cdef readonly tuple group_by
    cdef readonly Py_ssize_t max_groups
    cdef readonly double group_ttl
    cdef readonly Py_ssize_t top_k
    cdef readonly double closed_slack
    cdef readonly Py_ssize_t count       # leafnodes listed at the last commit
    cdef readonly uint64_t closed        # leafnodes that vanished, in all
    cdef readonly uint64_t lost          # of those, the ones whose closed entry was never read

    cdef int32_t fields[4]
    cdef int32_t nfields
    cdef bint ready
    cdef bint busy
    cdef bint scanned              # a body is scanned and waits for commit()
    cdef uint32_t scan_seq
    cdef Py_ssize_t wanted         # held leafnodes the scanned body does not list
    cdef Py_ssize_t matched        # of those, found by match_closed()

    cdef LzRecs recs
    cdef CzRecs closed_recs
    cdef CzStrTab strs
    cdef list py_strs
    cdef CzMap ids                 # id -> slot in leafs
    cdef LzLeaf *leafs
    cdef Py_ssize_t nleaf_slots
    cdef Py_ssize_t leafs_cap
    cdef int32_t *leafs_free
    cdef Py_ssize_t nleafs_free
    cdef Py_ssize_t leafs_free_cap
    cdef LzGroup *groups
    cdef Py_ssize_t ngroup_slots
    cdef Py_ssize_t groups_cap
    cdef Py_ssize_t ngroups        # live groups, _other excluded
    cdef int32_t other
    # Group keys as text (the hex of their label ids), interned: the table finds a group by key.
    cdef CzStrTab gkeys
    cdef int32_t *group_at         # gkey id -> group slot, or -1
    cdef Py_ssize_t group_at_cap
    cdef uint64_t overflow
    cdef uint32_t epoch
    cdef list rows                 # (label values, slot) of the live groups, sorted
    cdef bint rows_stale           # a group came or went since rows was made
    cdef CzDist rtt
    cdef LzTop top[3]
    cdef unsigned char *scratch
    cdef Py_ssize_t scratch_cap
    cdef dict snapshot

    cdef int _enter(self) except -1


# --- Wire byte counter (_core/sockdiag.pxi) -------------------------------------------------

# Layouts from linux/netlink.h, inet_diag.h and tcp.h; netlink is host byte order, ports are
# network order.
cdef enum:
    NL_HDRLEN = 16
    NL_NOOP = 1
    NL_ERROR = 2
    NL_DONE = 3
    NL_OVERRUN = 4
    NL_F_MULTI = 2
    NL_SOCK_DIAG_BY_FAMILY = 20
    NL_ERRNO_AT = 16                 # the int after the header of NLMSG_ERROR and NLMSG_DONE
    DIAG_FAMILY_AT = 16              # inet_diag_msg, right after the netlink header
    DIAG_STATE_AT = 17
    DIAG_SPORT_AT = 20
    DIAG_COOKIE_AT = 60
    DIAG_ATTRS_AT = 88               # header 16 + inet_diag_msg 72, both 4-aligned
    DIAG_ATTR_INFO = 2               # INET_DIAG_INFO: struct tcp_info
    NLA_TYPE_MASK = 0x3fff
    TCPI_BYTES_ACKED_AT = 120
    TCPI_BYTES_RECEIVED_AT = 128
    TCPI_NEEDED = 136                # both fields arrived together in Linux 4.1
    WIRE_AF_INET = 2
    WIRE_AF_INET6 = 10
    WIRE_TCP_LISTEN = 10

# Per-socket states; 0 marks an empty slot.
cdef enum:
    WS_LIVE = 1         # in the latest dump
    WS_GRAVE = 2        # missing from the latest dump; its counts were folded into closed
    WS_DESTROYED = 3    # a destroy event gave its final counts, already in closed

# Updates a vanished socket is remembered for. A dump is not a snapshot: a socket moved inside
# the kernel's hash while the dump runs can be skipped once. If it comes back within this many
# updates its folded counts are taken back out of the closed total, so it is not counted twice;
# a late destroy event for it is matched the same way.
cdef enum:
    WIRE_GRACE_UPDATES = 3
    WIRE_MAX_LISTENERS = 255
    WIRE_MAX_ERRNO = 4095            # MAX_ERRNO in linux/err.h

cdef struct WireSock:
    uint64_t cookie
    uint64_t sent
    uint64_t received
    uint8_t state
    uint8_t listener     # 1-based index into WireCounter._listeners
    uint8_t age          # updates since a WS_GRAVE socket vanished
    uint8_t carried      # set on a previous-update entry matched by the current one

# Open addressing with linear probing, keyed by the inet_diag socket cookie; a table is rebuilt
# by every update, so it never deletes.
cdef struct WireTable:
    WireSock *slots
    Py_ssize_t mask
    Py_ssize_t count


cdef class WireCounter:
    cdef WireTable _prev
    cdef WireTable _cur
    cdef uint8_t *_listener_of       # per local port: 1-based listener index, 0 if not ours
    cdef tuple _listeners
    cdef Py_ssize_t _n
    cdef uint64_t *_closed_sent
    cdef uint64_t *_closed_received
    cdef uint64_t *_live_sent
    cdef uint64_t *_live_received
    cdef uint64_t *_live_sockets
    cdef readonly str mode
    cdef dict _ports
    cdef bint _ready
    # Decoding state of one update().
    cdef uint8_t *_carry             # a message split across buffers, gathered whole
    cdef Py_ssize_t _carry_len
    cdef Py_ssize_t _carry_cap
    cdef Py_ssize_t _carry_at
    cdef Py_ssize_t _stream_at
    cdef Py_ssize_t _dones
    cdef bint _in_multi

    cdef int _feed(self, const uint8_t *data, Py_ssize_t n) except -1
    cdef int _carry_append(self, const uint8_t *data, Py_ssize_t n, Py_ssize_t at) except -1
    cdef Py_ssize_t _complete_carry(self, const uint8_t *data, Py_ssize_t n) except -1
    cdef int _finish(self) except -1
    cdef int _message(self, const uint8_t *m, uint32_t mlen, Py_ssize_t at) except -1
    cdef int _socket(self, const uint8_t *m, uint32_t mlen, Py_ssize_t at,
                     uint16_t flags) except -1
    cdef int _commit(self) except -1


# --- /jsz: a page's recorded offsets and the listing (_core/jsz_scan.pxi, jsz.pxi) --------

cdef struct JzNode:
    # One object of a page (the document, an account, a stream, a consumer): where its value
    # starts, where each of its keys' values starts (-1 when absent; the last of a repeated
    # key), and its children (streams of an account, consumers of a stream) in the next array.
    Py_ssize_t at
    Py_ssize_t off[13]     # JZ_MAX_KEYS
    Py_ssize_t first
    Py_ssize_t count

cdef struct JzNodes:
    JzNode *v
    Py_ssize_t n
    Py_ssize_t cap

cdef struct JzScan:
    JzNode doc
    JzNodes levels[3]      # accounts, streams, consumers


cdef class JszListing:
    cdef readonly str me
    cdef readonly bint clustered
    cdef readonly bint settled
    cdef bint replicated           # the stream being read has num_replicas > 1
    cdef readonly int depth
    cdef readonly bint replicas
    cdef readonly tuple stream_keys
    cdef readonly tuple consumer_keys
    cdef readonly Py_ssize_t top_k
    cdef readonly object server
    cdef readonly tuple meta_snapshot
    cdef readonly bint disabled
    cdef readonly object total
    cdef readonly bint paged
    cdef readonly object streams_held
    cdef readonly object consumers_held
    cdef readonly set accounts_seen
    cdef readonly list accounts, streams, replica_rows, durables, ephemeral, top
    cdef readonly dict account_streams, sources

    cdef bytes me_utf8
    cdef list stream_keys_utf8, consumer_keys_utf8
    cdef uint64_t top_floor        # top[0][0] once top holds top_k entries
    cdef JzScan scan
    cdef const unsigned char *b
    cdef Py_ssize_t n
    # Where the walk is, for the path an error names: indices in account_details,
    # stream_detail and consumer_detail, -1 above them.
    cdef Py_ssize_t at_account, at_stream, at_consumer
