"""The ``opshift`` command: ping, alert, run a monitored command, or watch a demo.

Reads OPSHIFT_SECRET and OPSHIFT_BASE_URL from the environment (there is deliberately no
``--secret`` flag: command lines end up in shell history and process lists).
Exit status: 0 success, 1 API or network error, 2 usage or configuration error; ``run``
exits with the command's own status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence

from . import _validation
from ._version import __version__
from .client import OpShift
from .errors import ConfigurationError, OpShiftError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from typing import Any, Callable, TextIO

__all__ = ["main"]

DEMO_METADATA = {"batch": 1247, "durationMs": 832}

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")  # never crash printing an em dash
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if argv[:1] == ["run"] and "--" in argv:
        # Everything after "--" is the command, so run's own flags may sit after TOKEN.
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if command is not None:
        args.argv = command
    try:
        if args.command == "demo":
            return demo(sys.stdout)
        if args.command == "run":
            return _run(parser, args)
        if args.command == "outbox":
            return _outbox(args)
        client = OpShift(base_url=args.base_url, timeout=args.timeout)
        _say_if_disabled(client)
        result: Mapping[str, Any]
        if args.command == "ping":
            result = client.ping(
                args.token,
                status=args.status,
                reason=args.reason,
                group_key=args.group_key,
                metadata=args.metadata,
            )
        else:
            result = client.alert(
                args.webhook,
                title=args.title,
                description=args.description,
                severity=args.severity,
                metadata=args.metadata,
                group_key=args.group_key,
            )
    except ConfigurationError as error:
        print(f"opshift: error: {error}", file=sys.stderr)
        return 2
    except OpShiftError as error:
        print(f"opshift: error: {error}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _say_if_disabled(client: OpShift) -> None:
    """Tell the person at the terminal that nothing will reach OpShift, and why."""
    if not client.enabled:
        print(
            "opshift: OpShift is disabled (OPSHIFT_DISABLED is set): the call is checked but "
            "nothing is sent. Unset OPSHIFT_DISABLED to send.",
            file=sys.stderr,
        )


def _parser() -> argparse.ArgumentParser:
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
        "--status", choices=_Choices("status"), metavar="{up,down}", help="default: up"
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
        "--severity", choices=_Choices("severity"), metavar="{sev0,sev1,sev2,sev3,sev4}"
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


class _Choices:
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


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the command, stream its output, ping its outcome, return its exit status."""
    import signal
    import subprocess
    import threading

    command = list(args.argv)
    if not command:
        parser.error("run needs a command: opshift run TOKEN -- COMMAND [ARGS...]")
    tail = _Tail()
    started = time.monotonic()
    try:
        process = subprocess.Popen(command, stderr=subprocess.PIPE)  # noqa: S603 - the user's command
    except FileNotFoundError:
        code, reason = 127, f"command not found: {command[0]}"
    except PermissionError:
        code, reason = 126, f"permission denied: {command[0]}"
    else:
        pump = threading.Thread(target=_pump, args=(process, tail), daemon=True)
        pump.start()
        previous = _forward_signals(process, signal)
        try:
            returncode = process.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        pump.join()
        if returncode < 0:
            code = 128 - returncode
            reason = f"killed by signal {_signal_name(signal, -returncode)}"
        else:
            code, reason = returncode, f"exit code {returncode}"
    metadata = {
        **(args.metadata or {}),
        "durationMs": round((time.monotonic() - started) * 1000),
        "exitCode": code,
        "command": os.path.basename(command[0])[:200],
    }
    if tail.text():
        metadata["stderrTail"] = tail.text()
    try:
        client = OpShift(base_url=args.base_url, timeout=args.timeout)
        _say_if_disabled(client)
        client.ping(
            args.token,
            status="up" if code == 0 else "down",
            reason=None if code == 0 else reason,
            group_key=args.group_key,
            metadata=metadata,
        )
    except OpShiftError as error:
        print(f"opshift: could not report the run to OpShift: {error}", file=sys.stderr)
    return code


