"""The engine is pure: importing it, and running a query, loads nothing from Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from stepping_django import engine as st
from tests.engine.seed_query import LineItem, Product, cache, graph
store = st.StorePython.from_graph(graph)
products, items = st.actions(store, graph)
products.insert(Product(name="tv", price=3))
items.insert(LineItem(basket_id=1, product_name="tv", qty=2))
print(sorted(str(r) for r, _ in cache.zset(store).iter()))
print(sorted(m for m in sys.modules if m == "django" or m.startswith("django.")))
"""


def test_engine_runs_a_query_without_importing_django() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out == ["['Basket id: 1 total: $6.0']", "[]"]


def test_engine_sources_never_import_django() -> None:
    engine = ROOT / "stepping_django" / "engine"
    offenders = [
        str(p.relative_to(ROOT))
        for p in engine.rglob("*.py")
        if any(
            line.lstrip().startswith(("import django", "from django"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
