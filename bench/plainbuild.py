"""Baseline "tool": rebuild every plain model in full with bare DuckDB.

Runs each model's SELECT as ``CREATE OR REPLACE TABLE <schema>.<name> AS ...`` in
dependency order, in one transaction. No state, no incremental work: the floor for
a full rebuild's cost and, by construction, always correct.

    python bench/plainbuild.py --db .bench/runs/plain.duckdb
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
from verify import DEFAULT_PROJECT, load_models, qrel, quote, topo_order


def build(db: Path, project: Path = DEFAULT_PROJECT, threads: int | None = None) -> dict[str, float]:
    models = topo_order(load_models(project))
    con = duckdb.connect(str(db))
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    timings: dict[str, float] = {}
    con.execute("BEGIN TRANSACTION")
    for schema in sorted({m.schema for m in models}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    for model in models:
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TABLE {qrel(model.relation)} AS {model.sql.strip().rstrip(';')}\n")
        timings[model.relation] = time.perf_counter() - t0
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    con.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file with the raw tables")
    parser.add_argument(
        "--project",
        type=Path,
        default=DEFAULT_PROJECT,
        help="plain project (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="DuckDB threads (default: DuckDB's own)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    timings = build(args.db, args.project, args.threads)
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
    print(f"built {len(timings)} models in {time.perf_counter() - t0:.2f}s ({parts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
