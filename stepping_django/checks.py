"""System checks (`manage.py check`): bad declarations, named by view and parameter.

| id                     | problem                                                        |
|------------------------|----------------------------------------------------------------|
| stepping_django.E001   | a parameter without annotation, or a view without parameters  |
| stepping_django.E002   | a parameter that is not `st.ZSet[SomeModel]` / unknown model   |
| stepping_django.E003   | an input model field whose type cannot be part of a row        |
| stepping_django.E004   | two views with one name in one app                             |
| stepping_django.E005   | a query that cannot be compiled                                |
| stepping_django.E006   | a query with more than one output                              |
| stepping_django.E007   | a return annotation that is not `st.ZSet[SomeData]`            |
| stepping_django.E008   | an output field with no column type, or named like a cache column |
| stepping_django.E009   | a bad STEPPING setting                                         |
| stepping_django.E010   | a view name that is not a Python identifier (names its tables) |
| stepping_django.E011   | a `parallel=True` view with a database that is not PostgreSQL  |
| stepping_django.W001   | an input model whose default manager is not a StepManager      |
| stepping_django.W002   | a view without a return annotation (its cache has no columns)  |
| stepping_django.W003   | a deployed view whose new version (definition) is not built yet |
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core import checks

from stepping_django import conf
from stepping_django.capture import StepQuerySet


def check_views(
    app_configs: Any = None, views: Iterable[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report every declared view's problems (`views` defaults to the registry's)."""
    from stepping_django.registry import registry

    all_views = list(registry.all_views() if views is None else views)
    if app_configs is not None:
        labels = {c.label for c in app_configs}
        all_views = [v for v in all_views if v.app_label in labels]
    errors: list[checks.CheckMessage] = []
    seen: dict[str, Any] = {}
    for view in all_views:
        if view.label in seen and seen[view.label] is not view:
            first = seen[view.label].func
            errors.append(
                checks.Error(
                    f"two views are named {view.label}: {first.__module__}.{first.__qualname__} "
                    f"and {view.func.__module__}.{view.func.__qualname__}",
                    hint="Rename one, or pass name=... to @incremental_view.",
                    obj=view.label,
                    id="stepping_django.E004",
                )
            )
            continue
        seen[view.label] = view
        for p in view.problems:
            errors.append(checks.Error(p.message, hint=p.hint or None, obj=view.label, id=p.id))
        if view.graph is not None and view.output_type is object:
            errors.append(
                checks.Warning(
                    f"view {view.label} has no return annotation: its cache table has no typed "
                    "columns, only the row's data and weight",
                    hint="Annotate the return st.ZSet[SomeRow] with SomeRow an st.Data class.",
                    obj=view.label,
                    id="stepping_django.W002",
                )
            )
        if getattr(view, "parallel", False):
            errors.extend(_parallel_databases(view))
        for model in dict.fromkeys(view.models):
            qs = model._default_manager.get_queryset()
            if not isinstance(qs, StepQuerySet):
                errors.append(
                    checks.Warning(
                        f"view {view.label} reads {model._meta.label}, whose default manager "
                        f"{type(model._default_manager).__name__} does not capture "
                        "QuerySet.update, bulk_create or bulk_update",
                        hint="Set `objects = stepping_django.capture.StepManager()` on the "
                        "model, or call stepping_django.notify() after such writes.",
                        obj=model,
                        id="stepping_django.W001",
                    )
                )
    return errors


def _parallel_databases(view: Any) -> list[checks.CheckMessage]:
    """Parallel application needs PostgreSQL (advisory locks, row lock modes, a store on a
    connection of its own): refuse every other configured database."""
    from django.db import connections

    return [
        checks.Error(
            f"view {view.label} is declared parallel=True, which needs PostgreSQL; database "
            f"{alias!r} is {connections[alias].vendor}: its batches would be refused there",
            hint="Use PostgreSQL, or declare the view without parallel=True.",
            obj=view.label,
            id="stepping_django.E011",
        )
        for alias in connections
        if connections[alias].vendor != "postgresql"
    ]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report a malformed STEPPING setting."""
    return [
        checks.Error(
            msg, hint=f"Known keys: {', '.join(conf.DEFAULTS)}.", id="stepping_django.E009"
        )
        for msg in conf.validate()
    ]


def check_unbuilt_versions(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn about views built on a database at another version than the one declared: reads
    serve the old version until the new one is built (`migrate` or `stepping apply`)."""
    from django.db import DatabaseError, connections

    from stepping_django.maintenance import unbuilt_versions
    from stepping_django.models import ViewState

    out: list[checks.CheckMessage] = []
    for using in databases or ():
        try:
            if ViewState._meta.db_table not in connections[using].introspection.table_names():
                continue
            stale = unbuilt_versions(using)
        except DatabaseError:
            continue  # the database checks report an unreachable database
        for view, state in stale:
            building = " (a build is running)" if state.building_version else ""
            out.append(
                checks.Warning(
                    f"view {view.label} on database {using!r} is built at version "
                    f"{state.graph_identifier}, but its definition is now version "
                    f"{view.version}, not built yet{building}: reads serve the old version",
                    hint=f"Run `manage.py stepping apply {view.label} --database {using}` (or "
                    "`migrate`) to build it, then `manage.py stepping prune` to drop the old "
                    "tables.",
                    obj=view.label,
                    id="stepping_django.W003",
                )
            )
    return out


def check_capture_triggers(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn about a Postgres database whose capture triggers do not capture this process's
    views of a model: its writes are then captured by signals, one INSERT per write, and
    raw SQL goes unseen, until `migrate` installs them."""
    from django.db import DatabaseError, connections

    from stepping_django import triggers
    from stepping_django.models import Outbox

    out: list[checks.CheckMessage] = []
    for using in databases or ():
        connection = connections[using]
        if connection.vendor != "postgresql" or not conf.database_triggers():
            continue
        try:
            if Outbox._meta.db_table not in connection.introspection.table_names():
                continue
            missing = [s for s in triggers.wanted(using) if not triggers.installed(connection, s)]
        except DatabaseError:
            continue  # the database checks report an unreachable database
        out += [
            checks.Warning(
                f"the capture triggers of {spec.model} on database {using!r} are missing or "
                f"capture other views than {', '.join(spec.views)}: its writes are captured "
                "by signals (one INSERT per write; raw SQL unseen)",
                hint=f"Run `manage.py migrate --database {using}`.",
                obj=spec.model,
                id="stepping_django.W004",
            )
            for spec in missing
        ]
    return out
