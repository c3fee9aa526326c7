"""A socket whose every send and receive ends by one deadline, and the response-size cap.

A socket timeout bounds each blocking operation, so a server that drips one byte per
second never trips it. ``DeadlineSocket`` re-arms the timeout with the time left until
one deadline, so the whole exchange (connect aside) is bounded. Shared by both transports.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any

MAX_RESPONSE_BYTES = 1024 * 1024
# A socket timeout set at time t ends a blocking call by deadline + (now - t); re-arming
# (two fcntl syscalls) only after this many seconds bounds the overshoot cheaply.
_REARM_AFTER = 0.02


class ResponseTooLarge(Exception):
    """The response body was larger than the cap; the transport reports it."""


class DeadlineSocket:
    """A socket (plain or TLS) whose every send and receive ends by ``deadline``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline
        self.bytes_received = 0  # since the last request began: 0 means nothing was read
        self._armed_at = float("-inf")
        self._io_refs = 0
        self._closed = False

    def reset(self, deadline: float) -> None:
        """Start a new exchange on this connection, bounded by ``deadline``."""
        self.deadline = deadline
        self.bytes_received = 0
        self._armed_at = float("-inf")

    def _arm(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            raise socket.timeout("timed out")
        if now - self._armed_at >= _REARM_AFTER:
            self._sock.settimeout(self.deadline - now)
            self._armed_at = now

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        count = self._sock.recv_into(buffer, nbytes, flags)
        self.bytes_received += count
        return count

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        data = self._sock.recv(bufsize, flags)
        self.bytes_received += len(data)
        return data

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self._sock.sendall(data, flags)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        """Return a buffered reader whose reads go through the deadline (http.client uses "rb")."""
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        self._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        # Same contract as socket.socket: the real close waits for open makefile() readers.
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
