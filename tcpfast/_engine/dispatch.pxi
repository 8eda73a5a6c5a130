# Input and dispatch: parse a packet, hand it to its connection (or a listener, or a reset),
# then run the connections that have something due and file each one (wheel, accept queue,
# readiness, out of the table).
# Included by _engine.pyx.

cdef void mark_dirty(Engine e, void* p) noexcept nogil:
    if (<Tcb>p).eng_dirty:
        return
    (<Tcb>p).eng_dirty = 1
    (<Tcb>p).eng_dirty_next = e.dirty_head
    e.dirty_head = p


cdef void flush(Engine e, void* p, uint64_t now) noexcept nogil:
    """Send everything the connection has due, then file it: wheel, wake-ups, accept queue,
    or out of the table."""
    flush_some(e, p, now, 100000)


cdef bint flush_some(Engine e, void* p, uint64_t now, int limit) noexcept nogil:
    """Send at most ``limit`` packets; True when more may be due (the caller hands the rest
    to the engine thread)."""
    cdef size_t n
    cdef int sent = 0
    cdef bint partial = (<Tcb>p).cfg.csum_partial
    cdef bint more = False
    while True:
        if sent >= limit:
            more = True
            break
        n = (<Tcb>p).poll_transmit(e.txbuf + VNET, PKT_MAX - VNET, now)
        if n == 0:
            break
        output(e, e.txbuf, n, p, partial)
        sent += 1
    after_run(e, p, now)
    return more


cdef void after_run(Engine e, void* p, uint64_t now) noexcept nogil:
    cdef int state = (<Tcb>p).state
    # An embryonic connection that completed its handshake goes to the accept queue.
    if (<Tcb>p).eng_embryonic and state != SYN_RECEIVED and state != LISTEN and \
            state != CLOSED:
        (<Tcb>p).eng_embryonic = 0
        if (<Tcb>p).eng_listener != NULL:
            _syn_done((<Tcb>p).eng_listener)
            if (<Listener>(<Tcb>p).eng_listener).closed or \
                    (<Listener>(<Tcb>p).eng_listener).aq_count >= \
                    (<Listener>(<Tcb>p).eng_listener).aq_cap:
                # Nobody will accept it: reset it (accept queue full, listener gone).
                e.st.dropped_backlog += 1
                (<Tcb>p).user_abort(now)
                flush(e, p, now)
                return
            aq_push(e, <Listener>(<Tcb>p).eng_listener, p)
    # The socket's fd follows the connection's readiness.
    _readiness(<Tcb>p)
    # A connection that is over (or an embryonic one back in LISTEN) leaves the table.
    if state == CLOSED or (state == LISTEN and (<Tcb>p).eng_listener != NULL):
        conn_unlink(e, p)
        return
    wheel_schedule(e, p, now)


cdef void flush_dirty(Engine e, uint64_t now) noexcept nogil:
    cdef void* p
    while e.dirty_head != NULL:
        p = e.dirty_head
        e.dirty_head = (<Tcb>p).eng_dirty_next
        (<Tcb>p).eng_dirty_next = NULL
        (<Tcb>p).eng_dirty = 0
        if (<Tcb>p).eng_in_table:
            flush(e, p, now)
        if e.loop_count >= LOOP_SLOTS // 2:
            # Many connections talking to ourselves at once (timers that fire together):
            # deliver before the local queue overflows.
            drain_input(e, now)


cdef void packet_input(Engine e, uint8_t* pkt, size_t n, int flags, uint64_t now) noexcept nogil:
    cdef pkt_repr p
    cdef wire_reason r
    pcap_write(e, pkt, n)
    e.st.packets_in += 1
    e.st.bytes_in += n
    r = packet_parse(pkt, n, &p, flags)
    if r != WIRE_OK:
        e.st.malformed[<int>r] += 1     # dropped and counted, never raised
        return
    if not is_ours(e, p.ip.version, p.ip.dst):
        e.st.not_ours += 1
        return
    if p.ip.protocol == PROTO_TCP:
        tcp_input(e, &p, pkt, now)
    else:
        icmp_input(e, &p, pkt, now)


cdef void tcp_input(Engine e, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
    cdef const tcp_repr* th = &p.tcp
    e.st.tcp_segments_in += 1      # every well-formed segment, stateful or not
    cdef void* t = conn_lookup(e, p.ip.version, p.ip.dst, th.dst_port, p.ip.src, th.src_port)
    cdef void* l
    cdef int action
    if t != NULL:
        if (<Tcb>t).state == TIME_WAIT and (th.flags & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN \
                and seq_gt(th.seq, (<Tcb>t).rcv_nxt) and \
                listener_for(e, p.ip.version, p.ip.dst, th.dst_port) != NULL:
            # RFC 1122 §4.2.2.13 (and RFC 6191): a new SYN whose sequence number lies above
            # the old connection's may reopen a 4-tuple in TIME-WAIT.
            e.st.time_wait_reused += 1
            (<Tcb>t).state = CLOSED
            conn_unlink(e, t)
        else:
            action = (<Tcb>t).on_segment(p, pkt, now)
            if action == SEG_REPLY_RST:
                send_rst_for(e, p)
            if (<Tcb>t).ack_flush:
                # New SACK or D-SACK information: its ACK goes now, not merged with the
                # batch's later ones (RFC 2018 §4; the sender's RACK needs each of them).
                flush(e, t, now)
                if not (<Tcb>t).eng_in_table:
                    return                # it closed (and left the table) meanwhile
            mark_dirty(e, t)
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
            send_rst_for(e, p)     # an ACK for nothing we know (§3.10.7.2)
    elif not (th.flags & TH_RST):
        send_rst_for(e, p)
