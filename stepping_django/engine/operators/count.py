"""count: the total weight of a Z-set (COUNT(*)), as reduce with every row worth 1."""

from __future__ import annotations

from typing import Any

from stepping_django.engine.operators.reduce import reduce


def one(row: Any) -> int:
    return 1


def count(a: Any) -> Any:
    return reduce(a, zero=int, pick_value=one)
