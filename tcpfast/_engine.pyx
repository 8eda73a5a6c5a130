# cython: language_level=3
"""The stack's engine (see ``_engine.pxd``): the loop and the calls application threads make.

Per packet, everything here runs in C without the GIL: read, parse (``_wire``), look up the
connection (a keyed hash of the 4-tuple), run it (``_tcb``), write what it emits. The GIL is taken
only where a Python object must be made or let go: a new connection (a ``Tcb`` per SYN that gets
state; SYN cookies when the SYN queue is full make none), and releasing connections that have
left the table.

Locking: one mutex per engine. The engine thread holds it while it handles a batch; application
threads take it (with the GIL released while they wait, so the engine can take the GIL while it
holds the mutex) for every call into a connection, and flush the segments their call made due.

One job per file, one compilation unit: this module includes the files of ``_engine/`` (as
uvloop's ``loop.pyx`` includes its handles), so the C compiler sees the whole per-packet path
at once and inlines across the files as it would within one.

    _engine/system.pxi     the C interfaces (poll, read/write, eventfd, clocks)
    _engine/readiness.pxi  the socket's fd follows its connection
    _engine/table.pxi      the connection table, the object pool, the port picker, the bind table
    _engine/timers.pxi     the timer wheel
    _engine/output.pxi     framing (virtio-net, GSO), the loopback queue, the capture (pcap)
    _engine/listen.pxi     listeners: SYN queue, accept queue, SYN cookies
    _engine/icmp.pxi       ICMP echo and errors
    _engine/dispatch.pxi   input: parse, demultiplex; running a connection and filing it
    _engine.pyx (here)     the loop, and the calls of application threads
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memset, memcmp
from libc.stdio cimport FILE, fopen, fwrite, fclose, fflush
from libc.errno cimport errno, EAGAIN, EINTR, EADDRINUSE, EADDRNOTAVAIL, ENOMEM, EINVAL, \
    ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EPROTO, EALREADY, EISCONN, ECONNABORTED, \
    EINPROGRESS, ECONNRESET, ETIMEDOUT, EPIPE, ENOTCONN
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from tcpfast._seq cimport seq_between
from tcpfast._wire cimport (pkt_repr, ip_repr, tcp_repr, icmp_repr, wire_reason, WIRE_OK,
                            WIRE_TRUNCATED, packet_parse, icmp_packet_emit, ip_header_len,
                            PARSE_SKIP_L4_CHECKSUM, PROTO_TCP, TH_SYN, TH_ACK, TH_RST, TH_FIN,
                            store16)
from tcpfast._tcb cimport (Tcb, conn_meta, tcb_config, tcb_stats, tcb_config_default,
                           config_update, config_options, reset_for_segment, syn_ack_for_cookie,
                           SEG_REPLY_RST, CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED,
                           FIN_WAIT_2, TIME_WAIT, tcb_poll, tcb_hangup, tcb_readable,
                           tcb_send_ready, POLL_ERR, POLL_HUP, POLL_RDHUP, POLL_OUT, POLL_NOMEM)
from tcpfast._isn cimport isn_secret, siphash24
from tcpfast._ring cimport mem_pool_new, mem_pool_unref

import ipaddress
import os
import threading
from socket import AF_INET

from tcpfast import pcap as _pcap
from tcpfast._tcb import STATE_NAMES as _STATE_NAMES, TCPI_STATE as _TCPI

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
    FLUSH_ALL = 100000               # (a bound that is never reached)
    COOKIE_MSS_VALUES = 8            # the MSS values a SYN cookie can carry (3 bits)
    CALL_SHUTDOWN = 1
    CALL_CLOSE = 2
    CALL_ABORT = 3

cdef uint32_t LOOP_PARTIAL = 0x80000000U   # loop_len flag: the checksum was left to a device

# TCP_INFO's tcpi_state for each state (by RFC name), for the socket layer (from _tcb's tables).
TCPI_STATE = dict(zip(_STATE_NAMES, _TCPI))

include "_engine/system.pxi"
include "_engine/readiness.pxi"
include "_engine/table.pxi"
include "_engine/timers.pxi"
include "_engine/output.pxi"
include "_engine/listen.pxi"
include "_engine/icmp.pxi"
include "_engine/dispatch.pxi"


cdef class ConnFacts:
    """What the socket layer may know of a connection, copied at once under the engine's lock by
    Engine.conn_facts(): the socket never reads a Tcb while the engine thread changes it."""

    @property
    def state(self) -> str:
        """The state, as RFC 9293 writes it (``SYN-SENT``, ``FIN-WAIT-2``)."""
        return _STATE_NAMES[self.f.state]

    @property
    def tcpi_state(self) -> int:
        """The state as Linux numbers it (TCP_INFO's tcpi_state)."""
        return _TCPI[self.f.state]

    @property
    def error(self) -> int:
        """The connection's error (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...), 0 for none."""
        return self.f.error

    @property
    def rcv_fin(self) -> bool:
        """The peer's FIN arrived."""
        return bool(self.f.rcv_fin)

    @property
    def mss(self) -> int:
        """The segment size we send (TCP_MAXSEG of a connected socket)."""
        return self.f.smss

    @property
    def local(self) -> tuple:
        """(address as packed bytes, port)."""
        return ((<char*>self.f.laddr)[:4 if self.f.version == 4 else 16], self.f.lport)

    @property
    def remote(self) -> tuple:
        """(address as packed bytes, port)."""
        return ((<char*>self.f.raddr)[:4 if self.f.version == 4 else 16], self.f.rport)

    @property
    def has_peer(self) -> bool:
        """Whether getpeername() names the peer: not while connecting, nor once the connection
        is over (as Linux's inet_getname)."""
        return not (self.f.state == CLOSED or self.f.state == TIME_WAIT or
                    self.f.state == SYN_SENT)

    @property
    def finished(self) -> bool:
        """The connection is over (CLOSED, or TIME-WAIT): nothing more to send or receive."""
        return self.f.state == CLOSED or self.f.state == TIME_WAIT

    @property
    def fin_pending(self) -> bool:
        """The connection lives and our FIN is not acknowledged yet (a close() with SO_LINGER
        waits while this holds)."""
        return not (self.f.state == CLOSED or self.f.state == LISTEN or
                    self.f.state == FIN_WAIT_2 or self.f.state == TIME_WAIT)

    @property
    def info(self) -> dict:
        """The variables TCP_INFO reports (times in us; srtt None before the first sample)."""
        return dict(in_recovery=bool(self.f.in_recovery), retries=self.f.retries,
                    ts_ok=bool(self.f.ts_ok), sack_ok=bool(self.f.sack_ok),
                    ws_ok=bool(self.f.ws_ok), snd_wscale=self.f.snd_wscale,
                    rcv_wscale=self.f.rcv_wscale, rto=self.f.rto, smss=self.f.smss,
                    unacked=self.f.unacked, rcv_wnd=self.f.rcv_wnd,
                    srtt=self.f.srtt if self.f.has_srtt else None, rttvar=self.f.rttvar,
                    ssthresh=self.f.ssthresh, cwnd=self.f.cwnd)

    @property
    def counters(self) -> dict:
        """The connection's counters (as Tcb.counters)."""
        return self.f.stats

    def __repr__(self) -> str:
        return f"<ConnFacts {self.state}>"


cdef class Engine:
    """Engine(fd, *, mtu, addr4=None, addr6=None, vnet_hdr=False, tso4=False, tso6=False,
    csum_offload=False)

    The loop (``run``) and the calls application threads make into it. Addresses are packed
    bytes (4 or 16).
    """

    def __cinit__(self):
        self.wake_fd = -1
        self.fd = -1
        self.table.buckets = NULL
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
        self.table.nbuckets = TABLE_BUCKETS
        self.table.buckets = <conn_meta**>calloc(TABLE_BUCKETS, sizeof(conn_meta*))
        self.rxbuf = <uint8_t*>malloc(PKT_MAX)
        # One slot per packet of a batch: a whole GSO super-segment with offload, an MTU without.
        self.rx_slot_size = PKT_MAX if vnet_hdr else mtu + VNET + 64
        self.rx_slots = <uint8_t*>malloc(<size_t>BATCH * self.rx_slot_size)
        if self.rx_slots == NULL:
            raise MemoryError()
        self.txbuf = <uint8_t*>malloc(PKT_MAX)
        self.loopq = <uint8_t*>malloc(<size_t>LOOP_SLOTS * LOOP_PKT)
        self.loop_len = <uint32_t*>malloc(sizeof(uint32_t) * LOOP_SLOTS)
        if not (self.table.buckets and self.rxbuf and self.txbuf and self.loopq and self.loop_len):
            raise MemoryError()
        memset(&self.wheel, 0, sizeof(self.wheel))
        memset(&self.st, 0, sizeof(self.st))
        self.listeners = []
        self.nlst = 0
        self.release_head = NULL
        self.dirty_head = NULL
        self.start_us = _now_us()
        self.wheel.tick = self.start_us // 1000
        self.next_port = EPHEMERAL_LOW + (int.from_bytes(os.urandom(2), "little") %
                                          (EPHEMERAL_HIGH - EPHEMERAL_LOW))
        self.bound = {}
        self.bind_lock = threading.Lock()
        tcb_config_default(&self.cfg)
        self.cfg.secret = self.secret
        self.cfg.mss = mtu - 40
        self.cfg.csum_partial = self.csum_offload
        self.running = 0

    def __dealloc__(self):
        cdef uint32_t i
        cdef conn_meta* c
        cdef conn_meta* nxt
        if self.pcap != NULL:
            fclose(self.pcap)
        if self.table.buckets != NULL:
            for i in range(self.table.nbuckets):
                c = self.table.buckets[i]
                while c != NULL:
                    nxt = c.hash_next
                    Py_DECREF(<object>c.tcb)
                    c = nxt
            free(self.table.buckets)
        c = self.release_head
        while c != NULL:
            nxt = c.hash_next
            Py_DECREF(<object>c.tcb)
            c = nxt
        while self.pool_count:
            self.pool_count -= 1
            Py_DECREF(<object>self.pool[self.pool_count].tcb)
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
            timeout = poll_timeout(self, now)
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
                        self.st.malformed[<int>WIRE_TRUNCATED] += 1
                        continue
                    flags = 0
                    if pkt[0] & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID):
                        # The kernel vouches for (or has yet to compute) the checksum.
                        flags = PARSE_SKIP_L4_CHECKSUM
                    if pkt[1] != GSO_NONE:
                        self.st.gso_in += 1
                    packet_input(self, pkt + VNET, n - VNET, flags, now)
                else:
                    packet_input(self, pkt, n, 0, now)
            run_timers(self, now)
            drain_loopback(self, now)
            if mem_wake_due(self):
                mem_wake_writers(self)
            pthread_mutex_unlock(&self.lock)
            if self.release_head != NULL:
                release_all(self)
            if self.pool_count < TCB_POOL // 4:
                refill_pool(self)       # between batches, with the GIL (pool only grows here)

    @property
    def nconns(self) -> int:
        """The number of connections in the table (every state but the accepted-and-gone)."""
        return self.table.count

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

    cdef void _settle(self, Tcb t) noexcept:
        """After a user call: send the first few packets it made due from this thread (low
        latency for small writes), and leave a bulk write's remainder to the engine thread, so
        that the caller returns once its bytes are buffered and the two threads share the work."""
        cdef uint64_t now = _now_us()
        cdef bint more
        with nogil:
            more = flush_some(self, t, now, APP_FLUSH_PACKETS)
            drain_loopback(self, now)     # local delivery (and what it makes due) at once
            if more and t.meta.in_table:
                mark_dirty(self, &t.meta)  # the rest is the engine thread's
                self.wake_needed = 1
            if self.wake_needed:
                # A timer earlier than the loop's planned wake-up: let it recompute.
                self.wake_needed = 0
                _signal(self.wake_fd)
            mem_check(self)


    def configure(self, **options):
        """Set the default options of new connections (keys as the Tcb constructor)."""
        config_update(&self.cfg, options)

    def options(self) -> dict:
        """The options new connections get, by name (times in seconds): tcb_config_default's,
        with what configure() set."""
        return config_options(&self.cfg)

    def connect(self, bytes laddr, int lport, bytes raddr, int rport, dict options, int app_fd=-1,
                int peer_fd=-1, bint reuse=False):
        """Active open from (laddr, lport) (lport 0: an ephemeral port) to (raddr, rport)."""
        cdef uint8_t la[16]
        cdef uint8_t ra[16]
        cdef uint8_t version = 4 if len(raddr) == 4 else 6
        cdef tcb_config cfg = self.cfg
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
        meta_init(t)
        t.configure(&cfg)
        t.set_mem_pool(self.mem)
        self._lock()
        try:
            if lport == 0:
                # An ephemeral port whose 4-tuple is free and that no listener holds.
                port = 0
                for tries in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
                    port = next_ephemeral_port(self)
                    if table_lookup(self, version, la, port, ra, rport) == NULL and \
                            not port_listened(self, version, port):
                        break
                    port = 0
                if port == 0:
                    raise OSError(EADDRNOTAVAIL, os.strerror(EADDRNOTAVAIL))
                lport = port
            elif table_lookup(self, version, la, lport, ra, rport) != NULL:
                raise OSError(EADDRINUSE, os.strerror(EADDRINUSE))
            memset(&ip, 0, sizeof(ip))
            ip.version = version
            memcpy(ip.src, la, 16)
            memcpy(ip.dst, ra, 16)
            t.set_endpoints(&ip, <uint16_t>lport, <uint16_t>rport)
            t.meta.app_fd = app_fd
            t.meta.peer_fd = peer_fd
            t.meta.reuse = reuse
            t.meta.connecting = 1         # until the socket has seen the outcome
            Py_INCREF(t)                  # the engine's reference, let go when it leaves the table
            conn_insert(self, t)
            t.user_open(_now_us())
            self._settle(t)
        finally:
            self._unlock()
        return t


    def listen(self, bytes addr, int port, int backlog, dict options, int app_fd=-1,
               int peer_fd=-1, bint reuse=False, Binding binding=None):
        """Passive open on (addr, port); addr of zeros: any of the stack's addresses. The
        socket's ``binding`` (if any) counts as listening until unlisten()."""
        cdef int version = 4 if len(addr) == 4 else 6
        cdef Listener l = Listener(version, addr, port, backlog, app_fd, peer_fd)
        l.reuse = reuse
        l.binding = binding
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
        if binding is not None:
            binding.listening = True
        return l

    def unlisten(self, Listener l not None):
        """Close a listener: connections still in its queues are reset (as Linux does)."""
        cdef int i, j
        cdef conn_meta* c
        cdef uint64_t now = _now_us()
        cdef uint32_t b
        self._lock()
        try:
            l.closed = 1
            l.app_fd = -1                 # the socket closes its fds after this call
            l.peer_fd = -1
            # Connections still pointing at the listener forget it (it may be freed): the
            # embryonic ones are reset, as nobody can accept them any more.
            for b in range(self.table.nbuckets):
                c = self.table.buckets[b]
                while c != NULL:
                    if c.listener == <void*>l:
                        c.listener = NULL
                        if c.embryonic:
                            c.embryonic = 0
                            (<Tcb>c.tcb).user_abort(now)
                            mark_dirty(self, c)
                    c = c.hash_next
            for i in range(self.nlst):
                if self.lst[i] == <void*>l:
                    for j in range(i, self.nlst - 1):
                        self.lst[j] = self.lst[j + 1]
                    self.nlst -= 1
                    break
            flush_dirty(self, now)
            c = aq_pop(l)
            while c != NULL:
                (<Tcb>c.tcb).user_abort(now)
                if c.in_table:
                    self._settle(<Tcb>c.tcb)
                else:
                    Py_DECREF(<object>c.tcb)      # the engine's reference, kept for the queue
                c = aq_pop(l)
        finally:
            self._unlock()
        if l in self.listeners:
            self.listeners.remove(l)
        if l.binding is not None:
            (<Binding>l.binding).listening = False
        if self.release_head != NULL:
            release_all(self)

    def accept(self, Listener l not None, Listener l2=None):
        """The next established connection of the listener (or of ``l2``, the IPv4 half of a
        dual-stack listener sharing its fd), or None."""
        cdef conn_meta* c = NULL
        cdef Tcb t = None
        self._lock()
        try:
            c = aq_pop(l)
            if c == NULL and l2 is not None:
                c = aq_pop(l2)
            if c != NULL:
                t = <Tcb>c.tcb            # our own reference now
                if not c.in_table:
                    Py_DECREF(t)          # the engine's reference, kept only for the queue
            # The fd is readable exactly while a connection waits in either queue.
            if l.aq_count == 0 and (l2 is None or l2.aq_count == 0):
                token_clear(l.app_fd, &l.rd_token)
                if l2 is not None:
                    l2.rd_token = 0
        finally:
            self._unlock()
        return t

    # --- the bind table (_engine/table.pxi): the local ports sockets hold ----------------------

    def binding(self, int family) -> Binding:
        """A new socket's hold on local ports (holding none yet), and its SO_REUSEADDR and
        SO_REUSEPORT."""
        return Binding(family)

    def bind(self, Binding b not None, int port) -> int:
        """Reserve (family, port) for the socket of ``b``; returns the port (port 0: an
        ephemeral one that no socket and no connection holds). EADDRINUSE as Linux's bind()."""
        return bind_port(self, b, port)

    def bind_also(self, Binding b not None, int family, int port) -> None:
        """A dual-stack listener holds the port for IPv4 too (as Linux with IPV6_V6ONLY off)."""
        bind_also(self, b, family, port)

    def check_listen(self, Binding b not None, int port) -> None:
        """EADDRINUSE if another socket listens on the port (as Linux at listen())."""
        listen_check(self, b, port)

    def unbind(self, Binding b not None) -> None:
        """The socket of ``b`` is closed: the ports it held are free again."""
        unbind(self, b)

    def attach_fds(self, Tcb t not None, int app_fd, int peer_fd):
        """Give a connection its socket's fd pair (an accepted connection, once its socket
        exists) and bring the fd up to date."""
        self._lock()
        t.meta.app_fd = app_fd
        t.meta.peer_fd = peer_fd
        t.meta.rd_token = 0
        t.meta.wr_blocked = 0
        readiness(t)
        self._unlock()

    def poke(self, Tcb t not None):
        """Make the socket's fd readable (shutdown(SHUT_RD) from another thread: a blocked
        reader must wake and find end of stream)."""
        self._lock()
        token_set(t.meta.peer_fd, &t.meta.rd_token)
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
                readiness(t)
                return -EAGAIN
            r = t.user_send(&d[0], n, _now_us())
            if r > 0:
                self._settle(t)
            elif r == -EAGAIN:
                readiness(t)              # unwritable now: the caller polls for writability
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
            if r > 0 and not peek and t.meta.in_table and t.ack_now:
                self._settle(t)           # a window update is due
            else:
                mem_check(self)
            if not tcb_readable(t):
                token_clear(t.meta.app_fd, &t.meta.rd_token)  # nothing left: not readable
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
                t.meta.app_fd = -1        # the socket closes its fds after this call
                t.meta.peer_fd = -1
                r = t.user_close(_now_us())
            else:
                r = t.user_abort(_now_us())
            if t.meta.in_table:
                self._settle(t)
        finally:
            self._unlock()
        if which != CALL_SHUTDOWN and self.release_head != NULL:
            release_all(self)
        return r

    def set_options(self, Tcb t not None, dict options):
        """Change a connection's options (socket options); takes effect for what follows."""
        self._lock()
        try:
            config_update(&t.cfg, options)
            t.reconfigure()
            if t.meta.in_table:
                self._settle(t)
        finally:
            self._unlock()

    # --- what the socket layer asks (the state of its connection lives here, not in the socket)

    def conn_facts(self, Tcb t not None) -> ConnFacts:
        """What the socket layer may know of the connection, copied at once under the lock."""
        cdef ConnFacts facts = ConnFacts.__new__(ConnFacts)
        self._lock()
        t.get_facts(&facts.f)
        facts.connecting = t.meta.connecting
        self._unlock()
        return facts

    def connect_again(self, Tcb t not None) -> int:
        """connect() on a socket whose connection exists, as Linux's __inet_stream_connect:
        EALREADY while the handshake runs (whatever the socket's mode); once an attempt left in
        progress is over, 0 if it succeeded, else its error once (ECONNABORTED if that was
        reported already); then EISCONN; and -1 after a failure that was reported: the caller
        starts a new connection."""
        cdef int err
        self._lock()
        if t.state == SYN_SENT or t.state == SYN_RECEIVED:
            err = EALREADY
        elif t.meta.connecting:
            t.meta.connecting = 0
            if t.state != CLOSED:
                err = 0                   # the attempt completed meanwhile
            else:
                err = t.error if t.error and not t.meta.err_reported else ECONNABORTED
                t.meta.err_reported = 1
                t.meta.failed = 1
        elif not t.meta.failed:
            err = EISCONN
        else:
            err = -1
        self._unlock()
        return err

    def connect_status(self, Tcb t not None, bint blocking) -> int:
        """One look at a connect() in progress: EINPROGRESS while the handshake runs (the caller
        waits for writability), else its result: 0, or the error (ECONNABORTED if none), now
        reported. CPython connects a socket with a timeout by a non-blocking connect() and poll,
        so the kernel socket stays connecting (SS_CONNECTING) afterwards: the next connect()
        returns 0 (or ECONNABORTED after a failure) before EISCONN. A blocking connect()
        (``blocking``) leaves it connected, or unconnected after a failure."""
        cdef int err
        self._lock()
        if t.error or t.state == CLOSED:
            t.meta.err_reported = 1
            if blocking:
                t.meta.connecting = 0
                t.meta.failed = 1
            err = t.error if t.error else ECONNABORTED
        elif t.state != SYN_SENT and t.state != SYN_RECEIVED:
            if blocking:
                t.meta.connecting = 0
            err = 0
        else:
            err = EINPROGRESS
        self._unlock()
        return err

    def sock_error(self, Tcb t not None) -> int:
        """SO_ERROR: the connection's error once, then 0 (as the kernel's sock_error())."""
        cdef int err = 0
        self._lock()
        if t.error and not t.meta.err_reported:
            t.meta.err_reported = 1
            err = t.error
        self._unlock()
        return err

    def recv_error(self, Tcb t not None, int err) -> int:
        """A receive failed with ``err``: the errno to raise (the error is reported now), or 0
        when it is the connection's error and was reported once already: the kernel then
        reports end of stream."""
        self._lock()
        if t.meta.err_reported and (err == ECONNRESET or err == ETIMEDOUT or
                                    err == ECONNREFUSED or err == EHOSTUNREACH):
            err = 0
        else:
            t.meta.err_reported = 1
        self._unlock()
        return err

    def send_error(self, Tcb t not None, int err) -> int:
        """A send failed with ``err``: the errno to raise. ENOTCONN as it is; the connection's
        error once (a reset after the peer's FIN as EPIPE, as Linux's tcp_reset), then EPIPE."""
        self._lock()
        if err != ENOTCONN:
            if err == ECONNRESET and t.rcv_fin:
                err = EPIPE
            if (err == ECONNRESET or err == ETIMEDOUT or err == ECONNREFUSED) and \
                    not t.meta.err_reported:
                t.meta.err_reported = 1
            else:
                err = EPIPE
        self._unlock()
        return err

    def state_of(self, Tcb t not None):
        """(state name, poll bits as select.poll gives them, error, recv available, send space)
        under the lock."""
        cdef int state, error
        cdef uint32_t mask, avail, space
        self._lock()
        state, mask, error = t.state, tcb_poll(t) & ~POLL_NOMEM, t.error
        avail, space = t.recv_available(), t.send_space()
        self._unlock()
        return (_STATE_NAMES[state], mask, error, avail, space)

    # --- introspection -------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters in the spirit of ``netstat -s``: the engine's and the connections' (live and
        gone) added up."""
        cdef uint32_t i
        cdef conn_meta* c
        cdef engine_stats est
        cdef tcb_stats sums
        cdef dict out, st, totals
        self._lock()
        est = self.st
        sums = self.closed_totals
        for i in range(self.table.nbuckets):
            c = self.table.buckets[i]
            while c != NULL:
                add_totals(&sums, &(<Tcb>c.tcb).stats)
                c = c.hash_next
        self._unlock()
        st = est                          # as dicts, once the lock is let go
        totals = sums
        from tcpfast._wire import Reason
        out = {}
        for key in ("packets_in", "packets_out", "bytes_in", "bytes_out", "not_ours",
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
        out["connections"] = self.table.count
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
        cdef conn_meta* c
        cdef Tcb t
        cdef int k
        rows = []
        self._lock()
        try:
            for k in range(self.nlst):
                l = <Listener>self.lst[k]
                rows.append(dict(state=_STATE_NAMES[LISTEN], local=(str(ipaddress.ip_address(l.address)), l.port),
                                 remote=None,
                                 send_queue=l.aq_count, recv_queue=l.syn_count, cwnd=None,
                                 srtt=None))
            for i in range(self.table.nbuckets):
                c = self.table.buckets[i]
                while c != NULL:
                    t = <Tcb>c.tcb
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
                    c = c.hash_next
        finally:
            self._unlock()
        return rows

    def capture_start(self, path):
        """Write every packet in and out to ``path`` as pcap (LINKTYPE_RAW)."""
        cdef bytes bpath = os.fsencode(path)
        cdef bytes header = _pcap.file_header()
        cdef FILE* f
        f = fopen(bpath, b"wb")
        if f == NULL:
            raise OSError(errno, os.strerror(errno), path)
        fwrite(<const char*>header, 1, len(header), f)
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

