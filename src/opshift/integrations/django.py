"""Django: ``MonitoredCommand``, a management command that reports its own runs.

    class Command(MonitoredCommand):
        opshift_token = "nightly-import"

        def handle(self, *args, **options): ...

A run of the command (``manage.py nightly_import``, ``call_command``, cron) pings ``up``
with its duration when ``handle`` returns, and ``down`` with the reason when it raises
(``CommandError`` included), then lets the exception go on as Django would. The hook is
the command's own ``execute()``, which both ``call_command`` and ``manage.py`` go
through; nothing is patched.

The client comes from ``settings.OPSHIFT`` (a dict of ``OpShift``'s keyword arguments,
``{"timeout": 5}`` say), else from the environment as ``OpShift()`` reads it
(``OPSHIFT_SECRET``, ``OPSHIFT_BASE_URL``, ``OPSHIFT_DISABLED``: a disabled client sends
nothing). One ``Reporter`` per process and setting keeps the core's rules (``_core``):
the shapes, ``up`` spacing, never breaking the command.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand

from .. import _log
from ._core import Reporter, Run, failure_of, reporter_for
from ._match import check_token

if TYPE_CHECKING:
    from ..types import Severity

__all__ = ["MonitoredCommand", "reporter"]

_REPORTERS: dict[str, Reporter] = {}
_LOCK = threading.Lock()


def reporter(alert_webhook: str | None = None, alert_severity: Severity | None = None) -> Reporter:
    """The process's ``Reporter`` for the current settings: a client from
    ``settings.OPSHIFT``, or from the environment when that is not set.

    Raises:
        ConfigurationError: the settings (or the environment) make no valid client.
    """
    from django.conf import settings

    from ..client import OpShift

    options: dict[str, Any] = dict(getattr(settings, "OPSHIFT", None) or {})
    key = repr((sorted(options.items()), alert_webhook, alert_severity))
    with _LOCK:
        found = _REPORTERS.get(key)
        if found is None:
            client = OpShift(**options)
            found = _REPORTERS[key] = reporter_for(
                client,
                source="django",
                alert_webhook=alert_webhook,
                alert_severity=alert_severity,
            )
        return found


class MonitoredCommand(BaseCommand):
    """A ``BaseCommand`` whose runs ping ``opshift_token``: ``up`` with ``durationMs`` on
    success, ``down`` with the reason on an exception (then re-raised).

    Attributes:
        opshift_token: the monitor's ping token; None (the default) sends nothing.
        opshift_alert_webhook: if set, a failed run also raises an alert on this webhook.
        opshift_alert_severity: that alert's severity (default: the webhook's).
    """

    opshift_token: str | None = None
    opshift_alert_webhook: str | None = None
    opshift_alert_severity: Severity | None = None

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command as ``BaseCommand.execute`` does, and report how it ended."""
        found = self._opshift_reporter()
        if found is None:
            return super().execute(*args, **options)
        started = found.clock()
        try:
            result = super().execute(*args, **options)
        except BaseException as exc:
            run = self._opshift_run(found, started)
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                found.succeeded(run)
            else:
                found.failed(run, failure_of(exc))
            raise
        found.succeeded(self._opshift_run(found, started))
        return result

    def _opshift_reporter(self) -> Reporter | None:
        """The reporter to use, or None: no token, or settings that make no client (said
        on the ``opshift`` logger: the command still runs)."""
        if self.opshift_token is None:
            return None
        try:
            check_token(f"{type(self).__module__}.opshift_token", self.opshift_token)
            return reporter(self.opshift_alert_webhook, self.opshift_alert_severity)
        except Exception as error:
            _log.logger().warning(
                "The %s command runs unmonitored: %s", self._opshift_name(), error
            )
            return None

    def _opshift_name(self) -> str:
        """The command's name, as ``manage.py`` knows it (its module's last part)."""
        return type(self).__module__.rpartition(".")[2]

    def _opshift_run(self, found: Reporter, started: float) -> Run:
        return Run(
            token=str(self.opshift_token),
            task=self._opshift_name(),
            duration_ms=max(0, round((found.clock() - started) * 1000)),
        )
