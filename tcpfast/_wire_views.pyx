# cython: language_level=3
"""Views: typed access to the fields of an IP packet, a TCP segment or an ICMP message in place.

The smoltcp idea of a *view* over a buffer: the constructor checks the lengths against the buffer
(raising :class:`~tcpfast._wire.WireError`), then each field is read or written where it lies, with
no copy; ``parse()`` gives the header's value (``headers.py``). A view holds its buffer until
:meth:`_View.release` (or the end of a ``with`` block).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE

from tcpfast._checksum cimport csum_partial, csum_fold, csum_finish, htons as _htons
from tcpfast._wire cimport (ip_repr, tcp_repr, wire_reason, WIRE_OK, WIRE_TRUNCATED, WIRE_BAD_IHL,
                            WIRE_HEADER_OVERRUN, TCP_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
                            ICMP_HEADER_LEN, ipv4_parse, ipv6_parse, tcp_parse, tcp_check_lengths,
                            load16, load32, store16, store32)
from tcpfast._wire_convert cimport addr_to_py, field_value, ip_to_py, tcp_to_py

from tcpfast._wire import WireError
from tcpfast._wire_convert import parse_icmp, parse_ipv4
from tcpfast.headers import TCPFlags


cdef class _View:
    """A checked view over a buffer. Holds the buffer for its lifetime; writable when it is."""

    def __cinit__(self, buf, *args, **kwargs):
        mv = memoryview(buf)
        if mv.ndim != 1 or mv.format not in ("B", "b", "c"):
            mv = mv.cast("B")
        self._mv = mv
        if mv.readonly:
            PyObject_GetBuffer(mv, &self._view, PyBUF_SIMPLE)
        else:
            PyObject_GetBuffer(mv, &self._view, PyBUF_WRITABLE)
        self._held = True
        self._p = <uint8_t*>self._view.buf
        self._n = <size_t>self._view.len

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False

    def release(self) -> None:
        """Let go of the underlying buffer (so a bytearray may be resized again)."""
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False
        self._mv = None
        self._p = NULL
        self._n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __len__(self):
        return self._n

    @property
    def readonly(self) -> bool:
        return bool(self._view.readonly) if self._held else True

    cdef inline const uint8_t* _r(self) except NULL:
        if not self._held:
            raise ValueError("operation on a released view")
        return self._p

    cdef inline uint8_t* _w(self) except NULL:
        if not self._held:
            raise ValueError("operation on a released view")
        if self._view.readonly:
            raise TypeError("the view's buffer is read-only")
        return self._p

    cdef object _slice(self, size_t start, size_t end):
        self._r()
        return self._mv[start:end]


cdef class TCPView(_View):
    """TCPView(buf): typed access to a TCP segment (header, options, payload) in ``buf``.

    The constructor checks the fixed header and the data offset against the buffer and raises
    :class:`WireError` otherwise; option contents are checked by :meth:`parse`.
    """

    def __init__(self, buf):
        cdef wire_reason r = tcp_check_lengths(self._p, self._n)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    @property
    def src_port(self) -> int:
        return load16(self._r())

    @property
    def dst_port(self) -> int:
        return load16(self._r() + 2)

    @property
    def seq(self) -> int:
        return load32(self._r() + 4)

    @seq.setter
    def seq(self, value):
        store32(self._w() + 4, field_value(value, 0xffffffff, "seq"))

    @property
    def ack(self) -> int:
        return load32(self._r() + 8)

    @ack.setter
    def ack(self, value):
        store32(self._w() + 8, field_value(value, 0xffffffff, "ack"))

    @property
    def header_len(self) -> int:
        return (self._r()[12] >> 4) * 4

    @property
    def flags(self):
        return TCPFlags(self._r()[13])

    @flags.setter
    def flags(self, value):
        self._w()[13] = <uint8_t>field_value(int(value), 0xff, "flags")

    @property
    def window(self) -> int:
        return load16(self._r() + 14)

    @window.setter
    def window(self, value):
        store16(self._w() + 14, <uint16_t>field_value(value, 0xffff, "window"))

    @property
    def checksum(self) -> int:
        return load16(self._r() + 16)

    @checksum.setter
    def checksum(self, value):
        store16(self._w() + 16, <uint16_t>field_value(value, 0xffff, "checksum"))

    @property
    def urgent(self) -> int:
        return load16(self._r() + 18)

    @property
    def options(self):
        """The option bytes, as a memoryview into the buffer."""
        return self._slice(TCP_HEADER_LEN, (self._r()[12] >> 4) * 4)

    @property
    def payload(self):
        """The data after the header, as a memoryview into the buffer."""
        return self._slice((self._r()[12] >> 4) * 4, self._n)

    def parse(self):
        """parse() -> TCPHeader: the header's meaning, options included (may raise WireError)."""
        cdef tcp_repr t
        cdef wire_reason r = tcp_parse(self._r(), self._n, &t)
        if r != WIRE_OK:
            raise WireError(r)
        return tcp_to_py(&t)

    def verify_checksum(self, int pseudo_sum) -> bool:
        """verify_checksum(pseudo_sum) -> bool

        True when the segment's checksum is right; ``pseudo_sum`` comes from
        :func:`tcpfast.checksum.pseudo_header_sum_ipv4` (or ``_ipv6``) with ``len(view)``.
        """
        cdef uint16_t ps = <uint16_t>field_value(pseudo_sum, 0xffff, "pseudo_sum")
        return csum_fold(csum_partial(self._r(), self._n, _htons(ps))) == 0xffff

    def fill_checksum(self, int pseudo_sum) -> int:
        """fill_checksum(pseudo_sum) -> int: compute and store the checksum; returns it."""
        cdef uint16_t ps = <uint16_t>field_value(pseudo_sum, 0xffff, "pseudo_sum")
        cdef uint8_t* p = self._w()
        cdef uint16_t csum
        p[16] = 0
        p[17] = 0
        csum = csum_finish(csum_partial(p, self._n, _htons(ps)))
        memcpy(p + 16, &csum, 2)
        return load16(p + 16)


