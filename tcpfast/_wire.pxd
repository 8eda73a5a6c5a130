# cython: language_level=3
"""C-level API of the wire format: parse and emit IPv4, IPv6, TCP and ICMP (v4 and v6).

The model is smoltcp's ``wire`` module: a *repr* struct holds the meaning of a header; ``parse_*``
fills one from received bytes after checking every length against the buffer, and ``emit_*``
writes one into a caller-provided buffer and fills the checksums. Nothing here allocates, raises,
or holds the GIL: every function is ``noexcept nogil`` and reports malformed input through a
``wire_reason`` code, so the engine can drop and count a bad packet without a Python object.

Offsets in the reprs are from the start of the buffer that was parsed. C-level names are
noun_verb (``tcp_parse``, ``tcp_packet_emit``); the Python-level wrappers in ``_wire_convert.pyx``
are verb_noun (``parse_tcp``, ``emit_packet``).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


# Why a packet was rejected. The engine counts each one separately (``stack.stats()``); the Python
# layer raises ``WireError`` with the matching ``Reason``. Keep ``_REASON_TEXT`` in ``_wire.pyx``
# in the same order.
ctypedef enum wire_reason:
    WIRE_OK = 0
    WIRE_TRUNCATED              # shorter than the fixed header (IPv4 20, IPv6 40, TCP 20, ICMP 8)
    WIRE_BAD_VERSION            # IP version neither 4 nor 6 (or not the one asked for)
    WIRE_BAD_IHL                # IPv4 IHL < 5
    WIRE_HEADER_OVERRUN         # IHL*4 or an IPv6 extension header runs past the packet
    WIRE_BAD_TOTAL_LENGTH       # IPv4 total length / IPv6 payload length beyond the buffer, or < header
    WIRE_BAD_IP_CHECKSUM        # IPv4 header checksum
    WIRE_FRAGMENT               # an IP fragment: the stack does not reassemble, it drops and counts
    WIRE_EXT_HEADER_LIMIT       # more IPv6 extension headers than the stack walks
    WIRE_UNKNOWN_PROTOCOL       # upper layer is neither TCP nor ICMP/ICMPv6
    WIRE_BAD_DATA_OFFSET        # TCP data offset < 5
    WIRE_OPTIONS_OVERRUN        # TCP data offset past the segment, or an option runs past the header
    WIRE_BAD_OPTION_LENGTH      # option length < 2, or wrong for MSS/WS/SACK-permitted/SACK/timestamps
    WIRE_BAD_CHECKSUM           # TCP or ICMP checksum
    WIRE_REASON_COUNT


cdef enum:
    PROTO_HOPOPTS = 0
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_ROUTING = 43
    PROTO_FRAGMENT = 44
    PROTO_ICMPV6 = 58
    PROTO_NONE = 59
    PROTO_DSTOPTS = 60
    # At most this many IPv6 extension headers are walked before the packet is dropped: a bound
    # on the work a crafted packet can cause.
    IPV6_MAX_EXT_HEADERS = 8


# TCP control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168 §6.1).
cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20
    TH_ECE = 0x40
    TH_CWR = 0x80


# TCP option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018) and limits.
cdef enum:
    TCPOPT_EOL = 0
    TCPOPT_NOP = 1
    TCPOPT_MSS = 2
    TCPOPT_WSCALE = 3
    TCPOPT_SACK_PERMITTED = 4
    TCPOPT_SACK = 5
    TCPOPT_TIMESTAMPS = 8
    TCP_MAX_SACK_BLOCKS = 4
    TCP_HEADER_LEN = 20
    TCP_MAX_HEADER_LEN = 60
    TCP_MAX_OPTIONS_LEN = 40            # TCP_MAX_HEADER_LEN - TCP_HEADER_LEN
    IPV4_HEADER_LEN = 20
    IPV6_HEADER_LEN = 40
    ICMP_HEADER_LEN = 8
    IPV4_ADDR_LEN = 4
    IPV6_ADDR_LEN = 16


# parse_packet flags
cdef enum:
    PARSE_SKIP_L4_CHECKSUM = 1   # the device already verified it (virtio-net DATA_VALID)


ctypedef struct ip_repr:
    uint8_t version             # 4 or 6
    uint8_t protocol            # upper-layer protocol (IPv6: after the extension headers)
    uint8_t ttl                 # IPv4 TTL / IPv6 hop limit
    uint8_t tos                 # IPv4 TOS / IPv6 traffic class (DSCP + ECN)
    uint8_t dont_fragment       # IPv4 DF
    uint8_t more_fragments      # IPv4 MF / IPv6 fragment header M
    uint8_t is_fragment         # any fragment that is not a whole datagram
    uint16_t ident              # IPv4 identification
    uint16_t fragment_offset    # in bytes
    uint16_t checksum           # IPv4 header checksum as received
    uint16_t header_len         # IPv4 IHL*4; IPv6 40 + extension headers
    uint32_t payload_len        # upper-layer length
    uint32_t flow_label         # IPv6
    uint8_t src[IPV6_ADDR_LEN]  # IPv4 uses the first IPV4_ADDR_LEN bytes
    uint8_t dst[IPV6_ADDR_LEN]


ctypedef struct tcp_repr:
    uint16_t src_port
    uint16_t dst_port
    uint32_t seq
    uint32_t ack
    uint8_t flags
    uint16_t window
    uint16_t urgent
    uint16_t checksum           # as received
    uint16_t header_len         # data offset * 4 as received
    uint8_t has_mss
    uint16_t mss
    uint8_t has_wscale
    uint8_t wscale
    uint8_t sack_permitted
    uint8_t has_timestamps
    uint32_t tsval
    uint32_t tsecr
    uint8_t sack_count
    uint32_t sack_left[TCP_MAX_SACK_BLOCKS]
    uint32_t sack_right[TCP_MAX_SACK_BLOCKS]


ctypedef struct icmp_repr:
    uint8_t type
    uint8_t code
    uint16_t checksum
    uint32_t rest               # the 4 bytes after the checksum, as a big-endian word
    uint16_t ident              # echo request/reply
    uint16_t seq
    uint32_t mtu                # ICMPv4 fragmentation needed (RFC 1191 §4) / ICMPv6 packet too big
    uint32_t body_off           # echo data or quoted packet, from the start of the parsed buffer
    uint32_t body_len
    uint8_t has_quote           # an error message whose quoted IP header was parsed
    uint8_t quote_has_ports     # ... and 8 bytes of its upper-layer header (ports, TCP seq)
    ip_repr quote_ip
    uint16_t quote_src_port
    uint16_t quote_dst_port
    uint32_t quote_seq


ctypedef struct pkt_repr:
    ip_repr ip
    uint32_t l4_off             # start of the TCP / ICMP header
    uint32_t l4_len
    uint32_t payload_off        # TCP payload
    uint32_t payload_len
    tcp_repr tcp                # valid when ip.protocol == PROTO_TCP
    icmp_repr icmp              # valid when ip.protocol is PROTO_ICMP or PROTO_ICMPV6


# --- big-endian loads and stores: the typed field accessors of the views ---------------------
cdef inline uint16_t load16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])

cdef inline uint32_t load32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void store16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v

cdef inline void store32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


# --- small checks shared by the parser, the emitter, the conversion and the views --------------
cdef inline wire_reason tcp_check_lengths(const uint8_t* b, size_t n) noexcept nogil:
    # The fixed header and the data offset against the segment (options are not looked at).
    cdef size_t doff
    if n < TCP_HEADER_LEN:
        return WIRE_TRUNCATED
    doff = <size_t>(b[12] >> 4) * 4
    if doff < TCP_HEADER_LEN:
        return WIRE_BAD_DATA_OFFSET
    if doff > n:
        return WIRE_OPTIONS_OVERRUN
    return WIRE_OK

cdef inline bint icmp_is_echo(uint8_t version, uint8_t type) noexcept nogil:
    if version == 4:
        return type == 0 or type == 8          # RFC 792 echo reply / request
    return type == 128 or type == 129          # RFC 4443 §4.1-4.2

cdef inline bint icmp_has_mtu(uint8_t version, uint8_t type, uint8_t code) noexcept nogil:
    if version == 4:
        return type == 3 and code == 4         # RFC 1191 §4 fragmentation needed and DF set
    return type == 2                           # RFC 4443 §3.2 packet too big

cdef inline size_t tcp_options_fixed_len(const tcp_repr* t) noexcept nogil:
    # The option bytes of everything but the SACK blocks, each option padded to 4 bytes.
    cdef size_t n = 0
    if t.has_mss:
        n += 4
    if t.has_timestamps:
        n += 12                         # SACK-permitted + TS, or NOP NOP TS
    elif t.sack_permitted:
        n += 4                          # NOP NOP SACK-permitted
    if t.has_wscale:
        n += 4                          # NOP WS
    return n

cdef inline size_t tcp_sack_blocks_that_fit(const tcp_repr* t, size_t used) noexcept nogil:
    # How many SACK blocks fit in the option bytes left after ``used`` (RFC 2018 §3): NOP NOP,
    # kind and length (4 bytes), then 8 bytes a block.
    cdef size_t k = t.sack_count
    if k > TCP_MAX_SACK_BLOCKS:
        k = TCP_MAX_SACK_BLOCKS
    if used + 4 + 8 > TCP_MAX_OPTIONS_LEN:
        return 0
    if k > (TCP_MAX_OPTIONS_LEN - used - 4) // 8:
        k = (TCP_MAX_OPTIONS_LEN - used - 4) // 8
    return k


# --- parsing ---------------------------------------------------------------------------------
cdef wire_reason ipv4_parse(const uint8_t* b, size_t n, ip_repr* ip, bint verify_checksum) noexcept nogil
cdef wire_reason ipv6_parse(const uint8_t* b, size_t n, ip_repr* ip) noexcept nogil
cdef wire_reason ip_parse(const uint8_t* b, size_t n, ip_repr* ip) noexcept nogil
cdef wire_reason tcp_parse_options(const uint8_t* opt, size_t n, tcp_repr* t) noexcept nogil
cdef wire_reason tcp_parse(const uint8_t* b, size_t n, tcp_repr* t) noexcept nogil
cdef wire_reason icmp_parse(const uint8_t* b, size_t n, uint8_t version, icmp_repr* m) noexcept nogil
cdef wire_reason packet_parse(const uint8_t* b, size_t n, pkt_repr* p, int flags) noexcept nogil
cdef uint64_t ip_pseudo_sum(const ip_repr* ip, uint32_t l4_len) noexcept nogil

# --- emitting --------------------------------------------------------------------------------
cdef size_t tcp_options_len(const tcp_repr* t) noexcept nogil
cdef size_t tcp_header_len(const tcp_repr* t) noexcept nogil
cdef size_t ip_header_len(const ip_repr* ip) noexcept nogil
cdef size_t ip_emit(uint8_t* b, const ip_repr* ip, uint8_t protocol, size_t payload_len) noexcept nogil
# ``partial``: leave the checksum to the device (checksum offload, CHECKSUM_PARTIAL): the field
# holds the folded pseudo-header sum, to which the device adds the segment's sum.
cdef size_t tcp_emit(uint8_t* b, const tcp_repr* t, size_t payload_len, uint64_t pseudo,
                     bint partial) noexcept nogil
cdef size_t tcp_packet_emit(uint8_t* b, size_t cap, const ip_repr* ip, const tcp_repr* t,
                            size_t payload_len, bint partial) noexcept nogil
cdef size_t icmp_packet_emit(uint8_t* b, size_t cap, const ip_repr* ip, const icmp_repr* m,
                             size_t body_len) noexcept nogil
