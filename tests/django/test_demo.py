"""The demo project (what `make demo` runs) migrates, runs, and its views check out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_its_views_equal_a_from_scratch_computation(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--noinput", "-v", "0")
    out = manage("shop_demo")
    assert "every view equals a from-scratch computation over the tables: True" in out
    assert "pending changes: 0" in out
    assert "  + fay      180.00" in out  # a basket created by the demo's changes
    assert "  - bob      650.00" in out  # and one it deleted
    status = manage("stepping", "status")  # what `make demo` prints last
    for view in ("shop.basket_totals", "shop.product_day_revenue", "shop.top_products"):
        assert view in status
    assert status.count("│ fresh │") == 3
