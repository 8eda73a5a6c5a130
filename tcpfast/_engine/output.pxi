# Output: framing for the device (virtio-net header, GSO), the queue of packets to our own
# address (loopback), and the capture (pcap).
# Included by _engine.pyx.

cdef inline bint is_ours(Engine e, uint8_t version, const uint8_t* addr) noexcept nogil:
    if version == 4:
        return e.has4 and memcmp(addr, e.addr4, 4) == 0
    return e.has6 and memcmp(addr, e.addr6, 16) == 0


# The capture's format is pcap.py's (its file header, which capture_start writes; its snap length;
# its record: four native uint32s, pcap.RECORD, then the packet cut to the snap length).
cdef uint32_t PCAP_SNAPLEN = _pcap.SNAPLEN


cdef void pcap_write(Engine e, const uint8_t* pkt, size_t n) noexcept nogil:
    cdef timespec ts
    cdef uint32_t rec[4]
    if e.pcap == NULL:
        return
    clock_gettime(CLOCK_REALTIME, &ts)
    rec[0] = <uint32_t>ts.tv_sec                    # ts_sec
    rec[1] = <uint32_t>(ts.tv_nsec // 1000)         # ts_usec
    rec[2] = <uint32_t>(n if n < PCAP_SNAPLEN else PCAP_SNAPLEN)   # incl_len
    rec[3] = <uint32_t>n                            # orig_len
    fwrite(rec, 4, 4, e.pcap)
    fwrite(pkt, 1, rec[2], e.pcap)


cdef void output(Engine e, uint8_t* frame, size_t n, uint16_t smss, bint partial,
                 bint control) noexcept nogil:
    """Send one packet that sits at frame + VNET. To our own address it is queued for the input
    path; otherwise it goes to the device, with a virtio-net header in offload mode (``smss``:
    the connection's segment size, for GSO; ``partial``: the checksum is left to the device).
    ``control``: a packet of no connection (a reset, a SYN cookie, an echo reply): when it is
    queued for ourselves, nobody else is about to deliver it, so the loop is woken."""
    cdef uint8_t* pkt = frame + VNET
    cdef uint8_t version = pkt[0] >> 4
    cdef const uint8_t* dst = pkt + 16 if version == 4 else pkt + 24
    cdef size_t ihl, thl, payload
    cdef ssize_t w
    cdef uint32_t slot
    pcap_write(e, pkt, n)
    e.st.packets_out += 1
    e.st.bytes_out += n
    if is_ours(e, version, dst):
        # Delivered inside the stack: a tcpfast client can reach a tcpfast server.
        if e.loop_count >= LOOP_SLOTS or n > LOOP_PKT:
            e.st.loopback_dropped += 1
            return
        slot = (e.loop_head + e.loop_count) % LOOP_SLOTS
        memcpy(e.loopq + <size_t>slot * LOOP_PKT, pkt, n)
        # A partial checksum never met a device that would complete it: mark it valid.
        e.loop_len[slot] = <uint32_t>n | (LOOP_PARTIAL if partial else 0)
        e.loop_count += 1
        e.st.loopback_packets += 1
        if control:
            _signal(e.wake_fd)
        return
    if e.vnet_hdr:
        memset(frame, 0, VNET)
        if version == 4:
            ihl = (pkt[0] & 0x0f) * 4
        else:
            ihl = 40
        if partial:
            thl = (pkt[ihl + 12] >> 4) * 4
            frame[0] = VNET_F_NEEDS_CSUM
            store_le16(frame + 6, <uint16_t>ihl)             # csum_start
            store_le16(frame + 8, 16)                        # csum_offset (TCP checksum)
            payload = n - ihl - thl
            if smss and payload > smss:
                frame[1] = GSO_TCPV4 if version == 4 else GSO_TCPV6
                store_le16(frame + 2, <uint16_t>(ihl + thl))  # hdr_len
                store_le16(frame + 4, smss)                   # gso_size
                e.st.gso_out += 1
        w = write(e.fd, frame, n + VNET)
    else:
        w = write(e.fd, pkt, n)
    if w < 0:
        e.st.write_errors += 1


cdef void send_rst_for(Engine e, const pkt_repr* p) noexcept nogil:
    """RFC 9293 §3.10.7.1: the reset that answers a segment for no connection."""
    cdef size_t n = reset_for_segment(p, e.txbuf + VNET, PKT_MAX - VNET, 64)
    if n:
        e.st.resets_sent += 1
        output(e, e.txbuf, n, 0, False, True)


# --- the loopback queue: packets to our own address ----------------------------------------------

cdef void drain_loopback(Engine e, uint64_t now) noexcept nogil:
    """Deliver packets to our own address and send what that makes due, until quiet."""
    cdef int rounds = 0
    while (e.loop_count or e.dirty_head != NULL) and rounds < 1024:
        drain_input(e, now)
        flush_dirty(e, now)
        rounds += 1


cdef void drain_input(Engine e, uint64_t now) noexcept nogil:
    """Hand the queued packets to our own address to the input path (no flushing)."""
    cdef uint32_t slot, n
    while e.loop_count:
        slot = e.loop_head
        n = e.loop_len[slot]
        e.loop_head = (e.loop_head + 1) % LOOP_SLOTS
        e.loop_count -= 1
        # Copy out: handling it may queue more packets into the same ring.
        memcpy(e.rxbuf, e.loopq + <size_t>slot * LOOP_PKT, n & ~LOOP_PARTIAL)
        packet_input(e, e.rxbuf, n & ~LOOP_PARTIAL,
                     PARSE_SKIP_L4_CHECKSUM if n & LOOP_PARTIAL else 0, now)
