"""http.client connections bounded by one deadline, answering with the strict ``Response``.

Connecting (each resolved address gets only the time left), the CONNECT exchange with a
proxy, the TLS handshake, sending and reading all end by one deadline; a request goes
out in one write. Used by both transports (urllib's handlers open these too).

``post`` and ``_send_output`` use private members of ``http.client.HTTPConnection``
(``_output``, ``_buffer``, ``_send_output``, the ``_tunnel_*`` fields); each use says
which CPython versions it was checked against, and
tests/transport/test_stdlib_canary.py fails where one is gone or changed.
"""

from __future__ import annotations

import http.client
import ssl
import sys
from collections.abc import Mapping

from ..errors import ConfigurationError
from ._base import ProxyRefused
from ._response import Response
from ._socket import DeadlineSocket, handshake, open_socket

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HTTPConnection", "HTTPSConnection"]


class HTTPConnection(http.client.HTTPConnection):
    """An http.client connection bounded by one deadline, with our strict response class."""

    response_class = Response
    sock: DeadlineSocket | None
    _context: ssl.SSLContext | None = None  # set for TLS
    # http.client's, set by set_tunnel() (checked against CPython 3.9-3.13).
    _tunnel_host: str | None
    _tunnel_port: int
    _tunnel_headers: dict[str, str]

    def __init__(
        self, host: str, port: int | None = None, *, deadline: float, **kwargs: Any
    ) -> None:
        super().__init__(host, port, **kwargs)
        self.deadline = deadline
        self.idle_until = 0.0  # monotonic time after which the idle connection is not reused

    @property
    def address(self) -> str:
        """``host:port`` of the server (or proxy) this connection talks to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def renew(self, deadline: float) -> None:
        """Start another exchange on this open connection, bounded by ``deadline``."""
        self.deadline = deadline
        if self.sock is not None:  # always, for a pooled connection
            self.sock.reset(deadline)

    def reusable(self, response: http.client.HTTPResponse | None) -> bool:
        """True if another request may follow ``response`` on this connection."""
        return isinstance(response, Response) and response.reusable and self.sock is not None

    def connect(self) -> None:
        """Connect, tunnel through a proxy and shake hands for TLS, all by the deadline."""
        sys.audit("http.client.connect", self, self.host, self.port)
        raw = open_socket(self.host, self.port, self.deadline)
        try:
            sock = DeadlineSocket(raw, self.deadline)
            if self._tunnel_host:
                self._open_tunnel(sock, self._tunnel_host)
            if self._context is not None:
                server_hostname = self._tunnel_host or self.host
                tls = handshake(self._context, raw, server_hostname, self.deadline)
                sock = DeadlineSocket(tls, self.deadline)
        except BaseException:
            raw.close()
            raise
        self.sock = sock

    def _open_tunnel(self, sock: DeadlineSocket, host: str) -> None:
        """CONNECT host:port HTTP/1.1 through the proxy, bounded by the deadline like the rest.

        The port is always given (RFC 9110 9.3.6), 443 included; a 407 or any other non-2xx
        answer raises ``ProxyRefused`` naming the proxy, once, never retried here.
        """
        port = self._tunnel_port
        try:
            name = host.encode("ascii")
        except UnicodeEncodeError:
            name = host.encode("idna")
        authority = b"[%s]:%d" % (name, port) if b":" in name else b"%s:%d" % (name, port)
        lines = [b"CONNECT %s HTTP/1.1" % authority, b"Host: %s" % authority]
        for key, value in self._tunnel_headers.items():
            if key.lower() != "host":  # Python 3.12+ adds its own Host to the tunnel headers
                lines.append(f"{key}: {value}".encode("latin-1"))
        # Nothing the caller gave may split the CONNECT request: every byte of it visible
        # ASCII or a space inside a line (the host was un-escaped by urllib on the way).
        if any(not 0x20 <= byte < 0x7F for line in lines for byte in line) or b" " in name:
            raise ConfigurationError(
                "The proxy's CONNECT request would hold a control character (from the URL's "
                "host or the proxy settings); nothing was sent."
            )
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = Response(sock, method="CONNECT")  # type: ignore[arg-type]
        try:
            status, reason = answer.read_tunnel_answer()
        finally:
            answer.close()
        if not 200 <= status <= 299:
            raise ProxyRefused(self.address, status, reason, "https", authority.decode())

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, Any] = {},
        *,
        encode_chunked: bool = False,
    ) -> None:
        """As http.client's, but a POST of bytes (urllib's ``do_open`` sends each call of
        ``UrllibTransport`` this way) goes through ``post``.

        urllib hands on the headers ``check_request`` vetted (names title-cased), and its
        own, all text: Host from the vetted URL, Content-Length, Connection, a proxy's
        credentials in base64. ``post`` refuses any line break or NUL in them, as
        ``putheader`` would, without its two regexes per header, which cost a tenth of
        the call's instructions (``benchmarks/transport_overhead.py --count``).
        """
        if method == "POST" and isinstance(body, bytes) and not encode_chunked:
            self.post(url, headers, body)
        else:
            super().request(method, url, body, headers, encode_chunked=encode_chunked)

    def post(self, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Send a POST whose URL and headers ``check_request`` vetted, as ``request()`` would.

        http.client's ``putheader`` re-checks each header with two regexes; check_request
        is stricter, so the header lines are joined in one go instead. What it let through
        (a value folded over lines with CRLF and a space) is refused here, whatever the
        headers' source: one count per character kind over the joined lines.

        Raises:
            ValueError: a header name or value holds a CR, LF or NUL (as ``putheader``).
        """
        names = set(map(str.lower, headers))  # map and join: no Python-level loop per header
        self.putrequest(
            "POST",
            target,
            skip_host="host" in names,
            skip_accept_encoding="accept-encoding" in names,
        )
        lines = list(map(": ".join, headers.items()))  # every name and value is a str
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        block = "\r\n".join(lines)
        breaks = len(lines) - 1
        if block.count("\n") != breaks or block.count("\r") != breaks or "\0" in block:
            raise ValueError("a header name or value holds a line break or NUL; nothing was sent")
        # HTTPConnection._output(bytes) appends a line to the buffer endheaders() sends
        # (checked against CPython 3.9-3.13).
        self._output(block.encode("latin-1"))  # type: ignore[attr-defined]
        self.endheaders(body)

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        # http.client writes headers and body separately; one write saves a packet and a
        # wake-up on the server for every request. Overrides
        # HTTPConnection._send_output(message_body=None, encode_chunked=False), called by
        # endheaders(), and reads its line buffer _buffer (checked against CPython 3.9-3.13).
        if isinstance(message_body, bytes) and not encode_chunked:
            buffer: list[bytes] = self._buffer  # type: ignore[attr-defined]
            buffer.extend((b"", b""))
            message = b"\r\n".join(buffer) + message_body
            del buffer[:]
            self.send(message)
            return
        super()._send_output(message_body, encode_chunked)  # type: ignore[misc]


class HTTPSConnection(HTTPConnection):
    """The TLS twin of ``HTTPConnection``: verification comes from the given context."""

    default_port = http.client.HTTPS_PORT

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        deadline: float,
        context: ssl.SSLContext,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, deadline=deadline, **kwargs)
        self._context = context
