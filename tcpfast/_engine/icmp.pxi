# ICMP: echo replies, and errors that quote one of our segments (RFC 5927, RFC 1191/8201).
# Included by _engine.pyx.

cdef void icmp_input(Engine e, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
    """An ICMP or ICMPv6 message for us: an echo request is answered; an error that quotes one
    of our segments goes to its connection (RFC 9293 §3.9.2.2, RFC 5927)."""
    cdef icmp_repr* m = &p.icmp
    cdef ip_repr ip
    cdef icmp_repr reply
    cdef size_t n, ihl
    cdef conn_meta* c
    cdef int err = 0
    cdef bint hard = False
    cdef uint32_t mtu = 0
    if (p.ip.version == 4 and m.type == 8) or (p.ip.version == 6 and m.type == 128):
        # Echo request -> echo reply with the same identifier, sequence and data (RFC 792,
        # RFC 4443 §4.2).
        memset(&ip, 0, sizeof(ip))
        ip.version = p.ip.version
        ip.ttl = 64
        memcpy(ip.src, p.ip.dst, 16)
        memcpy(ip.dst, p.ip.src, 16)
        memset(&reply, 0, sizeof(reply))
        reply.type = 0 if p.ip.version == 4 else 129
        reply.ident = m.ident
        reply.seq = m.seq
        ihl = ip_header_len(&ip)
        if ihl + 8 + m.body_len > PKT_MAX - VNET:
            return
        memcpy(e.txbuf + VNET + ihl + 8, pkt + m.body_off, m.body_len)
        n = icmp_packet_emit(e.txbuf + VNET, PKT_MAX - VNET, &ip, &reply, m.body_len)
        if n:
            e.st.icmp_echo_replies += 1
            output(e, e.txbuf, n, 0, False, True)
        return
    if not (m.has_quote and m.quote_has_ports and m.quote_ip.protocol == PROTO_TCP):
        e.st.icmp_unmatched += 1
        return
    # The quoted packet is one we sent: its source is us, its destination the peer.
    c = table_lookup(e, m.quote_ip.version, m.quote_ip.src, m.quote_src_port, m.quote_ip.dst,
                     m.quote_dst_port)
    if c == NULL or not seq_between((<Tcb>c.tcb).snd_una, m.quote_seq, (<Tcb>c.tcb).snd_max):
        # RFC 5927 §4.1: an error about a sequence number we have no data in flight for is
        # not believed.
        e.st.icmp_unmatched += 1
        return
    if p.ip.version == 4:
        if m.type == 3 and m.code == 4:
            mtu = m.mtu
        elif m.type == 3:
            hard = m.code == 2 or m.code == 3
            err = ECONNREFUSED if hard else (ENETUNREACH if m.code == 0 else EHOSTUNREACH)
        else:
            err = EPROTO
    else:
        if m.type == 2:
            mtu = m.mtu
        elif m.type == 1:
            hard = m.code == 4
            err = ECONNREFUSED if hard else EHOSTUNREACH
        else:
            err = EPROTO
    e.st.icmp_errors += 1
    (<Tcb>c.tcb).on_icmp_error(err, mtu, hard)
    mark_dirty(e, c)
