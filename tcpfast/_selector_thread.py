"""One daemon thread that waits on a ``selectors`` selector, and stops cleanly.

The control server (:mod:`tcpfast.control`) and the echo/discard services
(:mod:`tcpfast.services`) both serve sockets from one thread. What they share is here: the
selector, a socketpair that wakes the thread for :meth:`SelectorThread._stop_thread`, the loop
that hands every other ready key to :meth:`SelectorThread._ready`, and the join.
"""
from __future__ import annotations

import selectors
import socket
import threading
from typing import Any, Optional


class SelectorThread:
    """Base class: call :meth:`_start_thread` with the sockets to watch, implement
    :meth:`_ready`, and call :meth:`_stop_thread` then :meth:`_close_selector` to stop."""

    _thread_name = "tcpfast-selector"

    def __init__(self) -> None:
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_thread(self, *watch: Any) -> None:
        """Register ``watch`` for reading (key data None) and start the thread."""
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        for obj in watch:
            self._sel.register(obj, selectors.EVENT_READ, None)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def _stop_thread(self, timeout: float) -> bool:
        """Wake the thread and join it; False when it was not running."""
        thread = self._thread
        if thread is None:
            return False
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        thread.join(timeout)
        if thread.is_alive():       # pragma: no cover - the loop wakes on the socketpair
            raise RuntimeError(f"the {self._thread_name} thread did not stop")
        self._thread = None
        return True

    def _close_selector(self) -> None:
        """After :meth:`_stop_thread` (and after unregistering what the subclass owns)."""
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._sel is not None:
            self._sel.close()
        self._sel = self._wake_r = self._wake_w = None

    def _run(self) -> None:
        sel = self._sel
        while not self._stopping.is_set():
            for key, events in sel.select():
                if key.fileobj is self._wake_r:
                    try:
                        self._wake_r.recv(64)
                    except BlockingIOError:
                        pass
                else:
                    self._ready(key, events)

    def _ready(self, key: selectors.SelectorKey, events: int) -> None:
        """One ready socket other than the wake-up pair."""
        raise NotImplementedError
