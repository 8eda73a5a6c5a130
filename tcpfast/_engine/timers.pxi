# The timer wheel: 1 ms ticks, O(1) insert and remove, a bitmap of non-empty slots to find the
# next one quickly. Entries for later turns of the wheel stay in their slot until due. The wheel
# holds conn_meta structs (each connection is on it at most once, at its next poll_at()).
# Included by _engine.pyx.

cdef void wheel_remove(timer_wheel* w, conn_meta* c) noexcept nogil:
    cdef int slot = c.wheel_slot
    if slot < 0:
        return
    if c.wheel_prev != NULL:
        c.wheel_prev.wheel_next = c.wheel_next
    else:
        w.slots[slot] = c.wheel_next
        if c.wheel_next == NULL:
            w.bits[slot >> 6] &= ~(1ULL << (slot & 63))
    if c.wheel_next != NULL:
        c.wheel_next.wheel_prev = c.wheel_prev
    c.wheel_slot = -1
    c.wheel_next = NULL
    c.wheel_prev = NULL
    w.count -= 1


cdef void wheel_insert(timer_wheel* w, conn_meta* c, uint64_t at) noexcept nogil:
    """File ``c`` to be due at ``at`` (us; in a later tick than the wheel's current one)."""
    # Round up: when the wheel reaches this tick, the time is past ``at`` for sure.
    cdef uint64_t tick = (at + 999) // 1000
    cdef int slot
    if tick <= w.tick:
        tick = w.tick + 1
    slot = <int>(tick & (WHEEL_SLOTS - 1))
    c.wheel_at = at
    c.wheel_slot = slot
    c.wheel_prev = NULL
    c.wheel_next = w.slots[slot]
    if w.slots[slot] != NULL:
        w.slots[slot].wheel_prev = c
    w.slots[slot] = c
    w.bits[slot >> 6] |= 1ULL << (slot & 63)
    w.count += 1


cdef int wheel_timeout(const timer_wheel* w, uint64_t now) noexcept nogil:
    """Milliseconds until the next non-empty slot (-1: none; 0: a tick has passed unseen)."""
    cdef uint64_t now_tick = now // 1000
    cdef uint64_t word
    cdef int start, i, k, slot, n
    if w.count == 0:
        return -1
    if now_tick > w.tick:
        return 0
    start = <int>((w.tick + 1) & (WHEEL_SLOTS - 1))
    # Scan the bitmap from start, wrapping once.
    for i in range(WHEEL_WORDS + 1):
        n = ((start >> 6) + i) % WHEEL_WORDS
        word = w.bits[n]
        if i == 0:
            word &= ~0ULL << (start & 63)
        if word:
            k = __builtin_ctzll(word)
            slot = n * 64 + k
            return <int>((slot - start) & (WHEEL_SLOTS - 1)) + 1
    return -1


cdef void conn_schedule(Engine e, Tcb t, uint64_t now) noexcept nogil:
    """Put the connection on the wheel at its next poll_at() (off it when it has none)."""
    cdef uint64_t at = t.poll_at()
    wheel_remove(&e.wheel, &t.meta)
    if at == 0 or not t.meta.in_table:
        return
    if at <= now:
        at = now + 1000               # due but nothing went out: look again in a tick
    if e.planned_wake == 0 or at < e.planned_wake:
        e.wake_needed = 1             # the sleeping loop must recompute its timeout
    wheel_insert(&e.wheel, &t.meta, at)


cdef void run_timers(Engine e, uint64_t now) noexcept nogil:
    """Move the connections whose time has come from the wheel to the list of those due."""
    cdef timer_wheel* w = &e.wheel
    cdef uint64_t now_tick = now // 1000, tick, last
    cdef int slot
    cdef conn_meta* c
    cdef conn_meta* nxt
    if w.count == 0 or now_tick <= w.tick:
        if now_tick > w.tick:
            w.tick = now_tick
        return
    last = now_tick
    if now_tick - w.tick > WHEEL_SLOTS:
        last = w.tick + WHEEL_SLOTS
    tick = w.tick + 1
    while tick <= last:
        slot = <int>(tick & (WHEEL_SLOTS - 1))
        if w.bits[slot >> 6] & (1ULL << (slot & 63)):
            c = w.slots[slot]
            while c != NULL:
                nxt = c.wheel_next
                if c.wheel_at <= now:
                    wheel_remove(w, c)
                    mark_dirty(e, c)
                c = nxt
        tick += 1
    w.tick = now_tick


cdef int poll_timeout(Engine e, uint64_t now) noexcept nogil:
    """How long the loop may sleep (ms; -1: until woken)."""
    if e.dirty_head != NULL or e.loop_count or e.release_head != NULL:
        return 0
    return wheel_timeout(&e.wheel, now)
