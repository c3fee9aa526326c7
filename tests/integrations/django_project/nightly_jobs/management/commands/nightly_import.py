"""A monitored command that imports rows into SQLite (and fails when told to)."""

from typing import Any

from django.core.management.base import CommandError, CommandParser

from opshift.integrations.django import MonitoredCommand

from ...models import Import


class Command(MonitoredCommand):
    """Import the night's rows; --fail raises CommandError, --crash a plain exception."""

    help = "Import the night's rows."
    opshift_token = "nightly-import"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=3)
        parser.add_argument("--fail", action="store_true")
        parser.add_argument("--crash", action="store_true")
        parser.add_argument("--exit", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["fail"]:
            raise CommandError("the feed is empty")
        if options["crash"]:
            raise ZeroDivisionError("division by zero in row 7")
        if options["exit"] is not None:
            raise SystemExit(options["exit"])
        Import.objects.create(rows=options["rows"])
        self.stdout.write(f"imported {Import.objects.count()} batches")
