"""Key columns: values equal in Python are equal in SQL, and long or clashing index
names still give distinct, valid columns."""

from __future__ import annotations

import datetime
import decimal
import functools
import types
import uuid

from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine.serialize import dumps, identity
from stepping_django.engine.stores import sql, sqlite
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.postgres import PostgresDialect
from stepping_django.engine.stores.sql import (
    MAX_IDENTIFIER_BYTES,
    Table,
    encode_datetime,
    encode_decimal_text,
    kind_name,
)
from stepping_django.engine.stores.sqlite import SQLiteDialect
from tests.conftest import needs_speedups
from tests.engine.stores.conftest import Backend

UTC = datetime.UTC
PARIS = datetime.timezone(datetime.timedelta(hours=1))


def test_aware_datetimes_encode_by_instant_and_sort_as_python() -> None:
    noon_utc = datetime.datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert encode_datetime(noon_utc) == encode_datetime(noon_utc.astimezone(PARIS))
    times = [
        datetime.datetime(2024, 1, 1, 12, 30, tzinfo=PARIS),
        datetime.datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 11, 59, 59, 999999, tzinfo=UTC),
    ]
    assert sorted(times, key=encode_datetime) == sorted(times)


def test_equal_decimals_encode_equal() -> None:
    assert encode_decimal_text(decimal.Decimal("1.0")) == encode_decimal_text(
        decimal.Decimal("1.00")
    )
    assert encode_decimal_text(decimal.Decimal("-0")) == encode_decimal_text(decimal.Decimal("0.0"))
    assert encode_decimal_text(decimal.Decimal("100")) == encode_decimal_text(
        decimal.Decimal("1E+2")
    )


def test_declared_types_choose_the_column_kind() -> None:
    assert kind_name(int) == ("int", False)
    assert kind_name(int | None) == ("int", True)
    assert kind_name(bool) == ("bool", False)
    assert kind_name(datetime.datetime) == ("datetime", False)
    assert kind_name(object) == ("blob", True)
    assert kind_name(int | str) == ("blob", True)
    assert kind_name(tuple[int, int]) == ("blob", True)


class Price(st.Data):
    amount: decimal.Decimal
    label: str


def test_a_decimal_key_finds_rows_stored_under_an_equal_decimal(backend: Backend) -> None:
    by_amount = st.Index.pick(Price, lambda p: p.amount)
    spec = StateSpec("prices", indexes=(by_amount,))
    row = Price(amount=decimal.Decimal("1.0"), label="a")
    with backend.connect() as conn:
        store = backend.store.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        store.begin(st.Time())
        store.state(spec).add(st.ZSetPython({row: 1}))
        store.commit(st.Time())
        found = store.state(spec).lookup(by_amount, [decimal.Decimal("1.00")])
    assert found == {decimal.Decimal("1.00"): {row: 1}}


def test_long_and_clashing_index_names_give_distinct_columns() -> None:
    long_name = "a_very_long_field_name_that_goes_on_and_on_" * 2
    long_a = st.Index(((long_name + "x"),), (int,), (True,), lambda r: r, False)
    long_b = st.Index(((long_name + "y"),), (int,), (True,), lambda r: r, False)
    up = st.Index(("n",), (int,), (True,), lambda r: r, False)
    down = st.Index(("n",), (int,), (False,), lambda r: r, False)
    spec = StateSpec("t", indexes=(long_a, long_b, up), ordered=(Ordered(down),))
    table = Table(spec, SQLiteDialect())
    names = [c.name for c in table.key_columns]
    assert len(set(names)) == 4
    assert all(len(n.encode()) <= MAX_IDENTIFIER_BYTES for n in names)
    assert "ixd__n__n" in names and "ixd__n__d__n" in names


class Reading(st.Data):
    meter: uuid.UUID | None
    at: datetime.datetime
    day: datetime.date
    value: float
    flag: bool
    note: str | None


readings = hs.builds(
    Reading,
    meter=hs.none() | hs.uuids(),
    at=hs.datetimes(timezones=hs.just(UTC)),
    day=hs.dates(),
    value=hs.floats(allow_nan=False),
    flag=hs.booleans(),
    note=hs.none() | hs.text(max_size=3),
)
KEYS = (
    st.Index.pick(Reading, lambda r: (r.meter, r.day, r.flag)),
    st.Index.pick(Reading, lambda r: r.at),
    st.Index.pick(Reading, lambda r: r.note),
    st.Index.pick(Reading, lambda r: (r.value, r.note)),
)


@given(readings, hs.integers(-(2**70), 2**70))
def test_a_rows_write_parameters_in_c_are_the_python_ones(row: Reading, c: int) -> None:
    """For each dialect, the same identity, data, key columns (typed, composite, nullable)
    and weight, bound the same way, with and without the encoding given."""
    needs_speedups()
    spec = StateSpec("readings", indexes=KEYS)
    for dialect in (SQLiteDialect(), PostgresDialect()):
        table = Table(spec, dialect)
        assert isinstance(table.write_row, functools.partial)
        rid, data = identity(row), dumps(row)
        for given_data in (None, data):
            made = table.write_row(row, rid, c, given_data)
            assert made == table._write_row_py(row, rid, c, given_data)
            assert [type(v) for v in made] == [
                type(v) for v in table._write_row_py(row, rid, c, given_data)
            ]


@given(hs.lists(readings, max_size=6))
def test_keys_encoded_and_bound_in_c_are_the_python_ones(rows: list[Reading]) -> None:
    """Each index's keys of the rows, encoded for a keyed read (keys with a None part set
    aside) and bound flat as SQLite binds them: the same values, types and order."""
    needs_speedups()
    for dialect in (SQLiteDialect(), PostgresDialect()):
        table = Table(StateSpec("readings", indexes=KEYS), dialect)
        for index, cols in table.columns.items():
            keys = [index.f(r) for r in rows]
            encodes = tuple(c.encoder for c in cols)
            made = sql.speedups.encode_parts(keys, index.is_composite, encodes)
            assert made == sql._encode_parts_py(keys, index.is_composite, encodes)
            params = tuple(c.kind.param for c in cols)
            flat = sql.speedups.bind_flat(made[0], params)
            assert flat == sqlite._bind_flat_py(made[0], params)
            assert [type(v) for v in flat] == [
                type(v) for v in sqlite._bind_flat_py(made[0], params)
            ]
