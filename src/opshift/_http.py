"""http.client plumbing shared by the transports: a whole-call deadline and a body cap.

Imported on first use only, so ``import opshift`` stays cheap.

A socket timeout bounds each blocking operation, so a server that drips one byte per
second never trips it. ``_DeadlineSocket`` re-arms the timeout before every send and
receive with the time left until one deadline, so the whole exchange is bounded.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import Any

MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class _DeadlineSocket:
    """A socket (plain or TLS) whose every send and receive ends by ``deadline``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self.deadline = deadline
        self.bytes_received = 0  # since the last request began: 0 means nothing was read
        self._io_refs = 0
        self._closed = False

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self._sock.settimeout(remaining)

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


class _DeadlineMixin:
    """Connect, send and read all end by ``deadline``; headers and body go in one send.

    http.client sends the headers and the body in two writes; one write saves a packet
    and a wake-up on the server for every request.
    """

    deadline: float
    sock: Any
    timeout: Any
    _buffer: list[bytes]

    def set_deadline(self, deadline: float) -> None:
        """Bound the next exchange on this (possibly reused) connection."""
        self.deadline = deadline
        if isinstance(self.sock, _DeadlineSocket):
            self.sock.deadline = deadline
            self.sock.bytes_received = 0

    def _wrap_socket(self) -> None:
        self.sock = _DeadlineSocket(self.sock, self.deadline)

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            message = b"\r\n".join(self._buffer) + message_body
            del self._buffer[:]
            self.send(message)  # type: ignore[attr-defined]
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class DeadlineHTTPConnection(_DeadlineMixin, http.client.HTTPConnection):
    """An HTTPConnection bounded by one deadline for connect, send and read."""

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = max(self.deadline - time.monotonic(), 0.001)
        super().connect()
        self._wrap_socket()


class DeadlineHTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):
    """The TLS twin of DeadlineHTTPConnection; verification comes from the given context."""

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = max(self.deadline - time.monotonic(), 0.001)
        super().connect()
        self._wrap_socket()


def read_body(response: http.client.HTTPResponse, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """Read the whole body, at most ``limit`` bytes; raise if it is longer or cut short."""
    declared = response.length
    if declared is not None and declared > limit:
        raise ResponseTooLarge(f"response declares {declared} bytes, over the {limit}-byte cap")
    chunks = []
    total = 0
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise ResponseTooLarge(f"response body exceeds the {limit}-byte cap")
        chunks.append(chunk)
    if response.length:
        # http.client returns short reads silently when Content-Length is not met.
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    return b"".join(chunks)


class ResponseTooLarge(Exception):
    """The response body was larger than the cap; raised so the transport can report it."""


def location(response: http.client.HTTPResponse) -> str | None:
    """The Location header of a redirect, if any."""
    return response.getheader("Location")
