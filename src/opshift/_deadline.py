"""A socket whose every send and receive ends by one deadline, within one byte budget.

A socket timeout bounds each blocking operation, so a server that drips one byte per
second never trips it. ``DeadlineSocket`` re-arms the timeout with the time left until
one deadline, so the whole exchange is bounded; it also caps how many bytes one exchange
may read, and counts what the reader it hands to http.client consumed, so bytes left
over after a response are seen. Shared by both transports.
"""

from __future__ import annotations

import io
import select
import socket
import time

from .transport import ResponseTooLarge

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

# All an exchange may read: status lines, headers, interim answers, chunk framing and the
# body (itself capped at 1 MiB by transport.read_body). A server cannot make us read more.
MAX_EXCHANGE_BYTES = 2 * 1024 * 1024
# A socket timeout set at time t ends a blocking call by deadline + (now - t); re-arming
# (two fcntl syscalls) only after this many seconds bounds the overshoot cheaply.
_REARM_AFTER = 0.02
_poll = getattr(select, "poll", None)  # absent on Windows, where select() has no fd limit


class CountingReader(io.BufferedReader):
    """A buffered reader that counts the bytes it hands out and notes a line cut short.

    http.client reads each response through a fresh ``makefile()`` and drops whatever the
    buffer read ahead; comparing ``consumed`` with the bytes the socket received shows it.
    """

    consumed = 0
    cut = False  # a readline() ended without LF: the peer closed mid-line (or a limit hit)

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data

    def read1(self, size: int = -1, /) -> bytes:
        data = super().read1(size)
        self.consumed += len(data)
        return data

    def readinto(self, buffer: Any, /) -> int:
        count = super().readinto(buffer)
        self.consumed += count
        return count

    def readinto1(self, buffer: Any, /) -> int:
        count = super().readinto1(buffer)
        self.consumed += count
        return count

    def readline(self, size: int | None = -1, /) -> bytes:
        line = super().readline(size)
        self.consumed += len(line)
        if line[-1:] != b"\n":
            self.cut = True
        return line


class DeadlineSocket:
    """A socket (plain or TLS) whose every send and receive ends by ``deadline``.

    Each exchange (see ``reset``) may read at most ``MAX_EXCHANGE_BYTES``.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.raw = sock
        self.deadline = deadline
        self.bytes_received = 0  # in this exchange: 0 means no byte of an answer arrived
        self._budget = MAX_EXCHANGE_BYTES
        self._reader: CountingReader | None = None
        self._armed_at = float("-inf")
        self._io_refs = 0
        self._closed = False

    def reset(self, deadline: float) -> None:
        """Start a new exchange on this connection, bounded by ``deadline``."""
        self.deadline = deadline
        self.bytes_received = 0
        self._budget = MAX_EXCHANGE_BYTES
        self._reader = None
        self._armed_at = float("-inf")

    def _arm(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            raise socket.timeout("timed out")
        if now - self._armed_at >= _REARM_AFTER:
            self.raw.settimeout(self.deadline - now)
            self._armed_at = now

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        budget = self._budget
        if budget <= 0:
            raise ResponseTooLarge(
                f"the response exceeds {MAX_EXCHANGE_BYTES} bytes with its headers and framing"
            )
        count = self.raw.recv_into(buffer, min(nbytes or len(buffer), budget), flags)
        self._budget = budget - count
        self.bytes_received += count
        return count

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self.raw.sendall(data, flags)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> CountingReader:
        """A buffered, counting reader whose reads go through the deadline (http.client: "rb")."""
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        self._io_refs += 1
        self._reader = CountingReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]
        return self._reader

    def leftover(self) -> int:
        """Bytes received in this exchange that the last reader did not hand out."""
        consumed = self._reader.consumed if self._reader is not None else 0
        return self.bytes_received - consumed

    def is_quiet(self) -> bool:
        """True if the idle socket is open with nothing waiting: no byte, no EOF, no TLS data.

        Readable while idle means the peer closed it or sent something nobody asked for.
        """
        if self._closed or self.raw.fileno() < 0:
            return False
        pending = getattr(self.raw, "pending", None)  # bytes OpenSSL decrypted but we did not read
        if pending is not None and pending():
            return False
        return not _readable_now(self.raw)

    def _decref_socketios(self) -> None:
        # Same contract as socket.socket: the real close waits for open makefile() readers.
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self.raw.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()


def _readable_now(sock: socket.socket) -> bool:
    """True if a read would not block (data, EOF or an error waits); any fd number."""
    if _poll is not None:
        poller = _poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, failed = select.select([sock], [], [sock], 0)  # pragma: no cover - no poll()
    return bool(readable or failed)  # pragma: no cover - Windows
