"""The table of parallel application (pipeline.py): the batches claimed and not finished.

Kept apart from models.py; the app config imports it so Django registers the model.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PipelineBatch(models.Model):
    """One batch of a parallel view, claimed at time `time` on the view's tables tagged
    `tables`, whose iteration has not finished. A worker holds a Postgres advisory lock
    for it (`pipeline.lock_key`) while it runs, so a row whose lock is free belongs to a
    dead worker. `error` set: the batch failed part-way, and the view's tables must be
    rebuilt before any later batch is claimed."""

    id = models.BigAutoField(primary_key=True)
    view = models.CharField(max_length=200)
    tables = models.CharField(max_length=16, blank=True, default="")
    time = models.BigIntegerField()
    keys = models.IntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    error = models.TextField(blank=True, default="")

    class Meta:
        app_label = "stepping_django"
        verbose_name_plural = "pipeline batches"
        constraints = [
            models.UniqueConstraint(fields=["view", "tables", "time"], name="stepping_batch_time")
        ]

    def __str__(self) -> str:
        return f"{self.view} t={self.time}" + (" (failed)" if self.error else "")
