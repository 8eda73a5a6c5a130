# The connection table: a chained hash of the 4-tuple, keyed so that a peer cannot choose
# collisions (the same secret-keyed SipHash as the ISNs). It holds each connection's conn_meta
# (the struct the Tcb carries for the engine), filed under the 4-tuple copied into it, so that a
# connection is found and taken out by the key it went in with. Beside it: the pool new
# connections come from, the list of those that left the table, the port picker, and the bind
# table (the local ports sockets hold, with bind() and listen()'s rules).
# Included by _engine.pyx.

cdef inline uint32_t conn_hash(const isn_secret* key, uint8_t version, const uint8_t* laddr,
                               uint16_t lport, const uint8_t* raddr,
                               uint16_t rport) noexcept nogil:
    cdef uint8_t k[37]
    k[0] = version
    memcpy(k + 1, laddr, 16)
    memcpy(k + 17, raddr, 16)
    k[33] = <uint8_t>(lport >> 8)
    k[34] = <uint8_t>lport
    k[35] = <uint8_t>(rport >> 8)
    k[36] = <uint8_t>rport
    return <uint32_t>siphash24(key, k, 37)


cdef inline conn_meta** table_bucket(Engine e, const conn_meta* c) noexcept nogil:
    """The chain a connection is filed in (by the 4-tuple in its conn_meta)."""
    return &e.table.buckets[conn_hash(&e.hash_key, c.version, c.laddr, c.lport, c.raddr,
                                      c.rport) & (e.table.nbuckets - 1)]


cdef conn_meta* table_lookup(Engine e, uint8_t version, const uint8_t* laddr, uint16_t lport,
                             const uint8_t* raddr, uint16_t rport) noexcept nogil:
    """The connection of this 4-tuple (addresses as 16 bytes, zero-padded for IPv4), or NULL."""
    cdef conn_meta* c = e.table.buckets[conn_hash(&e.hash_key, version, laddr, lport, raddr,
                                                  rport) & (e.table.nbuckets - 1)]
    while c != NULL:
        if c.lport == lport and c.rport == rport and c.version == version and \
                memcmp(c.raddr, raddr, 16) == 0 and memcmp(c.laddr, laddr, 16) == 0:
            return c
        c = c.hash_next
    return NULL


cdef void table_grow(Engine e) noexcept nogil:
    """Double the buckets (the table keeps at most one connection per bucket on average)."""
    cdef conn_table old = e.table
    cdef conn_meta** nb = <conn_meta**>calloc(old.nbuckets * 2, sizeof(conn_meta*))
    cdef conn_meta* c
    cdef conn_meta* nxt
    cdef conn_meta** b
    cdef uint32_t i
    if nb == NULL:
        return                        # keep the old table; chains just get longer
    e.table.buckets = nb
    e.table.nbuckets = old.nbuckets * 2
    for i in range(old.nbuckets):
        c = old.buckets[i]
        while c != NULL:
            nxt = c.hash_next
            b = table_bucket(e, c)
            c.hash_next = b[0]
            b[0] = c
            c = nxt
    free(old.buckets)


cdef void conn_insert(Engine e, Tcb t) noexcept nogil:
    """File a connection under its endpoints; the engine's reference to it is already taken."""
    cdef conn_meta* c = &t.meta
    cdef conn_meta** b
    if e.table.count >= e.table.nbuckets:
        table_grow(e)
    c.version = t.ip.version
    memcpy(c.laddr, t.ip.src, 16)
    memcpy(c.raddr, t.ip.dst, 16)
    c.lport = t.lport
    c.rport = t.rport
    b = table_bucket(e, c)
    c.hash_next = b[0]
    b[0] = c
    c.in_table = 1
    e.table.count += 1
    e.st.connections_opened += 1


