"""checks.py: bad declarations are reported with stable ids, naming view and parameter."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.test import override_settings

from stepping_django import engine as st
from stepping_django.checks import check_settings, check_views
from stepping_django.declare import IncrementalView
from stepping_django.registry import registry
from tests.testapp.incremental import CheckedPrice
from tests.testapp.models import PlainNote, Product, Settings


def report(*funcs: Any) -> list[tuple[str, str]]:
    views = [IncrementalView(f, app_label="t") for f in funcs]
    return [(m.id, m.msg) for m in check_views(views=views)]


def only(messages: list[tuple[str, str]]) -> tuple[str, str]:
    assert len(messages) == 1, messages
    return messages[0]


def test_the_project_views_are_clean() -> None:
    assert check_views() == []
    assert [m.id for m in checks.run_checks()] == []


def test_unannotated_parameter() -> None:
    def v(products) -> st.ZSet[CheckedPrice]:  # type: ignore[no-untyped-def]
        return products

    cid, msg = only(report(v))
    assert cid == "stepping_django.E001"
    assert "parameter 'products' of view t.v has no annotation" in msg


def test_no_parameters() -> None:
    def v() -> st.ZSet[CheckedPrice]:
        raise AssertionError

    assert only(report(v))[0] == "stepping_django.E001"


def test_unknown_model_and_non_zset_annotation() -> None:
    def v(a: st.ZSet["testapp.Nope"], b: list[int]) -> st.ZSet[CheckedPrice]:  # noqa: F821, UP037
        return a

    (c1, m1), (c2, m2) = report(v)
    assert c1 == c2 == "stepping_django.E002"
    assert "parameter 'a' of view t.v reads an unknown model" in m1 and "Nope" in m1
    assert "parameter 'b' of view t.v" in m2 and "is not st.ZSet[SomeModel]" in m2


def test_not_a_model() -> None:
    def v(a: st.ZSet[int]) -> st.ZSet[CheckedPrice]:
        return a

    cid, msg = only(report(v))
    assert cid == "stepping_django.E002" and "is not a Django model" in msg


def test_unsupported_field_type() -> None:
    def v(s: st.ZSet[Settings]) -> st.ZSet[CheckedPrice]:
        return s

    cid, msg = only(report(v))
    assert cid == "stepping_django.E003"
    assert "parameter 's' of view t.v" in msg and "testapp.Settings.options (JSONField)" in msg


def test_two_views_with_one_name() -> None:
    def v(p: st.ZSet[Product]) -> st.ZSet[CheckedPrice]:
        return st.map(p, f=lambda r: CheckedPrice(product_id=r.id, price=r.price))

    first = IncrementalView(v, app_label="t")
    second = IncrementalView(v, app_label="t")
    messages = check_views(views=[first, second])
    assert [m.id for m in messages] == ["stepping_django.E004"]
    assert "two views are named t.v" in messages[0].msg


def test_the_registry_keeps_a_duplicate_for_the_checks() -> None:
    def basket_totals(p: st.ZSet[Product]) -> st.ZSet[CheckedPrice]:
        return st.map(p, f=lambda r: CheckedPrice(product_id=r.id, price=r.price))

    dup = IncrementalView(basket_totals, app_label="testapp")
    registry.register(dup)
    try:
        assert registry.get("testapp.basket_totals") is not dup
        assert [m.id for m in check_views()] == ["stepping_django.E004"]
    finally:
        registry.duplicates.remove(dup)


def test_query_that_does_not_compile() -> None:
    def v(p: st.ZSet[Product]) -> st.ZSet[CheckedPrice]:
        return 42  # type: ignore[return-value]

    cid, msg = only(report(v))
    assert cid == "stepping_django.E005" and "view t.v cannot be compiled" in msg


def test_two_outputs() -> None:
    def v(p: st.ZSet[Product]):  # type: ignore[no-untyped-def]
        return p, p

    assert only(report(v))[0] == "stepping_django.E006"


class Bad(st.Data):
    weight: int
    where: tuple[int, int]


def test_output_rows_must_be_data_with_column_types() -> None:
    def v(p: st.ZSet[Product]) -> st.ZSet[Bad]:
        return p  # type: ignore[return-value]

    def w(p: st.ZSet[Product]) -> st.ZSet[int]:
        return p  # type: ignore[return-value]

    messages = report(v, w)
    assert [c for c, _ in messages] == [
        "stepping_django.E008",
        "stepping_django.E008",
        "stepping_django.E007",
    ]
    assert "Bad.weight clashes with a column" in messages[0][1]
    assert "output field 'where'" in messages[1][1]
    assert "view t.w: output rows <class 'int'> are not an st.Data class" in messages[2][1]


def test_untyped_output_and_model_without_step_manager_warn() -> None:
    def v(notes: st.ZSet[PlainNote]):  # type: ignore[no-untyped-def]
        return st.map(notes, f=lambda n: n.text)

    messages = report(v)
    assert [c for c, _ in messages] == ["stepping_django.W002", "stepping_django.W001"]
    assert "reads testapp.PlainNote, whose default manager Manager" in messages[1][1]


def test_stepping_setting() -> None:
    with override_settings(STEPPING={"EAGER": True, "BATCH": 3, "BATCH_SIZE": 0}):
        ids_msgs = [(m.id, m.msg) for m in check_settings()]
    assert ids_msgs == [
        ("stepping_django.E009", "STEPPING has an unknown key 'BATCH'"),
        ("stepping_django.E009", "STEPPING['BATCH_SIZE'] must be a positive int, not 0"),
    ]
