"""Test isolation on the shared Postgres server: each store gets a fresh schema.

A schema per store (not per test) because hypothesis asks `make_store` for a new, empty
store for every example. The connection URL carries the schema as its `search_path`, so
any process (the seed's workers) that connects with it sees only that store's tables.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import psycopg

from tests.conftest import service_missing

POSTGRES_URL = os.environ.get("STEPPING_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
HOW_TO_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

_checked: dict[str, BaseException | None] = {}


def require_postgres() -> None:
    """Skip (fail in CI) when the server cannot be reached; tried once per session."""
    if POSTGRES_URL not in _checked:
        try:
            with psycopg.connect(POSTGRES_URL, connect_timeout=3):
                _checked[POSTGRES_URL] = None
        except psycopg.OperationalError as e:
            _checked[POSTGRES_URL] = e
    error = _checked[POSTGRES_URL]
    if error is not None:
        service_missing("Postgres", HOW_TO_START, error)


class Schemas:
    """Creates fresh schemas on one admin connection and drops them when told to."""

    def __init__(self) -> None:
        self._admin = psycopg.connect(POSTGRES_URL, autocommit=True)
        self.names: list[str] = []

    def new(self) -> str:
        """The name of a fresh, empty schema."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin.execute(f'CREATE SCHEMA "{name}"')
        self.names.append(name)
        return name

    def new_url(self) -> str:
        """The URL of a fresh, empty schema."""
        return url_for(self.new())

    def drop(self, name: str) -> None:
        self._admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self.names.remove(name)

    def close(self) -> None:
        for name in list(self.names):
            self.drop(name)
        self._admin.close()


def url_for(schema: str) -> str:
    return f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}"
