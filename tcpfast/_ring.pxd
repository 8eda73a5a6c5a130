# cython: language_level=3
"""A bounded byte ring: a connection's send buffer and its receive buffer.

The send ring holds the bytes from SND.UNA onward (sent-but-unacknowledged, then unsent); ACKs
``ring_consume`` them. The receive ring holds in-order bytes the application has not read yet
(``used``), and, beyond them, out-of-order bytes placed with ``ring_write_at`` at their offset from
RCV.NXT (which bytes are valid there is tracked by the connection's ``seq_ranges``).

``cap`` is the bound (SO_SNDBUF / SO_RCVBUF, or what auto-tuning has grown it to); ``size`` is the
storage actually allocated, which grows (by doubling, never past ``cap``) only as bytes are placed
further from the head: an idle connection that never moved data holds none, one that moved a few
bytes holds a few KiB, and only a connection whose window really opened holds a large ring.
Growing keeps every byte at its offset from the head (out-of-order bytes beyond ``used`` too).
Storage can be given back with ``ring_release`` when the ring is empty.

Every allocation is charged to an optional ``mem_pool`` (the stack-wide limit on buffer memory,
in the spirit of Linux's ``tcp_mem``): growth the pool cannot pay for is refused, so the sum of
the rings' storage never exceeds the pool's limit whatever peers send.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

cdef enum:
    RING_MIN = 4096                # the first allocation (or cap, if smaller)

# The stack-wide account of buffer memory. Counters are updated with atomic operations (a ring may
# be freed by the garbage collector outside the engine's lock); the pool is reference-counted, as
# connection objects may outlive the engine that made it.
ctypedef struct mem_pool:
    int64_t limit                  # bytes of ring storage allowed in all (hard limit)
    int64_t allocated              # bytes of ring storage now allocated
    int64_t peak                   # the most ever allocated at once
    uint64_t refused               # growths refused at the limit
    uint64_t pressure_events       # times the pool reached its pressure mark (3/4 of the limit)
    uint8_t freed                  # storage was given back since the engine last looked
    uint8_t waiting                # a writer waits for memory (its fd shows it unwritable)
    int refs

ctypedef struct ring:
    uint8_t* data                  # NULL until first use
    mem_pool* pool                 # charged for the storage (NULL: not accounted)
    uint32_t cap                   # the bound
    uint32_t size                  # storage allocated (0 while data is NULL); size <= cap
    uint32_t head                  # index of the first byte
    uint32_t used                  # bytes from head
    uint8_t soft                   # may take from the pool only up to its pressure mark (send
                                   # rings: the last quarter is kept for receive rings, so that
                                   # data in flight can always be received, acknowledged and so
                                   # freed: no deadlock of senders holding all the memory)

# A new pool (refs = 1), NULL when out of memory; unref frees it with the last reference.
cdef mem_pool* mem_pool_new(int64_t limit) noexcept nogil
cdef void mem_pool_ref(mem_pool* p) noexcept nogil
cdef void mem_pool_unref(mem_pool* p) noexcept nogil
# Has the pool reached its pressure mark (3/4 of the limit)? (NULL: never.)
cdef bint mem_pool_pressure(const mem_pool* p) noexcept nogil
# Is it past half its limit, where connections give back the storage of rings they emptied?
cdef bint mem_pool_reclaim(const mem_pool* p) noexcept nogil
# Could ``n`` more bytes be allocated now (for a soft ring: below the pressure mark)?
cdef bint mem_pool_can(const mem_pool* p, int64_t n, bint soft) noexcept nogil

# Set the bound and forget the contents (the storage, if any, is kept; the pool is not changed).
cdef void ring_init(ring* r, uint32_t cap) noexcept nogil
# Allocate some storage if none yet (min(cap, RING_MIN)); 0 on success, -1 when refused.
cdef int ring_reserve(ring* r) noexcept nogil
# Make the storage cover offsets [0, need) from the head (need is cut to cap); 0 on success, -1
# when out of memory or refused by the pool (the ring is unchanged then).
cdef int ring_grow(ring* r, uint32_t need) noexcept nogil
# Free the storage if the ring is empty (or unconditionally with force); the capacity stays.
cdef void ring_release(ring* r, bint force) noexcept nogil
# Change the bound: growing it is always allowed (storage follows lazily); shrinking it goes
# no lower than the storage already allocated (and the bytes held): -1 when it stopped there.
cdef int ring_set_capacity(ring* r, uint32_t cap) noexcept nogil

cdef inline uint32_t ring_space(const ring* r) noexcept nogil:
    return r.cap - r.used

# Free bytes in the storage already allocated (what can be appended without allocating).
cdef inline uint32_t ring_room(const ring* r) noexcept nogil:
    return r.size - r.used if r.size > r.used else 0

# Append up to ``n`` bytes at the tail, growing the storage as needed and allowed; returns how
# many were taken (0 when full, or when no storage could be had).
cdef uint32_t ring_append(ring* r, const uint8_t* src, uint32_t n) noexcept nogil
# Copy ``n`` bytes to ``off`` bytes past the head (off + n <= cap), growing the storage to cover
# them; ``used`` is unchanged. 0 on success, -1 when the storage could not grow (nothing copied).
cdef int ring_write_at(ring* r, uint32_t off, const uint8_t* src, uint32_t n) noexcept nogil
# Copy ``n`` bytes starting ``off`` bytes past the head into ``dst`` (off + n <= size).
cdef void ring_read_at(const ring* r, uint32_t off, uint8_t* dst, uint32_t n) noexcept nogil
# Drop ``n`` bytes from the head (n <= used).
cdef void ring_consume(ring* r, uint32_t n) noexcept nogil
# Count ``n`` more bytes as used (after ring_write_at at off == used; used + n <= size).
cdef void ring_commit(ring* r, uint32_t n) noexcept nogil


# A pool as a Python object: for tests and tools (Tcb(..., mem_pool=MemPool(limit)), SimPair) and
# the engine's stats.
cdef class MemPool:
    cdef mem_pool* p


# The C ring as a Python object, for tests (a model-based test checks every byte's place).
cdef class Ring:
    cdef ring r
    cdef object pool_obj
