"""Parallel application of one busy view: successive batches applied by several worker
processes at once, with the seed page's pipelined times.

Batch i (1-based) runs at `st.Time(input_time=i, frontier=i - 1, flush_every_set=True)`:
it reads each table only once batch i - 1 has committed it, and commits each table as soon
as its vertex is done, so batch i + 1 can start on a vertex while batch i is still further
down the graph. Worker k of W applies batches k+1, k+1+W, ... on its own Postgres
connection. The result is checked against a sequential run on the memory store.

    .venv/bin/python benchmarks/parallel_apply.py [--batches 60] [--batch-size 500]
        [--workers 1,2,4] [--url postgresql://127.0.0.1:5432/test] [--results]

`--results` writes the section "Parallel application" of benchmarks/RESULTS.md.
Not atomic per batch (README, Stores: flush_every_set=True is for loads you can redo).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import random
import re
import sys
import time
import uuid
from typing import Any
from urllib.parse import quote

import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from stepping_django import engine as st  # noqa: E402


class Order(st.Data):
    order_id: int
    customer: int
    amount: int


class CustomerTotal(st.Data):
    customer: int
    total: int


def _total(p: st.Pair[int, int]) -> CustomerTotal:
    return CustomerTotal(customer=p.right, total=p.left)


def _amount(o: Order) -> int:
    return o.amount


top_cache = st.Cache[CustomerTotal]()
totals_cache = st.Cache[CustomerTotal]()


def busy_view(orders: st.ZSet[Order]) -> st.ZSet[CustomerTotal]:
    """Total per customer, and the ten biggest customers, both integrated into caches."""
    sums = st.group_reduce_flatten(
        orders, by=st.Index.pick(Order, lambda o: o.customer), zero=int, pick_value=_amount
    )
    totals = st.map(sums, f=_total)
    _ = totals_cache[totals](lambda z: st.integrate(z))
    top = st.first_n(
        totals, index=st.Index.pick(CustomerTotal, lambda c: c.total, ascending=False), n=10
    )
    _ = top_cache[top](lambda z: st.integrate(z))
    return top


GRAPH = st.compile(busy_view)


def batches(n: int, size: int, seed: int = 3) -> list[list[Order]]:
    rng = random.Random(seed)
    return [
        [
            Order(order_id=b * size + i, customer=rng.randrange(5_000), amount=rng.randint(1, 99))
            for i in range(size)
        ]
        for b in range(n)
    ]


def _worker(url: str, k: int, workers: int, work: list[list[Order]]) -> None:
    with st.connection_postgres(url) as conn:
        store = st.StorePostgres.from_graph(conn, GRAPH, create_tables=False)
        (action,) = st.actions(store, GRAPH)
        for i in range(k + 1, len(work) + 1, workers):
            action.insert(*work[i - 1], time=st.Time(i, i - 1, True))


def _schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-c search_path={schema}')}"


def run(base_url: str, workers: int, work: list[list[Order]]) -> dict[str, Any]:
    schema = f"par_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = _schema_url(base_url, schema)
    try:
        with psycopg.connect(url) as conn:
            st.StorePostgres.from_graph(conn, GRAPH, create_tables=True)
            conn.commit()
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_worker, args=(url, k, workers, work)) for k in range(workers)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        secs = time.perf_counter() - started
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        with psycopg.connect(url) as conn:
            store = st.StorePostgres.from_graph(conn, GRAPH, create_tables=False)
            got = (totals_cache.zset(store).to_python(), top_cache.zset(store).to_python())
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    rows = sum(len(b) for b in work)
    return {"workers": workers, "secs": secs, "rows_per_sec": rows / secs, "result": got}


def expected(work: list[list[Order]]) -> tuple[Any, Any]:
    store = st.StorePython.from_graph(GRAPH)
    (action,) = st.actions(store, GRAPH)
    for batch in work:
        action.insert(*batch)
    return totals_cache.zset(store).to_python(), top_cache.zset(store).to_python()


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average before the run {load[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2, help="runs per worker count (best kept)")
    parser.add_argument("--url", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--results", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    where = machine()
    work = batches(args.batches, args.batch_size)
    want = expected(work)
    lines = []
    base = None
    for w in (int(x) for x in args.workers.split(",")):
        best = None
        for _ in range(args.repeat):
            r = run(args.url, w, work)
            assert r["result"] == want, f"{w} workers: the result differs from sequential"
            if best is None or r["secs"] < best["secs"]:
                best = r
        assert best is not None
        base = base or best["rows_per_sec"]
        line = (
            f"| {w} | {best['secs']:.2f} | {best['rows_per_sec']:,.0f} | "
            f"{best['rows_per_sec'] / base:.2f} |"
        )
        print(line, flush=True)
        lines.append(line)
    rows = args.batches * args.batch_size
    section = "\n".join(
        [
            "## Parallel application (benchmarks/parallel_apply.py, Postgres)",
            "",
            f"One busy view (sum per customer over 5,000 customers, then the top 10, both "
            f"integrated into caches); {args.batches} batches of {args.batch_size:,} new "
            f"orders ({rows:,} rows), batch i at `Time(i, i - 1, flush_every_set=True)`, "
            f"worker k applies batches k+1, k+1+W, ...; best of {args.repeat} runs; every "
            f"run's result equal to a sequential run on the memory store. {where}.",
            "",
            "| workers | seconds | rows/s | speed-up vs 1 |",
            "|---|---|---|---|",
            *lines,
        ]
    )
    print(section)
    if args.results:
        path = pathlib.Path(__file__).with_name("RESULTS.md")
        text = path.read_text()
        pattern = re.compile(
            r"## Parallel application \(benchmarks/parallel_apply.py.*?(?=\n## |\Z)", re.S
        )
        if pattern.search(text):
            text = pattern.sub(section + "\n", text)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        path.write_text(text)


if __name__ == "__main__":
    main()
