"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4, RFC 1982).

The compiled core is :mod:`tcpfast._seq`; Cython modules ``cimport`` the inline helpers from
``tcpfast/_seq.pxd``.
"""
from tcpfast._seq import add, between, ge, gt, in_window, le, lt, max, min, sub  # noqa: F401

__all__ = ["lt", "le", "gt", "ge", "between", "in_window", "add", "sub", "max", "min"]
