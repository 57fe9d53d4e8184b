"""Input rows: an immutable `st.Data` snapshot of a model's concrete fields.

`row_class(Product)` is generated from the model, deterministically: the same attribute
names (`<fk>_id` for foreign keys), one Python type per Django field, and a stable module
and qualified name (`stepping_django.rows`, `"shop.Product"`), so the row's msgpack class
id is the same in every process that declares the same views (web, worker, shell).

Rows are built from `values_list()` of the concrete attnames: never from live instances,
never by loading a relation.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import models

from stepping_django import engine as st


class UnsupportedField(TypeError):
    """A model field whose values cannot be part of a row; the message names it."""


# Most specific first: subclasses (PositiveIntegerField, SlugField, ...) resolve to these.
_FIELD_TYPES: tuple[tuple[type[models.Field], type], ...] = (
    (models.BooleanField, bool),
    (models.DateTimeField, datetime.datetime),
    (models.DateField, datetime.date),
    (models.TimeField, datetime.time),
    (models.DurationField, datetime.timedelta),
    (models.DecimalField, decimal.Decimal),
    (models.FloatField, float),
    (models.AutoField, int),
    (models.BigAutoField, int),
    (models.SmallAutoField, int),
    (models.IntegerField, int),
    (models.UUIDField, uuid.UUID),
    (models.BinaryField, bytes),
    (models.CharField, str),
    (models.TextField, str),
    (models.FileField, str),
    (models.GenericIPAddressField, str),
)

_classes: dict[type[models.Model], type[st.Data]] = {}


def python_type(field: models.Field) -> type:
    """The Python type of `field`'s values (foreign keys: the target's key type)."""
    target = field
    while isinstance(target, models.ForeignKey):
        target = target.target_field
    for field_class, tp in _FIELD_TYPES:
        if isinstance(target, field_class):
            return tp
    model = field.model._meta.label if getattr(field, "model", None) else "?"
    raise UnsupportedField(
        f"field {model}.{field.name} ({type(field).__name__}) cannot be part of a row; "
        "supported: integers, floats, decimals, booleans, text, dates, times, durations, "
        "UUIDs, binary and foreign keys to those"
    )


def attnames(model: type[models.Model]) -> tuple[str, ...]:
    """The model's concrete column attributes, in declaration order (`<fk>_id` for FKs)."""
    return tuple(f.attname for f in model._meta.concrete_fields)


def row_class(model: type[models.Model]) -> type[st.Data]:
    """The `st.Data` class of `model`'s rows, created on first use and then reused.

    Raises UnsupportedField naming the first field that cannot be part of a row.
    """
    model = model._meta.concrete_model or model
    cls = _classes.get(model)
    if cls is not None:
        return cls
    annotations: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        tp: Any = python_type(field)
        annotations[field.attname] = tp | None if field.null else tp
    label = model._meta.label
    cls = type(
        model._meta.object_name or model.__name__,
        (st.Data,),
        {"__annotations__": annotations, "__module__": __name__, "__qualname__": label},
    )
    _classes[model] = cls
    return cls


def _keyed_rows(model: type[models.Model], values: Iterable[tuple[Any, ...]]) -> dict[str, st.Data]:
    """Rows from `values_list(*attnames(model))` tuples, keyed by the pk's text form."""
    cls = row_class(model)
    names = attnames(model)
    pk_at = names.index(model._meta.pk.attname)
    return {str(v[pk_at]): cls(**dict(zip(names, v))) for v in values}


def rows_for_pks(model: type[models.Model], pks: Iterable[Any], using: str) -> dict[str, st.Data]:
    """Current rows of `model` for `pks`, keyed by the pk's text form; absent keys omitted."""
    qs = model._base_manager.db_manager(using)
    pk_list = list(pks)
    out: dict[str, st.Data] = {}
    for i in range(0, len(pk_list), 500):
        chunk = qs.filter(pk__in=pk_list[i : i + 500]).values_list(*attnames(model))
        out.update(_keyed_rows(model, chunk))
    return out


def all_rows(model: type[models.Model], using: str) -> dict[str, st.Data]:
    """Every current row of `model`, keyed by the pk's text form."""
    qs = model._base_manager.db_manager(using).values_list(*attnames(model))
    return _keyed_rows(model, qs.iterator(chunk_size=2000))


def zset_of(model: type[models.Model], using: str) -> st.ZSetPython[Any]:
    """A concrete Z-set of `model`'s current rows (for from-scratch computations)."""
    return st.ZSetPython({row: 1 for row in all_rows(model, using).values()})
