# cython: language_level=3
"""The stack's engine: one thread runs a poll loop in C with the GIL released (device fd + a wake
fd, until the next timer), reads packets in batches, demultiplexes them by 4-tuple into the
connection table, runs the connections, and writes what they emit. Application threads call in
under the same lock (connect, send, receive, close) and flush what their call made due themselves.
The code is in ``_engine.pyx`` and the files it includes from ``_engine/``, one job each.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdio cimport FILE

from tcpfast._tcb cimport Tcb, tcb_config, tcb_stats, tcb_facts, conn_meta
from tcpfast._wire cimport pkt_repr, ip_repr, WIRE_REASON_COUNT
from tcpfast._isn cimport isn_secret
from tcpfast._ring cimport mem_pool

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t*, void*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)

cdef enum:
    WHEEL_SLOTS = 4096             # 1 ms ticks: a 4 s horizon per turn of the wheel
    WHEEL_WORDS = WHEEL_SLOTS // 64  # the bitmap of non-empty slots, in 64-bit words
    BATCH = 64                     # packets read per wake-up before timers and output run
    PKT_MAX = 65536 + 64           # one packet (a GSO super-segment at most) + virtio-net header
    LOOP_SLOTS = 512               # bound of the queue of packets to our own address
    MAX_LISTENERS = 1024
    TCB_POOL = 256                 # connection objects made ahead, so a SYN needs no GIL
    TABLE_BUCKETS = 1024           # initial size of the connection table (a power of two)


ctypedef struct engine_stats:
    uint64_t packets_in
    uint64_t packets_out
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t tcp_segments_in        # well-formed TCP segments for us (to a TCB or not)
    uint64_t malformed[WIRE_REASON_COUNT]   # dropped packets, by wire_reason
    uint64_t not_ours               # addressed to an address that is not the stack's
    uint64_t resets_sent            # to segments for no connection / refused
    uint64_t dropped_no_listener
    uint64_t dropped_backlog        # accept queue full
    uint64_t syncookies_sent
    uint64_t syncookies_accepted
    uint64_t syncookies_failed
    uint64_t icmp_echo_replies
    uint64_t icmp_errors            # ICMP errors matched to a connection
    uint64_t icmp_unmatched
    uint64_t loopback_packets
    uint64_t loopback_dropped
    uint64_t write_errors
    uint64_t gso_in                 # super-segments received (offload)
    uint64_t gso_out                # super-segments sent (offload)
    uint64_t connections_opened
    uint64_t connections_closed
    uint64_t time_wait_reused       # SYN for a TIME-WAIT tuple accepted (RFC 6191 / RFC 1122)


# The connection table (_engine/table.pxi): chains of conn_meta (the struct each Tcb carries for
# the engine), by a keyed hash of the 4-tuple.
ctypedef struct conn_table:
    conn_meta** buckets
    uint32_t nbuckets               # a power of two
    uint32_t count


# The timer wheel (_engine/timers.pxi).
ctypedef struct timer_wheel:
    conn_meta* slots[WHEEL_SLOTS]
    uint64_t bits[WHEEL_WORDS]      # one bit per slot: non-empty
    uint64_t tick                   # last tick (ms) processed
    uint32_t count


@cython.final
cdef class Listener:
    cdef readonly uint8_t version
    cdef uint8_t addr[16]           # all zero: any address of the stack
    cdef readonly uint16_t port
    cdef readonly int backlog
    cdef readonly int syn_count     # embryonic connections (SYN-RECEIVED)
    cdef public int syn_max         # beyond this, SYN cookies (RFC 4987 §3.6)
    cdef conn_meta** acceptq        # established connections (the engine's references)
    cdef int aq_head
    cdef readonly int aq_count
    cdef int aq_cap
    cdef int app_fd                 # the listening socket's fd: readable while a connection waits
    cdef int peer_fd                # the other end of its socketpair (the engine's)
    cdef uint8_t rd_token
    cdef tcb_config cfg             # options the accepted connections inherit
    cdef readonly uint8_t closed
    cdef public uint8_t reuse       # SO_REUSEADDR of the listening socket: its connections inherit it
    cdef object binding             # the listening socket's Binding (None: none)


@cython.final
cdef class Binding:
    cdef readonly int family
    cdef public bint reuseaddr      # SO_REUSEADDR
    cdef public bint reuseport      # SO_REUSEPORT
    cdef readonly bint listening    # the socket listens (set by Engine.listen and unlisten)
    cdef list keys                  # the (family, port) it holds in the bind table


@cython.final
cdef class ConnFacts:
    cdef tcb_facts f
    cdef readonly bint connecting   # a connect() is in progress (the socket's SS_CONNECTING)


@cython.final
cdef class Engine:
    cdef int fd                     # the TUN device
    cdef int wake_fd                # eventfd: wakes the loop
    cdef uint8_t vnet_hdr
    cdef uint8_t tso4
    cdef uint8_t tso6
    cdef uint8_t csum_offload
    cdef readonly uint32_t mtu
    cdef uint8_t has4
    cdef uint8_t addr4[16]
    cdef uint8_t has6
    cdef uint8_t addr6[16]
    cdef pthread_mutex_t lock
    cdef conn_table table           # every connection, by 4-tuple (each holds an engine reference)
    cdef timer_wheel wheel
    cdef uint64_t planned_wake      # when the sleeping loop wakes (0: never; 1: it is awake)
    cdef uint8_t wake_needed        # a timer was set before planned_wake: signal the loop
    cdef conn_meta* dirty_head      # connections with something due (chained by dirty_next)
    cdef void* lst[MAX_LISTENERS]   # borrowed Listeners; the Python list below owns them
    cdef int nlst
    cdef list listeners
    cdef conn_meta* release_head    # out of the table, references to let go (chained by hash_next)
    cdef engine_stats st
    cdef tcb_stats closed_totals    # counters of connections already gone
    cdef FILE* pcap
    cdef uint8_t* rxbuf             # local delivery's copy of a packet
    cdef uint8_t* rx_slots          # a batch read from the device
    cdef uint32_t rx_slot_size
    cdef uint32_t rx_lens[BATCH]
    cdef uint8_t* txbuf
    cdef uint8_t* loopq             # LOOP_SLOTS packets to our own address
    cdef uint32_t* loop_len
    cdef uint32_t loop_head
    cdef uint32_t loop_count
    cdef volatile int running
    cdef isn_secret secret
    cdef isn_secret hash_key
    cdef tcb_config cfg             # options of new connections
    cdef conn_meta* pool[TCB_POOL]  # connections made ahead (the engine's references)
    cdef int pool_count
    cdef uint16_t next_port         # the port picker's last port (next_ephemeral_port)
    cdef dict bound                 # the bind table: (family, port) -> set of Binding
    cdef object bind_lock           # a threading.Lock over the bind table (its own: not the mutex)
    cdef uint64_t start_us
    cdef mem_pool* mem              # the stack-wide limit on buffer memory (every ring's storage)
    cdef uint64_t mem_refused_seen  # mem.refused when blocked writers were last looked at

    cdef void _loop(self) noexcept nogil
    cdef void _lock(self)
    cdef void _unlock(self)
    cdef void _settle(self, Tcb t) noexcept
    cdef int _user_call(self, Tcb t, int which) except? -1000
    cdef int64_t _recv(self, Tcb t, uint8_t* out, Py_ssize_t nbytes, bint peek)
