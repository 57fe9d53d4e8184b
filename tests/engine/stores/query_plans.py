"""The query-plan audit: no statement of an iteration makes SQLite read a state table whole.

The store's contract (issue 4, point 3): joins, group lookups and distinct fetch only the
keys the change touches. SQLite may still answer a keyed statement by reading every row
(it did for `(a, b) IN (VALUES ...)`), which no result shows and small tables never feel.
So `no_full_reads` records the statements SQLite runs during an iteration and asks it,
with `EXPLAIN QUERY PLAN`, how it reads each table. A plan step on a state table is O(table)
when it is
- `SCAN t`: every row;
- `SCAN t USING [COVERING] INDEX ix`: every entry of an index, as many as rows;
- `... AUTOMATIC ... INDEX`: SQLite builds a throwaway index by reading every row;
- `SEARCH t USING INDEX ix (c<?)`: a range with no equality reads what the range covers,
  up to the whole table;
unless `_bounded` gives the reason this one cannot grow with the table: the probe of the
partial index of negative weights, the first rows of an ordered index up to a LIMIT, or a
whole read that `WHOLE_BY_DESIGN` explains. `SEARCH` with an equality (`=?`, also for IN
lists and IS NULL) reads the rows of the keys it is given. Scans of rows the statement
makes itself (a VALUES list, a subquery) cost what it carries; `last_update` is a row
per state table, read and written by name.

Each distinct statement of an iteration is explained, with its values: plans are not
cached by shape, since a plan may depend on the values (a partial index serves a literal
only if its condition implies the index's), and explaining costs ~40 µs a statement.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from stepping_django import engine as st
from stepping_django.engine.operators.first_n import FirstNVertex
from stepping_django.engine.stores.sql import quote

#: The states operators read whole on purpose (`zset()`), by (vertex kind, state suffix),
#: and why that read is not O(history): the state is small by construction, or all of it
#: is the operator's output (which any store must then read whole).
WHOLE_BY_DESIGN: dict[tuple[str, str], str] = {
    ("reduce", "total"): "reduce keeps one row, its total",
    ("first_n", "top"): "an ungrouped first_n keeps its previous top n: at most n rows",
    ("delay", "last"): "delay outputs its previous value whole: as large as its input",
    ("integrate_delay", "sum"): "integrate_delay outputs the integral so far, whole",
    ("integrate", "sum"): "an integral that a query outputs or maps is its whole output",
}

#: `zset()`: the statement of a whole read by design.
WHOLE_READ = 'SELECT "identity", "data", "c" FROM {}'

_STEP = re.compile(r"^(SCAN|SEARCH) (.+?)(?: USING (.+))?$")
#: The names SQLite gives rows it makes itself.
_MADE = re.compile(r"^(\(subquery-\d+\)|\d+ CONSTANT ROWS|CONSTANT ROW)$")
_ALIAS = r'\s+AS\s+("(?:[^"]|"")+"|\w+)'
_INDEX = re.compile(r"^(?:COVERING )?INDEX (.+?)(?: \(.*\))?$")
_ORDERED_LIMIT = re.compile(r"\bORDER BY\b.*\bLIMIT\b", re.S)
_EQUALITY = re.compile(r"(?<![<>!])=\?")
#: Statements that may read a table. A plain INSERT ... VALUES (the upserts) meets a
#: stored row only through its primary key.
_READS = re.compile(r"^\s*(SELECT|WITH|UPDATE|DELETE|INSERT\b.*\bSELECT\b)", re.I | re.S)
LAST_UPDATE = "last_update"


@dataclass(frozen=True)
class FullRead:
    """A statement for which SQLite reads a state table whole, with its plan."""

    table: str
    step: str
    statement: str
    plan: tuple[str, ...]

    def __str__(self) -> str:
        plan = "".join(f"\n    {s}" for s in self.plan)
        return (
            f"SQLite reads table {self.table} whole ({self.step}) for:\n"
            f"  {self.statement}\n  plan:{plan}"
        )


def state_tables(store: st.StoreSQLite, graph: st.Graph) -> dict[str, str | None]:
    """The table `store` keeps each state of `graph` in, with the reason a whole read of
    it (`WHOLE_READ`) is by design, or None where the operator must read it by key only."""
    out: dict[str, str | None] = {}
    for v in graph.vertices:
        for spec in v.states:
            suffix = spec.name.rpartition(f"{v.name}_")[2]  # st_<vertex>_<suffix>, prefixed or not
            per_group = isinstance(v, FirstNVertex) and v.group is not None
            reason = None if per_group else WHOLE_BY_DESIGN.get((v.kind, suffix))
            out[store.state(spec).table.name] = reason
    return out


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _names(statement: str, tables: Mapping[str, str | None]) -> dict[str, str | None]:
    """What each name a plan step may show stands for in `statement`: a state table (by its
    name or an alias of it), or None for rows the statement makes itself (a VALUES list, a
    subquery or a CTE, by alias) and for `last_update`."""
    names: dict[str, str | None] = {LAST_UPDATE: None}
    for m in re.finditer(r"\)" + _ALIAS, statement):
        names[_unquote(m.group(1))] = None
    for m in re.finditer(r"\bWITH\s+(?:RECURSIVE\s+)?(\w+)|,\s*(\w+)\s+AS\s*\(", statement):
        names[m.group(1) or m.group(2)] = None
    for table in tables:
        names[table] = table
        for spelled in (re.escape(quote(table)), rf"\b{re.escape(table)}\b"):
            for m in re.finditer(spelled + _ALIAS, statement):
                names[_unquote(m.group(1))] = table
    return names


def _bounded(
    conn: sqlite3.Connection,
    step: re.Match[str],
    statement: str,
    plan: tuple[str, ...],
    table: str,
    tables: Mapping[str, str | None],
) -> bool:
    """Whether a plan step on state `table` reads a part of it that does not grow with it."""
    how, using = step.group(1), step.group(3) or ""
    if "AUTOMATIC" in using:
        return False
    if how == "SEARCH":
        if _EQUALITY.search(using):
            return True
        # A range alone is bounded only in a partial index of rows of negative weight: it
        # holds just the rows stored below 0, nearly always none (the store probes it with
        # LIMIT 1 to learn whether an added row can settle a stored one at 0).
        index = _INDEX.match(using)
        if index is None:
            return False
        ddl = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", [index.group(1)]
        ).fetchone()
        return ddl is not None and str(ddl[0]).endswith('WHERE "c" < 0')
    if using:
        # Rows in the order of an index, with nothing left to sort, up to a LIMIT: SQLite
        # stops there. first_n's top n (plus its pending rows), not the table; it reads
        # past the rows of negative weight in the way (skipped, and nearly never stored).
        ordered = _ORDERED_LIMIT.search(statement) is not None
        return ordered and not any("TEMP B-TREE" in s for s in plan)
    return tables.get(table) is not None and statement == WHOLE_READ.format(quote(table))


def full_reads(
    conn: sqlite3.Connection, statement: str, tables: Mapping[str, str | None]
) -> list[FullRead]:
    """The steps of `statement`'s plan that read a state table of `tables` whole (or a
    table the audit cannot tell apart from one), each naming the table."""
    if not _READS.match(statement):
        return []
    plan = tuple(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
    names = _names(statement, tables)
    found = []
    for detail in plan:
        step = _STEP.match(detail)
        if step is None or _MADE.match(step.group(2)):
            continue
        name = step.group(2)
        table = names.get(name, f"{name} (not known to the audit)")
        if table is not None and (
            table not in tables or not _bounded(conn, step, statement, plan, table, tables)
        ):
            found.append(FullRead(table, detail, statement, plan))
    return found


@contextmanager
def no_full_reads(store: st.StoreSQLite, graph: st.Graph) -> Iterator[None]:
    """Record the statements SQLite runs on `store` in the block; if it completes, fail
    naming each one for which SQLite reads a table of a state of `graph` whole."""
    conn: sqlite3.Connection = store.conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        yield
    finally:
        conn.set_trace_callback(None)
    tables = state_tables(store, graph)
    reads = [r for s in dict.fromkeys(statements) for r in full_reads(conn, s, tables)]
    assert not reads, "\n".join(map(str, reads))
