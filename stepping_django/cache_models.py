"""Unmanaged models over a view's tables: its output cache and its delay-vertex tables.

The output cache has one real, typed column per field of the view's output row, plus
`weight` (the row's multiplicity), `row_id` (hex of the row's stable identity, the primary
key) and `data` (the row's msgpack, to rebuild the exact row). So
`basket_totals.objects.filter(total__gt=10).order_by("-total")`, `.aggregate()`,
`.values()` and the admin work as on any model.

The models live in a private app registry under the label `stepping_django`: they are not
part of the project's migrations (their tables follow the views' definitions and are
created by `ensure_view`, from `post_migrate` or `manage.py stepping apply`).
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.apps.registry import Apps
from django.db import connections, models

from stepping_django import engine as st
from stepping_django.engine.naming import digest
from stepping_django.engine.serialize import dumps, identity, loads
from stepping_django.rows import UnsupportedField

if TYPE_CHECKING:
    from stepping_django.declare import IncrementalView

#: The registry of the generated models (kept out of the project's migrations and checks).
view_apps = Apps(installed_apps=())

_COLUMNS: tuple[tuple[type, type[models.Field]], ...] = (
    (bool, models.BooleanField),
    (int, models.BigIntegerField),
    (float, models.FloatField),
    (str, models.TextField),
    (datetime.datetime, models.DateTimeField),
    (datetime.date, models.DateField),
    (datetime.time, models.TimeField),
    (datetime.timedelta, models.DurationField),
    (uuid.UUID, models.UUIDField),
    (bytes, models.BinaryField),
)


def column_for(tp: Any, name: str) -> models.Field:
    """A Django field for an output row field of type `tp` (`T | None` gives null=True)."""
    null = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        null = len(args) < len(typing.get_args(tp))
        tp = args[0] if len(args) == 1 else object
    if tp is decimal.Decimal:
        return models.DecimalField(max_digits=40, decimal_places=10, null=null)
    for python_type, field_class in _COLUMNS:
        if tp is python_type:
            return field_class(null=null)
    raise UnsupportedField(
        f"output field {name!r} of type {getattr(tp, '__name__', tp)!r} has no column type; "
        "use int, float, Decimal, bool, str, date, datetime, time, timedelta, UUID or bytes "
        "(optionally `| None`)"
    )


def row_fields(tp: Any) -> dict[str, Any]:
    """The declared fields of an `st.Data` class, in order, with their types."""
    if not (isinstance(tp, type) and issubclass(tp, st.Data)):
        return {}
    hints = typing.get_type_hints(tp)
    return {name: hints.get(name, object) for name in tp.__st_fields__}


def table_name(label: str, kind: str = "") -> str:
    name = "stepping_" + kind + label.replace(".", "_").lower()
    if len(name) > 60:
        name = name[:47] + "_" + digest(name, 12)
    return name


def _register(name: str, attrs: dict[str, Any]) -> type[models.Model]:
    key = name.lower()
    existing = view_apps.all_models["stepping_django"].pop(key, None)
    if existing is not None:
        view_apps.clear_cache()
    return type(name, (models.Model,), {"__module__": __name__, **attrs})


def output_model(view: IncrementalView, db_table: str | None = None) -> type[models.Model]:
    """Create the unmanaged model over `view`'s output cache table (or over `db_table`, a
    table of the same columns: a build's output table, see build.py)."""
    fields: dict[str, Any] = {
        "row_id": models.CharField(max_length=32, primary_key=True),
        "weight": models.BigIntegerField(),
        "data": models.BinaryField(),
    }
    for field, tp in row_fields(view.output_type).items():
        fields[field] = column_for(tp, field)
    meta = type(
        "Meta",
        (),
        {
            "app_label": "stepping_django",
            "apps": view_apps,
            "db_table": db_table or table_name(view.label),
            "managed": False,
            "verbose_name": view.label,
            "verbose_name_plural": view.label,
        },
    )
    camel = "".join(p.capitalize() for p in view.label.replace(".", "_").split("_"))
    if db_table:
        camel += "_" + db_table

    def __str__(self: Any) -> str:
        return str(loads(bytes(self.data)))

    model = _register(camel, {**fields, "Meta": meta, "__str__": __str__})
    model.view = view  # type: ignore[attr-defined]
    return model


