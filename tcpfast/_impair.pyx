# cython: language_level=3
"""A path impairer in C: netem's delay, loss, duplicate and reorder, in user space.

This project's kernels have neither ``sch_netem`` nor ``sch_fq``, so a WAN path for ``tcpfast
bench`` cannot come from the kernel. :class:`Impairer` forwards IPv4 packets between two
``AF_PACKET`` sockets (side *a* and side *b*, each bound to one device: a veth end or a TUN
device), in both directions, and on the way:

* drops a packet with probability ``loss`` (each direction draws from its own seeded
  splitmix64 stream, so a run is reproducible for the same input);
* makes a second copy with probability ``duplicate``;
* holds every packet for ``delay`` seconds in a FIFO (one delay for all, so departure order is
  arrival order) bounded in packets (``limit``) and bytes (``limit_bytes``); what finds it full is
  dropped and counted (``queue_drops``), as netem's ``limit`` does;
* with probability ``reorder`` (and a delay) sends a packet at once, past the held ones, as
  netem's ``reorder`` does.

The loop runs in C with the GIL released: ``recvmmsg`` reads a batch from each side,
``sendmmsg`` writes the packets that are due, and ``ppoll`` sleeps until the next departure
(nanosecond timeout), a packet, room to send, or a write to the wake-up eventfd (:meth:`stop`).
Nothing spins: with nothing queued it sleeps until woken. It also ends by itself after
``max_seconds``. No Python object is made per packet.

Offloads (GSO): the sockets are opened with ``PACKET_VNET_HDR`` (by the caller; see
``tcpfast.bench.impair``), so every packet comes with its virtio-net header, and a super-packet
(up to 64 KiB, from TSO on a veth or a TUN device with offload) is one packet here, forwarded
whole with its header (GSO type and size, partial checksum) so the output device or the
receiving stack cuts it into segments. The impairer therefore needs no offload switched off, and
a super-packet is delayed, lost or duplicated as a whole, exactly as netem treats one. The
header's ``csum_start`` and ``hdr_len`` count from the start of the frame, so they are moved by
the link header stripped on input and prepended on output.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS, EMSGSIZE, EINVAL
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "<time.h>" nogil:
    enum:
        CLOCK_THREAD_CPUTIME_ID
from posix.unistd cimport read, write, close

cdef enum:
    ETH_P_IP = 0x0800
    VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
    PICK_MAIN = 0
    PICK_EXPRESS = 1
    EXPRESS_LIMIT = 256
    EXPRESS_BYTES = 4 << 20
    # What _loop returns: an index into STOP_REASONS.
    STOP_STOPPED = 0
    STOP_MAX_SECONDS = 1
    STOP_ERROR = 2

STOP_REASONS = ("stopped", "max_seconds", "error")


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline uint64_t splitmix_next(uint64_t* state) noexcept nogil:
    """splitmix64: a 64-bit state, one addition and three mixes per draw."""
    cdef uint64_t z
    state[0] += 0x9e3779b97f4a7c15ULL
    z = state[0]
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef uint64_t threshold(double p) except? 0:
    """A probability as a 64-bit threshold: a draw below it happens with probability ``p``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"probability {p!r} is outside [0, 1)")
    return <uint64_t>(p * 18446744073709551616.0)


# --- the bounded FIFO --------------------------------------------------------------------------

cdef int queue_init(queue_t* q, uint32_t limit, uint32_t cap) noexcept nogil:
    q.slots = <pkt_t*>calloc(limit, sizeof(pkt_t))
    q.bytes = <uint8_t*>malloc(cap)
    q.limit = limit
    q.cap = cap
    q.head = q.count = q.byte_head = q.byte_tail = 0
    return 0 if q.slots != NULL and q.bytes != NULL else -1


cdef void queue_free(queue_t* q) noexcept nogil:
    free(q.slots)
    free(q.bytes)
    q.slots = NULL
    q.bytes = NULL


