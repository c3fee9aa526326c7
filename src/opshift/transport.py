"""The transport seam: how a signed request reaches OpShift, and the default urllib sender.

A transport is any callable ``(url, body, headers, timeout) -> (status_code, body_bytes)``.
It returns every HTTP status (4xx and 5xx included) and raises for network failures; the
client turns both into ``OpShiftError``. ``timeout`` is the seconds left for the whole
exchange, not for each socket operation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NetworkError, OpShiftError, RequestTimeoutError, redirect_error

if TYPE_CHECKING:
    import ssl
    import urllib.request

__all__ = ["Transport", "UrllibTransport", "translate_exception"]


class Transport(Protocol):
    """Send one POST and return ``(status_code, body_bytes)`` for any HTTP status."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]: ...


class UrllibTransport:
    """The default transport: the standard library's urllib, with OpShift's guarantees.

    - ``timeout`` bounds the whole exchange (connect, send, wait, read), not each socket op.
    - Redirects are never followed: a 3xx raises ``OpShiftError`` naming the location.
    - Response bodies are capped at 1 MiB.
    - Proxies come from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as urllib reads them.
    - TLS is verified with ``ssl_context``, or a fresh default context, never turned off.

    One instance is thread-safe; it opens one connection per request.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        import ssl

        self._ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._opener = _build_opener(self._ssl_context)

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        import urllib.request

        from . import _http

        deadline = time.monotonic() + timeout
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        request.opshift_deadline = deadline  # type: ignore[attr-defined]
        try:
            response = self._opener.open(request, timeout=timeout)
            with response:
                status: int = response.status
                if 300 <= status <= 399:
                    raise redirect_error(status, _http.location(response))
                return status, _http.read_body(response)
        except OpShiftError:
            raise
        except Exception as exc:
            raise translate_exception(exc, url, timeout) from exc

    def __repr__(self) -> str:
        return "UrllibTransport()"


def _build_opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    """An opener with proxies and our deadline connections, and no redirect or error handlers.

    Without HTTPErrorProcessor every status comes back as a response; without
    HTTPRedirectHandler a 3xx is never followed.
    """
    import functools
    import urllib.request

    from . import _http

    class _HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            deadline = req.opshift_deadline  # type: ignore[attr-defined]
            factory = functools.partial(_http.DeadlineHTTPConnection, deadline=deadline)
            return self.do_open(factory, req)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            deadline = req.opshift_deadline  # type: ignore[attr-defined]
            factory = functools.partial(_http.DeadlineHTTPSConnection, deadline=deadline)
            return self.do_open(factory, req, context=context)

    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _HTTPHandler(), _HTTPSHandler()):
        opener.add_handler(handler)
    return opener


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
    detail = _describe(reason)
    if detail is None:
        return OpShiftError(
            f"{where} failed: the transport raised {type(exc).__name__}: {exc}. "
            "This is a bug in the transport, not a network failure."
        )
    return NetworkError(f"{where} failed: {detail}")


def _describe(reason: BaseException) -> str | None:
    """A readable cause for a network-level failure, or None if it is not one."""
    import http.client
    import socket

    from ._http import ResponseTooLarge

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
