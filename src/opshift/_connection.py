"""One persistent HTTP/1.1 connection for KeepAliveTransport, without http.client.

OpShift's exchanges are small and uniform (one POST, one JSON answer), so this writes the
request in a single send and parses the status line and headers directly. http.client
sends headers and body in two writes and parses headers with the email package; skipping
both is what lets KeepAliveTransport match or beat raw http.client.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from ._deadline import DeadlineSocket, ResponseTooLarge

if TYPE_CHECKING:
    import io
    import ssl
    from collections.abc import Mapping

_MAX_LINE = 65536
_MAX_HEADERS = 100
_NO_BODY = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's answer is not valid HTTP/1.1 (malformed, or cut short)."""


class Disconnected(ConnectionResetError):
    """The server closed the connection before sending a single byte of the answer."""


class Response:
    """What came back: status, the headers we need, the body, and whether to close."""

    __slots__ = ("body", "location", "status", "will_close")

    def __init__(self, status: int, location: str | None, body: bytes, will_close: bool) -> None:
        self.status = status
        self.location = location
        self.body = body
        self.will_close = will_close


class Connection:
    """A connection to ``host:port`` (through ``proxy`` if given), TLS when ``context``.

    Args:
        proxy: ``(proxy_host, proxy_port, proxy_authorization)``; for TLS it is tunnelled
            with CONNECT, for plain HTTP the request line carries the absolute URL.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None,
        proxy: tuple[str, int, str] | None,
        deadline: float,
    ) -> None:
        self.host = host
        self.port = port
        self.reused = False
        self.idle_since = 0.0
        authority = f"[{host}]" if ":" in host else host
        default_port = 443 if context is not None else 80
        self._host_header = authority if port == default_port else f"{authority}:{port}"
        target = (proxy[0], proxy[1]) if proxy is not None else (host, port)
        remaining = max(deadline - time.monotonic(), 0.001)
        raw = socket.create_connection(target, timeout=remaining)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None and context is not None:
                _tunnel(raw, self._host_header, proxy[2], deadline)
            if context is not None:
                raw.settimeout(max(deadline - time.monotonic(), 0.001))
                raw = context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self.sock = DeadlineSocket(raw, deadline)
        self._reader: io.BufferedReader = self.sock.makefile("rb")

    def exchange(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        deadline: float,
        limit: int,
    ) -> Response:
        """Send one request (headers and body in one write) and read its whole answer."""
        self.sock.reset(deadline)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        lines.append(f"Content-Length: {len(body)}")
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        self.sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        return self._read_response(method, limit)

    def _read_response(self, method: str, limit: int) -> Response:
        reader = self._reader
        while True:
            line = reader.readline(_MAX_LINE + 1)
            if not line:
                raise Disconnected("the server closed the connection without answering")
            version, status, _ = _status_line(line)
            fields = _headers(reader)
            if not 100 <= status <= 199:
                break  # skip interim 1xx answers
        connection = fields.get("connection", "").lower()
        will_close = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        if method == "HEAD" or status in _NO_BODY:
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = _read_chunked(reader, limit)
        elif "content-length" in fields:
            body = _read_exactly(reader, _content_length(fields["content-length"]), limit)
        else:
            body = _read_to_close(reader, limit)
            will_close = True
        return Response(status, fields.get("location"), body, will_close)

    def close(self) -> None:
        self._reader.close()
        self.sock.close()


def _tunnel(raw: socket.socket, authority: str, authorization: str, deadline: float) -> None:
    """Open a CONNECT tunnel through an HTTP proxy; raise unless it answers 2xx."""
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if authorization:
        request += f"Proxy-Authorization: {authorization}\r\n"
    sock = DeadlineSocket(raw, deadline)
    sock.sendall((request + "\r\n").encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:  # byte-wise: nothing past the headers may be consumed
        chunk = sock.recv(1)
        if not chunk or len(answer) > _MAX_LINE:
            raise ProtocolError("the proxy closed the connection during CONNECT")
        answer += chunk
    status = _status_line(answer.split(b"\r\n", 1)[0] + b"\r\n")[1]
    if not 200 <= status <= 299:
        raise ProtocolError(f"the proxy refused the CONNECT tunnel with status {status}")


def _status_line(line: bytes) -> tuple[str, int, str]:
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise ProtocolError("malformed status line (too long or cut short)")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {line[:40]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


def _headers(reader: io.BufferedReader) -> dict[str, str]:
    fields: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return fields
        if not line.endswith(b"\n") or len(line) > _MAX_LINE:
            raise ProtocolError("malformed or truncated headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ProtocolError(f"malformed header line {line[:40]!r}")
        key = name.strip().lower()
        value = value.strip()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    raise ProtocolError(f"more than {_MAX_HEADERS} headers")


def _content_length(value: str) -> int:
    if not value.isdigit():
        raise ProtocolError(f"malformed Content-Length {value[:20]!r}")
    return int(value)


def _read_exactly(reader: io.BufferedReader, length: int, limit: int) -> bytes:
    if length > limit:
        raise ResponseTooLarge(f"response declares {length} bytes, over the {limit}-byte cap")
    data = reader.read(length)
    if len(data) < length:
        raise ProtocolError(f"truncated body: got {len(data)} of {length} bytes")
    return data


def _read_chunked(reader: io.BufferedReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = reader.readline(_MAX_LINE + 1)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError("malformed or truncated chunked body") from None
        if size == 0:
            _headers(reader)  # trailers
            return b"".join(chunks)
        total += size
        if total > limit:
            raise ResponseTooLarge(f"response body exceeds the {limit}-byte cap")
        chunks.append(_read_exactly(reader, size, size))
        if reader.readline(3) not in (b"\r\n", b"\n"):
            raise ProtocolError("malformed or truncated chunked body")


def _read_to_close(reader: io.BufferedReader, limit: int) -> bytes:
    data = reader.read(limit + 1)  # loops until EOF or limit + 1 bytes
    if len(data) > limit:
        raise ResponseTooLarge(f"response body exceeds the {limit}-byte cap")
    return data
