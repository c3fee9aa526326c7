"""``opshift doctor``: check the configuration and the way to OpShift, sending no ping or alert.

Checks run in order and each prints one line: ``ok`` with what was found, or ``FAIL`` with
what to fix. A failed setting (secret aside) or network step stops the steps that need
it; those are listed as not checked. Nothing printed ever holds the secret, nor a proxy's
password. The one request made is ``HEAD`` on base_url: it reaches the server, and its
``Date`` header shows the server's clock.
"""

from __future__ import annotations

import json
import os
import socket
import time

from .._config import (
    DEFAULT_BASE_URL,
    check_base_url,
    check_secret,
    disabled_by_environment,
    quoted,
)
from ..errors import ConfigurationError
from ..transport._proxy import parse_proxy, proxy_bypass, proxy_settings
from ._help import for_the_shell

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, like the other cli modules
if TYPE_CHECKING:
    import argparse
    import http.client
    from collections.abc import Generator, Iterator
    from typing import Any, Optional

    Proxy = tuple[str, int, Optional[str]]  # host, port, Proxy-Authorization

__all__ = ["MAX_CLOCK_SKEW", "Check", "clock_check", "doctor"]

MAX_CLOCK_SKEW = 60.0  # seconds between this machine's clock and the server's
_NETWORK = ("dns", "tcp", "tls", "http", "clock")


class Check:
    """One check's outcome: its name, whether it passed, what was found, and the fix."""

    __slots__ = ("detail", "fix", "name", "ok")

    def __init__(self, name: str, ok: bool, detail: str, fix: str | None = None) -> None:
        self.name = name
        self.ok = ok
        self.detail = detail
        self.fix = fix

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        if not self.fix:
            return f"FAIL  {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail.rstrip('.')}; fix: {self.fix}"


def doctor(args: argparse.Namespace) -> int:
    """Run every check, print them (a JSON list with --json); 0 if all pass, else 1."""
    checks: list[Check] = []
    for check in _checks(args):
        checks.append(check)
        if not args.json:
            print(_redact(check.line()), flush=True)
    ran = {check.name for check in checks}
    if args.json:
        print(_redact(json.dumps([check.as_dict() for check in checks], indent=2)))
    else:
        skipped = [name for name in ("proxy", *_NETWORK) if name not in ran]
        if skipped:
            print(f"not checked (fix the failure above first): {', '.join(skipped)}")
    return 0 if all(check.ok for check in checks) else 1


def _checks(args: argparse.Namespace) -> Iterator[Check]:
    """Yield each check in order, stopping before steps that need a failed one."""
    try:
        disabled = disabled_by_environment()
    except ConfigurationError as error:
        yield Check("disabled", False, for_the_shell(str(error)), "unset OPSHIFT_DISABLED")
    else:
        yield (
            Check(
                "disabled",
                False,
                "OPSHIFT_DISABLED is set: calls are checked, nothing is sent",
                "unset OPSHIFT_DISABLED (or set it to 0) to send",
            )
            if disabled
            else Check("disabled", True, "OPSHIFT_DISABLED is not set: calls are sent")
        )
    yield _secret_check()
    base_url = yield from _base_url_check(args.base_url)
    if base_url is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    tls = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    usable, proxy = yield from _proxy_check(parts.scheme, parts.netloc)
    if not usable:
        return
    target = (proxy[0], proxy[1]) if proxy else (host, port)
    if not (yield from _dns_check(*target, via_proxy=bool(proxy))):
        return
    if not (yield from _tcp_check(*target, args.timeout, via_proxy=bool(proxy))):
        return
    connection = yield from _tls_check(host, port, tls, proxy, args.timeout)
    if connection is None:
        return
    yield from _http_checks(connection, base_url, proxy)


def _secret_check() -> Check:
    """The secret's form and where it came from; never the secret, nor any part of it."""
    if os.environ.get("OPSHIFT_SECRET") is None:
        return Check(
            "secret",
            False,
            "OPSHIFT_SECRET is not set",
            "set OPSHIFT_SECRET to the team's webhook secret (Settings > Webhook Secret)",
        )
    value = os.environ["OPSHIFT_SECRET"].strip()
    quote = quoted(value)
    if quote:
        return Check(
            "secret",
            False,
            f"OPSHIFT_SECRET is wrapped in quotes ({quote}...{quote}): they are part of "
            f"its value, {len(value)} characters instead of the secret's 64",
            "remove the quotes around the value where OPSHIFT_SECRET is set (a shell removes "
            "them; a file read without one, such as docker run --env-file's, keeps them)",
        )
    try:
        check_secret(None)
    except ConfigurationError as error:
        return Check(
            "secret",
            False,
            for_the_shell(str(error)),
            "set OPSHIFT_SECRET to exactly the 64 hex characters of Settings > Webhook Secret",
        )
    return Check("secret", True, "64 hex characters, from OPSHIFT_SECRET (not shown)")


