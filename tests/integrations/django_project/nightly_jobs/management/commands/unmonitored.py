"""A MonitoredCommand with no token: it runs and sends nothing."""

from typing import Any

from opshift.integrations.django import MonitoredCommand


class Command(MonitoredCommand):
    """Say hello."""

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("hello")
