"""What incremental views cost the writers, and how fresh they stay. Postgres + Redis.

    .venv/bin/python benchmarks/django_writes.py [--saves 4000] [--seconds 5] [--rate 200]

The demo shop (demo_project/shop: three views reading line items) on a fresh Postgres
database `bench_stepping`, with EAGER off (writers hand their commits to the background
publisher, which sends Celery tasks), DEBUG off:

1. save() latency: one process saves one line item per transaction (`qty` changes), with
   the views and with them switched off in that process (no signal receivers, and its
   session in `session_replication_role = replica`, where the capture trigger does not
   fire: a plain save), each
   variant in its own process, interleaved over `--rounds`; also the process CPU per save
   (its publisher thread included). Variants: Django's default database OPTIONS, and
   `prepare_threshold: 5` (psycopg may prepare capture's INSERT; Django's own queries are
   bound client-side and never prepared), each with its own plain-save baseline.
2. writes/s from 4 concurrent writer processes, with and without the views (no worker).
3. with 2 Celery worker processes (solo pool) applying: writes/s of 4 unpaced writer
   processes and how long the workers then take to empty the outbox; and the freshness
   lag under a paced writer (`--rate` writes/s): per captured key, from its capture
   (`created_at`, the database's clock) to its removal from the outbox (the applier
   deleted it in the transaction that updated the view), sampled every 10 ms.

The run's section replaces the previous "Django writes" section of benchmarks/RESULTS.md
(`--no-record`: print only). BENCH_DEBUG=1 prints every key's lag; BENCH_WORKER_LOG=info
writes the workers' logs to /tmp/bench-worker<i>.log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "benchmarks.django_bench_settings"
QUEUE = "stepping-bench"


def setup_django(views: bool = True) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import demo_project.celery  # noqa: F401  (the current Celery app)

    if not views:
        switch_views_off()


def switch_views_off() -> None:
    """This process captures nothing: no view is registered, no signal connected."""
    from django.db.models.signals import post_delete, post_save

    from stepping_django import capture
    from stepping_django.registry import registry

    for view in registry.all_views():
        registry.unregister(view.label)
    for model in list(capture._connected):
        uid = f"stepping_django:{model._meta.label}"
        post_save.disconnect(sender=model, dispatch_uid=uid)
        post_delete.disconnect(sender=model, dispatch_uid=uid)


def set_capture(on: bool) -> None:
    """Connect or disconnect this process's capture signals, and let its session fire or
    skip the capture triggers (`session_replication_role`; off: a plain save)."""
    from django.db import connection
    from django.db.models.signals import post_delete, post_save

    from stepping_django import capture

    with connection.cursor() as cursor:
        cursor.execute(f"SET session_replication_role = {'origin' if on else 'replica'}")

    for model in capture._connected:
        uid = f"stepping_django:{model._meta.label}"
        if on:
            post_save.connect(capture._on_save, sender=model, dispatch_uid=uid, weak=False)
            post_delete.connect(capture._on_delete, sender=model, dispatch_uid=uid, weak=False)
        else:
            post_save.disconnect(sender=model, dispatch_uid=uid)
            post_delete.disconnect(sender=model, dispatch_uid=uid)


def child(mode: str, views: bool, arg: float, seed: int) -> None:
    """Run in a subprocess; prints one JSON result."""
    setup_django(views)
    from django.db import transaction

    from demo_project.shop.models import LineItem

    rng = random.Random(seed)
    pks = list(LineItem.objects.values_list("pk", flat=True))
    items = {pk: LineItem.objects.get(pk=pk) for pk in rng.sample(pks, min(200, len(pks)))}
    chosen = list(items.values())

    def save_one() -> None:
        item = rng.choice(chosen)
        item.qty = rng.randint(1, 9)
        with transaction.atomic():
            item.save(update_fields=["qty"])

    if mode == "latency":
        # Blocks of 50 saves with capture on and off in turn (ABBA), so drift and the
        # machine's other load fall on both alike; off, a save is a plain save.
        for _ in range(100):  # warm up
            save_one()
        times: dict[str, list[float]] = {"none": [], "views": []}
        cpu = dict.fromkeys(times, 0.0)
        order = ["views", "none", "none", "views"]
        for block in range(2 * int(arg) // 50):
            name = order[block % 4]
            set_capture(name == "views")
            cpu0 = time.process_time()
            for _ in range(50):
                t0 = time.perf_counter()
                save_one()
                times[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - cpu0
        print(json.dumps({"times": times, "cpu": cpu}))
    elif mode == "throughput_ab":
        # All writers switch capture on and off together in slots of 0.5 s from a shared
        # start (ABBA), so the machine's other load falls on both modes alike.
        start = float(os.environ["BENCH_T0"])
        counts = {"none": 0, "views": 0}
        order = ["views", "none", "none", "views"]
        while time.time() < start:
            save_one()  # warm up until the shared start
        slot = -1
        while (now := time.time()) < start + arg:
            if int((now - start) / 0.5) != slot:
                slot = int((now - start) / 0.5)
                name = order[slot % 4]
                set_capture(name == "views")
            save_one()
            counts[name] += 1
        print(json.dumps({"writes": counts}))
    elif mode == "throughput":
        n, end = 0, time.perf_counter() + arg
        while time.perf_counter() < end:
            save_one()
            n += 1
        print(json.dumps({"writes": n, "seconds": arg}))
    elif mode == "paced":
        rate, seconds = arg, float(os.environ["BENCH_PACED_SECONDS"])
        start, n = time.perf_counter(), 0
        while (now := time.perf_counter()) < start + seconds:
            due = start + n / rate
            if now < due:
                time.sleep(due - now)
            save_one()
            n += 1
        print(json.dumps({"writes": n, "seconds": time.perf_counter() - start}))


def spawn(
    mode: str, views: bool, arg: float, seed: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **(extra or {})}
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--views",
            str(int(views)),
            "--arg",
            str(arg),
            "--seed",
            str(seed),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def recreate_database() -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], dbname="postgres", user=db["USER"], autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}"')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def load_shop(products: int, baskets: int, per_basket: int) -> None:
    import datetime as dt

    from django.core.management import call_command
    from django.db import transaction

    from demo_project.shop.models import Basket, LineItem, Product

    call_command("migrate", verbosity=0)
    rng = random.Random(1)
    with transaction.atomic():
        ps = Product.objects.bulk_create(
            [Product(name=f"p{i}", price=float(rng.randint(1, 500))) for i in range(products)]
        )
        bs = Basket.objects.bulk_create(
            [Basket(customer=f"c{i}", day=dt.date(2026, 11, 1 + i % 28)) for i in range(baskets)]
        )
        LineItem.objects.bulk_create(
            [
                LineItem(basket=b, product=rng.choice(ps), qty=rng.randint(1, 5))
                for b in bs
                for _ in range(per_basket)
            ]
        )
    drain()


def purge() -> None:
    from demo_project.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


def drain() -> None:
    """Apply everything now, including the writes of processes that had no views (their
    keys were not captured: compare every line item), and clear the queue and the flags."""
    from django.core.cache import cache

    import stepping_django
    from demo_project.shop.models import LineItem

    stepping_django.notify(LineItem)
    stepping_django.apply_pending()
    purge()
    cache.clear()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def start_workers(n: int) -> list[subprocess.Popen[str]]:
    """`n` Celery worker processes (solo pool); BENCH_WORKER_LOG=info logs to /tmp."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS}
    level = os.environ.get("BENCH_WORKER_LOG", "")
    procs = []
    for i in range(n):
        argv = ["-A", "demo_project", "worker", "-P", "solo", "-Q", QUEUE, "-n", f"bench{i}@%h"]
        argv += ["-l", level or "warning", "--without-gossip", "--without-mingle"]
        log = open(f"/tmp/bench-worker{i}.log", "w") if level else subprocess.DEVNULL  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", *argv, "--without-heartbeat"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
    return procs


