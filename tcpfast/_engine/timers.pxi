# The timer wheel: 1 ms ticks, O(1) insert and remove, a bitmap of non-empty slots to find the
# next one quickly. Entries for later turns of the wheel stay in their slot until due.
# Included by _engine.pyx.

cdef void wheel_remove(Engine e, void* p) noexcept nogil:
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
        e.wheel[slot] = nxt
        if nxt == NULL:
            e.wheel_bits[slot >> 6] &= ~(1ULL << (slot & 63))
    if nxt != NULL:
        (<Tcb>nxt).eng_wheel_prev = prev
    (<Tcb>p).eng_wheel_slot = -1
    (<Tcb>p).eng_wheel_next = NULL
    (<Tcb>p).eng_wheel_prev = NULL
    e.wheel_count -= 1


cdef void wheel_schedule(Engine e, void* p, uint64_t now) noexcept nogil:
    cdef uint64_t at = (<Tcb>p).poll_at()
    cdef uint64_t tick
    cdef int slot
    wheel_remove(e, p)
    if at == 0 or not (<Tcb>p).eng_in_table:
        return
    if at <= now:
        at = now + 1000               # due but nothing went out: look again in a tick
    # Round up: when the wheel reaches this tick, the time is past ``at`` for sure.
    tick = (at + 999) // 1000
    if e.planned_wake == 0 or at < e.planned_wake:
        e.wake_needed = 1          # the sleeping loop must recompute its timeout
    if tick <= e.wheel_tick:
        tick = e.wheel_tick + 1
    slot = <int>(tick & (WHEEL_SLOTS - 1))
    (<Tcb>p).eng_wheel_at = at
    (<Tcb>p).eng_wheel_slot = slot
    (<Tcb>p).eng_wheel_prev = NULL
    (<Tcb>p).eng_wheel_next = e.wheel[slot]
    if e.wheel[slot] != NULL:
        (<Tcb>e.wheel[slot]).eng_wheel_prev = p
    e.wheel[slot] = p
    e.wheel_bits[slot >> 6] |= 1ULL << (slot & 63)
    e.wheel_count += 1


cdef void run_timers(Engine e, uint64_t now) noexcept nogil:
    cdef uint64_t now_tick = now // 1000, t, last
    cdef int slot
    cdef void* p
    cdef void* nxt
    if e.wheel_count == 0 or now_tick <= e.wheel_tick:
        if now_tick > e.wheel_tick:
            e.wheel_tick = now_tick
        return
    last = now_tick
    if now_tick - e.wheel_tick > WHEEL_SLOTS:
        last = e.wheel_tick + WHEEL_SLOTS
    t = e.wheel_tick + 1
    while t <= last:
        slot = <int>(t & (WHEEL_SLOTS - 1))
        if e.wheel_bits[slot >> 6] & (1ULL << (slot & 63)):
            p = e.wheel[slot]
            while p != NULL:
                nxt = (<Tcb>p).eng_wheel_next
                if (<Tcb>p).eng_wheel_at <= now:
                    wheel_remove(e, p)
                    mark_dirty(e, p)
                p = nxt
        t += 1
    e.wheel_tick = now_tick


cdef int poll_timeout(Engine e, uint64_t now) noexcept nogil:
    """Milliseconds until the next non-empty slot of the wheel (-1: none)."""
    cdef uint64_t now_tick = now // 1000
    cdef uint64_t word, d
    cdef int start, i, k, slot, w
    if e.dirty_head != NULL or e.loop_count or e.release_head != NULL:
        return 0
    if e.wheel_count == 0:
        return -1
    if now_tick > e.wheel_tick:
        return 0
    start = <int>((e.wheel_tick + 1) & (WHEEL_SLOTS - 1))
    # Scan the bitmap from start, wrapping once.
    for i in range(WHEEL_SLOTS // 64 + 1):
        w = ((start >> 6) + i) % (WHEEL_SLOTS // 64)
        word = e.wheel_bits[w]
        if i == 0:
            word &= ~0ULL << (start & 63)
        if word:
            k = __builtin_ctzll(word)
            slot = w * 64 + k
            d = <uint64_t>((slot - start) & (WHEEL_SLOTS - 1)) + 1
            return <int>d
    return -1
