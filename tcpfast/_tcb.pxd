# cython: language_level=3
"""One TCP connection: the RFC 9293 Transmission Control Block and its state machine, sans-I/O.

Segments and the time go in (``on_segment``, ``now`` in microseconds); segments come out
(``poll_transmit`` writes one whole IP packet into a caller's buffer); ``poll_at`` says when to call
again. The TCB never touches a device and never reads a clock, so tests drive it on a virtual clock.
User calls (``user_send``, ``user_recv``, ``user_shutdown``, ``user_close``, ``user_abort``) return
byte counts or negative errno values that the socket layer raises as the kernel's exceptions.

Variables are named as RFC 9293 §3.3.1 names them, in lower case.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t

from tcpfast._wire cimport ip_repr, tcp_repr, pkt_repr
from tcpfast._ring cimport ring, mem_pool, ring_space
from tcpfast._ranges cimport seq_ranges
from tcpfast._rtx cimport rtt_estimator
from tcpfast._cc cimport cc_state, cc_algo, prr_state
from tcpfast._rack cimport tx_queue, rack_state
from tcpfast._isn cimport isn_secret


# RFC 9293 §3.3.2 states, in the order of the RFC's diagram.
ctypedef enum tcp_state:
    CLOSED = 0
    LISTEN
    SYN_SENT
    SYN_RECEIVED
    ESTABLISHED
    FIN_WAIT_1
    FIN_WAIT_2
    CLOSE_WAIT
    CLOSING
    LAST_ACK
    TIME_WAIT
    TCP_STATE_COUNT


# What on_segment asks of its caller.
cdef enum:
    SEG_OK = 0                  # consumed (or dropped silently)
    SEG_REPLY_RST = 1           # answer with reset_for_segment() (RFC 9293 §3.10.7)


# What a connection is ready for (tcb_poll, below): the bits of <poll.h>, and one of our own.
cdef enum:
    POLL_IN = 0x001             # data, end of stream, an error to collect
    POLL_OUT = 0x004            # room to send (or sending would fail at once)
    POLL_ERR = 0x008            # an error, and the connection is gone
    POLL_HUP = 0x010            # both directions are done (or the connection is gone)
    POLL_RDHUP = 0x2000         # the peer's FIN arrived
    POLL_NOMEM = 0x10000        # not writable until the stack's buffer memory comes back


ctypedef struct tcb_config:
    uint32_t sndbuf             # bytes; SO_SNDBUF
    uint32_t rcvbuf             # bytes; SO_RCVBUF (auto-tuning grows the connection's copy)
    uint32_t sndbuf_max         # auto-tuning ceiling of the send buffer (Linux tcp_wmem[2])
    uint32_t rcvbuf_max         # ... of the receive buffer (tcp_rmem[2]); sizes the window scale
    uint8_t sndbuf_lock         # SO_SNDBUF was set: no send auto-tuning (SOCK_SNDBUF_LOCK)
    uint8_t rcvbuf_lock         # SO_RCVBUF was set: no receive auto-tuning (SOCK_RCVBUF_LOCK)
    uint16_t mss                # largest segment we receive (MTU - headers), advertised in SYNs
    uint8_t nodelay             # TCP_NODELAY: Nagle off
    uint8_t wscale_ok           # offer window scaling (RFC 7323 §2)
    uint8_t timestamps_ok       # offer timestamps (RFC 7323 §3)
    uint8_t sack_ok             # offer SACK (RFC 2018)
    cc_algo cc
    uint64_t msl                # us; TIME-WAIT lasts 2*MSL (RFC 9293 §3.4.2)
    uint32_t rto_initial        # us
    uint32_t rto_min            # us
    uint32_t rto_max            # us
    uint8_t syn_retries         # retransmissions of SYN / SYN-ACK before giving up
    uint8_t retries             # retransmissions of data before giving up (R2, RFC 9293 §3.8.3)
    uint64_t user_timeout       # us; TCP_USER_TIMEOUT, 0 = off
    uint32_t delack             # us; delayed-ACK timer (RFC 9293 §3.8.6.3: < 0.5 s)
    uint8_t keepalive           # SO_KEEPALIVE
    uint64_t keepidle           # us
    uint64_t keepintvl          # us
    uint8_t keepcnt
    uint64_t fin_timeout        # us; FIN-WAIT-2 after close() (Linux tcp_fin_timeout)
    uint32_t challenge_ack_limit  # per second (RFC 5961 §7)
    uint8_t ttl
    isn_secret secret
    uint32_t tso_max            # largest segment payload to emit (TSO); 0 = one MSS
    uint8_t csum_partial        # leave the TCP checksum to the device (pseudo-header sum only)


ctypedef struct tcb_stats:
    uint64_t segs_in
    uint64_t segs_out
    uint64_t bytes_in           # payload accepted in order
    uint64_t bytes_out          # payload sent for the first time
    uint64_t retransmits        # segments sent again (any cause)
    uint64_t bytes_retransmitted
    uint64_t fast_retransmits   # recoveries entered on duplicate ACKs / SACK
    uint64_t sack_recoveries    # of those, with the RFC 6675 scoreboard
    uint64_t rto_expirations
    uint64_t dupacks_in
    uint64_t challenge_acks
    uint64_t rst_in
    uint64_t rst_out
    uint64_t out_of_window      # segments failing the acceptability test
    uint64_t paws_rejected      # RFC 7323 §5
    uint64_t ooo_segments       # out-of-order segments held
    uint64_t ooo_dropped        # out-of-order segments dropped (range set full)
    uint64_t zero_window_probes
    uint64_t keepalive_probes
    uint64_t delayed_acks       # ACKs sent by the delayed-ACK timer
    uint64_t window_updates     # ACKs sent because the application opened the window
    # Loss recovery by cause (RFC 8985 RACK-TLP, RFC 6675/6937, RFC 5682, RFC 2883/3708)
    uint64_t retrans_rto        # segments retransmitted in RTO recovery
    uint64_t retrans_rack       # segments retransmitted because RACK marked them lost
    uint64_t retrans_fast       # segments retransmitted by NewReno fast retransmit (no SACK)
    uint64_t retrans_tlp        # tail loss probes that retransmitted the last segment
    uint64_t tlp_probes         # tail loss probes sent (new data or a retransmission)
    uint64_t tlp_recoveries     # probes that repaired a loss (RFC 8985 §7.4.2): cwnd reduced
    uint64_t rack_reo_timeouts  # RACK reordering timer expirations
    uint64_t dsack_in           # D-SACK blocks received
    uint64_t dsack_out          # D-SACK blocks sent (RFC 2883)
    uint64_t spurious_retrans   # retransmissions shown unnecessary (D-SACK, RFC 3708)
    uint64_t spurious_rtos      # timeouts shown spurious (F-RTO, RFC 5682; Eifel, RFC 3522)
    uint64_t undo_events        # cwnd/ssthresh restored after a spurious reduction (RFC 4015)


# What the engine keeps about a connection, in one struct the Tcb carries for it (as smoltcp's
# iface/socket_meta.rs): its place in the connection table, on the timer wheel, in the list of
# connections with something due and in its listener's queues, and the socket's readiness fds.
# Only the engine (_engine/) reads or writes it; the TCB never does. The lists hold these structs,
# so the engine keeps its connections typed; ``tcb`` leads back to the Tcb that carries it.
cdef struct conn_meta:
    void* tcb                   # the Tcb that carries this struct (borrowed: it is its owner)
    # the connection table (_engine/table.pxi): the chain, and the 4-tuple it is filed under
    conn_meta* hash_next        # also the chain of the list of connections to release
    uint8_t in_table
    uint8_t version
    uint16_t lport
    uint16_t rport
    uint8_t laddr[16]
    uint8_t raddr[16]
    uint8_t reuse               # its socket had SO_REUSEADDR (a TIME-WAIT keeps it, as Linux)
    # the timer wheel (_engine/timers.pxi)
    conn_meta* wheel_next
    conn_meta* wheel_prev
    uint64_t wheel_at
    int wheel_slot              # -1: not on the wheel
    # the list of connections with something due (_engine/dispatch.pxi)
    conn_meta* dirty_next
    uint8_t dirty
    # its listener (_engine/listen.pxi)
    void* listener              # borrowed: the Listener it came from (alive while it is listed)
    uint8_t embryonic           # counted in its listener's SYN queue
    uint8_t queued              # in its listener's accept queue
    # The socket's readiness (_engine/readiness.pxi). The socket's file descriptor is one end of a
    # socketpair (app_fd, its fileno()); the engine holds the other (peer_fd). A token byte
    # written into the peer end makes the socket's fd readable; filling the socket's own end up
    # makes it unwritable. So select, poll, epoll and asyncio see what the connection is ready for.
    int app_fd
    int peer_fd
    uint8_t rd_token            # the app end is readable (a token is queued)
    uint8_t wr_blocked          # the app end is filled (unwritable)
    uint8_t fd_phase            # 1: peer end shut for writing (RDHUP), 2: both (HUP), 3: error
    # What the socket has been told of its connect() and of the connection's error (Linux keeps
    # these in the socket: SS_CONNECTING, and sk_err cleared once reported). The engine keeps them
    # here so that the socket layer has no connection state of its own (Engine.connect_again,
    # connect_status, sock_error, recv_error, send_error).
    uint8_t connecting          # a connect() is in progress (Linux's SS_CONNECTING)
    uint8_t failed              # the attempt failed and was reported: connect() starts over
    uint8_t err_reported        # the connection's error was reported once


# What the socket layer may know of a connection: the state, the error, the peer's FIN, the
# endpoints, TCP_INFO's variables and the counters, copied at once by Tcb.get_facts() (under the
# engine's lock, by Engine.conn_facts) so that nobody reads a Tcb while the engine changes it.
ctypedef struct tcb_facts:
    int state                   # tcp_state
    int error                   # errno to report, 0 = none
    uint8_t rcv_fin             # the peer's FIN was received
    uint8_t version             # 4 or 6
    uint8_t laddr[16]
    uint8_t raddr[16]
    uint16_t lport
    uint16_t rport
    uint16_t smss
    uint8_t in_recovery
    uint8_t retries             # consecutive retransmission-timer expirations
    uint8_t ts_ok
    uint8_t sack_ok
    uint8_t ws_ok
    uint8_t snd_wscale
    uint8_t rcv_wscale
    uint32_t rto                # us
    uint32_t unacked            # bytes sent and not acknowledged (SND.MAX - SND.UNA)
    uint32_t rcv_wnd            # the window we last advertised, from RCV.NXT
    uint8_t has_srtt
    uint32_t srtt               # us (when has_srtt)
    uint32_t rttvar             # us
    uint32_t ssthresh
    uint32_t cwnd
    tcb_stats stats


@cython.final
cdef class Tcb:
    # --- identity -----------------------------------------------------------------------------
    cdef ip_repr ip             # template of our packets: src = local, dst = remote
    cdef uint16_t lport
    cdef uint16_t rport
    cdef tcb_config cfg
    cdef readonly int state     # tcp_state
    cdef uint8_t passive        # came from LISTEN (RFC 9293: "initiated with a passive OPEN")
    cdef uint8_t orphan         # the application closed: nobody reads any more
    cdef uint8_t synced         # reached ESTABLISHED once
    cdef uint32_t entered[TCP_STATE_COUNT]   # times each state was entered (set_state counts)
    cdef uint8_t iss_fixed      # tests: use iss_value rather than the RFC 6528 ISN
    cdef uint32_t iss_value
    cdef list _py_out           # Python-level interface: resets queued by receive()

    # --- send sequence variables (RFC 9293 §3.3.1) -------------------------------------------
    cdef uint32_t iss
    cdef uint32_t snd_una
    cdef uint32_t snd_nxt
    cdef uint32_t snd_max       # highest sequence number sent + 1 (snd_nxt may rewind after RTO)
    cdef uint32_t snd_wnd       # bytes (already scaled)
    cdef uint32_t max_snd_wnd   # largest window the peer offered (RFC 5961 §5.2, SWS)
    cdef uint32_t snd_wl1
    cdef uint32_t snd_wl2
    cdef uint8_t snd_wscale     # the peer's shift: applied to windows it sends
    cdef uint32_t buf_seq       # sequence number of the first byte in the send ring
    cdef uint16_t smss          # payload bytes in a full-sized segment we send
    cdef uint16_t peer_mss

    # --- receive sequence variables ----------------------------------------------------------
    cdef uint32_t irs
    cdef uint32_t rcv_nxt
    cdef uint32_t rcv_adv       # right edge of the window we last advertised
    cdef uint8_t rcv_wscale     # our shift
    cdef uint32_t last_ack_sent

    # --- options ------------------------------------------------------------------------------
    cdef uint8_t ws_ok
    cdef uint8_t ts_ok
    cdef uint8_t sack_ok
    cdef uint32_t ts_recent
    cdef uint64_t ts_recent_age
    cdef uint32_t ts_offset     # RFC 7323 §5.4: a random offset per connection

    # --- buffers ------------------------------------------------------------------------------
    cdef ring sndbuf
    cdef ring rcvbuf
    cdef seq_ranges ooo         # out-of-order data held beyond rcv_nxt
    cdef uint8_t ooo_fin        # a FIN arrived out of order at ooo_fin_seq
    cdef uint32_t ooo_fin_seq

    # --- buffer auto-tuning (Linux's tcp_rcv_space_adjust, tcp_rcv_rtt_*, tcp_sndbuf_expand) --
    cdef uint32_t rcvq_space    # bytes the application read in the last measured RTT
    cdef uint32_t rcvq_seq      # the read sequence number (RCV.NXT - unread) that RTT began at
    cdef uint64_t rcvq_time     # when it began (0: not started)
    cdef uint32_t rcv_rtt_us    # the receiver's RTT estimate (0: none yet)
    cdef uint32_t rcv_rtt_seq   # without timestamps: the edge whose arrival ends a sample
    cdef uint64_t rcv_rtt_time  # when that sample began (0: none running)
    cdef uint8_t snd_full       # the application found the send buffer full (SOCK_NOSPACE)

    # --- FIN bookkeeping ----------------------------------------------------------------------
    cdef uint8_t fin_queued     # the application shut down writing: FIN after the data
    cdef uint8_t fin_sent
    cdef uint32_t fin_seq       # sequence number of our FIN (= buf_seq + data length)
    cdef uint8_t fin_acked
    cdef uint8_t rcv_fin        # the peer's FIN was received (end of stream after the data)

    # --- timers: absolute times in us, 0 = not armed --------------------------------------
    cdef uint64_t t_rtx
    cdef uint64_t t_delack
    cdef uint64_t t_persist
    cdef uint64_t t_keepalive
    cdef uint64_t t_timewait    # also the FIN-WAIT-2 timeout of an orphan
    cdef uint64_t first_unacked_time  # when the oldest unacknowledged data was first sent
    cdef uint64_t last_rcv_time
    cdef uint64_t last_snd_time
    cdef uint8_t persist_backoff
    cdef uint8_t keepalive_sent
    cdef uint8_t retries        # consecutive retransmission-timer expirations

    # --- RTT, loss recovery, congestion -------------------------------------------------------
    cdef rtt_estimator rtt
    cdef uint8_t rtt_timing     # Karn: timing one segment
    cdef uint32_t rtt_seq
    cdef uint64_t rtt_time
    cdef cc_state cc
    cdef uint32_t dupacks
    cdef uint8_t in_recovery
    cdef uint32_t recover       # RFC 6582 "recover" / RFC 6675 RecoveryPoint
    cdef uint8_t rexmit_head    # NewReno: retransmit the segment at snd_una next
    # RACK-TLP (RFC 8985) and what goes with it, for connections that use SACK
    cdef tx_queue txq           # one record per segment in flight (_rack)
    cdef rack_state rack
    cdef prr_state prr          # RFC 6937, during fast recovery
    cdef uint8_t rto_recovery   # after an RTO, until SND.UNA reaches recover (Linux's CA_Loss)
    cdef uint8_t frto           # RFC 5682 F-RTO: 1 after the RTO retransmission, 2 after new data
    cdef uint8_t tlp_active     # TLP.end_seq is set: a probe is unacknowledged
    cdef uint8_t tlp_is_retrans # TLP.is_retrans
    cdef uint8_t tlp_pending    # the PTO expired: send a probe
    cdef uint8_t tlp_rtt_seen   # an RTT sample since the last probe (§7.3 condition 2)
    cdef uint32_t tlp_end_seq   # TLP.end_seq
    cdef uint64_t t_reo         # RACK reordering timer
    cdef uint64_t t_tlp         # TLP PTO timer
    # Undo of a spurious reduction (RFC 3522/4015 with timestamps, RFC 2883/3708 with D-SACK)
    cdef uint8_t undo_valid     # prior_cwnd/prior_ssthresh hold what an undo restores
    cdef uint8_t retrans_ts_set # retrans_tsval holds the oldest outstanding retransmission's
    cdef uint8_t undo_rexmitted # the episode retransmitted something
    cdef uint32_t prior_cwnd
    cdef uint32_t prior_ssthresh
    cdef uint32_t undo_marker   # SND.UNA when the episode began
    cdef int32_t undo_retrans   # retransmissions of the episode not yet D-SACKed
    cdef uint32_t retrans_tsval # TSval of the first retransmission still outstanding (Eifel)

    # --- pending output -----------------------------------------------------------------------
    cdef uint8_t ack_now
    cdef uint8_t dupacks_to_send  # immediate duplicate ACKs owed for out-of-order segments
    cdef uint8_t dsack_pending  # a D-SACK block to report first in the next ACK (RFC 2883)
    # An ACK with new SACK or D-SACK information is owed: the caller lets poll_transmit send it
    # before it hands over the next segment, so that no such ACK is merged into a later one
    # (RFC 2018 §4: every out-of-order segment is answered with the blocks as they are then).
    cdef public uint8_t ack_flush
    cdef uint32_t dsack_left
    cdef uint32_t dsack_right
    cdef uint8_t segs_unacked   # full-sized segments received since our last ACK
    cdef uint8_t quickacks      # in-order segments still to ACK at once after a loss event
    cdef uint8_t rst_pending    # abort: send <SEQ=SND.NXT><CTL=RST>
    cdef uint8_t syn_pending    # (re)send SYN / SYN-ACK
    cdef uint8_t probe_pending  # zero-window probe
    cdef uint8_t keepalive_pending
    cdef uint32_t challenge_count
    cdef uint64_t challenge_window_start

    # --- towards the application --------------------------------------------------------------
    cdef readonly int error     # errno to report (ECONNREFUSED, ECONNRESET, ETIMEDOUT), 0 = none
    cdef int soft_error         # last ICMP error (RFC 1122 §4.2.3.9 soft error), reported on timeout
    cdef tcb_stats stats

    # --- what the engine keeps about this connection (only _engine/ reads or writes it) ------
    cdef conn_meta meta

    # --- C API --------------------------------------------------------------------------------
    cdef void configure(self, const tcb_config* cfg) noexcept nogil
    cdef void reconfigure(self) noexcept nogil
    cdef void set_endpoints(self, const ip_repr* ip, uint16_t lport, uint16_t rport) noexcept nogil
    cdef int on_segment(self, const pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil
    cdef size_t poll_transmit(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil
    cdef uint64_t poll_at(self) noexcept nogil
    cdef int user_open(self, uint64_t now) noexcept nogil
    cdef int user_listen(self) noexcept nogil
    cdef int64_t user_send(self, const uint8_t* data, size_t n, uint64_t now) noexcept nogil
    cdef int64_t user_recv(self, uint8_t* out, size_t n, bint peek, uint64_t now) noexcept nogil
    cdef int user_shutdown(self, uint64_t now) noexcept nogil
    cdef int user_close(self, uint64_t now) noexcept nogil
    cdef int user_abort(self, uint64_t now) noexcept nogil
    cdef int open_from_cookie(self, const pkt_repr* p, uint32_t iss, uint16_t mss,
                              uint64_t now) noexcept nogil
    cdef void set_state(self, int state) noexcept nogil
    cdef void get_facts(self, tcb_facts* f) noexcept nogil
    cdef bint reopen_time_wait(self, const tcp_repr* th) noexcept nogil
    cdef void on_icmp_error(self, int err, uint32_t mtu, bint hard) noexcept nogil
    cdef uint32_t send_space(self) noexcept nogil
    cdef uint32_t recv_available(self) noexcept nogil
    cdef void set_mem_pool(self, mem_pool* pool) noexcept nogil
    # buffer auto-tuning (internals)
    cdef uint32_t _rcvbuf_ceiling(self) noexcept nogil
    cdef int _rcvbuf_reserve(self, uint32_t seq, uint32_t n) noexcept nogil
    cdef void _rcv_rtt_measure(self, const tcp_repr* th, uint32_t n, uint64_t now) noexcept nogil
    cdef void _rcv_space_adjust(self, uint64_t now) noexcept nogil
    cdef void _sndbuf_adjust(self, uint64_t now) noexcept nogil

    # --- internals ----------------------------------------------------------------------------
    cdef void _init_sequence(self, uint64_t now) noexcept nogil
    cdef void _size_rcvbuf(self) noexcept nogil
    cdef uint32_t _rcv_slack(self) noexcept nogil
    cdef uint32_t _rcv_space(self) noexcept nogil
    cdef void _endpoints_from(self, const pkt_repr* p) noexcept nogil
    cdef void _negotiate(self, const tcp_repr* th) noexcept nogil
    cdef int _listen_input(self, const pkt_repr* p, uint64_t now) noexcept nogil
    cdef int _syn_sent_input(self, const pkt_repr* p, const uint8_t* payload, uint64_t now) noexcept nogil
    cdef int _sync_input(self, const pkt_repr* p, const uint8_t* payload, uint64_t now) noexcept nogil
    cdef void _ack_input(self, const tcp_repr* th, uint32_t seg_len, uint64_t now) noexcept nogil
    cdef void _text_input(self, uint32_t seq, const uint8_t* data, uint32_t n, uint64_t now) noexcept nogil
    cdef void _fin_input(self, uint64_t now) noexcept nogil
    cdef void _established_from_syn_ack(self, const tcp_repr* th, uint64_t now) noexcept nogil
    cdef void _return_to_listen(self) noexcept nogil
    cdef void _challenge_ack(self, uint64_t now) noexcept nogil
    cdef void _enter_closed(self, int err) noexcept nogil
    cdef void _enter_time_wait(self, uint64_t now) noexcept nogil
    cdef void _on_timers(self, uint64_t now) noexcept nogil
    cdef void _rexmit_rto(self, uint64_t now) noexcept nogil
    cdef void _arm_rtx(self, uint64_t now) noexcept nogil
    cdef uint32_t _window_to_advertise(self) noexcept nogil
    cdef uint32_t _ts_now(self, uint64_t now) noexcept nogil
    cdef void _fill_header(self, tcp_repr* t, uint32_t seq, uint8_t flags, uint64_t now) noexcept nogil
    cdef size_t _emit(self, uint8_t* buf, size_t cap, tcp_repr* t, uint32_t data_off, uint32_t n,
                      uint64_t now) noexcept nogil
    cdef size_t _emit_data(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil
    cdef size_t _emit_probe(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil
    cdef void _after_read(self, uint64_t now) noexcept nogil
    # loss recovery with SACK: RACK-TLP, PRR, F-RTO, undo
    cdef bint _sack_input(self, const tcp_repr* th, uint64_t now, int64_t tsecr_ms,
                          uint32_t* newly_sacked) noexcept nogil
    cdef void _rack_ack(self, const tcp_repr* th, uint32_t prior_una, uint32_t delivered,
                        bint dsack, bint advanced, uint64_t now) noexcept nogil
    cdef void _rack_detect(self, uint64_t now) noexcept nogil
    cdef void _enter_recovery(self, uint64_t now) noexcept nogil
    cdef void _undo_mark(self) noexcept nogil
    cdef void _undo(self, uint64_t now) noexcept nogil
    cdef void _schedule_loss_probe(self, uint64_t now) noexcept nogil
    cdef void _tlp_process_ack(self, const tcp_repr* th, bint dsack, bint advanced,
                               uint64_t now) noexcept nogil
    cdef uint32_t _pipe(self) noexcept nogil
    cdef size_t _emit_rexmit(self, uint8_t* buf, size_t cap, uint32_t seq, uint32_t end,
                             uint8_t cause, uint64_t now) noexcept nogil
    cdef size_t _emit_loss_probe(self, uint8_t* buf, size_t cap, uint64_t now) noexcept nogil
    cdef void _set_dsack(self, uint32_t left, uint32_t right) noexcept nogil
    cdef void _ack_loss_news(self) noexcept nogil


# What the connection is ready for, as Linux's tcp_poll() computes it: the one model of
# readiness. set_state() and the data paths change what it reads, and nothing else; the engine
# shows the result through the socket's fd (_engine/readiness.pxi), state_of() reports it.
cdef inline uint32_t tcb_hangup(Tcb t) noexcept nogil:
    """POLL_ERR (an error, the connection gone), POLL_HUP (both directions done, or gone),
    POLL_RDHUP (the peer's FIN): each one-way, as the connection moves on."""
    cdef uint32_t mask = 0
    if t.error and t.state == CLOSED:
        mask |= POLL_ERR
    if (t.rcv_fin and t.fin_queued) or t.state == CLOSED or t.state == TIME_WAIT:
        mask |= POLL_HUP
    if t.rcv_fin:
        mask |= POLL_RDHUP
    return mask


cdef inline bint tcb_readable(Tcb t) noexcept nogil:
    """POLL_IN: data to read, end of stream, an error, or a connection that closed."""
    return t.rcvbuf.used > 0 or t.rcv_fin or t.error != 0 or (t.state == CLOSED and t.synced)


cdef inline uint32_t tcb_send_ready(Tcb t) noexcept nogil:
    """POLL_OUT as Linux's: not while connecting; then when a third of the send buffer is free
    (sk_stream_is_writeable), or when sending would fail at once (error, shut down, closed).
    POLL_NOMEM: not writable because the stack's buffer memory is exhausted (send_space is then
    the room in the storage this connection already has; writable again when a third of that
    is free, or when memory comes back)."""
    cdef uint32_t space
    if t.state == SYN_SENT or t.state == SYN_RECEIVED:
        return POLL_OUT if t.error else 0
    if t.state != ESTABLISHED and t.state != CLOSE_WAIT:
        return POLL_OUT
    if t.fin_queued or t.error:
        return POLL_OUT
    space = t.send_space()
    if space < ring_space(&t.sndbuf):
        if space > 0 and space * 3 >= t.sndbuf.size:
            return POLL_OUT
        return POLL_NOMEM
    return POLL_OUT if space > 0 and space * 3 >= t.sndbuf.cap else 0


cdef inline uint32_t tcb_poll(Tcb t) noexcept nogil:
    """Every bit at once (the engine's readiness takes them one by one, as it needs them)."""
    return tcb_hangup(t) | (POLL_IN if tcb_readable(t) else 0) | tcb_send_ready(t)


# RFC 9293 §3.10.7.1: the reset that answers a segment arriving for no connection (or that a
# state's rules answer with a reset). Writes an IP packet into buf; returns its length, or 0 when
# the segment itself carries RST (never answer a reset with a reset).
cdef size_t reset_for_segment(const pkt_repr* p, uint8_t* buf, size_t cap, uint8_t ttl) noexcept nogil
# RFC 4987 §3.6: the SYN-ACK that answers a SYN with a cookie (the ISS) and keeps no state.
cdef size_t syn_ack_for_cookie(const pkt_repr* p, uint32_t cookie, const tcb_config* cfg,
                               uint8_t ttl, uint8_t* buf, size_t cap) noexcept nogil

# Defaults as Linux (see tcb_config); used by the Python-level constructor and the engine.
cdef void tcb_config_default(tcb_config* cfg) noexcept nogil
# Options by name (times in seconds), checked; as the Tcb constructor takes them.
cdef int config_update(tcb_config* cfg, dict options) except -1
# The other way: a configuration as options by name (times in seconds).
cdef dict config_options(const tcb_config* cfg)
