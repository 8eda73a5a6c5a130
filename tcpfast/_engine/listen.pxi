# Listeners: the SYN queue (embryonic connections, counted), the accept queue (established ones,
# bounded by the backlog), and SYN cookies when the SYN queue is full (RFC 4987 §3.6).
# Included by _engine.pyx.

# The MSS values a SYN cookie can carry (3 bits), as Linux's msstab.
cdef uint16_t[COOKIE_MSS_VALUES] MSS_TABLE
MSS_TABLE[:] = [536, 1220, 1300, 1360, 1400, 1440, 1460, 8960]


cdef inline uint64_t now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec


cdef class Listener:
    """A passive open on (address, port): its SYN queue and its accept queue, both bounded."""

    def __cinit__(self, int version, bytes addr, int port, int backlog, int app_fd, int peer_fd):
        if backlog < 1:
            backlog = 1
        self.version = version
        memset(self.addr, 0, 16)
        memcpy(self.addr, <const char*>addr, len(addr))
        self.port = port
        self.backlog = backlog
        self.syn_max = max(backlog, 256)
        self.aq_cap = backlog
        self.acceptq = <conn_meta**>calloc(backlog, sizeof(conn_meta*))
        if self.acceptq == NULL:
            raise MemoryError()
        self.aq_head = 0
        self.aq_count = 0
        self.app_fd = app_fd
        self.peer_fd = peer_fd
        self.rd_token = 0
        self.closed = 0

    def __dealloc__(self):
        free(self.acceptq)

    @property
    def address(self) -> bytes:
        return (<char*>self.addr)[:4 if self.version == 4 else 16]


cdef inline void syn_done(Listener l) noexcept nogil:
    """An embryonic connection left the SYN queue (established, reset or gone)."""
    l.syn_count -= 1


cdef void aq_push(Listener l, conn_meta* c) noexcept nogil:
    cdef int slot = (l.aq_head + l.aq_count) % l.aq_cap
    l.acceptq[slot] = c
    l.aq_count += 1
    c.queued = 1
    token_set(l.peer_fd, &l.rd_token)       # the listening socket becomes readable


cdef conn_meta* aq_pop(Listener l) noexcept nogil:
    """The oldest connection of the accept queue (NULL: none); its engine reference, if it has
    left the table meanwhile, goes to the caller."""
    cdef conn_meta* c
    if l.aq_count == 0:
        return NULL
    c = l.acceptq[l.aq_head]
    l.aq_head = (l.aq_head + 1) % l.aq_cap
    l.aq_count -= 1
    c.queued = 0
    return c


cdef bint embryonic_done(Engine e, Tcb t, uint64_t now) noexcept nogil:
    """An embryonic connection completed its handshake: it goes to its listener's accept queue.
    False when nobody will accept it (the queue is full, the listener gone): it is reset."""
    cdef conn_meta* c = &t.meta
    c.embryonic = 0
    if c.listener == NULL:
        return True
    syn_done(<Listener>c.listener)
    if (<Listener>c.listener).closed or \
            (<Listener>c.listener).aq_count >= (<Listener>c.listener).aq_cap:
        e.st.dropped_backlog += 1
        t.user_abort(now)
        flush(e, t, now)
        return False
    aq_push(<Listener>c.listener, c)
    return True


cdef void* listener_for(Engine e, uint8_t version, const uint8_t* addr,
                        uint16_t port) noexcept nogil:
    """The listener for a segment to (addr, port): one on that exact address, else one on the
    wildcard address, else NULL."""
    cdef int i
    cdef void* best = NULL
    cdef uint8_t zero[16]
    memset(zero, 0, 16)
    for i in range(e.nlst):
        if (<Listener>e.lst[i]).port != port or (<Listener>e.lst[i]).version != version \
                or (<Listener>e.lst[i]).closed:
            continue
        if memcmp((<Listener>e.lst[i]).addr, addr, 16) == 0:
            return e.lst[i]           # an exact address wins over the wildcard
        if memcmp((<Listener>e.lst[i]).addr, zero, 16) == 0:
            best = e.lst[i]
    return best


