# cython: language_level=3
"""A simulated pair of connections over a lossy in-memory link (see ``_simlink.pxd``).

Everything per packet (generating application data, sending, the link's decisions, parsing,
delivering, reading and checking) runs in C with the GIL released: no Python object is created
per segment. Python is called back only per chunk of received data when SHA-256 digests are
asked for.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset, memcmp

from tcpfast._tcb cimport (Tcb, SEG_REPLY_RST, reset_for_segment, ESTABLISHED, CLOSE_WAIT,
                           CLOSED, LISTEN, SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from tcpfast._wire cimport pkt_repr, packet_parse, WIRE_OK, ip_repr
from tcpfast._seq cimport seq_gt
from libc.errno cimport EAGAIN

import hashlib
import ipaddress

cdef enum:
    CHUNK = 1 << 20              # sha256 mode: hand received data to Python per MiB
    SCRATCH = 1 << 16
    RUN_DONE = 0
    RUN_CHUNK = 1
    RUN_STALL = 2
    RUN_TIMEOUT = 3
    RUN_ERROR = 4


cdef inline uint64_t _splitmix(uint64_t x) noexcept nogil:
    x += 0x9e3779b97f4a7c15ULL
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL
    return x ^ (x >> 31)


cdef void stream_fill(uint64_t seed, uint64_t pos, uint8_t* out, size_t n) noexcept nogil:
    """Bytes pos..pos+n of the stream named by ``seed``: 8-byte words splitmix64(seed ^ index)."""
    cdef uint64_t w
    cdef size_t i = 0
    cdef uint32_t k
    while i < n:
        w = _splitmix(seed ^ ((pos + i) >> 3))
        k = (pos + i) & 7
        if k == 0 and n - i >= 8:
            memcpy(out + i, &w, 8)
            i += 8
        else:
            out[i] = <uint8_t>(w >> (8 * k))
            i += 1


def stream_bytes(seed: int, start: int, n: int) -> bytes:
    """stream_bytes(seed, start, n) -> bytes: the application data a SimPair direction sends."""
    out = bytearray(n)
    cdef uint8_t* p = <uint8_t*><char*>out
    if n:
        stream_fill(seed, start, p, n)
    return bytes(out)


cdef inline double _uniform(uint64_t* s) noexcept nogil:
    # xorshift64*: the link's dice (deterministic for a seed)
    s[0] ^= s[0] >> 12
    s[0] ^= s[0] << 25
    s[0] ^= s[0] >> 27
    return ((s[0] * 0x2545f4914f6cdd1dULL) >> 11) * (1.0 / 9007199254740992.0)


cdef inline bint _heap_less(const link_pkt* a, const link_pkt* b) noexcept nogil:
    return a.when < b.when or (a.when == b.when and a.order < b.order)


cdef class SimPair:
    """SimPair(*, mtu=1500, delay=0.0005, jitter=0.0, rate=0, loss=0.0, reorder=0.0,
    duplicate=0.0, corrupt=0.0, seed=1, queue=4096, read_rate=0, duplex=False, **tcb_options)

    ``a`` (198.18.0.1:40000) connects to ``b`` (198.18.0.2:80, listening). Each direction of the
    link delays packets by ``delay`` seconds plus up to ``jitter``; ``rate`` (bytes/s, 0 for
    unlimited) serialises them; ``loss``/``duplicate``/``corrupt`` are per-packet probabilities
    and ``reorder`` the probability that a packet is held back by an extra delay. ``queue`` bounds
    the packets in flight on the link: when it is full a sender's next packet waits for room (as
    behind a full device queue) and no duplicate is made; nothing is dropped for want of room.
    By default the two directions share the ``rate`` (ACKs queue behind data); ``duplex=True``
    gives each direction its own, as a full-duplex link.
    ``read_rate`` (bytes/s, 0 for at once) makes both applications slow readers: each reads at
    most that fast. ``tcb_options`` go to both connections (``mem_pool`` too: then they share
    it). ``run`` reports the largest window each end advertised (``windows``).
    """

    def __cinit__(self):
        self.pool = NULL
        self.free_slots = NULL
        self.heap = NULL
        self.rbuf = NULL
        self.wbuf = NULL
        self.chunk_ab = NULL
        self.chunk_ba = NULL

    def __init__(self, *, mtu=1500, delay=0.0005, jitter=0.0, rate=0, loss=0.0, reorder=0.0,
                 duplicate=0.0, corrupt=0.0, seed=1, queue=4096, read_rate=0, duplex=False,
                 **tcb_options):
        cdef uint32_t i
        if read_rate < 0:
            raise ValueError("read_rate must not be negative")
        if not 68 <= mtu <= 65535:
            raise ValueError("mtu must be in 68..65535")
        for name, p in (("loss", loss), ("reorder", reorder), ("duplicate", duplicate),
                        ("corrupt", corrupt)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability")
        if queue < 16:
            raise ValueError("queue must hold at least 16 packets")
        mss = mtu - 40
        tcb_options.setdefault("mss", mss)
        self.a = Tcb(("198.18.0.1", 40000), ("198.18.0.2", 80), **tcb_options)
        self.b = Tcb(("198.18.0.2", 80), **tcb_options)
        self.slot_size = mtu + 64
        self.nslots = queue
        self.pool = <uint8_t*>malloc(<size_t>self.slot_size * self.nslots)
        self.free_slots = <uint32_t*>malloc(sizeof(uint32_t) * self.nslots)
        self.heap = <link_pkt*>malloc(sizeof(link_pkt) * self.nslots)
        self.rbuf = <uint8_t*>malloc(SCRATCH)
        self.wbuf = <uint8_t*>malloc(SCRATCH)
        self.chunk_ab = <uint8_t*>malloc(CHUNK)
        self.chunk_ba = <uint8_t*>malloc(CHUNK)
        if not (self.pool and self.free_slots and self.heap and self.rbuf and self.wbuf and
                self.chunk_ab and self.chunk_ba):
            raise MemoryError()
        for i in range(self.nslots):
            self.free_slots[i] = self.nslots - 1 - i
        self.nfree = self.nslots
        self.heap_n = 0
        self.order = 0
        self.now = 0
        self.rng = (<uint64_t>seed * 0x9e3779b97f4a7c15ULL) | 1
        self.loss = loss
        self.reorder = reorder
        self.duplicate = duplicate
        self.corrupt = corrupt
        self.delay = <uint64_t>(delay * 1e6)
        self.jitter = <uint64_t>(jitter * 1e6)
        self.rate_ns_per_byte = <uint64_t>(1e9 / rate) if rate else 0
        self.read_ns_per_byte = <uint64_t>(1e9 / read_rate) if read_rate else 0
        if read_rate and self.read_ns_per_byte == 0:
            raise ValueError("read_rate above 1e9 bytes/s: use 0 for an unlimited reader")
        self.link_free_at = 0
        self.link_free_at_ba = 0
        self.duplex = bool(duplex)
        memset(&self.ab, 0, sizeof(stream_state))
        memset(&self.ba, 0, sizeof(stream_state))
        self.ab.seed = <uint64_t>seed * 2 + 1
        self.ba.seed = <uint64_t>seed * 2 + 2
        self.b.user_listen()
        self.a.user_open(0)

    def __dealloc__(self):
        free(self.pool)
        free(self.free_slots)
        free(self.heap)
        free(self.rbuf)
        free(self.wbuf)
        free(self.chunk_ab)
        free(self.chunk_ba)

    # --- the link --------------------------------------------------------------------------

    cdef void _heap_push(self, link_pkt* item) noexcept nogil:
        cdef uint32_t i = self.heap_n, parent
        self.heap_n += 1
        while i > 0:
            parent = (i - 1) // 2
            if not _heap_less(item, &self.heap[parent]):
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = item[0]

    cdef void _heap_pop(self, link_pkt* out) noexcept nogil:
        cdef link_pkt last
        cdef uint32_t i = 0, child
        out[0] = self.heap[0]
        self.heap_n -= 1
        if self.heap_n == 0:
            return
        last = self.heap[self.heap_n]
        while True:
            child = 2 * i + 1
            if child >= self.heap_n:
                break
            if child + 1 < self.heap_n and _heap_less(&self.heap[child + 1], &self.heap[child]):
                child += 1
            if not _heap_less(&self.heap[child], &last):
                break
            self.heap[i] = self.heap[child]
            i = child
        self.heap[i] = last

    cdef void _enqueue(self, uint32_t slot, uint32_t length, bint to_b) noexcept nogil:
        """One packet onto the link, through its dice: lost, corrupted, duplicated, held back."""
        cdef link_pkt item
        cdef uint32_t dup_slot, pos
        cdef uint64_t when
        self.c_sent += 1
        if self.loss > 0 and _uniform(&self.rng) < self.loss:
            self.c_lost += 1
            self.free_slots[self.nfree] = slot
            self.nfree += 1
            return
        if self.corrupt > 0 and _uniform(&self.rng) < self.corrupt:
            pos = <uint32_t>(_uniform(&self.rng) * length)
            self.pool[<size_t>slot * self.slot_size + pos] ^= <uint8_t>(1 << (<int>(_uniform(&self.rng) * 8)))
            self.c_corrupted += 1
        when = self.now
        if self.rate_ns_per_byte and self.duplex and not to_b:
            if self.link_free_at_ba < self.now * 1000:
                self.link_free_at_ba = self.now * 1000
            self.link_free_at_ba += self.rate_ns_per_byte * length
            when = self.link_free_at_ba // 1000
        elif self.rate_ns_per_byte:
            if self.link_free_at < self.now * 1000:
                self.link_free_at = self.now * 1000
            self.link_free_at += self.rate_ns_per_byte * length
            when = self.link_free_at // 1000
        when += self.delay
        if self.jitter:
            when += <uint64_t>(_uniform(&self.rng) * self.jitter)
        if self.reorder > 0 and _uniform(&self.rng) < self.reorder:
            when += self.delay + self.jitter + 1
            self.c_reordered += 1
        item.when = when
        item.order = self.order
        self.order += 1
        item.slot = slot
        item.length = length
        item.to_b = to_b
        self._heap_push(&item)
        if self.duplicate > 0 and self.nfree and _uniform(&self.rng) < self.duplicate:
            dup_slot = self.free_slots[self.nfree - 1]
            self.nfree -= 1
            memcpy(self.pool + <size_t>dup_slot * self.slot_size,
                   self.pool + <size_t>slot * self.slot_size, length)
            item.slot = dup_slot
            item.when = when + 1
            item.order = self.order
            self.order += 1
            self._heap_push(&item)
            self.c_duplicated += 1

    cdef bint _transmit(self, Tcb t, bint to_b) noexcept nogil:
        cdef bint progress = False
        cdef uint32_t slot
        cdef size_t n
        while self.nfree:
            slot = self.free_slots[self.nfree - 1]
            n = t.poll_transmit(self.pool + <size_t>slot * self.slot_size, self.slot_size, self.now)
            if n == 0:
                break
            self.nfree -= 1
            self._enqueue(slot, <uint32_t>n, to_b)
            progress = True
        if progress and seq_gt(t.rcv_adv, t.rcv_nxt):
            if to_b:
                if t.rcv_adv - t.rcv_nxt > self.max_wnd_a:
                    self.max_wnd_a = t.rcv_adv - t.rcv_nxt
            elif t.rcv_adv - t.rcv_nxt > self.max_wnd_b:
                self.max_wnd_b = t.rcv_adv - t.rcv_nxt
        return progress

    cdef bint _deliver(self) noexcept nogil:
        cdef link_pkt item
        cdef pkt_repr p
        cdef uint8_t* pkt
        cdef uint32_t slot
        cdef size_t n
        cdef int action
        cdef bint progress = False
        while self.heap_n and self.heap[0].when <= self.now:
            self._heap_pop(&item)
            pkt = self.pool + <size_t>item.slot * self.slot_size
            self.c_delivered += 1
            progress = True
            if packet_parse(pkt, item.length, &p, 0) != WIRE_OK:
                self.c_bad_packets += 1       # a corrupted packet: dropped and counted
                action = 0
            elif item.to_b:
                action = self.b.on_segment(&p, pkt, self.now)
                if self.b.ack_flush:
                    self._transmit(self.b, False)     # its SACK/D-SACK news, before the next
            else:
                action = self.a.on_segment(&p, pkt, self.now)
                if self.a.ack_flush:
                    self._transmit(self.a, True)
            if action == SEG_REPLY_RST and self.nfree:
                slot = self.free_slots[self.nfree - 1]
                n = reset_for_segment(&p, self.pool + <size_t>slot * self.slot_size,
                                      self.slot_size, 64)
                if n:
                    self.nfree -= 1
                    self.c_rst_replies += 1
                    self._enqueue(slot, <uint32_t>n, not item.to_b)
            self.free_slots[self.nfree] = item.slot
            self.nfree += 1
        return progress

    # --- the applications --------------------------------------------------------------------

    cdef bint _write(self, Tcb t, stream_state* s) noexcept nogil:
        cdef bint progress = False
        cdef uint64_t left
        cdef uint32_t n, space
        cdef int64_t took
        if t.state != ESTABLISHED and t.state != CLOSE_WAIT:
            return False
        while s.written < s.total:
            space = t.send_space()
            if space == 0:
                break
            left = s.total - s.written
            n = SCRATCH if left > SCRATCH else <uint32_t>left
            if n > space:
                n = space
            stream_fill(s.seed, s.written, self.wbuf, n)
            took = t.user_send(self.wbuf, n, self.now)
            if took <= 0:
                break
            s.written += <uint64_t>took
            progress = True
        if s.written == s.total and self.do_shutdown and not s.shut:
            t.user_shutdown(self.now)
            s.shut = 1
            progress = True
        return progress

    cdef int _read(self, Tcb t, stream_state* s, uint8_t* chunk) noexcept nogil:
        """Read and check; returns 1 on progress, 2 when the chunk buffer wants emptying."""
        cdef int64_t k
        cdef int r = 0
        cdef uint32_t room
        while True:
            if self.read_ns_per_byte and self.now < s.next_read:
                return r                  # a slow application: not yet
            if self.keep_chunks:
                room = CHUNK - s.chunk_used
                if room == 0:
                    return 2
                if room > SCRATCH:
                    room = SCRATCH
            else:
                room = SCRATCH
            k = t.user_recv(self.rbuf, room, False, self.now)
            if k > 0:
                stream_fill(s.seed, s.read, self.wbuf, <size_t>k)
                if memcmp(self.rbuf, self.wbuf, <size_t>k) != 0:
                    s.mismatches += 1
                if self.keep_chunks:
                    memcpy(chunk + s.chunk_used, self.rbuf, <size_t>k)
                    s.chunk_used += <uint32_t>k
                s.read += <uint64_t>k
                r = 1
                if self.read_ns_per_byte:
                    s.next_read = self.now + (<uint64_t>k * self.read_ns_per_byte) // 1000
            else:
                if k == 0 and not s.eof and t.state != LISTEN and t.state != SYN_RECEIVED \
                        and t.state != SYN_SENT:
                    s.eof = 1
                    r = 1
                return r

    cdef uint64_t _read_wake(self, Tcb t, stream_state* s) noexcept nogil:
        """When a slow reader with something to read reads next (0: no such wait)."""
        if self.read_ns_per_byte and s.next_read > self.now and \
                (t.recv_available() > 0 or t.rcv_fin or t.state == CLOSED):
            return s.next_read
        return 0

    cdef bint _done(self) noexcept nogil:
        if self.ab.read < self.ab.total or self.ba.read < self.ba.total:
            return False
        if self.do_shutdown and not (self.ab.eof and self.ba.eof):
            return False
        return True

    cdef int _advance(self, uint64_t deadline) noexcept nogil:
        cdef bint progress
        cdef int r
        cdef uint64_t t, ta, tb
        cdef uint32_t spins = 0
        while True:
            self.c_steps += 1
            progress = self._write(self.a, &self.ab)
            progress |= self._write(self.b, &self.ba)
            progress |= self._transmit(self.a, True)
            progress |= self._transmit(self.b, False)
            progress |= self._deliver()
            r = self._read(self.b, &self.ab, self.chunk_ab)
            if r == 2:
                return RUN_CHUNK
            progress |= r
            r = self._read(self.a, &self.ba, self.chunk_ba)
            if r == 2:
                return RUN_CHUNK
            progress |= r
            if self._done():
                return RUN_DONE
            if (self.a.error and self.a.state == CLOSED) or (self.b.error and self.b.state == CLOSED):
                return RUN_ERROR
            if progress:
                spins = 0
                continue
            # Nothing to do now: jump to the next thing that will happen.
            ta = self.a.poll_at()
            tb = self.b.poll_at()
            if self.nfree == 0:
                # The link is full: whatever the connections want to send now must wait for a
                # packet to leave it; their timers still count.
                if ta <= self.now:
                    ta = 0
                if tb <= self.now:
                    tb = 0
            t = 0
            if self.heap_n:
                t = self.heap[0].when
            if ta and (t == 0 or ta < t):
                t = ta
            if tb and (t == 0 or tb < t):
                t = tb
            ta = self._read_wake(self.b, &self.ab)
            if ta and (t == 0 or ta < t):
                t = ta
            tb = self._read_wake(self.a, &self.ba)
            if tb and (t == 0 or tb < t):
                t = tb
            if t == 0:
                return RUN_STALL
            if t <= self.now:
                spins += 1
                if spins > 1000:
                    return RUN_STALL
                t = self.now + 1
            self.now = t
            if self.now > deadline:
                return RUN_TIMEOUT

    def run(self, a_to_b=0, b_to_a=0, *, shutdown=True, timeout=3600.0, sha256=False):
        """run(a_to_b=0, b_to_a=0, *, shutdown=True, timeout=3600.0, sha256=False) -> dict

        Move ``a_to_b`` bytes from a to b and ``b_to_a`` from b to a (at the same time), then (with
        ``shutdown``) close both directions and read end-of-stream. Every byte read is compared with
        what was written; with ``sha256`` the SHA-256 of each received stream is computed too.
        ``timeout`` is in virtual seconds. Returns the outcome and the counters.
        """
        cdef int r
        cdef uint64_t deadline = self.now + <uint64_t>(timeout * 1e6)
        self.ab.total += a_to_b
        self.ba.total += b_to_a
        self.do_shutdown = bool(shutdown)
        self.keep_chunks = bool(sha256)
        h_ab = hashlib.sha256()
        h_ba = hashlib.sha256()
        while True:
            with nogil:
                r = self._advance(deadline)
            if self.keep_chunks:
                h_ab.update(self.chunk_ab[:self.ab.chunk_used])
                h_ba.update(self.chunk_ba[:self.ba.chunk_used])
                self.ab.chunk_used = 0
                self.ba.chunk_used = 0
            if r != RUN_CHUNK:
                break
        result = {RUN_DONE: "done", RUN_STALL: "stall", RUN_TIMEOUT: "timeout",
                  RUN_ERROR: "error"}[r]
        out = dict(
            result=result, now=self.now / 1e6,
            a_to_b=dict(total=self.ab.total, written=self.ab.written, read=self.ab.read,
                        mismatches=self.ab.mismatches, eof=bool(self.ab.eof)),
            b_to_a=dict(total=self.ba.total, written=self.ba.written, read=self.ba.read,
                        mismatches=self.ba.mismatches, eof=bool(self.ba.eof)),
            link=dict(sent=self.c_sent, delivered=self.c_delivered, lost=self.c_lost,
                      duplicated=self.c_duplicated, corrupted=self.c_corrupted,
                      reordered=self.c_reordered, bad_packets=self.c_bad_packets,
                      rst_replies=self.c_rst_replies, steps=self.c_steps),
            a=self.a.counters, b=self.b.counters,
            windows=dict(a_max=self.max_wnd_a, b_max=self.max_wnd_b),
        )
        if sha256:
            out["a_to_b"]["sha256"] = h_ab.hexdigest()
            out["b_to_a"]["sha256"] = h_ba.hexdigest()
        return out

    def advance_to(self, seconds):
        """Run the link and both connections until virtual time ``seconds`` (nothing to move)."""
        cdef uint64_t deadline = <uint64_t>(seconds * 1e6)
        cdef int r
        with nogil:
            r = self._advance(deadline)
        return self.now / 1e6
