"""``opshift serve``: the local OpShift-compatible server in the foreground, to try things on.

Monitors and webhooks are created on first use. It prints its URL, the secret (only a
throwaway one it made: a secret given with --secret or OPSHIFT_SECRET is never printed),
the ``export`` line to paste, then one line per request until SIGINT or SIGTERM: exit 0.

Each request's line is printed by the server's ``on_request`` hook as it is answered;
nothing is kept, so a server left running for days does not grow. The main thread waits
on an Event that the signal handlers set.
"""

from __future__ import annotations

import os
import signal
import sys

from .._config import check_secret
from ..errors import ConfigurationError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, like the other cli modules
if TYPE_CHECKING:
    import argparse

    from ..testing import RecordedRequest

__all__ = ["request_line", "serve"]


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, printing each request; return 0.

    Raises:
        ConfigurationError: the secret is malformed, or the address cannot be listened on.
    """
    import threading

    from ..testing import OpShiftServer

    secret, source = _secret(args.secret)
    shown = 0

    def show(request: RecordedRequest) -> None:  # the model calls it under its lock
        nonlocal shown
        shown += 1
        _say(request_line(request))

    try:
        server = OpShiftServer(
            secret,
            auto_create=True,
            host=args.host,
            port=args.port,
            on_request=show,
            keep_requests=False,
        )
    except OSError as error:
        raise ConfigurationError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
            "pick another --port (0 for a free one) or --host"
        ) from error
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        # Before serving starts (the socket listens already: a client waits in its
        # backlog), so no request's line can land inside the introduction.
        _introduce(server.url, secret, source)
        with server:
            while not stop.wait(1.0):  # the handlers set it; the timeout only re-checks
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _say(f"stopped after {shown} request(s)")
    return 0


def request_line(request: RecordedRequest) -> str:
    """``POST /api/ping/w  signature valid  -> 200 Ping received``: one request at a glance."""
    if request.signature is None:
        signature = "no signature"
    else:
        signature = "signature valid" if request.signature_valid else "signature INVALID"
    import json

    try:
        answer = json.loads(request.response)
    except ValueError:
        answer = None
    said = answer.get("error") or answer.get("message") if isinstance(answer, dict) else None
    line = f"{request.method} {request.path}  {signature}  -> {request.status} {said or ''}"
    return line.rstrip()


def _secret(given: str | None) -> tuple[str, str]:
    """The secret to check signatures with, and where it came from (``generated`` when
    neither --secret nor OPSHIFT_SECRET gives one)."""
    if given is not None:
        try:
            return check_secret(given), "--secret"
        except ConfigurationError as error:
            raise ConfigurationError(f"--secret: {error}") from error
    if os.environ.get("OPSHIFT_SECRET"):
        return check_secret(None), "OPSHIFT_SECRET"  # names OPSHIFT_SECRET when malformed
    import secrets

    return secrets.token_hex(32), "generated"


def _introduce(url: str, secret: str, source: str) -> None:
    """Print the URL, the secret (a throwaway one only) and what to paste in another shell."""
    if source == "generated":
        shown = f"{secret}  (a throwaway made for this run)"
        export = f"export OPSHIFT_BASE_URL={url} OPSHIFT_SECRET={secret}"
    else:
        shown = f"(from {source}, not shown)"
        export = f"export OPSHIFT_BASE_URL={url}" + (
            "  # and OPSHIFT_SECRET=the value given with --secret" if source == "--secret" else ""
        )
    _say(
        f"OpShift-compatible server listening on {url}\n"
        f"secret: {shown}\n"
        "Monitors and webhooks are created on first use. In another shell:\n"
        f"  {export}\n"
        "  opshift ping payments-worker\n"
        "Ctrl-C stops it. Requests:"
    )


def _say(text: str) -> None:
    """Write ``text`` and its newline in one write, flushed: ``print`` writes the newline
    apart, so with PYTHONUNBUFFERED another thread's line could land between them."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
