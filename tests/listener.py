"""One threaded loopback listener for the test servers: accept, hand each connection to
its own thread, and on close end every connection and thread at once."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Callable


class ThreadedListener:
    """A listener on 127.0.0.1 whose connections are served by ``handle`` on a thread each.

    Use it as a context manager. ``stop`` is set on close; handlers that wait should wait
    on it, so closing ends them at once. Subclasses override ``handle`` (or ``on_accept``
    to serve a connection some other way, with ``spawn`` and ``track``).
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.connections = 0  # accepted so far
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Any:
        self._accepter.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        wake(self.port)
        self._accepter.join()
        close_all(self._sockets)  # a kept-alive connection must not hold the test for seconds
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the 0.05 s accept timeout included
                continue
            if self.stop.is_set():
                conn.close()  # the wake-up call from __exit__
                break
            self.connections += 1
            self.track(conn)
            self.on_accept(conn)

    def on_accept(self, conn: socket.socket) -> None:
        """Serve a new connection: by default ``handle(conn)`` on a thread of its own."""
        self.spawn(self.handle, conn)

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection (subclasses say how)."""
        raise NotImplementedError

    def spawn(self, target: Callable[..., object], *args: object) -> None:
        """Run ``target(*args)`` on a daemon thread joined when the listener closes."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def track(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the listener closes, so threads blocked on it end."""
        self._sockets.append(sock)


def wake(port: int) -> None:
    """Connect to our own listener, so a thread blocked in accept() sees the stop at once."""
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def close_all(sockets: list[socket.socket]) -> None:
    """Shut down and close sockets that threads may still block on, so the threads end now."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
