"""The SDK's ``opshift`` logger, made on first use so ``import opshift`` never imports logging."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import logging

_logger: logging.Logger | None = None


def logger() -> logging.Logger:
    """The ``opshift`` logger (imports logging on the first call)."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("opshift")
    return _logger


def debug_enabled() -> bool:
    """True if a DEBUG record from the SDK could be seen by anyone.

    If the application never imported ``logging``, nothing can have configured a handler
    or a level, so DEBUG is off and a cron job's one call need not import logging at all.
    """
    return "logging" in sys.modules and logger().isEnabledFor(10)
