"""http.client's response, strict where its leniency could misframe an answer.

The standard library's parser is the one every Python HTTP stack trusts; ``Response``
(set as ``response_class`` on our connections, which urllib uses too) closes what it
leaves open, without a parser of our own: it reads past any number of 1xx interim
answers (stdlib skips only 100) and refuses 101; accepts a status code only as three
ASCII digits, a chunk size only as hex digits, a Content-Length only as ASCII digits
(never silently reading to close instead), and no Transfer-Encoding but ``chunked``;
and says whether the connection can carry another request (``reusable``).

It overrides private methods of ``http.client.HTTPResponse``; each override says which
CPython versions it was checked against, and tests/transport/test_stdlib_canary.py
fails on any supported Python where one is gone, renamed or called differently.
"""

from __future__ import annotations

import http.client
import io
import re

from ._base import ResponseTooLarge
from ._socket import peer_closed, unread

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

_MAX_LINE = 65536  # as http.client's own limit for a status, header or chunk-size line
_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9])[ \t]+([1-9][0-9][0-9])(?:[ \t]+([^\r\n]*))?\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")
_NO_BODY = (204, 304)

# The fields Response reads for framing and reuse.
_FRAMING_FIELDS = frozenset({"transfer-encoding", "connection", "content-length", "keep-alive"})
_MAX_INTERIM = 32  # 1xx answers read before the final one; more is a server gone wrong


class ProtocolError(http.client.HTTPException):
    """The answer is not valid HTTP/1.1, or is framed in a way the SDK refuses to guess at."""


def _keep_alive_timeout(fields: list[str]) -> float | None:
    """The server's ``Keep-Alive: timeout=N`` (how long it keeps an idle connection), if any."""
    for field in fields:
        for part in field.split(","):
            name, _, value = part.partition("=")
            value = value.strip()
            if name.strip().lower() == "timeout" and value.isascii() and value.isdigit():
                return float(value)
    return None


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
        # Overrides HTTPResponse._close_conn() (checked against CPython 3.9-3.13).
        # http.client closes the reader once the body is done; first note what it fetched
        # past the body (another answer, junk), which would otherwise vanish unseen.
        self._unread = unread(self._reader)
        super()._close_conn()  # type: ignore[misc]

    def begin(self, *args: Any, **kwargs: Any) -> None:  # newer Pythons pass limits
        # Public, but what it calls is checked: _read_status(), then parse_headers().
        super().begin(*args, **kwargs)
        if peer_closed(self._reader):  # the header section ended at EOF, not at a blank line
            raise ProtocolError("the response headers were cut short")
        _check_header_section(self.headers)
        self._check_framing()

    def _read_status(self) -> tuple[str, int, str]:
        """The first final status line: interim 1xx answers (and their headers) skipped.

        Overrides ``HTTPResponse._read_status() -> (version, status, reason)``, which
        ``begin()`` calls (checked against CPython 3.9-3.13).
        """
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
        # Overrides HTTPResponse._get_chunk_left(), which read() and read1() call, and
        # calls _read_next_chunk_size() and _read_and_discard_trailer() as it does
        # (checked against CPython 3.9-3.13).
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
        # Overrides HTTPResponse._read_next_chunk_size() (checked against CPython 3.9-3.13).
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("chunk size")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"malformed chunk size line {line[:20]!r}")
        return int(match[1], 16)

    def _read_and_discard_trailer(self) -> None:
        # Overrides HTTPResponse._read_and_discard_trailer() (checked against CPython 3.9-3.13).
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

    def read_tunnel_answer(self) -> tuple[int, str]:
        """Read a proxy's answer to CONNECT: ``(status, reason)``, headers read and dropped.

        Raises:
            ProtocolError: the answer was cut short, or (for a 2xx) the proxy sent bytes
                after it, before TLS began: they would be taken for the server's.
        """
        _, status, reason = self._read_status()
        http.client.parse_headers(self._reader)
        if peer_closed(self._reader):
            raise ProtocolError("the proxy's answer to CONNECT was cut short")
        if 200 <= status <= 299 and unread(self._reader):
            raise ProtocolError("the proxy sent data after its CONNECT answer, before TLS")
        return status, reason
