"""tcpfast: a user-space TCP/IP stack for Python with a Cython core.

The compiled core must load: there is no pure-Python fallback. Importing tcpfast from a source
checkout that has not been built fails here with a message that says how to build it.
"""
__version__ = "0.1.0"

try:
    from tcpfast import (_cc, _checksum, _engine, _isn, _ranges, _ring, _rtx,  # noqa: F401
                         _seq, _simlink, _tcb, _wire)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    import os as _os

    _here = _os.path.dirname(__file__)
    raise ImportError(
        f"tcpfast's compiled core did not load ({exc}). tcpfast was imported from {_here}; "
        "install it with `pip install .` (and run the tests with `pytest` from the checkout, not "
        "`python -m pytest`, which puts the unbuilt source tree first on sys.path), or build in "
        "place with `python setup.py build_ext --inplace`."
    ) from exc

from tcpfast._wire import WireError  # noqa: E402
from tcpfast.stack import Stack, default_stack  # noqa: E402
from tcpfast.socket import socket  # noqa: E402  (the class: tcpfast.socket(...) makes one)

__all__ = ["Stack", "socket", "default_stack", "WireError", "__version__"]
