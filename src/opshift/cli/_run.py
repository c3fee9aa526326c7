"""``opshift run``: a small process supervisor that pings the outcome of a command.

The command inherits stdin and stdout; its stderr streams through unchanged while the last
lines are kept for the ping. SIGTERM and SIGHUP are passed on to it, and Ctrl-C reaches it
alone (the terminal sends SIGINT to the whole group). opshift exits with the command's own
status (128+N for signal N; 127 not found; 126 not executable) whatever happens to the ping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .._call import PING, fields_given
from ..errors import OpShiftError
from ..monitor import TAIL_CHARS, tail
from ._commands import check_call, client_from
from ._help import for_the_shell

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Run the command, stream its output, ping its outcome, return its exit status.

    Raises:
        UsageError: --group-key, --metadata or the token break a limit; the command did
            not run (a missing secret does not stop it: the ping is lost, the job is not).
    """
    command = list(args.argv)
    fields = fields_given(group_key=args.group_key, metadata=args.metadata)
    check_call(PING, args.token, fields, args.base_url)
    stderr_tail = _Tail()
    started = time.monotonic()
    try:
        process = subprocess.Popen(command, stderr=subprocess.PIPE)  # noqa: S603 - the user's command
    except OSError as error:
        code, reason, note = _not_started(command[0], error)
        print(f"opshift: {note}", file=sys.stderr)
    else:
        pump = threading.Thread(target=_pump, args=(process, stderr_tail), daemon=True)
        pump.start()
        previous = _forward_signals(process)
        try:
            returncode = process.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        pump.join()
        if returncode < 0:
            code = 128 - returncode
            reason = f"killed by signal {_signal_name(-returncode)}"
        else:
            code, reason = returncode, f"exit code {returncode}"
    metadata = {
        **(args.metadata or {}),
        "durationMs": round((time.monotonic() - started) * 1000),
        "exitCode": code,
        "command": os.path.basename(command[0])[:200],
    }
    if stderr_tail.text():
        metadata["stderrTail"] = stderr_tail.text()
    try:
        client_from(args).ping(
            args.token,
            status="up" if code == 0 else "down",
            reason=None if code == 0 else reason,
            group_key=args.group_key,
            metadata=metadata,
        )
    except OpShiftError as error:
        print(
            f"opshift: could not report the run to OpShift: {for_the_shell(str(error))}",
            file=sys.stderr,
        )
    return code


def _not_started(program: str, error: OSError) -> tuple[int, str, str]:
    """The exit status, the ping's reason and the note on stderr for a command that did
    not start, as a shell reports it: 127 not found, 126 found but not executable."""
    if isinstance(error, FileNotFoundError):
        if os.sep in program and os.path.isfile(program):  # its #! interpreter is missing
            reason = f"bad interpreter: {program}"
            return 127, reason, f"{reason}: its #! line names a program that does not exist"
        reason = f"command not found: {program}"
        return 127, reason, reason
    if isinstance(error, PermissionError):
        reason = f"permission denied: {program}"
        if os.path.isdir(program):
            return 126, reason, f"{reason} (a directory, not a program)"
        if os.path.isfile(program) and not os.access(program, os.X_OK):
            return 126, reason, f"{reason} (not executable: chmod +x it, or run it with sh)"
        return 126, reason, reason
    reason = f"cannot execute: {program}"
    return 126, reason, f"{reason} ({error.strerror or error})"


class _Tail:
    """The last lines of a byte stream, kept within the size OpShift's metadata allows."""

    def __init__(self) -> None:
        self._data = b""
        self._keep = 4 * TAIL_CHARS  # bytes: up to 4 per character in UTF-8

    def feed(self, chunk: bytes) -> None:
        self._data = (self._data + chunk)[-self._keep :]

    def text(self) -> str:
        return tail(self._data.decode("utf-8", "replace"))


def _pump(process: subprocess.Popen[bytes], stderr_tail: _Tail) -> None:
    """Copy the child's stderr through unchanged, keeping its tail."""
    if process.stderr is None:
        return
    out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    while True:
        chunk = os.read(process.stderr.fileno(), 65536)
        if not chunk:
            break
        stderr_tail.feed(chunk)
        if out is not None:
            out.write(chunk)
            out.flush()
    process.stderr.close()


def _forward_signals(process: subprocess.Popen[bytes]) -> dict[int, Any]:
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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
