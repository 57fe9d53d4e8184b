"""Meter reads: our engine against `stepping==0.0.3`, side by side, on one store kind.

    python benchmarks/meter_reads.py --store memory --n 100000 --batch 1000

The workload is the `stepping` package's own profiling case: 100 users, 100 meters (UUID
ids), half-hourly reads in January 2023; users JOIN meters JOIN reads, add the read's date,
group by (user, meter, date), sum the values, integrate into a cache indexed by date. The
load of N reads in batches of B is timed, then 200 cache lookups of one date and 50
single-read inserts, and the cache is checked against a plain-Python sum.

Each engine runs in its own subprocess (`meter_reads_worker.py`), so peak memory is per
engine. `stepping` runs from `benchmarks/.venv-stepping`, created on first use. The figures
are printed as a table and written to `benchmarks/RESULTS.md` (one section per store, N, B).
With `--repeat K` the two engines run K times, alternated, and each figure is the median of
its K runs; the ratio of each pair is listed too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "meter_reads_worker.py"
RESULTS = HERE / "RESULTS.md"
STEPPING_VENV = HERE / ".venv-stepping"
STEPPING_VERSION = "0.0.3"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def stepping_python() -> pathlib.Path:
    """The reference package's interpreter; makes its virtualenv on first use."""
    py = STEPPING_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {STEPPING_VENV} with stepping=={STEPPING_VERSION} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(STEPPING_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", f"stepping=={STEPPING_VERSION}"], check=True
        )
    return py


def run_worker(
    engine: str, args: argparse.Namespace, n: int, timeout: float, parallel: int = 0
) -> dict[str, Any] | None:
    python = pathlib.Path(sys.executable) if engine == "ours" else stepping_python()
    db = ""
    tmp = None
    if args.store == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="meter_reads_")
        db = str(pathlib.Path(tmp.name) / f"{engine}.sqlite3")
    elif args.store == "postgres":
        db = args.pg
    cmd = [
        str(python),
        str(WORKER),
        f"--store={args.store}",
        f"--n={n}",
        f"--batch={args.batch}",
        f"--lookups={args.lookups}",
        f"--inserts={args.inserts}",
        f"--db={db}",
        f"--parallel={parallel}",
    ]
    env = {**os.environ, "METER_READS_ENGINE": engine}
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"{engine}: timed out after {timeout:.0f} s at N={n}", file=sys.stderr)
        return None
    finally:
        if tmp is not None:
            tmp.cleanup()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"{engine} worker failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    if result.get("load_cpu_secs"):
        result["rows_per_cpu_sec"] = result["n"] / result["load_cpu_secs"]
    return result


ROWS: list[tuple[str, str, str, bool]] = [
    # key, label, format, higher is better
    ("n", "reads loaded (N)", "{:,.0f}", True),
    ("rows_per_sec", "load, rows/s", "{:,.0f}", True),
    ("first10_rows_per_sec", "first 10% of batches, rows/s", "{:,.0f}", True),
    ("last10_rows_per_sec", "last 10% of batches, rows/s", "{:,.0f}", True),
    ("last_over_first", "last 10% / first 10%", "{:.2f}", True),
    ("lookup_p50_ms", "cache lookup by date p50, ms", "{:.3f}", False),
    ("insert_p50_ms", "single-read insert p50, ms", "{:.3f}", False),
    ("insert_p99_ms", "single-read insert p99, ms", "{:.3f}", False),
    ("peak_mb", "peak memory (ru_maxrss), MB", "{:,.1f}", False),
    ("load_cpu_secs", "load, CPU seconds of the process", "{:.2f}", False),
    ("rows_per_cpu_sec", "load, rows per CPU second of the process", "{:,.0f}", True),
    ("cpu_last_over_first", "last 10% / first 10%, by process CPU time", "{:.2f}", True),
    ("last_over_second", "last 10% / second 10% (all groups exist in both)", "{:.2f}", True),
    ("load_avg", "machine load average (1 min) at the end", "{:.1f}", False),
    ("plain_select_p50_ms", "plain indexed SELECT of the same rows p50, ms", "{:.3f}", False),
    ("lookup_over_plain", "cache lookup / plain SELECT", "{:.1f}", False),
    ("bytes_per_delay_row", "bytes on disk per delay-table row", "{:,.0f}", False),
    ("delay_rows", "delay-table rows", "{:,.0f}", True),
    ("par1_rows_per_sec", "parallel recipe, 1 process, rows/s", "{:,.0f}", True),
    ("par4_rows_per_sec", "parallel recipe, 4 processes, rows/s", "{:,.0f}", True),
    ("par_speedup", "parallel recipe speed-up, 4 vs 1 process", "{:.2f}", True),
    ("cache_rows", "cache rows", "{:,.0f}", True),
    ("correct", "cache equals plain-Python sums", "{}", True),
]


