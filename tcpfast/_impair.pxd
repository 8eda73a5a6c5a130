# cython: language_level=3
"""A path impairer: packets forwarded between two devices with a one-way delay, random loss,
duplication and reordering, through a bounded queue, in C without the GIL (see ``_impair.pyx``).

The C declarations of the system calls it uses live here, marked ``nogil``.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from posix.time cimport timespec


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* vec, unsigned int n, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int n, int flags)
    int getsockopt(int fd, int level, int name, void* value, socklen_t* length)
    enum:
        MSG_DONTWAIT
        MSG_TRUNC


cdef extern from "<linux/if_packet.h>" nogil:
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct tpacket_stats:
        unsigned int tp_packets
        unsigned int tp_drops
    enum:
        SOL_PACKET
        PACKET_STATISTICS
        PACKET_OUTGOING


cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t
    struct pollfd:
        int fd
        short events
        short revents
    int ppoll(pollfd* fds, nfds_t n, const timespec* timeout, const void* sigmask)
    enum:
        POLLIN
        POLLOUT


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC


cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)


cdef enum:
    VNET_LEN = 10                # struct virtio_net_hdr, before every packet on the sockets
    MAX_LINK = 16                # longest link-layer header we prepend (Ethernet: 14)
    MAX_IP = 65535               # a super-packet (GSO) is at most one IP datagram
    SLOT = 65600                 # VNET_LEN + MAX_LINK + MAX_IP, rounded up
    MAX_BATCH = 64               # packets received or sent per system call
    IOV_PER_MSG = 3              # an output message: virtio-net header, link header, IP bytes


ctypedef struct vnet_hdr:        # <linux/virtio_net.h>, native byte order on a packet socket
    uint8_t flags
    uint8_t gso_type
    uint16_t hdr_len
    uint16_t gso_size
    uint16_t csum_start
    uint16_t csum_offset


ctypedef struct pkt_t:           # one packet held in a queue
    uint64_t depart_ns           # CLOCK_MONOTONIC time it may leave
    uint32_t off                 # where its IP bytes start in the queue's byte ring
    uint32_t length              # IP bytes
    vnet_hdr vh                  # with csum_start/hdr_len relative to the IP header


ctypedef struct queue_t:         # FIFO of packets in departure order, bounded twice
    pkt_t* slots
    uint32_t limit               # packets
    uint32_t head
    uint32_t count
    uint8_t* bytes
    uint32_t cap                 # bytes
    uint32_t byte_head           # offset of the oldest packet's bytes
    uint32_t byte_tail           # where the next packet's bytes go


ctypedef struct dir_counters:
    uint64_t rx_packets          # IPv4 packets read from the input side
    uint64_t rx_bytes
    uint64_t tx_packets          # handed to the output side
    uint64_t tx_bytes
    uint64_t lost                # dropped on purpose (the loss rate)
    uint64_t duplicated          # extra copies made
    uint64_t reordered           # sent at once, past the delayed packets
    uint64_t queue_drops         # no room in the bounded queue
    uint64_t tx_errors           # the output device refused it (ENOBUFS: its queue was full)
    uint64_t ignored             # not IPv4 (ARP, IPv6 neighbour discovery ...), or truncated
    uint64_t max_queued          # the most packets held at once
    uint64_t first_rx_ns
    uint64_t last_tx_ns


ctypedef struct direction:
    int fd_in
    int fd_out
    uint32_t link_in             # link header length on the input side (stripped)
    uint32_t link_out            # and on the output side (prepended)
    uint8_t header_out[MAX_LINK] # the link header prepended on output (Ethernet: dst, src, type)
    uint64_t rng
    queue_t main                 # delayed packets
    queue_t express              # reordered packets: leave at once, ahead of the delayed ones
    uint8_t* scratch             # MAX_BATCH received packets
    mmsghdr rmsg[MAX_BATCH]
    iovec riov[MAX_BATCH]
    sockaddr_ll rname[MAX_BATCH]
    mmsghdr smsg[MAX_BATCH]
    iovec siov[MAX_BATCH * IOV_PER_MSG]
    vnet_hdr shdr[MAX_BATCH]
    uint8_t spick[MAX_BATCH]     # which queue each message of a send batch came from
    uint8_t blocked              # the output socket said EAGAIN: wait for POLLOUT
    dir_counters c


cdef class Impairer:
    cdef direction* d[2]         # 0: side a -> side b, 1: side b -> side a
    cdef int fds[2]
    cdef int wake_fd
    cdef uint64_t delay_ns
    cdef uint64_t loss_t, dup_t, reorder_t
    cdef uint32_t batch
    cdef double max_seconds
    cdef readonly bint running
    cdef readonly str stop_reason
    cdef uint64_t kernel_drops[2]
    cdef readonly double cpu_seconds  # CPU time of the thread that ran the loop (last run)
    cdef int _loop(self) noexcept nogil
    cdef void _release(self) noexcept
