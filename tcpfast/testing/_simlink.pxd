# cython: language_level=3
"""Two connections over an in-memory link that delays, drops, reorders, duplicates and corrupts,
on a virtual clock. For tests (transfers that must arrive intact whatever the link does) and for
the engine benchmark (payload moved per CPU second with no Python object per segment).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from tcpfast._tcb cimport Tcb

ctypedef struct link_pkt:
    uint64_t when               # delivery time, us
    uint64_t order              # tie-break: FIFO among equal times
    uint32_t slot               # index into the packet pool
    uint32_t length
    uint8_t to_b                # 1: a -> b, 0: b -> a

ctypedef struct stream_state:   # one direction's application data
    uint64_t seed               # the stream is stream_fill(seed, position): seekable
    uint64_t total              # bytes to move
    uint64_t written            # handed to user_send
    uint64_t read               # taken by user_recv
    uint64_t mismatches         # bytes read that differ from what was written
    uint32_t chunk_used         # bytes in the reader's chunk buffer (sha256 mode)
    uint8_t shut                # the writer called shutdown after its last byte
    uint64_t next_read          # read_rate: the reader's next read, us (a slow application)
    uint8_t eof                 # the reader saw end of stream

cdef class SimPair:
    cdef readonly Tcb a
    cdef readonly Tcb b
    cdef uint8_t* pool
    cdef uint32_t slot_size
    cdef uint32_t nslots
    cdef uint32_t* free_slots
    cdef uint32_t nfree
    cdef link_pkt* heap
    cdef uint32_t heap_n
    cdef uint64_t order
    cdef readonly uint64_t now
    cdef uint64_t rng
    cdef double loss, reorder, duplicate, corrupt
    cdef uint64_t delay, jitter, rate_ns_per_byte, link_free_at
    cdef uint64_t link_free_at_ba    # duplex: the b -> a direction's own serialisation
    cdef uint8_t duplex              # each direction has its own ``rate`` (else they share it)
    cdef stream_state ab
    cdef stream_state ba
    cdef uint8_t* rbuf          # scratch for reads
    cdef uint8_t* wbuf          # scratch for writes
    cdef uint8_t* chunk_ab      # sha256 mode: bytes read, handed to Python in chunks
    cdef uint8_t* chunk_ba
    cdef uint8_t keep_chunks
    cdef uint8_t do_shutdown
    cdef uint64_t c_sent, c_delivered, c_lost, c_duplicated, c_corrupted
    cdef uint64_t c_bad_packets, c_rst_replies, c_reordered, c_steps
    cdef uint64_t read_ns_per_byte   # read_rate: the applications read this slowly (0: at once)
    cdef uint32_t max_wnd_a, max_wnd_b   # the largest window each end advertised

    cdef void _heap_push(self, link_pkt* item) noexcept nogil
    cdef void _heap_pop(self, link_pkt* out) noexcept nogil
    cdef void _enqueue(self, uint32_t slot, uint32_t length, bint to_b) noexcept nogil
    cdef bint _transmit(self, Tcb t, bint to_b) noexcept nogil
    cdef uint64_t _read_wake(self, Tcb t, stream_state* s) noexcept nogil
    cdef bint _deliver(self) noexcept nogil
    cdef bint _write(self, Tcb t, stream_state* s) noexcept nogil
    cdef int _read(self, Tcb t, stream_state* s, uint8_t* chunk) noexcept nogil
    cdef bint _done(self) noexcept nogil
    cdef int _advance(self, uint64_t deadline) noexcept nogil

cdef void stream_fill(uint64_t seed, uint64_t pos, uint8_t* out, size_t n) noexcept nogil
