"""http.client plumbing for UrllibTransport: deadline-bound connections and a capped read.

Imported on first use only, so ``import opshift`` stays cheap.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

from ._deadline import MAX_RESPONSE_BYTES, DeadlineSocket, ResponseTooLarge

_CHUNK = 64 * 1024


class _DeadlineMixin:
    """Connect, send and read all end by ``deadline``; headers and body go in one send.

    http.client sends the headers and the body in two writes; one write saves a packet
    and a wake-up on the server for every request.
    """

    sock: Any
    timeout: Any
    _buffer: list[bytes]

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = max(self.deadline - time.monotonic(), 0.001)
        super().connect()  # type: ignore[misc]
        self.sock = DeadlineSocket(self.sock, self.deadline)

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


class DeadlineHTTPSConnection(_DeadlineMixin, http.client.HTTPSConnection):
    """The TLS twin of DeadlineHTTPConnection; verification comes from the given context."""


def read_body(response: http.client.HTTPResponse, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """Read the whole body, at most ``limit`` bytes; raise if it is longer or cut short."""
    # With Content-Length, read() fetches exactly that and raises if the body is cut short.
    declared = response.length
    if declared is not None:
        if declared > limit:
            raise ResponseTooLarge(f"response declares {declared} bytes, over the {limit}-byte cap")
        return response.read()  # raises IncompleteRead when cut short
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
    return b"".join(chunks)


def location(response: http.client.HTTPResponse) -> str | None:
    """The Location header of a redirect, if any."""
    return response.getheader("Location")
