"""The output cache keeps every column type through inserts, updates and deletes, on SQLite
and on Postgres (whose writes go through one array parameter per column)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterator

import pytest

from stepping_django import engine as st
from stepping_django.apply import apply_view
from stepping_django.declare import IncrementalView
from tests.django.conftest import registered
from tests.testapp.models import Product


class Typed(st.Data):
    product_id: int
    name: str
    price: float
    exact: decimal.Decimal
    cheap: bool
    added_on: datetime.date | None
    at: datetime.datetime
    when: datetime.time
    lasts: datetime.timedelta
    key: uuid.UUID
    raw: bytes


def _typed(p: st.Data) -> Typed:
    return Typed(
        product_id=p.id,
        name=p.name + " \u00e9'\"",
        price=p.price / 4,
        exact=decimal.Decimal(p.price) / 8,
        cheap=p.price < 5,
        added_on=p.added_on,
        at=datetime.datetime(2024, 1, 1, p.price % 24, tzinfo=datetime.UTC),
        when=datetime.time(p.price % 24, 30),
        lasts=datetime.timedelta(seconds=p.price),
        key=uuid.UUID(int=p.price),
        raw=bytes([p.price % 256, 0]),
    )


def typed_products(products: st.ZSet[Product]) -> st.ZSet[Typed]:
    return st.map(products, f=_typed)


@pytest.fixture
def view() -> Iterator[IncrementalView]:
    with registered(IncrementalView(typed_products, app_label="testapp")) as v:
        yield v


@pytest.mark.django_db(transaction=True)
def test_every_column_type_round_trips(using: str, view: IncrementalView) -> None:
    products = Product.objects.using(using)
    a = products.create(name="a", price=3, added_on=datetime.date(2024, 2, 29))
    b = products.create(name="b", price=7)
    products.create(name="c", price=11)
    assert apply_view(view, using).status == "fresh"
    a.price = 4
    a.save(using=using)
    b.delete()
    products.create(name="d", price=3)
    assert apply_view(view, using).status == "fresh"
    assert view.maintained(using) == view.from_scratch(using)
    rows = {r.name: r for r in view.objects.using(using).all()}
    assert sorted(rows) == ["a \u00e9'\"", "c \u00e9'\"", "d \u00e9'\""]
    row = rows["a \u00e9'\""]
    assert (row.price, row.exact, row.cheap, row.added_on) == (
        1.0, decimal.Decimal("0.5"), True, datetime.date(2024, 2, 29),
    )  # fmt: skip
    assert row.at == datetime.datetime(2024, 1, 1, 4, tzinfo=datetime.UTC)
    assert (row.when, row.lasts, row.key) == (
        datetime.time(4, 30), datetime.timedelta(seconds=4), uuid.UUID(int=4),
    )  # fmt: skip
    assert bytes(row.raw) == b"\x04\x00" and row.weight == 1
