"""The transport seam, and what every transport shares: how an answer ends, how errors map.

A transport is any callable ``(url, body, headers, timeout) -> (status_code, body_bytes)``.
It returns every HTTP status (4xx and 5xx included) and raises for network failures; the
client turns both into ``OpShiftError``. ``timeout`` is the seconds left for the whole
exchange, not for each socket operation.

The SDK's two transports live in their own modules: ``UrllibTransport`` (the default, one
connection per call) and ``KeepAliveTransport`` (pooled connections); both are importable
from here and from ``opshift``. Both send through the http.client subclasses in
``opshift._http`` and read through ``read_answer`` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import (
    ConfigurationError,
    NetworkError,
    OpShiftError,
    ProxyAuthenticationError,
    RequestTimeoutError,
    redirect_error,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import http.client
    import ssl
    from typing import Any, Protocol

    from ._keepalive_transport import KeepAliveTransport
    from ._urllib_transport import UrllibTransport
else:
    # typing costs a cold start about 2 ms. At run time Transport is a plain class with the
    # same method: a protocol is only ever named in annotations, never instantiated.
    Protocol = object

__all__ = ["KeepAliveTransport", "Transport", "UrllibTransport", "translate_exception"]

MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class Transport(Protocol):
    """Send one POST and return ``(status_code, body_bytes)`` for any HTTP status."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]: ...


class ResponseTooLarge(Exception):
    """The response was larger than the cap; the transport reports it."""


class ProxyRefused(Exception):
    """A proxy answered a CONNECT with a non-2xx status, or a request it forwards with 407.

    ``target`` is the CONNECT's ``host:port``, empty for a forwarded request.
    """

    def __init__(self, proxy: str, status: int, reason: str, variable: str, target: str) -> None:
        super().__init__(f"{status} from the proxy {proxy}")
        self.proxy = proxy
        self.status = status
        self.reason = reason
        self.variable = variable  # where the user set this proxy: HTTPS_PROXY or HTTP_PROXY
        self.target = target


def read_answer(response: http.client.HTTPResponse, proxy: str | None) -> tuple[int, bytes]:
    """Finish an exchange the same way in every transport: refuse, or read the capped body.

    A 3xx is never followed (a redirected POST can become a GET and lose its body); a 407
    from the proxy named by ``proxy`` is about its credentials, not OpShift's answer.
    """
    status = response.status
    if 300 <= status <= 399:
        raise redirect_error(status, response.getheader("Location"))
    if status == 407 and proxy is not None:
        raise ProxyRefused(proxy, status, response.reason, "HTTP_PROXY", "")
    data = read_body(response)
    if status == 401 and proxy is not None and not _is_json_object(data):
        # OpShift's 401 is a JSON object; a proxy asking for credentials with a 401 where
        # RFC 9110 says 407 (tinyproxy does) answers HTML.
        raise ProxyRefused(proxy, status, response.reason, "HTTP_PROXY", "")
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


def proxy_settings() -> dict[str, str]:
    """The proxies urllib would use (``getproxies()``), each checked so a bad one fails clearly.

    Raises:
        ConfigurationError: a proxy setting is not an ``http://[user:password@]host[:port]``
            URL. The message names the variable, never its value, which may hold a password
            (urllib's own error quotes the whole URL).
    """
    import urllib.request

    proxies = urllib.request.getproxies()
    for scheme, value in proxies.items():
        if scheme == "no":
            continue
        try:
            _, _, _, hostport = urllib.request._parse_proxy(value)  # type: ignore[attr-defined]
            _, colon, port = hostport.rpartition(":")
            valid = bool(hostport) and (not colon or "]" in port or port.isdigit())
            valid = valid and hostport.isprintable() and " " not in hostport
        except ValueError:
            valid = False
        if not valid:
            raise ConfigurationError(
                f"The {scheme} proxy setting ({scheme.upper()}_PROXY) is not a proxy URL like "
                "http://user:password@proxy.example:3128; fix or unset it. Nothing was sent."
            )
    return proxies


def translate_exception(exc: BaseException, url: str, timeout: float) -> OpShiftError:
    """Map any low-level failure (urllib, socket, ssl, http.client, a custom transport's
    exception) to the OpShiftError a caller should see. The one place this happens."""
    import socket

    reason: BaseException = exc
    while isinstance(getattr(reason, "reason", None), BaseException):  # urllib's URLError
        reason = reason.reason  # type: ignore[attr-defined]
    where = f"POST {url}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return RequestTimeoutError(
            f"{where} timed out: no complete response within the {timeout:.3g} s left of the "
            "call's timeout. OpShift may be slow or unreachable; raise timeout= or retry later."
        )
    if isinstance(reason, ProxyRefused):
        return _proxy_error(where, reason)
    import http.client

    if isinstance(reason, http.client.InvalidURL):  # a setting to fix, not a network fault
        return ConfigurationError(
            f"{where} cannot be sent: http.client refused the address ({reason}). Check "
            "base_url and the proxy settings (HTTPS_PROXY, HTTP_PROXY)."
        )
    detail = _describe(reason)
    if detail is None:
        return OpShiftError(
            f"{where} failed: the transport raised {type(exc).__name__}: {exc}. "
            "This is a bug in the transport, not a network failure."
        )
    return NetworkError(f"{where} failed: {detail}")


def _proxy_error(where: str, refused: ProxyRefused) -> OpShiftError:
    """A proxy's refusal, naming the proxy (never its password); 407 is never retried."""
    said = f"{refused.status} {refused.reason.strip()[:40]}".rstrip()
    # A 401 is raised here only where the proxy gave it: to a CONNECT, or to a forwarded
    # request without OpShift's JSON (tinyproxy answers 401 where RFC 9110 says 407).
    if refused.status in (401, 407):
        html = " with a page of its own, not OpShift's JSON" if refused.status == 401 else ""
        return ProxyAuthenticationError(
            f"{where} failed: the proxy {refused.proxy} answered {said}{html}: it refused the "
            f"credentials it was given, or was given none. Check the user and password in "
            f"the proxy URL ({refused.variable}); nothing reached OpShift.",
            status_code=refused.status,
        )
    return NetworkError(
        f"{where} failed: the proxy {refused.proxy} refused to open a tunnel to "
        f"{refused.target} ({said}). Check {refused.variable} and NO_PROXY; nothing reached "
        "OpShift."
    )


def _describe(reason: BaseException) -> str | None:
    """A readable cause for a network-level failure, or None if it is not one."""
    import http.client
    import socket

    name = f"{type(reason).__name__}: {reason}"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused ({reason}). Is OpShift reachable at base_url?"
    if isinstance(reason, socket.gaierror):
        return f"could not resolve the host ({reason}). Check base_url and DNS."
    if isinstance(reason, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return f"the connection was closed by the server or a proxy ({name}); retry later."
    if isinstance(reason, ResponseTooLarge):
        return f"{reason}; base_url may not point at OpShift."
    if type(reason).__module__ == "ssl":
        return f"TLS failed ({name}). For a private CA pass ssl_context= to the transport."
    if isinstance(reason, http.client.HTTPException):
        return f"malformed or truncated HTTP response ({name}); retry later."
    if isinstance(reason, OSError):
        return f"network error ({name})."
    return None


def __getattr__(name: str) -> Any:
    # The transports import http.client and urllib on first use; naming them here keeps
    # ``from opshift.transport import UrllibTransport`` working without loading them early.
    if name == "UrllibTransport":
        from ._urllib_transport import UrllibTransport

        return UrllibTransport
    if name == "KeepAliveTransport":
        from ._keepalive_transport import KeepAliveTransport

        return KeepAliveTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
