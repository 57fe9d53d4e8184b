"""`manage.py stepping status|apply|rebuild|verify [VIEW ...]`: thin over maintenance.py."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from stepping_django import maintenance
from stepping_django.apply import apply_view
from stepping_django.registry import ViewNotFound, registry


class Command(BaseCommand):
    help = "Incremental views: status, apply (drain now), rebuild, verify."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "apply", "rebuild", "verify"])
        parser.add_argument(
            "views", nargs="*", help="view labels (app_label.view_name); all by default"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        try:
            views = [registry.get(v) for v in options["views"]] or registry.views()
        except ViewNotFound as e:
            raise CommandError(str(e)) from None
        action = options["action"]
        if action == "status":
            labels = {v.label for v in views}
            for s in maintenance.status(using):
                if s.view in labels:
                    rows = "not built" if s.rows is None else f"{s.rows} rows"
                    old = "" if s.up_to_date_version else ", to rebuild (new version)"
                    self.stdout.write(
                        f"{s.view}: {s.status}, t={s.time}, {s.pending} pending, {rows}{old}"
                    )
                    if s.error:
                        self.stdout.write(f"    error: {s.error}")
            return
        failed = False
        for view in views:
            if action == "verify":
                diff = maintenance.verify(view, using)
                self.stdout.write(f"{view.label}: {'ok' if not diff else 'DIFFERS'}")
                for row, c in sorted(diff.iter(), key=repr):
                    kind = "extra" if c > 0 else "missing"
                    self.stdout.write(f"    {kind} (x{abs(c)}): {row!r}")
                failed |= bool(diff)
                continue
            result = (maintenance.rebuild if action == "rebuild" else apply_view)(view, using)
            self.stdout.write(
                f"{view.label}: {result.status}, {result.keys} keys, "
                f"{result.iterations} iterations{', rebuilt' if result.rebuilt else ''}"
            )
            if result.error:
                self.stdout.write(f"    error: {result.error}")
            failed |= result.status == "failed"
        if failed:
            what = "differ from a from-scratch computation" if action == "verify" else "failed"
            raise CommandError(f"stepping {action}: some views {what}")
