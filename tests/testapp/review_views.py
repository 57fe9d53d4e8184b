"""A view over reviews, whose product key Django sets to NULL when the product is deleted
(on_delete=SET_NULL, an update without signals). Registered by the tests that use it."""

from __future__ import annotations

from stepping_django import engine as st
from stepping_django import incremental_view
from tests.testapp.models import Review


class ProductStars(st.Data):
    product_id: int | None
    stars: int


@incremental_view
def stars_by_product(reviews: st.ZSet[Review]) -> st.ZSet[ProductStars]:
    sums = st.group_reduce_flatten(
        reviews,
        by=st.Index.pick(Review, lambda r: r.product_id),
        zero=int,
        pick_value=lambda r: r.stars,
    )
    return st.map(sums, f=lambda p: ProductStars(product_id=p.right, stars=p.left))