cdef pkt_t* queue_push(queue_t* q, uint32_t length) noexcept nogil:
    """Room for ``length`` bytes at the tail, contiguous; NULL when either bound is reached.
    The bytes form a ring: a packet that does not fit before the end starts again at 0 (the gap
    at the end is left unused until the head passes it)."""
    cdef uint32_t at
    cdef pkt_t* p
    if q.count == q.limit:
        return NULL
    if q.count == 0:
        q.byte_head = q.byte_tail = 0
    if q.byte_tail >= q.byte_head:                 # not wrapped: free space at the end, then
        if length <= q.cap - q.byte_tail:          # before the head
            at = q.byte_tail
        elif length < q.byte_head:
            at = 0
        else:
            return NULL
    else:                                          # wrapped: free space between tail and head
        if q.byte_tail + length < q.byte_head:
            at = q.byte_tail
        else:
            return NULL
    q.byte_tail = at + length
    p = &q.slots[(q.head + q.count) % q.limit]
    p.off = at
    p.length = length
    q.count += 1
    return p


cdef inline pkt_t* queue_at(queue_t* q, uint32_t i) noexcept nogil:
    """The i-th oldest packet (0: the head), or NULL."""
    if i >= q.count:
        return NULL
    return &q.slots[(q.head + i) % q.limit]


cdef inline void queue_pop(queue_t* q) noexcept nogil:
    q.head = (q.head + 1) % q.limit
    q.count -= 1
    if q.count == 0:
        q.byte_head = q.byte_tail = 0
    else:
        q.byte_head = q.slots[q.head].off


# --- one direction ------------------------------------------------------------------------------

cdef direction* direction_new(int fd_in, int fd_out, bytes link_in, bytes link_out,
                              uint64_t seed, uint32_t limit, uint32_t limit_bytes) except NULL:
    cdef direction* d = <direction*>calloc(1, sizeof(direction))
    cdef int i
    if d == NULL:
        raise MemoryError()
    d.fd_in = fd_in
    d.fd_out = fd_out
    d.link_in = len(link_in)
    d.link_out = len(link_out)
    memcpy(d.header_out, <const char*>link_out, len(link_out))
    d.rng = seed
    d.scratch = <uint8_t*>malloc(<size_t>MAX_BATCH * SLOT)
    if (d.scratch == NULL or queue_init(&d.main, limit, limit_bytes) != 0 or
            queue_init(&d.express, EXPRESS_LIMIT, EXPRESS_BYTES) != 0):
        direction_free(d)
        raise MemoryError()
    for i in range(MAX_BATCH):
        d.riov[i].iov_base = d.scratch + <size_t>i * SLOT
        d.riov[i].iov_len = SLOT
        d.rmsg[i].msg_hdr.msg_iov = &d.riov[i]
        d.rmsg[i].msg_hdr.msg_iovlen = 1
        d.rmsg[i].msg_hdr.msg_name = &d.rname[i]
        d.smsg[i].msg_hdr.msg_iov = &d.siov[IOV_PER_MSG * i]
        d.smsg[i].msg_hdr.msg_iovlen = IOV_PER_MSG
    return d


cdef void direction_free(direction* d) noexcept nogil:
    if d != NULL:
        free(d.scratch)
        queue_free(&d.main)
        queue_free(&d.express)
        free(d)


cdef inline void note_queued(direction* d) noexcept nogil:
    cdef uint64_t n = d.main.count + d.express.count
    if n > d.c.max_queued:
        d.c.max_queued = n


