"""The app's own tables: the outbox of captured keys, each view's state, its input snapshots.

These are ordinary managed models with migrations. The tables of the views themselves
(delay vertices, output caches) depend on the project's views and are unmanaged; see
`cache_models.py`.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class Outbox(models.Model):
    """One captured write: the key (model, pk) of a row some view reads, written in the
    writer's transaction. `object_pk` NULL means "any row of the model may have changed".

    Applying a view reads the current rows for its pending keys, diffs them against the
    view's snapshot, and deletes exactly the outbox rows it read, in one transaction.
    """

    id = models.BigAutoField(primary_key=True)
    view = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    object_pk = models.CharField(max_length=255, null=True)
    #: When the key was captured. Capture's INSERT leaves it to the database's clock
    #: (db_default: STATEMENT_TIMESTAMP() on Postgres), one parameter fewer per row.
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    #: The tag of the view's build these keys were handed to (build.py); "" for the view's
    #: own pending keys.
    build = models.CharField(max_length=16, blank=True, db_default="")

    class Meta:
        verbose_name_plural = "outbox"
        indexes = [models.Index(fields=["view", "id"], name="stepping_outbox_view_id")]

    def __str__(self) -> str:
        return f"{self.view}: {self.model} pk={self.object_pk}"


class ViewState(models.Model):
    """Where one view stands in this database: version, time, health."""

    NEW = "new"
    FRESH = "fresh"
    FAILED = "failed"
    STATUS_CHOICES = [(NEW, "new"), (FRESH, "fresh"), (FAILED, "failed")]

    view = models.CharField(max_length=200, primary_key=True)
    graph_identifier = models.CharField(max_length=64, default="")
    time = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=NEW)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    applied_keys = models.BigIntegerField(default=0)
    #: The tag of the tables reads and applying use ("" for the first build's tables).
    tables = models.CharField(max_length=16, blank=True, default="")
    #: A build in progress (see build.py): the version it builds, its tables' tag, and
    #: when it started and last made progress (a build silent for long is abandoned).
    building_version = models.CharField(max_length=64, blank=True, default="")
    building_tables = models.CharField(max_length=16, blank=True, default="")
    build_started_at = models.DateTimeField(null=True, blank=True)
    build_heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.view} ({self.status}, t={self.time})"


class Snapshot(models.Model):
    """The row of one input key as a view last applied it (msgpack of its st.Data row)."""

    view = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    object_pk = models.CharField(max_length=255)
    row = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["view", "model", "object_pk"], name="stepping_snapshot_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.view}: {self.model} pk={self.object_pk}"