def warm_up(workers: int) -> None:
    """Until each worker has applied something, the lag would include its start."""
    from django.db import transaction

    import stepping_django
    from demo_project.shop.models import LineItem
    from stepping_django.models import Outbox

    deadline = time.monotonic() + 60
    for pk in LineItem.objects.values_list("pk", flat=True)[: 4 * workers]:
        with transaction.atomic():
            stepping_django.notify(LineItem, [pk])
        while Outbox.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def measure_sustained(seconds: float) -> dict[str, float]:
    """4 unpaced writer processes while the workers apply; then the time to empty the
    outbox once they stop (the workers' backlog)."""
    from stepping_django.models import Outbox

    procs = [spawn("throughput", True, seconds, 20 + i) for i in range(4)]
    backlog = 0
    while any(p.poll() is None for p in procs):
        backlog = max(backlog, Outbox.objects.count())
        time.sleep(0.2)
    writes = sum(result(p)["writes"] for p in procs)
    stopped = time.monotonic()
    while Outbox.objects.exists():
        if time.monotonic() > stopped + 300:
            raise SystemExit("the workers did not empty the outbox within 300 s")
        time.sleep(0.01)
    return {
        "rate": writes / seconds,
        "backlog_max": backlog,
        "drain": time.monotonic() - stopped,
    }


