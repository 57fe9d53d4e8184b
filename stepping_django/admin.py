"""A read-only admin: view states, the outbox, and every view's output cache."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.module_loading import autodiscover_modules

from stepping_django.models import Outbox, ViewState
from stepping_django.registry import registry


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(ViewState)
class ViewStateAdmin(ReadOnlyAdmin):
    list_display = ["view", "status", "time", "pending", "applied_at", "failed_at", "error"]
    list_filter = ["status"]

    @admin.display(description="pending keys")
    def pending(self, obj: ViewState) -> int:
        return Outbox.objects.using(obj._state.db).filter(view=obj.view).count()


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "view", "model", "object_pk", "created_at"]
    list_filter = ["view"]


def register_view_admins(site: admin.AdminSite = admin.site) -> None:
    """Register a read-only changelist for each view's output cache."""
    autodiscover_modules("incremental")  # admin may load before the app's ready()
    for view in registry.views():
        model = view.model
        if site.is_registered(model):
            continue
        columns = [f.name for f in model._meta.concrete_fields if f.name not in ("row_id", "data")]
        site.register(
            model, type(f"{model.__name__}Admin", (ReadOnlyAdmin,), {"list_display": columns})
        )


register_view_admins()
