"""http.client with its gaps fixed, for both transports: one response class, two connections.

The standard library's parser is the one every Python HTTP stack trusts; these small
subclasses (set as ``response_class`` on our connections, which urllib uses too) close
what it leaves open, without a parser of our own:

- ``Response`` reads past any number of 1xx interim answers (stdlib skips only 100) and
  refuses 101; accepts a status code only as three ASCII digits, a chunk size only as hex
  digits, a Content-Length only as ASCII digits (never silently reading to close
  instead), and no Transfer-Encoding but ``chunked``; and says whether the connection can
  carry another request (``reusable``).
- ``HTTPConnection`` / ``HTTPSConnection`` bound everything by one deadline: connecting
  (each resolved address gets only the time left), the CONNECT exchange with a proxy,
  the TLS handshake, sending and reading. They send a request in one write.

Imported on first use only, so constructing a client stays cheap.
"""

from __future__ import annotations

import _thread
import http.client
import io
import re
import socket
import ssl
import sys
import time
from collections.abc import Mapping

from ._deadline import DeadlineSocket, peer_closed, unread
from .errors import ConfigurationError
from .transport import ProxyRefused, ResponseTooLarge

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

_MAX_LINE = 65536  # as http.client's own limit for a status, header or chunk-size line
_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9])[ \t]+([1-9][0-9][0-9])(?:[ \t]+([^\r\n]*))?\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")
_NO_BODY = (204, 304)

# RFC 9110 5.6.2: a token is visible ASCII but for these delimiters.
_DELIMITERS = frozenset('"(),/:;<=>?@[\\]{} ')
_checked_names: dict[str, bool] = {}  # a valid header name -> is it a framing header
_FRAMING = frozenset({"transfer-encoding", "connection", "content-length"})
_FRAMING_FIELDS = _FRAMING | {"keep-alive"}  # the fields Response reads for framing and reuse
_MAX_INTERIM = 32  # 1xx answers read before the final one; more is a server gone wrong

_default_context: ssl.SSLContext | None = None
_default_context_lock = _thread.allocate_lock()  # threading would cost a cold start 0.6 ms


class ProtocolError(http.client.HTTPException):
    """The answer is not valid HTTP/1.1, or is framed in a way the SDK refuses to guess at."""


def check_request(url: str, headers: Mapping[str, str], body: bytes) -> None:
    """Refuse a URL or header that would put a control character on the wire, or framing
    headers that would contradict the body; nothing is sent.

    http.client refuses most, but lets NUL and CRLF-plus-space folding through in values.
    The target must be printable without spaces, a header name an RFC 9110 token, a value
    visible Latin-1 text with spaces and tabs. The transports frame the body themselves:
    a caller's ``Transfer-Encoding`` or ``Connection`` is refused, and a ``Content-Length``
    other than the body's length.

    Raises:
        ConfigurationError: naming the header (never its value, which may be a signature).
    """
    # str.isprintable() is False for every control character, DEL and C1 included.
    if not isinstance(url, str) or not url.isprintable() or " " in url:
        raise ConfigurationError(
            f"The URL {url!r:.80} contains a space or a control character; nothing was sent."
        )
    for name, value in headers.items():
        framing = _checked_names.get(name)
        if framing is None:
            if not (
                isinstance(name, str)
                and name.isascii()
                and name.isprintable()
                and _DELIMITERS.isdisjoint(name)
                and name
            ):
                raise ConfigurationError(
                    f"The header name {name!r:.40} is not an HTTP token (no spaces, colons or "
                    "control characters); nothing was sent."
                )
            framing = name.lower() in _FRAMING
            if len(_checked_names) < 256:
                _checked_names[name] = framing
        if not isinstance(value, str) or not (
            (value.isascii() and value.isprintable()) or all(map(_is_field_char, value))
        ):
            raise ConfigurationError(
                f"The value of header {name!r} is not a string of visible Latin-1 text (NUL, "
                "CR, LF and other control characters are refused); nothing was sent."
            )
        if framing and (name.lower() != "content-length" or value.strip() != str(len(body))):
            raise ConfigurationError(
                f"The header {name!r} would contradict how the transport frames the body "
                "(it sends Content-Length itself); leave it out. Nothing was sent."
            )


def _is_field_char(char: str) -> bool:
    """RFC 9110 5.5: a field value holds visible ASCII, spaces, tabs and obs-text (Latin-1)."""
    return char == "\t" or " " <= char <= "~" or "\x80" <= char <= "\xff"


