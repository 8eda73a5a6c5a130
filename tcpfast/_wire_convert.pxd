# cython: language_level=3
"""C-level API of the conversion between the C reprs of ``_wire`` and the values of ``headers.py``
(for the views in ``_wire_views.pyx``, which hand out those values too).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from tcpfast._wire cimport ip_repr, tcp_repr, icmp_repr


# A field of a header value checked against its width before it goes into a C repr or a buffer.
cdef inline uint32_t field_value(object value, uint64_t limit, str name) except? 0xffffffff:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be in 0..{limit}, got {value!r}")
    return <uint32_t>value


cdef object addr_to_py(const uint8_t* a, uint8_t version)
cdef object ip_to_py(const ip_repr* ip)
cdef object tcp_to_py(const tcp_repr* t)
cdef object icmp_to_py(const icmp_repr* m, const uint8_t* base, uint8_t version)
