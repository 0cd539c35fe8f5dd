"""Does an incremental build ever lose to a full refresh? The scenarios of the plan issue.

    python bench/cost_model.py [--orders 300000 3000000] [--chain 1000] [--runs 1] [--json OUT]
        [--scenarios every-key twenty-rows]
    python bench/cost_model.py --orders --chain 1000     # the chain alone (no orders sizes)

Scenarios, on the embedded DuckDB target, with the ``sqlorch`` of the running Python:

- ``every-key``: a keyed source ``raw.orders`` (cursor ``updated_at``, ``unique_key
  order_id``) and a dozen models over it and ``raw.customers``: windows per customer,
  aggregates per customer and per customer and day, a join, a filter over an aggregate.
  One order of every customer is updated, so every key of every model is affected.
- ``twenty-rows``: the same project, 20 orders updated.
- ``chain``: one keyed source row changed at the root of a chain of N models.

For the first two, the database after the change is copied, then ``sqlorch build`` runs
on one copy and ``sqlorch build --full-refresh`` on the other: both start from the same
state. Every timed command is a whole ``sqlorch`` process (start-up included), timed in wall
and CPU seconds (the CPU figure is steadier on a shared machine), with the load average
before it and the strategies the incremental build ran. With ``--runs N`` each figure is the
median of N runs (the ratios of every run listed; the chain's one-row build N times on
copies of one changed chain). sqlorch's bytecode is compiled first (``compile_bytecode``). The
targets (plan issue): every-key incremental <= 1.1x the full refresh; twenty-rows >= 5x
faster than the full refresh; chain whole build <= 10 s.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

SOURCES_YAML = """\
sources:
  raw.orders: {cursor: updated_at, unique_key: order_id}
  raw.customers: {cursor: updated_at, unique_key: customer_id}
