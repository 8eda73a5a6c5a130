# cython: language_level=3
"""The stack's engine (see ``_engine.pxd``).

Per packet, everything here runs in C without the GIL: read, parse (``_wire``), look up the
connection (a keyed hash of the 4-tuple), run it (``_tcb``), write what it emits. The GIL is taken
only where a Python object must be made or let go: a new connection (a ``Tcb`` per SYN that gets
state; SYN cookies when the SYN queue is full make none), and releasing connections that have
left the table.

Locking: one mutex per engine. The engine thread holds it while it handles a batch; application
threads take it (with the GIL released while they wait, so the engine can take the GIL while it
holds the mutex) for every call into a connection, and flush the segments their call made due.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memset, memcmp
from libc.stdio cimport FILE, fopen, fwrite, fclose, fflush
from libc.errno cimport errno, EAGAIN, EINTR, EADDRINUSE, EADDRNOTAVAIL, ENOMEM, EINVAL, \
    ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EPROTO
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from tcpfast._seq cimport seq_gt, seq_ge, seq_le, seq_lt, seq_between
from tcpfast._wire cimport (pkt_repr, ip_repr, tcp_repr, icmp_repr, wire_reason, WIRE_OK,
                            packet_parse, tcp_packet_emit, icmp_packet_emit, ip_header_len,
                            PARSE_SKIP_L4_CHECKSUM, PROTO_TCP, PROTO_ICMP, PROTO_ICMPV6,
                            TH_SYN, TH_ACK, TH_RST, TH_FIN, load16, store16, WIRE_REASON_COUNT)
from tcpfast._tcb cimport (Tcb, tcb_config, tcb_config_default, config_update, reset_for_segment,
                           SEG_REPLY_RST,
                           CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1,
                           FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT, EV_CONNECTED,
                           EV_READABLE, EV_WRITABLE, EV_ERROR, EV_CLOSED)
from tcpfast._isn cimport isn_secret, siphash24
from tcpfast._ring cimport mem_pool, mem_pool_new, mem_pool_unref, mem_pool_pressure, ring_space

import ipaddress
import os

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum:
        POLLIN
        POLLERR
        POLLHUP

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void* buf, size_t count)
    ssize_t write(int fd, const void* buf, size_t count)
    int dup2(int oldfd, int newfd)

cdef extern from "<sys/socket.h>" nogil:
    int shutdown(int fd, int how)
    enum:
        SHUT_WR
        SHUT_RDWR

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    enum:
        CLOCK_MONOTONIC
        CLOCK_REALTIME

cdef enum:
    VNET = 10                        # struct virtio_net_hdr
    VNET_F_NEEDS_CSUM = 1
    VNET_F_DATA_VALID = 2
    GSO_NONE = 0
    GSO_TCPV4 = 1
    GSO_TCPV6 = 4
    EPHEMERAL_LOW = 32768            # Linux ip_local_port_range
    EPHEMERAL_HIGH = 60999
    LOOP_PKT = 65536 + 64
    COOKIE_PERIOD_S = 64             # RFC 4987 §3.6: a counter t that moves every 64 s
    APP_FLUSH_PACKETS = 2            # packets an application thread sends itself per call
    CALL_SHUTDOWN = 1
    CALL_CLOSE = 2
    CALL_ABORT = 3

cdef uint32_t LOOP_PARTIAL = 0x80000000U   # loop_len flag: the checksum was left to a device

# The MSS values a SYN cookie can carry (3 bits), as Linux's msstab.
cdef uint16_t[8] MSS_TABLE
MSS_TABLE[:] = [536, 1220, 1300, 1360, 1400, 1440, 1460, 8960]

STATE_NAMES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
               "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")


cdef inline uint64_t now_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec


cdef inline void store_le16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline uint64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000 + <uint64_t>(ts.tv_nsec // 1000)


cdef uint8_t[4096] _FILL


cdef inline void _token_set(int peer_fd, uint8_t* token) noexcept nogil:
    """Make the app end readable: one byte into the peer end."""
    cdef uint8_t b = 1
    if peer_fd >= 0 and not token[0]:
        if write(peer_fd, &b, 1) == 1:
            token[0] = 1


cdef inline void _token_clear(int app_fd, uint8_t* token) noexcept nogil:
    """Make the app end unreadable again: drain what the peer end queued."""
    cdef uint8_t buf[64]
    if app_fd >= 0 and token[0]:
        while read(app_fd, buf, sizeof(buf)) > 0:
            pass
        token[0] = 0


cdef inline bint _tcb_readable(Tcb t) noexcept nogil:
    # As the kernel's tcp_poll: data to read, end of stream, an error, or a closed connection.
    return t.recv_available() > 0 or t.rcv_fin or t.error != 0 or \
        (t.state == CLOSED and t.synced)


cdef inline bint _tcb_writable(Tcb t) noexcept nogil:
    # As the kernel's: not while connecting; then when a third of the send buffer is free
    # (sk_stream_is_writeable), or when sending would fail at once (error, shut down, closed).
    cdef uint32_t space
    if t.state == SYN_SENT or t.state == SYN_RECEIVED:
        return t.error != 0
    if t.state != ESTABLISHED and t.state != CLOSE_WAIT:
        return True
    if t.fin_queued or t.error:
        return True
    space = t.send_space()
    if space < ring_space(&t.sndbuf):
        # The stack's buffer memory is exhausted: send_space is the room in the storage this
        # connection already has; writable when a third of that is free. Else it waits for
        # memory: the engine looks at it again when some is given back (_mem_wake_writers).
        if space > 0 and space * 3 >= t.sndbuf.size:
            return True
        if t.sndbuf.pool != NULL:
            t.sndbuf.pool.waiting = 1
        return False
    return space > 0 and space * 3 >= t.sndbuf.cap


cdef int _devnull = -1
_devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


cdef inline void _hangup(Tcb t) noexcept nogil:
    """The poll bits beyond IN/OUT, as tcp_poll() sets them, shown through the pair: the peer's
    FIN (RCV_SHUTDOWN) -> POLLRDHUP, both directions done or the connection gone -> POLLHUP,
    an error -> POLLERR. Each step is one-way, as in TCP."""
    cdef uint8_t b = 0
    cdef int phase = t.eng_fd_phase
    if t.error and t.state == CLOSED:
        if phase < 3 and _devnull >= 0:
            # Releasing the peer end with a byte unread sets ECONNRESET on the socket's end
            # (unix_release_sock): POLLERR | POLLHUP until the error is read. dup2 keeps the
            # number valid (it now names /dev/null) for the socket to close later.
            write(t.eng_app_fd, &b, 1)
            dup2(_devnull, t.eng_peer_fd)
            t.eng_fd_phase = 3
        return
    if (t.rcv_fin and t.fin_queued) or t.state == CLOSED or t.state == TIME_WAIT:
        if phase < 2:
            shutdown(t.eng_peer_fd, SHUT_RDWR)      # both ways shut: POLLHUP
            t.eng_fd_phase = 2
    elif t.rcv_fin and phase < 1:
        shutdown(t.eng_peer_fd, SHUT_WR)            # the peer's FIN: POLLIN | POLLRDHUP
        t.eng_fd_phase = 1


cdef inline void _readiness(Tcb t) noexcept nogil:
    """Bring the socket's fd in line with the connection (called after anything changed it)."""
    cdef uint8_t buf[4096]
    if t.eng_peer_fd < 0:
        return
    if t.eng_fd_phase == 3:
        return
    if t.rcv_fin or t.state == CLOSED or t.state == TIME_WAIT or t.error:
        _hangup(t)
        if t.eng_fd_phase >= 2:
            return
    if _tcb_readable(t):
        _token_set(t.eng_peer_fd, &t.eng_rd_token)
    if _tcb_writable(t):
        if t.eng_wr_blocked:
            while read(t.eng_peer_fd, buf, sizeof(buf)) > 0:
                pass
            t.eng_wr_blocked = 0
    elif not t.eng_wr_blocked:
        # Fill the app end's send queue: it polls unwritable until we drain it.
        while write(t.eng_app_fd, _FILL, sizeof(_FILL)) > 0:
            pass
        t.eng_wr_blocked = 1


