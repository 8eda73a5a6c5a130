# Listeners: the SYN queue, the accept queue, SYN cookies (RFC 4987 §3.6).
# Included by _engine.pyx.

# The MSS values a SYN cookie can carry (3 bits), as Linux's msstab.
cdef uint16_t[8] MSS_TABLE
MSS_TABLE[:] = [536, 1220, 1300, 1360, 1400, 1440, 1460, 8960]


cdef inline uint64_t now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec


cdef inline void _syn_done(void* l) noexcept nogil:
    if l != NULL:
        (<Listener>l).syn_count = (<Listener>l).syn_count - 1


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
        self.acceptq = <void**>calloc(backlog, sizeof(void*))
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


cdef void aq_push(Engine e, Listener l, void* p) noexcept nogil:
    cdef int slot = (l.aq_head + l.aq_count) % l.aq_cap
    l.acceptq[slot] = p
    l.aq_count += 1
    (<Tcb>p).eng_queued = 1
    _token_set(l.peer_fd, &l.rd_token)       # the listening socket becomes readable


cdef void* listener_for(Engine e, uint8_t version, const uint8_t* addr, uint16_t port) noexcept nogil:
    cdef int i
    cdef void* best = NULL
    cdef uint8_t zero[16]
    memset(zero, 0, 16)
    for i in range(e.nlst):
        if (<Listener>e.lst[i]).port != port or (<Listener>e.lst[i]).version != version \
                or (<Listener>e.lst[i]).closed:
            continue
        if memcmp((<Listener>e.lst[i]).addr, addr, 16) == 0:
            return e.lst[i]        # an exact address wins over the wildcard
        if memcmp((<Listener>e.lst[i]).addr, zero, 16) == 0:
            best = e.lst[i]
    return best


cdef void syn_input(Engine e, Listener l, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
    cdef void* t
    if l.aq_count >= l.aq_cap:
        # The accept queue is full: Linux drops the SYN (the peer will retry).
        e.st.dropped_backlog += 1
        return
    if l.syn_count >= l.syn_max:
        # The SYN queue is full (a SYN flood, or a burst): answer without keeping state
        # (RFC 4987 §3.6, SYN cookies).
        send_cookie(e, l, p)
        return
    t = new_tcb(e, &l.cfg)
    if t == NULL:
        send_cookie(e, l, p)
        return
    (<Tcb>t).user_listen()
    (<Tcb>t).on_segment(p, pkt, now)
    (<Tcb>t).eng_listener = <void*>l
    (<Tcb>t).eng_reuse = l.reuse
    (<Tcb>t).eng_embryonic = 1
    l.syn_count += 1
    conn_insert(e, t)
    mark_dirty(e, t)


cdef uint32_t cookie_hash(Engine e, const pkt_repr* p, uint32_t peer_isn, uint32_t counter) noexcept nogil:
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
    """<SEQ=cookie><ACK=SEG.SEQ+1><CTL=SYN,ACK> with an MSS option and nothing kept. The
    cookie (Linux's layout): 5 bits of a 64-second counter, 3 bits of MSS index, 24 bits of
    a keyed hash of the 4-tuple, the peer's ISN and the counter."""
    cdef ip_repr ip
    cdef tcp_repr t
    cdef uint32_t counter = <uint32_t>((now_s()) // COOKIE_PERIOD_S)
    cdef uint16_t peer_mss = p.tcp.mss if p.tcp.has_mss else (536 if p.ip.version == 4 else 1220)
    cdef int idx = 0, k
    cdef size_t n
    for k in range(8):
        if MSS_TABLE[k] <= peer_mss:
            idx = k
    memset(&ip, 0, sizeof(ip))
    memset(&t, 0, sizeof(t))
    ip.version = p.ip.version
    ip.ttl = 64
    ip.dont_fragment = 1
    memcpy(ip.src, p.ip.dst, 16)
    memcpy(ip.dst, p.ip.src, 16)
    t.src_port = p.tcp.dst_port
    t.dst_port = p.tcp.src_port
    t.seq = ((counter & 0x1f) << 27) | (<uint32_t>idx << 24) | \
        (cookie_hash(e, p, p.tcp.seq, counter) & 0xffffff)
    t.ack = p.tcp.seq + 1
    t.flags = TH_SYN | TH_ACK
    t.window = <uint16_t>(l.cfg.rcvbuf if l.cfg.rcvbuf < 0xffff else 0xffff)
    t.has_mss = 1
    t.mss = l.cfg.mss
    n = tcp_packet_emit(e.txbuf + VNET, PKT_MAX - VNET, &ip, &t, 0, False)
    if n:
        e.st.syncookies_sent += 1
        output(e, e.txbuf, n, NULL, False)


cdef bint cookie_input(Engine e, Listener l, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
    """An ACK for no connection: a returning SYN cookie? Checked for the current and the
    previous counter; a good one makes the connection, straight into ESTABLISHED."""
    cdef uint32_t cookie = p.tcp.ack - 1
    cdef uint32_t peer_isn = p.tcp.seq - 1
    cdef uint32_t counter = <uint32_t>(now_s() // COOKIE_PERIOD_S)
    cdef uint32_t c
    cdef int age, idx
    cdef void* t
    if e.st.syncookies_sent == 0:
        return False
    c = cookie >> 27
    age = <int>((counter - c) & 0x1f)
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
    t = new_tcb(e, &l.cfg)
    if t == NULL:
        return True
    (<Tcb>t).open_from_cookie(p, cookie, MSS_TABLE[idx], now)
    (<Tcb>t).eng_listener = <void*>l
    (<Tcb>t).eng_reuse = l.reuse
    conn_insert(e, t)
    e.st.syncookies_accepted += 1
    aq_push(e, l, t)
    (<Tcb>t).on_segment(p, pkt, now)  # any data the ACK carries
    mark_dirty(e, t)
    return True
