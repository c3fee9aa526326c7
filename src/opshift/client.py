"""The OpShift client: build the body, validate, sign, send through the transport, parse."""

from __future__ import annotations

import time

from . import _log, _validation
from ._call import ALERT, PING, Caller, fields_given
from ._config import DEFAULT_BASE_URL, check_base_url, check_secret, disabled_by_environment
from ._retry import RetryPolicy
from ._signing import Signer
from .errors import ConfigurationError, OpShiftError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from .heartbeat import Heartbeat
    from .monitor import JobMonitor
    from .transport import Transport
    from .types import AlertResponse, Metadata, PingResponse, PingStatus, Severity

__all__ = ["DEFAULT_BASE_URL", "OpShift", "caller"]

_MAX_RETRIES = 2  # the defaults of max_retries and retry_backoff, when neither is given
_RETRY_BACKOFF = 0.5


class OpShift:
    """A synchronous OpShift client: signed heartbeat pings and webhook alerts.

    One client is safe to share between threads. Every failure raises ``OpShiftError``
    (or a subclass); nothing else escapes a call.

    Args:
        secret: The team's webhook secret, 64 hex characters. Defaults to ``OPSHIFT_SECRET``.
        base_url: Where OpShift lives. Defaults to ``OPSHIFT_BASE_URL``, then
            ``https://www.opshift.io``. Point it at a self-hosted or local instance.
        timeout: Seconds for the whole call: connect, send, wait, read, retries and backoff.
        max_retries: Extra attempts after a network error or a 500/502/503/504 (0 for none);
            2 when neither this nor ``retry_policy`` is given.
        retry_backoff: Base of the exponential backoff between attempts, in seconds (0.5
            when not given).
        retry_policy: A ``RetryPolicy`` instead of ``max_retries`` and ``retry_backoff``
            (e.g. with an injected ``sleep`` in tests).
        transport: A callable ``(url, body, headers, timeout) -> (status, body_bytes)``;
            defaults to ``UrllibTransport()``.
        enabled: ``False`` turns the client into a no-op that still validates every call:
            no secret needed, no network, no threads. For CI runs and laptops without a
            secret. Left out (None), ``OPSHIFT_DISABLED=1`` in the environment decides; an
            explicit ``True`` or ``False`` wins over the environment.

    Raises:
        ConfigurationError: A setting is invalid, e.g. the secret is not 64 hex characters.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_policy: RetryPolicy | None = None,
        transport: Transport | None = None,
        enabled: bool | None = None,
    ) -> None:
        if enabled is not None and not isinstance(enabled, bool):
            raise ConfigurationError(
                f"enabled must be True, False or None for the environment's OPSHIFT_DISABLED "
                f"(got {enabled!r:.40})."
            )
        by_environment = enabled is None and disabled_by_environment()
        enabled = enabled is not False and not by_environment
        # Disabled, nothing is signed: a placeholder secret in CI must not fail start-up.
        signer = Signer(check_secret(secret)) if enabled else None
        base_url = check_base_url(base_url)
        if retry_policy is None:
            retry_policy = RetryPolicy(
                _MAX_RETRIES if max_retries is None else max_retries,
                _RETRY_BACKOFF if retry_backoff is None else retry_backoff,
            )
        elif max_retries is not None or retry_backoff is not None:
            raise ConfigurationError(
                "Pass either retry_policy or max_retries/retry_backoff, not both; "
                "e.g. RetryPolicy(max_retries=0)."
            )
        if transport is not None and not callable(transport):
            raise ConfigurationError(
                "transport must be callable as transport(url, body, headers, timeout) -> "
                f"(status, body); got {type(transport).__name__}."
            )
        owns_transport = transport is None
        if transport is None and enabled:
            from .transport import UrllibTransport

            transport = UrllibTransport()
        self._setup(
            Caller(base_url, signer, transport),
            timeout=timeout,
            retry_policy=retry_policy,
            owns_transport=owns_transport,
        )
        if not enabled:
            _log.logger().info(
                "OpShift is disabled (%s): calls are validated, nothing is sent.",
                "OPSHIFT_DISABLED is set" if by_environment else "enabled=False",
            )

    def _setup(
        self,
        caller: Caller,
        *,
        timeout: float,
        retry_policy: RetryPolicy,
        owns_transport: bool,
    ) -> None:
        """Set every attribute, for the constructor and ``with_options`` alike."""
        if not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError(
                f"retry_policy must be a RetryPolicy, not {type(retry_policy).__name__}."
            )
        self._caller = caller
        self.base_url = caller.base_url
        self.timeout = _validation.check_number("timeout", timeout)
        self.retry_policy = retry_policy
        self._owns_transport = owns_transport

    @property
    def enabled(self) -> bool:
        """False when the client is a validating no-op (``enabled=False`` or OPSHIFT_DISABLED)."""
        return self._caller.signer is not None

    @property
    def transport(self) -> Transport:
        """The transport calls go through (the default is built only for an enabled client)."""
        caller = self._caller
        if caller.transport is None:
            from .transport import UrllibTransport

            caller.transport = UrllibTransport()
        return caller.transport

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> OpShift:
        """A client sharing this one's secret and transport, with some settings changed.

        Cheap (no I/O, no new transport) and the original is untouched, e.g. for a job that
        must not wait 30 s on an outage: ``client.with_options(timeout=3).monitor("backup")``.
        Closing the copy leaves the shared transport open.

        Raises:
            ConfigurationError: A setting is invalid.
        """
        policy = self.retry_policy if retry_policy is None else retry_policy
        changes: dict[str, Any] = {}
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if retry_backoff is not None:
            changes["backoff"] = retry_backoff
        if changes and isinstance(policy, RetryPolicy):
            policy = policy.replace(**changes)
        copy = OpShift.__new__(OpShift)
        copy._setup(
            self._caller,
            timeout=self.timeout if timeout is None else timeout,
            retry_policy=policy,
            owns_transport=False,
        )
        return copy

    @property
    def max_retries(self) -> int:
        """Extra attempts after a retryable failure."""
        return self.retry_policy.max_retries

    def ping(
        self,
        ping_token: str,
        *,
        status: PingStatus | None = None,
        reason: str | None = None,
        group_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> PingResponse:
        """Send a heartbeat: ``POST {base_url}/api/ping/{ping_token}``.

        Only the fields you pass are sent; with none, the body is empty (and signed).

        Args:
            ping_token: The monitor's ping token from the dashboard.
            status: ``"up"`` (the server's default) or ``"down"`` to raise an incident now.
            reason: Why, at most 200 characters; drives down-to-down deduplication.
            group_key: Routing hint for the alert, at most 200 characters.
            metadata: A JSON object stored on the ping (100 KB, 10 levels at most).

        Returns:
            The response: ``message``, ``monitor`` (name, status, monitoringActive) and
            ``pingStatus``.

        Raises:
            BadRequestError: A field breaks a documented limit (nothing is sent) or OpShift
                rejected it.
            OpShiftError: Any other failure; see the subclasses in ``opshift.errors``.
        """
        fields = fields_given(status=status, reason=reason, group_key=group_key, metadata=metadata)
        path, body = self._caller.prepare(PING, ping_token, fields)
        if self._caller.signer is None:
            return _disabled_ping(ping_token, status)
        return self._send(path, body)  # type: ignore[no-any-return]

    def alert(
        self,
        webhook_url: str,
        *,
        title: str,
        description: str | None = None,
        severity: Severity | None = None,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> AlertResponse:
        """Raise an alert: ``POST {base_url}/api/alerts/trigger/{webhook_url}``.

        Args:
            webhook_url: The webhook's id from the dashboard (e.g. ``"deploy-failures"``).
            title: Required, at most 200 characters.
            description: At most 2000 characters.
            severity: ``"sev0"`` (critical) to ``"sev4"`` (informational); overrides the
                webhook's default.
            metadata: A JSON object for filter rules (100 KB, 10 levels at most).
            group_key: Alerts with the same key fold into the one open alert.

        Returns:
            The response; ``status`` is ``created``, ``occurrence_added``, ``reopened`` or
            ``filtered`` (then ``reason`` says why and there is no ``alertId``).

        Raises:
            BadRequestError: A field breaks a documented limit (nothing is sent) or OpShift
                rejected it.
            OpShiftError: Any other failure; see the subclasses in ``opshift.errors``.
        """
        fields = fields_given(
            title=title,
            description=description,
            severity=severity,
            metadata=metadata,
            group_key=group_key,
        )
        path, body = self._caller.prepare(ALERT, webhook_url, fields)
        if self._caller.signer is None:
            return _disabled_alert()
        return self._send(path, body)  # type: ignore[no-any-return]

    def monitor(
        self,
        ping_token: str,
        *,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> JobMonitor:
        """Report a job's outcome: ``up`` on success, ``down`` with the exception on failure.

        Use as ``with client.monitor("token"):``, ``async with``, or as a decorator of sync
        or async functions. The job's exception always propagates unchanged; a failed ping
        is logged, never raised. See ``opshift.monitor.JobMonitor``.
        """
        from .monitor import JobMonitor

        return JobMonitor(self, ping_token, metadata=metadata, group_key=group_key)

    def heartbeat(
        self, ping_token: str, *, interval: float = 60.0, metadata: Metadata | None = None
    ) -> Heartbeat:
        """Start pinging ``up`` now and every ``interval`` seconds from a daemon thread.

        Like ``open()``, the call starts it: ``hb = client.heartbeat("token")`` then
        ``hb.stop()``, or ``with client.heartbeat("token"):`` to stop it when the block
        ends. Failures are logged and retried next tick. See ``opshift.heartbeat.Heartbeat``.

        Raises:
            ConfigurationError: ``interval`` is not a finite number of seconds up to a day.
            BadRequestError: ``ping_token`` or ``metadata`` breaks a documented limit.
        """
        from .heartbeat import Heartbeat

        return Heartbeat(self, ping_token, interval=interval, metadata=metadata).start()

    def close(self) -> None:
        """Release the default transport's resources; a transport you passed is yours to close."""
        close = getattr(self._caller.transport, "close", None)
        if self._owns_transport and callable(close):
            close()

    def __enter__(self) -> OpShift:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        disabled = "" if self.enabled else ", enabled=False"
        return (
            f"OpShift(base_url={self.base_url!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries!r}{disabled})"
        )

    def _send(self, path: str, body: bytes) -> Any:
        """POST unsigned bytes, signed per attempt, retrying per the policy within one
        deadline; return OpShift's JSON object."""
        caller = self._caller
        if caller.transport is None:
            self.transport  # noqa: B018 - builds the default transport
        policy = self.retry_policy
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                status, result = caller.send_once(path, body, deadline - started)
            except OpShiftError as error:
                now = time.monotonic()
                wait = policy.delay(error, attempt, deadline - now, self.timeout)
                if _log.debug_enabled():
                    _log.logger().debug(
                        "POST %s failed in %.1f ms (attempt %d/%d): %s%s",
                        path,
                        (now - started) * 1000,
                        attempt,
                        policy.max_retries + 1,
                        error,
                        "" if wait is None else f"; retrying in {wait:.3f} s",
                    )
                if wait is None:
                    raise
                policy.sleep(wait)
                continue
            if _log.debug_enabled():
                _log.logger().debug(
                    "POST %s -> %d in %.1f ms (attempt %d/%d)",
                    path,
                    status,
                    (time.monotonic() - started) * 1000,
                    attempt,
                    policy.max_retries + 1,
                )
            return result


def caller(client: OpShift) -> Caller:
    """The client's wire seam (prepare, send once), for the SDK's own ``Outbox`` and
    ``AlertHandler``: they share its secret, base_url and transport, never its retries."""
    return client._caller


_DISABLED_REASON = (
    "The OpShift SDK is disabled (enabled=False or OPSHIFT_DISABLED); nothing was sent."
)


def _disabled_ping(ping_token: str, status: PingStatus | None) -> PingResponse:
    """What a disabled client's ping returns: the documented shape, saying nothing was sent."""
    sent: PingStatus = status or "up"
    return {
        "message": "OpShift disabled",
        "monitor": {"name": ping_token, "status": sent, "monitoringActive": False},
        "pingStatus": sent,
    }


def _disabled_alert() -> AlertResponse:
    """What a disabled client's alert returns: ``filtered``, with the reason."""
    return {"status": "filtered", "message": "OpShift disabled", "reason": _DISABLED_REASON}
