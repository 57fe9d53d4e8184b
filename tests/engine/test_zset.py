"""Z-sets in memory: weights add, zero weights are never stored, iteration by index."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as hs

from stepping_django import engine as st
from stepping_django.engine import zset
from tests.conftest import needs_speedups
from tests.engine.operators.driver import Item, Tag

weights = hs.integers(-3, 3)
zsets: hs.SearchStrategy[st.ZSetPython[int]] = hs.lists(
    hs.tuples(hs.integers(0, 5), weights), max_size=8
).map(st.ZSetPython)


def as_dict(z: st.ZSetPython[Any]) -> dict[Any, int]:
    return dict(z.iter())


@given(a=zsets, b=zsets)
def test_add_sums_weights_row_by_row(a: st.ZSetPython[int], b: st.ZSetPython[int]) -> None:
    total = a + b
    for row in set(as_dict(a)) | set(as_dict(b)):
        assert total.get_count(row) == a.get_count(row) + b.get_count(row)
    assert 0 not in as_dict(total).values()


@given(a=zsets, b=zsets, c=zsets)
def test_add_is_commutative_and_associative(
    a: st.ZSetPython[int], b: st.ZSetPython[int], c: st.ZSetPython[int]
) -> None:
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)


@given(a=zsets)
def test_a_zset_minus_itself_is_empty(a: st.ZSetPython[int]) -> None:
    assert (a - a).data == {}
    assert (a + (-a)).empty()
    assert -a == a * -1
    assert st.neg(st.neg(a)) == a


@given(a=zsets, b=zsets)
def test_subtraction_undoes_addition(a: st.ZSetPython[int], b: st.ZSetPython[int]) -> None:
    assert (a + b) - b == a


@given(a=zsets)
def test_adding_does_not_change_its_operands(a: st.ZSetPython[int]) -> None:
    before = dict(a.data)
    _ = a + st.ZSetPython({0: 1, 1: -1})
    _ = -a
    _ = a * 3
    assert a.data == before


@given(entries=hs.lists(hs.tuples(hs.integers(0, 3), weights), max_size=10))
def test_weight_zero_is_never_stored(entries: list[tuple[int, int]]) -> None:
    z = st.ZSetPython(entries)
    assert 0 not in z.data.values()
    assert len(z) == len(z.data) == len(list(z.iter()))
    expected: dict[int, int] = {}
    for row, w in entries:
        expected[row] = expected.get(row, 0) + w
    assert z.data == {row: w for row, w in expected.items() if w}
    assert st.ZSetPython({1: 0, 2: 1}).data == {2: 1}
    assert (z * 0).data == {}


def test_iter_gives_each_row_once_with_its_weight() -> None:
    z = st.ZSetPython([(1, 2), (2, -1), (1, 1)])
    assert sorted(z.iter()) == [(1, 3), (2, -1)]
    assert list(z.iter(match=[2, 7])) == [(2, -1)]


def test_iter_by_index_orders_by_key_then_identity_and_filters_keys() -> None:
    by_key = st.Index.pick(Item, lambda i: i.key)
    rows = [Item(key=k, value=v) for k in (2, 0, 1) for v in (1, 0)]
    z = st.ZSetPython({row: 1 + row.value for row in rows})
    keys = [k for k, _, _ in z.iter_by_index(by_key)]
    assert keys == [0, 0, 1, 1, 2, 2]
    assert sorted(c for _, _, c in z.iter_by_index(by_key, [2])) == [1, 2]
    assert {row for _, row, _ in z.iter_by_index(by_key, [2, 5])} == {
        Item(key=2, value=0),
        Item(key=2, value=1),
    }


def test_iter_by_index_is_the_same_whatever_the_insertion_order() -> None:
    by_key = st.Index.pick(Item, lambda i: i.key)
    rows = [Item(key=k % 2, value=k) for k in range(6)]
    forward = st.ZSetPython({row: 1 for row in rows})
    backward = st.ZSetPython({row: 1 for row in reversed(rows)})
    assert list(forward.iter_by_index(by_key)) == list(backward.iter_by_index(by_key))


def test_iter_by_index_puts_none_first_ascending_and_last_descending() -> None:
    rows = {Tag(key=k, label="a"): 1 for k in (1, None, 0)}
    z = st.ZSetPython(rows)
    up = st.Index.pick(Tag, lambda t: t.key)
    down = st.Index.pick(Tag, lambda t: t.key, ascending=False)
    assert [k for k, _, _ in z.iter_by_index(up)] == [None, 0, 1]
    assert [k for k, _, _ in z.iter_by_index(down)] == [1, 0, None]


def test_iter_by_index_with_mixed_ascending_flags() -> None:
    ix = st.Index.pick(Item, lambda i: (i.key, i.value), ascending=(True, False))
    z = st.ZSetPython({Item(key=k, value=v): 1 for k in (1, 0) for v in (0, 2, 1)})
    assert [k for k, _, _ in z.iter_by_index(ix)] == [
        (0, 2),
        (0, 1),
        (0, 0),
        (1, 2),
        (1, 1),
        (1, 0),
    ]


def test_multiplying_scales_every_weight() -> None:
    z = st.ZSetPython({1: 2, 2: -1})
    assert z * 3 == st.ZSetPython({1: 6, 2: -3})
    assert 2 * z == st.ZSetPython({1: 4, 2: -2})


weighted = hs.dictionaries(
    hs.one_of(hs.integers(0, 8), hs.tuples(hs.integers(0, 3), hs.text(max_size=2))),
    hs.integers(-(2**70), 2**70).filter(bool),
    max_size=10,
)


@given(weighted, weighted)
def test_adding_in_place_in_c_gives_what_python_gives(a: dict[Any, int], b: dict[Any, int]) -> None:
    """Same weights, zeros removed, same order; `b` taken back out leaves `a` as it was."""
    needs_speedups()
    in_py, in_c = dict(a), dict(a)
    zset.add_into_py(in_py, b)
    zset.speedups.add_into(in_c, b)
    assert list(in_c.items()) == list(in_py.items())
    assert 0 not in in_c.values()
    zset.speedups.add_into(in_c, {row: -c for row, c in b.items()})
    assert in_c == a
