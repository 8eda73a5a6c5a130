# Input and dispatch: parse a packet, hand it to its connection (or a listener, or a reset),
# then run the connections that have something due and file each one (the wheel, the accept
# queue, the socket's readiness, out of the table).
# Included by _engine.pyx.

cdef void packet_input(Engine e, uint8_t* pkt, size_t n, int flags, uint64_t now) noexcept nogil:
    """One IP packet from the device or the loopback queue."""
    cdef pkt_repr p
    cdef wire_reason r
    pcap_write(e, pkt, n)
    e.st.packets_in += 1
    e.st.bytes_in += n
    r = packet_parse(pkt, n, &p, flags)
    if r != WIRE_OK:
        e.st.malformed[<int>r] += 1       # dropped and counted, never raised
        return
    if not is_ours(e, p.ip.version, p.ip.dst):
        e.st.not_ours += 1
        return
    if p.ip.protocol == PROTO_TCP:
        tcp_input(e, &p, pkt, now)
    else:
        icmp_input(e, &p, pkt, now)


cdef void tcp_input(Engine e, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
    """Demultiplex a segment: to its connection by the 4-tuple, else to a listener (SYN, or the
    ACK of a SYN cookie), else a reset."""
    cdef const tcp_repr* th = &p.tcp
    cdef conn_meta* c
    cdef void* l
    e.st.tcp_segments_in += 1         # every well-formed segment, stateful or not
    c = table_lookup(e, p.ip.version, p.ip.dst, th.dst_port, p.ip.src, th.src_port)
    if c != NULL:
        if (<Tcb>c.tcb).state == TIME_WAIT and \
                listener_for(e, p.ip.version, p.ip.dst, th.dst_port) != NULL and \
                (<Tcb>c.tcb).reopen_time_wait(th):
            # A new SYN ended the TIME-WAIT (RFC 6191): the listener takes it below.
            e.st.time_wait_reused += 1
            conn_unlink(e, <Tcb>c.tcb)
        else:
            conn_segment(e, <Tcb>c.tcb, p, pkt, now)
            return
    l = listener_for(e, p.ip.version, p.ip.dst, th.dst_port)
    if l == NULL:
        # RFC 9293 §3.10.7.1: no connection, no listener: reset (never answering a reset).
        e.st.dropped_no_listener += 1
        send_rst_for(e, p)
        return
    if (th.flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN)) == TH_SYN:
        syn_input(e, <Listener>l, p, pkt, now)
    elif (th.flags & (TH_SYN | TH_ACK | TH_RST)) == TH_ACK:
        if not cookie_input(e, <Listener>l, p, pkt, now):
            send_rst_for(e, p)        # an ACK for nothing we know (§3.10.7.2)
    elif not (th.flags & TH_RST):
        send_rst_for(e, p)


cdef inline void conn_segment(Engine e, Tcb t, pkt_repr* p, const uint8_t* pkt,
                              uint64_t now) noexcept nogil:
    """A segment for a connection: run it, and leave what it makes due for the end of the
    batch (merged with what later segments make due)."""
    if t.on_segment(p, pkt, now) == SEG_REPLY_RST:
        send_rst_for(e, p)
    if t.ack_flush:
        # New SACK or D-SACK information: its ACK goes now, not merged with the batch's later
        # ones (RFC 2018 §4; the sender's RACK needs each of them).
        flush(e, t, now)
        if not t.meta.in_table:
            return                    # it closed (and left the table) meanwhile
    mark_dirty(e, &t.meta)


cdef inline void mark_dirty(Engine e, conn_meta* c) noexcept nogil:
    """Put a connection on the list of those with something due (once)."""
    if c.dirty:
        return
    c.dirty = 1
    c.dirty_next = e.dirty_head
    e.dirty_head = c


cdef void flush_dirty(Engine e, uint64_t now) noexcept nogil:
    """Run every connection on the list of those with something due."""
    cdef conn_meta* c
    while e.dirty_head != NULL:
        c = e.dirty_head
        e.dirty_head = c.dirty_next
        c.dirty_next = NULL
        c.dirty = 0
        if c.in_table:
            flush(e, <Tcb>c.tcb, now)
        if e.loop_count >= LOOP_SLOTS // 2:
            # Many connections talking to ourselves at once (timers that fire together):
            # deliver before the local queue overflows.
            drain_input(e, now)


cdef inline void flush(Engine e, Tcb t, uint64_t now) noexcept nogil:
    """Send everything the connection has due, then file it: wheel, wake-ups, accept queue,
    or out of the table."""
    flush_some(e, t, now, FLUSH_ALL)


cdef bint flush_some(Engine e, Tcb t, uint64_t now, int limit) noexcept nogil:
    """Send at most ``limit`` packets; True when more may be due (the caller hands the rest
    to the engine thread)."""
    cdef size_t n
    cdef int sent = 0
    cdef bint partial = t.cfg.csum_partial
    cdef bint more = False
    while True:
        if sent >= limit:
            more = True
            break
        n = t.poll_transmit(e.txbuf + VNET, PKT_MAX - VNET, now)
        if n == 0:
            break
        output(e, e.txbuf, n, t.smss, partial, False)
        sent += 1
    after_run(e, t, now)
    return more


cdef void after_run(Engine e, Tcb t, uint64_t now) noexcept nogil:
    """File a connection after it ran: the accept queue once its handshake is done, the
    socket's readiness, the wheel at its next timer, or out of the table once it is over."""
    if t.meta.embryonic and t.state != SYN_RECEIVED and t.state != LISTEN and \
            t.state != CLOSED:
        if not embryonic_done(e, t, now):
            return                    # nobody will accept it: reset and filed meanwhile
    # The socket's fd follows the connection's readiness.
    readiness(t)
    # A connection that is over (or an embryonic one back in LISTEN) leaves the table.
    if t.state == CLOSED or (t.state == LISTEN and t.meta.listener != NULL):
        conn_unlink(e, t)
        return
    conn_schedule(e, t, now)
