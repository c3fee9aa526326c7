"""``opshift outbox``: list what waits in an Outbox's SQLite file, or deliver it.

Listing opens the file read-only and never writes to it. ``--flush`` delivers from this
process within --timeout and exits 1 if anything is left; with --quiet it prints only what
is left, on stderr. A missing file is a usage error (exit 2): no file is created for it.
"""

from __future__ import annotations

import os
import sys
import time

from ._commands import client_from

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from typing import TextIO

__all__ = ["format_age", "outbox"]


def outbox(args: argparse.Namespace) -> int:
    """List an outbox file's waiting items, or deliver them with --flush."""
    from ..outbox._sqlite import read_summary

    if not os.path.isfile(args.path):
        print(f"opshift: error: no outbox file at {args.path!r}", file=sys.stderr)
        return 2
    if args.flush:
        _flush(args)
    left = read_summary(args.path, time.time())  # read-only: listing never writes
    if not args.flush or left or not args.quiet:
        _print_summary(args.path, left, sys.stderr if args.flush and args.quiet else sys.stdout)
    return 1 if args.flush and left else 0


def format_age(seconds: float) -> str:
    """``42s``, ``5m12s``, ``3h04m``, ``2d03h``: the oldest item's age at a glance."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _flush(args: argparse.Namespace) -> None:
    """Deliver what waits in the file from this process, within --timeout."""
    from ..outbox import Outbox

    outbox = Outbox(client_from(args), args.path, background=False)
    outbox.flush(args.timeout)
    outbox.close(0)
    stats = outbox.stats
    if not args.quiet:
        print(
            f"delivered {stats['delivered']}; dropped {stats['dropped_rejected']} rejected by "
            f"OpShift and {stats['dropped_expired']} expired"
        )


def _print_summary(path: str, rows: list[tuple[str, str, int, float]], out: TextIO) -> None:
    """Print the total, then one line per kind and destination with the oldest item's age."""
    total = sum(count for _, _, count, _ in rows)
    print(f"{path}: {total} item(s) waiting", file=out)
    if rows:
        width = max(len(destination) for _, destination, _, _ in rows)
        print(f"  {'kind':<5}  {'destination':<{width}}  {'count':>5}  oldest", file=out)
        for kind, destination, count, age in rows:
            print(f"  {kind:<5}  {destination:<{width}}  {count:>5}  {format_age(age)}", file=out)
