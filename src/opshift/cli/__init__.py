"""The ``opshift`` command: ping, alert, run a monitored command, or watch a demo.

Reads OPSHIFT_SECRET and OPSHIFT_BASE_URL from the environment (there is deliberately no
``--secret`` flag: command lines end up in shell history and process lists).

Modules, top down: this face holds ``main``, which parses and dispatches, and re-exports
``build_parser``. ``_parser`` builds the parser (options, help, examples) and imports no
command module. ``_commands`` holds ``ping`` and ``alert`` and ``client_from``, the client
every sending command builds; ``_run`` supervises a command and pings its outcome;
``_outbox`` lists or delivers an outbox file; ``_demo`` shows the SDK against an embedded
server.

Rules:

1. Exit status: 0 success, 1 API or network error, 2 usage or configuration error; ``run``
   exits with the command's own status, and ``outbox --flush`` exits 1 when items are left.
   Commands return their status and let OpShiftError propagate (``run`` catches its own,
   as the command's status wins); ``main`` turns it into one line on stderr and 1 or 2.
2. Output: stdout carries results (OpShift's JSON answer, an outbox listing, the demo);
   stderr carries errors and notes, each starting ``opshift:`` and never holding the
   secret, plus what ``run``'s command writes there and ``outbox --flush -q``'s leftovers.
3. Cold start: ``opshift --help`` and a usage error import the parser alone, and building
   the parser and the client imports no ``typing``. A command's module, and with it any
   subprocess, threading, sqlite3, urllib or testing server, loads only when it runs.
4. Arrows run down: modules here share only public names (``client_from``), never a
   ``_private`` one, and none of them imports this face.
"""

from __future__ import annotations

import sys

from ..errors import ConfigurationError, OpShiftError
from ._parser import build_parser

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
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
        args.argv = command
    try:
        if args.command == "demo":
            from ._demo import demo

            return demo(sys.stdout)
        if args.command == "run":
            from ._run import run

            return run(parser, args)
        if args.command == "outbox":
            from ._outbox import outbox

            return outbox(args)
        from ._commands import alert, ping

        return ping(args) if args.command == "ping" else alert(args)
    except ConfigurationError as error:
        print(f"opshift: error: {error}", file=sys.stderr)
        return 2
    except OpShiftError as error:
        print(f"opshift: error: {error}", file=sys.stderr)
        return 1
