"""SQL floor: how long the SQL of the meter-reads load takes on its own, against the 10x budget.

    python benchmarks/sql_floor.py --store sqlite --n 100000 --batch 1000
    python benchmarks/sql_floor.py --store postgres --pg postgresql://postgres@127.0.0.1:5432/test

Our engine loads N reads in batches of B (the graph, rows and stores of
`meter_reads_worker.py`, in this process) as it is, then with the store's connection
wrapped in a proxy that records, per batch, every statement with its parameter objects,
every commit and (Postgres) every pipeline block, in order. The recorded batches are then
replayed against fresh tables made the same way, timed alone: no Python of the engine runs
between them. What the replay takes is time the engine cannot go below with these
statements, so `budget - replay` is what is left for all of the engine's Python if the load
is to reach 10x stepping's rows/s. The replayed tables are checked to equal the engine's,
row for row. The machine may be shared: the plain load and the replay run --repeat times,
and the best of each is shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from meter_reads import DEFAULT_PG, RESULTS, ROOT, section_head, update_results
from rich.console import Console
from rich.table import Table

os.environ["METER_READS_ENGINE"] = "ours"
w: Any = importlib.import_module("meter_reads_worker")

#: stepping==0.0.3's load rows/s measured by meter_reads.py on this machine (N=100,000,
#: B=1,000); pass today's with --stepping-rows-per-sec.
STEPPING_ROWS_PER_SEC = {"sqlite": 3360.0, "postgres": 2630.0}

#: One recorded call: kind (execute, executemany, commit, rollback, pipeline_enter,
#: pipeline_exit), its arguments, and what was then done with the cursor it returned.
Op = tuple[str, tuple[Any, ...], dict[str, Any], list[str]]


@dataclass
class Recording:
    """The calls of the users/meters set-up and of each load batch; `phase` is where the
    next call goes (None: not recorded, as for the store's own table creation)."""

    setup: list[Op] = field(default_factory=list)
    batches: list[list[Op]] = field(default_factory=list)
    phase: list[Op] | None = None

    def add(self, kind: str, args: tuple[Any, ...] = (), kwargs: Any = None) -> list[str] | None:
        if self.phase is None:
            return None
        cursor_ops: list[str] = []
        self.phase.append((kind, args, kwargs or {}, cursor_ops))
        return cursor_ops


class RecordingCursor:
    """A cursor that records whether its rows were read: in a Postgres pipeline, reading
    waits for the server, so the replay must read where the engine did."""

    def __init__(self, cur: Any, ops: list[str]) -> None:
        self._cur, self._ops = cur, ops

    @property
    def description(self) -> Any:
        self._ops.append("description")
        return self._cur.description

    def fetchall(self) -> list[Any]:
        self._ops.append("fetchall")
        return self._cur.fetchall()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        self._ops.append("iter")
        return iter(self._cur)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class RecordingPipeline:
    """`conn.pipeline()`, recording where the block starts and ends."""

    def __init__(self, cm: Any, rec: Recording) -> None:
        self._cm, self._rec = cm, rec

    def __enter__(self) -> Any:
        self._rec.add("pipeline_enter")
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        self._rec.add("pipeline_exit", exc)
        return self._cm.__exit__(*exc)


class RecordingConnection:
    """Forwards everything to `conn` (in_transaction, getlimit, autocommit, adapters,
    cursor_factory by attribute) and records the calls that send SQL."""

    def __init__(self, conn: Any, rec: Recording) -> None:
        self._conn, self._rec = conn, rec

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        ops = self._rec.add("execute", args, kwargs)
        cur = self._conn.execute(*args, **kwargs)
        return cur if ops is None else RecordingCursor(cur, ops)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        ops = self._rec.add("executemany", args, kwargs)
        cur = self._conn.executemany(*args, **kwargs)
        return cur if ops is None else RecordingCursor(cur, ops)

    def commit(self) -> None:
        self._rec.add("commit")
        self._conn.commit()

    def rollback(self) -> None:
        self._rec.add("rollback")
        self._conn.rollback()

    def pipeline(self) -> RecordingPipeline:
        return RecordingPipeline(self._conn.pipeline(), self._rec)


@contextlib.contextmanager
def recorded_connections(rec: Recording | None) -> Iterator[None]:
    """While open, the worker's `open_store` gets its connection wrapped (when `rec`)."""
    if rec is None:
        yield
        return
    st = w.st
    real = {name: getattr(st, name) for name in ("connection_sqlite", "connection_postgres")}

    def wrapping(open_conn: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.contextmanager
        def opened(*args: Any, **kwargs: Any) -> Iterator[RecordingConnection]:
            with open_conn(*args, **kwargs) as conn:
                yield RecordingConnection(conn, rec)

        return opened

    for name, f in real.items():
        setattr(st, name, wrapping(f))
    try:
        yield
    finally:
        for name, f in real.items():
            setattr(st, name, f)


@contextlib.contextmanager
def pg_schema(name: str) -> Iterator[None]:
    """The worker's Postgres stores use schema `name` (not meter_reads.py's own)."""
    real = w.pg_schema
    w.pg_schema = lambda: name
    try:
        yield
    finally:
        w.pg_schema = real


def server_cpu(conn: Any) -> float:
    """CPU seconds so far of the Postgres backend serving `conn`, read from /proc when the
    server runs on this machine (it is not in this process's CPU); NaN otherwise."""
    pid = getattr(getattr(conn, "info", None), "backend_pid", None)
    try:
        comm, rest = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except (OSError, ValueError):
        return float("nan")
    if pid is None or not comm.split("(", 1)[1].startswith("postgres"):
        return float("nan")
    fields = rest.split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    wall: float
    cpu: float
    server_cpu: float
    correct: bool


def engine_load(kind: str, db: str, n: int, batch: int, rec: Recording | None) -> Load:
    """The worker's load of `n` reads (users and meters first, untimed)."""
    users, meters, reads = w.make_rows(n, 0)
    with recorded_connections(rec):
        store, close = w.open_store(kind, db)
    try:
        users_action, meters_action, reads_action = w.st.actions(store, w.graph)
        if rec is not None:
            rec.phase = rec.setup
        users_action.insert(*users)
        meters_action.insert(*meters)
        batches = list(w.st.batched(reads, batch))
        s0 = server_cpu(store.conn)
        t0, c0 = time.perf_counter(), time.process_time()
        for chunk in batches:
            if rec is not None:
                rec.phase = []
                rec.batches.append(rec.phase)
            reads_action.insert(*chunk)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s1 = server_cpu(store.conn)
        if rec is not None:
            rec.phase = None
        correct, _ = w.check(store, meters, reads)
    finally:
        close()
    return Load(wall, cpu, s1 - s0, correct)


def replay(conn: Any, ops: list[Op], pipelines: list[Any]) -> None:
    """Send `ops` on `conn` as the engine did; `pipelines` holds the blocks still open."""
    for kind, args, kwargs, cursor_ops in ops:
        if kind == "execute" or kind == "executemany":
            cur = getattr(conn, kind)(*args, **kwargs)
            for op in cursor_ops:
                if op == "fetchall":
                    cur.fetchall()
                elif op == "iter":
                    list(cur)
                else:
                    _ = cur.description
        elif kind == "commit":
            conn.commit()
        elif kind == "rollback":
            conn.rollback()
        elif kind == "pipeline_enter":
            pipelines.append(conn.pipeline())
            pipelines[-1].__enter__()
        else:
            pipelines.pop().__exit__(*args)


def replay_load(kind: str, db: str, rec: Recording) -> tuple[float, float, float]:
    """Fresh tables made as `open_store` makes them, the set-up replayed untimed, then the
    load's batches replayed and timed: (wall s, process CPU s, server CPU s)."""
    store, close = w.open_store(kind, db)
    try:
        conn = store.conn
        pipelines: list[Any] = []
        replay(conn, rec.setup, pipelines)
        s0 = server_cpu(conn)
        t0, c0 = time.perf_counter(), time.process_time()
        for ops in rec.batches:
            replay(conn, ops, pipelines)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        server = server_cpu(conn) - s0
        assert not pipelines, "a pipeline block was left open"
    finally:
        close()
    return wall, cpu, server


def dump(kind: str, db: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, in primary-key order."""
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
        conn.close()
        return out
    import psycopg

    with psycopg.connect(db, autocommit=True) as pg:
        names = [
            r[0]
            for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        ]
        return {n: pg.execute(f'SELECT * FROM {schema}."{n}" ORDER BY 1').fetchall() for n in names}


def drop_schemas(url: str, names: list[str]) -> None:
    import psycopg

    importlib.import_module("stepping_django.engine.stores.postgres").close_pools()
    with psycopg.connect(url, autocommit=True) as pg:
        for name in names:
            pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def count(rec: Recording, kind: str) -> int:
    return sum(1 for ops in rec.batches for op in ops if op[0] == kind)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Engine load bare, engine load recorded, replay, and the comparison of the tables."""
    tmp = tempfile.TemporaryDirectory(prefix="sql_floor_")
    engine_schema, replay_schema = (f"sql_floor_{os.getpid()}_{s}" for s in ("engine", "replay"))

    def where(name: str) -> tuple[str, str]:
        if args.store == "sqlite":
            return str(pathlib.Path(tmp.name) / f"{name}.sqlite3"), ""
        return args.pg, engine_schema if name != "replay" else replay_schema

    def run(name: str, f: Callable[[str], Any]) -> Any:
        db, schema = where(name)
        with pg_schema(schema):
            return f(db)

    load_avg, commit = os.getloadavg()[0], engine_commit()
    try:
        bares = [
            run("bare", lambda db: engine_load(args.store, db, args.n, args.batch, None))
            for _ in range(args.repeat)
        ]
        rec = Recording()
        recorded = run("engine", lambda db: engine_load(args.store, db, args.n, args.batch, rec))
        replays = [run("replay", lambda db: replay_load(args.store, db, rec)) for _ in bares]
        tables = [dump(args.store, *where(name)) for name in ("engine", "replay")]
    finally:
        if args.store == "postgres":
            drop_schemas(args.pg, [engine_schema, replay_schema])
        tmp.cleanup()
    # Best of each: the machine is shared, and a floor is what the fastest run shows.
    bare = min(bares, key=lambda b: b.wall)
    replay_wall, replay_cpu, replay_server = min(replays)
    assert all(b.correct for b in bares) and recorded.correct, "the engine's cache is wrong"
    stepping = args.stepping_rows_per_sec or STEPPING_ROWS_PER_SEC[args.store]
    budget = args.n / (10 * stepping)
    return {
        "bare": bare,
        "recorded": recorded,
        "replay_wall": replay_wall,
        "replay_cpu": replay_cpu,
        "replay_server": replay_server,
        "stepping": stepping,
        "budget": budget,
        "statements": count(rec, "execute") + count(rec, "executemany"),
        "commits": count(rec, "commit"),
        "pipelines": count(rec, "pipeline_enter"),
        "rows": {n: len(rows) for n, rows in tables[0].items()},
        "same_counts": {n: len(r) for n, r in tables[0].items()}
        == {n: len(r) for n, r in tables[1].items()},
        "same_rows": tables[0] == tables[1],
        "commit": commit,
        "load_avg": (load_avg, os.getloadavg()[0]),
        "all_bare": [b.wall for b in bares],
        "all_replays": [wall for wall, _, _ in replays],
    }


def figures(r: dict[str, Any], n: int) -> list[tuple[str, str]]:
    """(label, value) rows; Postgres backend CPU only where it could be read."""
    bare, recorded, budget = r["bare"], r["recorded"], r["budget"]
    replay_wall = r["replay_wall"]
    rows = [
        ("engine load, no proxy (best run), wall s", f"{bare.wall:.2f}"),
        ("engine load, no proxy (best run), rows/s", f"{n / bare.wall:,.0f}"),
        ("engine load, no proxy (best run), process CPU s", f"{bare.cpu:.2f}"),
        ("engine load, no proxy (best run), Postgres backend CPU s", f"{bare.server_cpu:.2f}"),
        ("engine load with the recording proxy, wall s", f"{recorded.wall:.2f}"),
        ("engine load with the recording proxy, process CPU s", f"{recorded.cpu:.2f}"),
        ("proxy cost (recorded - best no-proxy run), wall s", f"{recorded.wall - bare.wall:+.2f}"),
        ("proxy cost (recorded - best no-proxy run), CPU s", f"{recorded.cpu - bare.cpu:+.2f}"),
        (
            "statements / commits / pipeline blocks in the load",
            f"{r['statements']:,} / {r['commits']:,} / {r['pipelines']:,}",
        ),
        ("SQL replay (best run), wall s", f"{replay_wall:.2f}"),
        ("SQL replay (best run), process CPU s", f"{r['replay_cpu']:.2f}"),
        ("SQL replay (best run), Postgres backend CPU s", f"{r['replay_server']:.2f}"),
        ("SQL replay / engine load wall", f"{replay_wall / bare.wall:.0%}"),
        (
            f"10x budget: N / (10 x {r['stepping']:,.0f} stepping rows/s), s",
            f"{budget:.2f}",
        ),
        ("SQL replay / 10x budget", f"{replay_wall / budget:.0%}"),
        ("left for all the engine's Python within the budget, s", f"{budget - replay_wall:.2f}"),
        ("SQL replay process CPU / 10x budget", f"{r['replay_cpu'] / budget:.0%}"),
        (
            "engine load CPU - SQL replay CPU (the engine's own share), s",
            f"{bare.cpu - r['replay_cpu']:.2f}",
        ),
        ("engine load / 10x budget", f"{bare.wall / budget:.2f}x"),
        (
            "replayed tables = engine's (row counts / every row)",
            f"{r['same_counts']} / {r['same_rows']}",
        ),
        ("table rows after the load", f"{sum(r['rows'].values()):,} in {len(r['rows'])} tables"),
        ("every engine load (no proxy), wall s", ", ".join(f"{x:.2f}" for x in r["all_bare"])),
        ("every SQL replay, wall s", ", ".join(f"{x:.2f}" for x in r["all_replays"])),
        ("machine load average (1 min), start / end", "{:.1f} / {:.1f}".format(*r["load_avg"])),
    ]
    return [row for row in rows if row[1] != "nan"]


def engine_commit() -> str:
    """The checkout measured: others may be changing the engine while it runs."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "stepping_django")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted engine edits" if dirty else "")


def markdown(command: str, args: argparse.Namespace, r: dict[str, Any]) -> str:
    lines = [
        *section_head(f"SQL floor: store={args.store}, N={args.n:,}, B={args.batch:,}", command),
        f"- engine: commit {r['commit']}",
        "- what: the load's statements, recorded from our engine's run with their parameter "
        "objects (and Postgres pipeline blocks), replayed alone on fresh tables made the same "
        "way; replay wall = the SQL floor of this statement plan",
        f"- stepping rows/s: {r['stepping']:,.0f}, as measured by meter_reads.py on this "
        "machine (pass today's with --stepping-rows-per-sec)",
        "- reading: the replay's wall includes waiting for the server; the engine overlaps "
        "Postgres's work with its Python (pipelined writes), so there `budget - replay` is a "
        "pessimistic bound on what is left for Python",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {a} | {b} |" for a, b in figures(r, args.n)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="sqlite", choices=("sqlite", "postgres"))
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--pg", default=os.environ.get("METER_READS_PG", DEFAULT_PG))
    p.add_argument(
        "--stepping-rows-per-sec",
        type=float,
        default=0.0,
        help="stepping's load rows/s from meter_reads.py on this machine "
        "(default: 3,360 on SQLite, 2,630 on Postgres, measured earlier)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="engine loads without the proxy, and replays, to run; the best of each is shown",
    )
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()

    r = measure(args)
    table = Table(title=f"SQL floor, store={args.store}, N={args.n:,}, B={args.batch:,}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for row in figures(r, args.n):
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"engine: commit {r['commit']}")
    console.print(
        f"stepping rows/s {r['stepping']:,.0f} is the figure meter_reads.py measured on this "
        "machine; pass today's with --stepping-rows-per-sec"
    )
    if not r["same_rows"]:
        raise SystemExit("the replayed tables differ from the engine's")
    if not args.no_write:
        command = "python benchmarks/sql_floor.py " + " ".join(sys.argv[1:])
        update_results(markdown(command, args, r))
        console.print(f"updated {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