def measure_lag(rate: float, seconds: float) -> dict[str, float]:
    from django.db import connection

    writer = spawn("paced", True, rate, 7, {"BENCH_PACED_SECONDS": str(seconds)})
    seen: dict[int, datetime] = {}
    lags: list[float] = []
    backlog: list[int] = []
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT id, created_at FROM stepping_django_outbox")
            now = datetime.now(UTC)
            current = dict(cursor.fetchall())
            backlog.append(len(current))
            for i in list(seen):
                if i not in current:
                    created = seen.pop(i)
                    lags.append((now - created).total_seconds())
                    if os.environ.get("BENCH_DEBUG"):
                        print(f"lag {lags[-1]:.3f} created {created:%H:%M:%S.%f}", file=sys.stderr)
            for i, created in current.items():
                seen.setdefault(i, created)
            if writer.poll() is not None and not current:
                break
            time.sleep(0.01)
    written = result(writer)
    return {
        "writes": written["writes"],
        "rate": written["writes"] / written["seconds"],
        "keys": len(lags),
        "p50": pct(lags, 50),
        "p99": pct(lags, 99),
        "max": max(lags),
        "backlog_max": max(backlog),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--saves", type=int, default=4000, help="saves per latency variant")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved latency rounds")
    parser.add_argument("--seconds", type=float, default=5, help="seconds per throughput run")
    parser.add_argument("--rate", type=float, default=200, help="paced writes/s for the lag run")
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--child")
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--arg", type=float, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, bool(args.views), args.arg, args.seed)
        return

    setup_django()
    recreate_database()
    load_shop(products=200, baskets=2000, per_basket=3)

    configs = {  # name: extra environment of the writer processes
        "default": {},
        "no_dedupe": {"BENCH_DEDUPE": ""},
        "prepared": {"BENCH_PREPARE": "1"},
    }
    lat: dict[str, dict[str, list[float]]] = {c: {"none": [], "views": []} for c in configs}
    cpu: dict[str, dict[str, float]] = {c: {"none": 0.0, "views": 0.0} for c in configs}
    for _ in range(args.rounds):  # interleaved, to even out drift
        for name, extra in configs.items():
            out = result(spawn("latency", True, args.saves / args.rounds, 1, extra))
            for mode in ("none", "views"):
                lat[name][mode] += out["times"][mode]
                cpu[name][mode] += out["cpu"][mode]
            drain()
    tput: dict[str, dict[str, float]] = {}
    for name in ("default", "prepared"):
        extra = {**configs[name], "BENCH_T0": str(time.time() + 5)}  # all started by then
        seconds = 4 * args.seconds  # half of it in each mode
        procs = [spawn("throughput_ab", True, seconds, 10 + i, extra) for i in range(4)]
        outs = [result(p)["writes"] for p in procs]
        tput[name] = {m: sum(o[m] for o in outs) / (seconds / 2) for m in ("none", "views")}
        drain()
    workers = start_workers(args.workers)
    try:
        warm_up(args.workers)
        sustained = measure_sustained(args.seconds)
        lag = measure_lag(args.rate, args.lag_seconds)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)

    from demo_project.shop.incremental import basket_totals, product_day_revenue, top_products

    fresh = all(
        v.maintained() == v.from_scratch()
        for v in (basket_totals, product_day_revenue, top_products)
    )
    p50 = {c: {m: statistics.median(ts) * 1000 for m, ts in lat[c].items()} for c in lat}
    mean = {c: {m: statistics.mean(ts) * 1000 for m, ts in lat[c].items()} for c in lat}
    cpu_ms = {c: {m: cpu[c][m] / len(lat[c][m]) * 1000 for m in lat[c]} for c in lat}

    def row(figure: str, base: float, value: float, fmt: str = ".3f") -> str:
        return f"| {figure} | {base:{fmt}} | {value:{fmt}} | {value / base:.2f}x |"

    def ab(figures: dict[str, dict[str, float]], config: str) -> tuple[float, float]:
        return figures[config]["none"], figures[config]["views"]

    command = (
        ".venv/bin/python benchmarks/django_writes.py"
        f" --saves {args.saves} --rounds {args.rounds} --seconds {args.seconds:g}"
        f" --rate {args.rate:g} --lag-seconds {args.lag_seconds:g} --workers {args.workers}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()};"
        f" load average at the end {load} (other processes share the machine)"
    )
    text = [
        "",
        "## Django writes (demo shop: 3 views on line items; Postgres + Redis)",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "- data: 200 products, 2,000 baskets, 6,000 line items. A write is one `save()` of one",
        "  line item in its own transaction, DEBUG off. With the views, the capture trigger of",
        "  the line items' table inserts 3 outbox rows (one per view) within the UPDATE; on",
        "  commit (EAGER off) its views go to the process's publisher thread, which sends a",
        "  Celery task at most every 10 ms unless one is already waiting (TASK_DEDUPE_CACHE, a",
        "  flag in Redis). No worker runs during the save() and writes/s runs, so those measure",
        "  the writers' own cost. save(): one process per configuration and round",
        f"  ({args.rounds} rounds), alternating blocks of 50 saves with capture on and off (off:",
        "  no signal receiver, and `session_replication_role = replica` in the session, so the",
        "  trigger does not fire: a plain save); the ratio compares the two in the same process.",
        f"  writes/s: 4 processes for {4 * args.seconds:g} s, all switching capture on",
        "  and off together every 0.5 s (ABBA), counted per mode.",
        "",
        "| figure | no views | with views | ratio |",
        "|---|---:|---:|---:|",
        row("save() p50, ms (1 writer)", *ab(p50, "default")),
        row("save() mean, ms", *ab(mean, "default")),
        row("process CPU per save, ms (publisher thread included)", *ab(cpu_ms, "default")),
        row("save() p50, ms, no TASK_DEDUPE_CACHE (a task per send)", *ab(p50, "no_dedupe")),
        row("save() p50, ms, OPTIONS prepare_threshold 5", *ab(p50, "prepared")),
        row("save() mean, ms, OPTIONS prepare_threshold 5", *ab(mean, "prepared")),
        row("writes/s, 4 writer processes", *ab(tput, "default"), ",.0f"),
        row("writes/s, 4 writer processes, prepare_threshold 5", *ab(tput, "prepared"), ",.0f"),
        "",
        f"With {args.workers} Celery worker processes (solo pool) applying: 4 unpaced writer",
        f"processes made {sustained['rate']:,.0f} writes/s for {args.seconds:g} s (largest"
        f" outbox backlog {sustained['backlog_max']:,} keys); the workers emptied the outbox"
        f" {sustained['drain']:.2f} s after they stopped.",
        "",
        f"Freshness under a paced writer asked for {args.rate:g} writes/s: it made"
        f" {lag['rate']:.0f} writes/s for {args.lag_seconds:g} s",
        f"({lag['writes']:,} writes, {lag['keys']:,} captured keys); lag from capture to the",
        "applied view's commit:",
        "",
        "| lag, seconds | p50 | p99 | max |",
        "|---|---:|---:|---:|",
        f"| capture -> applied | {lag['p50']:.3f} | {lag['p99']:.3f} | {lag['max']:.3f} |",
        "",
        f"Largest outbox backlog seen: {lag['backlog_max']:,} keys. After the run every view",
        f"equals a from-scratch computation: {fresh}.",
        "",
    ]
    print("\n".join(text))
    if not args.no_record:
        record("\n".join(text))


def record(section: str) -> None:
    """Put this run's section in RESULTS.md, replacing the previous run's (other sections
    belong to other benchmarks and are kept as they are)."""
    path = ROOT / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find("\n## Django writes")
    if start != -1:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end != -1 else "\n")
    path.write_text(text.rstrip("\n") + "\n" + section)


if __name__ == "__main__":
    main()
