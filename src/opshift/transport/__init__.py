"""The wire: how a signed request reaches OpShift, and how every failure is reported.

A transport is any callable ``(url, body, headers, timeout) -> (status_code, body_bytes)``.
It returns every HTTP status (4xx and 5xx included) and raises for network failures; the
client turns both into ``OpShiftError``. ``timeout`` is the seconds left for the whole
exchange, not for each socket operation.

Two transports ship, both on http.client: ``UrllibTransport`` (the default, one
connection per call) and ``KeepAliveTransport`` (pooled connections). The modules, from
the bottom up (each imports only those above it in this list):

- ``_base``: the protocol, the wire's exceptions, what may be sent, how an answer ends;
- ``_errors``: every failure mapped to an ``OpShiftError`` (``translate_exception``);
- ``_proxy``: proxies as urllib reads and parses them;
- ``_socket``: the deadline socket, connecting and the TLS handshake;
- ``_response``: http.client's response, made strict;
- ``_connection``: http.client's connections, bounded by one deadline;
- ``_urllib`` and ``_keepalive``: the two transports.

Rules: nothing is ever sent twice by a transport once written; no redirect is followed;
no answer over 1 MiB is read; every step ends by the call's deadline; a proxy or TLS
setting is never weakened. http.client and urllib are imported on the first call, so
building a client stays cheap.
"""

from ._base import Transport
from ._errors import translate_exception
from ._keepalive import KeepAliveTransport
from ._urllib import UrllibTransport

__all__ = ["KeepAliveTransport", "Transport", "UrllibTransport", "translate_exception"]
