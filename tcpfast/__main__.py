"""``python -m tcpfast``: the ``tcpfast`` command (see :mod:`tcpfast.cli`)."""
import sys

from tcpfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
