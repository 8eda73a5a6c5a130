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


cdef inline bint tcb_readable(Tcb t) noexcept nogil:
    # As the kernel's tcp_poll: data to read, end of stream, an error, or a closed connection.
    return t.recv_available() > 0 or t.rcv_fin or t.error != 0 or \
        (t.state == CLOSED and t.synced)


cdef inline bint tcb_writable(Tcb t) noexcept nogil:
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
        # memory: the engine looks at it again when some is given back (mem_wake_writers).
        if space > 0 and space * 3 >= t.sndbuf.size:
            return True
        if t.sndbuf.pool != NULL:
            t.sndbuf.pool.waiting = 1
        return False
    return space > 0 and space * 3 >= t.sndbuf.cap


cdef int _devnull = -1
_devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


cdef inline void hangup(Tcb t) noexcept nogil:
    """The poll bits beyond IN/OUT, as tcp_poll() sets them, shown through the pair: the peer's
    FIN (RCV_SHUTDOWN) -> POLLRDHUP, both directions done or the connection gone -> POLLHUP,
    an error -> POLLERR. Each step is one-way, as in TCP."""
    cdef conn_meta* c = &t.meta
    cdef uint8_t b = 0
    if t.error and t.state == CLOSED:
        if c.fd_phase < 3 and _devnull >= 0:
            # Releasing the peer end with a byte unread sets ECONNRESET on the socket's end
            # (unix_release_sock): POLLERR | POLLHUP until the error is read. dup2 keeps the
            # number valid (it now names /dev/null) for the socket to close later.
            write(c.app_fd, &b, 1)
            dup2(_devnull, c.peer_fd)
            c.fd_phase = 3
        return
    if (t.rcv_fin and t.fin_queued) or t.state == CLOSED or t.state == TIME_WAIT:
        if c.fd_phase < 2:
            shutdown(c.peer_fd, SHUT_RDWR)        # both ways shut: POLLHUP
            c.fd_phase = 2
    elif t.rcv_fin and c.fd_phase < 1:
        shutdown(c.peer_fd, SHUT_WR)              # the peer's FIN: POLLIN | POLLRDHUP
        c.fd_phase = 1


cdef inline void readiness(Tcb t) noexcept nogil:
    """Bring the socket's fd in line with the connection (called after anything changed it)."""
    cdef conn_meta* c = &t.meta
    cdef uint8_t buf[4096]
    if c.peer_fd < 0:
        return
    if c.fd_phase == 3:
        return
    if t.rcv_fin or t.state == CLOSED or t.state == TIME_WAIT or t.error:
        hangup(t)
        if c.fd_phase >= 2:
            return
    if tcb_readable(t):
        token_set(c.peer_fd, &c.rd_token)
    if tcb_writable(t):
        if c.wr_blocked:
            while read(c.peer_fd, buf, sizeof(buf)) > 0:
                pass
            c.wr_blocked = 0
    elif not c.wr_blocked:
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
