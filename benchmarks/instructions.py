"""Instructions the engine executes per 10,000 reads of the meter-reads load (callgrind).

Wall time on this kind of machine drifts by 10-15% between runs, so a change worth 2% needs
many alternated runs to show. `valgrind --tool=callgrind` counts instructions instead: the
same count for the same code and input, whatever else the machine is doing. The load runs
twice, at N and N/2 reads (`meter_reads_worker.py`, batches of B); the difference is the
cost of N/2 reads loaded in steady state, without start-up, imports or tables being made.
It misses what instructions do not show (cache misses, system calls, waiting on a server),
so it complements `meter_reads.py`, it does not replace it.

    python benchmarks/instructions.py --store sqlite --n 20000 [--rev HEAD~1]

`--rev` also measures a commit, checked out and built in a temporary worktree, and prints
the ratio. The figures go to RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meter_reads import DEFAULT_PG, ROOT, section_head, update_results

COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(root: Path, store: str, n: int, batch: int, db: str) -> int:
    """Instructions of one worker run (the whole process) under callgrind."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(root / "benchmarks" / "meter_reads_worker.py"),
            f"--store={store}",
            f"--n={n}",
            f"--batch={batch}",
            "--lookups=1",
            "--inserts=1",
            f"--db={db}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = COLLECTED.search(out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_10k(root: Path, store: str, n: int, batch: int, pg: str, tmp: Path) -> float:
    """Instructions per 10,000 reads: the runs at n and n/2 side by side (two cores)."""

    def db(tag: str) -> str:
        return pg if store == "postgres" else str(tmp / f"{root.name}-{tag}.sqlite")

    if store == "postgres":  # one schema per engine: the two runs go one after the other
        big = instructions(root, store, n, batch, db("big"))
        small = instructions(root, store, n // 2, batch, db("small"))
    else:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(instructions, root, store, n, batch, db("big"))
            b = pool.submit(instructions, root, store, n // 2, batch, db("small"))
            big, small = a.result(), b.result()
    return (big - small) / (n - n // 2) * 10_000


def worktree(rev: str, tmp: Path) -> Path:
    """`rev` checked out with its C module built (what `make install` builds)."""
    path = tmp / "rev"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-f", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=path,
        check=True,
        capture_output=True,
    )
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="sqlite", choices=("memory", "sqlite", "postgres"))
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1_000)
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--rev", default="", help="also measure this commit, for a ratio")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours = per_10k(ROOT, args.store, args.n, args.batch, args.pg, tmp)
        lines = [f"- working tree at {head}: {ours / 1e9:.3f}e9 instructions per 10,000 reads"]
        if args.rev:
            path = worktree(args.rev, tmp)
            try:
                theirs = per_10k(path, args.store, args.n, args.batch, args.pg, tmp)
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                    check=False,
                    capture_output=True,
                )
            lines.append(f"- {args.rev}: {theirs / 1e9:.3f}e9 instructions per 10,000 reads")
            lines.append(f"- working tree / {args.rev}: {ours / theirs:.3f}")
    print("\n".join(lines))
    if not args.no_write:
        command = "python benchmarks/instructions.py " + " ".join(sys.argv[1:])
        title = f"instructions: store={args.store}, N={args.n:,}, B={args.batch:,}"
        update_results("\n".join([*section_head(title, command), "", *lines]) + "\n")


if __name__ == "__main__":
    main()
