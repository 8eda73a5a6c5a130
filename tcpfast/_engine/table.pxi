# The connection table: a chained hash of the 4-tuple, keyed so that a peer cannot choose
# collisions (the same secret-keyed SipHash as the ISNs); the object pool new connections come
# from; the list of connections that left the table; the local ports in use.
# Included by _engine.pyx.

cdef uint32_t conn_hash(Engine e, uint8_t version, const uint8_t* laddr, uint16_t lport,
                    const uint8_t* raddr, uint16_t rport) noexcept nogil:
    cdef uint8_t key[37]
    key[0] = version
    memcpy(key + 1, laddr, 16)
    memcpy(key + 17, raddr, 16)
    key[33] = <uint8_t>(lport >> 8)
    key[34] = <uint8_t>lport
    key[35] = <uint8_t>(rport >> 8)
    key[36] = <uint8_t>rport
    return <uint32_t>siphash24(&e.hash_key, key, 37)


cdef void* conn_lookup(Engine e, uint8_t version, const uint8_t* laddr, uint16_t lport,
                   const uint8_t* raddr, uint16_t rport) noexcept nogil:
    cdef uint32_t h = conn_hash(e, version, laddr, lport, raddr, rport) & (e.nbuckets - 1)
    cdef void* p = e.buckets[h]
    while p != NULL:
        if (<Tcb>p).lport == lport and (<Tcb>p).rport == rport and \
                (<Tcb>p).ip.version == version and \
                memcmp((<Tcb>p).ip.dst, raddr, 16) == 0 and \
                memcmp((<Tcb>p).ip.src, laddr, 16) == 0:
            return p
        p = (<Tcb>p).eng_hash_next
    return NULL


cdef void table_grow(Engine e) noexcept nogil:
    cdef uint32_t n = e.nbuckets * 2, i, h
    cdef void** nb = <void**>calloc(n, sizeof(void*))
    cdef void* p
    cdef void* nxt
    if nb == NULL:
        return                        # keep the old table; chains just get longer
    for i in range(e.nbuckets):
        p = e.buckets[i]
        while p != NULL:
            nxt = (<Tcb>p).eng_hash_next
            h = conn_hash(e, (<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                           (<Tcb>p).ip.dst, (<Tcb>p).rport) & (n - 1)
            (<Tcb>p).eng_hash_next = nb[h]
            nb[h] = p
            p = nxt
    free(e.buckets)
    e.buckets = nb
    e.nbuckets = n


cdef void conn_insert(Engine e, void* p) noexcept nogil:
    """Put a connection into the table; the engine's reference is already taken."""
    cdef uint32_t h
    if e.nconns >= e.nbuckets:
        table_grow(e)
    h = conn_hash(e, (<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                   (<Tcb>p).ip.dst, (<Tcb>p).rport) & (e.nbuckets - 1)
    (<Tcb>p).eng_hash_next = e.buckets[h]
    e.buckets[h] = p
    (<Tcb>p).eng_in_table = 1
    e.nconns += 1
    e.st.connections_opened += 1


cdef void conn_unlink(Engine e, void* p) noexcept nogil:
    """Take a connection out of the table and off the wheel; its engine reference is let go
    (with the GIL, later) unless it waits in an accept queue."""
    cdef uint32_t h
    cdef void** pp
    cdef int i
    if not (<Tcb>p).eng_in_table:
        return
    h = conn_hash(e, (<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                   (<Tcb>p).ip.dst, (<Tcb>p).rport) & (e.nbuckets - 1)
    pp = &e.buckets[h]
    while pp[0] != NULL and pp[0] != p:
        pp = &(<Tcb>pp[0]).eng_hash_next
    if pp[0] == p:
        pp[0] = (<Tcb>p).eng_hash_next
    (<Tcb>p).eng_in_table = 0
    e.nconns -= 1
    e.st.connections_closed += 1
    wheel_remove(e, p)
    if (<Tcb>p).eng_embryonic:
        (<Tcb>p).eng_embryonic = 0
        if (<Tcb>p).eng_listener != NULL:
            _syn_done((<Tcb>p).eng_listener)
    add_totals(e, p)
    if not (<Tcb>p).eng_queued:
        (<Tcb>p).eng_hash_next = e.release_head
        e.release_head = p


cdef void add_totals(Engine e, void* p) noexcept nogil:
    cdef uint64_t* dst = <uint64_t*>&e.closed_totals
    cdef uint64_t* src = <uint64_t*>&(<Tcb>p).stats
    cdef size_t i
    for i in range(sizeof(e.closed_totals) // 8):
        dst[i] += src[i]


cdef void release_all(Engine e) noexcept with gil:
    cdef void* p
    cdef void* nxt
    # Take the list under the lock: the engine thread may be adding to it.
    with nogil:
        pthread_mutex_lock(&e.lock)
        p = e.release_head
        e.release_head = NULL
        pthread_mutex_unlock(&e.lock)
    while p != NULL:
        nxt = (<Tcb>p).eng_hash_next
        (<Tcb>p).eng_hash_next = NULL
        (<Tcb>p).eng_listener = NULL
        Py_DECREF(<object>p)
        p = nxt
    with nogil:
        pthread_mutex_lock(&e.lock)
        mem_check(e)             # connections gone gave their buffers back
        pthread_mutex_unlock(&e.lock)


cdef void* new_tcb(Engine e, const tcb_config* cfg) noexcept nogil:
    """A new connection object, with the engine's reference taken (NULL when out of memory).

    Taken from a pool of objects made ahead of time, so that a SYN needs no GIL (an
    application thread busy in Python would otherwise hold the engine up for a whole switch
    interval per SYN); the pool is refilled with the GIL between batches."""
    cdef void* p
    if e.pool_count == 0:
        refill_pool(e)
        if e.pool_count == 0:
            return NULL
    e.pool_count -= 1
    p = e.pool[e.pool_count]
    (<Tcb>p).configure(cfg)
    (<Tcb>p).set_mem_pool(e.mem)
    return p


cdef void refill_pool(Engine e) noexcept with gil:
    cdef Tcb t
    while e.pool_count < TCB_POOL:
        try:
            t = Tcb.__new__(Tcb)
        except MemoryError:
            return
        Py_INCREF(t)
        e.pool[e.pool_count] = <void*>t
        e.pool_count += 1


cdef bint port_listened(Engine e, uint8_t version, uint16_t port) noexcept nogil:
    cdef int i
    for i in range(e.nlst):
        if (<Listener>e.lst[i]).port == port and (<Listener>e.lst[i]).version == version \
                and not (<Listener>e.lst[i]).closed:
            return True
    return False
