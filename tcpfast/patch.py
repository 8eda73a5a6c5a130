"""``tcpfast.patch()``: run unmodified programs on a tcpfast stack.

``patch(stack=None)`` rebinds one name in the standard library's :mod:`socket` module so that
every TCP socket the program makes from then on (``AF_INET`` or ``AF_INET6``, ``SOCK_STREAM``,
protocol 0 or ``IPPROTO_TCP``) is a :class:`tcpfast.socket` on ``stack``; everything else stays
with the kernel::

    import tcpfast, urllib.request
    with tcpfast.Stack("198.18.0.2/24", kernel_address="198.18.0.1") as stack:
        with tcpfast.patch(stack):
            urllib.request.urlopen("http://198.18.0.1:8000/", timeout=10).read()

What is rebound, and why (checked against what the standard library calls):

``socket.socket``
    A class, :class:`socket`, that builds a tcpfast socket for a TCP family/type/protocol and a
    kernel socket (an instance of the original ``socket.socket``) for anything else: UDP, raw,
    ``AF_UNIX``, ``AF_NETLINK``, ``AF_PACKET``... and for every call that passes ``fileno=``
    (an existing kernel descriptor: ``socket.fromfd``, ``socket.socketpair`` and a kernel
    socket's ``accept`` build their result that way). So ``socket.socketpair()``, which
    asyncio uses for its self-pipe, stays a kernel ``AF_UNIX`` pair. ``socketserver``
    (``socket.socket(self.address_family, self.socket_type)``), asyncio's ``create_connection``
    and ``create_server`` (``socket.socket(family=af, type=..., proto=...)``) and
    ``multiprocessing.connection`` come through here. ``isinstance(s, socket.socket)`` is true
    for kernel sockets and for tcpfast sockets alike while patched (the class's metaclass says
    so), and a class derived from it while patched (``class S(socket.socket)``) makes kernel
    sockets of that class, as before.
``socket.create_connection``, ``socket.create_server``, ``socket.has_dualstack_ipv6``
    Not rebound: the standard library's own functions (``http.client``, ``smtplib``, ``ftplib``,
    ``xmlrpc.client``, ``urllib.request`` connect through ``socket.create_connection``) call
    ``socket(...)`` from the socket module when they run, so they make tcpfast sockets while
    patched, and code that replaces ``socket.socket`` itself (tests, mocks) sees its
    replacement used, as without tcpfast.

Not rebound: name resolution (``getaddrinfo``, ``gethostbyname``, ``getfqdn``...),
``socketpair``, ``fromfd`` and the constants stay the kernel's. ``socket.SocketType`` (the C base
type ``_socket.socket``) is left alone: nothing in the standard library constructs or checks it,
and a tcpfast socket is not an instance of it. Names copied out of the socket module before
patching (``from socket import socket``) keep the kernel's class.

Every decision is taken when a socket is made: sockets made before :func:`patch` stay kernel
sockets, tcpfast sockets made while patched stay tcpfast sockets after :func:`unpatch`, and the
patched names looked up or kept after :func:`unpatch` make kernel sockets again. A tcpfast
socket reaches what its stack can reach: its own address (local delivery) and the network
behind the TUN device, not the kernel's loopback (``127.0.0.1``, ``localhost``). If the stack
stops while patched, new TCP sockets fail with ``OSError(ENETDOWN)``. TLS through
``ssl.SSLContext.wrap_socket`` works on tcpfast sockets, patched or not: :mod:`tcpfast.ssl`
runs it over the socket's data with an ``ssl.SSLObject`` (asyncio's TLS already did).

Patching is process-global (every thread sees it) and nests: each :func:`patch` pushes a layer,
the newest layer's stack is the one new sockets go to, :meth:`Patch.unpatch` (or leaving its
``with`` block) removes that layer, and :func:`unpatch` removes them all. When the last layer
goes, the socket module gets back exactly the objects it had before the first one.
"""
from __future__ import annotations

