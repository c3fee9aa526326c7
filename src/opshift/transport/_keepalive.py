"""KeepAliveTransport: persistent HTTP/1.1 connections from http.client, pooled per destination."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from .. import _validation
from ..errors import ConfigurationError, OpShiftError
from ._base import check_request, check_ssl_context, load_idna, read_answer
from ._errors import translate_exception
from ._proxy import describe_proxy, parse_proxy, proxy_bypass, proxy_settings

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import ssl
    from typing import Optional

    from ._connection import HTTPConnection

    _Key = tuple[str, bool, Optional[str]]  # a pool: (address, tls, tunnel)

__all__ = ["KeepAliveTransport", "idle_connections"]


class KeepAliveTransport:
    """A faster transport: persistent HTTP/1.1 connections, pooled per destination.

    Same guarantees as ``UrllibTransport`` (whole-call deadline, 1 MiB body cap, no
    redirects, proxies from the environment, TLS verified with ``ssl_context``), plus:

    - Connections are reused, saving a TCP (and TLS) handshake per call; each request is
      written in one send.
    - A connection is reused only if its answer was read to the end, framed unambiguously,
      with nothing after it, the server did not say ``close``, and it has been idle less
      than ``max_idle_seconds`` (and than the server's ``Keep-Alive: timeout``, less a
      second); one the server closed (or wrote to) while idle is dropped.
    - If a reused connection fails while the request is being written (nothing reached the
      server), the request is sent once more, on a brand-new connection. Once written, it
      is never sent again here: OpShift may have it, and the client's retry policy decides.
    - Thread-safe: each in-flight request owns its connection; at most
      ``max_idle_connections`` idle ones are kept per destination (scheme, host, port,
      proxy).
    - Fork-safe: a child process never uses its parent's connections.

    Proxy settings are read on the first call, once. Building one does no I/O. Close it
    with ``close()`` or use it as a context manager.

    Args:
        ssl_context: Verifies TLS; defaults to the system's CAs, loaded on first https use.
        max_idle_connections: Idle connections kept per destination (0 keeps none).
        max_idle_seconds: A connection idle this long is closed, not reused: load
            balancers and NATs drop idle connections silently, which would otherwise hang a
            call until its timeout. Keep it below the server's keep-alive timeout.

    Raises:
        ConfigurationError: A setting is invalid.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_connections: int = 10,
        max_idle_seconds: float = 30.0,
    ) -> None:
        import threading

        self._ssl_context = check_ssl_context(ssl_context)
        self._max_idle = _validation.check_int(
            "max_idle_connections", max_idle_connections, hint="; 0 keeps none"
        )
        self._max_idle_seconds = _validation.check_number("max_idle_seconds", max_idle_seconds)
        self._proxies: dict[str, str] | None = None  # read on the first call
        self._routes: dict[str, _Route] = {}
        self._idle: dict[_Key, list[HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        if os.getpid() != self._pid:
            self._forget_after_fork()
        check_request(url, headers, body)
        try:
            route = self._routes.get(url) or self._route(url)
        except OpShiftError:
            raise
        except Exception as exc:
            raise translate_exception(exc, url, timeout) from exc
        if route.proxy_authorization:
            headers = {**headers, "Proxy-Authorization": route.proxy_authorization}
        conn = self._checkout(route.key)
        while True:
            reused = conn is not None
            written = False
            response = None
            try:
                if conn is None:
                    conn = self._connect(route, deadline)
                else:
                    conn.renew(deadline)
                conn.post(route.target, headers, body)
                written = True
                response = conn.getresponse()
                status, data = read_answer(response, conn.address if route.plain_proxy else None)
            except Exception as exc:
                if response is not None:
                    response.close()  # it holds the socket when the server said close
                if conn is not None:
                    conn.close()
                if reused and not written and isinstance(exc, OSError):
                    # The pooled connection died before the request was handed to it (the
                    # server closed it while idle): nothing reached the server, so send
                    # once more, on a new connection. Once the request is written, OpShift
                    # may have it: the client's retry policy decides, never this transport.
                    conn = None
                    continue
                if isinstance(exc, OpShiftError):
                    raise
                via = describe_proxy(url, self._proxies) if route.proxied else None
                raise translate_exception(exc, url, timeout, via) from exc
            if conn.reusable(response):
                self._checkin(route.key, conn, response.keep_alive)  # type: ignore[attr-defined]  # a Response: reusable() checked
            else:
                conn.close()
            return status, data

    def warm(self) -> None:
        """Import http.client now, not on the first call (see ``UrllibTransport.warm``)."""
        from . import _connection  # noqa: F401

        load_idna()

    def _connect(self, route: _Route, deadline: float) -> HTTPConnection:
        """A new connection for the route, connected (and tunnelled) by the deadline."""
        from ._connection import HTTPConnection, HTTPSConnection
        from ._socket import default_context

        conn: HTTPConnection
        if route.tls:
            context = self._ssl_context or default_context()
            conn = HTTPSConnection(route.address, deadline=deadline, context=context)
        else:
            conn = HTTPConnection(route.address, deadline=deadline)
        if route.tunnel is not None:
            conn.set_tunnel(route.tunnel, headers=dict(route.tunnel_headers))
        conn.connect()
        return conn

    def _route(self, url: str) -> _Route:
        """Where a URL goes, as urllib would send it; computed once per URL."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        try:
            valid = scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a malformed port
            valid = False
        if not valid:
            raise ConfigurationError(f"{url!r:.80} is not an http(s) URL with a host.")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxies = self._proxies
        if proxies is None:
            proxies = self._proxies = proxy_settings()
        proxy_url = proxies.get(scheme)
        if not proxy_url or proxy_bypass(netloc):
            route = _Route(netloc, tls=scheme == "https", target=target)
        else:
            # urllib's own parsing, so both transports reach the same proxy: a proxy URL
            # without a port means the target scheme's default port there (443 or 80).
            kind, user, password, hostport = parse_proxy(proxy_url)
            hostport = unquote(hostport)
            authorization = ""
            if user and password:
                import base64

                pair = f"{unquote(user)}:{unquote(password)}".encode()
                authorization = "Basic " + base64.b64encode(pair).decode("ascii")
            if scheme == "https":
                tunnel_headers = {"Proxy-Authorization": authorization} if authorization else {}
                route = _Route(
                    hostport, tls=True, target=target, tunnel=netloc, tunnel_headers=tunnel_headers
                )
            elif kind in (None, "http", "https"):
                route = _Route(
                    hostport,
                    tls=kind == "https",
                    target=url,
                    proxy_authorization=authorization,
                    plain_proxy=True,
                )
            else:
                raise ConfigurationError(
                    f"The {scheme} proxy in HTTP_PROXY is a {kind}:// URL, which urllib cannot "
                    "use either; give an http:// proxy."
                )
        if len(self._routes) < 1024:
            self._routes[url] = route
        return route

    def _checkout(self, key: _Key) -> HTTPConnection | None:
        """The most recently used idle connection that is still quiet and young, or None."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            sock = conn.sock
            if now < conn.idle_until and sock and sock.is_quiet():
                return conn
            conn.close()

    def _checkin(self, key: _Key, conn: HTTPConnection, server_limit: float | None) -> None:
        """Keep a reusable connection (within the cap); close ones idle too long.

        A connection is kept for ``max_idle_seconds``, or a second less than the server's
        own ``Keep-Alive: timeout=N``, so it is not reused just as the server closes it.
        """
        now = time.monotonic()
        limit = self._max_idle_seconds
        if server_limit is not None:
            limit = min(limit, server_limit - 1.0)
        if limit <= 0:
            conn.close()
            return
        conn.idle_until = now + limit
        expired = []
        kept = False
        with self._lock:
            idle = self._idle.setdefault(key, [])
            while idle and now >= idle[0].idle_until:
                expired.append(idle.pop(0))
            if len(idle) < self._max_idle:
                idle.append(conn)
                kept = True
        for old in expired:
            old.close()
        if not kept:
            conn.close()

    def _forget_after_fork(self) -> None:
        """In a forked child, let go of the parent's connections and lock without using them.

        Closing the child's copy of a descriptor leaves the parent's connection open (no
        shutdown, no TLS close_notify): only the last close of a socket ends it.
        """
        import threading

        idle, self._idle = self._idle, {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        for connections in idle.values():
            for conn in connections:
                conn.close()

    def close(self) -> None:
        """Close every idle connection; later calls open new ones."""
        if os.getpid() != self._pid:  # a forked child: the lock may have been held at fork
            self._forget_after_fork()
            return
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
        return (
            f"KeepAliveTransport(max_idle_connections={self._max_idle}, "
            f"max_idle_seconds={self._max_idle_seconds:g})"
        )


def idle_connections(transport: KeepAliveTransport) -> list[HTTPConnection]:
    """The connections ``transport`` keeps idle now, every destination's, oldest first.

    This module's seam for tests and diagnostics; the pool itself stays private.
    """
    with transport._lock:
        return [conn for pool in transport._idle.values() for conn in pool]


class _Route:
    """A URL's destination, computed once: whom to connect to and what to put on the wire.

    ``address`` is the server's or the proxy's ``host[:port]``, parsed by http.client as
    urllib does; ``tunnel`` the target's, for CONNECT; ``target`` the request target.
    """

    __slots__ = (
        "address",
        "key",
        "plain_proxy",
        "proxied",
        "proxy_authorization",
        "target",
        "tls",
        "tunnel",
        "tunnel_headers",
    )

    def __init__(
        self,
        address: str,
        *,
        tls: bool,
        target: str,
        tunnel: str | None = None,
        tunnel_headers: Mapping[str, str] | None = None,
        proxy_authorization: str = "",
        plain_proxy: bool = False,
    ) -> None:
        self.address = address
        self.tls = tls
        self.target = target
        self.tunnel = tunnel
        self.tunnel_headers = dict(tunnel_headers or {})
        self.proxy_authorization = proxy_authorization
        self.plain_proxy = plain_proxy
        self.proxied = plain_proxy or tunnel is not None  # through a proxy, either way
        self.key: _Key = (address, tls, tunnel)
