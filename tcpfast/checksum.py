"""The Internet checksum (RFC 1071) with pseudo-headers and incremental update (RFC 1624).

Values are network-order 16-bit integers. The compiled core is :mod:`tcpfast._checksum`; other
Cython modules ``cimport`` its C-level API from ``tcpfast/_checksum.pxd``.
"""
from tcpfast._checksum import (  # noqa: F401
    checksum, combine, ones_complement_sum, pseudo_header_sum_ipv4, pseudo_header_sum_ipv6,
    update16, update32,
)

__all__ = ["checksum", "combine", "ones_complement_sum", "pseudo_header_sum_ipv4",
           "pseudo_header_sum_ipv6", "update16", "update32"]