def _base_url_check(flag: str | None) -> Generator[Check, None, str | None]:
    """base_url and where it came from; returns it, or None when it is unusable."""
    if flag:
        value, source = flag, "from --base-url"
    elif os.environ.get("OPSHIFT_BASE_URL"):
        value, source = os.environ["OPSHIFT_BASE_URL"], "from OPSHIFT_BASE_URL"
    else:
        value, source = DEFAULT_BASE_URL, "the default; OPSHIFT_BASE_URL is not set"
    name = "--base-url" if flag else "OPSHIFT_BASE_URL"
    try:
        base_url = check_base_url(value)
    except ConfigurationError as error:
        text = for_the_shell(str(error))
        if flag:
            text = text.replace("base_url", "--base-url", 1)
        fix = f"set {name} to an http(s) URL like {DEFAULT_BASE_URL}"
        yield Check("base_url", False, f"{text} ({source})", fix)
        return None
    yield Check("base_url", True, f"{base_url} ({source})")
    return base_url


def _proxy_check(scheme: str, netloc: str) -> Generator[Check, None, tuple[bool, Proxy | None]]:
    """The proxy base_url is reached through; returns whether the settings are usable, and
    the proxy (None to go direct)."""
    try:
        proxies = proxy_settings()
    except ConfigurationError as error:
        yield Check("proxy", False, str(error), "fix or unset the proxy variable it names")
        return False, None
    value = proxies.get(scheme)
    if not value:
        yield Check("proxy", True, f"none for {scheme}://: base_url is reached directly")
        return True, None
    variable = next(
        (n for n in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY") if os.environ.get(n)),
        "the system's proxy settings",
    )
    if proxy_bypass(netloc):
        yield Check("proxy", True, f"none: NO_PROXY covers {netloc}, reached directly")
        return True, None
    from urllib.parse import unquote

    kind, user, password, hostport = parse_proxy(value)
    if kind not in (None, "http"):
        yield Check(
            "proxy",
            False,
            f"{variable} is a {kind}:// proxy, which the SDK cannot use",
            f"set {variable} to an http:// proxy URL",
        )
        return False, None
    host, _, port = unquote(hostport).rpartition(":")
    if not host or not port.isdigit():
        host, port = unquote(hostport), "80"
    authorization = None
    if user and password:
        import base64

        pair = f"{unquote(user)}:{unquote(password)}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    shown = f"http://{unquote(user) + ':***@' if user else ''}{host}:{port}"
    yield Check("proxy", True, f"{shown} (from {variable})")
    return True, (host.strip("[]"), int(port), authorization)


def _dns_check(host: str, port: int, *, via_proxy: bool) -> Generator[Check, None, bool]:
    what = "the proxy's host " if via_proxy else ""
    try:
        found = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except OSError as error:
        fix = (
            "check the proxy variable's host name"
            if via_proxy
            else "check the host name in base_url, and this machine's DNS settings"
        )
        yield Check("dns", False, f"{what}{host} does not resolve ({error})", fix)
        return False
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if addresses[3:] else "")
    yield Check("dns", True, f"{what}{host} resolves to {shown}")
    return True


def _tcp_check(
    host: str, port: int, timeout: float, *, via_proxy: bool
) -> Generator[Check, None, bool]:
    what = f"the proxy {host}:{port}" if via_proxy else f"{host}:{port}"
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout).close()
    except ConnectionRefusedError:
        fix = f"check the port, and that {'the proxy' if via_proxy else 'OpShift'} is running"
        yield Check("tcp", False, f"{what} refused the connection (nothing listens there)", fix)
        return False
    except socket.timeout:
        fix = "a firewall may drop the traffic, or the host is down; try --timeout longer"
        yield Check("tcp", False, f"{what} did not answer within {timeout:g} s", fix)
        return False
    except OSError as error:
        fix = "check the network route to it (firewall, VPN)"
        yield Check("tcp", False, f"cannot connect to {what}: {error.strerror or error}", fix)
        return False
    took = (time.monotonic() - started) * 1000
    yield Check("tcp", True, f"connected to {what} in {took:.0f} ms")
    return True


