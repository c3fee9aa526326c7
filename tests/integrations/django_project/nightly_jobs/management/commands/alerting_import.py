"""A monitored command that fails and raises an alert too."""

from typing import Any

from opshift.integrations.django import MonitoredCommand


class Command(MonitoredCommand):
    """Fail, with an alert on the import-failures webhook."""

    opshift_token = "alerting-import"
    opshift_alert_webhook = "import-failures"
    opshift_alert_severity = "sev2"

    def handle(self, *args: Any, **options: Any) -> None:
        raise KeyError("customer 12")