cdef void admit(direction* d, uint8_t* frame, uint32_t n, uint64_t now, uint64_t delay_ns,
                uint64_t loss_t, uint64_t dup_t, uint64_t reorder_t) noexcept nogil:
    """One packet read from the input side: lose it, or queue one or two copies."""
    cdef vnet_hdr vh
    cdef uint8_t* ip
    cdef uint32_t length, copies, k
    cdef queue_t* q
    cdef pkt_t* p
    cdef uint32_t tot_len
    memcpy(&vh, frame, VNET_LEN)
    ip = frame + VNET_LEN + d.link_in
    length = n - VNET_LEN - d.link_in
    # A frame padded to the Ethernet minimum carries bytes after the datagram: forward the
    # datagram only (a TUN reader would take the padding for data). Not for a super-packet,
    # whose header's total length the output's segmentation rewrites anyway.
    tot_len = (<uint32_t>ip[2] << 8) | ip[3]
    if vh.gso_type == 0 and 20 <= tot_len < length:
        length = tot_len
    d.c.rx_packets += 1
    d.c.rx_bytes += length
    if d.c.first_rx_ns == 0:
        d.c.first_rx_ns = now
    if loss_t and splitmix_next(&d.rng) < loss_t:
        d.c.lost += 1
        return
    copies = 1
    if dup_t and splitmix_next(&d.rng) < dup_t:
        copies = 2
        d.c.duplicated += 1
    # Offsets in the header count from the frame's start: make them count from the IP header.
    if vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        vh.csum_start = <uint16_t>(vh.csum_start - d.link_in)
    if vh.hdr_len >= d.link_in:
        vh.hdr_len = <uint16_t>(vh.hdr_len - d.link_in)
    for k in range(copies):
        q = &d.main
        if delay_ns and reorder_t and splitmix_next(&d.rng) < reorder_t:
            q = &d.express
        p = queue_push(q, length)
        if p == NULL:
            d.c.queue_drops += 1
            continue
        if q == &d.express:
            d.c.reordered += 1
            p.depart_ns = now
        else:
            p.depart_ns = now + delay_ns
        p.vh = vh
        memcpy(q.bytes + p.off, ip, length)
    note_queued(d)


cdef int receive(direction* d, uint32_t batch, uint64_t delay_ns, uint64_t loss_t,
                 uint64_t dup_t, uint64_t reorder_t) noexcept nogil:
    """Read up to ``batch`` packets from the input side; returns how many were read (0 when
    none was waiting), or -1 on an error other than EAGAIN."""
    cdef int got, i
    cdef uint64_t now
    cdef uint32_t n
    cdef sockaddr_ll* sll
    for i in range(<int>batch):
        d.rmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
        d.rmsg[i].msg_hdr.msg_flags = 0
    got = recvmmsg(d.fd_in, d.rmsg, batch, MSG_DONTWAIT, NULL)
    if got < 0:
        return 0 if errno == EAGAIN or errno == EINTR else -1
    now = now_ns()
    for i in range(got):
        n = d.rmsg[i].msg_len
        sll = &d.rname[i]
        if sll.sll_pkttype == PACKET_OUTGOING:     # our own sends, should the kernel show them
            continue
        if (sll.sll_protocol != htons(ETH_P_IP) or n < VNET_LEN + d.link_in + 20 or
                (d.rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)):
            d.c.ignored += 1
            continue
        admit(d, <uint8_t*>d.riov[i].iov_base, n, now, delay_ns, loss_t, dup_t, reorder_t)
    return got


cdef inline pkt_t* next_due(direction* d, uint32_t* i_main, uint32_t* i_exp, uint64_t now,
                            uint8_t* pick) noexcept nogil:
    """The next packet to send (the earlier of the two queues' next ones) if it is due."""
    cdef pkt_t* m = queue_at(&d.main, i_main[0])
    cdef pkt_t* e = queue_at(&d.express, i_exp[0])
    if e != NULL and (m == NULL or e.depart_ns <= m.depart_ns):
        if e.depart_ns > now:
            return NULL
        pick[0] = PICK_EXPRESS
        i_exp[0] += 1
        return e
    if m == NULL or m.depart_ns > now:
        return NULL
    pick[0] = PICK_MAIN
    i_main[0] += 1
    return m