cdef class IPv4View(_View):
    """IPv4View(buf): typed access to an IPv4 packet in ``buf``.

    The constructor checks version, IHL and total length against the buffer (not the checksum:
    see :meth:`verify_checksum`) and raises :class:`WireError` otherwise.
    """

    def __init__(self, buf):
        cdef ip_repr ip
        cdef wire_reason r = ipv4_parse(self._p, self._n, &ip, False)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    version = property(lambda self: 4)

    @property
    def header_len(self) -> int:
        return (self._r()[0] & 0x0f) * 4

    @property
    def tos(self) -> int:
        return self._r()[1]

    @property
    def total_length(self) -> int:
        return load16(self._r() + 2)

    @property
    def ident(self) -> int:
        return load16(self._r() + 4)

    @property
    def dont_fragment(self) -> bool:
        return bool(self._r()[6] & 0x40)

    @property
    def more_fragments(self) -> bool:
        return bool(self._r()[6] & 0x20)

    @property
    def fragment_offset(self) -> int:
        return (load16(self._r() + 6) & 0x1fff) * 8

    @property
    def ttl(self) -> int:
        return self._r()[8]

    @ttl.setter
    def ttl(self, value):
        self._w()[8] = <uint8_t>field_value(value, 0xff, "ttl")

    @property
    def protocol(self) -> int:
        return self._r()[9]

    @property
    def checksum(self) -> int:
        return load16(self._r() + 10)

    @checksum.setter
    def checksum(self, value):
        store16(self._w() + 10, <uint16_t>field_value(value, 0xffff, "checksum"))

    @property
    def src(self):
        return addr_to_py(self._r() + 12, 4)

    @property
    def dst(self):
        return addr_to_py(self._r() + 16, 4)

    @property
    def options(self):
        return self._slice(IPV4_HEADER_LEN, (self._r()[0] & 0x0f) * 4)

    @property
    def payload(self):
        """The upper-layer bytes up to the total length, as a memoryview into the buffer."""
        cdef const uint8_t* p = self._r()
        return self._slice((p[0] & 0x0f) * 4, load16(p + 2))

    cdef size_t _ihl(self) except 0:
        # The buffer is writable and may have changed since the view checked it: check again.
        cdef size_t ihl = <size_t>(self._r()[0] & 0x0f) * 4
        if ihl < IPV4_HEADER_LEN:
            raise WireError(WIRE_BAD_IHL)
        if ihl > self._n:
            raise WireError(WIRE_HEADER_OVERRUN)
        return ihl

    def verify_checksum(self) -> bool:
        """verify_checksum() -> bool: the header checksum is right."""
        cdef size_t ihl = self._ihl()
        return csum_fold(csum_partial(self._p, ihl, 0)) == 0xffff

    def fill_checksum(self) -> int:
        """fill_checksum() -> int: compute and store the header checksum; returns it."""
        cdef size_t ihl = self._ihl()
        cdef uint8_t* p = self._w()
        cdef uint16_t csum
        p[10] = 0
        p[11] = 0
        csum = csum_finish(csum_partial(p, ihl, 0))
        memcpy(p + 10, &csum, 2)
        return load16(p + 10)

    def parse(self, *, bint verify_checksum=True):
        """parse(*, verify_checksum=True) -> IPv4Header"""
        return parse_ipv4(self._mv, verify_checksum=verify_checksum)


