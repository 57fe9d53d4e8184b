"""Fixtures of the Django tests: `using` runs a test on SQLite and on Postgres.

A test that takes `using` gets the `django_db` marker for that database added here.
When Postgres is not reachable, its Postgres half fails in CI and is skipped elsewhere
(`tests.conftest.service_missing`), and the session does not try to create its database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from stepping_django import triggers
from stepping_django.declare import IncrementalView
from stepping_django.registry import registry
from tests.conftest import service_missing

PG_HOW = "pg_ctlcluster 15 main start  (server at 127.0.0.1:5432 with a database `test`)"


def _probe_postgres() -> BaseException | None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["postgres"]
    try:
        psycopg.connect(
            host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=db["USER"], connect_timeout=3
        ).close()
    except Exception as e:
        return e
    return None


PG_ERROR: BaseException | None = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global PG_ERROR
    wants_pg = [
        i
        for i in items
        if getattr(i, "callspec", None) and i.callspec.params.get("using") == "postgres"
    ]
    if wants_pg:
        PG_ERROR = _probe_postgres()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "using" not in callspec.params:
            continue
        marker = item.get_closest_marker("django_db")
        kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
        databases = ["default"]
        if callspec.params["using"] == "postgres":
            item.add_marker(pytest.mark.postgres)
            if PG_ERROR is None:
                databases.append("postgres")
        kwargs["databases"] = databases
        item.add_marker(pytest.mark.django_db(**kwargs), append=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and PG_ERROR is not None:
        service_missing("Postgres", PG_HOW, PG_ERROR)


@pytest.fixture(params=["default", "postgres"])
def using(request: pytest.FixtureRequest) -> str:
    """The database alias a test runs on: SQLite (`default`) or Postgres (`postgres`)."""
    return str(request.param)


def assert_views_fresh(using: str) -> None:
    """Every usable view equals a from-scratch computation over the current tables."""
    from stepping_django.models import Outbox

    for view in registry.views():
        maintained = view.maintained(using)
        expected = view.from_scratch(using)
        assert maintained == expected, (
            f"{view.label} on {using} ({connections[using].vendor}): maintained "
            f"{sorted(map(repr, maintained.iter()))} != from scratch "
            f"{sorted(map(repr, expected.iter()))}"
        )
    assert not Outbox.objects.using(using).exists()


@pytest.fixture
def signal_capture(using: str) -> Iterator[None]:
    """Capture by signals and StepManager on both databases: Postgres's capture triggers
    (triggers.py) are dropped while the test runs, and installed again after it."""
    if using != "postgres":
        yield
        return
    triggers.uninstall(using)
    try:
        yield
    finally:
        if connections[using].in_atomic_block:
            triggers.forget()  # the test's transaction, rolled back next, drops nothing
        else:
            triggers.install(using)


@contextmanager
def registered(view: IncrementalView) -> Iterator[IncrementalView]:
    """`view` registered (its models' capture connected) while the block runs: for views
    that are not in tests/testapp/incremental.py."""
    if view not in registry.all_views():
        registry.register(view)
    try:
        yield view
    finally:
        registry.unregister(view.label)
