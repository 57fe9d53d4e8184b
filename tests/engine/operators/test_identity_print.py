"""identity_print: passes each change on unchanged and prints it."""

from __future__ import annotations

import pytest

from stepping_django import engine as st
from tests.engine.operators.driver import (
    Item,
    Step,
    StoreMaker,
    check_incremental,
    items,
    steps,
    store_property,
)


def printed(a: st.ZSet[Item]) -> st.ZSet[Item]:
    return st.identity_print(st.filter(a, f=lambda i: i.value > 0))


@store_property(run=steps(items, max_steps=3))
def test_identity_print_passes_changes_on_unchanged(
    make_store: StoreMaker, run: list[Step]
) -> None:
    check_incremental(make_store, printed, run)


def test_identity_print_prints_the_change(
    make_store: StoreMaker, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = st.compile(printed)
    store = make_store(graph)
    (out,) = st.iteration(store, graph, (st.ZSetPython({Item(key=7, value=3): 2}),))
    assert out == st.ZSetPython({Item(key=7, value=3): 2})
    shown = capsys.readouterr().out
    assert "Item(key=7, value=3)" in shown and "│ " in shown
