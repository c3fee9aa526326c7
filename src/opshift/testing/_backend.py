"""What the local server and the fake transport share: the controls of one ``Model``."""

from __future__ import annotations

from ._model import Alert, Model, Monitor, RecordedRequest

__all__ = ["Backend"]


class Backend:
    """The controls OpShiftServer and FakeTransport share: set up state, read what arrived."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.add_monitor = model.add_monitor
        self.add_webhook = model.add_webhook
        self.pause = model.pause
        self.resume = model.resume
        self.resolve_alert = model.resolve_alert
        self.fail_next = model.fail_next

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return self.model.requests

    @property
    def monitors(self) -> dict[str, Monitor]:
        """Monitors by ping token."""
        return self.model.monitors

    @property
    def alerts(self) -> list[Alert]:
        """Alerts in creation order."""
        return self.model.alerts

    @property
    def subscription_active(self) -> bool:
        """Set False to answer 403, as for an expired subscription."""
        return self.model.subscription_active

    @subscription_active.setter
    def subscription_active(self, value: bool) -> None:
        self.model.subscription_active = value
