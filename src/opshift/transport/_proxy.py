"""Proxies, as urllib finds and parses them, for both transports.

``proxy_settings`` reads HTTPS_PROXY / HTTP_PROXY / NO_PROXY as urllib does and checks
each, so a bad one fails clearly (naming the variable, never the password);
``parse_proxy`` is the one call of urllib's private ``_parse_proxy``, so both
transports reach the same proxy.
"""

from __future__ import annotations

from urllib.parse import unquote

from ..errors import ConfigurationError

__all__ = [
    "describe_proxy",
    "parse_proxy",
    "proxy_bypass",
    "proxy_name",
    "proxy_settings",
    "proxy_variable",
]


def parse_proxy(value: str) -> tuple[str | None, str | None, str | None, str]:
    """``(scheme, user, password, hostport)`` of a proxy URL, exactly as urllib's
    ``ProxyHandler`` takes it apart (still percent-encoded).

    The SDK's one call of urllib's private ``_parse_proxy``: checked against CPython
    3.9-3.13, and tests/transport/test_stdlib_canary.py fails if it is gone or changes.

    Raises:
        ValueError: urllib cannot parse it.
    """
    import urllib.request

    return urllib.request._parse_proxy(value)  # type: ignore[attr-defined,no-any-return]


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
            hostport = parse_proxy(value)[3]
            _, colon, port = hostport.rpartition(":")
            valid = bool(hostport) and (not colon or "]" in port or port.isdigit())
            valid = valid and hostport.isprintable() and " " not in hostport
        except ValueError:
            valid = False
        if not valid or _cut_in_the_credentials(value):
            raise ConfigurationError(
                f"The {scheme} proxy setting ({scheme.upper()}_PROXY) is not a proxy URL like "
                "http://user:password@proxy.example:3128 (an @ or / in the user or password "
                "must be written %40 or %2F); fix or unset it. Nothing was sent."
            )
    return proxies


def _cut_in_the_credentials(value: str) -> bool:
    """True if urllib would take part of the credentials for the proxy's address.

    urllib ends the authority at the first ``/`` after the first ``@``: in
    ``http://u:p@ss/w@proxy:3128`` it would connect to ``ss``, a piece of the password
    (looked up in DNS, and shown in errors). An ``@`` after that cut means exactly this.
    """
    rest = value.partition("://")[2]
    at = rest.find("@")
    end = rest.find("/", at) if at != -1 else -1
    return end != -1 and "@" in rest[end:]


def proxy_bypass(netloc: str) -> bool:
    """True if NO_PROXY (or the platform's settings) says ``netloc`` goes direct."""
    import urllib.request

    return bool(urllib.request.proxy_bypass(unquote(netloc)))


def proxy_name(hostport: str, default_port: int) -> str:
    """``host:port`` of a proxy as urllib keeps it: ``host``, ``host:port`` or ``[v6]:port``."""
    hostport = hostport.rstrip(":")  # "proxy:" means the default port, as in http.client
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        host, port = hostport, str(default_port)
    return f"{host}:{port}"


def describe_proxy(url: str, proxies: dict[str, str] | None) -> str | None:
    """Which proxy a request to ``url`` goes through, for an error message, or None:
    ``"the proxy proxy.corp:3128 (from HTTPS_PROXY)"``, never its user or password."""
    if not proxies:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        value = proxies.get(parts.scheme)
        if not value or proxy_bypass(parts.netloc):
            return None
        scheme, _, _, hostport = parse_proxy(value)
    except ValueError:
        return None
    default = 443 if scheme == "https" else 80
    return (
        f"the proxy {proxy_name(unquote(hostport), default)} (from {proxy_variable(parts.scheme)})"
    )


def proxy_variable(scheme: str) -> str:
    """The environment variable urllib took the ``scheme`` proxy from (lowercase first, as
    urllib reads it), or the system's settings when neither is set."""
    import os

    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        if os.environ.get(name):
            return name
    return "the system's proxy settings"
