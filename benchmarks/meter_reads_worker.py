"""One engine's run of the meter-reads workload; `meter_reads.py` starts it in a subprocess.

The engine is chosen by the environment variable METER_READS_ENGINE: `ours` imports
`stepping_django.engine`, `stepping` imports the `stepping==0.0.3` package (run from its own
virtualenv). Both get the same rows (same seed) and the same query, written once against the
API the two share. The figures come back as one JSON line on stdout, prefixed `RESULT `.
"""

import argparse
import datetime
import json
import os
import pathlib
import random
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

ENGINE = os.environ.get("METER_READS_ENGINE", "ours")
if ENGINE == "stepping":
    import stepping as st  # type: ignore[import-not-found,unused-ignore]
else:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    from stepping_django import engine as st  # type: ignore[no-redef,unused-ignore]

UTC = datetime.UTC
JAN_2023 = datetime.datetime(2023, 1, 1, tzinfo=UTC)
HALF_HOURS_IN_JANUARY = 31 * 48


class User(st.Data):
    user_id: int
    name: str


class Meter(st.Data):
    meter_id: uuid.UUID
    user_id: int


class HalfHourlyMeterRead(st.Data):
    meter_id: uuid.UUID
    timestamp: datetime.datetime
    value: float


class DatedRead(st.Data):
    user_id: int
    meter_id: uuid.UUID
    date: datetime.date
    timestamp: datetime.datetime
    value: float


class DailyTotal(st.Data):
    user_id: int
    meter_id: uuid.UUID
    date: datetime.date
    total: float


def add_date(p: st.Pair[st.Pair[User, Meter], HalfHourlyMeterRead]) -> DatedRead:
    read = p.right
    return DatedRead(
        user_id=p.left.left.user_id,
        meter_id=read.meter_id,
        date=read.timestamp.date(),
        timestamp=read.timestamp,
        value=read.value,
    )


def pick_value(r: DatedRead) -> float:
    return r.value


def to_daily_total(p: st.Pair[float, tuple[int, uuid.UUID, datetime.date]]) -> DailyTotal:
    user_id, meter_id, date = p.right
    return DailyTotal(user_id=user_id, meter_id=meter_id, date=date, total=p.left)


INDEX_DATE = st.Index.pick(DailyTotal, lambda t: t.date)
cache = st.Cache[DailyTotal]()


def query(
    users: st.ZSet[User], meters: st.ZSet[Meter], reads: st.ZSet[HalfHourlyMeterRead]
) -> st.ZSet[DailyTotal]:
    user_meters = st.join(
        users,
        meters,
        on_left=st.Index.pick(User, lambda u: u.user_id),
        on_right=st.Index.pick(Meter, lambda m: m.user_id),
    )
    joined = st.join(
        user_meters,
        reads,
        on_left=st.Index.pick(st.Pair[User, Meter], lambda p: p.right.meter_id),
        on_right=st.Index.pick(HalfHourlyMeterRead, lambda r: r.meter_id),
    )
    dated = st.map(joined, f=add_date)
    summed = st.group_reduce_flatten(
        dated,
        by=st.Index.pick(DatedRead, lambda r: (r.user_id, r.meter_id, r.date)),
        zero=float,
        pick_value=pick_value,
    )
    totals = st.map(summed, f=to_daily_total)
    _ = cache[totals](lambda z: st.integrate_indexed(z, indexes=(INDEX_DATE,)))
    return totals


graph = st.compile(query)


# -- the rows -------------------------------------------------------------------------------


def make_rows(
    n: int, extra: int, seed: int = 1
) -> tuple[list[User], list[Meter], list[HalfHourlyMeterRead]]:
    """100 users, 100 meters (one per user), n + extra half-hourly reads in January 2023.

    Values are multiples of 0.5, so every sum is exact in a float."""
    rng = random.Random(seed)
    users = [User(user_id=i, name=f"user {i}") for i in range(1, 101)]
    meters = [Meter(meter_id=uuid.UUID(int=rng.getrandbits(128)), user_id=i) for i in range(1, 101)]
    reads = [
        HalfHourlyMeterRead(
            meter_id=meters[rng.randrange(100)].meter_id,
            timestamp=JAN_2023
            + datetime.timedelta(minutes=30 * rng.randrange(HALF_HOURS_IN_JANUARY)),
            value=rng.randrange(2001) / 2,
        )
        for _ in range(n + extra)
    ]
    return users, meters, reads


def expected_totals(
    meters: list[Meter], reads: list[HalfHourlyMeterRead]
) -> dict[tuple[int, uuid.UUID, datetime.date], float]:
    user_of = {m.meter_id: m.user_id for m in meters}
    out: dict[tuple[int, uuid.UUID, datetime.date], float] = {}
    for r in reads:
        k = (user_of[r.meter_id], r.meter_id, r.timestamp.date())
        out[k] = out.get(k, 0.0) + r.value
    return out


