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

from ..errors import OpShiftError
from ..monitor import TAIL_CHARS, tail
from ._commands import client_from

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["run"]


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the command, stream its output, ping its outcome, return its exit status."""
    command = list(args.argv)
    if not command:
        parser.error("run needs a command: opshift run TOKEN -- COMMAND [ARGS...]")
    stderr_tail = _Tail()
    started = time.monotonic()
    try:
        process = subprocess.Popen(command, stderr=subprocess.PIPE)  # noqa: S603 - the user's command
    except FileNotFoundError:
        code, reason = 127, f"command not found: {command[0]}"
    except PermissionError:
        code, reason = 126, f"permission denied: {command[0]}"
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
        print(f"opshift: could not report the run to OpShift: {error}", file=sys.stderr)
    return code


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