cdef inline void _syn_done(void* l) noexcept nogil:
    if l != NULL:
        (<Listener>l).syn_count = (<Listener>l).syn_count - 1


cdef inline void _signal(int fd) noexcept nogil:
    cdef uint64_t one = 1
    if fd >= 0:
        write(fd, &one, 8)


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


cdef class Engine:
    """Engine(fd, *, mtu, addr4=None, addr6=None, vnet_hdr=False, tso4=False, tso6=False,
    csum_offload=False)

    The loop (``run``) and the calls application threads make into it. Addresses are packed
    bytes (4 or 16).
    """

    def __cinit__(self):
        self.wake_fd = -1
        self.fd = -1
        self.buckets = NULL
        self.rxbuf = NULL
        self.rx_slots = NULL
        self.txbuf = NULL
        self.loopq = NULL
        self.loop_len = NULL
        self.pcap = NULL
        self.mem = NULL
        pthread_mutex_init(&self.lock, NULL)

    def __init__(self, int fd, *, int mtu, addr4=None, addr6=None, bint vnet_hdr=False,
                 bint tso4=False, bint tso6=False, bint csum_offload=False, mem_limit=None):
        cdef bytes key = os.urandom(32)
        if mem_limit is None:
            mem_limit = default_mem_limit()
        if isinstance(mem_limit, bool) or not isinstance(mem_limit, int) or \
                not 65536 <= mem_limit < (1 << 62):
            raise ValueError("mem_limit must be a number of bytes, at least 65536")
        self.mem = mem_pool_new(mem_limit)
        if self.mem == NULL:
            raise MemoryError()
        self.fd = fd
        self.mtu = mtu
        self.vnet_hdr = vnet_hdr
        self.tso4 = tso4 and vnet_hdr
        self.tso6 = tso6 and vnet_hdr
        self.csum_offload = csum_offload and vnet_hdr
        self.has4 = addr4 is not None
        self.has6 = addr6 is not None
        memset(self.addr4, 0, 16)
        memset(self.addr6, 0, 16)
        if addr4 is not None:
            memcpy(self.addr4, <const char*>addr4, 4)
        if addr6 is not None:
            memcpy(self.addr6, <const char*>addr6, 16)
        memcpy(&self.secret, <const char*>key, 16)
        memcpy(&self.hash_key, (<const char*>key) + 16, 16)
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise OSError(errno, os.strerror(errno))
        self.nbuckets = 1024
        self.buckets = <void**>calloc(self.nbuckets, sizeof(void*))
        self.rxbuf = <uint8_t*>malloc(PKT_MAX)
        # One slot per packet of a batch: a whole GSO super-segment with offload, an MTU without.
        self.rx_slot_size = PKT_MAX if vnet_hdr else mtu + VNET + 64
        self.rx_slots = <uint8_t*>malloc(<size_t>BATCH * self.rx_slot_size)
        if self.rx_slots == NULL:
            raise MemoryError()
        self.txbuf = <uint8_t*>malloc(PKT_MAX)
        self.loopq = <uint8_t*>malloc(<size_t>LOOP_SLOTS * LOOP_PKT)
        self.loop_len = <uint32_t*>malloc(sizeof(uint32_t) * LOOP_SLOTS)
        if not (self.buckets and self.rxbuf and self.txbuf and self.loopq and self.loop_len):
            raise MemoryError()
        memset(self.wheel, 0, sizeof(self.wheel))
        memset(self.wheel_bits, 0, sizeof(self.wheel_bits))
        memset(&self.st, 0, sizeof(self.st))
        self.listeners = []
        self.nlst = 0
        self.release_head = NULL
        self.dirty_head = NULL
        self.start_us = _now_us()
        self.wheel_tick = self.start_us // 1000
        self.next_port = EPHEMERAL_LOW + (int.from_bytes(os.urandom(2), "little") %
                                          (EPHEMERAL_HIGH - EPHEMERAL_LOW))
        tcb_config_default(&self.cfg)
        self.cfg.secret = self.secret
        self.cfg.mss = mtu - 40
        self.cfg.csum_partial = self.csum_offload
        self.running = 0

    def __dealloc__(self):
        cdef uint32_t i
        cdef void* p
        cdef void* nxt
        if self.pcap != NULL:
            fclose(self.pcap)
        if self.buckets != NULL:
            for i in range(self.nbuckets):
                p = self.buckets[i]
                while p != NULL:
                    nxt = (<Tcb>p).eng_hash_next
                    Py_DECREF(<object>p)
                    p = nxt
            free(self.buckets)
        p = self.release_head
        while p != NULL:
            nxt = (<Tcb>p).eng_hash_next
            Py_DECREF(<object>p)
            p = nxt
        while self.pool_count:
            self.pool_count -= 1
            Py_DECREF(<object>self.pool[self.pool_count])
        free(self.rxbuf)
        free(self.rx_slots)
        free(self.txbuf)
        free(self.loopq)
        free(self.loop_len)
        if self.wake_fd >= 0:
            os.close(self.wake_fd)
        pthread_mutex_destroy(&self.lock)
        mem_pool_unref(self.mem)          # connections still alive keep it until they go

    # =========================================================================================
    # Connection table: a chained hash of the 4-tuple, keyed so that a peer cannot choose
    # collisions (the same secret-keyed SipHash as the ISNs).
    # =========================================================================================

    cdef uint32_t _hash(self, uint8_t version, const uint8_t* laddr, uint16_t lport,
                        const uint8_t* raddr, uint16_t rport) noexcept nogil:
        cdef uint8_t key[37]
        key[0] = version
        memcpy(key + 1, laddr, 16)
        memcpy(key + 17, raddr, 16)
        key[33] = <uint8_t>(lport >> 8)
        key[34] = <uint8_t>lport
        key[35] = <uint8_t>(rport >> 8)
        key[36] = <uint8_t>rport
        return <uint32_t>siphash24(&self.hash_key, key, 37)

    cdef void* _lookup(self, uint8_t version, const uint8_t* laddr, uint16_t lport,
                       const uint8_t* raddr, uint16_t rport) noexcept nogil:
        cdef uint32_t h = self._hash(version, laddr, lport, raddr, rport) & (self.nbuckets - 1)
        cdef void* p = self.buckets[h]
        while p != NULL:
            if (<Tcb>p).lport == lport and (<Tcb>p).rport == rport and \
                    (<Tcb>p).ip.version == version and \
                    memcmp((<Tcb>p).ip.dst, raddr, 16) == 0 and \
                    memcmp((<Tcb>p).ip.src, laddr, 16) == 0:
                return p
            p = (<Tcb>p).eng_hash_next
        return NULL

    cdef void _grow(self) noexcept nogil:
        cdef uint32_t n = self.nbuckets * 2, i, h
        cdef void** nb = <void**>calloc(n, sizeof(void*))
        cdef void* p
        cdef void* nxt
        if nb == NULL:
            return                        # keep the old table; chains just get longer
        for i in range(self.nbuckets):
            p = self.buckets[i]
            while p != NULL:
                nxt = (<Tcb>p).eng_hash_next
                h = self._hash((<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                               (<Tcb>p).ip.dst, (<Tcb>p).rport) & (n - 1)
                (<Tcb>p).eng_hash_next = nb[h]
                nb[h] = p
                p = nxt
        free(self.buckets)
        self.buckets = nb
        self.nbuckets = n

    cdef void _insert(self, void* p) noexcept nogil:
        """Put a connection into the table; the engine's reference is already taken."""
        cdef uint32_t h
        if self.nconns >= self.nbuckets:
            self._grow()
        h = self._hash((<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                       (<Tcb>p).ip.dst, (<Tcb>p).rport) & (self.nbuckets - 1)
        (<Tcb>p).eng_hash_next = self.buckets[h]
        self.buckets[h] = p
        (<Tcb>p).eng_in_table = 1
        self.nconns += 1
        self.st.connections_opened += 1

    cdef void _unlink(self, void* p) noexcept nogil:
        """Take a connection out of the table and off the wheel; its engine reference is let go
        (with the GIL, later) unless it waits in an accept queue."""
        cdef uint32_t h
        cdef void** pp
        cdef int i
        if not (<Tcb>p).eng_in_table:
            return
        h = self._hash((<Tcb>p).ip.version, (<Tcb>p).ip.src, (<Tcb>p).lport,
                       (<Tcb>p).ip.dst, (<Tcb>p).rport) & (self.nbuckets - 1)
        pp = &self.buckets[h]
        while pp[0] != NULL and pp[0] != p:
            pp = &(<Tcb>pp[0]).eng_hash_next
        if pp[0] == p:
            pp[0] = (<Tcb>p).eng_hash_next
        (<Tcb>p).eng_in_table = 0
        self.nconns -= 1
        self.st.connections_closed += 1
        self._wheel_remove(p)
        if (<Tcb>p).eng_embryonic:
            (<Tcb>p).eng_embryonic = 0
            if (<Tcb>p).eng_listener != NULL:
                _syn_done((<Tcb>p).eng_listener)
        self._add_totals(p)
        if not (<Tcb>p).eng_queued:
            (<Tcb>p).eng_hash_next = self.release_head
            self.release_head = p

    cdef void _add_totals(self, void* p) noexcept nogil:
        cdef uint64_t* dst = <uint64_t*>&self.closed_totals
        cdef uint64_t* src = <uint64_t*>&(<Tcb>p).stats
        cdef size_t i
        for i in range(sizeof(self.closed_totals) // 8):
            dst[i] += src[i]

    cdef void _release_all(self) noexcept with gil:
        cdef void* p
        cdef void* nxt
        # Take the list under the lock: the engine thread may be adding to it.
        with nogil:
            pthread_mutex_lock(&self.lock)
            p = self.release_head
            self.release_head = NULL
            pthread_mutex_unlock(&self.lock)
        while p != NULL:
            nxt = (<Tcb>p).eng_hash_next
            (<Tcb>p).eng_hash_next = NULL
            (<Tcb>p).eng_listener = NULL
            Py_DECREF(<object>p)
            p = nxt
        with nogil:
            pthread_mutex_lock(&self.lock)
            self._mem_check()             # connections gone gave their buffers back
            pthread_mutex_unlock(&self.lock)

    cdef void* _new_tcb(self, const tcb_config* cfg) noexcept nogil:
        """A new connection object, with the engine's reference taken (NULL when out of memory).

        Taken from a pool of objects made ahead of time, so that a SYN needs no GIL (an
        application thread busy in Python would otherwise hold the engine up for a whole switch
        interval per SYN); the pool is refilled with the GIL between batches."""
        cdef void* p
        if self.pool_count == 0:
            self._refill_pool()
            if self.pool_count == 0:
                return NULL
        self.pool_count -= 1
        p = self.pool[self.pool_count]
        (<Tcb>p).configure(cfg)
        (<Tcb>p).set_mem_pool(self.mem)
        return p

    cdef void _refill_pool(self) noexcept with gil:
        cdef Tcb t
        while self.pool_count < TCB_POOL:
            try:
                t = Tcb.__new__(Tcb)
            except MemoryError:
                return
            Py_INCREF(t)
            self.pool[self.pool_count] = <void*>t
            self.pool_count += 1

    # =========================================================================================
    # Timer wheel: 1 ms ticks, O(1) insert and remove, a bitmap of non-empty slots to find the
    # next one quickly. Entries for later turns of the wheel stay in their slot until due.
    # =========================================================================================

    cdef void _wheel_remove(self, void* p) noexcept nogil:
        cdef int slot = (<Tcb>p).eng_wheel_slot
        cdef void* prev
        cdef void* nxt
        if slot < 0:
            return
        prev = (<Tcb>p).eng_wheel_prev
        nxt = (<Tcb>p).eng_wheel_next
        if prev != NULL:
            (<Tcb>prev).eng_wheel_next = nxt
        else:
            self.wheel[slot] = nxt
            if nxt == NULL:
                self.wheel_bits[slot >> 6] &= ~(1ULL << (slot & 63))
        if nxt != NULL:
            (<Tcb>nxt).eng_wheel_prev = prev
        (<Tcb>p).eng_wheel_slot = -1
        (<Tcb>p).eng_wheel_next = NULL
        (<Tcb>p).eng_wheel_prev = NULL
        self.wheel_count -= 1

    cdef void _schedule(self, void* p, uint64_t now) noexcept nogil:
        cdef uint64_t at = (<Tcb>p).poll_at()
        cdef uint64_t tick
        cdef int slot
        self._wheel_remove(p)
        if at == 0 or not (<Tcb>p).eng_in_table:
            return
        if at <= now:
            at = now + 1000               # due but nothing went out: look again in a tick
        # Round up: when the wheel reaches this tick, the time is past ``at`` for sure.
        tick = (at + 999) // 1000
        if self.planned_wake == 0 or at < self.planned_wake:
            self.wake_needed = 1          # the sleeping loop must recompute its timeout
        if tick <= self.wheel_tick:
            tick = self.wheel_tick + 1
        slot = <int>(tick & (WHEEL_SLOTS - 1))
        (<Tcb>p).eng_wheel_at = at
        (<Tcb>p).eng_wheel_slot = slot
        (<Tcb>p).eng_wheel_prev = NULL
        (<Tcb>p).eng_wheel_next = self.wheel[slot]
        if self.wheel[slot] != NULL:
            (<Tcb>self.wheel[slot]).eng_wheel_prev = p
        self.wheel[slot] = p
        self.wheel_bits[slot >> 6] |= 1ULL << (slot & 63)
        self.wheel_count += 1

    cdef void _run_timers(self, uint64_t now) noexcept nogil:
        cdef uint64_t now_tick = now // 1000, t, last
        cdef int slot
        cdef void* p
        cdef void* nxt
        if self.wheel_count == 0 or now_tick <= self.wheel_tick:
            if now_tick > self.wheel_tick:
                self.wheel_tick = now_tick
            return
        last = now_tick
        if now_tick - self.wheel_tick > WHEEL_SLOTS:
            last = self.wheel_tick + WHEEL_SLOTS
        t = self.wheel_tick + 1
        while t <= last:
            slot = <int>(t & (WHEEL_SLOTS - 1))
            if self.wheel_bits[slot >> 6] & (1ULL << (slot & 63)):
                p = self.wheel[slot]
                while p != NULL:
                    nxt = (<Tcb>p).eng_wheel_next
                    if (<Tcb>p).eng_wheel_at <= now:
                        self._wheel_remove(p)
                        self._mark_dirty(p)
                    p = nxt
            t += 1
        self.wheel_tick = now_tick

    cdef int _poll_timeout(self, uint64_t now) noexcept nogil:
        """Milliseconds until the next non-empty slot of the wheel (-1: none)."""
        cdef uint64_t now_tick = now // 1000
        cdef uint64_t word, d
        cdef int start, i, k, slot, w
        if self.dirty_head != NULL or self.loop_count or self.release_head != NULL:
            return 0
        if self.wheel_count == 0:
            return -1
        if now_tick > self.wheel_tick:
            return 0
        start = <int>((self.wheel_tick + 1) & (WHEEL_SLOTS - 1))
        # Scan the bitmap from start, wrapping once.
        for i in range(WHEEL_SLOTS // 64 + 1):
            w = ((start >> 6) + i) % (WHEEL_SLOTS // 64)
            word = self.wheel_bits[w]
            if i == 0:
                word &= ~0ULL << (start & 63)
            if word:
                k = __builtin_ctzll(word)
                slot = w * 64 + k
                d = <uint64_t>((slot - start) & (WHEEL_SLOTS - 1)) + 1
                return <int>d
        return -1

    cdef void _mark_dirty(self, void* p) noexcept nogil:
        if (<Tcb>p).eng_dirty:
            return
        (<Tcb>p).eng_dirty = 1
        (<Tcb>p).eng_dirty_next = self.dirty_head
        self.dirty_head = p

    # =========================================================================================
    # Output
    # =========================================================================================

    cdef bint _is_ours(self, uint8_t version, const uint8_t* addr) noexcept nogil:
        if version == 4:
            return self.has4 and memcmp(addr, self.addr4, 4) == 0
        return self.has6 and memcmp(addr, self.addr6, 16) == 0

    cdef void _pcap(self, const uint8_t* pkt, size_t n) noexcept nogil:
        cdef timespec ts
        cdef uint32_t rec[4]
        if self.pcap == NULL:
            return
        clock_gettime(CLOCK_REALTIME, &ts)
        rec[0] = <uint32_t>ts.tv_sec
        rec[1] = <uint32_t>(ts.tv_nsec // 1000)
        rec[2] = <uint32_t>(n if n < 65535 else 65535)
        rec[3] = <uint32_t>n
        fwrite(rec, 4, 4, self.pcap)
        fwrite(pkt, 1, rec[2], self.pcap)

    cdef void _output(self, uint8_t* frame, size_t n, void* tcb, bint partial) noexcept nogil:
        """Send one packet that sits at frame + VNET. To our own address it is queued for the
        input path; otherwise it goes to the device, with a virtio-net header in offload mode."""
        cdef uint8_t* pkt = frame + VNET
        cdef uint8_t version = pkt[0] >> 4
        cdef const uint8_t* dst = pkt + 16 if version == 4 else pkt + 24
        cdef size_t ihl, thl, payload
        cdef uint16_t smss
        cdef ssize_t w
        cdef uint32_t slot
        self._pcap(pkt, n)
        self.st.packets_out += 1
        self.st.bytes_out += n
        if self._is_ours(version, dst):
            # Delivered inside the stack: a tcpfast client can reach a tcpfast server.
            if self.loop_count >= LOOP_SLOTS or n > LOOP_PKT:
                self.st.loopback_dropped += 1
                return
            slot = (self.loop_head + self.loop_count) % LOOP_SLOTS
            memcpy(self.loopq + <size_t>slot * LOOP_PKT, pkt, n)
            # A partial checksum never met a device that would complete it: mark it valid.
            self.loop_len[slot] = <uint32_t>n | (LOOP_PARTIAL if partial else 0)
            self.loop_count += 1
            self.st.loopback_packets += 1
            if tcb == NULL:
                _signal(self.wake_fd)
            return
        if self.vnet_hdr:
            memset(frame, 0, VNET)
            if pkt[0] >> 4 == 4:
                ihl = (pkt[0] & 0x0f) * 4
            else:
                ihl = 40
            if partial:
                thl = (pkt[ihl + 12] >> 4) * 4
                frame[0] = VNET_F_NEEDS_CSUM
                store_le16(frame + 6, <uint16_t>ihl)             # csum_start
                store_le16(frame + 8, 16)                        # csum_offset (TCP checksum)
                payload = n - ihl - thl
                smss = (<Tcb>tcb).smss if tcb != NULL else 0
                if smss and payload > smss:
                    frame[1] = GSO_TCPV4 if version == 4 else GSO_TCPV6
                    store_le16(frame + 2, <uint16_t>(ihl + thl))  # hdr_len
                    store_le16(frame + 4, smss)                   # gso_size
                    self.st.gso_out += 1
            w = write(self.fd, frame, n + VNET)
        else:
            w = write(self.fd, pkt, n)
        if w < 0:
            self.st.write_errors += 1

    cdef void _flush(self, void* p, uint64_t now) noexcept nogil:
        """Send everything the connection has due, then file it: wheel, wake-ups, accept queue,
        or out of the table."""
        self._flush_some(p, now, 100000)

    cdef bint _flush_some(self, void* p, uint64_t now, int limit) noexcept nogil:
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
            n = (<Tcb>p).poll_transmit(self.txbuf + VNET, PKT_MAX - VNET, now)
            if n == 0:
                break
            self._output(self.txbuf, n, p, partial)
            sent += 1
        self._after(p, now)
        return more

    cdef void _after(self, void* p, uint64_t now) noexcept nogil:
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
                    self.st.dropped_backlog += 1
                    (<Tcb>p).user_abort(now)
                    self._flush(p, now)
                    return
                self._aq_push(<Listener>(<Tcb>p).eng_listener, p)
        # The socket's fd follows the connection's readiness.
        _readiness(<Tcb>p)
        # A connection that is over (or an embryonic one back in LISTEN) leaves the table.
        if state == CLOSED or (state == LISTEN and (<Tcb>p).eng_listener != NULL):
            self._unlink(p)
            return
        self._schedule(p, now)

    cdef void _aq_push(self, Listener l, void* p) noexcept nogil:
        cdef int slot = (l.aq_head + l.aq_count) % l.aq_cap
        l.acceptq[slot] = p
        l.aq_count += 1
        (<Tcb>p).eng_queued = 1
        _token_set(l.peer_fd, &l.rd_token)       # the listening socket becomes readable

    cdef void _flush_dirty(self, uint64_t now) noexcept nogil:
        cdef void* p
        while self.dirty_head != NULL:
            p = self.dirty_head
            self.dirty_head = (<Tcb>p).eng_dirty_next
            (<Tcb>p).eng_dirty_next = NULL
            (<Tcb>p).eng_dirty = 0
            if (<Tcb>p).eng_in_table:
                self._flush(p, now)
            if self.loop_count >= LOOP_SLOTS // 2:
                # Many connections talking to ourselves at once (timers that fire together):
                # deliver before the local queue overflows.
                self._drain_input(now)

    cdef void _send_rst_for(self, const pkt_repr* p) noexcept nogil:
        cdef size_t n = reset_for_segment(p, self.txbuf + VNET, PKT_MAX - VNET, 64)
        if n:
            self.st.resets_sent += 1
            self._output(self.txbuf, n, NULL, False)

    # =========================================================================================
    # Input
    # =========================================================================================

    cdef void _input(self, uint8_t* pkt, size_t n, int flags, uint64_t now) noexcept nogil:
        cdef pkt_repr p
        cdef wire_reason r
        self._pcap(pkt, n)
        self.st.packets_in += 1
        self.st.bytes_in += n
        r = packet_parse(pkt, n, &p, flags)
        if r != WIRE_OK:
            self.st.malformed[<int>r] += 1     # dropped and counted, never raised
            return
        if not self._is_ours(p.ip.version, p.ip.dst):
            self.st.not_ours += 1
            return
        if p.ip.protocol == PROTO_TCP:
            self._tcp_input(&p, pkt, now)
        else:
            self._icmp_input(&p, pkt, now)

    cdef void* _listener_for(self, uint8_t version, const uint8_t* addr, uint16_t port) noexcept nogil:
        cdef int i
        cdef void* best = NULL
        cdef uint8_t zero[16]
        memset(zero, 0, 16)
        for i in range(self.nlst):
            if (<Listener>self.lst[i]).port != port or (<Listener>self.lst[i]).version != version \
                    or (<Listener>self.lst[i]).closed:
                continue
            if memcmp((<Listener>self.lst[i]).addr, addr, 16) == 0:
                return self.lst[i]        # an exact address wins over the wildcard
            if memcmp((<Listener>self.lst[i]).addr, zero, 16) == 0:
                best = self.lst[i]
        return best

    cdef void _tcp_input(self, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
        cdef const tcp_repr* th = &p.tcp
        self.st.tcp_segments_in += 1      # every well-formed segment, stateful or not
        cdef void* t = self._lookup(p.ip.version, p.ip.dst, th.dst_port, p.ip.src, th.src_port)
        cdef void* l
        cdef int action
        if t != NULL:
            if (<Tcb>t).state == TIME_WAIT and (th.flags & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN \
                    and seq_gt(th.seq, (<Tcb>t).rcv_nxt) and \
                    self._listener_for(p.ip.version, p.ip.dst, th.dst_port) != NULL:
                # RFC 1122 §4.2.2.13 (and RFC 6191): a new SYN whose sequence number lies above
                # the old connection's may reopen a 4-tuple in TIME-WAIT.
                self.st.time_wait_reused += 1
                (<Tcb>t).state = CLOSED
                self._unlink(t)
            else:
                action = (<Tcb>t).on_segment(p, pkt, now)
                if action == SEG_REPLY_RST:
                    self._send_rst_for(p)
                if (<Tcb>t).ack_flush:
                    # New SACK or D-SACK information: its ACK goes now, not merged with the
                    # batch's later ones (RFC 2018 §4; the sender's RACK needs each of them).
                    self._flush(t, now)
                    if not (<Tcb>t).eng_in_table:
                        return                # it closed (and left the table) meanwhile
                self._mark_dirty(t)
                return
        l = self._listener_for(p.ip.version, p.ip.dst, th.dst_port)
        if l == NULL:
            # RFC 9293 §3.10.7.1: no connection, no listener: reset (never answering a reset).
            self.st.dropped_no_listener += 1
            self._send_rst_for(p)
            return
        if (th.flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN)) == TH_SYN:
            self._syn_input(<Listener>l, p, pkt, now)
        elif (th.flags & (TH_SYN | TH_ACK | TH_RST)) == TH_ACK:
            if not self._cookie_input(<Listener>l, p, pkt, now):
                self._send_rst_for(p)     # an ACK for nothing we know (§3.10.7.2)
        elif not (th.flags & TH_RST):
            self._send_rst_for(p)

    cdef void _syn_input(self, Listener l, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
        cdef void* t
        if l.aq_count >= l.aq_cap:
            # The accept queue is full: Linux drops the SYN (the peer will retry).
            self.st.dropped_backlog += 1
            return
        if l.syn_count >= l.syn_max:
            # The SYN queue is full (a SYN flood, or a burst): answer without keeping state
            # (RFC 4987 §3.6, SYN cookies).
            self._send_cookie(l, p)
            return
        t = self._new_tcb(&l.cfg)
        if t == NULL:
            self._send_cookie(l, p)
            return
        (<Tcb>t).user_listen()
        (<Tcb>t).on_segment(p, pkt, now)
        (<Tcb>t).eng_listener = <void*>l
        (<Tcb>t).eng_reuse = l.reuse
        (<Tcb>t).eng_embryonic = 1
        l.syn_count += 1
        self._insert(t)
        self._mark_dirty(t)

    cdef uint32_t _cookie_hash(self, const pkt_repr* p, uint32_t peer_isn, uint32_t counter) noexcept nogil:
        cdef uint8_t key[45]
        key[0] = p.ip.version
        memcpy(key + 1, p.ip.src, 16)
        memcpy(key + 17, p.ip.dst, 16)
        store16(key + 33, p.tcp.src_port)
        store16(key + 35, p.tcp.dst_port)
        memcpy(key + 37, &peer_isn, 4)
        memcpy(key + 41, &counter, 4)
        return <uint32_t>siphash24(&self.secret, key, 45)

    cdef void _send_cookie(self, Listener l, const pkt_repr* p) noexcept nogil:
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
            (self._cookie_hash(p, p.tcp.seq, counter) & 0xffffff)
        t.ack = p.tcp.seq + 1
        t.flags = TH_SYN | TH_ACK
        t.window = <uint16_t>(l.cfg.rcvbuf if l.cfg.rcvbuf < 0xffff else 0xffff)
        t.has_mss = 1
        t.mss = l.cfg.mss
        n = tcp_packet_emit(self.txbuf + VNET, PKT_MAX - VNET, &ip, &t, 0, False)
        if n:
            self.st.syncookies_sent += 1
            self._output(self.txbuf, n, NULL, False)

    cdef bint _cookie_input(self, Listener l, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
        """An ACK for no connection: a returning SYN cookie? Checked for the current and the
        previous counter; a good one makes the connection, straight into ESTABLISHED."""
        cdef uint32_t cookie = p.tcp.ack - 1
        cdef uint32_t peer_isn = p.tcp.seq - 1
        cdef uint32_t counter = <uint32_t>(now_s() // COOKIE_PERIOD_S)
        cdef uint32_t c
        cdef int age, idx
        cdef void* t
        if self.st.syncookies_sent == 0:
            return False
        c = cookie >> 27
        age = <int>((counter - c) & 0x1f)
        if age > 1:
            self.st.syncookies_failed += 1
            return False
        if (self._cookie_hash(p, peer_isn, counter - <uint32_t>age) & 0xffffff) != (cookie & 0xffffff):
            self.st.syncookies_failed += 1
            return False
        if l.aq_count >= l.aq_cap:
            self.st.dropped_backlog += 1
            return True                   # valid but no room: drop; the peer retransmits
        idx = (cookie >> 24) & 7
        t = self._new_tcb(&l.cfg)
        if t == NULL:
            return True
        (<Tcb>t).open_from_cookie(p, cookie, MSS_TABLE[idx], now)
        (<Tcb>t).eng_listener = <void*>l
        (<Tcb>t).eng_reuse = l.reuse
        self._insert(t)
        self.st.syncookies_accepted += 1
        self._aq_push(l, t)
        (<Tcb>t).on_segment(p, pkt, now)  # any data the ACK carries
        self._mark_dirty(t)
        return True

    cdef void _icmp_input(self, pkt_repr* p, const uint8_t* pkt, uint64_t now) noexcept nogil:
        cdef icmp_repr* m = &p.icmp
        cdef ip_repr ip
        cdef icmp_repr reply
        cdef size_t n, ihl
        cdef void* t
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
            memcpy(self.txbuf + VNET + ihl + 8, pkt + m.body_off, m.body_len)
            n = icmp_packet_emit(self.txbuf + VNET, PKT_MAX - VNET, &ip, &reply, m.body_len)
            if n:
                self.st.icmp_echo_replies += 1
                self._output(self.txbuf, n, NULL, False)
            return
        if not (m.has_quote and m.quote_has_ports and m.quote_ip.protocol == PROTO_TCP):
            self.st.icmp_unmatched += 1
            return
        # The quoted packet is one we sent: its source is us, its destination the peer.
        t = self._lookup(m.quote_ip.version, m.quote_ip.src, m.quote_src_port, m.quote_ip.dst,
                         m.quote_dst_port)
        if t == NULL or not seq_between((<Tcb>t).snd_una, m.quote_seq, (<Tcb>t).snd_max):
            # RFC 5927 §4.1: an error about a sequence number we have no data in flight for is
            # not believed.
            self.st.icmp_unmatched += 1
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
        self.st.icmp_errors += 1
        (<Tcb>t).on_icmp_error(err, mtu, hard)
        self._mark_dirty(t)

    cdef void _drain_loopback(self, uint64_t now) noexcept nogil:
        """Deliver packets to our own address and send what that makes due, until quiet."""
        cdef int rounds = 0
        while (self.loop_count or self.dirty_head != NULL) and rounds < 1024:
            self._drain_input(now)
            self._flush_dirty(now)
            rounds += 1

    cdef void _drain_input(self, uint64_t now) noexcept nogil:
        """Hand the queued packets to our own address to the input path (no flushing)."""
        cdef uint32_t slot, n
        while self.loop_count:
            slot = self.loop_head
            n = self.loop_len[slot]
            self.loop_head = (self.loop_head + 1) % LOOP_SLOTS
            self.loop_count -= 1
            # Copy out: handling it may queue more packets into the same ring.
            memcpy(self.rxbuf, self.loopq + <size_t>slot * LOOP_PKT, n & ~LOOP_PARTIAL)
            self._input(self.rxbuf, n & ~LOOP_PARTIAL,
                        PARSE_SKIP_L4_CHECKSUM if n & LOOP_PARTIAL else 0, now)

    # =========================================================================================
    # The loop
    # =========================================================================================

    cdef void _loop(self) noexcept nogil:
        cdef pollfd fds[2]
        cdef int timeout, i, count
        cdef uint8_t* pkt
        cdef ssize_t n
        cdef uint64_t now, drain
        cdef int flags
        while self.running:
            pthread_mutex_lock(&self.lock)
            now = _now_us()
            timeout = self._poll_timeout(now)
            self.planned_wake = 0 if timeout < 0 else now + <uint64_t>timeout * 1000
            self.wake_needed = 0
            pthread_mutex_unlock(&self.lock)
            fds[0].fd = self.fd
            fds[0].events = POLLIN
            fds[0].revents = 0
            fds[1].fd = self.wake_fd
            fds[1].events = POLLIN
            fds[1].revents = 0
            if poll(fds, 2, timeout) < 0 and errno != EINTR:
                break
            if not self.running:
                break
            self.planned_wake = 1         # awake: whoever schedules now needs no signal
            if fds[1].revents & POLLIN:
                read(self.wake_fd, &drain, 8)
            # Read the batch without the lock (application threads keep going meanwhile), then
            # handle it under the lock in one go.
            count = 0
            if fds[0].revents & POLLIN:
                while count < BATCH:
                    n = read(self.fd, self.rx_slots + <size_t>count * self.rx_slot_size,
                             self.rx_slot_size)
                    if n <= 0:
                        break
                    self.rx_lens[count] = <uint32_t>n
                    count += 1
            pthread_mutex_lock(&self.lock)
            now = _now_us()
            for i in range(count):
                pkt = self.rx_slots + <size_t>i * self.rx_slot_size
                n = self.rx_lens[i]
                if self.vnet_hdr:
                    if n < VNET:
                        self.st.malformed[1] += 1
                        continue
                    flags = 0
                    if pkt[0] & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID):
                        # The kernel vouches for (or has yet to compute) the checksum.
                        flags = PARSE_SKIP_L4_CHECKSUM
                    if pkt[1] != GSO_NONE:
                        self.st.gso_in += 1
                    self._input(pkt + VNET, n - VNET, flags, now)
                else:
                    self._input(pkt, n, 0, now)
            self._run_timers(now)
            self._drain_loopback(now)
            if self._mem_wake_due():
                self._mem_wake_writers()
            pthread_mutex_unlock(&self.lock)
            if self.release_head != NULL:
                self._release_all()
            if self.pool_count < TCB_POOL // 4:
                self._refill_pool()       # between batches, with the GIL (pool only grows here)

    def run(self):
        """Run the loop in the calling thread until :meth:`stop`."""
        self.running = 1
        with nogil:
            self._loop()

    def stop(self):
        self.running = 0
        _signal(self.wake_fd)

    def release(self):
        """After the loop has ended: let go of the wake fd and the capture (idempotent)."""
        if self.running:
            raise RuntimeError("stop the engine (and join its thread) before closing it")
        self.capture_stop()
        if self.wake_fd >= 0:
            os.close(self.wake_fd)
            self.wake_fd = -1

    # =========================================================================================
    # Calls from application threads (the GIL is held; the mutex is taken without it)
    # =========================================================================================

    cdef inline void _lock(self):
        with nogil:
            pthread_mutex_lock(&self.lock)

    cdef inline void _unlock(self):
        pthread_mutex_unlock(&self.lock)

    cdef void _settle(self, void* p) noexcept:
        """After a user call: send the first few packets it made due from this thread (low
        latency for small writes), and leave a bulk write's remainder to the engine thread, so
        that the caller returns once its bytes are buffered and the two threads share the work."""
        cdef uint64_t now = _now_us()
        cdef bint more
        with nogil:
            more = self._flush_some(p, now, APP_FLUSH_PACKETS)
            self._drain_loopback(now)     # local delivery (and what it makes due) at once
            if more and (<Tcb>p).eng_in_table:
                self._mark_dirty(p)       # the rest is the engine thread's
                self.wake_needed = 1
            if self.wake_needed:
                # A timer earlier than the loop's planned wake-up: let it recompute.
                self.wake_needed = 0
                _signal(self.wake_fd)
            self._mem_check()

    cdef bint _mem_wake_due(self) noexcept nogil:
        """Buffer memory was given back while some connection had been refused some (or waits
        for it)."""
        return self.mem.freed and (self.mem.waiting or self.mem.refused != self.mem_refused_seen)

    cdef void _mem_check(self) noexcept nogil:
        """Let the engine thread wake the writers that wait for memory, when some came back."""
        if self._mem_wake_due():
            _signal(self.wake_fd)

    cdef void _mem_wake_writers(self) noexcept nogil:
        """Memory came back after the stack-wide limit refused some: bring every blocked
        writer's fd up to date (each tries again; one still refused waits for the next)."""
        cdef uint32_t i
        cdef void* p
        self.mem.freed = 0
        self.mem.waiting = 0              # set again by each writer still waiting
        self.mem_refused_seen = self.mem.refused
        for i in range(self.nbuckets):
            p = self.buckets[i]
            while p != NULL:
                if (<Tcb>p).eng_wr_blocked:
                    _readiness(<Tcb>p)
                p = (<Tcb>p).eng_hash_next

    def configure(self, **options):
        """Set the default options of new connections (keys as the Tcb constructor)."""
        config_update(&self.cfg, options)

    def connect(self, bytes laddr, int lport, bytes raddr, int rport, dict options, int app_fd=-1,
                int peer_fd=-1, bint reuse=False):
        """Active open from (laddr, lport) (lport 0: an ephemeral port) to (raddr, rport)."""
        cdef uint8_t la[16]
        cdef uint8_t ra[16]
        cdef uint8_t version = 4 if len(raddr) == 4 else 6
        cdef tcb_config cfg = self.cfg
        cdef void* p
        cdef Tcb t
        cdef int port, tries
        cdef ip_repr ip
        if len(laddr) != len(raddr):
            raise OSError(EINVAL, "address families differ")
        memset(la, 0, 16)
        memset(ra, 0, 16)
        memcpy(la, <const char*>laddr, len(laddr))
        memcpy(ra, <const char*>raddr, len(raddr))
        config_update(&cfg, options)
        t = Tcb.__new__(Tcb)
        t.configure(&cfg)
        t.set_mem_pool(self.mem)
        self._lock()
        try:
            if lport == 0:
                port = 0
                for tries in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
                    self.next_port += 1
                    if self.next_port > EPHEMERAL_HIGH or self.next_port < EPHEMERAL_LOW:
                        self.next_port = EPHEMERAL_LOW
                    if self._lookup(version, la, self.next_port, ra, rport) == NULL and \
                            not self._port_listened(version, self.next_port):
                        port = self.next_port
                        break
                if port == 0:
                    raise OSError(EADDRNOTAVAIL, os.strerror(EADDRNOTAVAIL))
                lport = port
            elif self._lookup(version, la, lport, ra, rport) != NULL:
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
            memset(&ip, 0, sizeof(ip))
            ip.version = version
            memcpy(ip.src, la, 16)
            memcpy(ip.dst, ra, 16)
            t.set_endpoints(&ip, <uint16_t>lport, <uint16_t>rport)
            t.eng_app_fd = app_fd
            t.eng_peer_fd = peer_fd
            t.eng_reuse = reuse
            Py_INCREF(t)
            self._insert(<void*>t)
            t.user_open(_now_us())
            self._settle(<void*>t)
        finally:
            self._unlock()
        return t

    cdef bint _port_listened(self, uint8_t version, uint16_t port) noexcept nogil:
        cdef int i
        for i in range(self.nlst):
            if (<Listener>self.lst[i]).port == port and (<Listener>self.lst[i]).version == version \
                    and not (<Listener>self.lst[i]).closed:
                return True
        return False

    def listen(self, bytes addr, int port, int backlog, dict options, int app_fd=-1,
               int peer_fd=-1, bint reuse=False):
        """Passive open on (addr, port); addr of zeros: any of the stack's addresses."""
        cdef int version = 4 if len(addr) == 4 else 6
        cdef Listener l = Listener(version, addr, port, backlog, app_fd, peer_fd)
        l.reuse = reuse
        cdef tcb_config cfg = self.cfg
        config_update(&cfg, options)
        l.cfg = cfg
        self._lock()
        try:
            if self.nlst >= MAX_LISTENERS:
                raise OSError(ENOMEM, "too many listening sockets")
            self.listeners.append(l)
            self.lst[self.nlst] = <void*>l
            self.nlst += 1
        finally:
            self._unlock()
        return l

    def unlisten(self, Listener l not None):
        """Close a listener: connections still in its queues are reset (as Linux does)."""
        cdef int i, j
        cdef void* p
        cdef uint64_t now = _now_us()
        cdef uint32_t b
        self._lock()
        try:
            l.closed = 1
            l.app_fd = -1                 # the socket closes its fds after this call
            l.peer_fd = -1
            # Connections still pointing at the listener forget it (it may be freed): the
            # embryonic ones are reset, as nobody can accept them any more.
            for b in range(self.nbuckets):
                p = self.buckets[b]
                while p != NULL:
                    if (<Tcb>p).eng_listener == <void*>l:
                        (<Tcb>p).eng_listener = NULL
                        if (<Tcb>p).eng_embryonic:
                            (<Tcb>p).eng_embryonic = 0
                            (<Tcb>p).user_abort(now)
                            self._mark_dirty(p)
                    p = (<Tcb>p).eng_hash_next
            for i in range(self.nlst):
                if self.lst[i] == <void*>l:
                    for j in range(i, self.nlst - 1):
                        self.lst[j] = self.lst[j + 1]
                    self.nlst -= 1
                    break
            self._flush_dirty(now)
            while l.aq_count:
                p = l.acceptq[l.aq_head]
                l.aq_head = (l.aq_head + 1) % l.aq_cap
                l.aq_count -= 1
                (<Tcb>p).eng_queued = 0
                (<Tcb>p).user_abort(now)
                if (<Tcb>p).eng_in_table:
                    self._settle(p)
                else:
                    Py_DECREF(<object>p)
        finally:
            self._unlock()
        if l in self.listeners:
            self.listeners.remove(l)
        if self.release_head != NULL:
            self._release_all()

    def accept(self, Listener l not None, Listener l2=None):
        """The next established connection of the listener (or of ``l2``, the IPv4 half of a
        dual-stack listener sharing its fd), or None."""
        cdef void* p = NULL
        cdef Tcb t = None
        cdef Listener src = None
        self._lock()
        try:
            if l.aq_count:
                src = l
            elif l2 is not None and l2.aq_count:
                src = l2
            if src is not None:
                p = src.acceptq[src.aq_head]
                src.aq_head = (src.aq_head + 1) % src.aq_cap
                src.aq_count -= 1
                (<Tcb>p).eng_queued = 0
                t = <Tcb>p                # our own reference now
                if not t.eng_in_table:
                    Py_DECREF(t)          # the engine's reference, kept only for the queue
            # The fd is readable exactly while a connection waits in either queue.
            if l.aq_count == 0 and (l2 is None or l2.aq_count == 0):
                _token_clear(l.app_fd, &l.rd_token)
                if l2 is not None:
                    l2.rd_token = 0
        finally:
            self._unlock()
        return t

    def local_port_in_use(self, int version, int port, bint reuse=False) -> bool:
        """Would a bind to this local port conflict with a connection (in any state, TIME-WAIT
        included)? As Linux's inet_csk_bind_conflict: not when both the new socket and the
        connection's socket set SO_REUSEADDR."""
        cdef uint32_t i
        cdef void* p
        self._lock()
        try:
            for i in range(self.nbuckets):
                p = self.buckets[i]
                while p != NULL:
                    if (<Tcb>p).lport == port and (<Tcb>p).ip.version == version and \
                            not (reuse and (<Tcb>p).eng_reuse):
                        return True
                    p = (<Tcb>p).eng_hash_next
            return self._port_listened(<uint8_t>version, <uint16_t>port)
        finally:
            self._unlock()

    def attach_fds(self, Tcb t not None, int app_fd, int peer_fd):
        """Give a connection its socket's fd pair (an accepted connection, once its socket
        exists) and bring the fd up to date."""
        self._lock()
        t.eng_app_fd = app_fd
        t.eng_peer_fd = peer_fd
        t.eng_rd_token = 0
        t.eng_wr_blocked = 0
        _readiness(t)
        self._unlock()

    def poke(self, Tcb t not None):
        """Make the socket's fd readable (shutdown(SHUT_RD) from another thread: a blocked
        reader must wake and find end of stream)."""
        self._lock()
        _token_set(t.eng_peer_fd, &t.eng_rd_token)
        self._unlock()

    def send(self, Tcb t not None, data) -> int:
        """Queue bytes on the connection and send what may go now; -errno on error."""
        cdef const uint8_t[::1] d = data  # bytes, bytearray, a byte memoryview (else TypeError/ValueError)
        cdef int64_t r
        cdef size_t n = d.shape[0]
        if n == 0:
            return 0
        self._lock()
        try:
            if t.state == SYN_SENT or t.state == SYN_RECEIVED:
                # The socket API waits for the connection as Linux does (sk_stream_wait_connect)
                # rather than queue data in SYN-SENT as RFC 9293 §3.10.2 allows the TCB to.
                _readiness(t)
                return -EAGAIN
            r = t.user_send(&d[0], n, _now_us())
            if r > 0:
                self._settle(<void*>t)
            elif r == -EAGAIN:
                _readiness(t)             # unwritable now: the caller polls for writability
        finally:
            self._unlock()
        return r

    def recv_into(self, Tcb t not None, buffer, Py_ssize_t nbytes, bint peek) -> int:
        """Copy received bytes into ``buffer``; 0 at end of stream; -errno (-EAGAIN: none yet)."""
        cdef uint8_t[::1] out = buffer
        if nbytes <= 0 or nbytes > out.shape[0]:
            nbytes = out.shape[0]
        if nbytes == 0:
            return 0
        return self._recv(t, &out[0], nbytes, peek)

    cdef int64_t _recv(self, Tcb t, uint8_t* out, Py_ssize_t nbytes, bint peek):
        """The receive step of recv_into and recv_bytes, under the lock."""
        cdef int64_t r
        self._lock()
        try:
            r = t.user_recv(out, nbytes, peek, _now_us())
            if r > 0 and not peek and t.eng_in_table and t.ack_now:
                self._settle(<void*>t)    # a window update is due
            else:
                self._mem_check()
            if not _tcb_readable(t):
                _token_clear(t.eng_app_fd, &t.eng_rd_token)   # nothing left: not readable
        finally:
            self._unlock()
        return r

    def recv_bytes(self, Tcb t not None, Py_ssize_t nbytes, bint peek):
        """Like recv_into, into a new bytes object of the right size (one copy, as the kernel's
        recv): bytes, or -errno as an int."""
        cdef object out
        cdef int64_t r
        if nbytes <= 0:
            return b""
        out = PyBytes_FromStringAndSize(NULL, nbytes)
        r = self._recv(t, <uint8_t*>PyBytes_AS_STRING(out), nbytes, peek)
        if r < 0:
            return r
        if r == nbytes:
            return out
        return out[:r]

    def shutdown(self, Tcb t not None) -> int:
        """shutdown(SHUT_WR): the FIN after the queued data."""
        return self._user_call(t, CALL_SHUTDOWN)

    def close(self, Tcb t not None) -> int:
        """The socket is closed: the connection finishes on its own (or resets, RFC 2525)."""
        return self._user_call(t, CALL_CLOSE)

    def abort(self, Tcb t not None) -> int:
        """Reset the connection (SO_LINGER with a zero time)."""
        return self._user_call(t, CALL_ABORT)

    cdef int _user_call(self, Tcb t, int which) except? -1000:
        cdef int r
        self._lock()
        try:
            if which == CALL_SHUTDOWN:
                r = t.user_shutdown(_now_us())
            elif which == CALL_CLOSE:
                t.eng_app_fd = -1         # the socket closes its fds after this call
                t.eng_peer_fd = -1
                r = t.user_close(_now_us())
            else:
                r = t.user_abort(_now_us())
            if t.eng_in_table:
                self._settle(<void*>t)
        finally:
            self._unlock()
        if which != CALL_SHUTDOWN and self.release_head != NULL:
            self._release_all()
        return r

    def set_options(self, Tcb t not None, dict options):
        """Change a connection's options (socket options); takes effect for what follows."""
        self._lock()
        try:
            config_update(&t.cfg, options)
            t.reconfigure()
            if t.eng_in_table:
                self._settle(<void*>t)
        finally:
            self._unlock()

    def state_of(self, Tcb t not None):
        """(state name, events, error, recv available, send space) under the lock."""
        self._lock()
        try:
            return (STATE_NAMES[t.state], t.events, t.error, t.recv_available(), t.send_space())
        finally:
            self._unlock()

    # --- introspection -------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters in the spirit of ``netstat -s``: the engine's and the connections' (live and
        gone) added up."""
        cdef uint32_t i
        cdef void* p
        cdef dict out, st, totals
        self._lock()
        try:
            st = self.st
            totals = self.closed_totals
            for i in range(self.nbuckets):
                p = self.buckets[i]
                while p != NULL:
                    for k, v in (<Tcb>p).counters.items():
                        totals[k] += v
                    p = (<Tcb>p).eng_hash_next
        finally:
            self._unlock()
        from tcpfast._wire import Reason
        out = {}
        for key in ("packets_in", "packets_out", "bytes_in", "bytes_out", "not_ours", "not_tcp",
                    "resets_sent", "dropped_no_listener", "dropped_backlog", "syncookies_sent",
                    "syncookies_accepted", "syncookies_failed", "icmp_echo_replies",
                    "icmp_errors", "icmp_unmatched", "loopback_packets", "loopback_dropped",
                    "write_errors", "gso_in", "gso_out", "connections_opened", "tcp_segments_in",
                    "connections_closed", "time_wait_reused"):
            out[key] = st[key]
        malformed = st["malformed"]
        for r in Reason:
            if r != Reason.OK:
                out["malformed_" + r.name.lower()] = malformed[int(r)]
        out["bad_checksum"] = malformed[int(Reason.BAD_CHECKSUM)] + \
            malformed[int(Reason.BAD_IP_CHECKSUM)]
        out["malformed"] = sum(malformed[int(r)] for r in Reason if r != Reason.OK)
        out["segments_in"] = st["tcp_segments_in"]
        out["segments_out"] = totals["segs_out"] + st["resets_sent"] + st["syncookies_sent"]
        out["resets_received"] = totals["rst_in"]
        out["resets_sent"] = st["resets_sent"] + totals["rst_out"]
        for key in ("retransmits", "bytes_retransmitted", "fast_retransmits", "sack_recoveries",
                    "rto_expirations", "dupacks_in", "challenge_acks", "out_of_window",
                    "paws_rejected", "ooo_segments", "ooo_dropped", "zero_window_probes",
                    "keepalive_probes", "delayed_acks", "window_updates",
                    # loss recovery by cause (RACK-TLP, PRR, F-RTO, D-SACK, undo)
                    "retrans_rto", "retrans_rack", "retrans_fast", "retrans_tlp", "tlp_probes",
                    "tlp_recoveries", "rack_reo_timeouts", "dsack_in", "dsack_out",
                    "spurious_retrans", "spurious_rtos", "undo_events"):
            out[key] = totals[key]
        out["connections"] = self.nconns
        # The stack-wide limit on buffer memory (see README, "Buffers"): what the connections'
        # rings hold now and at most, and how often the limit pressed (buffers stopped growing)
        # or refused memory outright.
        out["mem_limit"] = self.mem.limit
        out["mem_allocated"] = self.mem.allocated
        out["mem_peak"] = self.mem.peak
        out["mem_pressure_events"] = self.mem.pressure_events
        out["mem_refused"] = self.mem.refused
        return out

    @property
    def mem_limit(self):
        """The stack-wide limit on buffer memory, bytes (settable)."""
        return self.mem.limit

    @mem_limit.setter
    def mem_limit(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 65536 <= value < (1 << 62):
            raise ValueError("mem_limit must be a number of bytes, at least 65536")
        self.mem.limit = value

    def connections(self) -> list:
        """One row per connection and listener, in the spirit of ``ss -tan``."""
        cdef uint32_t i
        cdef void* p
        cdef Tcb t
        cdef int k
        rows = []
        self._lock()
        try:
            for k in range(self.nlst):
                l = <Listener>self.lst[k]
                rows.append(dict(state="LISTEN", local=(str(ipaddress.ip_address(l.address)), l.port),
                                 remote=None,
                                 send_queue=l.aq_count, recv_queue=l.syn_count, cwnd=None,
                                 srtt=None))
            for i in range(self.nbuckets):
                p = self.buckets[i]
                while p != NULL:
                    t = <Tcb>p
                    info = t.info
                    rows.append(dict(state=info["state"], local=t.local, remote=t.remote,
                                     send_queue=info["send_queue"], recv_queue=info["recv_queue"],
                                     cwnd=info["cwnd"],
                                     srtt=info["srtt"] / 1e6 if info["srtt"] is not None else None,
                                     rto=info["rto"] / 1e6,
                                     # buffers, as ss -m: sizes (auto-tuned unless locked) and
                                     # the storage allocated now
                                     rcvbuf=info["rcvbuf"], sndbuf=info["sndbuf"],
                                     rmem_alloc=info["rcvbuf_alloc"],
                                     wmem_alloc=info["sndbuf_alloc"]))
                    p = t.eng_hash_next
        finally:
            self._unlock()
        return rows

    def capture_start(self, path):
        """Write every packet in and out to ``path`` as pcap (LINKTYPE_RAW)."""
        cdef bytes bpath = os.fsencode(path)
        cdef FILE* f
        cdef uint32_t hdr[6]
        f = fopen(bpath, b"wb")
        if f == NULL:
            raise OSError(errno, os.strerror(errno), path)
        hdr[0] = 0xa1b2c3d4               # microsecond timestamps
        hdr[1] = 2 | (4 << 16)            # version 2.4
        hdr[2] = 0                        # thiszone
        hdr[3] = 0                        # sigfigs
        hdr[4] = 65535                    # snaplen
        hdr[5] = 101                      # LINKTYPE_RAW: raw IPv4/IPv6
        fwrite(hdr, 4, 6, f)
        self._lock()
        old = self.pcap
        self.pcap = f
        self._unlock()
        if old != NULL:
            fclose(old)

    def capture_stop(self):
        self._lock()
        f = self.pcap
        self.pcap = NULL
        self._unlock()
        if f != NULL:
            fflush(f)
            fclose(f)


def default_mem_limit() -> int:
    """The default stack-wide limit on buffer memory: 1/16 of the machine's physical memory
    (Linux's tcp_mem allows TCP about 3/32 of it at the hard mark), at least 64 MiB."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 0
    return max(64 << 20, total // 16)
