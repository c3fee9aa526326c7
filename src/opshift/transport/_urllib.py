"""UrllibTransport: the default, one connection per call through the standard library's urllib."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..errors import OpShiftError
from ._base import check_request, check_ssl_context, load_idna, read_answer
from ._errors import translate_exception

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import ssl
    import urllib.request
    from typing import Any

__all__ = ["UrllibTransport"]


class UrllibTransport:
    """The default transport: the standard library's urllib, with OpShift's guarantees.

    - ``timeout`` bounds the whole exchange: connecting (each resolved address gets only
      the time left), a proxy's CONNECT, the TLS handshake, sending, waiting and reading.
      Only the DNS lookup itself cannot be interrupted.
    - Redirects are never followed: a 3xx raises ``OpShiftError`` naming the location.
    - Response bodies are capped at 1 MiB, everything read in one call at 2 MiB.
    - Proxies come from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as urllib reads them, on the
      first call. A proxy's 407 raises ``ProxyAuthenticationError``, never retried.
    - TLS is verified with ``ssl_context``, or the system's CAs, never turned off.

    Building one does no I/O and loads no certificates: the first call imports urllib,
    and the first https call loads the system's CAs, once per process.

    One instance is thread-safe; it opens one connection per request.

    Raises:
        ConfigurationError: ``ssl_context`` is not an ``ssl.SSLContext``.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = check_ssl_context(ssl_context)
        self._opener: urllib.request.OpenerDirector | None = None
        self._proxies: dict[str, str] | None = None  # read with the opener, on the first call

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        import urllib.request

        deadline = time.monotonic() + timeout
        check_request(url, headers, body)
        opener = self._opener or self._build_opener()
        # Request only reads the headers (add_header per item): no copy of ours needed.
        request = urllib.request.Request(
            url,
            data=body,
            headers=headers,  # type: ignore[arg-type]  # typeshed asks for a MutableMapping
            method="POST",
        )
        request.opshift_deadline = deadline  # type: ignore[attr-defined]
        try:
            with opener.open(request, timeout=timeout) as response:
                proxy = None
                if request.has_proxy():  # plain http through a proxy: the 407 would be its
                    from ._proxy import proxy_name

                    proxy = proxy_name(request.host, 443 if request.type == "https" else 80)
                return read_answer(response, proxy)
        except OpShiftError:
            raise
        except Exception as exc:
            from ._proxy import describe_proxy

            via = describe_proxy(url, self._proxies)
            raise translate_exception(exc, url, timeout, via) from exc

    def warm(self) -> None:
        """Import urllib and http.client (and load the idna codec) now, not on the first
        call. An ``Outbox`` does this when it is built, so its sender's first send does not
        import (about 25 ms holding the GIL) while the application logs an outage. The
        proxy variables are still read on the first call, as documented."""
        import urllib.request  # noqa: F401

        from . import _connection, _proxy, _socket  # noqa: F401

        load_idna()

    def _build_opener(self) -> urllib.request.OpenerDirector:
        """Proxies and our deadline connections, without redirect or error handlers.

        Without HTTPErrorProcessor every status comes back as a response; without
        HTTPRedirectHandler a 3xx is never followed. Two threads racing here build two
        equal openers; one is kept.
        """
        import urllib.request

        from ._connection import HTTPConnection, HTTPSConnection
        from ._proxy import proxy_settings
        from ._socket import default_context

        transport = self
        # do_open passes our keywords through; typeshed's protocol does not list them.
        connection: Any = HTTPConnection
        tls_connection: Any = HTTPSConnection

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> Any:
                deadline = req.opshift_deadline  # type: ignore[attr-defined]
                return self.do_open(connection, req, deadline=deadline)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def __init__(self) -> None:
                # Not HTTPSHandler's: on Python 3.12+ it loads the system's CAs at once.
                urllib.request.AbstractHTTPHandler.__init__(self)

            def https_open(self, req: urllib.request.Request) -> Any:
                deadline = req.opshift_deadline  # type: ignore[attr-defined]
                context = transport._ssl_context or default_context()
                return self.do_open(tls_connection, req, deadline=deadline, context=context)

        opener = urllib.request.OpenerDirector()
        proxies = proxy_settings()  # checked: urllib's own error would quote a password
        self._proxies = proxies
        for handler in (urllib.request.ProxyHandler(proxies), HTTPHandler(), HTTPSHandler()):
            opener.add_handler(handler)
        self._opener = opener
        return opener

    def __repr__(self) -> str:
        return "UrllibTransport()"
