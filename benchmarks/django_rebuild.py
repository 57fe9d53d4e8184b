"""Rebuild speed and memory: `stepping rebuild` of the meter-reads view on Postgres, against
`REFRESH MATERIALIZED VIEW` of the same query and against stepping's insert path.

    .venv/bin/python benchmarks/django_rebuild.py --sizes 100000 1000000 --insert-n 100000

The workload of benchmarks/meter_reads.py as Django models (benchmarks/meter_app): 100
customers, 100 meters (UUID keys), N half-hourly reads; the view joins customers, meters and
reads and sums the values per (customer, meter, date). For each N, on a fresh database
`bench_rebuild`:

1. rebuild: the reads are loaded with plain SQL (no capture), then
   `maintenance.rebuild(view)` runs in its own process: rows/s over all source rows, and
   the process's peak memory (ru_maxrss) and its memory after Django's set-up;
2. REFRESH MATERIALIZED VIEW of the same query in SQL (best of 2), rows/s over the reads;
3. the cache is checked against the materialized view (same groups, same sums).

Then the insert path, once, at --insert-n reads: the reads written through the ORM
(`bulk_create`, 1,000 per transaction), each transaction captured and applied (EAGER).

The run's section replaces the previous "Django rebuild" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SETTINGS = "benchmarks.django_rebuild_settings"
DB = os.environ.get("BENCH_PG_NAME", "bench_rebuild")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
MEASURED_VIEW = "meter_app.daily_totals"

QUERY = """
SELECT c.id AS customer_id, m.meter_id, (r.timestamp AT TIME ZONE 'UTC')::date AS date,
       SUM(r.value) AS total
FROM meter_app_customer c
JOIN meter_app_meter m ON m.customer_id = c.id
JOIN meter_app_read r ON r.meter_id = m.meter_id
GROUP BY 1, 2, 3
"""


def psql(url: str, *statements: str, autocommit: bool = True) -> list[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=autocommit) as conn:
        out: list[Any] = []
        for sql in statements:
            cur = conn.execute(sql)
            out.append(cur.fetchall() if cur.description else None)
        return out


def db_url() -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{DB}"


def manage(*args: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS}
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def fresh_database() -> None:
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", f"CREATE DATABASE {DB}")
    manage("migrate", "--run-syncdb", "-v", "0")


def load_sql(n: int) -> None:
    """100 customers, 100 meters, `n` reads (n/100 half-hours per meter), in SQL."""
    per_meter = n // 100
    psql(
        db_url(),
        "INSERT INTO meter_app_customer (id) SELECT g FROM generate_series(0, 99) g",
        "INSERT INTO meter_app_meter (meter_id, customer_id) "
        "SELECT md5('meter' || g)::uuid, g FROM generate_series(0, 99) g",
        "INSERT INTO meter_app_read (meter_id, timestamp, value) "
        "SELECT m.meter_id, TIMESTAMPTZ '2023-01-01 00:00+00' + s * INTERVAL '30 minutes', "
        f"  ((s * 7 + m.customer_id * 13) % 1000) / 4.0 "
        f"FROM meter_app_meter m CROSS JOIN generate_series(0, {per_meter - 1}) s",
        "ANALYZE",
    )


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rebuild() -> dict[str, Any]:
    """In its own process: set up Django, rebuild the view, report time and memory."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from stepping_django import maintenance

    setup_mb = maxrss_mb()
    trace: list[tuple[float, float]] = []  # (fraction of the rows done, peak MB so far)

    def progress(done: int, total: int) -> None:
        if total and (not trace or done / total >= trace[-1][0] + 0.1):
            trace.append((round(done / total, 2), round(maxrss_mb(), 1)))

    start = time.perf_counter()
    result = maintenance.rebuild(MEASURED_VIEW, progress=progress)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": result.build.rows,
        "setup_mb": setup_mb,
        "peak_mb": maxrss_mb(),
        "trace": trace,
        "status": result.build.status,
    }