"""

MODELS = {
    "staging/stg_orders.sql": "SELECT order_id, customer_id, amount, status, order_date FROM raw.orders",
    "staging/stg_customers.sql": "SELECT customer_id, name, plan FROM raw.customers",
    "intermediate/orders_enriched.sql": (
        "SELECT o.order_id, o.customer_id, o.amount, o.status, o.order_date, c.plan\n"
        "FROM staging.stg_orders AS o JOIN staging.stg_customers AS c ON o.customer_id = c.customer_id"
    ),
    "marts/customer_totals.sql": (
        "SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM staging.stg_orders GROUP BY customer_id"
    ),
    "marts/customer_daily.sql": (
        "SELECT customer_id, order_date, count(*) AS orders, sum(amount) AS total\n"
        "FROM staging.stg_orders GROUP BY customer_id, order_date"
    ),
    "marts/daily_revenue.sql": "SELECT order_date, sum(amount) AS revenue FROM staging.stg_orders GROUP BY order_date",
    "marts/plan_revenue.sql": (
        "SELECT plan, count(*) AS orders, sum(amount) AS revenue FROM intermediate.orders_enriched GROUP BY plan"
    ),
    "marts/order_rank.sql": (
        "SELECT order_id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY order_date, order_id)"
        " AS nth FROM staging.stg_orders"
    ),
    "marts/running_total.sql": (
        "SELECT order_id, customer_id, sum(amount) OVER (PARTITION BY customer_id ORDER BY order_date, order_id)"
        " AS running FROM staging.stg_orders"
    ),
    "marts/status_counts.sql": (
        "SELECT status, order_date, count(*) AS orders FROM staging.stg_orders GROUP BY status, order_date"
    ),
    "marts/customer_span.sql": (
        "SELECT customer_id, min(order_date) AS first_order, max(order_date) AS last_order\n"
        "FROM staging.stg_orders GROUP BY customer_id"
    ),
    "marts/big_customers.sql": "SELECT customer_id, total FROM marts.customer_totals WHERE total > 500",
}


def sqlorch_command() -> list[str]:
    exe = Path(sys.executable).parent / "sqlorch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sqlorch.cli"]


def timed(args: list[str], root: Path) -> float:
    return timed_with_cpu(args, root)[0]


def timed_with_cpu(args: list[str], root: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, DuckDB's threads included) of one
    ``sqlorch`` process: on a shared machine the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*sqlorch_command(), *args, "--project-dir", str(root)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"sqlorch {' '.join(args)} failed in {root}:\n{done.stdout}\n{done.stderr}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_orders_project(root: Path, orders: int) -> None:
    customers = max(1, orders // 10)
    (root / "models").mkdir(parents=True)
    (root / "models" / "sources.yml").write_text(SOURCES_YAML)
    for relative, sql in MODELS.items():
        path = root / "models" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql + "\n")
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.customers AS SELECT range AS customer_id, 'c' || range AS name, "
            "['free', 'pro', 'team'][1 + range % 3] AS plan, TIMESTAMP '2024-01-01' AS updated_at "
            f"FROM range({customers})"
        )
        con.execute(
            "CREATE TABLE raw.orders AS SELECT range AS order_id, "
            f"(range * 7919) % {customers} AS customer_id, "
            "CAST((range % 1000) / 10.0 AS DECIMAL(12, 2)) AS amount, "
            "['placed', 'paid', 'shipped'][1 + range % 3] AS status, "
            "DATE '2024-01-01' + CAST(range % 365 AS INTEGER) AS order_date, "
            "TIMESTAMP '2024-01-01' AS updated_at "
            f"FROM range({orders})"
        )


def change(root: Path, where: str) -> int:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute(
            "UPDATE raw.orders SET amount = amount + 1, updated_at = TIMESTAMP '2024-06-01' "
            f"WHERE order_id IN ({where})"
        )
        row = con.execute("SELECT count(*) FROM raw.orders WHERE updated_at > TIMESTAMP '2024-01-01'").fetchone()
        return int(row[0]) if row else 0


def incremental_vs_full(work: Path, orders: int, scenario: str) -> dict[str, object]:
    base = work / f"{scenario}-{orders}"
    write_orders_project(base, orders)
    cold = timed(["build"], base)
    where = (
        "SELECT min(order_id) FROM raw.orders GROUP BY customer_id"
        if scenario == "every-key"
        else f"SELECT order_id FROM raw.orders WHERE order_id % {max(1, orders // 20)} = 0 LIMIT 20"
    )
    changed = change(base, where)
    full_copy = work / f"{scenario}-{orders}-full"
    shutil.copytree(base, full_copy)
    load = os.getloadavg()[0]
    incremental, incremental_cpu = timed_with_cpu(["build"], base)
    full, full_cpu = timed_with_cpu(["build", "--full-refresh"], full_copy)
    strategies = built_strategies(base)
    shutil.rmtree(base)
    shutil.rmtree(full_copy)
    return {
        "scenario": scenario,
        "orders": orders,
        "changed_orders": changed,
        "cold": round(cold, 2),
        "incremental": round(incremental, 2),
        "full_refresh": round(full, 2),
        "ratio": round(incremental / full, 2),
        "incremental_cpu": round(incremental_cpu, 2),
        "full_refresh_cpu": round(full_cpu, 2),
        "cpu_ratio": round(incremental_cpu / full_cpu, 2),
        "load_average_before": round(load, 2),
        "strategies": strategies,
    }


def built_strategies(root: Path) -> dict[str, int]:
    """How many models the incremental build ran each way (``run_results.json``): what the
    plan chose, beside the time it took."""
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    counts: dict[str, int] = {}
    for result in results:
        name = result["strategy"] or result["action"]
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def compile_bytecode() -> None:
    """Write sqlorch's bytecode before timing, as ``pip install`` does for an installed
    package: where PYTHONDONTWRITEBYTECODE is set (this sandbox sets it), every timed process
    would otherwise compile sqlorch's modules from source, ~0.1 s of each build measured."""
    spec = importlib.util.find_spec("sqlorch")
    assert spec is not None and spec.origin is not None
    compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def chain(work: Path, length: int, runs: int = 1) -> dict[str, object]:
    root = work / f"chain-{length}"
    (root / "models" / "chain").mkdir(parents=True)
    (root / "models" / "sources.yml").write_text("sources:\n  raw.src: {unique_key: id}\n")
    (root / "models" / "chain" / "m0.sql").write_text("SELECT id, v FROM raw.src\n")
    for i in range(1, length):
        (root / "models" / "chain" / f"m{i}.sql").write_text(f"SELECT id, v FROM chain.m{i - 1}\n")
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.src AS SELECT range AS id, range AS v FROM range(1000)")
    cold = timed(["build"], root)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("UPDATE raw.src SET v = -1 WHERE id = 7")
    load = os.getloadavg()[0]
    timings = []
    for _ in range(runs):  # each run builds a copy of the same state: one row changed
        copy = work / f"chain-{length}-run"
        shutil.copytree(root, copy)
        timings.append(timed_with_cpu(["build"], copy))
        shutil.rmtree(copy)
    shutil.rmtree(root)
    return {
        "scenario": "chain",
        "models": length,
        "cold": round(cold, 2),
        "one_row": round(statistics.median(wall for wall, _ in timings), 2),
        "one_row_cpu": round(statistics.median(cpu for _, cpu in timings), 2),
        "one_row_runs": [round(wall, 2) for wall, _ in timings],
        "load_average_before_one_row": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="*", default=[300_000, 3_000_000])
    parser.add_argument("--chain", type=int, default=1000, help="chain length (0: skip)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--scenarios", nargs="*", default=["every-key", "twenty-rows"], choices=["every-key", "twenty-rows"]
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    compile_bytecode()
    print(json.dumps({"load_average_at_start": os.getloadavg()}), flush=True)
    with tempfile.TemporaryDirectory(prefix="sqlorch-cost-") as tmp:
        work = Path(tmp)
        for orders in args.orders:
            for scenario in args.scenarios:
                runs = [incremental_vs_full(work, orders, scenario) for _ in range(args.runs)]
                row = dict(runs[0])
                for field in (
                    "incremental",
                    "full_refresh",
                    "ratio",
                    "incremental_cpu",
                    "full_refresh_cpu",
                    "cpu_ratio",
                ):
                    row[field] = statistics.median(float(str(r[field])) for r in runs)
                if args.runs > 1:
                    row["ratios"] = [r["ratio"] for r in runs]
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.chain:
            row = chain(work, args.chain, args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"load_average_at_end": os.getloadavg()}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