def ratio(key: str, ours: dict[str, Any], ref: dict[str, Any] | None) -> str:
    if ref is None or key in ("n", "cache_rows", "correct", "delay_rows", "load_avg"):
        return ""
    a, b = ours.get(key), ref.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return ""
    return f"{a / b:.2f}x"


def cells(ours: dict[str, Any], ref: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    out = []
    for key, label, fmt, _ in ROWS:
        if ours.get(key) is None and (ref is None or ref.get(key) is None):
            continue
        a = fmt.format(ours[key]) if ours.get(key) is not None else "-"
        b = fmt.format(ref[key]) if ref is not None and ref.get(key) is not None else "-"
        out.append((label, a, b, ratio(key, ours, ref)))
    return out


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine's runs as one result: each number the median of the runs' (this
    machine's speed drifts between runs), `correct` only if every run was."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in runs)
        elif isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in runs if r.get(key) is not None)
    return out


def pair_ratios(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> list[str]:
    """The load's ours/stepping ratio in each alternated pair of runs (when there are
    several): how far one run's figure can be from the median."""
    if len(ref) < 2:
        return []
    lines = ["", f"Each of the {len(ref)} alternated pairs of runs, ours/stepping:", ""]
    for key, label in (("rows_per_sec", "load rows/s"), ("rows_per_cpu_sec", "rows per CPU s")):
        if all(r.get(key) for r in (*ours, *ref)):
            xs = [a[key] / b[key] for a, b in zip(ours, ref)]
            lines.append(f"- {label}: " + ", ".join(f"{x:.2f}x" for x in xs))
    lines.append(
        "- ours, last 10% / first 10%: " + ", ".join(f"{r['last_over_first']:.2f}" for r in ours)
    )
    return lines


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores, {model}{mem}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


TARGETS = {
    # store: (rows/s x stepping, last/first, insert p50 ms, lookup / plain SELECT)
    "memory": (20.0, 0.9, 0.1, None),
    "sqlite": (10.0, 0.9, 0.5, 2.0),
    "postgres": (10.0, 0.9, 1.5, 2.0),
}


def targets(ours: dict[str, Any], ref: dict[str, Any] | None) -> list[str]:
    """The issue's targets for this store, each with the figure and met / NOT met."""
    speed, ratio, p50, lookup = TARGETS[ours["store"]]

    def line(text: str, ok: bool | None) -> str:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        return f"- {text}: **{verdict}**"

    out = []
    if ref is not None and ref["n"] == ours["n"]:
        x = ours["rows_per_sec"] / ref["rows_per_sec"]
        out.append(line(f"load rows/s >= {speed:g}x stepping's: {x:.1f}x", x >= speed))
        if ours.get("rows_per_cpu_sec") and ref.get("rows_per_cpu_sec"):
            y = ours["rows_per_cpu_sec"] / ref["rows_per_cpu_sec"]
            out.append(
                line(f"the same by CPU time of each process (no contention): {y:.1f}x", y >= speed)
            )
    else:
        out.append(line(f"load rows/s >= {speed:g}x stepping's at equal N", None))
    r = ours["last_over_first"]
    out.append(line(f"last 10% of batches >= {ratio}x the first 10%: {r:.2f}x", r >= ratio))
    q = ours["insert_p50_ms"]
    out.append(line(f"single-read insert p50 <= {p50} ms: {q:.3f} ms", q <= p50))
    if lookup is not None and ours.get("lookup_over_plain") is not None:
        v = ours["lookup_over_plain"]
        out.append(
            line(f"cache lookup <= {lookup:g}x a plain indexed SELECT: {v:.1f}x", v <= lookup)
        )
    if ours["store"] == "memory" and ref is not None:
        m, n = ours["peak_mb"], ref["peak_mb"]
        out.append(line(f"peak memory <= stepping's: {m:.0f} MB vs {n:.0f} MB", m <= n))
    return out


def section_head(title: str, command: str) -> list[str]:
    """A RESULTS.md section's heading and the lines every section starts with."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"## {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- date: {now}",
    ]


def markdown(
    command: str,
    ours: dict[str, Any],
    ref: dict[str, Any] | None,
    note: str,
    extra: list[str],
) -> str:
    lines = [
        *section_head(f"store={ours['store']}, N={ours['n']:,}, B={ours['batch']:,}", command),
        f"- reference: stepping=={STEPPING_VERSION} from PyPI, same rows, same query, "
        "own subprocess",
    ]
    if note:
        lines.append(f"- note: {note}")
    lines += ["", "| figure | ours | stepping | ours/stepping |", "|---|---:|---:|---:|"]
    for label, a, b, r in cells(ours, ref):
        lines.append(f"| {label} | {a} | {b} | {r} |")
    lines += ["", "Targets (issue 3 for memory, issue 4 for SQLite/Postgres):", ""]
    lines += targets(ours, ref)
    lines += extra
    return "\n".join(lines) + "\n"


def update_results(section: str) -> None:
    """Replace the section with the same heading, or append it."""
    header = (
        "# Benchmark results\n\n"
        "Written by the benchmarks in this folder; the newest run of each case.\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else header
    heading = section.splitlines()[0]
    parts = text.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    replaced = False
    for i, s in enumerate(sections):
        if s.splitlines()[0] == heading:
            sections[i] = section
            replaced = True
    if not replaced:
        sections.append(section)
    body = head.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in sections)
    RESULTS.write_text(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="memory", choices=("memory", "sqlite", "postgres"))
    p.add_argument("--n", type=int, default=10_000, help="reads to load (default 10,000)")
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--inserts", type=int, default=50)
    p.add_argument("--pg", default=os.environ.get("METER_READS_PG", DEFAULT_PG))
    p.add_argument(
        "--stepping-n", type=int, default=0, help="run stepping at this N instead (0: same N)"
    )
    p.add_argument("--stepping-timeout", type=float, default=600.0)
    p.add_argument("--no-stepping", action="store_true")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run ours and stepping this many times, alternated; each figure is the median",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=4,
        help="SQL stores: also time the seed page's "
        "parallel recipe with 1 and this many processes (0: skip)",
    )
    args = p.parse_args()

    command = "python benchmarks/meter_reads.py " + " ".join(sys.argv[1:])
    n_ref = args.stepping_n or args.n
    ours_runs: list[dict[str, Any]] = []
    ref_runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        one = run_worker("ours", args, args.n, timeout=3600)
        assert one is not None
        ours_runs.append(one)
        if args.no_stepping:
            continue
        other = run_worker("stepping", args, n_ref, timeout=args.stepping_timeout)
        if other is None:
            break
        ref_runs.append(other)
    ours = combined(ours_runs)
    ref = combined(ref_runs) if ref_runs else None
    note = ""
    extra: list[str] = pair_ratios(ours_runs, ref_runs) if n_ref == args.n else []
    if not args.no_stepping:
        if ref is None:
            note = (
                f"stepping did not finish N={n_ref:,} within {args.stepping_timeout:.0f} s; "
                "rerun with --stepping-n"
            )
        elif n_ref != args.n:
            note = (
                f"stepping was run at N={n_ref:,} (not {args.n:,}); ours at the same N "
                "is given below"
            )
            same = run_worker("ours", args, n_ref, timeout=3600)
            assert same is not None
            extra = [
                "",
                f"At equal N={n_ref:,}:",
                "",
                "| figure | ours | stepping | ours/stepping |",
                "|---|---:|---:|---:|",
                *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in cells(same, ref)),
            ]

    if args.store != "memory" and args.parallel:
        for engine, result in (("ours", ours), ("stepping", ref)):
            if result is None:
                continue
            one = run_worker(engine, args, result["n"], args.stepping_timeout, parallel=1)
            many = run_worker(engine, args, result["n"], args.stepping_timeout, args.parallel)
            if one is not None and many is not None:
                assert one["correct"] and many["correct"], f"{engine}: parallel load is wrong"
                result["par1_rows_per_sec"] = one["rows_per_sec"]
                result["par4_rows_per_sec"] = many["rows_per_sec"]
                result["par_speedup"] = many["rows_per_sec"] / one["rows_per_sec"]

    table = Table(title=f"meter reads, store={args.store}, N={args.n:,}, B={args.batch:,}")
    table.add_column("figure")
    table.add_column("ours", justify="right")
    table.add_column("stepping", justify="right")
    table.add_column("ours/stepping", justify="right")
    for row in cells(ours, ref):
        table.add_row(*row)
    console = Console()
    console.print(table)
    if note:
        console.print(note)
    for line in extra:
        console.print(line, markup=False)
    if not (ours["correct"] and (ref is None or ref["correct"])):
        raise SystemExit("the cache does not match the plain-Python sums")
    if not args.no_write:
        update_results(markdown(command, ours, ref, note, extra))
        console.print(f"updated {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