# -- stores ---------------------------------------------------------------------------------


def pg_schema() -> str:
    return f"meter_reads_{ENGINE}"


def pg_url(url: str) -> str:
    """`url` with this engine's own schema first on the search path."""
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{pg_schema()}"


def open_store(kind: str, db: str, create: bool = True) -> tuple[Any, Callable[[], None]]:
    """A store of `kind` (fresh tables when `create`), and a function closing its connection."""
    if kind == "memory":
        return st.StorePython.from_graph(graph), lambda: None
    if kind == "sqlite":
        path = pathlib.Path(db)
        if create:
            for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                p.unlink(missing_ok=True)
        cm = st.connection_sqlite(path)
        conn = cm.__enter__()
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=create)
        return store, lambda: cm.__exit__(None, None, None)
    if kind == "postgres":
        if create:
            reset_pg_schema(db)
        cm = st.connection_postgres(pg_url(db))
        conn = cm.__enter__()
        store = st.StorePostgres.from_graph(conn, graph, create_tables=create)
        return store, lambda: cm.__exit__(None, None, None)
    raise ValueError(f"unknown store {kind!r}")


def reset_pg_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema()} CASCADE")
        conn.execute(f"CREATE SCHEMA {pg_schema()}")


def disk_usage(kind: str, db: str) -> tuple[int, int]:
    """(bytes on disk, rows) of the delay tables (every table but `last_update`)."""
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "last_update"
        ]
        rows = sum(conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names)
        conn.close()
        return os.path.getsize(db), rows
    import psycopg

    with psycopg.connect(url_or(db), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (pg_schema(),)
            )
            if r[0] != "last_update"
        ]
        conn.execute("VACUUM")
        size = rows = 0
        for n in names:
            q = f'{pg_schema()}."{n}"'
            size += conn.execute("SELECT pg_total_relation_size(%s::regclass)", (q,)).fetchone()[0]
            rows += conn.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
        return size, rows


def url_or(db: str) -> str:
    return db


# -- the run --------------------------------------------------------------------------------


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    i = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[i]


def lookup(store: Any, d: datetime.date) -> list[tuple[Any, Any, int]]:
    z = cache.zset(store)
    keys: Any = frozenset((d,)) if ENGINE == "stepping" else (d,)
    return list(z.iter_by_index(INDEX_DATE, keys))


