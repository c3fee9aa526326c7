"""The argument parser: every command's options, help text and examples, and their checks.

Builds the parser from argparse and the SDK's validation rules alone; it imports no command
module, so ``opshift --help`` and a usage error cost no more than the parser itself.
"""

from __future__ import annotations

import argparse
import json

from .. import _validation
from .._version import __version__

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["Choices", "build_parser"]

_PING_EXAMPLES = """examples:
  opshift ping payments-worker
  opshift ping payments-worker --status down --reason "stripe timeout"
  opshift ping nightly-etl --metadata '{"rows": 1247}' --quiet
"""
_ALERT_EXAMPLES = """examples:
  opshift alert deploy-failures --title "Deploy failed: api-gateway" --severity sev1
  opshift alert deploy-failures --title "Migration failed" \\
      --description "exited with code 137" --group-key deploy:api-gateway \\
      --metadata '{"commit": "a1b2c3"}'
"""
_RUN_EXAMPLES = """examples:
  opshift run nightly-backup -- /usr/local/bin/backup.sh --full
  0 3 * * *  OPSHIFT_SECRET=... opshift run nightly-backup -- pg_dump -f /backups/db.sql

Pings up when the command exits 0, otherwise down with "exit code N" (or the signal),
with the duration and the last lines of stderr. Output streams through unchanged, and
opshift exits with the command's own status whatever happens to the ping.
"""
_OUTBOX_EXAMPLES = """examples:
  opshift outbox /var/lib/app/opshift-outbox.sqlite3
  opshift outbox /var/lib/app/opshift-outbox.sqlite3 --flush --timeout 60
  */10 * * * *  OPSHIFT_SECRET=... opshift outbox /var/lib/app/opshift-outbox.sqlite3 --flush -q

Lists what waits (per kind and destination, with the oldest item's age). With --flush,
delivers it and exits 0 when the outbox is empty, 1 when items are left (OpShift
unreachable, backing off, or being sent by another process).
"""
_DEMO_EXAMPLES = """examples:
  opshift demo

Starts a local OpShift-compatible server with a throwaway secret, sends signed pings
and alerts through the real client, and prints each request and response.
"""


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

    parser = argparse.ArgumentParser(
        prog="opshift",
        description="Send signed OpShift heartbeat pings and alerts. "
        "The secret comes from OPSHIFT_SECRET.",
    )
    parser.add_argument("--version", action="version", version=f"opshift {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    ping = commands.add_parser(
        "ping", parents=[sending], help="send a heartbeat ping", epilog=_PING_EXAMPLES,
        formatter_class=fmt,
    )  # fmt: skip
    ping.add_argument("token", help="the monitor's ping token")
    ping.add_argument(
        "--status", choices=Choices("status"), metavar="{up,down}", help="default: up"
    )
    ping.add_argument("--reason", help="why, at most 200 characters")
    ping.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    alert = commands.add_parser(
        "alert", parents=[sending], help="raise an alert", epilog=_ALERT_EXAMPLES,
        formatter_class=fmt,
    )  # fmt: skip
    alert.add_argument("webhook", help="the webhook id")
    alert.add_argument("--title", required=True, help="at most 200 characters")
    alert.add_argument("--description", help="at most 2000 characters")
    alert.add_argument(
        "--severity", choices=Choices("severity"), metavar="{sev0,sev1,sev2,sev3,sev4}"
    )
    alert.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")

    run = commands.add_parser(
        "run", parents=[sending], help="run a command and ping its outcome",
        epilog=_RUN_EXAMPLES, formatter_class=fmt,
    )  # fmt: skip
    run.add_argument("token", help="the monitor's ping token")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    outbox = commands.add_parser(
        "outbox", parents=[common], help="list or deliver what waits in an outbox file",
        epilog=_OUTBOX_EXAMPLES, formatter_class=fmt,
    )  # fmt: skip
    outbox.add_argument("path", help="the Outbox's SQLite file")
    outbox.add_argument(
        "--flush", action="store_true", help="deliver what waits; exit 1 if anything is left"
    )
    outbox.add_argument(
        "--quiet", "-q", action="store_true", help="with --flush: print only what is left"
    )

    commands.add_parser(
        "demo", help="see the SDK work against an embedded local OpShift",
        epilog=_DEMO_EXAMPLES, formatter_class=fmt,
    )  # fmt: skip
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


def _seconds(text: str) -> float:
    """A --timeout value, checked by the same rule as ``OpShift(timeout=...)``."""
    try:
        return _validation.check_number("timeout", float(text))
    except ValueError as exc:  # float() and ConfigurationError are both ValueErrors
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds > 0, got {text!r}"
        ) from exc
