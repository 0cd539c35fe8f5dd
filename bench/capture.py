"""Change capture of TPC-H's two large keyed sources alone: DuckDB time and rows scanned.

    python bench/capture.py --sf 1 --steps 3

Loads ``raw.orders`` and ``raw.lineitem`` (keyed as in bench/tpch/models/sources.yml) from
the Parquet files bench/tpch.py generates, captures them once whole, then per step applies
the same RF1 + RF2 as bench/tpch.py (0.1% of the orders inserted, as many deleted, with
their lineitems) and captures both again through ``execution/capture.py: capture_source``,
DuckDB profiling every statement (``--statements``: each of the last step's, with its time
and rows scanned). Each source's capture is told the columns the 22 TPC-H models name
(``columns_read``), as a build would; a sqlorch that keeps every column ignores them.
It runs the sqlorch on ``PYTHONPATH``, so a branch and
``main`` can be compared on the same data and machine, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tpch import bench_dir, generate, refresh  # noqa: E402

from sqlorch.adapters.duckdb import DuckDBAdapter  # noqa: E402
from sqlorch.analysis.schemas import columns_read  # noqa: E402
from sqlorch.execution.capture import capture_source  # noqa: E402
from sqlorch.project.model import SourceSpec  # noqa: E402
from sqlorch.refs import TableRef  # noqa: E402
from sqlorch.state.store import STATE_TABLES, change_log, ensure_state, load_snapshot, shadow_table  # noqa: E402

SOURCES = {
    TableRef("raw", "orders"): ("o_orderkey",),
    TableRef("raw", "lineitem"): ("l_orderkey", "l_linenumber"),
}


def read_by_models(ref: TableRef) -> frozenset[str] | None:
    """``columns_read`` of the TPC-H models reading ``ref`` (bench/tpch/models)."""
    queries = [
        sqlglot.parse_one(p.read_text(), read="duckdb") for p in sorted((HERE / "tpch" / "models").rglob("*.sql"))
    ]
    return columns_read(q for q in queries if any(t.name == ref.name for t in q.find_all(exp.Table)))


def capture_all(db: Path, log: Path, show: bool = False) -> dict[str, float]:
    """Capture both sources once, in one process: wall and CPU seconds, and DuckDB's own
    time and rows scanned summed over the statements."""
    log.unlink(missing_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    adapter = DuckDBAdapter({"path": str(db), "profile_log": str(log)})
    try:
        tables = [*STATE_TABLES, *SOURCES, *(change_log(ref) for ref in SOURCES), *(shadow_table(r) for r in SOURCES)]
        known = adapter.columns_many(tables)
        ensure_state(adapter, known)
        snapshot = load_snapshot(adapter)
        kinds = []
        for ref, key in SOURCES.items():
            batch = snapshot.latest_batch.get(str(ref), 0) + 1
            spec = SourceSpec(ref, unique_key=key)
            state = snapshot.relations.get(str(ref))
            read = read_by_models(ref)
            captured = capture_source(adapter, ref, spec, state, batch, known, read=lambda read=read: read)
            kinds.append(f"{ref}: {captured.kind if captured else 'none'} {captured.rows if captured else 0}")
    finally:
        adapter.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    duck_time = duck_cpu = 0.0
    scanned = statements = 0
    for line in log.read_text(encoding="utf-8").splitlines():
        query = json.loads(line).get("query") or {}
        duck_time += float(query.get("total_time") or 0)
        duck_cpu += float(query.get("cpu_time") or 0)
        scanned += int(query.get("total_rows_scanned") or 0)
        statements += 1
        if show:
            text = " ".join(str(query.get("sql") or "").split())
            seconds, rows = float(query.get("total_time") or 0), int(query.get("total_rows_scanned") or 0)
            print(f"    {seconds:6.3f} s {rows:>10,} rows  {text[:150]}")
    print(f"  {'; '.join(kinds)}", flush=True)
    return {
        "wall": wall,
        "cpu": cpu,
        "duckdb_time": duck_time,
        "rows_scanned": scanned,
        "statements": statements,
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--label", default="run", help="names the working folder (e.g. main, branch)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--statements", action="store_true", help="print the last step's statements")
    args = parser.parse_args(argv)
    data = generate(args.sf)
    work = bench_dir() / "capture" / f"sf{args.sf:g}-{args.label}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw")
        for ref in SOURCES:
            con.execute(
                f"CREATE TABLE raw.{ref.name} AS SELECT * FROM read_parquet('{data / (ref.name + '.parquet')}')"
            )
    cold = capture_all(db, work / "profile.jsonl")
    print(f"cold capture: {cold}", flush=True)
    steps = []
    for step in range(1, args.steps + 1):
        changed = refresh(db, step)
        figures = capture_all(db, work / "profile.jsonl", args.statements and step == args.steps)
        steps.append({**figures, "changed": changed})
        print(f"step {step}: {figures}", flush=True)
    medians = {key: statistics.median(s[key] for s in steps) for key in ("wall", "cpu", "duckdb_time", "rows_scanned")}
    print(f"median of {args.steps} steps: {medians}")
    if args.json:
        args.json.write_text(json.dumps({"cold": cold, "steps": steps, "median": medians}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
