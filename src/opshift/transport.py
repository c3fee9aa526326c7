"""The transport seam: how a signed request reaches OpShift, and the default urllib sender.

A transport is any callable ``(url, body, headers, timeout) -> (status_code, body_bytes)``.
It returns every HTTP status (4xx and 5xx included) and raises for network failures; the
client turns both into ``OpShiftError``. ``timeout`` is the seconds left for the whole
exchange, not for each socket operation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NetworkError, OpShiftError, RequestTimeoutError, redirect_error

if TYPE_CHECKING:
    import ssl
    import urllib.request

    from ._connection import Connection

__all__ = ["KeepAliveTransport", "Transport", "UrllibTransport", "translate_exception"]


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


class KeepAliveTransport:
    """A faster transport: persistent HTTP/1.1 connections, pooled per host.

    Same guarantees as ``UrllibTransport`` (whole-call deadline, 1 MiB body cap, no
    redirects, proxies from the environment, TLS verified with ``ssl_context``), plus:

    - Connections are reused, saving a TCP (and TLS) handshake per call; each request is
      written in one send.
    - Thread-safe: each in-flight request owns its connection; at most
      ``max_idle_connections`` idle ones are kept per (scheme, host, port, proxy).
    - A connection the server closed while idle is detected and replaced. If a reused
      connection fails before a single response byte arrives, the request is re-sent once
      on a fresh connection (the server cannot have answered it); never after.
    - Fork-safe: a child process never touches its parent's sockets.

    Proxy settings are read from the environment when the transport is created. Close it
    with ``close()`` or use it as a context manager.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle_connections: int = 10
    ) -> None:
        import ssl
        import threading
        import urllib.request

        self._ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._max_idle = max_idle_connections
        self._proxies = urllib.request.getproxies()
        self._bypass = urllib.request.proxy_bypass
        self._routes: dict[str, _Route] = {}
        self._idle: dict[tuple[object, ...], list[Connection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        from ._connection import ProtocolError
        from ._deadline import MAX_RESPONSE_BYTES

        deadline = time.monotonic() + timeout
        if os.getpid() != self._pid:
            self._forget_after_fork()
        route = self._routes.get(url) or self._route(url)
        if route.proxy_authorization:
            headers = {**headers, "Proxy-Authorization": route.proxy_authorization}
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._checkout(route, deadline)
                response = conn.exchange(
                    "POST", route.target, headers, body, deadline, MAX_RESPONSE_BYTES
                )
            except Exception as exc:
                if conn is None:
                    raise translate_exception(exc, url, timeout) from exc
                received = conn.sock.bytes_received
                conn.close()
                dead = isinstance(exc, (ConnectionError, ProtocolError)) and received == 0
                if conn.reused and attempt == 1 and dead:
                    continue  # the server closed it while idle: nothing was answered
                raise translate_exception(exc, url, timeout) from exc
            redirect = 300 <= response.status <= 399
            if response.will_close or redirect:
                conn.close()
            else:
                self._checkin(route, conn)
            if redirect:
                raise redirect_error(response.status, response.location)
            return response.status, response.body
        raise AssertionError("unreachable")  # pragma: no cover

    def _route(self, url: str) -> _Route:
        """Where a URL goes: scheme, host, port, proxy and request target; cached per URL."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        proxy = self._proxy_for(scheme, host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        plain_proxy = proxy is not None and scheme == "http"
        route = _Route(
            scheme,
            host,
            port,
            proxy,
            target=url if plain_proxy else path,
            proxy_authorization=proxy[2] if proxy is not None and plain_proxy else "",
        )
        if len(self._routes) < 1024:
            self._routes[url] = route
        return route

    def _checkout(self, route: _Route, deadline: float) -> Connection:
        """An idle live connection for the route (marked reused), else a new one."""
        import select

        from ._connection import Connection

        while True:
            with self._lock:
                idle = self._idle.get(route.key)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            try:
                # Readable while idle means the server closed it (or sent junk): drop it.
                readable = bool(select.select([conn.sock], [], [], 0)[0])
            except (OSError, ValueError):
                readable = True
            if not readable:
                conn.reused = True
                return conn
            conn.close()
        context = self._ssl_context if route.scheme == "https" else None
        return Connection(
            route.host, route.port, context=context, proxy=route.proxy, deadline=deadline
        )

    def _checkin(self, route: _Route, conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(route.key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def _proxy_for(self, scheme: str, host: str, port: int) -> tuple[str, int, str] | None:
        """(host, port, Proxy-Authorization value or "") from the environment, as urllib does."""
        proxy_url = self._proxies.get(scheme)
        if not proxy_url or self._bypass(f"{host}:{port}"):
            return None
        from urllib.parse import unquote, urlsplit

        if "://" not in proxy_url:
            proxy_url = "http://" + proxy_url
        proxy = urlsplit(proxy_url)
        auth = ""
        if proxy.username is not None:
            import base64

            pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        return proxy.hostname or "", proxy.port or 8080, auth

    def _forget_after_fork(self) -> None:
        """In a forked child, drop the parent's connections and lock without using them."""
        import threading

        self._idle = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        """Close every idle connection; later calls open new ones."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    def __enter__(self) -> KeepAliveTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Idle sockets are ours to close even if the user never called close(); never in a
        # forked child, and never an error at interpreter shutdown.
        try:
            if getattr(self, "_pid", None) == os.getpid():
                self.close()  # nothing can hold the lock while the object is being finalised
        except Exception:  # noqa: S110 - a finaliser must not raise
            pass

    def __repr__(self) -> str:
        return f"KeepAliveTransport(max_idle_connections={self._max_idle})"


class _Route:
    """A URL's destination, computed once: the pool key and what to put on the wire."""

    __slots__ = ("host", "key", "port", "proxy", "proxy_authorization", "scheme", "target")

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        proxy: tuple[str, int, str] | None,
        *,
        target: str,
        proxy_authorization: str,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.proxy = proxy
        self.target = target
        self.proxy_authorization = proxy_authorization
        self.key = (scheme, host, port, proxy)


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

    from ._connection import ProtocolError
    from ._deadline import ResponseTooLarge

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
    if isinstance(reason, (http.client.HTTPException, ProtocolError)):
        return f"malformed or truncated HTTP response ({name}); retry later."
    if isinstance(reason, OSError):
        return f"network error ({name})."
    return None