def state_model(view: IncrementalView, spec_name: str) -> type[models.Model]:
    """An unmanaged, read-only model over one delay-vertex table of `view`."""
    meta = type(
        "Meta",
        (),
        {
            "app_label": "stepping_django",
            "apps": view_apps,
            "db_table": spec_name,
            "managed": False,
            "verbose_name": f"{view.label} {spec_name}",
        },
    )
    camel = "State" + digest(spec_name, 10)
    return _register(
        camel,
        {
            "identity": models.BinaryField(primary_key=True),
            "c": models.BigIntegerField(),
            "Meta": meta,
        },
    )


def state_models(view: IncrementalView) -> dict[str, type[models.Model]]:
    """The delay-vertex tables of `view`, each as an unmanaged model, by table name."""
    assert view.graph is not None
    return {s.name: state_model(view, s.name) for s in view.graph.states}


# -- the output cache's table -------------------------------------------------------------


def create_output_table(
    view: IncrementalView, using: str, model: type[models.Model] | None = None
) -> None:
    """(Re)create the output cache table (or `model`'s), empty. Runs inside a transaction
    on SQLite too."""
    model = model or view.model
    connection = connections[using]
    editor = connection.schema_editor()
    sql, params = editor.table_sql(model)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {editor.quote_name(model._meta.db_table)}")
        cursor.execute(sql, params)


def write_output(
    view: IncrementalView,
    change: st.ZSetPython[Any],
    using: str,
    model: type[models.Model] | None = None,
) -> None:
    """Integrate an output change into the cache (or into `model`'s table, a build's):
    upsert by row identity, delete at 0."""
    if not change:
        return
    model = model or view.model
    if connections[using].vendor == "postgresql":
        _write_output_postgres(model, change, using)
        return
    manager = model._base_manager.db_manager(using)
    by_id = {identity(row).hex(): (row, c) for row, c in change.iter()}
    ids = list(by_id)
    existing: dict[str, int] = {}
    for i in range(0, len(ids), 500):
        existing.update(manager.filter(row_id__in=ids[i : i + 500]).values_list("row_id", "weight"))
    names = [
        f.name for f in model._meta.concrete_fields if f.name not in ("row_id", "weight", "data")
    ]
    create, update, delete = [], [], []
    for row_id, (row, c) in by_id.items():
        old = existing.get(row_id)
        if old is None:
            values = {n: getattr(row, n) for n in names}
            create.append(model(row_id=row_id, weight=c, data=dumps(row), **values))
        elif old + c == 0:
            delete.append(row_id)
        else:
            update.append(model(row_id=row_id, weight=old + c))
    for i in range(0, len(delete), 500):
        manager.filter(row_id__in=delete[i : i + 500]).delete()
    if update:
        manager.bulk_update(update, ["weight"], batch_size=500)
    if create:
        manager.bulk_create(create, batch_size=500)


_NATIVE = (models.BigIntegerField, models.FloatField, models.TextField, models.BooleanField)


def _write_output_postgres(
    model: type[models.Model], change: st.ZSetPython[Any], using: str
) -> None:
    """`write_output` in two statements with one array parameter per column: an upsert
    adding each row's weight, then a delete of the rows whose weight reached 0 (the ORM's
    bulk_create and bulk_update spend most of their time building their statements)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    fields = list(model._meta.concrete_fields)
    rows = list(change.iter())
    ids = [identity(row).hex() for row, _ in rows]
    columns: list[list[Any]] = []
    for f in fields:
        if f.name == "row_id":
            columns.append(ids)
        elif f.name == "weight":
            columns.append([c for _, c in rows])
        elif f.name == "data":
            columns.append([dumps(row) for row, _ in rows])
        elif isinstance(f, _NATIVE):  # rows hold these normalised to their declared type
            columns.append([getattr(row, f.name) for row, _ in rows])
        else:
            prep = f.get_db_prep_save
            columns.append([prep(getattr(row, f.name), connection) for row, _ in rows])
    table = qn(model._meta.db_table)
    names = ", ".join(qn(f.column) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    weight, row_id = qn("weight"), qn("row_id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({row_id}) DO UPDATE SET {weight} = {table}.{weight} + excluded.{weight}",
            columns,
        )
        cursor.execute(
            f"DELETE FROM {table} WHERE {row_id} = ANY(%s::text[]) AND {weight} = 0", [ids]
        )


def read_output(view: IncrementalView, using: str) -> st.ZSetPython[Any]:
    manager = view.model._base_manager.db_manager(using)
    rows: Iterable[tuple[Any, int]] = manager.values_list("data", "weight").iterator()
    return st.ZSetPython({loads(bytes(data)): weight for data, weight in rows})
