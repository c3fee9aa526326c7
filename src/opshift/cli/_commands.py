"""``opshift ping`` and ``opshift alert``, and the client every sending command builds.

Each command returns its exit status and lets OpShiftError propagate: ``main`` turns it
into one line on stderr and exit status 1 (2 for a ConfigurationError).
"""

from __future__ import annotations

import json
import sys

from ..client import OpShift

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

__all__ = ["alert", "client_from", "ping"]


def client_from(args: argparse.Namespace) -> OpShift:
    """Build the client from --base-url and --timeout, saying on stderr if it sends nothing.

    Raises:
        ConfigurationError: no usable secret or base URL in the environment.
    """
    client = OpShift(base_url=args.base_url, timeout=args.timeout)
    if not client.enabled:
        print(
            "opshift: OpShift is disabled (OPSHIFT_DISABLED is set): the call is checked but "
            "nothing is sent. Unset OPSHIFT_DISABLED to send.",
            file=sys.stderr,
        )
    return client


def ping(args: argparse.Namespace) -> int:
    """Send the heartbeat ping and print OpShift's answer unless --quiet; return 0."""
    result = client_from(args).ping(
        args.token,
        status=args.status,
        reason=args.reason,
        group_key=args.group_key,
        metadata=args.metadata,
    )
    return _show(result, quiet=args.quiet)


def alert(args: argparse.Namespace) -> int:
    """Raise the alert and print OpShift's answer unless --quiet; return 0."""
    result = client_from(args).alert(
        args.webhook,
        title=args.title,
        description=args.description,
        severity=args.severity,
        metadata=args.metadata,
        group_key=args.group_key,
    )
    return _show(result, quiet=args.quiet)


def _show(result: Mapping[str, Any], *, quiet: bool) -> int:
    if not quiet:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
