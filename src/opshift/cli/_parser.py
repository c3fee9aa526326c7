"""The argument parser: every command's options, help text and examples, and their checks.

Builds the parser from argparse and the SDK's validation rules alone; it imports no command
module, so ``opshift --help`` and a usage error cost no more than the parser itself.
"""

from __future__ import annotations

import argparse
import json

from .. import _validation
from .._version import __version__
from ._help import EPILOGS

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["Choices", "UsageError", "build_parser"]


class UsageError(Exception):
    """A call that breaks a rule, found before sending: ``main`` prints it and exits 2."""


def build_parser() -> argparse.ArgumentParser:
    """Build the ``opshift`` parser; ``args.command`` names the chosen command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        help="OpShift's address (default: $OPSHIFT_BASE_URL, then https://www.opshift.io)",
    )
    common.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds for the whole call (default 30)"
    )
    sending = argparse.ArgumentParser(add_help=False, parents=[common])
    sending.add_argument("--group-key", help="routing / grouping key, at most 200 characters")
    sending.add_argument(
        "--metadata", type=_json_object, help="a JSON object, e.g. '{\"rows\": 3}'"
    )

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="opshift",
        description="Send signed OpShift heartbeat pings and alerts. "
        "The secret comes from OPSHIFT_SECRET.",
        epilog=EPILOGS["opshift"],
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"opshift {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, summary: str, parents: list[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=parents, help=summary, epilog=EPILOGS[name], formatter_class=fmt
        )
        sub.set_defaults(parser=sub)  # so a command's own usage error shows its own usage
        return sub

    ping = command("ping", "send a heartbeat ping", [sending])
    ping.add_argument("token", help="the monitor's ping token")
    ping.add_argument(
        "--status", choices=Choices("status"), metavar="{up,down}", help="default: up"
    )
    ping.add_argument("--reason", help="why, at most 200 characters")
    ping.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    alert = command("alert", "raise an alert", [sending])
    alert.add_argument("webhook", help="the webhook id")
    alert.add_argument("--title", required=True, help="at most 200 characters")
    alert.add_argument("--description", help="at most 2000 characters")
    alert.add_argument(
        "--severity", choices=Choices("severity"), metavar="{sev0,sev1,sev2,sev3,sev4}"
    )
    alert.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    run = command("run", "run a command and ping its outcome", [sending])
    run.add_argument("token", help="the monitor's ping token")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    outbox = command("outbox", "list or deliver what waits in an outbox file", [common])
    outbox.add_argument("path", help="the Outbox's SQLite file")
    outbox.add_argument(
        "--flush", action="store_true", help="deliver what waits; exit 1 if anything is left"
    )
    outbox.add_argument(
        "--quiet", "-q", action="store_true", help="with --flush: print only what is left"
    )

    command("demo", "see the SDK work against an embedded local OpShift", [])

    serve = command("serve", "serve a local OpShift-compatible API, to try things on", [])
    serve.add_argument(
        "--port", type=_port, default=0, help="the port to listen on (default: a free one)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--secret",
        help="the secret to check signatures with (default: $OPSHIFT_SECRET, else a "
        "throwaway one, printed)",
    )

    doctor = command("doctor", "check the configuration and the way to OpShift", [common])
    doctor.add_argument(
        "--json", action="store_true", help="print a JSON list of {check, ok, detail, fix}"
    )

    plan = command("plan", "the interval and grace to set for each scheduled job", [])
    plan.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="the Celery app or APScheduler scheduler to load, e.g. proj.celery:app",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


class Choices:
    """An enum field's values from types.py, read only when argparse checks or lists them.

    Reading them imports typing, which a cold start need not pay for. argparse would list
    them while the parser is built, so each argument names them in its metavar.
    """

    def __init__(self, field: str) -> None:
        self.field = field

    def __contains__(self, value: object) -> bool:
        return value in _validation.choices_for(self.field)

    def __iter__(self) -> Iterator[str]:
        return iter(_validation.choices_for(self.field))


def _json_object(text: str) -> dict[str, Any]:
    """A --metadata value: a JSON object, or argparse's usage error saying what is wrong."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def _port(text: str) -> int:
    """A --port value: 0 (a free port) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    """A --timeout value, checked by the same rule as ``OpShift(timeout=...)``."""
    try:
        return _validation.check_number("timeout", float(text))
    except ValueError as exc:  # float() and ConfigurationError are both ValueErrors
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds > 0, got {text!r}"
        ) from exc
