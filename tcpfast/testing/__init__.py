"""Tools for testing code that runs on tcpfast, and tcpfast itself; never imported by the runtime.

* :class:`SimPair` (:mod:`tcpfast.testing._simlink`, compiled): two connections over an in-memory
  link that delays, drops, reorders, duplicates and corrupts, on a virtual clock;
  :func:`stream_bytes` is the seekable byte stream it sends and checks.
* :class:`Scoreboard` (:mod:`tcpfast.testing._scoreboard`, compiled): the sender's SACK scoreboard
  of RFC 6675, a reference the stack does not use (its loss detection is RACK-TLP).

``tests/test_layers.py`` checks that no module of the runtime package imports this one.
"""
from tcpfast.testing._scoreboard import Scoreboard
from tcpfast.testing._simlink import SimPair, stream_bytes

__all__ = ["SimPair", "stream_bytes", "Scoreboard"]
