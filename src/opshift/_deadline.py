"""A socket whose every send and receive ends by one deadline, within one byte budget.

A socket timeout bounds each blocking operation, so a server that drips one byte per
second never trips it. ``DeadlineSocket`` re-arms the timeout with the time left until
one deadline, so the whole exchange is bounded; it also caps how many bytes one exchange
may read, and gives http.client a reader whose ``tell()`` works, so bytes left over
after a response (``unread``) are seen. Shared by both transports.
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
# A blocking call may end this much after the deadline: the socket timeout is re-armed
# (a syscall) when the one set would end a call sooner than the deadline, or later by more.
_SLACK = 0.02
_poll = getattr(select, "poll", None)  # absent on Windows, where select() has no fd limit


class _SocketIO(socket.SocketIO):
    """``socket.SocketIO`` whose position is the bytes the socket received in this exchange.

    With it, the ``io.BufferedReader`` over it knows its own position: ``tell()`` is the
    bytes it handed out, and ``unread()`` what it fetched but did not hand out.
    """

    _sock: DeadlineSocket

    def tell(self) -> int:
        return self._sock.bytes_received


def unread(reader: io.BufferedReader) -> int:
    """Bytes a ``DeadlineSocket.makefile()`` reader fetched but has not handed out.

    Read it before the reader is closed: after the end of a response, these bytes are
    whatever the server sent after it (another answer, junk), which must not be lost
    or taken for the next answer.
    """
    return reader.raw.tell() - reader.tell()


def peer_closed(reader: io.BufferedReader) -> bool:
    """True if a read through ``reader`` found the peer's side closed (EOF) in this exchange.

    http.client takes EOF for the end of a header section; this tells the two apart.
    """
    return reader.raw._sock.eof  # type: ignore[attr-defined,no-any-return]


class DeadlineSocket:
    """A socket (plain or TLS) whose every send and receive ends by ``deadline``.

    Each exchange (see ``reset``) may read at most ``MAX_EXCHANGE_BYTES``.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.raw = sock
        self.deadline = deadline
        self.bytes_received = 0  # in this exchange: 0 means no byte of an answer arrived
        self.eof = False  # the peer closed its side: a read in this exchange returned nothing
        self._budget = MAX_EXCHANGE_BYTES
        timeout = sock.gettimeout()
        self._timeout = float("inf") if timeout is None else timeout  # as set on the socket
        self._io_refs = 0
        self._closed = False
        self._poller: Any = None  # select.poll() watching this socket, made on first is_quiet()

    def reset(self, deadline: float) -> None:
        """Start a new exchange on this connection, bounded by ``deadline``."""
        self.deadline = deadline
        self.bytes_received = 0
        self.eof = False
        self._budget = MAX_EXCHANGE_BYTES

    def _arm(self) -> None:
        """Make the next blocking call end by the deadline (within ``_SLACK``), or raise."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        # Both ways: a pooled connection keeps the timeout its last call left, which may
        # be far shorter (or longer) than what this call has left.
        if not remaining <= self._timeout <= remaining + _SLACK:
            self.raw.settimeout(remaining)
            self._timeout = remaining

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
        if not count:
            self.eof = True
        return count

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        self.raw.sendall(data, flags)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        """A buffered reader whose reads go through the deadline (http.client asks for "rb").

        Its ``tell()`` works (see ``unread``): make one per exchange, as http.client does.
        """
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        self._io_refs += 1
        return io.BufferedReader(_SocketIO(self, "rb"))  # type: ignore[arg-type]

    def is_quiet(self) -> bool:
        """True if the idle socket is open with nothing waiting: no byte, no EOF, no TLS data.

        Readable while idle means the peer closed it or sent something nobody asked for.
        """
        if self._closed or self.raw.fileno() < 0:
            return False
        pending = getattr(self.raw, "pending", None)  # bytes OpenSSL decrypted but we did not read
        if pending is not None and pending():
            return False
        if _poll is None:  # pragma: no cover - Windows, where select() has no fd limit
            readable, _, failed = select.select([self.raw], [], [self.raw], 0)
            return not (readable or failed)
        poller = self._poller
        if poller is None:  # poll() works for any descriptor number; select() fails past 1023
            poller = self._poller = _poll()
            poller.register(self.raw, select.POLLIN)
        return not poller.poll(0)

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
