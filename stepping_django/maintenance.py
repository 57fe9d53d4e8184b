"""Operations on views: status, drain, rebuild, verify, graph, prune.

`manage.py stepping` is a thin layer over these functions; tests and scripts call them
directly. Each takes the database alias `using` and names the view in its errors.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, Min
from django.utils import timezone

from stepping_django import engine as st
from stepping_django.apply import ApplyResult, apply_view
from stepping_django.build import (
    BuildResult,
    build_view,
    old_snapshot_keys,
    old_tables,
)
from stepping_django.declare import IncrementalView
from stepping_django.engine.serialize import loads
from stepping_django.models import Outbox, Snapshot, ViewState
from stepping_django.registry import registry
from stepping_django.store import drop_tables, tagged_name

#: `progress(done, total)`: rows or keys done so far out of about `total`.
Progress = Callable[[int, int], None]

#: Pending changes older than this make a view "lagging" rather than "applying".
LAG_THRESHOLD_SECS = 60.0

FRESH, APPLYING, LAGGING, FAILED, NEW = "fresh", "applying", "lagging", "failed", "new"


def get_view(view: IncrementalView | str) -> IncrementalView:
    """The view itself, or the view declared under a label (ViewNotFound names the label)."""
    return registry.get(view) if isinstance(view, str) else view


def select_views(views: Iterable[IncrementalView | str] | None) -> list[IncrementalView]:
    chosen = [get_view(v) for v in views or ()]
    return chosen or registry.views()


# -- status --------------------------------------------------------------------------------


@dataclass
class ViewStatus:
    """Where one view stands on one database.

    `state` is one of:
    - "fresh": nothing pending, tables of the declared version;
    - "applying": changes pending for less than the lag threshold, or a build running;
    - "lagging": changes pending for longer, or a new version declared but not built
      (reads still see the old version);
    - "failed": the last apply or build raised (`error`, `traceback`);
    - "new": never built on this database.
    """

    view: str
    state: str
    pending: int
    lag_seconds: float | None
    oldest_pending: datetime.datetime | None
    applied_at: datetime.datetime | None
    built_at: datetime.datetime | None
    time: int
    version: str
    declared_version: str
    building_version: str
    tables: dict[str, int | None] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    failed_at: datetime.datetime | None = None

    @property
    def rows(self) -> int | None:
        """Rows of the output cache (None: not built)."""
        return next(iter(self.tables.values()), None)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, datetime.datetime):
                out[k] = v.isoformat()
        return out


def view_tables(view: IncrementalView, state: ViewState | None) -> list[str]:
    """The live tables of `view`: its output cache, then its delay-vertex tables."""
    tables = [view.model._meta.db_table]
    if state is not None and view.graph is not None and state.graph_identifier == view.version:
        tables += [tagged_name(view, s.name, state.tables) for s in view.graph.states]
    return tables


def _count(using: str, table: str, existing: set[str]) -> int | None:
    if table not in existing:
        return None
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0])


def view_status(
    view: IncrementalView,
    state: ViewState | None,
    pending: int,
    oldest: datetime.datetime | None,
    using: str,
    existing: set[str],
    lag_threshold: float = LAG_THRESHOLD_SECS,
    now: datetime.datetime | None = None,
) -> ViewStatus:
    """The status of `view` from its state row and pending keys (see `status`)."""
    now = now or timezone.now()
    lag = (now - oldest).total_seconds() if oldest is not None else None
    version = state.graph_identifier if state else ""
    building = state.building_version if state else ""
    if state is not None and state.status == ViewState.FAILED:
        kind = FAILED
    elif not version:
        kind = APPLYING if building else NEW
    elif building:
        kind = APPLYING
    elif version != view.version or (lag is not None and lag > lag_threshold):
        kind = LAGGING
    elif pending:
        kind = APPLYING
    else:
        kind = FRESH
    return ViewStatus(
        view=view.label,
        state=kind,
        pending=pending,
        lag_seconds=lag,
        oldest_pending=oldest,
        applied_at=state.applied_at if state else None,
        built_at=state.built_at if state else None,
        time=state.time if state else 0,
        version=version,
        declared_version=view.version,
        building_version=building,
        tables={t: _count(using, t, existing) for t in view_tables(view, state)},
        error=state.error if state else "",
        traceback=state.traceback if state else "",
        failed_at=state.failed_at if state else None,
    )


def status(
    using: str = DEFAULT_DB_ALIAS,
    views: Iterable[IncrementalView | str] | None = None,
    lag_threshold: float = LAG_THRESHOLD_SECS,
) -> list[ViewStatus]:
    """The status of `views` (default: every usable view) on database `using`."""
    chosen = select_views(views)
    labels = [v.label for v in chosen]
    states = {s.view: s for s in ViewState.objects.using(using).filter(view__in=labels)}
    pending = {
        row["view"]: row
        for row in Outbox.objects.using(using)
        .filter(view__in=labels, build="")
        .values("view")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    }
    existing = set(connections[using].introspection.table_names())
    now = timezone.now()
    return [
        view_status(
            v,
            states.get(v.label),
            pending.get(v.label, {}).get("n", 0),
            pending.get(v.label, {}).get("oldest"),
            using,
            existing,
            lag_threshold,
            now,
        )
        for v in chosen
    ]


def status_json(statuses: list[ViewStatus]) -> str:
    return json.dumps([s.as_json() for s in statuses], indent=2, sort_keys=True)


# -- apply and rebuild ---------------------------------------------------------------------


def pending_count(view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS) -> int:
    """Keys captured for `view` and not applied yet."""
    return Outbox.objects.using(using).filter(view=get_view(view).label, build="").count()


def drain(
    view: IncrementalView | str,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
) -> ApplyResult:
    """Apply `view`'s pending changes now, batch by batch, until none are left (changes
    committed meanwhile included), reporting `progress(keys_done, keys_total)`."""
    view = get_view(view)
    total = pending_count(view, using)
    done = ApplyResult(view.label)
    if progress:
        progress(0, total)
    while True:
        r = apply_view(view, using, max_batches=1)
        done.status, done.error = r.status, r.error
        done.keys += r.keys
        done.iterations += r.iterations
        done.batches += r.batches
        done.rebuilt |= r.rebuilt
        if progress:
            progress(done.keys, max(total, done.keys))
        if r.status != ViewState.FRESH or r.keys == 0:
            return done


@dataclass
class RebuildResult:
    build: BuildResult
    apply: ApplyResult


def rebuild(
    view: IncrementalView | str,
    using: str = DEFAULT_DB_ALIAS,
    progress: Progress | None = None,
    force: bool = False,
) -> RebuildResult:
    """Recompute `view` from its source tables into fresh tables (in pages, while writers
    and appliers go on), switch reads over, then apply what is pending.

    Returns:
        The build's result ("built", or "building" when another build runs and `force` is
        False) and the apply's. Raises what the view's query raises (the live tables are
        then untouched, and the view is marked failed).
    """
    view = get_view(view)
    try:
        built = build_view(view, using, force=force, progress=progress)
    except Exception as e:
        from stepping_django.apply import _mark_failed

        _mark_failed(view, using, e)
        raise
    applied = drain(view, using) if built.status == "built" else ApplyResult(view.label)
    return RebuildResult(built, applied)


# -- verify --------------------------------------------------------------------------------


@dataclass
class Verification:
    """`view` compared with a from-scratch computation over the current source tables.

    `extra`: rows (with weight) the cache has beyond the computation; `missing`: rows it
    lacks; `inconsistent`: cache rows whose typed columns disagree with their stored data.
    `pending`: keys not yet applied (they show up as differences until applied).
    """

    view: str
    extra: list[tuple[Any, int]]
    missing: list[tuple[Any, int]]
    inconsistent: list[tuple[Any, Any]]
    pending: int

    @property
    def ok(self) -> bool:
        return not (self.extra or self.missing or self.inconsistent)


def cached_rows(
    view: IncrementalView, using: str = DEFAULT_DB_ALIAS, rel_tol: float = 0.0
) -> tuple[Any, list[Any]]:
    """The view's cache as a Z-set read from its typed columns (what querysets see), and
    the rows whose typed columns differ from their stored data (floats within `rel_tol`),
    as (typed, data) pairs."""
    model = view.model
    typed = [
        f.attname for f in model._meta.concrete_fields if f.name not in ("row_id", "weight", "data")
    ]
    out: dict[Any, int] = {}
    inconsistent = []
    qs = model._base_manager.db_manager(using).values_list("data", "weight", *typed)
    for data, weight, *values in qs.iterator(chunk_size=2000):
        stored = loads(bytes(data))
        row = view.output_type(**dict(zip(typed, values))) if typed else stored
        if row != stored and not (rel_tol and _close(row, stored, rel_tol)):
            inconsistent.append((row, stored))
        out[row] = out.get(row, 0) + weight
    return st.ZSetPython({r: w for r, w in out.items() if w}), inconsistent


def _float_free(row: Any) -> Any:
    """`row` with its float fields blanked: rows equal but for float rounding match."""
    if not isinstance(row, st.Data):
        return row
    return tuple(
        (name, None if isinstance(v, float) else v)
        for name in type(row).__st_fields__
        for v in (getattr(row, name),)
    )


def _close(a: Any, b: Any, rel_tol: float) -> bool:
    if not (isinstance(a, st.Data) and type(a) is type(b)):
        return False
    for name in type(a).__st_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=rel_tol):
                return False
        elif x != y:
            return False
    return True


def verify(
    view: IncrementalView | str, using: str = DEFAULT_DB_ALIAS, rel_tol: float = 1e-9
) -> Verification:
    """Compare `view`'s cache with a from-scratch computation (which reads the source
    tables whole, in this process).

    Float fields are compared within `rel_tol` (relative, and absolute near zero): a sum
    kept incrementally adds in another order than a sum from scratch, so the last bits may
    differ. `rel_tol=0` compares exactly."""
    view = get_view(view)
    maintained, inconsistent = cached_rows(view, using, rel_tol)
    diff = maintained - view.from_scratch(using)
    rows = sorted(diff.iter(), key=repr)
    extra = [(r, c) for r, c in rows if c > 0]
    missing = [(r, -c) for r, c in rows if c < 0]
    if rel_tol and extra and missing:
        by_key: dict[Any, list[tuple[Any, int]]] = {}
        for r, c in missing:
            by_key.setdefault(_float_free(r), []).append((r, c))
        unmatched = []
        for r, c in extra:
            candidates = by_key.get(_float_free(r), [])
            match = next((m for m in candidates if m[1] == c and _close(r, m[0], rel_tol)), None)
            if match is None:
                unmatched.append((r, c))
            else:
                candidates.remove(match)
        extra = unmatched
        missing = [m for ms in by_key.values() for m in ms]
        missing.sort(key=lambda m: repr(m[0]))
    return Verification(
        view.label,
        extra=extra,
        missing=missing,
        inconsistent=inconsistent,
        pending=pending_count(view, using),
    )


# -- graph -----------------------------------------------------------------------------------

GRAPH_FORMATS = ("text", "dot", "png", "svg")


def graph(view: IncrementalView | str, fmt: str = "text", output: Path | None = None) -> str:
    """`view`'s operator graph as text or Graphviz DOT; with fmt "png"/"svg", the picture
    written to `output` by Graphviz's `dot` (RuntimeError when it is not installed)."""
    view = get_view(view)
    if view.graph is None:
        raise RuntimeError(
            f"view {view.label} is not usable: " + "; ".join(p.message for p in view.problems)
        )
    if fmt == "text":
        text = st.to_text(view.graph)
    elif fmt == "dot":
        text = st.to_dot(view.graph)
    elif fmt in ("png", "svg"):
        if output is None:
            raise ValueError(f"graph of view {view.label}: --format {fmt} needs --output FILE")
        from stepping_django.engine.dot import render

        render(view.graph, output, fmt)
        return str(output)
    else:
        raise ValueError(f"unknown graph format {fmt!r}; use one of {', '.join(GRAPH_FORMATS)}")
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n")
    return text


# -- prune -----------------------------------------------------------------------------------


@dataclass
class Pruned:
    """What `prune` dropped (or, with dry_run, would drop) for one view."""

    view: str
    tables: list[str]
    snapshots: list[str]


def prune(
    views: Iterable[IncrementalView | str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
    dry_run: bool = False,
) -> list[Pruned]:
    """Drop the tables (and input snapshots) of older versions of `views` (default: every
    view): those neither read nor applied nor being built."""
    out = []
    for view in select_views(views):
        tables = old_tables(view, using)
        keys = old_snapshot_keys(view, using)
        if not dry_run:
            drop_tables(using, tables)
            Snapshot.objects.using(using).filter(view__in=keys).delete()
        out.append(Pruned(view.label, tables, keys))
    return out


def unbuilt_versions(using: str = DEFAULT_DB_ALIAS) -> list[tuple[IncrementalView, ViewState]]:
    """Deployed views whose declared version differs from their built one."""
    states = {s.view: s for s in ViewState.objects.using(using).exclude(graph_identifier="")}
    return [
        (v, states[v.label])
        for v in registry.views()
        if v.label in states and states[v.label].graph_identifier != v.version
    ]