cdef void syn_input(Engine e, Listener l, pkt_repr* p, const uint8_t* pkt,
                    uint64_t now) noexcept nogil:
    """A SYN for a listener: a new embryonic connection in its SYN queue, or a SYN cookie."""
    cdef conn_meta* c
    if l.aq_count >= l.aq_cap:
        # The accept queue is full: Linux drops the SYN (the peer will retry).
        e.st.dropped_backlog += 1
        return
    if l.syn_count >= l.syn_max:
        # The SYN queue is full (a SYN flood, or a burst): answer without keeping state
        # (RFC 4987 §3.6, SYN cookies).
        send_cookie(e, l, p)
        return
    c = new_tcb(e, &l.cfg)
    if c == NULL:
        send_cookie(e, l, p)
        return
    (<Tcb>c.tcb).user_listen()
    (<Tcb>c.tcb).on_segment(p, pkt, now)
    c.listener = <void*>l
    c.reuse = l.reuse
    c.embryonic = 1
    l.syn_count += 1
    conn_insert(e, <Tcb>c.tcb)
    mark_dirty(e, c)


cdef uint32_t cookie_hash(Engine e, const pkt_repr* p, uint32_t peer_isn,
                          uint32_t counter) noexcept nogil:
    cdef uint8_t key[45]
    key[0] = p.ip.version
    memcpy(key + 1, p.ip.src, 16)
    memcpy(key + 17, p.ip.dst, 16)
    store16(key + 33, p.tcp.src_port)
    store16(key + 35, p.tcp.dst_port)
    memcpy(key + 37, &peer_isn, 4)
    memcpy(key + 41, &counter, 4)
    return <uint32_t>siphash24(&e.secret, key, 45)


cdef void send_cookie(Engine e, Listener l, const pkt_repr* p) noexcept nogil:
    """Answer a SYN with a SYN-ACK whose sequence number is a cookie, keeping nothing. The
    cookie (Linux's layout): 5 bits of a 64-second counter, 3 bits of MSS index, 24 bits of
    a keyed hash of the 4-tuple, the peer's ISN and the counter."""
    cdef uint32_t counter = <uint32_t>((now_s()) // COOKIE_PERIOD_S)
    cdef uint16_t peer_mss = p.tcp.mss if p.tcp.has_mss else (536 if p.ip.version == 4 else 1220)
    cdef uint32_t cookie
    cdef int idx = 0, k
    cdef size_t n
    for k in range(COOKIE_MSS_VALUES):
        if MSS_TABLE[k] <= peer_mss:
            idx = k
    cookie = ((counter & 0x1f) << 27) | (<uint32_t>idx << 24) | \
        (cookie_hash(e, p, p.tcp.seq, counter) & 0xffffff)
    n = syn_ack_for_cookie(p, cookie, &l.cfg, 64, e.txbuf + VNET, PKT_MAX - VNET)
    if n:
        e.st.syncookies_sent += 1
        output(e, e.txbuf, n, 0, False, True)


cdef bint cookie_input(Engine e, Listener l, pkt_repr* p, const uint8_t* pkt,
                       uint64_t now) noexcept nogil:
    """An ACK for no connection: a returning SYN cookie? Checked for the current and the
    previous counter; a good one makes the connection, straight into ESTABLISHED."""
    cdef uint32_t cookie = p.tcp.ack - 1
    cdef uint32_t peer_isn = p.tcp.seq - 1
    cdef uint32_t counter = <uint32_t>(now_s() // COOKIE_PERIOD_S)
    cdef uint32_t sent_counter
    cdef int age, idx
    cdef conn_meta* c
    if e.st.syncookies_sent == 0:
        return False
    sent_counter = cookie >> 27
    age = <int>((counter - sent_counter) & 0x1f)
    if age > 1:
        e.st.syncookies_failed += 1
        return False
    if (cookie_hash(e, p, peer_isn, counter - <uint32_t>age) & 0xffffff) != (cookie & 0xffffff):
        e.st.syncookies_failed += 1
        return False
    if l.aq_count >= l.aq_cap:
        e.st.dropped_backlog += 1
        return True                   # valid but no room: drop; the peer retransmits
    idx = (cookie >> 24) & 7
    c = new_tcb(e, &l.cfg)
    if c == NULL:
        return True
    (<Tcb>c.tcb).open_from_cookie(p, cookie, MSS_TABLE[idx], now)
    c.listener = <void*>l
    c.reuse = l.reuse
    conn_insert(e, <Tcb>c.tcb)
    e.st.syncookies_accepted += 1
    aq_push(l, c)
    (<Tcb>c.tcb).on_segment(p, pkt, now)  # any data the ACK carries
    mark_dirty(e, c)
    return True
