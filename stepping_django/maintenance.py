"""Operations on views: status, rebuild, verify. `manage.py stepping` calls these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Min

from stepping_django import engine as st
from stepping_django.apply import ApplyResult, apply_view
from stepping_django.declare import IncrementalView
from stepping_django.models import Outbox, ViewState
from stepping_django.registry import registry


@dataclass
class ViewStatus:
    """Where one view stands: health, time, pending keys, cached rows, last error."""

    view: str
    status: str
    time: int
    pending: int
    oldest_pending: Any
    rows: int | None
    up_to_date_version: bool
    error: str


def status(using: str = DEFAULT_DB_ALIAS) -> list[ViewStatus]:
    """The status of every usable view on database `using`."""
    states = {s.view: s for s in ViewState.objects.using(using)}
    pending = {
        row["view"]: row
        for row in Outbox.objects.using(using)
        .values("view")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    }
    tables = set(connections[using].introspection.table_names())
    out = []
    for view in registry.views():
        state = states.get(view.label)
        p = pending.get(view.label, {})
        built = view.model._meta.db_table in tables
        out.append(
            ViewStatus(
                view=view.label,
                status=state.status if state else ViewState.NEW,
                time=state.time if state else 0,
                pending=p.get("n", 0),
                oldest_pending=p.get("oldest"),
                rows=view.objects.using(using).count() if built else None,
                up_to_date_version=bool(state and state.graph_identifier == view.version),
                error=state.error if state else "",
            )
        )
    return out


def rebuild(view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS) -> ApplyResult:
    """Recompute `view` from its source tables, then apply what is pending."""
    view = registry.get(view) if isinstance(view, str) else view
    ViewState.objects.using(using).filter(view=view.label).update(graph_identifier="")
    return apply_view(view, using=using)


def verify(view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS) -> st.ZSetPython[Any]:
    """maintained - from scratch: empty when the view is correct (pending changes not
    yet applied show up as differences)."""
    view = registry.get(view) if isinstance(view, str) else view
    return view.maintained(using) - view.from_scratch(using)
