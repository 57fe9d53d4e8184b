"""Parallel application in the Django layer: one busy view's backlog applied by 1, 2 and 4
Celery worker processes on Postgres, with pipelined batches (stepping_django/pipeline.py).

    .venv/bin/python benchmarks/django_parallel_apply.py [--orders 60000] [--workers 1,2,4]
        [--repeat 1] [--no-record]

The view (benchmarks/orders_app): the total per customer over 5,000 customers, declared
`parallel=True`. For each worker count, on a fresh database `bench_parallel`:

1. the orders are written through the ORM (`bulk_create`, BATCH_SIZE per transaction),
   captured into the outbox; the tasks the commits sent are dropped, so the run starts
   from a backlog;
2. W `celery worker -P solo` processes start; once they are ready, one apply task for the
   view is sent (as the sweep would send it; each full batch sends one more, so the other
   workers join in), and the clock runs until the outbox is empty and no batch is in
   flight;
3. the view is checked against a from-scratch computation.

For reference, the same backlog with the one-worker-at-a-time applier (`BENCH_PARALLEL=0`:
the view without parallel=True, one transaction per batch on Django's connection).
The run's section replaces the "Parallel application in the Django layer" section of
benchmarks/RESULTS.md (`--no-record`: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SETTINGS = "benchmarks.django_parallel_settings"
DB = os.environ.get("BENCH_PG_NAME", "bench_parallel")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
QUEUE = os.environ.get("BENCH_QUEUE", "stepping-bench-parallel")
BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/13")
VIEW = "orders_app.customer_totals"
CUSTOMERS = 5_000
SECTION = "## Parallel application in the Django layer"


def psql(*statements: str, url: str | None = None) -> list[Any]:
    import psycopg

    with psycopg.connect(url or f"postgresql://postgres@127.0.0.1:5432/{DB}", autocommit=True) as c:
        out: list[Any] = []
        for sql in statements:
            cur = c.execute(sql)
            out.append(cur.fetchall() if cur.description else None)
        return out


def env(parallel: bool) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "BENCH_PARALLEL": str(int(parallel))}


def child(what: str, parallel: bool, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, *args],
        cwd=ROOT,
        env=env(parallel),
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import benchmarks.django_parallel_celery  # noqa: F401  (the app tasks are sent with)


def child_load(n: int) -> dict[str, Any]:
    """Write `n` orders through the ORM, BATCH_SIZE per transaction (captured)."""
    import random

    setup_django()
    from django.db import transaction

    from benchmarks.orders_app.models import Order
    from stepping_django import conf

    rng = random.Random(3)
    size = conf.batch_size()
    for i in range(0, n, size):
        with transaction.atomic():
            Order.objects.bulk_create(
                [
                    Order(customer=rng.randrange(CUSTOMERS), amount=rng.randint(1, 99))
                    for _ in range(min(size, n - i))
                ]
            )
    return {"orders": n}


def child_verify() -> dict[str, Any]:
    setup_django()
    from stepping_django.registry import registry

    view = registry.get(VIEW)
    maintained = view.maintained()
    return {"equal": maintained == view.from_scratch(), "rows": len(dict(maintained.iter()))}


def fresh_database(parallel: bool) -> None:
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}", url=ADMIN_URL)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"],
        cwd=ROOT,
        env=env(parallel),
        check=True,
    )


def start_workers(n: int, parallel: bool, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = open(logs / f"bench-parallel-worker{i}.log", "wb")  # noqa: SIM115 (the child holds it)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchmarks.django_parallel_celery",
                 "worker", "-P", "solo", "-Q", QUEUE, "-l", "info", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-n", f"bench{i}@%h"],
                cwd=ROOT, env=env(parallel), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
        log.close()
    deadline = time.monotonic() + 120
    for i in range(n):
        path = logs / f"bench-parallel-worker{i}.log"
        while " ready." not in path.read_text(errors="replace"):
            assert procs[i].poll() is None and time.monotonic() < deadline, path.read_text()
            time.sleep(0.05)
    return procs


def run(n: int, workers: int, parallel: bool, logs: Path) -> dict[str, Any]:
    import redis
    from celery import Celery

    fresh_database(parallel)
    child("load", parallel, str(n))
    redis.Redis.from_url(BROKER).delete(QUEUE)  # the backlog waits in the outbox, no task
    (time0,) = psql(f"SELECT time, tables FROM stepping_django_viewstate WHERE view = '{VIEW}'")
    procs = start_workers(workers, parallel, logs)
    app = Celery("bench_parallel_sender", broker=BROKER)
    most_in_flight = 0
    try:
        started = time.perf_counter()
        app.send_task("stepping_django.apply_views", args=([VIEW], "default"), queue=QUEUE)
        while True:
            pending, in_flight = psql(
                f"SELECT count(*) FROM stepping_django_outbox WHERE view = '{VIEW}'",
                f"SELECT count(*) FROM stepping_django_pipelinebatch WHERE view = '{VIEW}'",
            )
            most_in_flight = max(most_in_flight, in_flight[0][0])
            if pending[0][0] == 0 and in_flight[0][0] == 0:
                break
            assert all(p.poll() is None for p in procs), "a worker died"
            assert time.perf_counter() - started < 1800, "no progress for 30 minutes"
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    ((t1, tables1, status),) = psql(
        f"SELECT time, tables, status FROM stepping_django_viewstate WHERE view = '{VIEW}'"
    )[0]
    check = child("verify", parallel)
    return {
        "workers": workers,
        "parallel": parallel,
        "seconds": seconds,
        "rows_per_sec": n / seconds,
        "batches": t1 - time0[0][0],
        "most_in_flight": most_in_flight,
        "rebuilt": tables1 != time0[0][1],
        "status": status,
        "equal": check["equal"],
    }


def section(args: argparse.Namespace, results: list[dict[str, Any]], load: float) -> str:
    base = next(r for r in results if r["parallel"] and r["workers"] == 1)["rows_per_sec"]
    lines = [
        f"{SECTION} (benchmarks/django_parallel_apply.py, Postgres, Celery)",
        "",
        f"- command: `.venv/bin/python benchmarks/django_parallel_apply.py --orders {args.orders} "
        f"--workers {args.workers} --repeat {args.repeat}`",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}; load average (1 min) before the run {load:.2f}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- view: total per customer over {CUSTOMERS:,} customers (group sum, map), "
        f"`@incremental_view(parallel=True)`; a backlog of {args.orders:,} orders written "
        "through the ORM (captured), applied in batches of 1,000 keys by W `celery worker -P "
        "solo` processes after one apply task is sent (each full batch sends one more); "
        "clock from that task sent to an empty outbox with no batch in flight; "
        f"best of {args.repeat}; every run's view equal to a from-scratch computation",
        "",
        "| applier | workers | seconds (best) | rows/s | vs parallel, 1 worker | every run, s | "
        "batches | most batches in flight | rebuilds | view = from scratch |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {'parallel' if r['parallel'] else 'one at a time'} | {r['workers']} | "
            f"{r['seconds']:.2f} | {r['rows_per_sec']:,.0f} | {r['rows_per_sec'] / base:.2f}x | "
            f"{', '.join(f'{x:.1f}' for x in r['runs'])} | {r['batches']} | "
            f"{r['most_in_flight']} | {int(r['rebuilt'])} | {r['equal']} |"
        )
    return "\n".join(lines)


def record(text: str) -> None:
    current = RESULTS.read_text()
    pattern = re.compile(re.escape(SECTION + " (") + r".*?(?=\n## |\Z)", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: text + "\n", current)
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    RESULTS.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=60_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (best kept)")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--logs", type=Path, default=Path("/tmp"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, *rest = args.child
        out = child_load(int(rest[0])) if what == "load" else child_verify()
        print(json.dumps(out))
        return
    load = os.getloadavg()[0]
    cases = [(False, 1)] + [(True, int(w)) for w in args.workers.split(",")]
    results = []
    for parallel, workers in cases:
        best = None
        runs = []
        for _ in range(args.repeat):
            r = run(args.orders, workers, parallel, args.logs)
            assert r["equal"] and r["status"] == "fresh", r
            runs.append(r["seconds"])
            if best is None or r["seconds"] < best["seconds"]:
                best = r
        assert best is not None
        best["runs"] = runs
        print(
            f"{'parallel' if parallel else 'one at a time'}, {workers} worker(s): "
            f"{best['seconds']:.2f} s, {best['rows_per_sec']:,.0f} rows/s, "
            f"{best['batches']} batches, at most {best['most_in_flight']} in flight, "
            f"rebuilt: {best['rebuilt']}",
            flush=True,
        )
        results.append(best)
    text = section(args, results, load)
    print(text)
    if not args.no_record:
        record(text)


if __name__ == "__main__":
    main()
