"""AlertHandler: log records at ERROR and above become grouped, rate-limited OpShift alerts.

    import logging
    from opshift import AlertHandler

    logging.getLogger().addHandler(AlertHandler("app-errors"))  # secret from OPSHIFT_SECRET

``emit()`` builds the alert and hands it to an ``Outbox``, whose background thread sends
it: logging never waits on the network, and an outage never raises into the code that
logged. Records with the same logger, message template and exception type share a
``group_key`` and fold into one alert at OpShift; in process, each group sends at most
one alert per ``min_interval`` and counts the repeats in between.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Callable, Union, cast

from . import _alert_text as _text
from . import _validation
from ._call import ALERT
from ._ids import id_from
from .client import OpShift, caller
from .errors import ConfigurationError, OpShiftError
from .outbox import Outbox
from .outbox._outbox import close_budget, refused_alert, refuses_alerts
from .types import Metadata, Severity

__all__ = ["AlertHandler", "SeverityMap"]

SeverityMap = Mapping[Union[int, str], Severity]
"""Log levels (numbers or names such as ``"ERROR"``) to severities."""

DEFAULT_SEVERITIES: dict[int, Severity] = {
    logging.CRITICAL: "sev1",
    logging.ERROR: "sev2",
    logging.WARNING: "sev3",
    logging.INFO: "sev4",
    logging.DEBUG: "sev4",
}

_MAX_GROUPS = 1024  # rate-limit entries kept; past this, idle ones are forgotten
_MAX_SITES = 256  # call sites whose shared metadata is kept, then all forgotten
_REDACTED = "[redacted]"


class AlertHandler(logging.Handler):
    """Send log records (ERROR and above by default) to OpShift as grouped alerts.

    ``emit()`` never blocks on the network and never raises: it queues the alert on an
    ``Outbox`` and reports its own faults through ``handleError``. Records from the SDK's
    own ``opshift`` logger, and any record logged while this handler is emitting (in that
    thread), are ignored, so the handler cannot feed itself. With a disabled client
    (``OPSHIFT_DISABLED=1``) alerts are built and validated but nothing is kept or sent.

    Each alert has: ``title``, the message's first line (at most 200 characters);
    ``description``, the message and the traceback (at most 2,000 characters, keeping
    the traceback's end); ``severity`` from the record's level; ``metadata`` with the
    logger, level, ``location`` (``pathname:lineno``), function, process, thread, host,
    ``exception`` (the exception's type) and ``suppressed`` (see below); and a
    ``group_key`` made from the logger name, the message template (``record.msg``, before
    ``%`` arguments) and the exception type. Log with arguments,
    ``log.error("Payment %s failed", payment_id)``, not an f-string, so one failure for
    a thousand ids is one group. The client's secret is replaced by ``[redacted]`` if a
    message or traceback contains it.

    Every argument can come from ``logging.config.dictConfig`` as a plain string or
    number (``client`` and ``outbox`` as ``"ext://module.attribute"``).

    Args:
        webhook_url: The webhook's id from the dashboard (e.g. ``"app-errors"``).
        client: The ``OpShift`` client to send with; by default one is made from the
            environment (``OPSHIFT_SECRET``, ``OPSHIFT_BASE_URL``, ``OPSHIFT_DISABLED``).
        outbox: The ``Outbox`` to queue alerts on, e.g. one with a SQLite ``path`` so
            alerts survive a crash; by default the handler makes an in-memory one for
            ``client``. Closing the handler closes only an outbox it made.
        level: The lowest level handled, a number or a name such as ``"WARNING"``.
        severity: One severity for every record (``"sev1"``), or a mapping of levels
            (numbers or names) to severities, applied over the default ``CRITICAL`` ->
            ``sev1``, ``ERROR`` -> ``sev2``, ``WARNING`` -> ``sev3``, ``INFO`` and
            ``DEBUG`` -> ``sev4``. A level between two mapped levels takes the severity
            of the nearest one below it.
        min_interval: At most one alert per group (and severity) per this many seconds;
            the repeats in between are counted and the group's next alert carries
            ``metadata["suppressed"]``. ``0`` sends every record. A record of a
            different severity is limited on its own, so an escalation to ``CRITICAL``
            is never held back by a flood of ``ERROR`` records of the same group.
        clock: Monotonic seconds for the rate limit (``time.monotonic``); a testing
            seam, so tests need not wait.

    Raises:
        ConfigurationError: An argument is invalid (an unknown level name, a severity
            other than ``sev0``-``sev4``, a negative ``min_interval``, ...), or there is
            no client and the environment has no valid secret.
    """

    # Never shows the SDK's own records (the recursion guard): the outbox's exit report
    # looks for another handler that would, else prints on stderr.
    shows_sdk_records = False

    def __init__(
        self,
        webhook_url: str,
        *,
        client: OpShift | None = None,
        outbox: Outbox | None = None,
        level: int | str = logging.ERROR,
        severity: Severity | SeverityMap | None = None,
        min_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problem = _validation.path_problem("webhook_url", webhook_url)
        if problem is not None:
            raise ConfigurationError(f"AlertHandler: {problem}.")
        handled = _level("level", level)
        self._severities = _severity_table(severity)
        self.min_interval = _validation.check_number("min_interval", min_interval, inclusive=True)
        if not callable(clock):
            raise ConfigurationError(f"clock must be callable, not {type(clock).__name__}.")
        _check_instance("client", client, OpShift)
        _check_instance("outbox", outbox, Outbox)
        if client is not None and outbox is not None and outbox.client is not client:
            raise ConfigurationError(
                "Pass client or outbox, not both: the outbox sends with its own client."
            )
        # Everything that can fail comes before logging.Handler.__init__, which registers
        # the handler for logging.shutdown(): a failed construction leaves nothing behind.
        owns_client = client is None and outbox is None
        if outbox is not None:
            client = outbox.client
        elif client is None:
            client = OpShift()
        try:  # the id, or the id of the dashboard's URL for it, checked before any record
            id_from(
                webhook_url, prefix=ALERT.prefix, id_name="webhook_url", base_url=client.base_url
            )
        except OpShiftError as error:
            if owns_client:
                client.close()
            raise ConfigurationError(f"AlertHandler: {error}") from error
        owns_outbox = outbox is None
        if outbox is None:
            try:
                outbox = Outbox(client)
            except BaseException:
                if owns_client:
                    client.close()
                raise
        super().__init__(handled)
        self.webhook_url = webhook_url
        self._owns_client = owns_client
        self.client = client
        self._owns_outbox = owns_outbox
        self.outbox = outbox
        self._clock = clock
        self._host = _text.clean(socket.gethostname(), _text.METADATA_TEXT_LIMIT)
        # (group_key, severity) -> [monotonic time of the last alert sent, repeats since],
        # in the order alerts were sent, oldest first, so pruning looks only at the front.
        self._groups: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._local = threading.local()
        # Alerts admitted and still being built outside the lock; close() waits for them
        # (for those admitted before it began: a storm at exit would keep it waiting).
        self._building = 0
        self._built = threading.Condition(self.lock)
        self._closing = False
        # Call site -> the metadata its records share. Read and filled without the lock:
        # each entry is whole when stored and never changed (a race makes one twice).
        self._sites: dict[tuple[object, ...], Metadata] = {}
        _handlers.add(self)  # for the fork hook below

    def handle(self, record: logging.LogRecord) -> bool:
        """Emit ``record`` unless it comes from the SDK, from inside this handler's emit, or
        a filter drops it.

        Unlike logging's own handlers, the handler's lock is not held around ``emit``:
        ``emit`` holds it only for the rate limit's bookkeeping. Building and queuing an
        alert needs no lock, and a thread preempted while it builds one then holds up no
        other logging thread (benchmarks/outbox_storm.py: 8 threads in an outage).
        """
        if _from_sdk(record.name) or getattr(self._local, "emitting", False):
            return False
        passed: bool | logging.LogRecord = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = passed
        if passed:
            self.emit(record)
        return bool(passed)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record as an alert (or count it against its group's rate limit).

        Never raises and never waits on the network; a failure is reported through
        ``handleError``.
        """
        if _from_sdk(record.name) or getattr(self._local, "emitting", False):
            return
        self._local.emitting = True
        try:
            self._emit(record)
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:
            self.handleError(record)
        finally:
            self._local.emitting = False

    def _emit(self, record: logging.LogRecord) -> None:
        exc_type = _text.exception_type(record)
        group_key = _text.group_key(record.name, str(record.msg), exc_type)
        severity = self._severity(record.levelno)
        key = (group_key, severity)
        if refuses_alerts(self.outbox):  # full: no alert to build, and nothing to wait for
            if self._admit(key, build=False) is not None:
                refused_alert(self.outbox, self.webhook_url)  # else counted on its group
            return
        admitted = self._admit(key)
        if admitted is None:
            return  # within the group's interval: counted, carried by its next alert
        mark, previous, waited_for = admitted
        try:
            suppressed = int(previous[1]) if previous is not None else 0
            self._queue(record, exc_type, group_key, severity, suppressed)
        except BaseException:
            self._readmit(key, mark, previous)  # a failed record uses up no interval
            raise
        finally:
            if waited_for:
                with self._built:
                    self._building -= 1
                    if not self._building:
                        self._built.notify_all()

    def _queue(
        self,
        record: logging.LogRecord,
        exc_type: str,
        group_key: str,
        severity: Severity,
        suppressed: int,
    ) -> None:
        """Build the record's alert and queue it on the outbox (no lock needed)."""
        message, trace = record.getMessage(), _text.trace(record, self.formatter)
        wire = caller(self.client)  # before any cut, so no fragment of the secret survives
        message = wire.redact(message, _REDACTED)
        trace = wire.redact(trace, _REDACTED)
        self.outbox.alert(
            self.webhook_url,
            title=_text.title(message, record),
            description=_text.description(message, trace) or None,
            severity=severity,
            metadata=self._metadata(record, exc_type, suppressed),
            group_key=group_key,
        )

    def _admit(
        self, key: tuple[str, Severity], *, build: bool = True
    ) -> tuple[list[float], list[float] | None, bool] | None:
        """Start the group's interval now, before its alert is built (outside the lock), so
        the group's records from other threads meanwhile are counted; None if the group is
        within its interval (this record is counted). Else (the new entry, the one before,
        whether ``close()`` waits for it: not once it has begun, nor when nothing is built).

        Holds logging's lock for the handler (renewed in a forked child) only for this.
        """
        self.acquire()
        try:
            now = self._clock()
            previous = self._groups.get(key)
            if previous is not None and now - previous[0] < self.min_interval:
                previous[1] += 1
                return None
            mark = self._groups[key] = [now, 0]
            waited_for = build and not self._closing
            if waited_for:
                self._building += 1
            self._groups.move_to_end(key)
            if len(self._groups) > _MAX_GROUPS:
                self._prune(now)
            return mark, previous, waited_for
        finally:
            self.release()

    def _readmit(
        self, key: tuple[str, Severity], mark: list[float], previous: list[float] | None
    ) -> None:
        """Undo ``_admit`` for a record whose alert could not be queued: the group's
        interval ends, so its next record goes at once, carrying every repeat counted
        (on the group's newer entry, if another alert began meanwhile)."""
        self.acquire()
        try:
            mark[0] = float("-inf")  # pruned already, or not: either way no interval runs
            if previous is not None:
                newer = self._groups.get(key)
                (newer if newer is not None else mark)[1] += previous[1]
        finally:
            self.release()

    def _prune(self, now: float) -> None:
        """Forget groups whose limit has run out, then the oldest, down to the cap.

        Forgetting a group costs at most its suppressed count and means its next record
        is sent at once: a flood of distinct messages errs toward sending, never silence.
        """
        groups = self._groups
        while groups:
            oldest = next(iter(groups.values()))
            if len(groups) <= _MAX_GROUPS and now - oldest[0] < self.min_interval:
                break
            groups.popitem(last=False)

    def _severity(self, levelno: int) -> Severity:
        table = self._severities
        found = table.get(levelno)
        if found is not None:
            return found
        below = [lvl for lvl in table if lvl <= levelno]
        return table[max(below)] if below else table[min(table)]

    def _metadata(self, record: logging.LogRecord, exc_type: str, suppressed: int) -> Metadata:
        site = (record.name, record.levelname, record.pathname, record.lineno,
                record.funcName, record.process, record.threadName)  # fmt: skip
        cached = self._sites.get(site)  # the same call site on the same thread: made once
        if cached is None:
            if len(self._sites) >= _MAX_SITES:
                self._sites.clear()
            cached = self._sites[site] = _text.site_metadata(record, self._host)
        metadata = dict(cached)
        if exc_type:
            metadata["exception"] = _text.clean(exc_type, _text.METADATA_TEXT_LIMIT)
        if suppressed:
            metadata["suppressed"] = suppressed
        return metadata

    def close(self) -> None:
        """Stop handling; close the outbox (flushing for its ``exit_timeout``) if the
        handler made it, and the client if it made that. A passed-in one stays open.

        At interpreter exit (``logging.shutdown``) the outbox has already had its exit
        flush: closing it takes only what is left of that one ``exit_timeout``."""
        self.acquire()
        try:
            self._closing = True
            if self._owns_outbox:
                # Alerts other threads began building reach the outbox before it closes.
                timeout, started = close_budget(self.outbox), time.monotonic()
                self._built.wait_for(lambda: not self._building, timeout)
                timeout = max(0.0, timeout - (time.monotonic() - started))
                self.outbox.close(timeout)  # a second close returns at once
            if self._owns_client:
                self.client.close()
        finally:
            self.release()
            super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<AlertHandler {self.webhook_url!r} ({level})>"


_handlers: weakref.WeakSet[AlertHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Alerts other threads were building at fork() are the parent's: the child's
    ``close()`` must not wait for them."""
    for handler in list(_handlers):
        handler._building = 0
        handler._built = threading.Condition(handler.lock)


if hasattr(os, "register_at_fork"):  # after logging's own hook (imported above)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _from_sdk(name: str) -> bool:
    return name == "opshift" or name.startswith("opshift.")


def _level(name: str, value: object) -> int:
    """A level number from an int or a registered name (``"ERROR"``, any case)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        if value.strip().isdigit():  # JSON object keys are always strings: {"45": "sev1"}
            return int(value)
        for candidate in (value, value.strip().upper()):
            number = logging.getLevelName(candidate)  # the number, for a registered name
            if isinstance(number, int):
                return number
    raise ConfigurationError(
        f"{name} must be a logging level: a number >= 0 or a name such as ERROR or "
        f"WARNING (got {value!r:.40})."
    )


def _severity_table(severity: object) -> dict[int, Severity]:
    """The level -> severity table: the defaults, overridden by ``severity``."""
    choices = _validation.choices_for("severity")
    if severity is None:
        return dict(DEFAULT_SEVERITIES)
    if isinstance(severity, str):
        if severity not in choices:
            raise ConfigurationError(
                f"severity must be one of {', '.join(choices)} or a mapping of levels to "
                f"them (got {severity!r:.40})."
            )
        return {logging.NOTSET: cast("Severity", severity)}
    if not isinstance(severity, Mapping):
        raise ConfigurationError(
            f"severity must be a severity such as 'sev1' or a mapping of levels to "
            f"severities, not {type(severity).__name__}."
        )
    table = dict(DEFAULT_SEVERITIES)
    for level, value in severity.items():
        if value not in choices:
            raise ConfigurationError(
                f"severity[{level!r:.40}] must be one of {', '.join(choices)} (got {value!r:.40})."
            )
        table[_level(f"severity key {level!r:.40}", level)] = value
    return table


def _check_instance(name: str, value: object, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        hint = (
            ' (in dictConfig, refer to it as "ext://module.attribute")'
            if isinstance(value, str)
            else ""
        )
        raise ConfigurationError(
            f"{name} must be an {kind.__name__}, not {type(value).__name__}{hint}."
        )