def run(args: argparse.Namespace) -> dict[str, Any]:
    users, meters, reads = make_rows(args.n, args.inserts)
    load, singles = reads[: args.n], reads[args.n :]
    store, close = open_store(args.store, args.db)
    users_action, meters_action, reads_action = st.actions(store, graph)
    users_action.insert(*users)
    meters_action.insert(*meters)

    batches = list(st.batched(load, args.batch))
    batch_secs: list[float] = []
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t_load = time.perf_counter()
    c_load = time.process_time()
    batch_cpu: list[float] = []
    for chunk in batches:
        t0 = time.perf_counter()
        c0 = time.process_time()
        reads_action.insert(*chunk)
        batch_cpu.append(time.process_time() - c0)
        batch_secs.append(time.perf_counter() - t0)
    load_secs = time.perf_counter() - t_load
    load_cpu = time.process_time() - c_load
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)

    tenth = max(1, len(batches) // 10)
    first = sum(len(b) for b in batches[:tenth]) / sum(batch_secs[:tenth])
    last = sum(len(b) for b in batches[-tenth:]) / sum(batch_secs[-tenth:])
    # The same ratio by this process's CPU time: what the engine costs, whatever else the
    # machine is running (SQL stores: the database server's time is not in it).
    cpu_ratio = sum(batch_cpu[:tenth]) / max(1e-9, sum(batch_cpu[-tenth:]))
    # Once every (user, meter, day) group exists, each batch retracts and re-adds totals
    # instead of creating them: the second 10% against the last 10% compares steady states.
    second = sum(len(b) for b in batches[tenth : 2 * tenth]) / sum(batch_secs[tenth : 2 * tenth])

    rng = random.Random(2)
    dates = [
        JAN_2023.date() + datetime.timedelta(days=rng.randrange(31)) for _ in range(args.lookups)
    ]
    lookup_secs = []
    looked_up = 0
    for d in dates:
        t0 = time.perf_counter()
        rows = lookup(store, d)
        lookup_secs.append(time.perf_counter() - t0)
        looked_up += len(rows)

    insert_secs = []
    for r in singles:
        t0 = time.perf_counter()
        reads_action.insert(r)
        insert_secs.append(time.perf_counter() - t0)

    plain_secs = plain_select(store, dates) if args.store != "memory" else []
    correct, cache_rows = check(store, meters, reads)
    close()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    disk, delay_rows = disk_usage(args.store, args.db) if args.store != "memory" else (0, 0)
    return {
        "load_cpu_secs": load_cpu,
        "cpu_last_over_first": cpu_ratio,
        "last_over_second": last / second,
        "load_avg": os.getloadavg()[0],
        "plain_select_p50_ms": statistics.median(plain_secs) * 1e3 if plain_secs else None,
        "lookup_over_plain": (
            statistics.median(lookup_secs) / statistics.median(plain_secs) if plain_secs else None
        ),
        "disk_bytes": disk or None,
        "delay_rows": delay_rows or None,
        "bytes_per_delay_row": disk / delay_rows if delay_rows else None,
        "engine": ENGINE,
        "store": args.store,
        "n": args.n,
        "batch": args.batch,
        "load_secs": load_secs,
        "rows_per_sec": args.n / load_secs,
        "first10_rows_per_sec": first,
        "last10_rows_per_sec": last,
        "last_over_first": last / first,
        "lookup_p50_ms": statistics.median(lookup_secs) * 1e3,
        "lookup_rows": looked_up / max(1, len(dates)),
        "insert_p50_ms": statistics.median(insert_secs) * 1e3 if insert_secs else None,
        "insert_p99_ms": percentile(insert_secs, 99) * 1e3 if insert_secs else None,
        "peak_mb": maxrss_kb / 1024,
        "cache_rows": cache_rows,
        "correct": correct,
    }


def check(store: Any, meters: list[Meter], reads: list[HalfHourlyMeterRead]) -> tuple[bool, int]:
    """Whether the cache equals the plain-Python sums, and how many rows it has."""
    got = {
        (row.user_id, row.meter_id, row.date): (row.total, c) for row, c in cache.zset(store).iter()
    }
    want = expected_totals(meters, reads)
    ok = len(got) == len(want) and all(got.get(k) == (v, 1) for k, v in want.items())
    return ok, len(got)


def plain_select(store: Any, dates: list[datetime.date]) -> list[float]:
    """The same lookups as one indexed SELECT each of the cache rows' columns (ours only)."""
    if ENGINE != "ours":
        return []
    table = store.state(cache.spec).table
    (col,) = table.columns[INDEX_DATE]
    d = store.dialect
    sql = f'SELECT "data", "c" FROM {table.q} WHERE {col.q} = {d.ph}'
    out = []
    for day in dates:
        t0 = time.perf_counter()
        d.execute(store.conn, sql, [col.encode(day)])
        out.append(time.perf_counter() - t0)
    return out


def insert_chunk(chunk: list[HalfHourlyMeterRead], at: Any, kind: str, db: str) -> None:
    """The seed page's recipe: each chunk in its own process, connection and store."""
    store, close = open_store(kind, db, create=False)
    try:
        _, _, reads_action = st.actions(store, graph)
        reads_action.insert(*chunk, time=at)
    finally:
        close()


def run_parallel(args: argparse.Namespace) -> dict[str, Any]:
    """Load the reads with `args.parallel` processes, Time(i, frontier=i-1, flush_every_set)."""
    import concurrent.futures
    import multiprocessing

    users, meters, reads = make_rows(args.n, 0)
    store, close = open_store(args.store, args.db)
    users_action, meters_action, _ = st.actions(store, graph)
    users_action.insert(*users, time=st.Time(input_time=0, frontier=-1, flush_every_set=True))
    meters_action.insert(*meters, time=st.Time(input_time=0, frontier=-1, flush_every_set=True))
    close()
    batches = list(st.batched(reads, args.batch))
    times = [
        st.Time(input_time=i, frontier=i - 1, flush_every_set=True)
        for i, _ in enumerate(batches, start=1)
    ]
    k = len(batches)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.parallel, mp_context=ctx) as ex:
        list(ex.map(int, range(args.parallel)))  # start the workers before the clock
        t0 = time.perf_counter()
        for _ in ex.map(insert_chunk, batches, times, [args.store] * k, [args.db] * k):
            pass
        secs = time.perf_counter() - t0
    store, close = open_store(args.store, args.db, create=False)
    correct, cache_rows = check(store, meters, reads)
    close()
    return {
        "engine": ENGINE,
        "store": args.store,
        "n": args.n,
        "batch": args.batch,
        "workers": args.parallel,
        "load_secs": secs,
        "rows_per_sec": args.n / secs,
        "cache_rows": cache_rows,
        "correct": correct,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="memory", choices=("memory", "sqlite", "postgres"))
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--inserts", type=int, default=50)
    p.add_argument("--db", default="")
    p.add_argument("--profile", default="")
    p.add_argument("--parallel", type=int, default=0, help="load with this many processes")
    args = p.parse_args()
    result = run_parallel(args) if args.parallel else run(args)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
