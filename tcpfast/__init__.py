"""tcpfast: a user-space TCP/IP stack for Python with a Cython core.

The compiled core must load: there is no pure-Python fallback. Importing tcpfast from a source
checkout that has not been built fails here with a message that says how to build it.
"""
__version__ = "0.1.0"

try:
    from tcpfast import (_cc, _checksum, _engine, _isn, _ranges, _ring, _rtx,  # noqa: F401
                         _seq, _tcb, _wire, _wire_convert, _wire_views)
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
from tcpfast.socket import create_connection, create_server, has_dualstack_ipv6  # noqa: E402
from tcpfast.patch import is_patched, patch, unpatch  # noqa: E402  (tcpfast.patch: the function)
# TLS: SSLContext.wrap_socket accepts tcpfast sockets from here on (other sockets: unchanged).
import tcpfast.ssl  # noqa: E402,F401

# The socket module's constants, so that tcpfast can stand in for it (tcpfast.AF_INET, ...).
import socket as _stdlib_socket  # noqa: E402

for _name in dir(_stdlib_socket):
    if _name.startswith(("AF_", "SOCK_", "SOL_", "SO_", "IPPROTO_", "TCP_", "MSG_", "SHUT_",
                         "INADDR_", "SOMAXCONN")) and not _name.startswith("SOCK_") or \
            _name in ("SOCK_STREAM", "SOCK_NONBLOCK", "SOCK_CLOEXEC", "SOCK_DGRAM"):
        globals()[_name] = getattr(_stdlib_socket, _name)
del _name

__all__ = ["Stack", "socket", "default_stack", "create_connection", "create_server",
           "has_dualstack_ipv6", "patch", "unpatch", "is_patched", "WireError", "__version__"]
