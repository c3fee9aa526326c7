"""What the nightly import writes: one row per import."""

from __future__ import annotations

from django.db import models


class Import(models.Model):
    """One run of the nightly import."""

    rows: models.IntegerField[int, int] = models.IntegerField()
