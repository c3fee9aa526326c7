"""What every transport shares, at the bottom of the wire: the leaf nothing else imports into.

The ``Transport`` protocol; the wire's own exceptions (``ResponseTooLarge``,
``ProxyRefused``), which ``_errors.translate_exception`` maps to ``OpShiftError``;
``check_request`` (what may go on the wire); ``read_answer`` and ``read_body`` (how an
answer ends: never a redirect, never more than 1 MiB); ``check_ssl_context``.
Imports only ``opshift.errors`` and, lazily, ``json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ConfigurationError, redirect_error

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import http.client
    import ssl
    from typing import Protocol
else:
    # typing costs a cold start about 2 ms. At run time Transport is a plain class with the
    # same method: a protocol is only ever named in annotations, never instantiated.
    Protocol = object

__all__ = [
    "MAX_RESPONSE_BYTES",
    "ProxyRefused",
    "ResponseTooLarge",
    "Transport",
    "check_request",
    "check_ssl_context",
    "load_idna",
    "read_answer",
    "read_body",
]

MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024

# RFC 9110 5.6.2: a token is visible ASCII but for these delimiters.
_DELIMITERS = frozenset('"(),/:;<=>?@[\\]{} ')
_checked_names: dict[str, bool] = {}  # a valid header name -> is it a framing header
_FRAMING = frozenset({"transfer-encoding", "connection", "content-length"})
_ESCAPED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|20|7[Ff])")  # %00-%1F, space, DEL


class Transport(Protocol):
    """Send one POST and return ``(status_code, body_bytes)`` for any HTTP status."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]: ...


class ResponseTooLarge(Exception):
    """The response was larger than the cap; the transport reports it."""


class ProxyRefused(Exception):
    """A proxy answered a CONNECT with a non-2xx status, or a request it forwards with 407
    (or a 401 or 5xx page of its own, not OpShift's JSON).

    ``scheme`` is the URL's (``https`` for a CONNECT): which variable set the proxy is
    looked up from it. ``target`` is the CONNECT's ``host:port``, empty for a forwarded
    request; ``body`` is the proxy's page for a forwarded request.
    """

    def __init__(
        self, proxy: str, status: int, reason: str, scheme: str, target: str, body: bytes = b""
    ) -> None:
        super().__init__(f"{status} from the proxy {proxy}")
        self.proxy = proxy
        self.status = status
        self.reason = reason
        self.scheme = scheme
        self.target = target
        self.body = body


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
    if "%" in url and _ESCAPED_CONTROL.search(_authority(url)):
        # urllib un-escapes the host (for a proxy's CONNECT line too): %0D%0A would split it.
        raise ConfigurationError(
            f"The URL {url!r:.80} has an escaped space or control character in its host; "
            "nothing was sent. Check base_url."
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


def _authority(url: str) -> str:
    """The ``user@host:port`` part of ``scheme://authority/path``."""
    rest = url.partition("://")[2]
    for end in "/?#":
        rest = rest.partition(end)[0]
    return rest


def _is_field_char(char: str) -> bool:
    """RFC 9110 5.5: a field value holds visible ASCII, spaces, tabs and obs-text (Latin-1)."""
    return char == "\t" or " " <= char <= "~" or "\x80" <= char <= "\xff"


def read_answer(response: http.client.HTTPResponse, proxy: str | None) -> tuple[int, bytes]:
    """Finish an exchange the same way in every transport: refuse, or read the capped body.

    A 3xx is never followed (a redirected POST can become a GET and lose its body); a 407
    from the proxy named by ``proxy`` is about its credentials, not OpShift's answer, and a
    5xx page that is not OpShift's JSON names the proxy it came through.
    """
    status = response.status
    if 300 <= status <= 399:
        raise redirect_error(status, response.getheader("Location"))
    if status == 407 and proxy is not None:
        raise ProxyRefused(proxy, status, response.reason, "http", "")
    data = read_body(response)
    # OpShift's 401 and 5xx are JSON objects; a proxy asking for credentials with a 401
    # where RFC 9110 says 407 (tinyproxy does), or failing itself, answers HTML.
    if (status == 401 or 500 <= status <= 599) and proxy is not None and not _is_json_object(data):
        raise ProxyRefused(proxy, status, response.reason, "http", "", data)
    return status, data


def _is_json_object(data: bytes) -> bool:
    import json

    try:
        return isinstance(json.loads(data), dict)
    except ValueError:  # UnicodeDecodeError included
        return False


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


def check_ssl_context(context: object) -> ssl.SSLContext | None:
    """Return ``context`` if it can wrap sockets (an ``ssl.SSLContext``) or is None, else raise.

    Checked without importing ssl, so building a transport stays cheap.
    """
    if context is None or callable(getattr(context, "wrap_socket", None)):
        return context  # type: ignore[return-value]
    raise ConfigurationError(
        f"ssl_context must be an ssl.SSLContext, or None for the system's CAs "
        f"(got {type(context).__name__})."
    )


def load_idna() -> None:
    """Load the idna codec now: every connection's getaddrinfo() encodes the host name with
    it, and its first use imports unicodedata and stringprep (8 ms on Python 3.9)."""
    "opshift".encode("idna")
