"""The one place a failure becomes an ``OpShiftError``: every transport's, and a custom one's.

Maps urllib, socket, ssl and http.client exceptions, and the wire's own
(``ResponseTooLarge``, ``ProxyRefused``), to the ``OpShiftError`` subclass a caller
should see, with a message saying what went wrong and what to do.
"""

from __future__ import annotations

from ..errors import (
    ConfigurationError,
    NetworkError,
    OpShiftError,
    ProxyAuthenticationError,
    RequestTimeoutError,
)
from ._base import ProxyRefused, ResponseTooLarge

__all__ = ["translate_exception"]


def translate_exception(
    exc: BaseException, url: str, timeout: float, via: str | None = None
) -> OpShiftError:
    """Map any low-level failure (urllib, socket, ssl, http.client, a custom transport's
    exception) to the OpShiftError a caller should see. The one place this happens.

    ``via`` names the proxy the request went through and the variable that set it
    (``"the proxy proxy.corp:3128 (from HTTPS_PROXY)"``, never a password): a failure
    reached through a proxy names it, since the proxy may be its cause.
    """
    import socket

    reason: BaseException = exc
    while isinstance(getattr(reason, "reason", None), BaseException):  # urllib's URLError
        reason = reason.reason  # type: ignore[attr-defined]
    where = f"POST {url}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        through = f" through {via}" if via else ""
        return RequestTimeoutError(
            f"{where} timed out{through}: no complete response within the {timeout:.3g} s "
            "left of the call's timeout. OpShift"
            + (" or the proxy" if via else "")
            + " may be slow or unreachable; raise timeout= or retry later."
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
    if via:
        return NetworkError(f"{where} failed through {via}: {_through_proxy(reason, detail)}")
    return NetworkError(f"{where} failed: {detail}")


def _through_proxy(reason: BaseException, detail: str) -> str:
    """The cause of a failure reached through a proxy, pointing at the proxy where the
    connection itself failed (it, not OpShift, is what this process connects to)."""
    import socket

    if isinstance(reason, ConnectionRefusedError):
        return (
            f"connection refused ({reason}). Is the proxy running? Check the variable, and "
            "NO_PROXY; nothing reached OpShift."
        )
    if isinstance(reason, socket.gaierror):
        return f"could not resolve the proxy's host ({reason}). Check the variable and DNS."
    return detail


def _proxy_error(where: str, refused: ProxyRefused) -> OpShiftError:
    """A proxy's refusal, naming the proxy and the variable that set it (never its
    password); 407 is never retried, a 5xx page is retried as OpShift's 5xx would be."""
    from ..errors import ServerError, describe_body
    from ._proxy import proxy_variable

    variable = proxy_variable(refused.scheme)
    said = f"{refused.status} {refused.reason.strip()[:40]}".rstrip()
    if 500 <= refused.status <= 599 and not refused.target:
        return ServerError(
            f"{where} failed: {said} with {describe_body(refused.body)}, through the proxy "
            f"{refused.proxy} (from {variable}): the proxy, or OpShift behind it, failed. "
            f"Retry later; if it lasts, check the proxy, {variable} and NO_PROXY.",
            status_code=refused.status,
        )
    # A 401 is raised here only where the proxy gave it: to a CONNECT, or to a forwarded
    # request without OpShift's JSON (tinyproxy answers 401 where RFC 9110 says 407).
    if refused.status in (401, 407):
        html = " with a page of its own, not OpShift's JSON" if refused.status == 401 else ""
        return ProxyAuthenticationError(
            f"{where} failed: the proxy {refused.proxy} answered {said}{html}: it refused the "
            f"credentials it was given, or was given none. Check the user and password in "
            f"the proxy URL ({variable}); nothing reached OpShift.",
            status_code=refused.status,
        )
    return NetworkError(
        f"{where} failed: the proxy {refused.proxy} refused to open a tunnel to "
        f"{refused.target} ({said}). Check {variable} and NO_PROXY; nothing reached "
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