def _tls_check(
    host: str, port: int, tls: bool, proxy: Proxy | None, timeout: float
) -> Generator[Check, None, http.client.HTTPConnection | None]:
    """The TLS handshake (https), with the CAs the SDK uses; returns the connection for the
    HEAD request, or None when the handshake failed."""
    import http.client

    connection: http.client.HTTPConnection
    if not tls:
        yield Check("tls", True, "not used: base_url is http://, so nothing is encrypted")
        connection = http.client.HTTPConnection(*(proxy[:2] if proxy else (host, port)))
        connection.timeout = timeout
        return connection
    import ssl

    context = ssl.create_default_context()  # as the SDK's default transport builds it
    connection = http.client.HTTPSConnection(
        *(proxy[:2] if proxy else (host, port)), timeout=timeout, context=context
    )
    if proxy:
        headers = {"Proxy-Authorization": proxy[2]} if proxy[2] else None
        connection.set_tunnel(host, port, headers=headers)
    cas = _cas_in_use(ssl)
    try:
        connection.connect()
    except ssl.SSLCertVerificationError as error:
        connection.close()
        yield Check("tls", False, f"{host}'s certificate is not trusted by {cas}: "
                    f"{error.verify_message}", _tls_fix(error.verify_code))  # fmt: skip
        return None
    except (OSError, ssl.SSLError) as error:
        connection.close()
        fix = "check that base_url's port serves https (http:// if it does not)"
        yield Check("tls", False, f"TLS handshake with {host} failed: {error}", fix)
        return None
    sock: Any = connection.sock
    yield Check("tls", True, f"{sock.version()} with {host}, certificate verified by {cas}")
    return connection


def _cas_in_use(ssl: Any) -> str:
    """Which CAs the default context trusts, as a user would set them."""
    if os.environ.get("SSL_CERT_FILE"):
        return f"SSL_CERT_FILE={os.environ['SSL_CERT_FILE']}"
    paths = ssl.get_default_verify_paths()
    return f"the system's CAs ({paths.cafile or paths.capath or 'OpenSSL defaults'})"


def _tls_fix(code: int) -> str:
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return "use the host name the certificate names in base_url"
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "renew the server's certificate, or fix this machine's clock if it is wrong"
    return (
        "if OpShift is served with a private CA's certificate, trust that CA: "
        "export SSL_CERT_FILE=/path/to/private-ca.pem (a bundle with it and the public CAs "
        "you need) or add it to the system's CA store; in Python code, pass "
        "UrllibTransport(ssl_context=ssl.create_default_context(cafile=...))"
    )


def _http_checks(
    connection: http.client.HTTPConnection, base_url: str, proxy: Proxy | None
) -> Iterator[Check]:
    """One HEAD request on base_url: is it OpShift's server answering, and its clock."""
    from urllib.parse import urlsplit

    path = urlsplit(base_url).path + "/"
    target = base_url + "/" if proxy and not base_url.startswith("https") else path
    headers = {"User-Agent": "opshift-doctor"}
    if proxy and proxy[2] and not base_url.startswith("https"):
        headers["Proxy-Authorization"] = proxy[2]
    try:
        connection.request("HEAD", target, headers=headers)
        response = connection.getresponse()
        response.read()
    except OSError as error:
        fix = "check base_url points at OpShift, and that nothing between drops requests"
        yield Check("http", False, f"HEAD {base_url}/ got no answer: {error}", fix)
        return
    finally:
        connection.close()
    status = response.status
    location = response.getheader("Location") or ""
    if status == 407:
        fix = "put the proxy's user and password in the proxy variable"
        yield Check("http", False, "the proxy wants credentials (407)", fix)
        return
    if status in (502, 503, 504):
        fix = "try again later; if it persists, check the proxy or load balancer in between"
        yield Check("http", False, f"HEAD {base_url}/ answered {status}: failing", fix)
        return
    if 300 <= status <= 399 and _origin(location) not in ("", _origin(base_url)):
        fix = f"set base_url to {_origin(location)}: the SDK never follows redirects"
        yield Check("http", False, f"{base_url} redirects to {location}", fix)
        return
    yield Check("http", True, f"HEAD {base_url}/ answered {status}")
    yield clock_check(response.getheader("Date"))


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def clock_check(date: str | None) -> Check:
    if not date:
        return Check("clock", True, "the server sent no Date header: clocks not compared")
    from email.utils import parsedate_to_datetime

    try:
        server = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", True, f"the server's Date header {date!r:.60} is not a date")
    skew = time.time() - server
    if abs(skew) > MAX_CLOCK_SKEW:
        way = "ahead of" if skew > 0 else "behind"
        return Check(
            "clock",
            False,
            f"this machine's clock is {abs(skew):.0f} s {way} the server's ({date})",
            "sync the clock with NTP (e.g. timedatectl set-ntp true)",
        )
    return Check("clock", True, f"within {MAX_CLOCK_SKEW:g} s of the server's ({abs(skew):.0f} s)")


def _redact(text: str) -> str:
    """``text`` without the secret, however it got there: doctor must never show it."""
    secret = (os.environ.get("OPSHIFT_SECRET") or "").strip()
    return text.replace(secret, "<secret>") if len(secret) >= 8 else text