cdef void conn_unlink(Engine e, Tcb t) noexcept nogil:
    """Take a connection out of the table and off the wheel; its engine reference is let go
    (with the GIL, later) unless it waits in an accept queue."""
    cdef conn_meta* c = &t.meta
    cdef conn_meta** pp
    if not c.in_table:
        return
    pp = table_bucket(e, c)
    while pp[0] != NULL and pp[0] != c:
        pp = &pp[0].hash_next
    if pp[0] == c:
        pp[0] = c.hash_next
    c.in_table = 0
    e.table.count -= 1
    e.st.connections_closed += 1
    wheel_remove(&e.wheel, c)
    if c.embryonic:
        c.embryonic = 0
        if c.listener != NULL:
            syn_done(<Listener>c.listener)
    add_totals(&e.closed_totals, &t.stats)
    if not c.queued:
        c.hash_next = e.release_head
        e.release_head = c


cdef inline void add_totals(tcb_stats* totals, const tcb_stats* stats) noexcept nogil:
    """Add one connection's counters to the totals of those gone (every field a uint64_t)."""
    cdef uint64_t* dst = <uint64_t*>totals
    cdef const uint64_t* src = <const uint64_t*>stats
    cdef size_t i
    for i in range(sizeof(tcb_stats) // sizeof(uint64_t)):
        dst[i] += src[i]


cdef void release_all(Engine e) noexcept with gil:
    """Let go of the engine's references to the connections that left the table."""
    cdef conn_meta* c
    cdef conn_meta* nxt
    # Take the list under the lock: the engine thread may be adding to it.
    with nogil:
        pthread_mutex_lock(&e.lock)
        c = e.release_head
        e.release_head = NULL
        pthread_mutex_unlock(&e.lock)
    while c != NULL:
        nxt = c.hash_next
        c.hash_next = NULL
        c.listener = NULL
        Py_DECREF(<object>c.tcb)
        c = nxt
    with nogil:
        pthread_mutex_lock(&e.lock)
        mem_check(e)                  # connections gone gave their buffers back
        pthread_mutex_unlock(&e.lock)


cdef inline void meta_init(Tcb t) noexcept nogil:
    """The engine's data on a connection it has just made: in no list, no socket yet."""
    memset(&t.meta, 0, sizeof(conn_meta))
    t.meta.tcb = <void*>t
    t.meta.wheel_slot = -1
    t.meta.app_fd = -1
    t.meta.peer_fd = -1


cdef conn_meta* new_tcb(Engine e, const tcb_config* cfg) noexcept nogil:
    """A new connection, with the engine's reference taken (NULL when out of memory).

    Taken from a pool of objects made ahead of time, so that a SYN needs no GIL (an application
    thread busy in Python would otherwise hold the engine up for a whole switch interval per
    SYN); the pool is refilled with the GIL between batches."""
    cdef conn_meta* c
    if e.pool_count == 0:
        refill_pool(e)
        if e.pool_count == 0:
            return NULL
    e.pool_count -= 1
    c = e.pool[e.pool_count]
    (<Tcb>c.tcb).configure(cfg)
    (<Tcb>c.tcb).set_mem_pool(e.mem)
    return c


cdef void refill_pool(Engine e) noexcept with gil:
    cdef Tcb t
    while e.pool_count < TCB_POOL:
        try:
            t = Tcb.__new__(Tcb)
        except MemoryError:
            return
        meta_init(t)
        Py_INCREF(t)
        e.pool[e.pool_count] = &t.meta
        e.pool_count += 1


# --- local ports ---------------------------------------------------------------------------------

cdef bint port_listened(Engine e, uint8_t version, uint16_t port) noexcept nogil:
    cdef int i
    for i in range(e.nlst):
        if (<Listener>e.lst[i]).port == port and (<Listener>e.lst[i]).version == version \
                and not (<Listener>e.lst[i]).closed:
            return True
    return False


cdef bint port_in_use(Engine e, uint8_t version, uint16_t port, bint reuse) noexcept nogil:
    """Would a bind to this local port conflict with a connection (in any state, TIME-WAIT
    included) or a listener? As Linux's inet_csk_bind_conflict: a connection does not conflict
    when both the new socket and the connection's socket set SO_REUSEADDR."""
    cdef uint32_t i
    cdef conn_meta* c
    for i in range(e.table.nbuckets):
        c = e.table.buckets[i]
        while c != NULL:
            if c.lport == port and c.version == version and not (reuse and c.reuse):
                return True
            c = c.hash_next
    return port_listened(e, version, port)


cdef inline uint16_t next_ephemeral_port(Engine e) noexcept nogil:
    """The port picker: the next port of the ephemeral range (Linux's ip_local_port_range),
    in turn from a random start. Its callers skip the ports their use finds taken."""
    e.next_port += 1
    if e.next_port > EPHEMERAL_HIGH or e.next_port < EPHEMERAL_LOW:
        e.next_port = EPHEMERAL_LOW
    return e.next_port


# --- the bind table: the local ports sockets hold ----------------------------------------------
# Python-level (bind() and listen() are not the per-packet path), under a lock of its own; it asks
# the connection table under the engine's mutex, never holding the mutex while it allocates.

cdef class Binding:
    """Binding(family): a socket's hold on local ports in the engine's bind table (as the owners
    of the kernel's bind buckets), with the socket options bind() and listen() weigh: the socket
    sets ``reuseaddr`` and ``reuseport``; Engine.listen and unlisten set ``listening``."""

    def __cinit__(self, int family):
        self.family = family
        self.keys = []

    def __repr__(self) -> str:
        return (f"<Binding family={self.family} ports={[port for _, port in self.keys]} "
                f"reuseaddr={self.reuseaddr} reuseport={self.reuseport} "
                f"listening={self.listening}>")


cdef int bind_port(Engine e, Binding b, int port) except -1:
    """Reserve (family, port) for the socket of ``b``; returns the port (port 0: an ephemeral
    one, from the port picker, that no socket and no connection holds).

    As Linux: a port another socket is bound to is EADDRINUSE unless both set SO_REUSEADDR and
    the other does not listen; a port still used by a connection (one in TIME-WAIT, say) is
    EADDRINUSE unless both sockets set SO_REUSEADDR."""
    cdef uint8_t version = 4 if b.family == AF_INET else 6
    cdef int tries
    cdef uint16_t candidate
    cdef bint used
    with e.bind_lock:
        if port == 0:
            for tries in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
                e._lock()
                candidate = next_ephemeral_port(e)
                used = port_in_use(e, version, candidate, False)
                e._unlock()
                if not used and not e.bound.get((b.family, candidate)):
                    port = candidate
                    break
            else:
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
        else:
            for other in e.bound.get((b.family, port), ()):
                if other is not b and not (b.reuseaddr and (<Binding>other).reuseaddr and
                                           not (<Binding>other).listening):
                    raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
            e._lock()
            used = port_in_use(e, version, <uint16_t>port, b.reuseaddr)
            e._unlock()
            if used:
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
        bind_hold(e, b, b.family, port)
    return port


cdef int bind_also(Engine e, Binding b, int family, int port) except -1:
    """A dual-stack listener holds the port for IPv4 too (as Linux with IPV6_V6ONLY off):
    EADDRINUSE when another socket holds it, unless both set SO_REUSEPORT."""
    with e.bind_lock:
        for other in e.bound.get((family, port), ()):
            if other is not b and not (b.reuseport and (<Binding>other).reuseport):
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
        bind_hold(e, b, family, port)
    return 0


cdef int listen_check(Engine e, Binding b, int port) except -1:
    """As Linux at listen(): another socket listening on the port is EADDRINUSE, whatever
    SO_REUSEADDR says (SO_REUSEPORT on both lets them share it)."""
    with e.bind_lock:
        for other in e.bound.get((b.family, port), ()):
            if other is not b and (<Binding>other).listening and \
                    not (b.reuseport and (<Binding>other).reuseport):
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
    return 0


cdef int unbind(Engine e, Binding b) except -1:
    """The socket of ``b`` is closed: the ports it held are free again."""
    with e.bind_lock:
        for key in b.keys:
            holders = e.bound.get(key)
            if holders is not None:
                holders.discard(b)
                if not holders:
                    del e.bound[key]
        b.keys = []
    return 0


cdef int bind_hold(Engine e, Binding b, int family, int port) except -1:
    key = (family, port)
    e.bound.setdefault(key, set()).add(b)
    if key not in b.keys:
        b.keys.append(key)
    return 0
