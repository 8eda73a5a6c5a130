# cython: language_level=3
"""The TCP connection state machine (RFC 9293 §3.10), sans-I/O. See ``_tcb.pxd``.

Segment arrival follows RFC 9293 §3.10.7 step by step; each step is marked with the RFC's words
("first check sequence number", ...). The RFC 5961 rules against blind in-window attacks, RFC 7323
(window scale, timestamps, PAWS), RFC 6298 (RTO), RFC 5681/6582/6675 (fast retransmit, NewReno,
SACK recovery), RFC 8985 (RACK-TLP loss detection, with RFC 6937 PRR, RFC 5682 F-RTO, RFC 2883
D-SACK and the RFC 3522/4015/3708 undo of spurious reductions) and RFC 1122/9293 sending policy (Nagle, SWS avoidance, delayed ACK, zero-window
probing, keep-alive) are woven in where the RFC places them.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.string cimport memset, memcpy
from libc.errno cimport (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ENOTCONN, EAGAIN, EISCONN,
                         EINVAL, ENOMEM)
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from tcpfast._seq cimport (seq_lt, seq_le, seq_gt, seq_ge, seq_in_window, seq_between, seq_max,
                           seq_min)
from tcpfast._wire cimport (ip_repr, tcp_repr, pkt_repr, wire_reason, WIRE_OK, packet_parse,
                            tcp_packet_emit, tcp_header_len, ip_header_len, TH_FIN, TH_SYN,
                            TH_RST, TH_PSH, TH_ACK, PROTO_TCP, IPV4_HEADER_LEN, IPV6_HEADER_LEN)
from tcpfast._ring cimport (ring, ring_init, ring_release, ring_append, ring_write_at,
                            ring_read_at, ring_consume, ring_commit, ring_space, ring_reserve,
                            ring_set_capacity, ring_grow, ring_room, mem_pool, mem_pool_ref,
                            mem_pool_unref, mem_pool_pressure, mem_pool_can, mem_pool_reclaim,
                            MemPool, RING_MIN)
from tcpfast._ranges cimport (ranges_clear, ranges_release, ranges_add, ranges_trim_below,
                              ranges_pop_at, ranges_covers, ranges_sack_blocks, ranges_highest)
from tcpfast._rtx cimport (rtt_init, rtt_sample, rtt_current_rto, rtt_backoff, rtt_reset_backoff,
                           DUPTHRESH, RTO_INITIAL_US, RTO_MIN_US, RTO_MAX_US)
from tcpfast._cc cimport (cc_init, cc_set_smss, cc_on_ack, cc_on_congestion, cc_on_rto,
                          cc_on_recovery_exit, cc_on_idle_restart, CC_NEWRENO, CC_CUBIC,
                          prr_init, prr_sndcnt, prr_on_send)
from tcpfast._rack cimport (tx_seg, txq_init, txq_release, txq_at, txq_room, txq_sent,
                            txq_retransmitted, txq_next_lost, txq_mark_lost, txq_mark_all_lost,
                            txq_clear_lost, txq_pipe, txq_cum_ack,
                            txq_sack, rack_init, rack_rtt_sample, rack_update_reo_wnd,
                            rack_detect_loss, rack_recovery_done, rack_mark_losses_on_rto,
                            txq_as_list,
                            TXS_TLP)
from tcpfast._isn cimport isn_generate, siphash24

import ipaddress
import os

cdef enum:
    DEFAULT_MSS_V4 = 536        # RFC 9293 §3.7.1: assumed when the peer sends no MSS option
    DEFAULT_MSS_V6 = 1220
    TS_OPTION_LEN = 12          # NOP NOP TS, the space timestamps take in every segment
    MAX_WSCALE = 14             # RFC 7323 §2.3
    # RFC 8985 §7.2 TLP.max_ack_delay, added to the PTO when one segment is in flight: the peer's
    # worst-case delayed-ACK time (Linux's TCP_DELACK_MAX, 200 ms, is what Linux adds there).
    TLP_MAX_ACK_DELAY_US = 200000
    # Added to every PTO, as Linux's TCP_TIMEOUT_MIN (2 ms): a receiver that ACKs every second
    # segment holds the ACK of an odd last one, and a PTO of 2*SRTT alone on a path of tens of
    # microseconds would probe before that ACK could come.
    TLP_MIN_US = 2000
    # Why a segment is sent again (which counter it goes to)
    RXT_RACK = 0
    RXT_RTO = 1
    RXT_TLP = 2
    # After a sign of loss (out-of-order data, a filled hole, a duplicate) the next in-order
    # segments are ACKed at once rather than after the delayed-ACK time, as Linux's quick-ACK
    # mode (TCP_MAX_QUICKACKS): the sender is recovering, and a tail loss probe or the last
    # retransmission of its episode must not wait 40 ms for its ACK.
    QUICKACKS = 16


# RFC 7323 §5.5: 24 days. A 64-bit constant: as a C enum (an int) it overflowed, and the idle
# exemption from PAWS never applied.
cdef uint64_t PAWS_IDLE_US = 24ULL * 24 * 3600 * 1000000


cdef void tcb_config_default(tcb_config* cfg) noexcept nogil:
    memset(cfg, 0, sizeof(tcb_config))
    cfg.sndbuf = 256 * 1024
    cfg.rcvbuf = 256 * 1024
    cfg.sndbuf_max = SNDBUF_MAX
    cfg.rcvbuf_max = RCVBUF_MAX
    cfg.mss = 1460
    cfg.nodelay = 0
    cfg.wscale_ok = 1
    cfg.timestamps_ok = 1
    cfg.sack_ok = 1
    cfg.cc = CC_CUBIC
    cfg.msl = 30 * 1000000           # 2*MSL = 60 s, as Linux's TCP_TIMEWAIT_LEN
    cfg.rto_initial = RTO_INITIAL_US
    cfg.rto_min = RTO_MIN_US
    cfg.rto_max = RTO_MAX_US
    cfg.syn_retries = 6              # Linux tcp_syn_retries
    cfg.retries = 15                 # Linux tcp_retries2
    cfg.user_timeout = 0
    cfg.delack = 40000               # 40 ms, Linux's TCP_DELACK_MIN
    cfg.keepalive = 0
    cfg.keepidle = 7200 * 1000000    # RFC 1122 §4.2.3.6: no less than two hours by default
    cfg.keepintvl = 75 * 1000000
    cfg.keepcnt = 9
    cfg.fin_timeout = 60 * 1000000
    cfg.challenge_ack_limit = 1000   # Linux tcp_challenge_ack_limit
    cfg.ttl = 64


# Buffer auto-tuning (issue 10)
cdef enum:
    SNDBUF_MAX = 4 << 20        # send auto-tuning ceiling, as Linux's tcp_wmem[2]
    RCVBUF_MAX = 6 << 20        # receive auto-tuning ceiling, as Linux's tcp_rmem[2]
    RCV_PRESSURE_MIN = 16384    # under memory pressure a receiver still offers this much
    INIT_CWND_SEGS = 10         # TCP_INIT_CWND: the first estimate of what a round trip brings


cdef inline uint64_t _min_timer(uint64_t a, uint64_t b) noexcept nogil:
    if a == 0:
        return b
    if b == 0:
        return a
    return a if a < b else b


cdef inline void _release_buffers(Tcb t) noexcept nogil:
    """Give both rings' storage back to the pool they are charged to, and drop the connection's
    reference to the pool (the last reference frees it)."""
    cdef mem_pool* pool = t.sndbuf.pool
    ring_release(&t.sndbuf, True)
    ring_release(&t.rcvbuf, True)
    t.sndbuf.pool = t.rcvbuf.pool = NULL
    mem_pool_unref(pool)


cdef inline void _reply_headers(const pkt_repr* p, uint8_t ttl, ip_repr* ip,
                                tcp_repr* t) noexcept nogil:
    """The IP and TCP headers of a stateless answer to ``p`` (a reset, a cookie's SYN-ACK):
    zeroed, addresses and ports swapped; the caller sets the numbers and flags."""
    memset(ip, 0, sizeof(ip_repr))
    memset(t, 0, sizeof(tcp_repr))
    ip.version = p.ip.version
    ip.ttl = ttl
    ip.dont_fragment = 1
    memcpy(ip.src, p.ip.dst, 16)
    memcpy(ip.dst, p.ip.src, 16)
    t.src_port = p.tcp.dst_port
    t.dst_port = p.tcp.src_port


cdef size_t reset_for_segment(const pkt_repr* p, uint8_t* buf, size_t cap, uint8_t ttl) noexcept nogil:
    """RFC 9293 §3.10.7.1: "If the ACK bit is off, sequence number zero is used,
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>".
    An incoming RST is never answered."""
    cdef ip_repr ip
    cdef tcp_repr t
    cdef uint32_t seg_len
    cdef const tcp_repr* th = &p.tcp
    if th.flags & TH_RST:
        return 0
    _reply_headers(p, ttl, &ip, &t)
    if th.flags & TH_ACK:
        t.seq = th.ack
        t.flags = TH_RST
    else:
        seg_len = p.payload_len + (1 if th.flags & TH_SYN else 0) + (1 if th.flags & TH_FIN else 0)
        t.seq = 0
        t.ack = th.seq + seg_len
        t.flags = TH_RST | TH_ACK
    return tcp_packet_emit(buf, cap, &ip, &t, 0, False)


cdef size_t syn_ack_for_cookie(const pkt_repr* p, uint32_t cookie, const tcb_config* cfg,
                               uint8_t ttl, uint8_t* buf, size_t cap) noexcept nogil:
    """RFC 4987 §3.6: the SYN-ACK that answers a SYN with a cookie as its sequence number and
    keeps no state, <SEQ=cookie><ACK=SEG.SEQ+1><CTL=SYN,ACK>: the window of ``cfg`` (never
    scaled in a SYN, RFC 7323 §2.2) and its MSS, and no other option, as a cookie cannot keep
    them (open_from_cookie then turns them off). Writes an IP packet into buf; returns its
    length."""
    cdef ip_repr ip
    cdef tcp_repr t
    _reply_headers(p, ttl, &ip, &t)
    t.seq = cookie
    t.ack = p.tcp.seq + 1
    t.flags = TH_SYN | TH_ACK
    t.window = <uint16_t>(cfg.rcvbuf if cfg.rcvbuf < 0xffff else 0xffff)
    t.has_mss = 1
    t.mss = cfg.mss
    return tcp_packet_emit(buf, cap, &ip, &t, 0, False)


cdef class Tcb:
    """Tcb(local, remote=None, **options): one TCP connection, driven by segments and time.

    The Python methods below exist for tests and tools (segments as bytes, times in seconds as
    floats or microseconds as ints); the engine uses the C-level API of ``_tcb.pxd``.
    """

    def __cinit__(self):
        tcb_config_default(&self.cfg)
        # The state starts CLOSED (0): the object's memory is zeroed.
        memset(&self.ip, 0, sizeof(ip_repr))
        memset(&self.stats, 0, sizeof(tcb_stats))
        ring_init(&self.sndbuf, self.cfg.sndbuf)
        ring_init(&self.rcvbuf, self.cfg.rcvbuf)
        ranges_clear(&self.ooo)
        rtt_init(&self.rtt, self.cfg.rto_initial, self.cfg.rto_min, self.cfg.rto_max)
        txq_init(&self.txq)
        self._py_out = None                 # made on first use by the Python-level receive()

    def __dealloc__(self):
        _release_buffers(self)            # storage back to the stack's pool, then the pool
        txq_release(&self.txq)
        ranges_release(&self.ooo)

    # =========================================================================================
    # Set-up
    # =========================================================================================

    cdef void configure(self, const tcb_config* cfg) noexcept nogil:
        """Take a whole configuration (before the connection opens)."""
        if cfg != &self.cfg:
            self.cfg = cfg[0]
        rtt_init(&self.rtt, self.cfg.rto_initial, self.cfg.rto_min, self.cfg.rto_max)
        ring_init(&self.sndbuf, self.cfg.sndbuf)
        ring_init(&self.rcvbuf, self.cfg.rcvbuf)

    cdef void reconfigure(self) noexcept nogil:
        """The configuration changed on an open connection (socket options): apply what can
        change now. Buffer sizes change while their storage is not allocated yet, as on Linux
        (which takes SO_SNDBUF/SO_RCVBUF before connect/listen to size the window)."""
        cdef uint32_t cwnd, ssthresh
        ring_set_capacity(&self.sndbuf, self.cfg.sndbuf)
        self._size_rcvbuf()
        if self.cfg.cc != self.cc.algo and self.smss:
            # TCP_CONGESTION on an open connection: the new algorithm takes over the window.
            cwnd, ssthresh = self.cc.cwnd, self.cc.ssthresh
            cc_init(&self.cc, self.cfg.cc, self.smss)
            self.cc.cwnd, self.cc.ssthresh = cwnd, ssthresh
        self.rtt.rto_min = self.cfg.rto_min
        self.rtt.rto_max = self.cfg.rto_max
        if self.cfg.keepalive and self.t_keepalive == 0 and \
                (self.state == ESTABLISHED or self.state == CLOSE_WAIT):
            self.t_keepalive = self.last_rcv_time + self.cfg.keepidle
        elif not self.cfg.keepalive:
            self.t_keepalive = 0
            self.keepalive_sent = 0
        elif self.t_keepalive:
            self.t_keepalive = self.last_rcv_time + self.cfg.keepidle

    cdef void set_endpoints(self, const ip_repr* ip, uint16_t lport, uint16_t rport) noexcept nogil:
        memcpy(&self.ip, ip, sizeof(ip_repr))
        self.ip.ttl = self.cfg.ttl
        self.ip.dont_fragment = 1
        self.lport = lport
        self.rport = rport

    cdef void _init_sequence(self, uint64_t now) noexcept nogil:
        """Choose the ISS (RFC 9293 §3.4.1, RFC 6528) and the timestamp offset (RFC 7323 §5.4)."""
        cdef size_t alen = 4 if self.ip.version == 4 else 16
        if self.iss_fixed:
            self.iss = self.iss_value           # tests: a chosen ISS (e.g. just below 2**32)
        else:
            self.iss = isn_generate(&self.cfg.secret, self.ip.src, self.lport, self.ip.dst,
                                    self.rport, alen, now)
        self.ts_offset = <uint32_t>siphash24(&self.cfg.secret, <const uint8_t*>&self.iss, 4)
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_max = self.iss
        self.buf_seq = self.iss + 1
        self.recover = self.iss
        self.rcv_wscale = 0
        if self.cfg.wscale_ok:
            # The smallest shift that lets the whole receive buffer be offered (RFC 7323 §2.3):
            # the buffer as large as auto-tuning may grow it, as Linux chooses the shift from
            # tcp_rmem[2] (tcp_select_initial_window), since the shift is fixed at SYN time.
            while self.rcv_wscale < MAX_WSCALE and \
                    (self._rcvbuf_ceiling() >> self.rcv_wscale) > 0xffff:
                self.rcv_wscale += 1
        self.peer_mss = DEFAULT_MSS_V4 if self.ip.version == 4 else DEFAULT_MSS_V6
        self.smss = self.peer_mss if self.peer_mss < self.cfg.mss else self.cfg.mss
        cc_init(&self.cc, self.cfg.cc, self.smss)
        txq_release(&self.txq)
        rack_init(&self.rack, self.iss)
        ring_set_capacity(&self.sndbuf, self.cfg.sndbuf)
        self._size_rcvbuf()

    cdef void _size_rcvbuf(self) noexcept nogil:
        """The receive ring holds RCV.BUFF plus 2**wscale - 1 bytes: the window field counts in
        units of 2**wscale and is rounded up rather than let the right edge shrink (RFC 7323
        §2.4), so the peer may send up to that much past RCV.BUFF; it must still fit."""
        ring_set_capacity(&self.rcvbuf, self.cfg.rcvbuf + self._rcv_slack())

    cdef inline uint32_t _rcv_slack(self) noexcept nogil:
        return ((<uint32_t>1 << self.rcv_wscale) - 1) if self.rcv_wscale else 0

    cdef inline uint32_t _rcv_space(self) noexcept nogil:
        """Free receive-buffer space to offer: the ring's free space less the rounding slack.
        When SO_RCVBUF lowered RCV.BUFF below a ring that auto-tuning had already grown (its
        storage cannot shrink under data), offer only what the new size leaves."""
        cdef uint32_t space = ring_space(&self.rcvbuf), slack = self._rcv_slack()
        cdef uint32_t bound = self.cfg.rcvbuf + slack
        if bound < self.rcvbuf.cap:
            space = bound - self.rcvbuf.used if bound > self.rcvbuf.used else 0
        return space - slack if space > slack else 0

    cdef void _endpoints_from(self, const pkt_repr* p) noexcept nogil:
        """Take the peer's address and port from its segment (a passive open binds to it)."""
        memset(&self.ip, 0, sizeof(ip_repr))
        self.ip.version = p.ip.version
        memcpy(self.ip.src, p.ip.dst, 16)
        memcpy(self.ip.dst, p.ip.src, 16)
        self.ip.ttl = self.cfg.ttl
        self.ip.dont_fragment = 1
        self.lport = p.tcp.dst_port
        self.rport = p.tcp.src_port

    cdef void _negotiate(self, const tcp_repr* th) noexcept nogil:
        """Options of the peer's SYN (RFC 9293 §3.7.1 MSS, RFC 7323 §1.3/§2.2/§3.2, RFC 2018 §2):
        each one is in use only when both sides offered it."""
        cdef uint32_t mss
        if th.has_mss:
            self.peer_mss = th.mss if th.mss >= 88 else 88     # refuse absurdly small MSS values
        self.ws_ok = self.cfg.wscale_ok and th.has_wscale
        if self.ws_ok:
            self.snd_wscale = th.wscale if th.wscale <= MAX_WSCALE else MAX_WSCALE
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
            self._size_rcvbuf()
        self.ts_ok = self.cfg.timestamps_ok and th.has_timestamps
        if self.ts_ok:
            self.ts_recent = th.tsval
        self.sack_ok = self.cfg.sack_ok and th.sack_permitted
        # Eff.snd.MSS (RFC 9293 §3.7.1): the smaller MSS, less the options every segment carries.
        mss = self.peer_mss if self.peer_mss < self.cfg.mss else self.cfg.mss
        if self.ts_ok:
            mss -= TS_OPTION_LEN
        self.smss = <uint16_t>mss
        cc_set_smss(&self.cc, self.smss)

    # =========================================================================================
    # User calls (RFC 9293 §3.10.1-3.10.6)
    # =========================================================================================

    cdef int user_open(self, uint64_t now) noexcept nogil:
        """Active OPEN: choose the ISS, send <SEQ=ISS><CTL=SYN>, enter SYN-SENT."""
        if self.state != CLOSED:
            return -EISCONN
        self._init_sequence(now)
        self.set_state(SYN_SENT)
        self.syn_pending = 1
        return 0

    cdef int open_from_cookie(self, const pkt_repr* p, uint32_t iss, uint16_t mss,
                              uint64_t now) noexcept nogil:
        """A SYN cookie came back (RFC 4987 §3.6): the ACK of a SYN-ACK we sent without keeping
        state. Enter ESTABLISHED directly with what the cookie encoded (ISS, the peer's MSS);
        window scaling, timestamps and SACK were not kept, so they are off. The caller then hands
        the same segment to on_segment for any data it carries."""
        cdef const tcp_repr* th = &p.tcp
        self._endpoints_from(p)
        self.passive = 1
        self.cfg.wscale_ok = 0
        self.cfg.timestamps_ok = 0
        self.cfg.sack_ok = 0
        self.iss_fixed = 1
        self.iss_value = iss
        self._init_sequence(now)
        self.irs = th.seq - 1
        self.rcv_nxt = th.seq
        self.rcv_adv = self.rcv_nxt + (self.cfg.rcvbuf if self.cfg.rcvbuf < 0xffff else 0xffff)
        self.peer_mss = mss
        self.smss = mss if mss < self.cfg.mss else self.cfg.mss
        cc_set_smss(&self.cc, self.smss)
        self.snd_una = self.snd_nxt = self.snd_max = iss + 1
        self.snd_wnd = th.window
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = th.seq
        self.snd_wl2 = th.ack
        self.set_state(ESTABLISHED)
        self.last_rcv_time = now
        if self.cfg.keepalive:
            self.t_keepalive = now + self.cfg.keepidle
        return 0

    cdef void on_icmp_error(self, int err, uint32_t mtu, bint hard) noexcept nogil:
        """An ICMP error quoting one of our segments (RFC 9293 §3.9.2.2, RFC 1122 §4.2.3.9).
        Packet too big / fragmentation needed lowers the segment size (RFC 1191 §6, RFC 8201
        §4); other errors are soft: remembered and reported if the connection then times out,
        except that a hard error in SYN-SENT ends the attempt (as Linux does for port
        unreachable)."""
        cdef uint32_t hdrs, mss
        if mtu:
            hdrs = (20 if self.ip.version == 4 else 40) + 20 + (TS_OPTION_LEN if self.ts_ok else 0)
            if (self.ip.version == 4 and mtu < 552) or (self.ip.version == 6 and mtu < 1280):
                return                    # below the minimum (Linux min_pmtu; RFC 8201 §4)
            mss = mtu - hdrs
            if mss < self.smss:
                self.smss = <uint16_t>mss
                cc_set_smss(&self.cc, self.smss)
                # Resend what no longer fits at the new size, at once (RFC 1191 §6.2).
                if seq_lt(self.snd_una, self.snd_max):
                    if self.sack_ok:
                        # Every record in flight is lost; retransmission cuts them to the new
                        # size (txq_next_lost clips, txq_retransmitted splits).
                        txq_mark_all_lost(&self.txq)
                    else:
                        self.snd_nxt = self.snd_una
            return
        self.soft_error = err
        if hard and self.state == SYN_SENT:
            self._enter_closed(err)

    cdef int user_listen(self) noexcept nogil:
        """Passive OPEN: enter LISTEN."""
        if self.state != CLOSED:
            return -EISCONN
        self.set_state(LISTEN)
        self.passive = 1
        return 0

    cdef uint32_t send_space(self) noexcept nogil:
        """Bytes user_send would take now: the free space below the bound, or, when the stack's
        buffer memory is exhausted, only the room in the storage this connection already has."""
        cdef uint32_t space = ring_space(&self.sndbuf), room = ring_room(&self.sndbuf)
        if space > room and not mem_pool_can(self.sndbuf.pool, RING_MIN, True):
            return room                   # send rings do not grow past the pressure mark
        return space

    cdef void set_mem_pool(self, mem_pool* pool) noexcept nogil:
        """Charge this connection's buffers to ``pool`` (the stack-wide limit). Before first use:
        storage already allocated stays charged where it was."""
        cdef mem_pool* old = self.sndbuf.pool
        if pool == old or self.sndbuf.data != NULL or self.rcvbuf.data != NULL:
            return
        mem_pool_ref(pool)
        self.sndbuf.pool = self.rcvbuf.pool = pool
        self.sndbuf.soft = 1              # see _ring.pxd: the pool's last quarter is for receiving
        mem_pool_unref(old)

    cdef uint32_t recv_available(self) noexcept nogil:
        return self.rcvbuf.used

    cdef int64_t user_send(self, const uint8_t* data, size_t n, uint64_t now) noexcept nogil:
        """SEND (RFC 9293 §3.10.2): queue data; returns bytes taken, -EAGAIN when full."""
        cdef uint32_t took
        if self.state == ESTABLISHED or self.state == CLOSE_WAIT or \
                self.state == SYN_SENT or self.state == SYN_RECEIVED:
            if self.fin_queued:
                return -EPIPE
            if n > 0x7fffffff:
                n = 0x7fffffff
            if n == 0:
                return 0
            if ring_space(&self.sndbuf) == 0:
                self.snd_full = 1          # auto-tuning: the application wants a larger buffer
                return -EAGAIN
            # RFC 5681 §4.1: after an idle period longer than an RTO, restart from the
            # restart window rather than bursting a stale cwnd.
            if self.snd_una == self.snd_max and self.last_snd_time and \
                    now - self.last_snd_time > rtt_current_rto(&self.rtt):
                cc_on_idle_restart(&self.cc, now)
            # The storage grows as the data needs it, as far as the stack's memory limit allows.
            took = ring_append(&self.sndbuf, data, <uint32_t>n)
            if took == 0:
                # The stack's buffer memory is exhausted (and this connection has no room of its
                # own): wait, as Linux's sk_stream_wait_memory, until memory is given back.
                return -EAGAIN
            if ring_space(&self.sndbuf) == 0:
                self.snd_full = 1
            return took
        if self.error:
            return -self.error
        if self.state == LISTEN:
            return -ENOTCONN
        if self.state == CLOSED:
            return -ENOTCONN if not self.fin_queued else -EPIPE
        return -EPIPE                    # FIN-WAIT-*, CLOSING, LAST-ACK, TIME-WAIT: we shut down

    cdef int64_t user_recv(self, uint8_t* out, size_t n, bint peek, uint64_t now) noexcept nogil:
        """RECEIVE (RFC 9293 §3.10.3): bytes copied; 0 at end of stream; -EAGAIN when none yet."""
        cdef uint32_t k = self.rcvbuf.used
        if k:
            if n < k:
                k = <uint32_t>n
            ring_read_at(&self.rcvbuf, 0, out, k)
            if not peek:
                ring_consume(&self.rcvbuf, k)
                self._after_read(now)
            return k
        if self.rcv_fin:
            return 0
        if self.error:
            return -self.error
        if self.state == LISTEN or (self.state == CLOSED and not self.synced):
            return -ENOTCONN
        if self.state == CLOSED:
            return 0
        return -EAGAIN

    cdef void _after_read(self, uint64_t now) noexcept nogil:
        """The application made room: advertise it when the right edge can move by at least
        min(RCV.BUFF/2, Eff.snd.MSS) (receiver SWS avoidance, RFC 9293 §3.8.6.2.2)."""
        cdef uint32_t space, limit, gain
        self._rcv_space_adjust(now)
        space = self._rcv_space()
        limit = self.cfg.rcvbuf // 2
        if self.rcvbuf.used == 0 and self.ooo.count == 0 and \
                (self.rcv_fin or mem_pool_reclaim(self.rcvbuf.pool)):
            # Give an emptied ring's storage back: for good after the peer's FIN, or while the
            # stack's buffer memory runs short (as Linux's sk_mem_reclaim).
            ring_release(&self.rcvbuf, False)
        if self.state != ESTABLISHED and self.state != FIN_WAIT_1 and self.state != FIN_WAIT_2:
            return
        if limit > self.cfg.mss:
            limit = self.cfg.mss
        if seq_gt(self.rcv_nxt + space, self.rcv_adv):
            gain = (self.rcv_nxt + space) - self.rcv_adv
            if gain >= limit and (self.rcv_adv - self.rcv_nxt) < 2 * <uint32_t>self.cfg.mss + limit:
                # The peer may be stalled on a small window: tell it now (window update).
                if not self.ack_now:
                    self.stats.window_updates += 1
                self.ack_now = 1

    # =========================================================================================
    # Buffer auto-tuning (issue 10): buffers that fit the path, bounded
    # =========================================================================================

    cdef uint32_t _rcvbuf_ceiling(self) noexcept nogil:
        """The largest receive buffer this connection may grow to: SO_RCVBUF when the
        application set it (SOCK_RCVBUF_LOCK), else the auto-tuning maximum (tcp_rmem[2])."""
        if self.cfg.rcvbuf_lock or self.cfg.rcvbuf_max < self.cfg.rcvbuf:
            return self.cfg.rcvbuf
        return self.cfg.rcvbuf_max

    cdef int _rcvbuf_reserve(self, uint32_t seq, uint32_t n) noexcept nogil:
        """Storage for ``n`` bytes at ``seq`` (in order or beyond a hole): the ring's storage is
        grown to cover their offset, charged to the stack's pool; -1 when refused (the caller
        drops the segment, as Linux does when tcp_try_rmem_schedule fails)."""
        cdef uint32_t end = self.rcvbuf.used + (seq - self.rcv_nxt) + n
        if end <= self.rcvbuf.size:
            return 0
        return ring_grow(&self.rcvbuf, end)

    cdef void _rcv_rtt_measure(self, const tcp_repr* th, uint32_t n, uint64_t now) noexcept nogil:
        """The receiver's RTT estimate, which a pure receiver needs to pace auto-tuning (its
        sender-side srtt has no samples). As Linux: from the echo of our TSval in a full-sized
        segment (tcp_rcv_rtt_measure_ts, RFC 7323 §4.1), and, at any rate, from the time it
        takes to receive one window of data (tcp_rcv_rtt_measure), which can only overestimate
        the RTT and so only lowers the estimate. Our timestamp clock ticks in milliseconds: an
        echo of 0 ms (a sub-millisecond path) is left to the window measurement."""
        cdef uint32_t ts, delta, sample
        if self.ts_ok and th.has_timestamps and th.tsecr and n >= self.smss:
            ts = self._ts_now(now)
            if seq_ge(ts, th.tsecr):
                delta = ts - th.tsecr
                if 1 <= delta < 120000:
                    sample = delta * 1000
                    if self.rcv_rtt_us == 0:
                        self.rcv_rtt_us = sample
                    else:                 # RTT = 7/8 RTT + 1/8 sample (tcp_rcv_rtt_update)
                        self.rcv_rtt_us = <uint32_t>(<int64_t>self.rcv_rtt_us +
                                                     (<int64_t>sample - self.rcv_rtt_us) // 8)
        if self.rcv_rtt_time:
            if seq_lt(self.rcv_nxt, self.rcv_rtt_seq):
                return
            sample = <uint32_t>(now - self.rcv_rtt_time) if now - self.rcv_rtt_time < 2000000000 \
                else 2000000000
            if sample == 0:
                sample = 1
            if self.rcv_rtt_us == 0 or sample < self.rcv_rtt_us:
                self.rcv_rtt_us = sample
        # A new window measurement: the time until RCV.NXT passes the edge now offered.
        self.rcv_rtt_seq = self.rcv_adv if seq_gt(self.rcv_adv, self.rcv_nxt) else self.rcv_nxt + 1
        self.rcv_rtt_time = now

    cdef void _rcv_space_adjust(self, uint64_t now) noexcept nogil:
        """Dynamic right-sizing of the receive buffer, as Linux's tcp_rcv_space_adjust: once per
        receiver RTT, see how much the application read during it; if more than in the last one,
        let the window grow to twice that (the sender's cwnd may double in slow start while its
        data is in flight), plus what is held beyond a hole, plus extra in proportion to the
        growth, up to the ceiling. Unlike Linux, that extra is given only once twice the read
        amount exceeds the buffer: an application that reads less than half the buffer per round
        trip (a slow reader) never makes it grow, however small the first estimate was. The buffer never shrinks. Memory is only the bound here: the
        ring's storage grows when data lands there (_rcvbuf_reserve)."""
        cdef uint32_t copied_seq = self.rcv_nxt - self.rcvbuf.used - (1 if self.rcv_fin else 0)
        cdef uint32_t copied, ceiling
        cdef uint64_t rcvwin, grow
        if self.rcvq_time == 0:
            self.rcvq_seq = copied_seq
            self.rcvq_time = now
            # tcp_init_buffer_space: the first round trip brings at most an initial window.
            self.rcvq_space = INIT_CWND_SEGS * <uint32_t>self.cfg.mss
            return
        if self.rcv_rtt_us == 0 or now - self.rcvq_time < self.rcv_rtt_us:
            return
        copied = copied_seq - self.rcvq_seq
        if copied > self.rcvq_space:
            ceiling = self._rcvbuf_ceiling()
            if not self.ws_ok and ceiling > 0xffff:
                ceiling = self.cfg.rcvbuf if self.cfg.rcvbuf > 0xffff else 0xffff
            if ceiling > self.cfg.rcvbuf and not mem_pool_pressure(self.rcvbuf.pool):
                rcvwin = 2 * <uint64_t>copied + 16 * <uint64_t>self.cfg.mss
                if self.ooo.count:
                    rcvwin += ranges_highest(&self.ooo) - self.rcv_nxt
                if rcvwin > ceiling:
                    rcvwin = ceiling              # (< 2**31: the product below cannot overflow)
                if rcvwin > self.cfg.rcvbuf:
                    # The sender outgrows the buffer: allow for its growth (slow start) during
                    # the next round trips, in proportion to this one's (Linux's "grow").
                    grow = rcvwin * (copied - self.rcvq_space) // \
                        (self.rcvq_space if self.rcvq_space else 1)
                    rcvwin += 2 * grow
                if rcvwin > ceiling:
                    rcvwin = ceiling
                if rcvwin > self.cfg.rcvbuf:
                    self.cfg.rcvbuf = <uint32_t>rcvwin
                    self._size_rcvbuf()
            self.rcvq_space = copied
        self.rcvq_seq = copied_seq
        self.rcvq_time = now

    cdef void _sndbuf_adjust(self, uint64_t now) noexcept nogil:
        """New data was acknowledged. As Linux's tcp_new_space/tcp_sndbuf_expand: if the
        application found the buffer full while the congestion window was not (so the buffer,
        not the network, held the sender back), grow the buffer to room for twice the larger of
        cwnd and the data in flight (which stays buffered through SACK recovery while cwnd is
        cut), at least twice an initial window, up to the ceiling (tcp_wmem[2]). Not when
        SO_SNDBUF was set, nor under memory pressure (then an emptied ring is given back)."""
        cdef uint64_t segs, target
        cdef uint32_t flight = self.snd_max - self.snd_una
        if self.sndbuf.used == 0 and (self.fin_acked or mem_pool_reclaim(self.sndbuf.pool)):
            # All acknowledged: give the storage back for good after our FIN, or while the
            # stack's buffer memory runs short (as Linux's sk_mem_reclaim).
            ring_release(&self.sndbuf, False)
        if mem_pool_pressure(self.sndbuf.pool):
            return
        if not self.snd_full or self.cfg.sndbuf_lock:
            return
        if flight >= self.cc.cwnd:
            return                        # cwnd-limited: a larger buffer would not help (yet)
        self.snd_full = 0
        segs = self.cc.cwnd if self.cc.cwnd > flight else flight
        if segs < INIT_CWND_SEGS * <uint64_t>self.smss:
            segs = INIT_CWND_SEGS * <uint64_t>self.smss
        target = 2 * segs
        if target > self.cfg.sndbuf_max:
            target = self.cfg.sndbuf_max
        if target > self.cfg.sndbuf:
            self.cfg.sndbuf = <uint32_t>target
            ring_set_capacity(&self.sndbuf, self.cfg.sndbuf)

    cdef int user_shutdown(self, uint64_t now) noexcept nogil:
        """CLOSE of the sending direction (RFC 9293 §3.10.4; shutdown(SHUT_WR))."""
        if self.state == LISTEN or self.state == SYN_SENT:
            self._enter_closed(0)
            return 0
        if self.state == SYN_RECEIVED or self.state == ESTABLISHED:
            # "Queue this until all preceding SENDs have been segmentized, then form a FIN
            # segment and send it. In any case, enter FIN-WAIT-1 state." (SYN-RECEIVED waits
            # for ESTABLISHED first.)
            self.fin_queued = 1
            if self.state == ESTABLISHED:
                self.set_state(FIN_WAIT_1)
            return 0
        if self.state == CLOSE_WAIT:
            self.fin_queued = 1
            self.set_state(LAST_ACK)
            return 0
        if self.state == CLOSED:
            return -ENOTCONN if not self.error else 0
        return 0                          # already closing

    cdef int user_close(self, uint64_t now) noexcept nogil:
        """CLOSE (RFC 9293 §3.10.4): shut down writing; the application will not read again.
        Unread received data makes it an abort with RST, as Linux does (RFC 2525 §2.17)."""
        self.orphan = 1
        if self.rcvbuf.used and (self.state == ESTABLISHED or self.state == CLOSE_WAIT or
                                 self.state == FIN_WAIT_1 or self.state == FIN_WAIT_2):
            return self.user_abort(now)
        self.user_shutdown(now)
        if self.state == FIN_WAIT_2 and self.t_timewait == 0:
            self.t_timewait = now + self.cfg.fin_timeout
        return 0

    cdef int user_abort(self, uint64_t now) noexcept nogil:
        """ABORT (RFC 9293 §3.10.5): in a synchronized state send <SEQ=SND.NXT><CTL=RST>;
        all queued data is dropped; CLOSED."""
        if self.state == SYN_RECEIVED or self.state == ESTABLISHED or self.state == FIN_WAIT_1 \
                or self.state == FIN_WAIT_2 or self.state == CLOSE_WAIT:
            self.rst_pending = 1
        self.orphan = 1
        self._enter_closed(0)
        return 0

    # =========================================================================================
    # Segment arrival (RFC 9293 §3.10.7)
    # =========================================================================================

    cdef int on_segment(self, const pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
        self.stats.segs_in += 1
        if self.state == CLOSED:
            # §3.10.7.1: "all data in the incoming segment is discarded ... a reset is sent".
            return SEG_REPLY_RST
        if self.state == LISTEN:
            return self._listen_input(p, now)
        if self.state == SYN_SENT:
            return self._syn_sent_input(p, pkt + p.payload_off, now)
        return self._sync_input(p, pkt + p.payload_off, now)

    cdef int _listen_input(self, const pkt_repr* p, uint64_t now) noexcept nogil:
        """§3.10.7.2 LISTEN."""
        cdef const tcp_repr* th = &p.tcp
        # "First, check for a RST: an incoming RST segment could not be valid ... ignored."
        if th.flags & TH_RST:
            return SEG_OK
        # "Second, check for an ACK: ... <SEQ=SEG.ACK><CTL=RST>"
        if th.flags & TH_ACK:
            return SEG_REPLY_RST
        # "Third, check for a SYN"
        if not (th.flags & TH_SYN):
            return SEG_OK                 # "Fourth, other control or text ... drop"
        self._endpoints_from(p)
        self._init_sequence(now)
        self.rcv_nxt = th.seq + 1
        self.irs = th.seq
        self._negotiate(th)
        self.snd_wnd = th.window          # RFC 7323 §2.2: the window in a SYN is never scaled
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = th.seq
        self.snd_wl2 = self.iss
        self.rcv_adv = self.rcv_nxt
        self.last_rcv_time = now
        # Data on the SYN is not kept (no TCP Fast Open): it is not acknowledged, so the peer
        # sends it again once we are synchronized.
        self.set_state(SYN_RECEIVED)
        self.syn_pending = 1
        return SEG_OK

    cdef int _syn_sent_input(self, const pkt_repr* p, const uint8_t* payload, uint64_t now) noexcept nogil:
        """§3.10.7.3 SYN-SENT."""
        cdef const tcp_repr* th = &p.tcp
        cdef bint ack_ok = False
        cdef bint fin
        cdef uint32_t n, wnd, space
        # "First, check the ACK bit: If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset
        # (unless the RST bit is set, if so drop the segment and return)"
        if th.flags & TH_ACK:
            if seq_le(th.ack, self.iss) or seq_gt(th.ack, self.snd_max):
                return SEG_OK if th.flags & TH_RST else SEG_REPLY_RST
            ack_ok = seq_lt(self.snd_una, th.ack) and seq_le(th.ack, self.snd_max)
        # "Second, check the RST bit: If the ACK was acceptable, then signal to the user
        # 'error: connection reset', drop the segment, enter CLOSED state". RFC 5961 §3.2: a RST
        # without an acceptable ACK is dropped.
        if th.flags & TH_RST:
            if ack_ok:
                self.stats.rst_in += 1
                self._enter_closed(ECONNREFUSED)
            return SEG_OK
        # "Fourth, check the SYN bit"
        if not (th.flags & TH_SYN):
            return SEG_OK                 # "Fifth, if neither of the SYN or RST bits is set"
        self.irs = th.seq
        self.rcv_nxt = th.seq + 1
        # The right edge our SYN offered (its window is never scaled, RFC 7323 §2.2).
        self.rcv_adv = self.rcv_nxt + (self.cfg.rcvbuf if self.cfg.rcvbuf < 0xffff else 0xffff)
        self.last_rcv_time = now
        self._negotiate(th)
        self.snd_wl1 = th.seq
        if ack_ok:
            # "If SND.UNA > ISS (our SYN has been ACKed), change the connection state to
            # ESTABLISHED, form an ACK segment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and send it."
            self._established_from_syn_ack(th, now)
            # "If there are other controls or text in the segment, then continue processing at
            # the sixth step below where the URG bit is checked"
            # Text on the SYN,ACK is trimmed to the window we offered, as any segment's is
            # (§3.10.7.4 "first check sequence number"), and to the buffer's room; a FIN beyond
            # what is kept is not taken either (the peer sends it again).
            n = p.payload_len
            fin = (th.flags & TH_FIN) != 0
            wnd = self.rcv_adv - self.rcv_nxt
            space = ring_space(&self.rcvbuf)
            if n > wnd:
                n = wnd
                fin = False
            if n > space:
                n = space
                fin = False
            if n:
                self._text_input(th.seq + 1, payload, n, now)
            if fin and self.rcv_nxt == th.seq + 1 + n:
                self._fin_input(now)
        else:
            # "Otherwise, enter SYN-RECEIVED, form a SYN,ACK segment <SEQ=ISS><ACK=RCV.NXT>
            # <CTL=SYN,ACK> and send it." (simultaneous open, RFC 9293 Figure 8)
            self.snd_wnd = th.window      # unscaled in a SYN (RFC 7323 §2.2)
            self.max_snd_wnd = self.snd_wnd
            self.set_state(SYN_RECEIVED)
            self.snd_nxt = self.iss
            self.syn_pending = 1
        return SEG_OK

    cdef void _established_from_syn_ack(self, const tcp_repr* th, uint64_t now) noexcept nogil:
        """Our SYN is acknowledged by a SYN,ACK (SYN-SENT, or SYN-RECEIVED after a simultaneous
        open): ESTABLISHED, and ACK it."""
        self.snd_una = th.ack
        self.snd_wl1 = th.seq
        self.snd_wl2 = th.ack
        self.snd_wnd = th.window          # unscaled in a SYN (RFC 7323 §2.2)
        self.max_snd_wnd = self.snd_wnd
        if self.rtt_timing:
            rtt_sample(&self.rtt, <uint32_t>(now - self.rtt_time))
            self.rtt_timing = 0
        rtt_reset_backoff(&self.rtt)
        self.retries = 0
        self.set_state(ESTABLISHED)
        self.t_rtx = 0
        self.syn_pending = 0
        self.ack_now = 1
        self.last_rcv_time = now
        if self.fin_queued:
            self.set_state(FIN_WAIT_1)
        if self.cfg.keepalive:
            self.t_keepalive = now + self.cfg.keepidle

    cdef void _return_to_listen(self) noexcept nogil:
        """RFC 9293 §3.10.7.4 (RST and SYN in SYN-RECEIVED): "If this connection was initiated
        with a passive OPEN ..., then return this connection to LISTEN state": forget the peer
        and every per-connection variable; the user is not told."""
        ring_release(&self.sndbuf, True)
        ring_release(&self.rcvbuf, True)
        memset(self.ip.dst, 0, 16)
        self.rport = 0
        self.irs = self.rcv_nxt = self.rcv_adv = self.last_ack_sent = 0
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = 0
        self.snd_wnd = self.max_snd_wnd = self.snd_wl1 = self.snd_wl2 = 0
        self.ws_ok = self.ts_ok = self.sack_ok = 0
        self.ts_recent = 0
        self.t_rtx = self.t_delack = self.t_persist = self.t_keepalive = self.t_timewait = 0
        self.syn_pending = self.ack_now = self.dupacks_to_send = self.rst_pending = 0
        self.probe_pending = self.keepalive_pending = 0
        self.retries = 0
        self.rtt_timing = 0
        ranges_clear(&self.ooo)
        rtt_init(&self.rtt, self.cfg.rto_initial, self.cfg.rto_min, self.cfg.rto_max)
        self.set_state(LISTEN)

    cdef void _challenge_ack(self, uint64_t now) noexcept nogil:
        """RFC 5961 §3.2/§4.2/§5.2 challenge ACK, at most challenge_ack_limit a second (§7)."""
        if now - self.challenge_window_start >= 1000000:
            self.challenge_window_start = now
            self.challenge_count = 0
        if self.challenge_count < self.cfg.challenge_ack_limit:
            self.challenge_count += 1
            self.stats.challenge_acks += 1
            self.ack_now = 1

    cdef int _sync_input(self, const pkt_repr* p, const uint8_t* payload, uint64_t now) noexcept nogil:
        """§3.10.7.4: SYN-RECEIVED and every synchronized state."""
        cdef const tcp_repr* th = &p.tcp
        cdef uint8_t flags = th.flags
        cdef uint32_t seg_seq = th.seq
        cdef uint32_t n = p.payload_len
        cdef uint32_t seg_len = n + (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)
        cdef uint32_t rcv_wnd, data_seq, cut, right, space
        cdef bint acceptable, fin = (flags & TH_FIN) != 0
        rcv_wnd = self.rcv_adv - self.rcv_nxt if seq_gt(self.rcv_adv, self.rcv_nxt) else 0

        # RFC 7323 §5.3 PAWS, before the sequence check: R1 "If SEG.TSval < TS.Recent and the RST
        # bit is off ... the segment is not acceptable" (unless idle for more than 24 days).
        if self.ts_ok and th.has_timestamps and not (flags & TH_RST) and \
                seq_lt(th.tsval, self.ts_recent) and not (
                    # A reordered pure ACK is let through, as Linux's tcp_disordered_ack: no
                    # data, no SYN/FIN, our SND.UNA exactly, the window unchanged, TSval at
                    # most one RTO old. It can do no harm, and its SACK blocks are news.
                    n == 0 and not (flags & (TH_SYN | TH_FIN)) and flags & TH_ACK and
                    seg_seq == self.rcv_nxt and th.ack == self.snd_una and
                    (<uint32_t>th.window << self.snd_wscale) == self.snd_wnd and
                    self.ts_recent - th.tsval <= rtt_current_rto(&self.rtt) // 1000):
            if now - self.ts_recent_age > PAWS_IDLE_US:
                self.ts_recent = th.tsval
            else:
                self.stats.paws_rejected += 1
                self.ack_now = 1
                # An old duplicate (the original of a segment already retransmitted and
                # received) is still reported as a D-SACK (RFC 2883 §4.1, as Linux's
                # tcp_send_dupack), or the sender never learns that it retransmitted in vain.
                if n and seq_lt(seg_seq, self.rcv_nxt):
                    self._set_dsack(seg_seq, seg_seq + n if seq_le(seg_seq + n, self.rcv_nxt)
                                    else self.rcv_nxt)
                elif n and ranges_covers(&self.ooo, seg_seq, seg_seq + n):
                    self._set_dsack(seg_seq, seg_seq + n)
                return SEG_OK

        # "first check sequence number": the four cases of the acceptability test.
        if seg_len == 0:
            if rcv_wnd == 0:
                acceptable = seg_seq == self.rcv_nxt
            else:
                acceptable = seq_in_window(seg_seq, self.rcv_nxt, rcv_wnd)
        elif rcv_wnd == 0:
            acceptable = False
        else:
            acceptable = seq_in_window(seg_seq, self.rcv_nxt, rcv_wnd) or \
                seq_in_window(seg_seq + seg_len - 1, self.rcv_nxt, rcv_wnd)
        if not acceptable and rcv_wnd == 0 and seg_seq == self.rcv_nxt and not (flags & TH_SYN):
            # "If the RCV.WND is zero, no segments will be acceptable, but special allowance
            # should be made to accept valid ACKs, URGs, and RSTs": keep the controls, drop text.
            # The text (a zero-window probe) is still answered: "When the receiving TCP peer has
            # a zero window and a segment arrives, it must still send an acknowledgment showing
            # its next expected sequence number and current window (zero)" (§3.8.6.1).
            acceptable = True
            n = 0
            fin = False
            self.ack_now = 1
        if not acceptable:
            self.stats.out_of_window += 1
            if self.state == SYN_RECEIVED and flags & TH_SYN and seg_seq == self.irs and \
                    not (flags & TH_RST):
                if not (flags & TH_ACK):
                    # The peer did not see our SYN-ACK and sent its SYN again: answer it again.
                    self.snd_nxt = self.iss
                    self.syn_pending = 1
                    return SEG_OK
                # Simultaneous open (RFC 9293 §3.5 Figure 7, line 6): the peer's SYN,ACK
                # acknowledges our SYN; its SYN we have already seen. Our SYN,ACK's ACK may
                # be lost, so this is how the connection completes.
                if not (seq_lt(self.snd_una, th.ack) and seq_le(th.ack, self.snd_max)):
                    return SEG_REPLY_RST
                self.stats.out_of_window -= 1
                self._established_from_syn_ack(th, now)
                return SEG_OK
            if self.state == TIME_WAIT and fin:
                # §3.10.7.4 eighth step, TIME-WAIT: "Remain in the TIME-WAIT state. Restart the
                # 2 MSL time-wait timeout." (the retransmitted FIN lies below RCV.NXT)
                self.t_timewait = now + 2 * self.cfg.msl
            # "If an incoming segment is not acceptable, an acknowledgment should be sent in
            # reply (unless the RST bit is set, if so drop the segment and return)"
            if not (flags & TH_RST):
                self.ack_now = 1
                if n and seq_le(seg_seq + n, self.rcv_nxt):
                    # RFC 2883 §4.1.1: a duplicate of data already acknowledged is reported in
                    # a D-SACK block, the first block of this ACK.
                    self._set_dsack(seg_seq, seg_seq + n)
            return SEG_OK

        # "second check the RST bit" (RFC 5961 §3.2: only an exact match resets; an in-window
        # RST gets a challenge ACK)
        if flags & TH_RST:
            self.stats.rst_in += 1
            if self.state == TIME_WAIT:
                return SEG_OK             # RFC 1337: no TIME-WAIT assassination
            if seg_seq != self.rcv_nxt:
                self._challenge_ack(now)
                return SEG_OK
            if self.state == SYN_RECEIVED:
                # "If this connection was initiated with a passive OPEN (i.e., came from the
                # LISTEN state), then return this connection to LISTEN state and return. The
                # user need not be informed." Otherwise "connection refused".
                if self.passive:
                    self._return_to_listen()
                else:
                    self._enter_closed(ECONNREFUSED)
            elif self.state == ESTABLISHED or self.state == FIN_WAIT_1 or \
                    self.state == FIN_WAIT_2 or self.state == CLOSE_WAIT:
                self._enter_closed(ECONNRESET)
            else:                         # CLOSING, LAST-ACK
                self._enter_closed(0)
            return SEG_OK

        # "third check security" - not used.

        # "fourth, check the SYN bit": RFC 5961 §4.2, a SYN in a synchronized state (whatever
        # its sequence number) is answered with a challenge ACK and dropped.
        if flags & TH_SYN:
            if self.state == SYN_RECEIVED and self.passive:
                self._return_to_listen()  # "return this connection to the LISTEN state"
                return SEG_OK
            self._challenge_ack(now)
            return SEG_OK

        # "fifth check the ACK field": "if the ACK bit is off, drop the segment and return"
        if not (flags & TH_ACK):
            return SEG_OK
        if self.state == SYN_RECEIVED:
            # "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state ... and continue
            # processing with the variables below set to: SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ,
            # SND.WL2 <- SEG.ACK. If the segment acknowledgment is not acceptable, form a reset
            # segment <SEQ=SEG.ACK><CTL=RST> and send it."
            if not (seq_lt(self.snd_una, th.ack) and seq_le(th.ack, self.snd_max)):
                return SEG_REPLY_RST
            self.set_state(ESTABLISHED)
            self.syn_pending = 0
            self.snd_wnd = <uint32_t>th.window << self.snd_wscale
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg_seq
            self.snd_wl2 = th.ack
            if self.fin_queued:
                self.set_state(FIN_WAIT_1)
            if self.cfg.keepalive:
                self.t_keepalive = now + self.cfg.keepidle
        # RFC 5961 §5.2: an ACK is acceptable only within (SND.UNA - MAX.SND.WND) .. SND.NXT.
        if seq_gt(th.ack, self.snd_max):
            # "If the ACK acknowledges something not yet sent (SEG.ACK > SND.NXT), then send an
            # ACK, drop the segment, and return."
            self._challenge_ack(now)
            return SEG_OK
        if seq_lt(th.ack, self.snd_una - self.max_snd_wnd):
            self._challenge_ack(now)
            return SEG_OK

        # RFC 7323 §4.3: TS.Recent follows the timestamp of the segment that carries the edge
        # of the window we acknowledged last ("SEG.SEQ =< Last.ACK.sent").
        if self.ts_ok and th.has_timestamps and seq_le(seg_seq, self.last_ack_sent) and \
                seq_ge(th.tsval, self.ts_recent):
            self.ts_recent = th.tsval
            self.ts_recent_age = now

        self.last_rcv_time = now
        self.keepalive_sent = 0
        if self.cfg.keepalive and self.t_keepalive:
            self.t_keepalive = now + self.cfg.keepidle

        self._ack_input(th, n, now)
        if self.state == CLOSED:
            return SEG_OK
        if self.state == TIME_WAIT and not fin:
            return SEG_OK

        # "sixth, check the URG bit": urgent data is delivered inline (RFC 6093 §6); the urgent
        # pointer is not acted on.

        # "seventh, process the segment text"
        data_seq = seg_seq
        if n:
            # Trim to what lies in the window and the buffer (RFC 9293 §3.10.7.4: "segments with
            # higher beginning sequence numbers may be held", the rest is cut).
            if seq_lt(data_seq, self.rcv_nxt):
                cut = self.rcv_nxt - data_seq
                # RFC 2883 §4.1.1/§4.1.2: the part already received is reported as a D-SACK.
                self._set_dsack(data_seq, data_seq + (cut if cut < n else n))
                self.ack_now = 1
                if cut >= n:
                    n = 0
                else:
                    payload += cut
                    n -= cut
                    data_seq = self.rcv_nxt
            space = ring_space(&self.rcvbuf)
            right = self.rcv_nxt + space
            if seq_lt(self.rcv_adv, right):
                right = self.rcv_adv
            if n and seq_gt(data_seq + n, right):
                # Beyond the window we offered (or the buffer): the peer overran it.
                self.stats.out_of_window += 1
                cut = (data_seq + n) - right
                if cut >= n:
                    n = 0
                else:
                    n -= cut
                fin = False               # the FIN lies beyond what we keep
        if n:
            if self.state == ESTABLISHED or self.state == FIN_WAIT_1 or self.state == FIN_WAIT_2:
                if self.orphan:
                    # Data for an application that closed: nobody will read it. Linux resets
                    # (tcp_rcv_state_process, "data after close").
                    self.user_abort(now)
                    return SEG_OK
                self._text_input(data_seq, payload, n, now)
                self._rcv_rtt_measure(th, n, now)
            # CLOSE-WAIT, CLOSING, LAST-ACK: "This should not occur since a FIN has been received
            # from the remote side. Ignore the segment text."

        # "eighth, check the FIN bit"
        if fin:
            if seq_gt(data_seq + n, self.rcv_nxt):
                # A FIN beyond a hole: remember it until the data before it arrives.
                self.ooo_fin = 1
                self.ooo_fin_seq = data_seq + n
            elif data_seq + n == self.rcv_nxt and not self.rcv_fin:
                self._fin_input(now)
            elif self.rcv_fin and self.state == TIME_WAIT:
                self.t_timewait = now + 2 * self.cfg.msl
                self.ack_now = 1
        return SEG_OK

    cdef void _ack_input(self, const tcp_repr* th, uint32_t seg_len, uint64_t now) noexcept nogil:
        """The ACK field, in ESTABLISHED and the states after it (RFC 9293 §3.10.7.4 fifth)."""
        cdef uint32_t acked, data_acked, flight, wnd, sacked = 0, was_sacked = 0, sample = 0
        cdef uint32_t old_wnd = self.snd_wnd
        cdef uint32_t seg_seq = th.seq
        cdef uint32_t prior_una = self.snd_una
        cdef bint window_update, dsack = False
        cdef int64_t tsecr_ms = -1
        if self.ts_ok and th.has_timestamps and th.tsecr:
            # Our millisecond clock when the echoed segment left (RFC 8985 §6.2 step 2 check 1).
            tsecr_ms = <uint32_t>(th.tsecr - self.ts_offset)
        if self.sack_ok:
            # Records delivered by the cumulative ACK first, then those of the SACK blocks: RFC
            # 8985 §6.2 step 3 takes them in ascending order of end_seq (else an ordinary ACK
            # that also SACKs would look like reordering).
            if seq_gt(th.ack, self.snd_una):
                was_sacked = txq_cum_ack(&self.txq, &self.rack, th.ack, now, tsecr_ms)
            if th.sack_count:
                dsack = self._sack_input(th, now, tsecr_ms, &sacked)

        # "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated. If (SND.WL1 <
        # SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)), set SND.WND <- SEG.WND,
        # SND.WL1 <- SEG.SEQ, and SND.WL2 <- SEG.ACK."
        wnd = <uint32_t>th.window << self.snd_wscale
        window_update = False
        if seq_le(self.snd_una, th.ack) and \
                (seq_lt(self.snd_wl1, seg_seq) or
                 (self.snd_wl1 == seg_seq and seq_le(self.snd_wl2, th.ack))):
            window_update = wnd != self.snd_wnd
            self.snd_wnd = wnd
            self.snd_wl1 = seg_seq
            self.snd_wl2 = th.ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd:
                self.t_persist = 0
                self.persist_backoff = 0

        if seq_gt(th.ack, self.snd_una):
            # "If SND.UNA < SEG.ACK =< SND.NXT, then set SND.UNA <- SEG.ACK. Any segments on the
            # retransmission queue that are thereby entirely acknowledged are removed."
            acked = th.ack - self.snd_una
            data_acked = acked
            if self.fin_sent and seq_gt(th.ack, self.fin_seq):
                self.fin_acked = 1
                data_acked -= 1
            if seq_gt(th.ack, self.buf_seq):
                # Bytes of the send ring now acknowledged (the SYN and FIN take no ring space).
                data_acked = seq_min(th.ack, self.buf_seq + self.sndbuf.used) - self.buf_seq
                ring_consume(&self.sndbuf, data_acked)
                self.buf_seq += data_acked
            flight = self.snd_max - self.snd_una
            self.snd_una = th.ack
            if seq_lt(self.snd_nxt, self.snd_una):
                self.snd_nxt = self.snd_una
            # RFC 6298 §3 (Karn): the timed segment yields a sample only if it was not sent again.
            # Where Karn's rule leaves us without one (retransmissions), the timestamp echoed in
            # this ACK still measures the round trip unambiguously (RFC 7323 §4.1, RTTM), with
            # the timestamp clock's 1 ms resolution.
            if self.rtt_timing and seq_gt(th.ack, self.rtt_seq):
                sample = <uint32_t>(now - self.rtt_time)
                rtt_sample(&self.rtt, sample)
                self.rtt_timing = 0
            elif self.ts_ok and th.has_timestamps and th.tsecr and not self.rtt_timing and \
                    seq_ge(self._ts_now(now), th.tsecr) and \
                    self._ts_now(now) - th.tsecr < 120000:
                sample = (self._ts_now(now) - th.tsecr) * 1000
                rtt_sample(&self.rtt, sample)
            if sample:
                rack_rtt_sample(&self.rack, sample, now)     # RFC 8985 §6.2 step 1
                self.tlp_rtt_seen = 1                        # §7.3 condition 2
            rtt_reset_backoff(&self.rtt)          # RFC 6298 §5.7
            self.retries = 0
            self.first_unacked_time = now if self.snd_una != self.snd_max else 0
            if not self.in_recovery:
                # (Slow start goes on in RTO recovery, RFC 5681 §3.1.)
                self.dupacks = 0
                cc_on_ack(&self.cc, acked, flight, self.rtt.srtt if self.rtt.has_sample else 0, now)
            elif not self.sack_ok:
                # (With SACK, fast recovery's sending is PRR's, in _rack_ack.)
                if seq_ge(th.ack, self.recover):
                    # RFC 6582 §3.2 step 3 / RFC 6675 §5: a full acknowledgment ends recovery.
                    self.in_recovery = 0
                    self.dupacks = 0
                    cc_on_recovery_exit(&self.cc, now)
                else:
                    # RFC 6582 §3.2 step 3, partial acknowledgment: retransmit the first unacked
                    # segment, deflate cwnd by the amount acknowledged, add back one SMSS.
                    self.rexmit_head = 1
                    if self.cc.cwnd > acked:
                        self.cc.cwnd -= acked
                    else:
                        self.cc.cwnd = self.smss
                    self.cc.cwnd += self.smss
            else:
                self.dupacks = 0
                cc_on_ack(&self.cc, acked, flight, self.rtt.srtt if self.rtt.has_sample else 0, now)
            # RFC 6298 §5.2/5.3: all acknowledged -> stop the timer; else restart it.
            if self.snd_una == self.snd_max or self.snd_una == self.snd_nxt:
                self.t_rtx = 0
            else:
                self.t_rtx = now + rtt_current_rto(&self.rtt)
            self._sndbuf_adjust(now)
            if self.sack_ok:
                # RFC 6937 DeliveredData: the change in SND.UNA plus the change in SACKed bytes.
                self._rack_ack(th, prior_una, acked + sacked - was_sacked, dsack, True, now)
            # State-specific ACK processing.
            if self.fin_acked:
                if self.state == FIN_WAIT_1:
                    # "In addition to the processing for the ESTABLISHED state, if the FIN
                    # segment is now acknowledged, then enter FIN-WAIT-2 and continue processing"
                    self.set_state(FIN_WAIT_2)
                    if self.orphan:
                        self.t_timewait = now + self.cfg.fin_timeout
                elif self.state == CLOSING:
                    # "if the ACK acknowledges our FIN, then enter the TIME-WAIT state"
                    self._enter_time_wait(now)
                elif self.state == LAST_ACK:
                    # "The only thing that can arrive in this state is an acknowledgment of our
                    # FIN. If our FIN is now acknowledged, delete the TCB, enter the CLOSED state"
                    self._enter_closed(0)
            return

        # SEG.ACK == SND.UNA. RFC 5681 §2 "duplicate acknowledgment": outstanding data, no data
        # and no SYN/FIN in the segment, the same window, an ACK that does not advance SND.UNA.
        # With SACK, RFC 6675 §2 relaxes it: any segment whose SACK blocks cover octets not
        # SACKed before (so data-carrying segments of a two-way transfer count too).
        # A zero window is not a loss signal: the replies to our window probes (outstanding: only
        # the probe octet, SND.NXT = SND.UNA) must not start fast retransmit into a closed window.
        if th.ack == self.snd_una and seq_lt(self.snd_una, self.snd_nxt) and self.snd_wnd and (
                (sacked and self.sack_ok) or
                (seg_len == 0 and not (th.flags & (TH_SYN | TH_FIN)) and not window_update)):
            self.dupacks += 1
            self.stats.dupacks_in += 1
            # With SACK, RACK decides what is lost and when recovery starts (_rack_ack below).
            if self.sack_ok:
                pass
            elif self.in_recovery:
                self.cc.cwnd += self.smss         # RFC 5681 §3.2 step 4: inflate
            elif self.dupacks >= DUPTHRESH:
                # RFC 6582 §3.2 step 2: only when the ACK covers more than "recover" (avoid
                # multiple fast retransmits from one window).
                if seq_ge(th.ack, self.recover):
                    flight = self.snd_max - self.snd_una
                    self.in_recovery = 1
                    self.recover = self.snd_max
                    self.stats.fast_retransmits += 1
                    cc_on_congestion(&self.cc, flight, now)
                    self.rtt_timing = 0
                    self.rexmit_head = 1
                    # RFC 5681 §3.2 steps 2-3: retransmit, cwnd = ssthresh + 3*SMSS.
                    self.cc.cwnd = self.cc.ssthresh + 3 * self.smss
        if self.sack_ok and (seq_lt(self.snd_una, self.snd_max) or dsack):
            self._rack_ack(th, prior_una, sacked, dsack, False, now)

    # =========================================================================================
    # Loss recovery with SACK: RACK-TLP (RFC 8985), PRR (RFC 6937), F-RTO (RFC 5682), undo
    # =========================================================================================

    cdef bint _sack_input(self, const tcp_repr* th, uint64_t now, int64_t tsecr_ms,
                          uint32_t* newly_sacked) noexcept nogil:
        """The SACK blocks of an ACK: records they cover are delivered (RFC 8985 §6.2 steps 2-3).
        Returns whether the first block is a D-SACK (RFC 2883 §4)."""
        cdef int i, first = 0
        cdef uint32_t left, right, segs, newly = 0
        cdef bint dsack = False
        left = th.sack_left[0]
        right = th.sack_right[0]
        # RFC 2883 §4: a first block at or below the cumulative ACK, or inside the second
        # block, reports a duplicate.
        if seq_lt(left, th.ack) or (th.sack_count > 1 and seq_ge(left, th.sack_left[1]) and
                                    seq_le(right, th.sack_right[1])):
            if seq_lt(left, right) and seq_le(right, self.snd_max):
                dsack = True
                self.stats.dsack_in += 1
                # RFC 3708 §3: a D-SACK for data sent again in this episode shows that
                # retransmission unneeded (Linux's undo_retrans).
                if self.undo_valid and seq_gt(right, self.undo_marker):
                    segs = (right - left + self.smss - 1) // self.smss
                    self.stats.spurious_retrans += segs
                    self.undo_retrans -= <int32_t>segs
            first = 1
        for i in range(first, th.sack_count):
            left = th.sack_left[i]
            right = th.sack_right[i]
            if seq_lt(left, self.snd_una):
                left = self.snd_una
            if seq_gt(right, self.snd_max):
                right = self.snd_max
            if seq_lt(left, right):
                newly += txq_sack(&self.txq, &self.rack, left, right, now, tsecr_ms)
        newly_sacked[0] = newly
        return dsack

    cdef uint32_t _pipe(self) noexcept nogil:
        """RFC 6675 pipe from the transmit records: in flight, less SACKed, less lost."""
        return txq_pipe(&self.txq, self.snd_una, self.snd_max)

    cdef void _rack_ack(self, const tcp_repr* th, uint32_t prior_una, uint32_t delivered,
                        bint dsack, bint advanced, uint64_t now) noexcept nogil:
        """Everything an ACK means for loss recovery, after its SACK blocks and cumulative ACK
        have marked the records delivered."""
        cdef uint32_t pipe, sndcnt, data_end, highest
        cdef int i
        # Spurious retransmissions. Eifel (RFC 3522 §3.2): an ACK of new data that echoes a
        # timestamp older than the first retransmission still outstanding acknowledges an
        # original transmission. D-SACK (RFC 3708 §3): every retransmission of the episode came
        # back D-SACKed. Either way the reduction is undone (RFC 4015, as Linux's undo).
        if self.undo_valid and self.undo_rexmitted and (
                (advanced and (self.in_recovery or self.rto_recovery) and self.retrans_ts_set and
                 self.ts_ok and th.has_timestamps and th.tsecr and
                 seq_lt(th.tsecr, self.retrans_tsval)) or
                (dsack and self.undo_retrans <= 0)):
            self._undo(now)

        # F-RTO (RFC 5682 §2-3): after the RTO's retransmission, new data instead of more
        # retransmissions tells a spurious timeout from a real one.
        if self.frto and self.rto_recovery:
            if self.frto == 1 and advanced:
                # Step 2: the first new acknowledgment (duplicates before it only update the
                # scoreboard). RecoveryPoint becomes the highest sequence sent so far.
                self.recover = self.snd_max
                data_end = self.buf_seq + self.sndbuf.used
                if seq_lt(self.snd_una, self.recover) and seq_lt(self.snd_max, data_end) and \
                        seq_lt(self.snd_max - self.snd_una, self.snd_wnd):
                    # 2.b: send up to two new (previously unsent) segments, then step 3.
                    self.frto = 2
                    self.cc.cwnd = self._pipe() + 2 * <uint32_t>self.smss
                else:
                    # 2.a, or nothing new to send: the conventional RTO recovery.
                    self.frto = 0
                    if self.cc.cwnd > 2 * <uint32_t>self.smss:
                        self.cc.cwnd = 2 * <uint32_t>self.smss
                    rack_mark_losses_on_rto(&self.rack, &self.txq, self.snd_una, now)
            elif self.frto == 2:
                self.frto = 0
                highest = th.ack
                for i in range(1 if dsack else 0, th.sack_count):
                    if seq_gt(th.sack_right[i], highest):
                        highest = th.sack_right[i]
                if not seq_gt(highest, self.recover) and (advanced or delivered):
                    # Step 3.b: data sent before the timeout, not acknowledged before, is
                    # acknowledged now: the timeout was spurious (RFC 4015 response: restore
                    # cwnd and ssthresh).
                    self._undo(now)
                else:
                    # Step 3.a: the new segments were acknowledged (or nothing new was): the
                    # loss was real; at most 3*SMSS, retransmitting what RACK finds lost.
                    if self.cc.cwnd > 3 * <uint32_t>self.smss:
                        self.cc.cwnd = 3 * <uint32_t>self.smss
                    rack_mark_losses_on_rto(&self.rack, &self.txq, self.snd_una, now)

        # RACK (RFC 8985 §6.2 steps 4-5).
        rack_update_reo_wnd(&self.rack, &self.txq, dsack, self.in_recovery or self.rto_recovery,
                            self.snd_una, self.snd_max, self.rtt.srtt if self.rtt.has_sample else 0)
        if self.rack.advanced:
            self._rack_detect(now)

        # Fast recovery: PRR (RFC 6937) sets what this ACK lets us send, cwnd = pipe + sndcnt.
        if self.in_recovery:
            if seq_ge(self.snd_una, self.recover):
                # RFC 6675 §5 / RFC 6937: recovery ends when RecoveryPoint is acknowledged.
                self.in_recovery = 0
                self.dupacks = 0
                cc_on_recovery_exit(&self.cc, now)
                rack_recovery_done(&self.rack)
            else:
                pipe = self._pipe()
                sndcnt = prr_sndcnt(&self.prr, delivered, pipe, self.cc.ssthresh, self.smss)
                if self.prr.prr_out == 0 and sndcnt < self.smss:
                    sndcnt = self.smss        # the fast retransmission goes at once
                self.cc.cwnd = pipe + sndcnt
        if self.rto_recovery and seq_ge(self.snd_una, self.recover):
            self.rto_recovery = 0
            self.frto = 0
            rack_recovery_done(&self.rack)

        if self.snd_una == self.snd_max:
            self.t_reo = 0                # nothing left to judge
        if self.retrans_ts_set and self.txq.retrans_out == 0 and self.txq.lost_out == 0 and \
                not self.in_recovery and not self.rto_recovery:
            self.retrans_ts_set = 0       # no retransmission outstanding any more

        # Tail loss probe (RFC 8985 §7.4, §7.2).
        self._tlp_process_ack(th, dsack, advanced, now)
        if advanced:
            self._schedule_loss_probe(now)

    cdef void _rack_detect(self, uint64_t now) noexcept nogil:
        """RACK_detect_loss_and_arm_timer (RFC 8985 §6.2 step 5); a loss starts fast recovery."""
        cdef uint32_t newly = 0
        cdef uint64_t wait = rack_detect_loss(&self.rack, &self.txq, now, &newly)
        self.t_reo = now + wait if wait else 0
        if self.txq.lost_out and not self.in_recovery and not self.rto_recovery:
            self._enter_recovery(now)

    cdef void _enter_recovery(self, uint64_t now) noexcept nogil:
        """RACK found a loss: fast recovery (RFC 6675 §5), its reduction (RFC 5681 §3.2 /
        RFC 9438 §4.6) sent out by PRR (RFC 6937 §3)."""
        cdef uint32_t flight = self.snd_max - self.snd_una
        self._undo_mark()
        cc_on_congestion(&self.cc, flight, now)
        prr_init(&self.prr, flight)
        self.in_recovery = 1
        self.recover = self.snd_max
        self.stats.fast_retransmits += 1
        self.stats.sack_recoveries += 1
        # TLP_init (§7.1): no probe outstanding in recovery; the first retransmission goes now.
        self.tlp_active = 0
        self.tlp_pending = 0
        self.t_tlp = 0
        self.cc.cwnd = self._pipe() + self.smss

    cdef void _undo_mark(self) noexcept nogil:
        """A reduction begins: remember what an undo restores (RFC 4015 §3.1 "pipe_prev"...).
        An RTO inside an episode keeps the episode's first values."""
        if self.undo_valid and (self.in_recovery or self.rto_recovery):
            return
        self.undo_valid = 1
        self.prior_cwnd = self.cc.cwnd
        self.prior_ssthresh = self.cc.ssthresh
        self.undo_marker = self.snd_una
        self.undo_retrans = 0
        self.undo_rexmitted = 0

    cdef void _undo(self, uint64_t now) noexcept nogil:
        """The reduction was spurious: restore cwnd and ssthresh (RFC 4015 §4, as Linux's
        tcp_undo_cwnd_reduction) and forget the losses it assumed."""
        if self.rto_recovery:
            self.stats.spurious_rtos += 1  # the timeout itself was spurious
        if self.cc.cwnd < self.prior_cwnd:
            self.cc.cwnd = self.prior_cwnd
        if self.prior_ssthresh > self.cc.ssthresh:
            self.cc.ssthresh = self.prior_ssthresh
        self.cc.rto_hold = 0
        self.cc.ss_after_rto = 0
        if self.in_recovery or self.rto_recovery:
            rack_recovery_done(&self.rack)
        self.in_recovery = 0
        self.rto_recovery = 0
        self.frto = 0
        self.dupacks = 0
        self.undo_valid = 0
        self.t_reo = 0
        txq_clear_lost(&self.txq)
        self.stats.undo_events += 1

    cdef void _schedule_loss_probe(self, uint64_t now) noexcept nogil:
        """RFC 8985 §7.2 TLP_calc_PTO and when to arm it."""
        cdef uint64_t pto
        cdef uint32_t flight = self.snd_max - self.snd_una
        self.t_tlp = 0
        if not self.sack_ok or self.in_recovery or self.rto_recovery or self.tlp_active or \
                self.txq.sacked_segs or flight == 0 or self.txq.count == 0:
            return
        if self.rtt.has_sample:
            pto = 2 * <uint64_t>self.rtt.srtt + TLP_MIN_US
            if flight <= self.smss:
                pto += TLP_MAX_ACK_DELAY_US
        else:
            pto = 1000000
        if self.t_rtx:
            if self.t_rtx <= now:
                return
            if now + pto > self.t_rtx:
                pto = self.t_rtx - now
        self.t_tlp = now + pto

    cdef void _tlp_process_ack(self, const tcp_repr* th, bint dsack, bint advanced,
                               uint64_t now) noexcept nogil:
        """RFC 8985 §7.4 TLP_process_ack: was the probe's episode a loss?"""
        if not self.tlp_active or seq_lt(th.ack, self.tlp_end_seq):
            return
        if not self.tlp_is_retrans:
            self.tlp_active = 0           # a probe of new data was delivered
        elif dsack and th.sack_right[0] == self.tlp_end_seq:
            self.tlp_active = 0           # case 1: the original and the probe both arrived
        elif seq_gt(th.ack, self.tlp_end_seq):
            # The probe repaired a single loss: respond as to any loss (§7.4.2).
            self.tlp_active = 0
            self.stats.tlp_recoveries += 1
            if not self.in_recovery and not self.rto_recovery:
                cc_on_congestion(&self.cc, self.snd_max - self.snd_una, now)
        elif th.sack_count == 0 and not advanced:
            self.tlp_active = 0           # case 2: a duplicate ACK without SACK

    cdef void _set_dsack(self, uint32_t left, uint32_t right) noexcept nogil:
        """Report [left, right) as a duplicate in the next ACK (RFC 2883 §4)."""
        if self.sack_ok and seq_lt(left, right):
            self.dsack_pending = 1
            self.dsack_left = left
            self.dsack_right = right
            self._ack_loss_news()

    cdef void _ack_loss_news(self) noexcept nogil:
        """A sign of loss arrived (out-of-order data, a filled hole, a duplicate): ACK at once,
        with SACK before the next segment is taken (ack_flush), and the next in-order
        segments at once too (quick-ACK)."""
        self.ack_now = 1
        self.quickacks = QUICKACKS
        if self.sack_ok:
            self.ack_flush = 1

    cdef void _text_input(self, uint32_t seq, const uint8_t* data, uint32_t n, uint64_t now) noexcept nogil:
        """RFC 9293 §3.10.7.4 seventh step: data into the receive buffer, in order or held."""
        cdef uint32_t off, end
        cdef bint filled_hole = False
        if self._rcvbuf_reserve(seq, n) != 0:
            return                         # no memory: as if lost; the peer retransmits
        if seq == self.rcv_nxt:
            if ring_write_at(&self.rcvbuf, self.rcvbuf.used, data, n) != 0:
                return                     # refused (no room): as if lost, never committed
            ring_commit(&self.rcvbuf, n)
            self.rcv_nxt += n
            self.stats.bytes_in += n
            # Out-of-order data that now continues the stream.
            if self.ooo.count:
                ranges_trim_below(&self.ooo, self.rcv_nxt)
                while ranges_pop_at(&self.ooo, self.rcv_nxt, &end):
                    ring_commit(&self.rcvbuf, end - self.rcv_nxt)
                    self.stats.bytes_in += end - self.rcv_nxt
                    self.rcv_nxt = end
                filled_hole = True
            if self.ooo_fin and self.ooo_fin_seq == self.rcv_nxt:
                self.ooo_fin = 0
                self._fin_input(now)
            # RFC 5681 §4.2 / RFC 9293 §3.8.6.3: ACK at least every second full-sized segment,
            # at once when a hole is being filled, else within the delayed-ACK time.
            if filled_hole or self.ooo.count:
                self._ack_loss_news()
            elif self.quickacks:
                self.quickacks -= 1
                self.ack_now = 1
            else:
                # A coalesced (GRO) segment counts for the full-sized segments it carries.
                self.segs_unacked += 1 if n < 2 * <uint32_t>self.cfg.mss else 2
                if self.segs_unacked >= 2:
                    self.ack_now = 1
                elif self.t_delack == 0:
                    self.t_delack = now + self.cfg.delack
        else:
            # Beyond a hole: hold it within the buffer (its offset from RCV.NXT is its place).
            off = seq - self.rcv_nxt
            if ranges_covers(&self.ooo, seq, seq + n):
                # RFC 2883 §4.1.3: a duplicate of data held out of order, reported as a D-SACK
                # (followed by the block that holds it).
                self._set_dsack(seq, seq + n)
            # The bytes first: a range is only recorded for bytes the ring really holds.
            if ring_write_at(&self.rcvbuf, self.rcvbuf.used + off, data, n) != 0:
                self.stats.ooo_dropped += 1
            elif ranges_add(&self.ooo, seq, seq + n) < 0:
                self.stats.ooo_dropped += 1
            else:
                self.stats.ooo_segments += 1
            # "A TCP receiver SHOULD send an immediate duplicate ACK when an out-of-order segment
            # arrives" (RFC 5681 §4.2), with SACK blocks that describe it: one ACK per segment,
            # even when the caller hands us a batch, or the sender would see too few duplicates
            # to start fast retransmit.
            if self.dupacks_to_send < 64:
                self.dupacks_to_send += 1
            self._ack_loss_news()

    cdef void _fin_input(self, uint64_t now) noexcept nogil:
        """RFC 9293 §3.10.7.4 eighth step: the peer's FIN, in order."""
        if self.rcvbuf.used == 0:
            ring_release(&self.rcvbuf, False)   # nothing more will arrive: no storage needed
        self.rcv_nxt += 1
        self.rcv_fin = 1
        self.ack_now = 1
        if self.state == SYN_RECEIVED or self.state == ESTABLISHED:
            self.set_state(CLOSE_WAIT)
        elif self.state == FIN_WAIT_1:
            # "If our FIN has been ACKed (perhaps in this segment), then enter TIME-WAIT ...
            # otherwise, enter the CLOSING state."
            if self.fin_acked:
                self._enter_time_wait(now)
            else:
                self.set_state(CLOSING)
        elif self.state == FIN_WAIT_2:
            self._enter_time_wait(now)
        elif self.state == TIME_WAIT:
            self.t_timewait = now + 2 * self.cfg.msl

    # =========================================================================================
    # State changes
    # =========================================================================================

    cdef void set_state(self, int state) noexcept nogil:
        """Every change of state goes through here (as Linux's tcp_set_state and smoltcp's
        set_state): it counts the transition (``transitions``) and remembers that the connection
        was synchronized once it reaches ESTABLISHED. What the socket is ready for follows from
        the state and the buffers (``tcb_poll``), so it needs no update of its own."""
        if state == self.state:
            return
        self.state = state
        self.entered[state] += 1
        if state == ESTABLISHED:
            self.synced = 1

    cdef void get_facts(self, tcb_facts* f) noexcept nogil:
        """Copy what the socket layer may know of the connection (see tcb_facts)."""
        f.state = self.state
        f.error = self.error
        f.rcv_fin = self.rcv_fin
        f.version = self.ip.version
        memcpy(f.laddr, self.ip.src, 16)
        memcpy(f.raddr, self.ip.dst, 16)
        f.lport = self.lport
        f.rport = self.rport
        f.smss = self.smss
        f.in_recovery = self.in_recovery
        f.retries = self.retries
        f.ts_ok = self.ts_ok
        f.sack_ok = self.sack_ok
        f.ws_ok = self.ws_ok
        f.snd_wscale = self.snd_wscale
        f.rcv_wscale = self.rcv_wscale
        f.rto = rtt_current_rto(&self.rtt)
        f.unacked = self.snd_max - self.snd_una
        f.rcv_wnd = self.rcv_adv - self.rcv_nxt
        f.has_srtt = self.rtt.has_sample
        f.srtt = self.rtt.srtt
        f.rttvar = self.rtt.rttvar
        f.ssthresh = self.cc.ssthresh
        f.cwnd = self.cc.cwnd
        f.stats = self.stats

    cdef bint reopen_time_wait(self, const tcp_repr* th) noexcept nogil:
        """RFC 1122 §4.2.2.13 (and RFC 6191): a new SYN whose sequence number lies above the
        old connection's RCV.NXT may reopen a 4-tuple in TIME-WAIT. If this segment may, the
        TIME-WAIT ends here (CLOSED; the caller takes the TCB out of its table and hands the SYN
        to a listener, which makes the new connection) and True is returned."""
        if self.state != TIME_WAIT or (th.flags & (TH_SYN | TH_ACK | TH_RST)) != TH_SYN or \
                not seq_gt(th.seq, self.rcv_nxt):
            return False
        self._enter_closed(0)
        return True

    cdef void _enter_closed(self, int err) noexcept nogil:
        if err:
            self.error = err
        self.set_state(CLOSED)
        self.t_rtx = self.t_delack = self.t_persist = self.t_keepalive = self.t_timewait = 0
        self.t_reo = self.t_tlp = 0
        self.syn_pending = self.probe_pending = self.keepalive_pending = self.tlp_pending = 0
        self.rexmit_head = 0
        txq_release(&self.txq)
        ranges_release(&self.ooo)         # nothing more will arrive to fill a hole
        self.ack_now = 0
        if err or self.rst_pending:
            # "All segment queues should be flushed" (RFC 9293 §3.10.7.4 RST, §3.10.5 ABORT).
            ring_release(&self.sndbuf, True)
            if err != ECONNRESET or self.orphan:
                ring_release(&self.rcvbuf, True)

    cdef void _enter_time_wait(self, uint64_t now) noexcept nogil:
        """RFC 9293 §3.10.7.4: "Enter the TIME-WAIT state. Start the time-wait timer, turn off
        the other timers." It lasts 2*MSL so that old duplicates of this connection die out before
        the same 4-tuple can be used again, and so that a lost final ACK can be repeated when the
        peer retransmits its FIN (RFC 9293 §3.4.2)."""
        self.set_state(TIME_WAIT)
        self.t_rtx = self.t_delack = self.t_persist = self.t_keepalive = 0
        self.t_reo = self.t_tlp = 0
        self.tlp_pending = self.rexmit_head = 0
        txq_release(&self.txq)
        ranges_release(&self.ooo)
        self.t_timewait = now + 2 * self.cfg.msl
        ring_release(&self.sndbuf, True)

    # =========================================================================================
    # Timers
    # =========================================================================================

    cdef void _arm_rtx(self, uint64_t now) noexcept nogil:
        if self.t_rtx == 0:
            self.t_rtx = now + rtt_current_rto(&self.rtt)

    cdef void _rexmit_rto(self, uint64_t now) noexcept nogil:
        """The retransmission timer expired (RFC 6298 §5.4-5.6, RFC 5681 §3.1)."""
        cdef uint32_t flight = self.snd_max - self.snd_una
        cdef uint8_t limit
        cdef bint handshake = self.state == SYN_SENT or self.state == SYN_RECEIVED
        cdef bint first
        self.stats.rto_expirations += 1
        limit = self.cfg.syn_retries if handshake else self.cfg.retries
        if self.retries >= limit or (self.cfg.user_timeout and self.first_unacked_time and
                                     now - self.first_unacked_time >= self.cfg.user_timeout):
            # R2 reached (RFC 9293 §3.8.3 / RFC 1122 §4.2.3.5): close with "timed out".
            if handshake and self.passive:
                self._enter_closed(0)     # an embryonic passive connection just goes away
            else:
                # RFC 1122 §4.2.3.9: a soft ICMP error seen meanwhile says more than "timed out".
                self._enter_closed(self.soft_error if self.soft_error else ETIMEDOUT)
            return
        self.retries += 1
        rtt_backoff(&self.rtt)            # §5.5: RTO <- RTO * 2
        self.rtt_timing = 0               # Karn: no sample from a retransmitted segment
        self.t_rtx = now + rtt_current_rto(&self.rtt)
        if handshake:
            self.snd_nxt = self.iss
            self.syn_pending = 1
            # RFC 6298 §5.7: if the SYN or SYN-ACK is lost, the RTO after the handshake is
            # reset to 3 s; done by not having a sample yet, so the initial RTO stays in force.
            return
        if self.sack_ok and self.txq.count:
            # RACK-TLP's RTO recovery (RFC 8985 §6.3, with F-RTO, RFC 5682). SACKed data is
            # never sent again: RACK marks what is lost and only that is retransmitted.
            first = not self.rto_recovery
            self._undo_mark()
            cc_on_rto(&self.cc, flight, now)
            self.in_recovery = 0
            self.rto_recovery = 1
            self.recover = self.snd_max
            self.dupacks = 0
            self.rexmit_head = 0
            self.tlp_active = self.tlp_pending = 0
            self.t_tlp = self.t_reo = 0
            if first and seq_lt(self.snd_max, self.buf_seq + self.sndbuf.used):
                # F-RTO step 1 (RFC 5682 §3): retransmit only the first unacknowledged segment;
                # the next ACKs tell whether the timeout was spurious.
                self.frto = 1
                txq_mark_lost(&self.txq, 0)
            else:
                self.frto = 0
                rack_mark_losses_on_rto(&self.rack, &self.txq, self.snd_una, now)
            return
        cc_on_rto(&self.cc, flight, now)
        # RFC 6582 §3.2: recovery ends; recover = the highest sequence sent; no new recovery
        # until it is acknowledged.
        self.in_recovery = 0
        self.recover = self.snd_max
        self.dupacks = 0
        self.rexmit_head = 0
        # Go back to SND.UNA: everything after it (and the FIN) is sent again as cwnd allows.
        self.snd_nxt = self.snd_una

    cdef void _on_timers(self, uint64_t now) noexcept nogil:
        if self.t_timewait and now >= self.t_timewait:
            # TIME-WAIT over (or an orphan's FIN-WAIT-2 timeout): delete the TCB.
            self.t_timewait = 0
            self._enter_closed(0)
            return
        if self.t_tlp and now >= self.t_tlp:
            # RFC 8985 §7.3: send a probe if none is out and an RTT was measured since the
            # last one (the probe re-arms the RTO when it goes); else the RTO, still armed, is
            # the last resort. A PTO capped at the RTO's time (§7.2) goes before the RTO.
            self.t_tlp = 0
            if not self.tlp_active and self.tlp_rtt_seen and seq_lt(self.snd_una, self.snd_max) \
                    and not self.in_recovery and not self.rto_recovery:
                self.tlp_pending = 1
                if self.t_rtx and self.t_rtx <= now:
                    self.t_rtx = now + rtt_current_rto(&self.rtt)
        if self.t_rtx and now >= self.t_rtx:
            self.t_rtx = 0
            self._rexmit_rto(now)
            if self.state == CLOSED:
                return
        if self.t_reo and now >= self.t_reo:
            # RFC 8985 §6.2: the reordering window of a segment has passed.
            self.t_reo = 0
            self.stats.rack_reo_timeouts += 1
            self._rack_detect(now)
        if self.t_persist and now >= self.t_persist:
            # RFC 9293 §3.8.6.1: probe the zero window, with exponentially growing intervals.
            self.t_persist = 0
            self.probe_pending = 1
            if self.persist_backoff < 16:
                self.persist_backoff += 1
        if self.t_delack and now >= self.t_delack:
            self.t_delack = 0
            if not self.ack_now:
                self.stats.delayed_acks += 1
            self.ack_now = 1
        if self.t_keepalive and now >= self.t_keepalive:
            # RFC 1122 §4.2.3.6 / RFC 9293 §3.8.4: probe an idle connection; give up after
            # keepcnt unanswered probes, as Linux does (with a reset).
            if self.keepalive_sent >= self.cfg.keepcnt:
                self.t_keepalive = 0
                if self.state == ESTABLISHED or self.state == CLOSE_WAIT or \
                        self.state == FIN_WAIT_1 or self.state == FIN_WAIT_2:
                    self.rst_pending = 1
                self._enter_closed(ETIMEDOUT)
                return
            if self.snd_una == self.snd_max and self.sndbuf.used == 0:
                self.keepalive_pending = 1
                self.keepalive_sent += 1
                self.stats.keepalive_probes += 1
            self.t_keepalive = now + self.cfg.keepintvl

    cdef uint64_t poll_at(self) noexcept nogil:
        """When poll_transmit should next be called (after the caller's own calls following each
        segment and user call): 1 for at once, the earliest timer otherwise, 0 for never."""
        cdef uint64_t t = 0
        if self.rst_pending or self.syn_pending or self.ack_now or self.probe_pending or \
                self.keepalive_pending or self.rexmit_head or self.tlp_pending:
            return 1
        # New data is not a reason to wake: whoever queues data or delivers an ACK calls
        # poll_transmit anyway, and what it declines to send (Nagle, windows) waits for an ACK or
        # a timer. So poll_at never asks for a call that would send nothing.
        t = _min_timer(t, self.t_rtx)
        t = _min_timer(t, self.t_reo)
        t = _min_timer(t, self.t_tlp)
        t = _min_timer(t, self.t_delack)
        t = _min_timer(t, self.t_persist)
        t = _min_timer(t, self.t_keepalive)
        t = _min_timer(t, self.t_timewait)
        return t

    # =========================================================================================
    # Sending
    # =========================================================================================

    cdef uint32_t _ts_now(self, uint64_t now) noexcept nogil:
        # RFC 7323 §5.4: a clock of about 1 ms, offset per connection.
        return <uint32_t>(now // 1000) + self.ts_offset

    cdef uint32_t _window_to_advertise(self) noexcept nogil:
        """The window field, scaled, with receiver SWS avoidance (RFC 9293 §3.8.6.2.2) and never
        shrinking the right edge already offered (RFC 9293 §3.8.6.2.2 / RFC 7323 §2.4)."""
        cdef uint32_t space = self._rcv_space()
        cdef uint32_t cur = self.rcv_adv - self.rcv_nxt if seq_gt(self.rcv_adv, self.rcv_nxt) else 0
        cdef uint32_t step = self.cfg.rcvbuf // 2
        cdef uint32_t wnd, field, held
        if mem_pool_pressure(self.rcvbuf.pool):
            # The stack is short of buffer memory (Linux: tcp_under_memory_pressure, which
            # clamps the window): offer no more than the storage this ring already has (or a
            # small minimum), so the peer does not send what we would have to drop. The right
            # edge already offered still stands (below).
            held = self.rcvbuf.size if self.rcvbuf.size > RCV_PRESSURE_MIN else RCV_PRESSURE_MIN
            held = held - self.rcvbuf.used if held > self.rcvbuf.used else 0
            held = held - self._rcv_slack() if held > self._rcv_slack() else 0
            if space > held:
                space = held
        if step > self.cfg.mss:
            step = self.cfg.mss
        wnd = space
        # Move the right edge only by a useful amount (SWS avoidance): else keep the old one.
        if wnd > cur and wnd - cur < step and space < self.cfg.rcvbuf:
            wnd = cur
        if wnd < cur:
            wnd = cur
        field = wnd >> self.rcv_wscale
        if field > 0xffff:
            field = 0xffff
        if (field << self.rcv_wscale) < cur:
            # Scaling rounds down; round up rather than shrink what we offered (Linux does too).
            field += 1
        self.rcv_adv = self.rcv_nxt + (field << self.rcv_wscale)
        return field

    cdef void _fill_header(self, tcp_repr* t, uint32_t seq, uint8_t flags, uint64_t now) noexcept nogil:
        cdef int k
        memset(t, 0, sizeof(tcp_repr))
        t.src_port = self.lport
        t.dst_port = self.rport
        t.seq = seq
        t.flags = flags
        if flags & TH_ACK:
            t.ack = self.rcv_nxt
            self.last_ack_sent = self.rcv_nxt
            self.ack_now = 0
            self.ack_flush = 0
            self.segs_unacked = 0
            self.t_delack = 0
        if self.ts_ok:
            t.has_timestamps = 1
            t.tsval = self._ts_now(now)
            t.tsecr = self.ts_recent
        if self.sack_ok and flags & TH_ACK and (self.ooo.count or self.dsack_pending):
            k = 0
            if self.dsack_pending:
                # RFC 2883 §4: the D-SACK block comes first, once.
                t.sack_left[0] = self.dsack_left
                t.sack_right[0] = self.dsack_right
                k = 1
                self.dsack_pending = 0
                self.stats.dsack_out += 1
            # RFC 2018 §4: report the held blocks, the most recent first (3 fit beside TS).
            if self.ooo.count:
                k += ranges_sack_blocks(&self.ooo, t.sack_left + k, t.sack_right + k,
                                        (3 if self.ts_ok else 4) - k)
            t.sack_count = <uint8_t>k
        if not (flags & TH_SYN):
            t.window = <uint16_t>self._window_to_advertise()

    cdef size_t _emit(self, uint8_t* buf, size_t cap, tcp_repr* t, uint32_t data_off, uint32_t n,
                      uint64_t now) noexcept nogil:
        """Copy ``n`` bytes of the send ring from ``data_off`` behind the headers and emit."""
        cdef size_t hdr = ip_header_len(&self.ip) + tcp_header_len(t)
        cdef size_t out
        if hdr + n > cap:
            return 0
        if n:
            ring_read_at(&self.sndbuf, data_off, buf + hdr, n)
        out = tcp_packet_emit(buf, cap, &self.ip, t, n, self.cfg.csum_partial)
        if out:
            self.stats.segs_out += 1
            self.last_snd_time = now
            if t.flags & TH_RST:
                self.stats.rst_out += 1
        return out

    cdef size_t poll_transmit(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil:
        """Write the next segment due, as a whole IP packet, into ``buf``; 0 when none is due."""
        cdef tcp_repr t
        cdef size_t out
        self._on_timers(now)
        if self.rst_pending:
            # ABORT: <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5). SND.NXT in the RFC's sense is the
            # highest sequence number sent (our snd_max: snd_nxt rewinds after an RTO), which is
            # what the peer's RCV.NXT is compared with.
            self.rst_pending = 0
            memset(&t, 0, sizeof(tcp_repr))
            t.src_port = self.lport
            t.dst_port = self.rport
            t.seq = self.snd_max
            t.flags = TH_RST
            return self._emit(buf, cap, &t, 0, 0, now)
        if self.state == CLOSED or self.state == LISTEN:
            return 0
        if self.syn_pending and (self.state == SYN_SENT or self.state == SYN_RECEIVED):
            # <SEQ=ISS><CTL=SYN> or <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>, with our options;
            # the SYN-ACK repeats only those the peer offered (RFC 7323 §1.3, RFC 2018 §2).
            self._fill_header(&t, self.iss, TH_SYN if self.state == SYN_SENT else TH_SYN | TH_ACK,
                              now)
            t.has_mss = 1
            t.mss = self.cfg.mss
            if self.state == SYN_SENT:
                t.has_wscale = self.cfg.wscale_ok
                t.sack_permitted = self.cfg.sack_ok
                t.has_timestamps = self.cfg.timestamps_ok
                t.tsecr = 0
                if self.cfg.timestamps_ok:
                    t.tsval = self._ts_now(now)
            else:
                t.has_wscale = self.ws_ok
                t.sack_permitted = self.sack_ok
            t.wscale = self.rcv_wscale
            # RFC 7323 §2.2: the window of a SYN is not scaled.
            t.window = <uint16_t>(self.cfg.rcvbuf if self.cfg.rcvbuf < 0xffff else 0xffff)
            # A retransmitted SYN,ACK must not pull back an edge an ACK already offered
            # (§3.8.6.2.2: the window SHOULD NOT shrink).
            if self.state == SYN_SENT or seq_gt(self.rcv_nxt + t.window, self.rcv_adv):
                self.rcv_adv = self.rcv_nxt + t.window
            out = self._emit(buf, cap, &t, 0, 0, now)
            if out:
                self.syn_pending = 0
                if self.snd_max != self.iss:
                    self.stats.retransmits += 1
                elif not self.rtt_timing:
                    self.rtt_timing = 1
                    self.rtt_seq = self.iss
                    self.rtt_time = now
                self.snd_nxt = self.iss + 1
                self.snd_max = self.iss + 1
                if self.first_unacked_time == 0:
                    self.first_unacked_time = now   # TCP_USER_TIMEOUT counts from the SYN too
                self._arm_rtx(now)
            return out
        if self.state == SYN_SENT:
            return 0
        if self.state == SYN_RECEIVED:
            if self.ack_now:
                self._fill_header(&t, self.snd_nxt, TH_ACK, now)
                return self._emit(buf, cap, &t, 0, 0, now)
            return 0
        if self.state != TIME_WAIT and self.state != FIN_WAIT_2 and self.state != CLOSED:
            out = self._emit_data(buf, cap, now)
            if out:
                return out
        if self.probe_pending:
            self.probe_pending = 0
            out = self._emit_probe(buf, cap, now)
            if out:
                return out
        if self.keepalive_pending:
            # RFC 1122 §4.2.3.6: <SEQ=SND.NXT-1> with no data elicits an ACK from a live peer.
            self.keepalive_pending = 0
            self._fill_header(&t, self.snd_max - 1, TH_ACK, now)
            return self._emit(buf, cap, &t, 0, 0, now)
        if self.ack_now:
            # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, SND.NXT being the highest sent (snd_max): a
            # pure ACK that carried a rewound snd_nxt would fail the peer's acceptability test
            # (RFC 9293 §3.10.7.4) and its ACK field would never be read.
            self._fill_header(&t, self.snd_max, TH_ACK, now)
            out = self._emit(buf, cap, &t, 0, 0, now)
            if out and self.dupacks_to_send > 1:
                self.dupacks_to_send -= 1
                self.ack_now = 1          # one more duplicate ACK owed
            else:
                self.dupacks_to_send = 0
            return out
        return 0

    cdef size_t _emit_probe(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil:
        """A zero-window probe (RFC 9293 §3.8.6.1): one octet of new data beyond the window. It
        does not advance SND.NXT, so a refused probe is not a loss and counts no retry; the
        persist timer, not the retransmission timer, paces the next one (MUST-37: a peer that
        answers keeps the connection open)."""
        cdef tcp_repr t
        cdef uint32_t data_end = self.buf_seq + self.sndbuf.used
        # SND.NXT past the data (our FIN went): nothing unsent to probe with.
        cdef uint32_t unsent = data_end - self.snd_nxt if seq_lt(self.snd_nxt, data_end) else 0
        cdef size_t out
        if self.snd_wnd != 0 or self.snd_nxt != self.snd_una:
            return 0
        if unsent == 0:
            return 0
        self._fill_header(&t, self.snd_nxt, TH_ACK, now)
        out = self._emit(buf, cap, &t, self.snd_nxt - self.buf_seq, 1, now)
        if out:
            self.stats.zero_window_probes += 1
            if self.sack_ok:
                txq_sent(&self.txq, self.snd_nxt, self.snd_nxt + 1, now, self.smss, 0)
            if seq_gt(self.snd_nxt + 1, self.snd_max):
                self.snd_max = self.snd_nxt + 1
            self.t_persist = now + (<uint64_t>rtt_current_rto(&self.rtt) << self.persist_backoff)
            if self.t_persist - now > self.cfg.rto_max:
                self.t_persist = now + self.cfg.rto_max
        return out

    cdef size_t _emit_rexmit(self, uint8_t* buf, size_t cap, uint32_t seq, uint32_t end,
                             uint8_t cause, uint64_t now) noexcept nogil:
        """Send [seq, end) of the sequence space again (data, and the FIN if it lies there):
        RACK_retransmit_data (RFC 8985 §6.1) and the counters of its cause."""
        cdef tcp_repr t
        cdef uint32_t data_end = self.buf_seq + self.sndbuf.used
        cdef uint32_t n = 0
        cdef bint fin
        cdef size_t out
        if seq_lt(seq, data_end):
            n = (end if seq_lt(end, data_end) else data_end) - seq
        fin = self.fin_sent and seq_le(seq, self.fin_seq) and seq_lt(self.fin_seq, end) and \
            seq + n == self.fin_seq
        if n == 0 and not fin:
            # Nothing of it is ours to send (cannot happen while records mirror the ring):
            # count it sent so that it is not chosen forever.
            txq_retransmitted(&self.txq, seq, end, now, 0)
            return 0
        self._fill_header(&t, seq, TH_ACK | TH_PSH | (TH_FIN if fin else 0), now)
        out = self._emit(buf, cap, &t, seq - self.buf_seq, n, now)
        if not out:
            return 0
        txq_retransmitted(&self.txq, seq, seq + n + (1 if fin else 0), now,
                          TXS_TLP if cause == RXT_TLP else 0)
        self.stats.retransmits += 1
        self.stats.bytes_retransmitted += n
        if cause == RXT_RTO:
            self.stats.retrans_rto += 1
        elif cause == RXT_TLP:
            self.stats.retrans_tlp += 1
        else:
            self.stats.retrans_rack += 1
        if self.in_recovery:
            prr_on_send(&self.prr, n + (1 if fin else 0))
        if self.undo_valid and cause != RXT_TLP:
            self.undo_retrans += 1
            self.undo_rexmitted = 1
        if not self.retrans_ts_set:
            # Eifel (RFC 3522 §2): the TSval of the first retransmission still outstanding (a
            # probe's too, as Linux's retrans_stamp): an ACK echoing an older one acknowledges
            # an original transmission.
            self.retrans_ts_set = 1
            self.retrans_tsval = self._ts_now(now)
        if self.rtt_timing and seq_le(seq, self.rtt_seq):
            self.rtt_timing = 0           # Karn (RFC 6298 §3)
        self._arm_rtx(now)
        return out

    cdef size_t _emit_loss_probe(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil:
        """RFC 8985 §7.3 TLP_send_probe: one segment of new data if the peer's window allows,
        else the highest-sequence segment again. Then the RTO, not the PTO, is armed."""
        cdef tcp_repr t
        cdef uint32_t data_end = self.buf_seq + self.sndbuf.used
        cdef uint32_t seq = self.snd_nxt, n = 0, flight = self.snd_nxt - self.snd_una, start, end
        cdef bint fin = False
        cdef size_t out = 0
        cdef tx_seg* last
        self.tlp_pending = 0
        if self.txq.count == 0 or not seq_lt(self.snd_una, self.snd_max):
            return 0
        if self.snd_nxt == self.snd_max and seq_lt(seq, data_end) and flight < self.snd_wnd and \
                txq_room(&self.txq, 1):
            n = data_end - seq
            if n > self.smss:
                n = self.smss
            if n > self.snd_wnd - flight:
                n = self.snd_wnd - flight
            fin = self.fin_queued and not self.fin_sent and seq + n == data_end
            self._fill_header(&t, seq, TH_ACK | TH_PSH | (TH_FIN if fin else 0), now)
            out = self._emit(buf, cap, &t, seq - self.buf_seq, n, now)
            if out:
                self.stats.bytes_out += n
                txq_sent(&self.txq, seq, seq + n + (1 if fin else 0), now, self.smss, TXS_TLP)
                self.snd_nxt = seq + n
                if fin:
                    self.fin_sent = 1
                    self.fin_seq = seq + n
                    self.snd_nxt += 1
                self.snd_max = self.snd_nxt
                self.tlp_is_retrans = 0
        else:
            last = txq_at(&self.txq, self.txq.count - 1)
            end = last.end
            start = last.start
            if end - start > self.smss:
                start = end - self.smss
            out = self._emit_rexmit(buf, cap, start, end, RXT_TLP, now)
            if out:
                self.tlp_is_retrans = 1
        if out:
            self.tlp_active = 1
            self.tlp_end_seq = self.snd_max
            self.tlp_rtt_seen = 0
            self.stats.tlp_probes += 1
            self.t_rtx = now + rtt_current_rto(&self.rtt)
        return out

    cdef size_t _emit_data(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil:
        """Choose and send one data (or FIN) segment: a retransmission if one is due, else new
        data as the windows, Nagle (RFC 9293 §3.7.4) and sender SWS avoidance (§3.8.6.2.1)
        allow."""
        cdef tcp_repr t
        cdef uint32_t data_end = self.buf_seq + self.sndbuf.used
        cdef uint32_t seq, n, unsent, wnd, flight, usable, seg_max, pipe = 0, end, room
        cdef uint8_t flags
        cdef bint fin = False
        cdef size_t out

        if self.sack_ok:
            # With SACK (RFC 8985, RFC 6675 §5 NextSeg order): a tail loss probe; then what
            # RACK marked lost, as cwnd - pipe allows (PRR sets cwnd in fast recovery); then
            # new data.
            if self.tlp_pending:
                out = self._emit_loss_probe(buf, cap, now)
                if out:
                    return out
            pipe = self._pipe()
            if self.txq.lost_out and txq_next_lost(&self.txq, self.smss, &seq, &end):
                room = self.cc.cwnd - pipe if self.cc.cwnd > pipe else 0
                if room >= (end - seq if end - seq < self.smss else self.smss) or \
                        (self.frto == 1 and seq == self.snd_una):
                    # (F-RTO step 1: the timeout's own retransmission goes whatever the window.)
                    return self._emit_rexmit(buf, cap, seq, end,
                                             RXT_RTO if self.rto_recovery else RXT_RACK, now)
                return 0
        elif self.rexmit_head and seq_lt(self.snd_una, data_end + (1 if self.fin_queued else 0)):
            # NewReno (RFC 6582 §3.2 steps 2 and 3): the first unacknowledged segment.
            self.rexmit_head = 0
            seq = self.snd_una
            n = data_end - seq if seq_lt(seq, data_end) else 0
            if n > self.snd_max - seq:
                # The lost segment is what was sent (RFC 5681 §3.2), never bytes beyond
                # SND.MAX (and the peer's window: §3.8.6.2.1).
                n = self.snd_max - seq
            if n > self.smss:
                n = self.smss
            flags = TH_ACK
            if self.fin_sent and seq + n == self.fin_seq:
                flags |= TH_FIN           # the FIN goes again with the last byte
            self._fill_header(&t, seq, flags | TH_PSH, now)
            out = self._emit(buf, cap, &t, seq - self.buf_seq, n, now)
            if out:
                self.stats.retransmits += 1
                self.stats.retrans_fast += 1
                self.stats.bytes_retransmitted += n
                self.rtt_timing = 0 if seq_le(seq, self.rtt_seq) else self.rtt_timing
                self._arm_rtx(now)
            return out

        # 2. New data (or, without SACK, data again after an RTO rewound SND.NXT) from SND.NXT.
        seq = self.snd_nxt
        unsent = data_end - seq if seq_lt(seq, data_end) else 0
        flight = self.snd_nxt - self.snd_una
        # With TSO the device cuts a large segment into MSS-sized ones (RFC 9293 §3.7.1 still
        # holds on the wire); without it a segment is at most one MSS.
        seg_max = self.smss
        if self.cfg.tso_max > self.smss:
            seg_max = self.cfg.tso_max - self.cfg.tso_max % self.smss
        usable = self.snd_wnd - flight if self.snd_wnd > flight else 0
        if self.sack_ok:
            # RFC 6675 NextSeg (2): new data as far as cwnd - pipe allows (outside recovery too,
            # as Linux's in-flight count: SACKed data has left the network).
            wnd = self.cc.cwnd - pipe if self.cc.cwnd > pipe else 0
        else:
            wnd = self.cc.cwnd - flight if self.cc.cwnd > flight else 0
        if wnd < usable:
            usable = wnd
        n = unsent
        if n > seg_max:
            n = seg_max
        if n > usable:
            n = usable
        fin = self.fin_queued and seq + n == data_end and \
            (not self.fin_sent or seq_le(seq, self.fin_seq))
        if n == 0 and not fin:
            if unsent and self.snd_wnd == 0 and flight == 0 and self.t_persist == 0:
                # Zero window with data waiting: start probing (RFC 9293 §3.8.6.1, SHLD-29).
                self.t_persist = now + rtt_current_rto(&self.rtt)
            return 0
        if n < unsent and n < self.smss:
            # Window-limited short segment: sender SWS avoidance (RFC 9293 §3.8.6.2.1) sends it
            # only if it is at least half the largest window the peer has offered.
            if n < self.max_snd_wnd // 2 and flight:
                return 0
        elif n == unsent and n < self.smss and n and not fin:
            # Nagle (RFC 9293 §3.7.4, RFC 896): a short segment waits while data is unacked.
            if not self.cfg.nodelay and flight and seq_ge(seq, self.snd_max):
                return 0
        if self.sack_ok and not txq_room(&self.txq, (n + 1 + self.smss - 1) // self.smss + 1):
            return 0                      # the transmit records are full: wait for ACKs
        flags = TH_ACK
        if n and seq + n == data_end:
            flags |= TH_PSH
        if fin:
            flags |= TH_FIN
        self._fill_header(&t, seq, flags, now)
        out = self._emit(buf, cap, &t, seq - self.buf_seq, n, now)
        if not out:
            return 0
        if seq_lt(seq, self.snd_max):
            self.stats.retransmits += 1
            self.stats.bytes_retransmitted += n
        else:
            self.stats.bytes_out += n
            if not self.rtt_timing and n:
                # RFC 6298 §3: time one segment per RTT.
                self.rtt_timing = 1
                self.rtt_seq = seq
                self.rtt_time = now
        if self.first_unacked_time == 0:
            self.first_unacked_time = now
        self.snd_nxt = seq + n
        if fin:
            self.fin_sent = 1
            self.fin_seq = seq + n
            self.snd_nxt += 1
        if seq_gt(self.snd_nxt, self.snd_max):
            self.snd_max = self.snd_nxt
        self._arm_rtx(now)
        self.t_persist = 0
        if self.sack_ok:
            txq_sent(&self.txq, seq, self.snd_nxt, now, self.smss, 0)   # RFC 8985 §6.1
            if self.in_recovery:
                prr_on_send(&self.prr, self.snd_nxt - seq)
            self._schedule_loss_probe(now)
        return out

    # =========================================================================================
    # Python-level interface (tests and tools)
    # =========================================================================================

    def __init__(self, local=None, remote=None, *, secret=None, iss=None, MemPool mem_pool=None,
                 **options):
        """Tcb(local=(addr, port), remote=(addr, port) or None, *, secret=None, iss=None,
        mem_pool=None, **options).

        ``options`` (times in seconds) are those of :data:`OPTION_NAMES`: mss, sndbuf, rcvbuf
        (fixed sizes, as SO_SNDBUF/SO_RCVBUF: auto-tuning off), sndbuf_max, rcvbuf_max
        (auto-tuning ceilings, 4 MiB and 6 MiB by default), cc ("cubic" or "newreno"), nodelay, msl, rto_initial, rto_min, rto_max, syn_retries,
        retries, user_timeout, delack, keepalive, keepidle, keepintvl, keepcnt, fin_timeout,
        window_scaling, timestamps, sack, challenge_ack_limit, ttl, tso_max, csum_partial.
        ``secret`` is the RFC 6528 key as two 64-bit ints (random if not given); ``iss`` fixes
        the initial sequence number instead (for tests of the wrap). ``mem_pool`` (a
        ``tcpfast._ring.MemPool``) charges the connection's buffers to a shared memory limit.
        """
        cdef ip_repr ip
        config_update(&self.cfg, options)
        if secret is None:
            raw = os.urandom(16)
            secret = (int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little"))
        if iss is not None:
            self.iss_fixed = 1
            self.iss_value = iss
        self.cfg.secret.k0 = secret[0]
        self.cfg.secret.k1 = secret[1]
        self.configure(&self.cfg)
        if mem_pool is not None:
            self.set_mem_pool(mem_pool.p)
        if local is not None:
            memset(&ip, 0, sizeof(ip))
            laddr = ipaddress.ip_address(local[0])
            ip.version = laddr.version
            lb = laddr.packed
            memcpy(ip.src, <const char*>lb, len(lb))
            rport = 0
            if remote is not None:
                raddr = ipaddress.ip_address(remote[0])
                if raddr.version != laddr.version:
                    raise ValueError("local and remote addresses of different families")
                rb = raddr.packed
                memcpy(ip.dst, <const char*>rb, len(rb))
                rport = remote[1]
            self.set_endpoints(&ip, local[1], rport)

    # --- driving -----------------------------------------------------------------------------

    def connect(self, now):
        """Active open at time ``now``."""
        _check(self.user_open(_us(now)))

    def listen(self):
        """Passive open."""
        _check(self.user_listen())

    def set_options(self, **options):
        """Change options of an open connection, as setsockopt does through the engine."""
        config_update(&self.cfg, options)
        self.reconfigure()

    def receive(self, packet, now):
        """Hand one IP packet (bytes) to the connection at time ``now``. Malformed packets raise
        ``WireError`` (the engine drops and counts them instead). A reset it calls for is queued
        and comes out of :meth:`transmit`."""
        cdef Py_buffer view
        cdef pkt_repr p
        cdef wire_reason r
        cdef int action
        cdef uint8_t out[128]
        cdef size_t k
        from tcpfast._wire import WireError
        PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE)
        try:
            r = packet_parse(<const uint8_t*>view.buf, <size_t>view.len, &p, 0)
            if r != WIRE_OK:
                raise WireError(r)
            if p.ip.protocol != PROTO_TCP:
                raise ValueError("not a TCP packet")
            action = self.on_segment(&p, <const uint8_t*>view.buf, _us(now))
            if action == SEG_REPLY_RST:
                k = reset_for_segment(&p, out, sizeof(out), self.cfg.ttl)
                if k:
                    self.stats.rst_out += 1
                    if self._py_out is None:
                        self._py_out = []
                    self._py_out.append((<char*>out)[:k])
        finally:
            PyBuffer_Release(&view)

    def transmit(self, now, limit=10000):
        """All segments due at time ``now`` (a list of IP packets as bytes)."""
        cdef bytearray buf = bytearray(65536 + 120)
        cdef uint8_t* b = <uint8_t*><char*>buf
        cdef size_t k
        cdef uint64_t t = _us(now)
        out = self._py_out if self._py_out is not None else []
        self._py_out = None
        for _ in range(limit):
            k = self.poll_transmit(b, len(buf), t)
            if k == 0:
                break
            out.append(bytes(buf[:k]))
        return out

    def next_event(self):
        """When to call :meth:`transmit` next (seconds), 0.0 for at once, None when idle."""
        cdef uint64_t t = self.poll_at()
        if self._py_out:
            return 0.0
        if t == 0:
            return None
        if t == 1:
            return 0.0
        return t / 1e6

    # --- user calls ------------------------------------------------------------------------------

    def send(self, data, now=0):
        """Queue bytes; returns how many were taken (OSError with the errno otherwise)."""
        cdef const uint8_t[::1] d = memoryview(data).cast("B") if len(data) else b"\0"
        cdef int64_t r = self.user_send(&d[0], len(data), _us(now))
        _check(r)
        return r

    def recv(self, n=65536, *, peek=False, now=0):
        """Up to ``n`` received bytes; b"" at end of stream; BlockingIOError when none yet."""
        cdef bytearray out = bytearray(n)
        cdef uint8_t* b = <uint8_t*><char*>out
        cdef int64_t r
        if n <= 0:
            raise ValueError("n must be positive")
        r = self.user_recv(b, n, peek, _us(now))
        _check(r)
        return bytes(out[:r])

    def shutdown(self, now=0):
        _check(self.user_shutdown(_us(now)))

    def close(self, now=0):
        _check(self.user_close(_us(now)))

    def abort(self, now=0):
        _check(self.user_abort(_us(now)))

    # --- introspection --------------------------------------------------------------------------

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    @property
    def local(self):
        return (_addr(self.ip.src, self.ip.version), self.lport)

    @property
    def remote(self):
        return (_addr(self.ip.dst, self.ip.version), self.rport)

    @property
    def info(self):
        """The RFC 9293 variables and the congestion state, as a dict (for tests and ``ss``)."""
        return dict(
            state=STATE_NAMES[self.state], iss=self.iss, irs=self.irs, snd_una=self.snd_una,
            snd_nxt=self.snd_nxt, snd_max=self.snd_max, snd_wnd=self.snd_wnd,
            snd_wl1=self.snd_wl1, snd_wl2=self.snd_wl2, rcv_nxt=self.rcv_nxt,
            rcv_wnd=(self.rcv_adv - self.rcv_nxt) & 0xffffffff, snd_wscale=self.snd_wscale,
            rcv_wscale=self.rcv_wscale, smss=self.smss, peer_mss=self.peer_mss,
            ws_ok=bool(self.ws_ok), ts_ok=bool(self.ts_ok), sack_ok=bool(self.sack_ok),
            ts_recent=self.ts_recent, cwnd=self.cc.cwnd, ssthresh=self.cc.ssthresh,
            srtt=self.rtt.srtt if self.rtt.has_sample else None, rttvar=self.rtt.rttvar,
            rto=rtt_current_rto(&self.rtt), in_recovery=bool(self.in_recovery),
            dupacks=self.dupacks, recv_queue=self.rcvbuf.used,
            send_queue=self.sndbuf.used, send_space=ring_space(&self.sndbuf),
            rcvbuf=self.cfg.rcvbuf, sndbuf=self.cfg.sndbuf, rcvbuf_cap=self.rcvbuf.cap,
            sndbuf_cap=self.sndbuf.cap, rcvbuf_alloc=self.rcvbuf.size,
            sndbuf_alloc=self.sndbuf.size, rcv_rtt=self.rcv_rtt_us or None,
            rcvbuf_lock=bool(self.cfg.rcvbuf_lock), sndbuf_lock=bool(self.cfg.sndbuf_lock),
            fin_sent=bool(self.fin_sent), fin_acked=bool(self.fin_acked),
            rcv_fin=bool(self.rcv_fin), error=self.error, retries=self.retries,
            ooo_ranges=self.ooo.count,
            rto_recovery=bool(self.rto_recovery), frto=self.frto,
            pipe=txq_pipe(&self.txq, self.snd_una, self.snd_max) if self.sack_ok else None,
            sacked_out=self.txq.sacked_out, lost_out=self.txq.lost_out,
            retrans_out=self.txq.retrans_out, tx_records=self.txq.count,
            rack_rtt=self.rack.rtt, rack_min_rtt=self.rack.min_rtt, reo_wnd=self.rack.reo_wnd,
            reo_wnd_mult=self.rack.reo_wnd_mult, reordering_seen=bool(self.rack.reordering_seen),
            tlp_active=bool(self.tlp_active), tlp_is_retrans=bool(self.tlp_is_retrans),
            prr_delivered=self.prr.prr_delivered, prr_out=self.prr.prr_out,
            recover_fs=self.prr.recover_fs,
            timers=dict(rtx=self.t_rtx or None, delack=self.t_delack or None,
                        persist=self.t_persist or None, keepalive=self.t_keepalive or None,
                        timewait=self.t_timewait or None, reo=self.t_reo or None,
                        tlp=self.t_tlp or None),
        )

    @property
    def tx_records(self):
        """The transmit records of RACK (RFC 8985 §5.2), for tests: a list of (start, end,
        xmit_ts in us, flags) in sequence order, flags a frozenset of "sacked", "lost",
        "retransmitted", "rxt_out", "tlp"."""
        return txq_as_list(&self.txq)

    @property
    def counters(self):
        """The connection's counters (``tcb_stats``) as a dict."""
        return self.stats

    @property
    def transitions(self):
        """How many times the connection entered each state (through set_state), by name."""
        cdef int s
        return {STATE_NAMES[s]: self.entered[s] for s in range(<int>TCP_STATE_COUNT)}


STATE_NAMES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
               "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")
# The same states as Linux numbers them (include/net/tcp_states.h), as TCP_INFO reports them.
TCPI_STATE = (7, 10, 2, 3, 1, 4, 5, 8, 11, 9, 6)


cdef uint64_t _us(object seconds) except? 0xffffffffffffffff:
    """Seconds (float or int) to microseconds."""
    if seconds < 0:
        raise ValueError("times must not be negative")
    return <uint64_t>round(seconds * 1000000)


cdef object _addr(const uint8_t* a, uint8_t version):
    if version == 4:
        return str(ipaddress.IPv4Address((<const char*>a)[:4]))
    if version == 6:
        return str(ipaddress.IPv6Address((<const char*>a)[:16]))
    return None


cdef int64_t _check(int64_t r) except -1:
    if r < 0:
        err = -r
        raise OSError(err, os.strerror(err))
    return r


OPTION_NAMES = ("mss", "sndbuf", "rcvbuf", "sndbuf_max", "rcvbuf_max", "cc", "nodelay", "msl", "rto_initial", "rto_min",
                "rto_max", "syn_retries", "retries", "user_timeout", "delack", "keepalive",
                "keepidle", "keepintvl", "keepcnt", "fin_timeout", "window_scaling", "timestamps",
                "sack", "challenge_ack_limit", "ttl", "tso_max", "csum_partial")


cdef inline uint64_t _int_in(object v, str name, uint64_t lo, uint64_t hi) except? 0xffffffffffffffff:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {v!r}")
    return <uint64_t>v


cdef inline uint64_t _secs(object v, str name, double hi) except? 0xffffffffffffffff:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(v).__name__}")
    if not 0 <= v <= hi:
        raise ValueError(f"{name} must be in 0..{hi} seconds, got {v!r}")
    return <uint64_t>round(v * 1000000)


cdef dict config_options(const tcb_config* cfg):
    """A configuration as options by name (times in seconds), as config_update takes them:
    ``config_options(tcb_config_default)`` are the defaults of every connection."""
    return dict(
        mss=cfg.mss, sndbuf=cfg.sndbuf, rcvbuf=cfg.rcvbuf, sndbuf_max=cfg.sndbuf_max,
        rcvbuf_max=cfg.rcvbuf_max, cc="cubic" if cfg.cc == CC_CUBIC else "newreno",
        nodelay=bool(cfg.nodelay), msl=cfg.msl / 1e6, rto_initial=cfg.rto_initial / 1e6,
        rto_min=cfg.rto_min / 1e6, rto_max=cfg.rto_max / 1e6, syn_retries=cfg.syn_retries,
        retries=cfg.retries, user_timeout=cfg.user_timeout / 1e6, delack=cfg.delack / 1e6,
        keepalive=bool(cfg.keepalive), keepidle=cfg.keepidle / 1e6,
        keepintvl=cfg.keepintvl / 1e6, keepcnt=cfg.keepcnt, fin_timeout=cfg.fin_timeout / 1e6,
        window_scaling=bool(cfg.wscale_ok), timestamps=bool(cfg.timestamps_ok),
        sack=bool(cfg.sack_ok), challenge_ack_limit=cfg.challenge_ack_limit, ttl=cfg.ttl,
        tso_max=cfg.tso_max, csum_partial=bool(cfg.csum_partial))


def config_defaults() -> dict:
    """The defaults of every connection (tcb_config_default), as options by name."""
    cdef tcb_config cfg
    tcb_config_default(&cfg)
    return config_options(&cfg)


def config_check(dict options) -> None:
    """Check connection options by name (times in seconds), as the Tcb constructor, the engine
    and ``Stack(**options)`` take them: TypeError for an unknown one, ValueError for a value out
    of range (the errors config_update raises)."""
    cdef tcb_config cfg
    tcb_config_default(&cfg)
    config_update(&cfg, options)


cdef int config_update(tcb_config* cfg, dict options) except -1:
    """Apply options (times in seconds) to a configuration, checking every value; an unknown
    option is a TypeError, a value out of range a ValueError."""
    for key, v in options.items():
        if key == "mss":
            cfg.mss = <uint16_t>_int_in(v, key, 88, 65495)
        elif key == "sndbuf":
            # SO_SNDBUF: a fixed size; auto-tuning is off for this direction (SOCK_SNDBUF_LOCK).
            cfg.sndbuf = <uint32_t>_int_in(v, key, 1, 1 << 30)
            cfg.sndbuf_lock = 1
        elif key == "rcvbuf":
            cfg.rcvbuf = <uint32_t>_int_in(v, key, 1, 1 << 30)
            cfg.rcvbuf_lock = 1
        elif key == "sndbuf_max":
            # Auto-tuning ceilings (tcp_wmem[2] / tcp_rmem[2]); at or below the initial size
            # (256 KiB) they turn auto-tuning off.
            cfg.sndbuf_max = <uint32_t>_int_in(v, key, 0, 1 << 30)
        elif key == "rcvbuf_max":
            cfg.rcvbuf_max = <uint32_t>_int_in(v, key, 0, 1 << 30)
        elif key == "cc":
            if v not in ("cubic", "newreno"):
                raise ValueError(f"cc must be 'cubic' or 'newreno', not {v!r}")
            cfg.cc = CC_CUBIC if v == "cubic" else CC_NEWRENO
        elif key == "nodelay":
            cfg.nodelay = bool(v)
        elif key == "msl":
            cfg.msl = _secs(v, key, 3600.0)
        elif key == "rto_initial":
            cfg.rto_initial = <uint32_t>_secs(v, key, 3600.0)
        elif key == "rto_min":
            cfg.rto_min = <uint32_t>_secs(v, key, 3600.0)
        elif key == "rto_max":
            cfg.rto_max = <uint32_t>_secs(v, key, 3600.0)
        elif key == "syn_retries":
            cfg.syn_retries = <uint8_t>_int_in(v, key, 0, 255)
        elif key == "retries":
            cfg.retries = <uint8_t>_int_in(v, key, 0, 255)
        elif key == "user_timeout":
            cfg.user_timeout = _secs(v, key, 1e9)
        elif key == "delack":
            cfg.delack = <uint32_t>_secs(v, key, 0.5)     # RFC 9293 §3.8.6.3: under 0.5 s
        elif key == "keepalive":
            cfg.keepalive = bool(v)
        elif key == "keepidle":
            cfg.keepidle = _secs(v, key, 1e9)
        elif key == "keepintvl":
            cfg.keepintvl = _secs(v, key, 1e9)
        elif key == "keepcnt":
            cfg.keepcnt = <uint8_t>_int_in(v, key, 1, 255)
        elif key == "fin_timeout":
            cfg.fin_timeout = _secs(v, key, 1e9)
        elif key == "window_scaling":
            cfg.wscale_ok = bool(v)
        elif key == "timestamps":
            cfg.timestamps_ok = bool(v)
        elif key == "sack":
            cfg.sack_ok = bool(v)
        elif key == "challenge_ack_limit":
            cfg.challenge_ack_limit = <uint32_t>_int_in(v, key, 0, 1 << 30)
        elif key == "ttl":
            cfg.ttl = <uint8_t>_int_in(v, key, 1, 255)
        elif key == "tso_max":
            cfg.tso_max = <uint32_t>_int_in(v, key, 0, 65535)
        elif key == "csum_partial":
            cfg.csum_partial = bool(v)
        else:
            raise TypeError(f"unknown TCP option {key!r}")
    if cfg.rto_min > cfg.rto_max:
        raise ValueError("rto_min must not exceed rto_max")
    return 0
