"""Generate a layered project of N models and time `sqlorch compile` on it.

    python bench/compile_project.py [--models 1000] [--out DIR] [--repeat 3]

Layers: staging (reads declared sources raw.*), intermediate (joins of earlier staging /
intermediate models, some with CTEs and subqueries), marts (aggregates, UNION ALL of
intermediates). Every source declares its columns in models/sources.yml, so compile
checks every column of every model. Prints the median wall time of `sqlorch compile`
(run as a subprocess, so interpreter start-up and imports are included).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = {"id": "BIGINT", "customer_id": "BIGINT", "amount": "DECIMAL(12, 2)",
           "created_at": "TIMESTAMP", "category": "VARCHAR"}


def generate(root: Path, n_models: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    n_sources = max(1, n_models // 20)
    n_staging = max(1, n_models * 2 // 5)
    n_marts = max(1, n_models // 4)
    n_inter = max(0, n_models - n_staging - n_marts)
    for folder in ("staging", "intermediate", "marts"):
        (root / "models" / folder).mkdir(parents=True)
    lines = ["sources:"]
    for s in range(n_sources):
        lines.append(f"  raw.events_{s}:")
        lines.append("    cursor: created_at")
        lines.append("    unique_key: id")
        lines.append("    columns:")
        lines.extend(f"      {name}: {kind}" for name, kind in COLUMNS.items())
    (root / "models" / "sources.yml").write_text("\n".join(lines) + "\n")

    for i in range(n_staging):
        (root / "models" / "staging" / f"stg_{i}.sql").write_text(
            f"-- tags: staging\n"
            f"SELECT\n    id,\n    customer_id,\n    CAST(amount AS DECIMAL(12, 2)) AS amount,\n"
            f"    created_at,\n    lower(category) AS category\n"
            f"FROM raw.events_{i % n_sources}\nWHERE amount IS NOT NULL\n"
        )
    earlier = [f"staging.stg_{i}" for i in range(n_staging)]
    for i in range(n_inter):
        a, b = rng.sample(earlier, 2) if len(earlier) > 1 else (earlier[0], earlier[0])
        if i % 3 == 0:
            sql = (f"WITH base AS (\n    SELECT id, customer_id, amount, created_at, category FROM {a}\n"
                   f"    WHERE customer_id IN (SELECT customer_id FROM {b} WHERE amount > 10)\n)\n"
                   f"SELECT id, customer_id, amount, created_at, category FROM base\n")
        else:
            sql = (f"SELECT\n    a.id,\n    a.customer_id,\n    a.amount + coalesce(b.amount, 0) AS amount,\n"
                   f"    a.created_at,\n    a.category\nFROM {a} AS a\nLEFT JOIN {b} AS b ON a.id = b.id\n")
        (root / "models" / "intermediate" / f"int_{i}.sql").write_text(sql)
        earlier.append(f"intermediate.int_{i}")
    inters = [e for e in earlier if e.startswith("intermediate.")] or earlier
    for i in range(n_marts):
        if i % 4 == 0 and len(inters) > 1:
            a, b = rng.sample(inters, 2)
            sql = (f"SELECT category, count(*) AS orders, sum(amount) AS revenue\nFROM (\n"
                   f"    SELECT category, amount FROM {a}\n    UNION ALL\n"
                   f"    SELECT category, amount FROM {b}\n) AS u\nGROUP BY category\n")
        else:
            a = rng.choice(inters)
            sql = (f"-- tags: marts\nSELECT\n    customer_id,\n    CAST(created_at AS DATE) AS day,\n"
                   f"    count(*) AS orders,\n    sum(amount) AS revenue,\n    max(created_at) AS last_seen\n"
                   f"FROM {a}\nGROUP BY customer_id, CAST(created_at AS DATE)\n")
        (root / "models" / "marts" / f"mart_{i}.sql").write_text(sql)
    return {"sources": n_sources, "staging": n_staging, "intermediate": n_inter, "marts": n_marts}


def time_compile(root: Path, repeat: int, cold: bool) -> list[float]:
    """Wall time of `sqlorch compile` in a fresh process. Cold: no compile cache and no
    compiled files (``target/`` removed first); warm: nothing changed since the last run."""
    sqlorch = Path(sys.executable).with_name("sqlorch")
    command = [str(sqlorch), "compile", "--project-dir", str(root)]
    times = []
    if not cold:
        subprocess.run(command, capture_output=True, text=True)
    for _ in range(repeat):
        if cold:
            shutil.rmtree(root / "target", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"compile failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="project folder (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="sqlorch-compile-bench-")) / "project"
    counts = generate(root, args.models)
    print(f"project: {root} ({args.models} models: {counts})")
    for label, cold in (("cold", True), ("warm", False)):
        times = time_compile(root, args.repeat, cold)
        runs = ", ".join(f"{t:.2f}s" for t in times)
        print(f"sqlorch compile, {args.models} models, {label}: median {statistics.median(times):.2f}s wall ({runs})")


if __name__ == "__main__":
    main()