cdef int release(direction* d, uint32_t batch, uint64_t now) noexcept nogil:
    """Send what is due, in batches; returns -1 on an unexpected error, else 0. EAGAIN leaves
    the packets queued and marks the direction blocked (the loop then polls for POLLOUT);
    ENOBUFS and other refusals of one packet drop that packet, counted as ``tx_errors``."""
    cdef uint32_t i_main, i_exp, n, k
    cdef int sent
    cdef pkt_t* p
    cdef queue_t* q
    cdef vnet_hdr* h
    d.blocked = 0
    while True:
        i_main = i_exp = 0
        n = 0
        while n < batch:
            p = next_due(d, &i_main, &i_exp, now, &d.spick[n])
            if p == NULL:
                break
            q = &d.express if d.spick[n] == PICK_EXPRESS else &d.main
            h = &d.shdr[n]
            h[0] = p.vh
            if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                h.csum_start = <uint16_t>(h.csum_start + d.link_out)
            if h.hdr_len:
                h.hdr_len = <uint16_t>(h.hdr_len + d.link_out)
            d.siov[IOV_PER_MSG * n].iov_base = h
            d.siov[IOV_PER_MSG * n].iov_len = VNET_LEN
            d.siov[IOV_PER_MSG * n + 1].iov_base = d.header_out
            d.siov[IOV_PER_MSG * n + 1].iov_len = d.link_out
            d.siov[IOV_PER_MSG * n + 2].iov_base = q.bytes + p.off
            d.siov[IOV_PER_MSG * n + 2].iov_len = p.length
            n += 1
        if n == 0:
            return 0
        sent = sendmmsg(d.fd_out, d.smsg, n, MSG_DONTWAIT)
        if sent < 0:
            if errno == EAGAIN:
                d.blocked = 1
                return 0
            if errno == EINTR:
                continue
            if errno != ENOBUFS and errno != EMSGSIZE and errno != EINVAL:
                return -1                          # the device is gone (ENXIO, ENETDOWN ...)
            # The first packet was refused (ENOBUFS: the device's queue was full, as a router's
            # would be; EMSGSIZE/EINVAL: a packet the device cannot take): it is dropped.
            d.c.tx_errors += 1
            q = &d.express if d.spick[0] == PICK_EXPRESS else &d.main
            queue_pop(q)
            continue
        for k in range(<uint32_t>sent):
            q = &d.express if d.spick[k] == PICK_EXPRESS else &d.main
            d.c.tx_packets += 1
            d.c.tx_bytes += q.slots[q.head].length
            queue_pop(q)
        d.c.last_tx_ns = now
        if <uint32_t>sent < n:
            continue                               # the next call reports the refused one
        if n < batch:
            return 0


cdef inline uint64_t next_departure(direction* d) noexcept nogil:
    """The departure time of the direction's next packet; 0 when nothing is queued."""
    cdef pkt_t* m = queue_at(&d.main, 0)
    cdef pkt_t* e = queue_at(&d.express, 0)
    if m == NULL and e == NULL:
        return 0
    if m == NULL:
        return e.depart_ns
    if e == NULL:
        return m.depart_ns
    return m.depart_ns if m.depart_ns < e.depart_ns else e.depart_ns