def _outbox(args: argparse.Namespace) -> int:
    """List an outbox file's waiting items, or deliver them with --flush."""
    from ._outbox_store import read_summary

    if not os.path.isfile(args.path):
        print(f"opshift: error: no outbox file at {args.path!r}", file=sys.stderr)
        return 2
    if args.flush:
        _flush_outbox(args)
    left = read_summary(args.path, time.time())  # read-only: listing never writes
    if not args.flush or left or not args.quiet:
        _print_summary(args.path, left, sys.stderr if args.flush and args.quiet else sys.stdout)
    return 1 if args.flush and left else 0


def _flush_outbox(args: argparse.Namespace) -> None:
    """Deliver what waits in the file from this process, within --timeout."""
    from .outbox import Outbox

    client = OpShift(base_url=args.base_url, timeout=args.timeout)
    _say_if_disabled(client)
    outbox = Outbox(client, args.path, background=False)
    outbox.flush(args.timeout)
    outbox.close(0)
    stats = outbox.stats
    if not args.quiet:
        print(
            f"delivered {stats['delivered']}; dropped {stats['dropped_rejected']} rejected by "
            f"OpShift and {stats['dropped_expired']} expired"
        )


def _print_summary(path: str, rows: list[tuple[str, str, int, float]], out: TextIO) -> None:
    total = sum(count for _, _, count, _ in rows)
    print(f"{path}: {total} item(s) waiting", file=out)
    if rows:
        width = max(len(destination) for _, destination, _, _ in rows)
        print(f"  {'kind':<5}  {'destination':<{width}}  {'count':>5}  oldest", file=out)
        for kind, destination, count, age in rows:
            print(f"  {kind:<5}  {destination:<{width}}  {count:>5}  {_age(age)}", file=out)


def _age(seconds: float) -> str:
    """``42s``, ``5m12s``, ``3h04m``, ``2d03h``: the oldest item's age at a glance."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


class _Tail:
    """The last lines of a byte stream, kept within the size OpShift's metadata allows."""

    def __init__(self) -> None:
        from .monitor import TAIL_CHARS

        self._data = b""
        self._keep = 4 * TAIL_CHARS  # bytes: up to 4 per character in UTF-8

    def feed(self, chunk: bytes) -> None:
        self._data = (self._data + chunk)[-self._keep :]

    def text(self) -> str:
        from .monitor import tail

        return tail(self._data.decode("utf-8", "replace"))


def _pump(process: subprocess.Popen[bytes], tail: _Tail) -> None:
    """Copy the child's stderr through unchanged, keeping its tail."""
    if process.stderr is None:
        return
    out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    while True:
        chunk = os.read(process.stderr.fileno(), 65536)
        if not chunk:
            break
        tail.feed(chunk)
        if out is not None:
            out.write(chunk)
            out.flush()
    process.stderr.close()


def _forward_signals(process: subprocess.Popen[bytes], signal: Any) -> dict[int, Any]:
    """Pass SIGTERM/SIGHUP on to the child; let Ctrl-C (sent to the group) reach it alone."""
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)

    def ignore(signum: int, frame: object) -> None:
        pass

    for name, handler in (("SIGTERM", forward), ("SIGHUP", forward), ("SIGINT", ignore)):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, handler)
    return previous


def _signal_name(signal: Any, number: int) -> str:
    try:
        return str(signal.Signals(number).name)
    except ValueError:
        return str(number)


def demo(out: TextIO) -> int:
    """Ping and alert an embedded local OpShift, printing what goes over the wire."""
    import secrets

    from .testing import OpShiftServer
    from .transport import UrllibTransport

    secret = secrets.token_hex(32)  # throwaway: printing it is safe, unlike a real one
    if not OpShift(secret).enabled:
        print(
            "opshift: OpShift is disabled (OPSHIFT_DISABLED is set), so the demo would send "
            "nothing; unset OPSHIFT_DISABLED to watch it.",
            file=sys.stderr,
        )
        return 0
    with OpShiftServer(secret) as server:
        server.add_monitor("payments-worker", "Payments worker")
        server.add_webhook("deploy-failures", default_severity="sev2")
        show = _ShowingTransport(UrllibTransport(), server, out)
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

    def __init__(self, inner: Any, server: Any, out: TextIO) -> None:
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
        status, data = self._inner(url, body, headers, timeout)
        write(f"<- {status} {data.decode('utf-8', 'replace')}\n")
        checked = self._server.requests[-1].signature_valid
        write(f"   server: signature {'valid' if checked else 'INVALID'}\n")
        return status, data
