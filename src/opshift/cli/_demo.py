"""``opshift demo``: the SDK against an embedded local OpShift, every request shown.

A show, not a tool: it needs no account, makes a throwaway secret (safe to print, unlike a
real one), and writes each request, response and signature check to the stream it is given.
It talks straight to its own loopback server (``LoopbackTransport``): the user's proxy
settings are for reaching OpShift, not 127.0.0.1. It reads OPSHIFT_DISABLED alone (every
client it builds is given its secret, base_url and transport, so OPSHIFT_SECRET and
OPSHIFT_BASE_URL play no part). A step that fails says why.
"""

from __future__ import annotations

import secrets
import sys

from .._config import disabled_by_environment
from ..client import OpShift
from ..errors import OpShiftError
from ..testing import OpShiftServer

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, like the other cli modules
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Callable, TextIO

__all__ = ["DEMO_METADATA", "LoopbackTransport", "demo"]

DEMO_METADATA = {"batch": 1247, "durationMs": 832}


def demo(out: TextIO) -> int:
    """Ping and alert an embedded local OpShift, printing what goes over the wire."""
    # OPSHIFT_DISABLED alone: OpShift(secret).enabled would read OPSHIFT_BASE_URL too, and
    # every client below is given its secret, base_url and transport.
    if disabled_by_environment():
        print(
            "opshift: OpShift is disabled (OPSHIFT_DISABLED is set), so the demo would send "
            "nothing; unset OPSHIFT_DISABLED to watch it.",
            file=sys.stderr,
        )
        return 0
    secret = secrets.token_hex(32)  # throwaway: printing it is safe, unlike a real one
    with OpShiftServer(secret) as server:
        server.add_monitor("payments-worker", "Payments worker")
        server.add_webhook("deploy-failures", default_severity="sev2")
        show = _ShowingTransport(LoopbackTransport(), server, out)
        client = OpShift(secret, base_url=server.url, transport=show)
        out.write(
            f"OpShift demo: a local OpShift-compatible server is listening on {server.url}\n"
            f"Throwaway team secret: {secret}\n"
        )
        wrong_secret = OpShift("0" * 64, base_url=server.url, transport=show)

        def deploy_failed(**extra: Any) -> object:
            return client.alert(
                "deploy-failures",
                title="Deploy failed: api-gateway",
                severity="sev1",
                group_key="deploy:api-gateway",
                **extra,
            )

        steps: list[tuple[str, Callable[[], object]]] = [
            (
                "Heartbeat: payments-worker is alive",
                lambda: client.ping("payments-worker", status="up", metadata=DEMO_METADATA),
            ),
            (
                "Heartbeat: payments-worker is down",
                lambda: client.ping("payments-worker", status="down", reason="stripe-timeout"),
            ),
            (
                "Alert: a deploy failed",
                lambda: deploy_failed(
                    description="Migration step exited with code 137",
                    metadata={"commit": "a1b2c3", "environment": "production"},
                ),
            ),
            (
                "The same alert again: folded into the open alert",
                deploy_failed,
            ),
            (
                "A request signed with the wrong secret is refused",
                lambda: wrong_secret.ping("payments-worker"),
            ),
        ]
        for number, (title, step) in enumerate(steps, 1):
            out.write(f"\n== {number}. {title}\n")
            try:
                step()
            except OpShiftError as error:
                out.write(f"   raised {type(error).__name__}: {error}\n")
        if not server.requests:
            print(
                "opshift: no request reached the demo's own server on 127.0.0.1; "
                "each step above says what failed.",
                file=sys.stderr,
            )
            return 1
        body = server.requests[0].body.decode()
        out.write(
            "\nCheck a signature yourself, as OpShift's docs do:\n"
            f"  printf '%s' '{body}' | openssl dgst -sha256 -hmac '{secret}' -hex\n"
            f"  (expect {server.requests[0].signature})\n"
        )
        valid = sum(r.signature_valid for r in server.requests)
        out.write(f"\nThe server checked {len(server.requests)} signatures: {valid} valid.\n")
    return 0


class _ShowingTransport:
    """Wraps a transport and prints each request and response, for the demo."""

    def __init__(self, inner: Any, server: OpShiftServer, out: TextIO) -> None:
        self._inner = inner
        self._server = server
        self._out = out

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        write = self._out.write
        write(f"-> POST {url}\n")
        for name, value in headers.items():
            write(f"   {name}: {value}\n")  # the demo's throwaway signature: safe to show
        write(f"   {body.decode() or '(empty body)'}\n")
        seen = len(self._server.requests)
        status, data = self._inner(url, body, headers, timeout)
        write(f"<- {status} {data.decode('utf-8', 'replace')}\n")
        if len(self._server.requests) > seen:
            checked = self._server.requests[seen].signature_valid
            write(f"   server: signature {'valid' if checked else 'INVALID'}\n")
        else:
            write("   server: this answer did not come from the demo's server\n")
        return status, data


class LoopbackTransport:
    """A transport straight to a server on this machine: no proxy, whatever the environment
    says (HTTP_PROXY would otherwise catch 127.0.0.1 unless NO_PROXY lists it)."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
        try:
            connection.request("POST", parts.path, body, dict(headers))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()