cdef class IPv6View(_View):
    """IPv6View(buf): typed access to an IPv6 packet in ``buf``, extension headers walked.

    The constructor checks the fixed header, the payload length and the extension-header chain
    against the buffer and raises :class:`WireError` otherwise.
    """

    def __init__(self, buf):
        cdef wire_reason r = ipv6_parse(self._p, self._n, &self._ip)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    version = property(lambda self: 6)

    @property
    def traffic_class(self) -> int:
        return <uint8_t>(load32(self._r()) >> 20)

    @property
    def flow_label(self) -> int:
        return load32(self._r()) & 0xfffff

    @property
    def payload_length(self) -> int:
        return load16(self._r() + 4)

    @property
    def next_header(self) -> int:
        """The Next Header field of the fixed header (the first extension header, if any)."""
        return self._r()[6]

    @property
    def hop_limit(self) -> int:
        return self._r()[7]

    @hop_limit.setter
    def hop_limit(self, value):
        self._w()[7] = <uint8_t>field_value(value, 0xff, "hop_limit")

    @property
    def src(self):
        return addr_to_py(self._r() + 8, 6)

    @property
    def dst(self):
        return addr_to_py(self._r() + 24, 6)

    @property
    def protocol(self) -> int:
        """The upper-layer protocol, after the extension headers."""
        self._r()
        return self._ip.protocol

    @property
    def header_len(self) -> int:
        """40 plus the extension headers: the offset of the upper-layer header."""
        self._r()
        return self._ip.header_len

    @property
    def is_fragment(self) -> bool:
        self._r()
        return bool(self._ip.is_fragment)

    @property
    def payload(self):
        """The upper-layer bytes, as a memoryview into the buffer."""
        self._r()
        return self._slice(self._ip.header_len, IPV6_HEADER_LEN + load16(self._p + 4))

    def parse(self):
        """parse() -> IPv6Header"""
        return ip_to_py(&self._ip)


cdef class ICMPView(_View):
    """ICMPView(buf): typed access to an ICMPv4/ICMPv6 message (without its IP header)."""

    def __init__(self, buf):
        if self._n < ICMP_HEADER_LEN:
            self.release()
            raise WireError(WIRE_TRUNCATED)

    @property
    def type(self) -> int:
        return self._r()[0]

    @property
    def code(self) -> int:
        return self._r()[1]

    @property
    def checksum(self) -> int:
        return load16(self._r() + 2)

    @property
    def rest(self) -> int:
        return load32(self._r() + 4)

    @property
    def ident(self) -> int:
        return load16(self._r() + 4)

    @property
    def seq(self) -> int:
        return load16(self._r() + 6)

    @property
    def body(self):
        """Echo data or the quoted packet, as a memoryview into the buffer."""
        return self._slice(ICMP_HEADER_LEN, self._n)

    def parse(self, int version=4):
        """parse(version=4) -> ICMPMessage"""
        return parse_icmp(self._mv, version)
