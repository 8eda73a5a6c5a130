# The C interfaces the engine uses (poll, read/write, eventfd, clocks), and its smallest helpers.
# Included by _engine.pyx (one compilation unit: see its docstring).

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

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline uint64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000 + <uint64_t>(ts.tv_nsec // 1000)


cdef inline void _signal(int fd) noexcept nogil:
    cdef uint64_t one = 1
    if fd >= 0:
        write(fd, &one, 8)


cdef inline void store_le16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)

