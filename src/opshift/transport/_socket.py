"""Sockets bounded by one deadline: connecting, the TLS handshake, every send and receive.

A socket timeout bounds each blocking operation, so a server that drips one byte per
second never trips it. ``DeadlineSocket`` re-arms the timeout with the time left until
one deadline, so the whole exchange is bounded; it also caps how many bytes one exchange
may read, and gives http.client a reader whose ``tell()`` works, so bytes left over
after a response (``unread``) are seen. ``open_socket`` and ``handshake`` give each
step of opening a connection only the time left; ``default_context`` is the system's
CAs, loaded once per process. Shared by both transports.
"""

from __future__ import annotations

import _thread
import io
import select
import socket
import ssl
import time

from ._base import ResponseTooLarge

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
_default_context: ssl.SSLContext | None = None
_default_context_lock = _thread.allocate_lock()  # threading would cost a cold start 0.6 ms


class _SocketIO(socket.SocketIO):
    """``socket.SocketIO`` whose position is the bytes the socket received in this exchange.

    With it, the ``io.BufferedReader`` over it knows its own position: ``tell()`` is the
    bytes it handed out, and ``unread()`` what it fetched but did not hand out.
    """

    _sock: DeadlineSocket  # set by socket.SocketIO.__init__ (checked against CPython 3.9-3.13)

    def tell(self) -> int:
        return self._sock.bytes_received

    @property
    def eof(self) -> bool:
        """True if a read in this exchange found the peer's side closed."""
        return self._sock.eof


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
    return reader.raw.eof  # type: ignore[attr-defined,no-any-return]  # a _SocketIO


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


def open_socket(host: str, port: int, deadline: float) -> socket.socket:
    """Connect to the first address of ``host`` that answers, each given only the time left.

    ``socket.create_connection`` gives every address the whole timeout. The lookup itself
    (getaddrinfo) cannot be interrupted and is not bounded by the deadline.
    """
    first_error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out while connecting")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            first_error = first_error or exc
            continue
        return sock
    if time.monotonic() >= deadline:  # the last attempt spent what was left
        raise socket.timeout("timed out while connecting")
    raise first_error or OSError(f"no address found for {host!r}")


def handshake(
    context: ssl.SSLContext, raw: socket.socket, server_hostname: str, deadline: float
) -> ssl.SSLSocket:
    """Wrap ``raw`` in TLS, the handshake bounded by the time left however it is paced.

    CPython's handshake takes the socket timeout as one deadline for the whole handshake,
    not per read (``_ssl.c``), so the time left is all it needs.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out before the TLS handshake")
    raw.settimeout(remaining)
    return context.wrap_socket(raw, server_hostname=server_hostname)


def default_context() -> ssl.SSLContext:
    """The system's CAs as one ``ssl.create_default_context()``, built on first use per process.

    Shared by every transport given no ``ssl_context``: loading the CA bundle costs tens of
    milliseconds, which a cron job pays once, and only for https.
    """
    global _default_context
    context = _default_context
    if context is None:
        with _default_context_lock:
            if _default_context is None:
                _default_context = ssl.create_default_context()
            context = _default_context
    return context