import importlib
import socket as _socket_module
import threading
import warnings
from typing import Any, Dict, List, Optional

from tcpfast.stack import Stack, default_stack

# The module (``tcpfast.socket`` as an attribute of the package is the class).
_tcpfast = importlib.import_module("tcpfast.socket")
_TcpfastSocket = _tcpfast.socket

__all__ = ["patch", "unpatch", "is_patched", "Patch", "socket"]

# The kernel's class and functions, as the socket module had them when tcpfast.patch was imported.
_KernelSocket = _socket_module.socket

_AF_INET = _socket_module.AF_INET
_AF_INET6 = _socket_module.AF_INET6
_SOCK_STREAM = _socket_module.SOCK_STREAM
_IPPROTO_TCP = _socket_module.IPPROTO_TCP
_SOCK_FLAGS = (getattr(_socket_module, "SOCK_NONBLOCK", 0)
               | getattr(_socket_module, "SOCK_CLOEXEC", 0))

_lock = threading.RLock()
_layers: List["Patch"] = []
_top_stack: Optional[Stack] = None        # _layers[-1].stack, read without the lock
_saved: Dict[str, Any] = {}                # what the socket module had before the first layer


def _is_tcp(family: int, type: int, proto: int) -> bool:
    """Whether socket(family, type, proto) (with -1 meaning "the default") is a TCP socket."""
    return (family in (-1, _AF_INET, _AF_INET6)
            and (type == -1 or (type & ~_SOCK_FLAGS) == _SOCK_STREAM)
            and proto in (-1, 0, _IPPROTO_TCP))


class _PatchedSocketMeta(type):
    """Makes ``isinstance(s, socket.socket)`` true for tcpfast sockets as for kernel ones."""

    def __instancecheck__(cls, obj: object) -> bool:
        if cls is socket:
            return isinstance(obj, (_KernelSocket, _TcpfastSocket))
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls is socket:
            return issubclass(sub, (_KernelSocket, _TcpfastSocket))
        return type.__subclasscheck__(cls, sub)


class socket(_KernelSocket, metaclass=_PatchedSocketMeta):
    """socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=None)

    What ``socket.socket`` is while :func:`patch` is in force. Calling it returns a
    :class:`tcpfast.socket` on the patch's stack for a TCP socket (``AF_INET``/``AF_INET6``,
    ``SOCK_STREAM`` with or without ``SOCK_NONBLOCK``/``SOCK_CLOEXEC``, protocol 0 or
    ``IPPROTO_TCP``, no ``fileno``), and a kernel socket (the original ``socket.socket``) for
    everything else, or for everything once no patch is in force. Neither result is an instance
    of this class itself, but ``isinstance(x, socket.socket)`` is true for both. Classes derived
    from it make kernel sockets of the derived class.
    """

    __slots__ = ()

    def __new__(cls, family: int = -1, type: int = -1, proto: int = -1,
                fileno: Optional[int] = None):
        if cls is not socket:
            # class S(socket.socket) defined while patched: S(...) is a kernel socket, and the
            # original __init__ (which Python calls next, S being an instance) sets it up.
            return _KernelSocket.__new__(cls, family, type, proto, fileno)
        stack = _top_stack
        if stack is not None and fileno is None and _is_tcp(family, type, proto):
            return _TcpfastSocket(_AF_INET if family == -1 else family,
                                  _SOCK_STREAM if type == -1 else type,
                                  0 if proto == -1 else proto, stack=stack)
        return _KernelSocket(family, type, proto, fileno)


socket.__module__ = "tcpfast.patch"


# name in the socket module -> what patch() puts there
# Only the class: socket.create_connection, create_server and has_dualstack_ipv6 stay the
# standard library's own code, which looks socket.socket up when called and so builds tcpfast
# sockets while patched, and whatever replaced socket.socket (a test's mock) when something did.
_REPLACEMENTS: Dict[str, Any] = {
    "socket": socket,
}


