# cython: language_level=3
"""Bounded byte ring buffers with storage that grows on demand, charged to a pool (see
``_ring.pxd``)."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy

cdef extern from *:
    """
    static inline int tcpf_pool_charge(int64_t* alloc, int64_t limit, int64_t n, int64_t* old_out) {
        int64_t old = __atomic_load_n(alloc, __ATOMIC_RELAXED);
        do {
            if (old + n > limit) return 0;
        } while (!__atomic_compare_exchange_n(alloc, &old, old + n, 1, __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        *old_out = old;
        return 1;
    }
    static inline int64_t tcpf_atomic_add64(int64_t* p, int64_t n) {
        return __atomic_add_fetch(p, n, __ATOMIC_RELAXED);
    }
    static inline int64_t tcpf_atomic_load64(const int64_t* p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline int tcpf_atomic_add_int(int* p, int n) {
        return __atomic_add_fetch(p, n, __ATOMIC_ACQ_REL);
    }
    """
    bint tcpf_pool_charge(int64_t* alloc, int64_t limit, int64_t n, int64_t* old_out) nogil
    int64_t tcpf_atomic_add64(int64_t* p, int64_t n) nogil
    int64_t tcpf_atomic_load64(const int64_t* p) nogil
    int tcpf_atomic_add_int(int* p, int n) nogil


# --- the pool ----------------------------------------------------------------------------------

cdef mem_pool* mem_pool_new(int64_t limit) noexcept nogil:
    cdef mem_pool* p = <mem_pool*>calloc(1, sizeof(mem_pool))
    if p != NULL:
        p.limit = limit
        p.refs = 1
    return p


cdef void mem_pool_ref(mem_pool* p) noexcept nogil:
    if p != NULL:
        tcpf_atomic_add_int(&p.refs, 1)


cdef void mem_pool_unref(mem_pool* p) noexcept nogil:
    if p != NULL and tcpf_atomic_add_int(&p.refs, -1) == 0:
        free(p)


cdef inline int64_t _mark(const mem_pool* p) noexcept nogil:
    return p.limit - p.limit // 4


cdef bint mem_pool_pressure(const mem_pool* p) noexcept nogil:
    return p != NULL and tcpf_atomic_load64(&p.allocated) >= _mark(p)


cdef bint mem_pool_reclaim(const mem_pool* p) noexcept nogil:
    return p != NULL and tcpf_atomic_load64(&p.allocated) > p.limit // 2


cdef bint mem_pool_can(const mem_pool* p, int64_t n, bint soft) noexcept nogil:
    return p == NULL or tcpf_atomic_load64(&p.allocated) + n <= (_mark(p) if soft else p.limit)


cdef bint _charge(mem_pool* p, int64_t n, bint soft) noexcept nogil:
    """Take ``n`` bytes from the pool: refused (False) if that would pass its limit (its
    pressure mark for a ``soft`` ring)."""
    cdef int64_t old = 0, new
    if p == NULL or n <= 0:
        return True
    if not tcpf_pool_charge(&p.allocated, _mark(p) if soft else p.limit, n, &old):
        p.refused += 1
        return False
    new = old + n
    if old < _mark(p) <= new:
        p.pressure_events += 1
    if new > p.peak:
        p.peak = new
    return True


cdef inline void _credit(mem_pool* p, int64_t n) noexcept nogil:
    if p != NULL and n > 0:
        tcpf_atomic_add64(&p.allocated, -n)
        p.freed = 1


# --- the ring ----------------------------------------------------------------------------------

cdef void ring_init(ring* r, uint32_t cap) noexcept nogil:
    if r.data != NULL and r.size > cap:
        ring_release(r, True)           # storage larger than the new bound: give it back
    r.cap = cap
    r.head = 0
    r.used = 0


cdef int ring_grow(ring* r, uint32_t need) noexcept nogil:
    cdef uint32_t size, old = r.size
    cdef uint8_t* data
    if need > r.cap:
        need = r.cap
    if need <= old:
        return 0
    # Double (from RING_MIN) until it covers ``need``; never past cap.
    size = old if old else RING_MIN
    while size < need and size < (<uint32_t>1 << 31):
        size *= 2
    if size > r.cap or size < need:
        size = r.cap
    if not _charge(r.pool, <int64_t>size - old, r.soft):
        # The pool cannot pay for the doubling: try exactly what is needed.
        size = need
        if not _charge(r.pool, <int64_t>size - old, r.soft):
            return -1
    data = <uint8_t*>malloc(size)
    if data == NULL:
        _credit(r.pool, <int64_t>size - old)
        return -1
    if r.data != NULL:
        # Offsets 0 .. old-1 from the head (in-order and out-of-order bytes alike) keep their
        # offsets: copy the old storage out starting at the head.
        ring_read_at(r, 0, data, old)
        free(r.data)
    r.data = data
    r.size = size
    r.head = 0
    return 0


cdef int ring_reserve(ring* r) noexcept nogil:
    if r.data == NULL and r.cap:
        return ring_grow(r, RING_MIN if RING_MIN < r.cap else r.cap)
    return 0


cdef void ring_release(ring* r, bint force) noexcept nogil:
    if r.data != NULL and (force or r.used == 0):
        free(r.data)
        _credit(r.pool, r.size)
        r.data = NULL
        r.size = 0
        r.head = 0
        if force:
            r.used = 0
    elif force:
        r.used = 0


cdef int ring_set_capacity(ring* r, uint32_t cap) noexcept nogil:
    cdef uint32_t floor = r.size if r.size > r.used else r.used
    if cap < floor:
        r.cap = floor                    # as low as the storage (and the data) allow
        return -1
    r.cap = cap
    return 0


cdef inline void _copy_in(ring* r, uint32_t pos, const uint8_t* src, uint32_t n) noexcept nogil:
    # ``pos`` is an index into the storage (< 2 * size); the copy wraps at most once.
    cdef uint32_t first
    if pos >= r.size:
        pos -= r.size
    first = r.size - pos
    if n <= first:
        memcpy(r.data + pos, src, n)
    else:
        memcpy(r.data + pos, src, first)
        memcpy(r.data, src + first, n - first)


cdef uint32_t ring_append(ring* r, const uint8_t* src, uint32_t n) noexcept nogil:
    cdef uint32_t space = r.cap - r.used
    if n > space:
        n = space
    if n == 0:
        return 0
    if r.used + n > r.size and ring_grow(r, r.used + n) != 0:
        # Not all of it: as much as the pool still allows (one RING_MIN more), then what the
        # storage holds.
        ring_grow(r, r.size + RING_MIN)
        if r.used + n > r.size:
            n = r.size - r.used if r.size > r.used else 0
        if n == 0:
            return 0
    _copy_in(r, r.head + r.used, src, n)
    r.used += n
    return n


cdef int ring_write_at(ring* r, uint32_t off, const uint8_t* src, uint32_t n) noexcept nogil:
    if n == 0:
        return 0
    if off + n > r.size and ring_grow(r, off + n) != 0:
        return -1
    if off + n > r.size:
        return -1                        # beyond the bound: refused
    _copy_in(r, r.head + off, src, n)
    return 0


cdef void ring_read_at(const ring* r, uint32_t off, uint8_t* dst, uint32_t n) noexcept nogil:
    cdef uint32_t pos, first
    if n == 0 or r.data == NULL:
        return
    pos = r.head + off
    if pos >= r.size:
        pos -= r.size
    first = r.size - pos
    if n <= first:
        memcpy(dst, r.data + pos, n)
    else:
        memcpy(dst, r.data + pos, first)
        memcpy(dst + first, r.data, n - first)


cdef void ring_consume(ring* r, uint32_t n) noexcept nogil:
    if n > r.used:
        n = r.used
    r.used -= n
    if r.size == 0:
        r.head = 0
        return
    r.head += n
    if r.head >= r.size:
        r.head -= r.size


cdef void ring_commit(ring* r, uint32_t n) noexcept nogil:
    r.used += n


cdef class MemPool:
    """MemPool(limit): a limit on the ring storage of the connections that share it (bytes).

    The engine keeps one per stack; tests give one to several ``Tcb`` objects (``mem_pool=``)."""

    def __cinit__(self, limit):
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit < (1 << 62):
            raise ValueError("limit must be a positive number of bytes")
        self.p = mem_pool_new(limit)
        if self.p == NULL:
            raise MemoryError()

    def __dealloc__(self):
        mem_pool_unref(self.p)

    @property
    def limit(self):
        return self.p.limit

    @limit.setter
    def limit(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < (1 << 62):
            raise ValueError("limit must be a positive number of bytes")
        self.p.limit = value

    @property
    def allocated(self):
        return tcpf_atomic_load64(&self.p.allocated)

    @property
    def peak(self):
        return self.p.peak

    @property
    def refused(self):
        return self.p.refused

    @property
    def pressure_events(self):
        return self.p.pressure_events

    @property
    def under_pressure(self):
        return bool(mem_pool_pressure(self.p))

    def __repr__(self):
        return (f"MemPool(limit={self.p.limit}, allocated={self.allocated}, peak={self.p.peak}, "
                f"refused={self.p.refused}, pressure_events={self.p.pressure_events})")


cdef class Ring:
    """Ring(cap, pool=None, soft=False): one ring, driven from Python (tests only)."""

    def __cinit__(self, uint32_t cap, MemPool pool=None, bint soft=False):
        ring_init(&self.r, cap)
        self.pool_obj = pool
        if pool is not None:
            self.r.pool = pool.p
        self.r.soft = soft

    def __dealloc__(self):
        ring_release(&self.r, True)       # before the pool object goes (it is still referenced)

    def append(self, const uint8_t[::1] data not None):
        return ring_append(&self.r, &data[0] if data.shape[0] else NULL, <uint32_t>data.shape[0])

    def write_at(self, uint32_t off, const uint8_t[::1] data not None):
        if off + <uint64_t>data.shape[0] > self.r.cap:
            raise ValueError("beyond the bound")
        return ring_write_at(&self.r, off, &data[0] if data.shape[0] else NULL,
                             <uint32_t>data.shape[0]) == 0

    def read_at(self, uint32_t off, uint32_t n):
        if off + <uint64_t>n > self.r.size:
            raise ValueError("beyond the storage")
        out = bytearray(n)
        cdef uint8_t[::1] o = out
        if n:
            ring_read_at(&self.r, off, &o[0], n)
        return bytes(out)

    def consume(self, uint32_t n):
        ring_consume(&self.r, n)

    def commit(self, uint32_t n):
        if self.r.used + <uint64_t>n > self.r.size:
            raise ValueError("beyond the storage")
        ring_commit(&self.r, n)

    def grow(self, uint32_t need):
        return ring_grow(&self.r, need) == 0

    def set_capacity(self, uint32_t cap):
        return ring_set_capacity(&self.r, cap) == 0

    def release(self, bint force=False):
        ring_release(&self.r, force)

    @property
    def cap(self):
        return self.r.cap

    @property
    def size(self):
        return self.r.size

    @property
    def used(self):
        return self.r.used

    @property
    def head(self):
        return self.r.head
