"""The app config: wiring only, in named steps; the logic lives in the modules it names."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.core import checks
from django.db import connections
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


def build_views_on_migrate(sender: AppConfig, using: str = "default", **kwargs: object) -> None:
    """After `migrate`, install the capture triggers (Postgres) and build the views whose
    tables are missing or out of date."""
    from stepping_django import triggers
    from stepping_django.apply import ensure_views
    from stepping_django.models import Outbox

    if Outbox._meta.db_table in connections[using].introspection.table_names():
        triggers.install(using)
    ensure_views(using=using)


class SteppingConfig(AppConfig):
    name = "stepping_django"
    verbose_name = "Incremental views"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from stepping_django import capture
        from stepping_django import checks as stepping_checks

        import_module("stepping_django.pipeline_models")  # registers PipelineBatch
        autodiscover_modules("incremental")
        capture.connect_signals()
        checks.register(stepping_checks.check_views, checks.Tags.models)
        checks.register(stepping_checks.check_settings)
        checks.register(stepping_checks.check_unbuilt_versions, checks.Tags.database)
        checks.register(stepping_checks.check_capture_triggers, checks.Tags.database)
        post_migrate.connect(build_views_on_migrate, sender=self)
