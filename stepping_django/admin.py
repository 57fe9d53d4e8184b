"""A read-only admin: view states (status, lag, last error), the outbox, and every view's
output cache (its typed columns as list columns and filters).

Seeing any of them needs the permission to view view states
(`stepping_django.view_viewstate`); nobody can add, change or delete through the admin.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin
from django.db import models
from django.utils.html import format_html
from django.utils.module_loading import autodiscover_modules

from stepping_django.models import Outbox, ViewState
from stepping_django.registry import ViewNotFound, registry

#: The permission that shows the app's pages (view states, outbox, view caches).
VIEW_PERMISSION = "stepping_django.view_viewstate"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.has_perm(VIEW_PERMISSION))

    def has_module_permission(self, request: Any) -> bool:
        return self.has_view_permission(request)


def _status(obj: ViewState, count_rows: bool = False) -> Any:
    """The view's status (maintenance.ViewStatus), or None for a view no longer declared."""
    from django.db import connections

    from stepping_django import maintenance

    try:
        view = registry.get(obj.view)
    except ViewNotFound:
        return None
    using = obj._state.db or "default"
    pending = Outbox.objects.using(using).filter(view=obj.view, build="")
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    existing = set(connections[using].introspection.table_names()) if count_rows else set()
    return maintenance.view_status(view, obj, pending.count(), oldest, using, existing)


@admin.register(ViewState)
class ViewStateAdmin(ReadOnlyAdmin):
    list_display = ["view", "state", "pending", "lag", "applied_at", "version", "short_error"]
    list_filter = ["status"]
    fields = [
        "view",
        "state",
        "pending",
        "lag",
        "applied_at",
        "built_at",
        "version",
        "time",
        "applied_keys",
        "tables_rows",
        "failed_at",
        "error",
        "formatted_traceback",
    ]
    readonly_fields = fields

    @admin.display(description="state")
    def state(self, obj: ViewState) -> str:
        s = _status(obj)
        return "not declared" if s is None else str(s.state)

    @admin.display(description="pending changes")
    def pending(self, obj: ViewState) -> int:
        return Outbox.objects.using(obj._state.db).filter(view=obj.view, build="").count()

    @admin.display(description="lag")
    def lag(self, obj: ViewState) -> str:
        s = _status(obj)
        if s is None or s.lag_seconds is None:
            return "-"
        return str(datetime.timedelta(seconds=round(s.lag_seconds)))

    @admin.display(description="version")
    def version(self, obj: ViewState) -> str:
        s = _status(obj)
        text = obj.graph_identifier[:8] or "-"
        if s is not None and obj.graph_identifier != s.declared_version:
            text += f" (declared {s.declared_version[:8]}, "
            text += "building)" if obj.building_version else "not built)"
        return text

    @admin.display(description="rows per table")
    def tables_rows(self, obj: ViewState) -> str:
        s = _status(obj, count_rows=True)
        if s is None:
            return "-"
        return format_html(
            "<pre>{}</pre>",
            "\n".join(f"{t}: {'-' if n is None else n}" for t, n in s.tables.items()),
        )

    @admin.display(description="last error")
    def short_error(self, obj: ViewState) -> str:
        return obj.error if len(obj.error) <= 120 else obj.error[:117] + "..."

    @admin.display(description="traceback")
    def formatted_traceback(self, obj: ViewState) -> str:
        return format_html("<pre>{}</pre>", obj.traceback) if obj.traceback else "-"


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "view", "model", "object_pk", "build", "created_at"]
    list_filter = ["view"]


#: Column types worth a filter (continuous values make a useless list of choices).
_FILTERABLE = (
    models.BooleanField,
    models.BigIntegerField,
    models.TextField,
    models.DateField,
    models.DateTimeField,
    models.UUIDField,
)


def cache_admin(model: type[models.Model]) -> type[admin.ModelAdmin]:
    """A read-only ModelAdmin for a view's cache model: typed columns, then the weight."""
    typed = [f for f in model._meta.concrete_fields if f.name not in ("row_id", "data", "weight")]
    return type(
        f"{model.__name__}Admin",
        (ReadOnlyAdmin,),
        {
            "list_display": [f.name for f in typed] + ["weight"],
            "list_filter": [f.name for f in typed if isinstance(f, _FILTERABLE)],
            "fields": [f.name for f in typed] + ["weight"],
            "readonly_fields": [f.name for f in typed] + ["weight"],
            "ordering": [typed[0].name if typed else "row_id"],
        },
    )


def register_view_admins(site: admin.AdminSite = admin.site) -> None:
    """Register a read-only changelist for each view's output cache."""
    autodiscover_modules("incremental")  # admin may load before the app's ready()
    for view in registry.views():
        model = view.model
        if not site.is_registered(model):
            site.register(model, cache_admin(model))


register_view_admins()
