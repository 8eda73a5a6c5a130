# cython: language_level=3
"""C-level declarations of the views over packet buffers (``_wire_views.pyx``)."""
from libc.stdint cimport uint8_t

from tcpfast._wire cimport ip_repr


cdef class _View:
    cdef Py_buffer _view        # the buffer, held while _held
    cdef bint _held
    cdef uint8_t* _p
    cdef size_t _n
    cdef object _mv             # the memoryview the buffer was taken from (bytes, cast to "B")

    cdef const uint8_t* _r(self) except NULL
    cdef uint8_t* _w(self) except NULL
    cdef object _slice(self, size_t start, size_t end)


cdef class TCPView(_View):
    pass


cdef class IPv4View(_View):
    cdef size_t _ihl(self) except 0


cdef class IPv6View(_View):
    cdef ip_repr _ip            # the fixed header and the extension-header walk, as checked


cdef class ICMPView(_View):
    pass
