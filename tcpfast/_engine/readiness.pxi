# Readiness: the socket's fd follows its connection. The socket's file descriptor is one end of a
# socketpair (its fileno()); the engine holds the other. A token byte written into the peer end
# makes the socket's fd readable; filling the socket's own end up makes it unwritable; shutting
# the peer end down shows the peer's FIN (POLLRDHUP) and the end (POLLHUP); releasing it with a
# byte unread shows an error (POLLERR). So select, poll, epoll and asyncio see exactly what the
# connection is ready for. The fds and these flags live in the connection's conn_meta.
# Included by _engine.pyx.

cdef uint8_t[4096] _FILL


cdef inline void token_set(int peer_fd, uint8_t* token) noexcept nogil:
    """Make the app end readable: one byte into the peer end."""
    cdef uint8_t b = 1
    if peer_fd >= 0 and not token[0]:
        if write(peer_fd, &b, 1) == 1:
            token[0] = 1


cdef inline void token_clear(int app_fd, uint8_t* token) noexcept nogil:
    """Make the app end unreadable again: drain what the peer end queued."""
    cdef uint8_t buf[64]
    if app_fd >= 0 and token[0]:
        while read(app_fd, buf, sizeof(buf)) > 0:
            pass
        token[0] = 0


cdef int _devnull = -1
_devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


cdef inline void hangup(conn_meta* c, uint32_t mask) noexcept nogil:
    """Show POLL_ERR, POLL_HUP and POLL_RDHUP (tcb_hangup) through the pair: an error releases
    the peer end with a byte unread, both directions done shut it both ways, the peer's FIN shuts
    it for writing. Each step is one-way, as in TCP."""
    cdef uint8_t b = 0
    if mask & POLL_ERR:
        if c.fd_phase < 3 and _devnull >= 0:
            # Releasing the peer end with a byte unread sets ECONNRESET on the socket's end
            # (unix_release_sock): POLLERR | POLLHUP until the error is read. dup2 keeps the
            # number valid (it now names /dev/null) for the socket to close later.
            write(c.app_fd, &b, 1)
            dup2(_devnull, c.peer_fd)
            c.fd_phase = 3
        return
    if mask & POLL_HUP:
        if c.fd_phase < 2:
            shutdown(c.peer_fd, SHUT_RDWR)        # both ways shut: POLLHUP
            c.fd_phase = 2
    elif mask & POLL_RDHUP and c.fd_phase < 1:
        shutdown(c.peer_fd, SHUT_WR)              # the peer's FIN: POLLIN | POLLRDHUP
        c.fd_phase = 1


cdef inline void readiness(Tcb t) noexcept nogil:
    """Bring the socket's fd in line with what the connection is ready for (tcb_poll; called
    after anything changed it)."""
    cdef conn_meta* c = &t.meta
    cdef uint8_t buf[4096]
    cdef uint32_t mask
    if c.peer_fd < 0:
        return
    if c.fd_phase == 3:
        return
    mask = tcb_hangup(t)
    if mask:
        hangup(c, mask)
        if c.fd_phase >= 2:
            return
    if tcb_readable(t):
        token_set(c.peer_fd, &c.rd_token)
    mask = tcb_send_ready(t)
    if mask & POLL_OUT:
        if c.wr_blocked:
            while read(c.peer_fd, buf, sizeof(buf)) > 0:
                pass
            c.wr_blocked = 0
        return
    if mask & POLL_NOMEM and t.sndbuf.pool != NULL:
        t.sndbuf.pool.waiting = 1         # looked at again when memory comes back
    if not c.wr_blocked:
        # Fill the app end's send queue: it polls unwritable until we drain it.
        while write(c.app_fd, _FILL, sizeof(_FILL)) > 0:
            pass
        c.wr_blocked = 1


cdef inline bint mem_wake_due(Engine e) noexcept nogil:
    """Buffer memory was given back while some connection had been refused some (or waits
    for it)."""
    return e.mem.freed and (e.mem.waiting or e.mem.refused != e.mem_refused_seen)


cdef inline void mem_check(Engine e) noexcept nogil:
    """Let the engine thread wake the writers that wait for memory, when some came back."""
    if mem_wake_due(e):
        _signal(e.wake_fd)


cdef void mem_wake_writers(Engine e) noexcept nogil:
    """Memory came back after the stack-wide limit refused some: bring every blocked
    writer's fd up to date (each tries again; one still refused waits for the next)."""
    cdef uint32_t i
    cdef conn_meta* c
    e.mem.freed = 0
    e.mem.waiting = 0              # set again by each writer still waiting
    e.mem_refused_seen = e.mem.refused
    for i in range(e.table.nbuckets):
        c = e.table.buckets[i]
        while c != NULL:
            if c.wr_blocked:
                readiness(<Tcb>c.tcb)
            c = c.hash_next
