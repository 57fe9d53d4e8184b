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


def open_store(kind: str, db: str) -> tuple[Any, Callable[[], None]]:
    """A fresh store of `kind`, and a function that closes its connection."""
    if kind == "memory":
        return st.StorePython.from_graph(graph), lambda: None
    if kind == "sqlite":
        path = pathlib.Path(db)
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        cm = st.connection_sqlite(path)
        conn = cm.__enter__()
        store = st.StoreSQLite.from_graph(conn, graph, create_tables=True)
        return store, lambda: cm.__exit__(None, None, None)
    if kind == "postgres":
        drop_postgres_tables(db)
        cm = st.connection_postgres(db)
        conn = cm.__enter__()
        store = st.StorePostgres.from_graph(conn, graph, create_tables=True)
        return store, lambda: cm.__exit__(None, None, None)
    raise ValueError(f"unknown store {kind!r}")


def drop_postgres_tables(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        for name in names:
            conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')


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
    for chunk in batches:
        t0 = time.perf_counter()
        reads_action.insert(*chunk)
        batch_secs.append(time.perf_counter() - t0)
    load_secs = time.perf_counter() - t_load
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)

    tenth = max(1, len(batches) // 10)
    first = sum(len(b) for b in batches[:tenth]) / sum(batch_secs[:tenth])
    last = sum(len(b) for b in batches[-tenth:]) / sum(batch_secs[-tenth:])

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

    got = {
        (row.user_id, row.meter_id, row.date): (row.total, c) for row, c in cache.zset(store).iter()
    }
    want = expected_totals(meters, reads)
    correct = len(got) == len(want) and all(got.get(k) == (v, 1) for k, v in want.items())
    close()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
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
        "cache_rows": len(got),
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
    args = p.parse_args()
    print("RESULT " + json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