def _keep_alive_timeout(fields: list[str]) -> float | None:
    """The server's ``Keep-Alive: timeout=N`` (how long it keeps an idle connection), if any."""
    for field in fields:
        for part in field.split(","):
            name, _, value = part.partition("=")
            value = value.strip()
            if name.strip().lower() == "timeout" and value.isascii() and value.isdigit():
                return float(value)
    return None


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


def proxy_name(hostport: str, default_port: int) -> str:
    """``host:port`` of a proxy as urllib keeps it: ``host``, ``host:port`` or ``[v6]:port``."""
    hostport = hostport.rstrip(":")  # "proxy:" means the default port, as in http.client
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        host, port = hostport, str(default_port)
    return f"{host}:{port}"


def _check_header_section(headers: http.client.HTTPMessage) -> None:
    """Refuse a header section the email parser could not read to its end.

    On a line it cannot parse (no colon, a space before the colon, a lone CR), the parser
    stops and takes the rest as a body: every header after it, Content-Length and
    Transfer-Encoding included, would be silently lost and the body misframed.
    """
    # _payload is what get_payload() returns, read directly: get_payload() looks up a
    # header and costs more than the rest of this check.
    if headers.defects or headers._payload:  # type: ignore[attr-defined]
        raise ProtocolError("a malformed header line hides the rest of the response headers")


class Response(http.client.HTTPResponse):
    """http.client's response, strict where its leniency could misframe an answer."""

    fp: io.BufferedReader | None  # type: ignore[assignment]  # DeadlineSocket.makefile()'s
    _ambiguous = False  # Transfer-Encoding with Content-Length, or framing on HTTP/1.0
    _trailer_cut = False  # the trailer ended at EOF or went on too long: answered, never reused
    keep_alive: float | None = None  # the server's Keep-Alive timeout, in seconds, if it gave one
    _unread = -1  # bytes the reader had fetched past the answer when it was closed

    @property
    def reusable(self) -> bool:
        """True once the body was read to its end, framed unambiguously, keep-alive allowed,
        and nothing came after it."""
        return (
            self.fp is None
            and self._unread == 0
            and not self.will_close
            and self.version == 11
            and not self._ambiguous
            and not self._trailer_cut
        )

    @property
    def _reader(self) -> io.BufferedReader:
        return self.fp  # type: ignore[return-value]  # None only once the body was read

    def _close_conn(self) -> None:
        # http.client closes the reader once the body is done; first note what it fetched
        # past the body (another answer, junk), which would otherwise vanish unseen.
        self._unread = unread(self._reader)
        super()._close_conn()  # type: ignore[misc]

    def begin(self, *args: Any, **kwargs: Any) -> None:  # newer Pythons pass limits
        super().begin(*args, **kwargs)
        if peer_closed(self._reader):  # the header section ended at EOF, not at a blank line
            raise ProtocolError("the response headers were cut short")
        _check_header_section(self.headers)
        self._check_framing()

    def _read_status(self) -> tuple[str, int, str]:
        """The first final status line: interim 1xx answers (and their headers) skipped."""
        fp = self._reader
        for _ in range(_MAX_INTERIM + 1):
            line = fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("status line")
            if not line:
                raise http.client.RemoteDisconnected(
                    "Remote end closed connection without response"
                )
            match = _STATUS_LINE.fullmatch(line)
            if match is None:
                raise ProtocolError(f"malformed status line {line[:40]!r}")
            status = int(match[2])
            if status == 101:
                raise ProtocolError("101 Switching Protocols, which the SDK never asks for")
            if status >= 200:
                return match[1].decode(), status, (match[3] or b"").decode("iso-8859-1")
            # RFC 9110: a client reads past every 1xx. One cut short by EOF needs no check
            # here: the next status line finds the connection closed.
            _check_header_section(http.client.parse_headers(fp))
        raise ProtocolError(f"more than {_MAX_INTERIM} interim (1xx) answers")

    def _check_framing(self) -> None:
        """Refuse framing headers stdlib would misread or silently replace by read-to-close."""
        fields: dict[str, list[str]] = {}
        for name, value in self.headers.raw_items():  # one pass; get_all() is one per name
            lower = name.lower()
            if lower in _FRAMING_FIELDS:
                fields.setdefault(lower, []).append(value)
        codings = fields.get("transfer-encoding")
        lengths = fields.get("content-length")
        if codings is not None:
            tokens = [t.strip().lower() for value in codings for t in value.split(",")]
            if [t for t in tokens if t] != ["chunked"]:
                raise ProtocolError(
                    f"Transfer-Encoding {', '.join(codings)!r:.60} is not just chunked; "
                    "the SDK asks for no codings"
                )
            self.chunked, self.chunk_left, self.length = True, None, None
            # RFC 9112 6.1 and 6.3: read as chunked, then close the connection.
            self._ambiguous = lengths is not None or self.version != 11
        elif lengths is not None:
            value = lengths[0].strip()
            if len(lengths) > 1 or "," in value:  # a list (RFC 9110 8.6): all must be equal
                values = {v.strip() for field in lengths for v in field.split(",")}
                value = values.pop() if len(values) == 1 else ""
            if not (value.isascii() and value.isdigit()):
                raise ProtocolError(f"malformed Content-Length {', '.join(lengths)!r:.60}")
            if len(value.lstrip("0")) > 18:  # int() may refuse so many digits, and it is absurd
                raise ResponseTooLarge(f"response declares a {len(value)}-digit Content-Length")
            self.length = int(value)
        if self.status in _NO_BODY:
            # A 204 or 304 has no body; one that announces a body may still send it, late.
            self._ambiguous = self._ambiguous or codings is not None or bool(self.length)
            self.chunked, self.length = False, 0
        if not self.chunked and self.length is None:
            self.will_close = True  # delimited by the close: nothing can follow it
        for field in fields.get("connection", ()):  # stdlib reads the first only
            if "close" in (token.strip().lower() for token in field.split(",")):
                self.will_close = True
        if "keep-alive" in fields:
            self.keep_alive = _keep_alive_timeout(fields["keep-alive"])

    def _get_chunk_left(self) -> int | None:
        # As http.client's, but the CRLF after each chunk's data is checked, not skipped.
        chunk_left = self.chunk_left
        if not chunk_left:
            if chunk_left is not None and self._reader.readline(3) not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk's data is not followed by CRLF")
            chunk_left = self._read_next_chunk_size()
            if chunk_left == 0:
                self._read_and_discard_trailer()
                self._close_conn()
                self.chunk_left = None
                return None
            self.chunk_left = chunk_left
        return chunk_left

    def _read_next_chunk_size(self) -> int:
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("chunk size")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"malformed chunk size line {line[:20]!r}")
        return int(match[1], 16)

    def _read_and_discard_trailer(self) -> None:
        fp = self._reader
        for _ in range(_MAX_INTERIM + 1):
            line = fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("trailer line")
            if line in (b"\r\n", b"\n"):
                return
            if not line.endswith(b"\n"):
                self._trailer_cut = True  # "0\r\n" then EOF: complete, but never reused
                return
        self._trailer_cut = True  # more trailer lines than we read: the rest may yet come


