"""`make_store`: every engine test runs on every store.

Each parameter builds a fresh, empty store for a compiled graph. SQL stores join the list
as they are added; Postgres ones fail in CI (never skip) when the server is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stepping_django import engine as st

StoreMaker = Callable[[st.Graph], Any]


def _memory(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    yield st.StorePython.from_graph


STORES: dict[str, Callable[[pytest.FixtureRequest], Iterator[StoreMaker]]] = {
    "memory": _memory,
}


@pytest.fixture(params=list(STORES))
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    yield from STORES[request.param](request)
