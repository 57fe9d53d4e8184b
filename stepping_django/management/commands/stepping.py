"""`manage.py stepping status|apply|rebuild|verify|graph|prune`: thin over maintenance.py.

    stepping status [VIEW ...] [--json] [--lag-threshold SECS]
    stepping apply [VIEW ...] [--no-progress]
    stepping rebuild VIEW [--force] [--no-progress]
    stepping verify [VIEW ...] [--rel-tol 1e-9]   exit status 1 when a view differs
    stepping graph VIEW [--format text|dot|png|svg] [--output FILE]
    stepping prune [VIEW ...] [--dry-run]

Every subcommand takes `--database` (default "default").
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from stepping_django import maintenance
from stepping_django.registry import ViewNotFound


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


class Command(BaseCommand):
    help = "Incremental views: status, apply (drain now), rebuild, verify, graph, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="SUBCOMMAND")

        def add(name: str, help: str, views: str = "*") -> CommandParser:
            p = sub.add_parser(name, help=help)
            if views == "*":
                p.add_argument(
                    "views", nargs="*", help="view labels (app_label.view); all by default"
                )
            else:
                p.add_argument("view", help="a view label (app_label.view_name)")
            p.add_argument(
                "--database", default=DEFAULT_DB_ALIAS, help='the database (default "default")'
            )
            return p  # type: ignore[no-any-return]

        p = add("status", "health, pending changes, lag, rows per table, last error")
        p.add_argument("--json", action="store_true", help="machine-readable, for monitoring")
        p.add_argument(
            "--lag-threshold",
            type=float,
            default=maintenance.LAG_THRESHOLD_SECS,
            help="pending changes older than this many seconds make a view 'lagging'",
        )
        p = add("apply", "apply pending changes now")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p = add("rebuild", "recompute a view from its source tables", views="1")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--force", action="store_true", help="replace a build still running")
        p = add("verify", "compare with a from-scratch computation; exit 1 if any differ")
        p.add_argument(
            "--rel-tol",
            type=float,
            default=1e-9,
            help="relative tolerance of float fields (0: exact; default 1e-9)",
        )
        p = add("graph", "the operator graph", views="1")
        p.add_argument("--format", choices=maintenance.GRAPH_FORMATS, default="text")
        p.add_argument("--output", type=Path, help="write to this file (needed for png/svg)")
        p = add("prune", "drop the tables of old versions")
        p.add_argument("--dry-run", action="store_true", help="only list what would go")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, "handle_" + action)(options)
        except ViewNotFound as e:
            raise CommandError(str(e)) from None

    # -- progress ------------------------------------------------------------------------

    @contextmanager
    def progress(self, options: dict[str, Any], what: str) -> Iterator[Any]:
        """A rich progress bar on stderr (none when --no-progress or stderr is no TTY)."""
        if options.get("no_progress") or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*Progress.get_default_columns()[:1], *columns, transient=True) as bar:
            task = bar.add_task(what, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield update

    # -- subcommands ---------------------------------------------------------------------

    def handle_status(self, options: dict[str, Any]) -> None:
        statuses = maintenance.status(
            options["database"], options["views"], lag_threshold=options["lag_threshold"]
        )
        if options["json"]:
            self.stdout.write(maintenance.status_json(statuses))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"incremental views on database {options['database']!r}")
        for column in ("view", "state", "pending", "lag", "last applied", "version", "rows"):
            table.add_column(column, justify="right" if column == "pending" else "left")
        for s in statuses:
            version = s.version[:8] or "-"
            if s.version != s.declared_version:
                version += f" -> {s.declared_version[:8]}"
                version += " (building)" if s.building_version else " (not built)"
            rows = "\n".join(f"{name}: {'-' if n is None else n}" for name, n in s.tables.items())
            applied = s.applied_at.strftime("%Y-%m-%d %H:%M:%S") if s.applied_at else "-"
            table.add_row(
                s.view, s.state, str(s.pending), _ago(s.lag_seconds), applied, version, rows
            )
        tty = self.stdout.isatty()
        buffer = io.StringIO()
        width = shutil.get_terminal_size().columns if tty else 200
        Console(file=buffer, width=width, force_terminal=tty, no_color=not tty).print(table)
        self.stdout.write(buffer.getvalue(), ending="")
        for s in statuses:
            if s.error:
                when = f" at {s.failed_at:%Y-%m-%d %H:%M:%S}" if s.failed_at else ""
                self.stdout.write(f"\n{s.view} failed{when}: {s.error}")
                if s.traceback and options["verbosity"] >= 1:
                    self.stdout.write(s.traceback.rstrip())

    def handle_apply(self, options: dict[str, Any]) -> None:
        failed = []
        for view in maintenance.select_views(options["views"]):
            with self.progress(options, f"apply {view.label}") as progress:
                r = maintenance.drain(view, options["database"], progress)
            if options["verbosity"] >= 1:
                rebuilt = ", built its new version" if r.rebuilt else ""
                self.stdout.write(
                    f"{view.label}: {r.status}, {r.keys} keys, {r.iterations} iterations{rebuilt}"
                )
            if r.error:
                self.stdout.write(f"    error: {r.error}")
                failed.append(view.label)
        if failed:
            raise CommandError(f"stepping apply: views failed: {', '.join(failed)}")

    def handle_rebuild(self, options: dict[str, Any]) -> None:
        view = maintenance.get_view(options["view"])
        with self.progress(options, f"rebuild {view.label}") as progress:
            try:
                r = maintenance.rebuild(view, options["database"], progress, options["force"])
            except Exception as e:
                raise CommandError(
                    f"stepping rebuild: view {view.label} failed: {type(e).__name__}: {e}"
                ) from e
        if r.build.status == "building":
            raise CommandError(
                f"stepping rebuild: view {view.label} is being built by another process; "
                "wait for it, or pass --force to replace that build"
            )
        self.stdout.write(
            f"{view.label}: rebuilt from {r.build.rows} source rows, "
            f"{r.build.caught_up} keys caught up, then {r.apply.keys} pending keys applied"
        )

    def handle_verify(self, options: dict[str, Any]) -> None:
        differ = []
        for view in maintenance.select_views(options["views"]):
            v = maintenance.verify(view, options["database"], rel_tol=options["rel_tol"])
            self.stdout.write(f"{v.view}: {'ok' if v.ok else 'DIFFERS'}")
            for row, c in v.extra:
                self.stdout.write(f"    extra (x{c}): {row!r}")
            for row, c in v.missing:
                self.stdout.write(f"    missing (x{c}): {row!r}")
            for typed, stored in v.inconsistent:
                self.stdout.write(f"    columns {typed!r} != stored data {stored!r}")
            if not v.ok:
                differ.append(v.view)
                if v.pending:
                    self.stdout.write(
                        f"    ({v.pending} changes pending: `stepping apply` first if those "
                        "explain the differences)"
                    )
        if differ:
            raise CommandError(
                f"stepping verify: {', '.join(differ)} differ from a from-scratch computation"
            )

    def handle_graph(self, options: dict[str, Any]) -> None:
        try:
            text = maintenance.graph(options["view"], options["format"], options["output"])
        except (RuntimeError, ValueError) as e:
            raise CommandError(str(e)) from None
        if options["output"] is not None:
            self.stdout.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text)

    def handle_prune(self, options: dict[str, Any]) -> None:
        dry = options["dry_run"]
        for p in maintenance.prune(options["views"], options["database"], dry_run=dry):
            verb = "would drop" if dry else "dropped"
            if not (p.tables or p.snapshots):
                self.stdout.write(f"{p.view}: nothing to prune")
                continue
            self.stdout.write(
                f"{p.view}: {verb} {len(p.tables)} tables and the input snapshots of "
                f"{len(p.snapshots)} old builds"
            )
            if options["verbosity"] >= 1:
                for t in p.tables:
                    self.stdout.write(f"    {t}")