class HTTPConnection(http.client.HTTPConnection):
    """An http.client connection bounded by one deadline, with our strict response class."""

    response_class = Response
    sock: DeadlineSocket | None
    _context: ssl.SSLContext | None = None  # set for TLS
    _tunnel_host: str | None  # http.client's, set by set_tunnel()
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
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = Response(sock, method="CONNECT")  # type: ignore[arg-type]
        try:
            _, status, reason = answer._read_status()
            http.client.parse_headers(answer._reader)
            if peer_closed(answer._reader):
                raise ProtocolError("the proxy's answer to CONNECT was cut short")
            if 200 <= status <= 299 and unread(answer._reader):
                raise ProtocolError("the proxy sent data after its CONNECT answer, before TLS")
        finally:
            answer.close()
        if not 200 <= status <= 299:
            raise ProxyRefused(self.address, status, reason, "HTTPS_PROXY", authority.decode())

    def post(self, target: str, headers: Mapping[str, str], body: bytes) -> None:
        """Send a POST whose URL and headers ``check_request`` vetted, as ``request()`` would.

        http.client's ``putheader`` re-checks each header with two regexes; check_request
        is stricter, so the header lines are joined in one go instead.
        """
        names = {name.lower() for name in headers}
        self.putrequest(
            "POST",
            target,
            skip_host="host" in names,
            skip_accept_encoding="accept-encoding" in names,
        )
        lines = [f"{name}: {value}" for name, value in headers.items()]
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        self._output("\r\n".join(lines).encode("latin-1"))  # type: ignore[attr-defined]
        self.endheaders(body)

    def _send_output(self, message_body: object = None, encode_chunked: bool = False) -> None:
        # http.client writes headers and body separately; one write saves a packet and a
        # wake-up on the server for every request.
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