class Patch:
    """One layer of :func:`patch`: the handle it returns, and a context manager.

    ``stack`` is where the TCP sockets made while this layer is the newest one go.
    :meth:`unpatch` (also ``with``'s exit) removes this layer only; once no layer is left the
    socket module is as it was before the first.
    """

    __slots__ = ("stack", "__weakref__")

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    @property
    def active(self) -> bool:
        """Whether this layer is still in force."""
        with _lock:
            return any(layer is self for layer in _layers)

    def unpatch(self) -> None:
        """Remove this layer (nothing happens if it is already gone)."""
        with _lock:
            for i, layer in enumerate(_layers):
                if layer is self:
                    del _layers[i]
                    break
            else:
                return
            _settle()

    def __enter__(self) -> "Patch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unpatch()

    def __repr__(self) -> str:
        return f"<tcpfast.patch {'active' if self.active else 'undone'} on {self.stack!r}>"


def _settle() -> None:
    """Make the socket module agree with _layers (called with _lock held)."""
    global _top_stack
    if _layers:
        _top_stack = _layers[-1].stack
        return
    _top_stack = None
    for name, original in _saved.items():
        current = getattr(_socket_module, name, None)
        if current is _REPLACEMENTS[name]:
            setattr(_socket_module, name, original)
        else:   # someone rebound it after us: leave theirs in place
            warnings.warn(f"tcpfast.unpatch(): socket.{name} was rebound by someone else while "
                          f"patched ({current!r}); leaving it as it is", RuntimeWarning,
                          stacklevel=3)
    _saved.clear()


def patch(stack: Optional[Stack] = None) -> Patch:
    """patch(stack=None) -> Patch

    Make the program's new TCP sockets tcpfast sockets on ``stack`` (the default stack, i.e. the
    first one started, when not given): rebinds ``socket.socket`` in the standard library's socket
    module (see the module's docstring for what that reaches and what stays with the kernel).
    Takes effect at once and returns a :class:`Patch`, which undoes this layer when its ``with``
    block ends or its :meth:`~Patch.unpatch` is called::

        with tcpfast.patch(stack):
            ...                     # socketserver, http.client, asyncio... run on tcpfast

    Calling it again while patched is safe and nests: the newest layer's stack is used until
    that layer is undone. :func:`unpatch` undoes every layer.

    Raises :class:`RuntimeError` when ``stack`` is not running (or, without ``stack``, when no
    tcpfast stack is running), leaving the socket module as it was.
    """
    global _top_stack
    if stack is None:
        try:
            stack = default_stack()
        except RuntimeError as exc:
            raise RuntimeError(f"tcpfast.patch(): {exc}") from None
    elif not isinstance(stack, Stack):
        raise TypeError("tcpfast.patch(): stack must be a tcpfast.Stack, not "
                        f"{type(stack).__name__}")
    if not stack.running:
        raise RuntimeError(f"tcpfast.patch(): the stack {stack!r} is not running: start it "
                           "first (stack.start(), or `with tcpfast.Stack(...) as stack:`)")
    layer = Patch(stack)
    with _lock:
        if not _layers:
            for name, replacement in _REPLACEMENTS.items():
                _saved[name] = getattr(_socket_module, name)
                setattr(_socket_module, name, replacement)
        _layers.append(layer)
        _top_stack = stack
    return layer


def unpatch() -> None:
    """unpatch()

    Undo every :func:`patch` layer: the socket module gets back exactly the objects it had before
    the first one (``socket.socket is`` the original class again). Safe to call when not
    patched. Sockets already made keep working on the stack or the kernel they were made on.
    """
    with _lock:
        _layers.clear()
        _settle()


def is_patched() -> bool:
    """is_patched() -> bool: whether a :func:`patch` layer is in force."""
    return _top_stack is not None
