"""``opshift ping`` and ``opshift alert``, and the client every sending command builds.

Each command checks its call before sending anything (a broken rule is a ``UsageError``:
exit 2), then sends it and lets OpShiftError propagate: ``main`` turns it into one line on
stderr and exit status 1 (2 for a ConfigurationError).
"""

from __future__ import annotations

import json
import sys

from .._call import ALERT, PING, Caller, fields_given
from .._config import DEFAULT_BASE_URL, check_base_url
from ..client import OpShift
from ..errors import ConfigurationError, OpShiftError
from ._parser import UsageError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: typing would cost a cron job 2 ms per run
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

    from .._call import Kind

__all__ = ["alert", "check_call", "client_from", "ping"]


def client_from(args: argparse.Namespace) -> OpShift:
    """Build the client from --base-url and --timeout, saying on stderr if it sends nothing.

    Raises:
        ConfigurationError: no usable secret or base URL; a bad --base-url is named so.
    """
    if args.base_url is not None:
        try:
            check_base_url(args.base_url)
        except ConfigurationError as error:
            text = str(error)
            named = text.replace("base_url", "--base-url", 1)
            raise ConfigurationError(named if named != text else f"--base-url: {text}") from error
    client = OpShift(base_url=args.base_url, timeout=args.timeout)
    if not client.enabled:
        print(
            "opshift: OpShift is disabled (OPSHIFT_DISABLED is set): the call is checked but "
            "nothing is sent. Unset OPSHIFT_DISABLED to send.",
            file=sys.stderr,
        )
    return client


def check_call(kind: Kind, key: str, fields: dict[str, Any], base_url: str | None) -> None:
    """Check a call by the rules every client applies before sending, sending nothing.

    A caller without a signer or transport prepares exactly as the client's own does, and
    needs no secret: ``opshift run`` checks its flags before its command starts.
    ``base_url`` is --base-url (None: OPSHIFT_BASE_URL, then the default), so an id given
    as a URL is checked against the server the call will go to.

    Raises:
        UsageError: the id or a field breaks a documented limit (exit 2, not OpShift's 400).
    """
    try:
        base = check_base_url(base_url)
    except ConfigurationError:
        base = DEFAULT_BASE_URL  # reported when the client is built; the check needs one
    try:
        Caller(base, None, None).prepare(kind, key, fields)
    except OpShiftError as error:
        raise UsageError(str(error)) from error


def ping(args: argparse.Namespace) -> int:
    """Check, send the heartbeat ping and print OpShift's answer unless --quiet; return 0."""
    fields = fields_given(
        status=args.status, reason=args.reason, group_key=args.group_key, metadata=args.metadata
    )
    check_call(PING, args.token, fields, args.base_url)
    result = client_from(args).ping(
        args.token,
        status=args.status,
        reason=args.reason,
        group_key=args.group_key,
        metadata=args.metadata,
    )
    return _show(result, quiet=args.quiet)


def alert(args: argparse.Namespace) -> int:
    """Check, raise the alert and print OpShift's answer unless --quiet; return 0."""
    fields = fields_given(
        title=args.title,
        description=args.description,
        severity=args.severity,
        metadata=args.metadata,
        group_key=args.group_key,
    )
    check_call(ALERT, args.webhook, fields, args.base_url)
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
