"""Rows that Django updates without signals when the row they point to is deleted
(on_delete=SET_NULL) are captured on that row's pre_delete, in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import transaction

from stepping_django import maintenance
from stepping_django.apply import apply_pending, ensure_views
from stepping_django.declare import IncrementalView
from stepping_django.models import Outbox
from tests.django.conftest import registered
from tests.testapp.models import Product, Review

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


@pytest.fixture
def stars_view() -> Iterator[IncrementalView]:
    from tests.testapp import review_views

    with registered(review_views.stars_by_product) as view:
        yield view


def test_deleting_a_product_captures_the_reviews_set_to_null(
    stars_view: IncrementalView, using: str
) -> None:
    ensure_views(using)
    tv, radio = (Product.objects.using(using).create(name=n, price=1) for n in ("tv", "radio"))
    reviews = [
        Review.objects.using(using).create(product=p, stars=s)
        for p, s in ((tv, 5), (tv, 3), (radio, 4))
    ]
    apply_pending(using)

    def rows() -> list[tuple[int | None, int]]:
        return sorted(stars_view.objects.using(using).values_list("product_id", "stars"), key=str)

    assert rows() == sorted([(radio.pk, 4), (tv.pk, 8)], key=str)
    Outbox.objects.using(using).all().delete()

    tv_pk = tv.pk
    with transaction.atomic(using=using):  # seen before the commit applies it
        tv.delete()
        captured = set(
            Outbox.objects.using(using)
            .filter(view=stars_view.label)
            .values_list("model", "object_pk")
        )
    assert captured == {("testapp.Review", str(r.pk)) for r in reviews[:2]}
    apply_pending(using)
    assert rows() == sorted([(None, 8), (radio.pk, 4)], key=str)
    assert tv_pk not in {p for p, _ in rows()}
    assert maintenance.verify(stars_view, using).ok