def child_insert(n: int) -> dict[str, Any]:
    """In its own process: write `n` reads through the ORM, captured and applied (EAGER)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    sys.path.insert(0, str(ROOT))
    import datetime as dt
    import uuid

    import django

    django.setup()
    from django.db import transaction

    from benchmarks.meter_app.models import Customer, Meter, Read
    from stepping_django import maintenance

    with transaction.atomic():
        customers = Customer.objects.bulk_create([Customer(id=i) for i in range(100)])
        meters = Meter.objects.bulk_create(
            [Meter(meter_id=uuid.uuid4(), customer=c) for c in customers]
        )
    setup_mb = maxrss_mb()
    t0 = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    per_meter = n // 100
    start = time.perf_counter()
    for s0 in range(0, per_meter, 10):  # 10 half-hours x 100 meters = 1,000 reads
        with transaction.atomic():
            Read.objects.bulk_create(
                [
                    Read(
                        meter=m,
                        timestamp=t0 + dt.timedelta(minutes=30 * s),
                        value=((s * 7 + i * 13) % 1000) / 4.0,  # exact in binary: sums too
                    )
                    for s in range(s0, min(s0 + 10, per_meter))
                    for i, m in enumerate(meters)
                ]
            )
    seconds = time.perf_counter() - start
    pending = maintenance.pending_count(MEASURED_VIEW)
    return {
        "seconds": seconds,
        "rows": per_meter * 100,
        "setup_mb": setup_mb,
        "peak_mb": maxrss_mb(),
        "pending": pending,
        "fresh": maintenance.verify(MEASURED_VIEW).ok,
    }


def in_child(kind: str, n: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--n", str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def refresh_matview() -> float:
    psql(db_url(), f"CREATE MATERIALIZED VIEW bench_daily AS {QUERY} WITH NO DATA")
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        psql(db_url(), "REFRESH MATERIALIZED VIEW bench_daily")
        best = min(best, time.perf_counter() - start)
    return best


def same_as_matview() -> bool:
    (rows,) = psql(
        db_url(),
        "SELECT COUNT(*), "
        "  (SELECT COUNT(*) FROM bench_daily), "
        "  COUNT(*) FILTER (WHERE abs(v.total - b.total) > 1e-6 OR b.total IS NULL) "
        "FROM stepping_meter_app_daily_totals v "
        "LEFT JOIN bench_daily b ON b.customer_id = v.customer_id AND b.meter_id = v.meter_id "
        "  AND b.date = v.date",
    )
    ours, theirs, wrong = rows[0]
    return bool(ours == theirs and wrong == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--insert-n", type=int, default=100_000)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--child", choices=["rebuild", "insert"])
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    if args.child == "rebuild":
        print(json.dumps(child_rebuild()))
        return
    if args.child == "insert":
        print(json.dumps(child_insert(args.n)))
        return

    rows = []
    for n in args.sizes:
        fresh_database()
        load_sql(n)
        rebuild = in_child("rebuild")
        matview = refresh_matview()
        ok = same_as_matview()
        source_rows = n + 200
        rows.append((n, rebuild, matview, ok, source_rows))
        print(
            f"N={n:,}: rebuild {rebuild['seconds']:.1f}s "
            f"({source_rows / rebuild['seconds']:,.0f} rows/s, peak {rebuild['peak_mb']:.0f} MB)"
            f"; REFRESH MATERIALIZED VIEW {matview:.2f}s; same: {ok}",
            flush=True,
        )
        print(f"  peak memory as the rebuild went (fraction done, MB): {rebuild['trace']}")
    insert = None
    if args.insert_n:
        fresh_database()
        insert = in_child("insert", args.insert_n)
        print(
            f"insert path N={insert['rows']:,}: {insert['seconds']:.1f}s "
            f"({insert['rows'] / insert['seconds']:,.0f} rows/s, peak {insert['peak_mb']:.0f} MB)"
            f"; fresh: {insert['fresh']}",
            flush=True,
        )
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    if not args.no_record:
        record(args, rows, insert)


def record(args: argparse.Namespace, rows: list[Any], insert: dict[str, Any] | None) -> None:
    command = " ".join(["benchmarks/django_rebuild.py", *sys.argv[1:]])
    lines = [
        "## Django rebuild (meter reads on Postgres: rebuild vs REFRESH MATERIALIZED VIEW vs "
        "insert path)",
        "",
        f"- command: `.venv/bin/python {command}`",
        f"- machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "- view: customers JOIN meters JOIN reads, SUM(value) GROUP BY (customer, meter, date); "
        "100 customers, 100 meters; BATCH_SIZE "
        f"{os.environ.get('BENCH_BATCH', '1000')} source rows per page (one transaction each)",
        "- rebuild: `maintenance.rebuild` in its own process (keyset pages, no source table "
        "loaded whole); rows/s over all source rows (reads + customers + meters); memory is "
        "that process's ru_maxrss",
        "- REFRESH MATERIALIZED VIEW: the same query in SQL, best of 2; rows/s over the reads",
        "",
        "| reads (N) | rebuild, s | rebuild, rows/s | peak memory, MB (after set-up) | "
        "REFRESH MATERIALIZED VIEW, s | REFRESH, rows/s | rebuild / REFRESH time | "
        "cache = matview |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, r, matview, ok, source_rows in rows:
        lines.append(
            f"| {n:,} | {r['seconds']:.1f} | {source_rows / r['seconds']:,.0f} | "
            f"{r['peak_mb']:.0f} ({r['setup_mb']:.0f}) | {matview:.2f} | {n / matview:,.0f} | "
            f"{r['seconds'] / matview:.0f}x | {ok} |"
        )
    if insert:
        lines += [
            "",
            f"Insert path at {insert['rows']:,} reads (ORM `bulk_create` of 1,000 reads per "
            "transaction, captured and applied on commit, EAGER): "
            f"{insert['seconds']:.1f} s, {insert['rows'] / insert['seconds']:,.0f} reads/s, "
            f"peak memory {insert['peak_mb']:.0f} MB ({insert['setup_mb']:.0f} after set-up); "
            f"view equals a from-scratch computation: {insert['fresh']}.",
        ]
    lines += [
        "",
        "Peak memory (MB) of the rebuild process as it went, at each tenth of the rows:",
        "",
    ]
    for n, r, *_ in rows:
        lines.append(f"- {n:,} reads: " + ", ".join(f"{f:.0%} {mb:.1f}" for f, mb in r["trace"]))
    if len(rows) >= 2:
        (n1, r1, *_), (n2, r2, *_) = rows[0], rows[-1]
        lines += [
            "",
            f"Peak memory of rebuild at {n2:,} reads vs {n1:,}: {r2['peak_mb']:.0f} MB vs "
            f"{r1['peak_mb']:.0f} MB ({r2['peak_mb'] / r1['peak_mb']:.2f}x for "
            f"{n2 / n1:.0f}x the rows).",
        ]
    section = "\n".join(lines) + "\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    head = "## Django rebuild"
    if head in text:
        start = text.index(head)
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
