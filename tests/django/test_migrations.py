"""The app's and the test app's models match their migrations."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_migrate_builds_the_views_tables() -> None:
    from django.db import connection

    from stepping_django.registry import registry

    tables = set(connection.introspection.table_names())
    for view in registry.views():
        assert view.graph is not None
        assert view.model._meta.db_table in tables
        assert {s.name for s in view.graph.states} <= tables
