"""A grouped top n on big groups: the cost of `state.first(ordered, n, [one group])`.

    PYTHONPATH=. python benchmarks/first_n_groups.py --groups 10 --rows 100000 --n 10
    PYTHONPATH=. python benchmarks/first_n_groups.py --store postgres --pg postgresql://127.0.0.1:5432/test

A leaderboard: one state, ordered by points (descending) within a game, holding --groups
games of --rows scores each, written through the store as an iteration writes them. Then
the top --n of --touched games (default one) is read --reads times (other games each
time, none pending) and the time per read is shown, best and median; on SQLite also the
VM steps of one read (`set_progress_handler`), which grow with the rows SQLite visits. A
read that stops at n index entries per group costs the same whatever --rows is; one that
windows over the group reads all --rows. Run it with PYTHONPATH at another checkout to
measure that code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stepping_django import engine as st
from stepping_django.engine.stores.base import Ordered, StateSpec
from stepping_django.engine.stores.sql import SQLState

DEFAULT_PG = "postgresql://127.0.0.1:5432/test"
#: Rows written per iteration while loading (one upsert each).
LOAD_BATCH = 100_000


class Score(st.Data):
    game: int
    points: int


by_game = st.Index.pick(Score, lambda s: s.game)
by_points = st.Index.pick(Score, lambda s: s.points, ascending=False)
ORDERED = Ordered(by_points, by_game)


def load(store: Any, state: SQLState, groups: int, rows: int) -> None:
    """`groups` x `rows` scores, in iterations of `LOAD_BATCH` rows."""
    scores = ((g, p) for g in range(groups) for p in range(rows))
    total = groups * rows
    for start in range(0, total, LOAD_BATCH):
        batch = {
            Score(game=g, points=p): 1
            for _, (g, p) in zip(range(min(LOAD_BATCH, total - start)), scores)
        }
        store.begin(st.Time())
        state.add(st.ZSetPython(batch))
        store.commit(st.Time())


def time_reads(state: SQLState, groups: int, n: int, reads: int, touched: int) -> list[float]:
    """Milliseconds of each of `reads` reads of the top `n` of `touched` games."""
    out = []
    for i in range(reads):
        games = [(i * touched + j) % groups for j in range(touched)]
        t0 = time.perf_counter()
        top = state.first(ORDERED, n, games)
        out.append((time.perf_counter() - t0) * 1000)
        assert all(len(top[g]) == n for g in games), top
    return out


@contextmanager
def sqlite_state(groups: int, rows: int) -> Iterator[tuple[Any, SQLState, Any]]:
    with tempfile.TemporaryDirectory() as tmp, st.connection_sqlite(Path(tmp) / "b.db") as conn:
        spec = StateSpec("scores", ordered=(ORDERED,))
        store = st.StoreSQLite.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        state = store.state(spec)
        load(store, state, groups, rows)
        yield store, state, conn


@contextmanager
def postgres_state(url: str, groups: int, rows: int) -> Iterator[tuple[Any, SQLState, Any]]:
    name = f"bench_first_n_{uuid.uuid4().hex[:8]}"
    with st.connection_postgres(url) as conn:
        spec = StateSpec(name, ordered=(ORDERED,))
        store = st.StorePostgres.from_graph(conn, types.SimpleNamespace(states=(spec,)), True)
        try:
            state = store.state(spec)
            load(store, state, groups, rows)
            conn.execute(f'ANALYZE "{name}"')
            conn.commit()
            yield store, state, conn
        finally:
            conn.rollback()
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            conn.execute("DELETE FROM last_update WHERE table_name = %s", [name])
            conn.commit()


def vm_steps(conn: Any, state: SQLState, n: int, touched: int) -> int:
    """SQLite's VM instructions for one read of the top `n` of the first `touched` games."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        state.first(ORDERED, n, list(range(touched)))
    finally:
        conn.set_progress_handler(None, 1)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per group")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--touched", type=int, default=1, help="groups per read")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    for name in stores:
        t0 = time.perf_counter()
        made = (
            sqlite_state(args.groups, args.rows)
            if name == "sqlite"
            else postgres_state(args.pg, args.groups, args.rows)
        )
        with made as (_, state, conn):
            loaded = time.perf_counter() - t0
            touched = min(args.touched, args.groups)
            time_reads(state, args.groups, args.n, 2, touched)  # warm: rows decoded, plans cached
            ms = time_reads(state, args.groups, args.n, args.reads, touched)
            steps = (
                f", {vm_steps(conn, state, args.n, touched):,} VM steps" if name == "sqlite" else ""
            )
        print(
            f"{name}: {args.groups} groups x {args.rows:,} rows (loaded in {loaded:.1f} s): "
            f"top {args.n} of {touched} group(s): best {min(ms):.3f} ms, "
            f"median {statistics.median(ms):.3f} ms per read{steps}"
        )


if __name__ == "__main__":
    main()
