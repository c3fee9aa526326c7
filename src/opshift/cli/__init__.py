"""The ``opshift`` command: ping, alert, run a monitored command, serve a local OpShift,
check the configuration, or watch a demo.

Reads OPSHIFT_SECRET, OPSHIFT_BASE_URL, OPSHIFT_DISABLED and the proxy variables from the
environment (there is deliberately no ``--secret`` flag for sending: command lines end up
in shell history and process lists; ``serve``'s ``--secret`` is a local server's).

Modules, top down: this face holds ``main``, which parses and dispatches, and re-exports
``build_parser``. ``_help`` holds every epilog (examples, environment, exit status) and
``for_the_shell``; ``_parser`` builds the parser and ``UsageError``, and imports no command
module. ``_commands`` holds ``ping`` and ``alert``, ``client_from`` (the client every
sending command builds) and ``check_call``; ``_run`` supervises a command and pings its
outcome; ``_outbox`` lists or delivers an outbox file; ``_demo`` shows the SDK against an
embedded server; ``_serve`` runs that server in the foreground; ``_doctor`` checks the
configuration and the way to OpShift without sending a ping or an alert.

Rules:

1. Exit status: 0 success, 1 OpShift refused or could not be reached, 2 usage or
   configuration error: every error found before sending (a bad flag, a field over its
   limit, no secret) is a 2, as nothing was sent. ``run`` exits with the command's own
   status, ``outbox --flush`` exits 1 when items are left, ``doctor`` 1 when a check fails,
   and output to a pipe whose reader has gone ends quietly with 141, as SIGPIPE would.
   Commands check their call first (``check_call``: ``UsageError``), return their status
   and let OpShiftError propagate (``run`` catches its own, as the command's status wins);
   ``main`` turns it into one line on stderr and 1 or 2.
2. Output: stdout carries results (OpShift's JSON answer, an outbox listing, the demo,
   the server's request lines, the doctor's checks); stderr carries errors and notes, each
   starting ``opshift:`` and never holding the secret (nor Python advice such as
   ``OpShift(secret=...)``: ``for_the_shell``), plus what ``run``'s command writes there
   and ``outbox --flush -q``'s leftovers.
3. Cold start: ``opshift --help`` and a usage error import the parser alone, and building
   the parser and the client imports no ``typing``. A command's module, and with it any
   subprocess, threading, sqlite3, urllib, ssl or testing server, loads only when it runs.
4. Arrows run down: modules here share only public names (``client_from``), never a
   ``_private`` one, and none of them imports this face.
"""

from __future__ import annotations

import sys

from ..errors import ConfigurationError, OpShiftError
from ._help import for_the_shell
from ._parser import UsageError, build_parser

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    try:
        try:
            return _main(argv)
        finally:  # `--help` and usage errors too (SystemExit)
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not in the interpreter's last flush, unguarded
    except BrokenPipeError:
        return _reader_gone()


def _main(argv: Sequence[str] | None) -> int:
    """Parse, dispatch, and turn an SDK error into one line on stderr and its status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")  # never crash printing an em dash
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] | None = None
    if argv[:1] == ["run"] and "--" in argv:
        # Everything after "--" is the command, so run's own flags may sit after TOKEN.
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if command is not None:
        swallowed = args.argv
        if swallowed:  # REMAINDER took run's own flags after TOKEN: parse them before it
            token = len(argv) - len(swallowed) - 1
            args = parser.parse_args([*argv[:token], *swallowed, argv[token]])
            if args.argv:
                args.parser.error(f"unexpected arguments before --: {' '.join(swallowed)}")
        args.argv = command
    if args.command == "run" and not args.argv:
        args.parser.error("run needs a command: opshift run TOKEN -- COMMAND [ARGS...]")
    try:
        return _dispatch(args)
    except (ConfigurationError, UsageError) as error:
        print(f"opshift: error: {for_the_shell(str(error))}", file=sys.stderr)
        return 2
    except OpShiftError as error:
        print(f"opshift: error: {for_the_shell(str(error))}", file=sys.stderr)
        return 1


def _reader_gone() -> int:
    """stdout's reader stopped early (``opshift doctor | head -1``): end quietly with 141,
    as a shell reports a command that SIGPIPE ended, not with a traceback. stdout now goes
    to /dev/null, so the interpreter's last flush has nowhere to fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (in-process): nothing left to flush
        pass
    return 128 + 13  # SIGPIPE


def _dispatch(args: argparse.Namespace) -> int:
    """Import the chosen command's module (only now: rule 3) and run it."""
    if args.command == "demo":
        from ._demo import demo

        return demo(sys.stdout)
    if args.command == "run":
        from ._run import run

        return run(args)
    if args.command == "outbox":
        from ._outbox import outbox

        return outbox(args)
    if args.command == "serve":
        from ._serve import serve

        return serve(args)
    if args.command == "doctor":
        from ._doctor import doctor

        return doctor(args)
    if args.command == "plan":
        from ..integrations._plan import plan

        text, status = plan(args.target, as_json=args.json)
        sys.stdout.write(text)
        return status
    from ._commands import alert, ping

    return ping(args) if args.command == "ping" else alert(args)
