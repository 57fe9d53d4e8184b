"""A SQL state's known rows: each stored row decoded once, each row encoded once, and the
C KnownRows answering every call as the Python one does."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.serialize import dumps, identity, loads
from stepping_django.engine.stores import known
from tests.conftest import PURE_PYTHON, needs_speedups


class Reading(st.Data):
    meter: int
    value: float


def all_known_rows() -> list[Any]:
    kinds: list[Any] = [known.KnownRows(limit=3)]
    if not PURE_PYTHON:
        kinds.append(needs_speedups().KnownRows(loads, 3))
    return kinds


def test_the_c_known_rows_are_in_use() -> None:
    needs_speedups()
    assert type(known.known_rows()) is known.speedups.KnownRows


def test_a_stored_row_is_decoded_once_and_carries_its_identity() -> None:
    row = Reading(meter=1, value=2.5)
    rid = identity(row)
    for rows in all_known_rows():
        first = rows.load(bytearray(rid), memoryview(dumps(row)))
        assert first == row and first is not row and first._st_id == rid
        assert rows.load(rid, b"not read again") is first
        assert rows.get(rid) is first and rows.id_of(row) == rid and rows.id(row) == rid


rows_made = hs.builds(
    Reading, meter=hs.integers(0, 4), value=hs.sampled_from([0.5, 1.0])
) | hs.tuples(hs.integers(0, 4), hs.text(max_size=2))
calls = hs.lists(
    hs.tuples(
        hs.sampled_from(
            ["load", "id", "keep", "get", "id_of", "id_and_data", "load_by", "replacements"]
        ),
        rows_made,
        rows_made,
    )
)


def key_of(row: Any) -> Any:
    return row.meter if isinstance(row, Reading) else row[0]


@given(calls)
def test_the_c_known_rows_answer_every_call_as_the_python_ones(script: list[Any]) -> None:
    """Calls in any order, past the limit (when both empty themselves and start again),
    bound and not."""
    needs_speedups()
    kinds = all_known_rows()
    answers: list[list[Any]] = [[], []]
    for rows, out in zip(kinds, answers):
        for call, row, other in script:
            rid = identity(row)
            if call == "id_and_data":
                out.append(rows.id_and_data(row))
            elif call == "load_by":
                found = [(rid, dumps(row), 2), (identity(other), dumps(other), -1)]
                out.append(rows.load_by(found, key_of))
            elif call == "replacements":
                for bind in (None, bytearray):
                    out.append(rows.replacements([(row, other, 3), (other, row, -1)], bind))
            elif call == "load":
                out.append(rows.load(rid, dumps(row)))
            elif call == "id":
                out.append(rows.id(row))
            elif call == "keep":
                out.append(rows.keep(rid, row))
            elif call == "get":
                out.append(rows.get(rid))
            else:
                out.append(rows.id_of(row))
    assert answers[0] == answers[1]