cdef class Impairer:
    """Impairer(fd_a, fd_b, *, link_a=b"", link_b=b"", delay=0.0, loss=0.0, duplicate=0.0,
    reorder=0.0, seed=1, limit=10000, limit_bytes=32 MiB, batch=64, max_seconds=3600.0)

    Forward IPv4 packets between two ``AF_PACKET`` sockets (``SOCK_RAW``, ``PACKET_VNET_HDR``
    set, each bound to its device), both ways, with the impairments of the module docstring
    applied to each direction independently. ``link_a`` is the link-layer header the device of
    side a carries (14 bytes for Ethernet: destination MAC, source MAC, type 0x0800, prepended
    to every packet sent there; packets read there lose as many bytes); empty for a TUN device.
    ``limit`` and ``limit_bytes`` bound each direction's queue. The descriptors stay the
    caller's. :meth:`run` blocks (with the GIL released) until :meth:`stop` or ``max_seconds``.
    """

    def __cinit__(self):
        self.d[0] = self.d[1] = NULL
        self.wake_fd = -1
        self.running = False
        self.stop_reason = None
        self.cpu_seconds = 0.0

    def __init__(self, int fd_a, int fd_b, *, bytes link_a=b"", bytes link_b=b"",
                 double delay=0.0, double loss=0.0, double duplicate=0.0, double reorder=0.0,
                 uint64_t seed=1, uint32_t limit=10000, uint32_t limit_bytes=32 << 20,
                 uint32_t batch=MAX_BATCH, double max_seconds=3600.0):
        cdef uint64_t s
        if len(link_a) > MAX_LINK or len(link_b) > MAX_LINK:
            raise ValueError(f"a link header is at most {MAX_LINK} bytes")
        if not 0.0 <= delay <= 10.0:
            raise ValueError("delay must be in [0, 10] seconds")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be in 1..{MAX_BATCH}")
        if limit < 1 or limit_bytes < SLOT:
            raise ValueError(f"limit must be >= 1 and limit_bytes >= {SLOT}")
        if not 0 < max_seconds <= 86400:
            raise ValueError("max_seconds must be in (0, 86400]")
        self.loss_t = threshold(loss)
        self.dup_t = threshold(duplicate)
        self.reorder_t = threshold(reorder)
        self.delay_ns = <uint64_t>(delay * 1e9 + 0.5)
        self.batch = batch
        self.max_seconds = max_seconds
        self.fds[0] = fd_a
        self.fds[1] = fd_b
        self.kernel_drops[0] = self.kernel_drops[1] = 0
        # Two independent, reproducible streams: the direction's loss pattern does not depend on
        # how the other direction's packets interleave with it.
        s = seed
        self.d[0] = direction_new(fd_a, fd_b, link_a, link_b, splitmix_next(&s), limit,
                                  limit_bytes)
        self.d[1] = direction_new(fd_b, fd_a, link_b, link_a, splitmix_next(&s), limit,
                                  limit_bytes)
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise OSError(errno, "eventfd failed")

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        direction_free(self.d[0])
        direction_free(self.d[1])
        self.d[0] = self.d[1] = NULL
        if self.wake_fd >= 0:
            close(self.wake_fd)
            self.wake_fd = -1

    def close(self):
        """close() -> None

        Free the queues and the wake-up eventfd (not the sockets, which are the caller's).
        Only once the loop has returned; :meth:`counters` is not available afterwards."""
        if self.running:
            raise RuntimeError("stop() it and wait for run() to return first")
        self._release()

    def run(self):
        """run() -> str

        Forward until :meth:`stop` is called (returns ``"stopped"``), ``max_seconds`` pass
        (``"max_seconds"``) or a socket fails (``"error"``). Releases the GIL throughout."""
        cdef int rc
        if self.running:
            raise RuntimeError("already running")
        if self.d[0] == NULL:
            raise RuntimeError("closed")
        cdef timespec c0, c1
        self.running = True
        try:
            with nogil:
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0)
                rc = self._loop()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1)
        finally:
            self.running = False
        self.cpu_seconds = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) / 1e9
        self.stop_reason = STOP_REASONS[rc]
        return self.stop_reason

    cdef int _loop(self) noexcept nogil:
        cdef pollfd pf[3]
        cdef timespec ts
        cdef uint64_t now, deadline, due, t, value
        cdef int i, j, got
        cdef direction* d
        deadline = now_ns() + <uint64_t>(self.max_seconds * 1e9)
        pf[0].fd = self.fds[0]
        pf[1].fd = self.fds[1]
        pf[2].fd = self.wake_fd
        pf[2].events = POLLIN
        while True:
            now = now_ns()
            if now >= deadline:
                return STOP_MAX_SECONDS
            # Read what is waiting on both sides (a bounded number of batches, so one busy
            # side cannot starve the other or the departures).
            for i in range(2):
                d = self.d[i]
                for j in range(4):
                    got = receive(d, self.batch, self.delay_ns, self.loss_t, self.dup_t,
                                  self.reorder_t)
                    if got < 0:
                        return STOP_ERROR
                    if <uint32_t>got < self.batch:
                        break
            now = now_ns()
            due = 0
            for i in range(2):
                d = self.d[i]
                if release(d, self.batch, now) < 0:
                    return STOP_ERROR
                t = next_departure(d)
                if t and not d.blocked and (due == 0 or t < due):
                    due = t
            # Sleep until the next departure, a packet, room to send, or the wake-up.
            pf[0].events = POLLIN | (POLLOUT if self.d[1].blocked else 0)
            pf[1].events = POLLIN | (POLLOUT if self.d[0].blocked else 0)
            t = deadline
            if due and due < t:
                t = due
            now = now_ns()
            t = t - now if t > now else 0
            ts.tv_sec = <long>(t // 1000000000ULL)
            ts.tv_nsec = <long>(t % 1000000000ULL)
            if ppoll(pf, 3, &ts, NULL) < 0 and errno != EINTR:
                return STOP_ERROR
            if pf[2].revents:
                read(self.wake_fd, &value, 8)
                return STOP_STOPPED

    def stop(self):
        """stop() -> None

        Wake the loop and make :meth:`run` return; safe from any thread, any number of times."""
        cdef uint64_t one = 1
        if self.wake_fd >= 0:
            write(self.wake_fd, &one, 8)

    def counters(self):
        """counters() -> dict

        ``{"a_to_b": {...}, "b_to_a": {...}}``: per direction ``rx_packets``, ``rx_bytes``,
        ``tx_packets``, ``tx_bytes``, ``lost``, ``duplicated``, ``reordered``, ``queue_drops``,
        ``tx_errors``, ``ignored``, ``max_queued``, ``queued`` (now), ``kernel_drops`` (packets the
        input socket's buffer had no room for: the impairer fell behind), ``first_rx_ns`` and
        ``last_tx_ns`` (CLOCK_MONOTONIC). Read while it runs, figures may be a batch apart."""
        cdef tpacket_stats st
        cdef socklen_t sl
        cdef dir_counters c
        if self.d[0] == NULL:
            raise RuntimeError("closed")
        out = {}
        for i, name in enumerate(("a_to_b", "b_to_a")):
            sl = sizeof(st)
            # PACKET_STATISTICS reads and resets the kernel's counts: keep the sum here.
            if getsockopt(self.fds[i], SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0:
                self.kernel_drops[i] += st.tp_drops
            c = self.d[i].c
            out[name] = {"rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
                         "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "lost": c.lost,
                         "duplicated": c.duplicated, "reordered": c.reordered,
                         "queue_drops": c.queue_drops, "tx_errors": c.tx_errors,
                         "ignored": c.ignored, "max_queued": c.max_queued,
                         "queued": self.d[i].main.count + self.d[i].express.count,
                         "kernel_drops": self.kernel_drops[i],
                         "first_rx_ns": c.first_rx_ns, "last_tx_ns": c.last_tx_ns}
        return out

    @property
    def delay(self):
        """The one-way delay in seconds."""
        return self.delay_ns / 1e9


def blast(int fd, bytes frame, uint64_t count, double seconds):
    """blast(fd, frame, count, seconds) -> (sent, refused, elapsed)

    Send ``frame`` (a whole link-layer frame, on a ``SOCK_RAW`` packet socket without virtio-net
    header) ``count`` times or for ``seconds``, whichever ends first, in batches of ``MAX_BATCH``
    (64) with ``sendmmsg``, the GIL released: the load generator of the impairer's calibration.
    Refused sends (ENOBUFS: the device's queue was full) are counted, not retried."""
    cdef mmsghdr msgs[MAX_BATCH]
    cdef iovec iov
    cdef const char* data = frame
    cdef uint64_t sent = 0, refused = 0, t0, deadline, n
    cdef int r, i
    if not 0 < seconds <= 60:
        raise ValueError("seconds must be in (0, 60]")
    memset(msgs, 0, sizeof(msgs))
    iov.iov_base = <void*>data
    iov.iov_len = len(frame)
    for i in range(MAX_BATCH):
        msgs[i].msg_hdr.msg_iov = &iov
        msgs[i].msg_hdr.msg_iovlen = 1
    with nogil:
        t0 = now_ns()
        deadline = t0 + <uint64_t>(seconds * 1e9)
        while sent + refused < count:
            n = count - sent - refused
            if n > MAX_BATCH:
                n = MAX_BATCH
            r = sendmmsg(fd, msgs, <unsigned int>n, 0)
            if r < 0:
                if errno == EINTR:
                    continue
                if errno != ENOBUFS and errno != EAGAIN:
                    break
                refused += 1
            else:
                sent += <uint64_t>r
            if now_ns() >= deadline:
                break
        t0 = now_ns() - t0
    return sent, refused, t0 / 1e9
