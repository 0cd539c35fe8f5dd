"""TPC-H refresh workload: the 22 queries as sqlorch models, kept up to date through RF1/RF2 steps.

    python bench/tpch.py models                     # (re)write bench/tpch/models from the tpch extension
    python bench/tpch.py run --sf 1 --steps 5       # data, cold build, steps, verification, report
    python bench/tpch.py run --sf 1 --steps 5 --write-results   # ... and the section in RESULTS.md

Data: DuckDB's ``tpch`` extension (``CALL dbgen(sf=...)``). This machine reaches no extension
repository, so ``INSTALL tpch`` fails on the DuckDB sqlorch runs on (2.0.1); the extension
ships on PyPI only for older releases (``duckdb-extension-tpch`` 1.5.5). A side venv
(``.bench/venv-tpchgen``: duckdb 1.5.5 + that package) generates the tables into Parquet once
per scale factor (``.bench/tpch/sf<N>/``); the benchmark loads them into a DuckDB file of
sqlorch's own release as ``raw.*``.

A step is one RF1 (0.1% new orders, copies of random existing orders under new order keys
past the largest, with their lineitems) and one RF2 (as many random existing orders deleted,
with their lineitems), then ``sqlorch build``. After every build each model table is compared
with a from-scratch evaluation (bench/verify.py, ``EXCEPT ALL`` both ways). The baseline is
bench/plainbuild.py: every model's SELECT evaluated from scratch with bare DuckDB.

Where a step's seconds go: each build runs through ``timed-build`` (below), which runs the CLI
in its own process as ``python -m sqlorch.cli build`` does, with wall-clock timers around the
build's phases (the change capture, the rest of the preparation, the models, the prune, the
connection's close, which checkpoints DuckDB's WAL); the rest of the step's wall is process
start, imports and the CLI's own work. A timer is two clock reads per phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bytecode import compile_bytecode  # noqa: E402
from plainbuild import build as plain_build  # noqa: E402
from report import replace_section  # noqa: E402
from verify import verify  # noqa: E402

PROJECT = HERE / "tpch"
TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")
GEN_PACKAGES = ["duckdb==1.5.5", "duckdb-extension-tpch==1.5.5"]
MARK_START, MARK_END = "<!-- tpch:start -->", "<!-- tpch:end -->"


def bench_dir() -> Path:
    return Path(os.environ.get("SQLORCH_BENCH_DIR", REPO / ".bench"))


def gen_python() -> Path:
    """The side venv that has the tpch extension (see the module docstring)."""
    venv = bench_dir() / "venv-tpchgen"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *GEN_PACKAGES], check=True)
    return python


GEN_SCRIPT = """
import sys, pathlib, duckdb, duckdb_extension_tpch as ext
path = next(pathlib.Path(ext.__file__).parent.glob('extensions/*/tpch.duckdb_extension'))
con = duckdb.connect()
con.execute(f"LOAD '{path}'")
mode, arg, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
if mode == 'data':
    con.execute(f'CALL dbgen(sf={float(arg)})')
    for t in TABLES:
        con.execute(f"COPY {t} TO '{out / (t + '.parquet')}' (FORMAT parquet)")
else:
    print(__import__('json').dumps(con.execute('SELECT query_nr, query FROM tpch_queries()').fetchall()))
""".replace("TABLES", repr(TABLES))


def generate(sf: float) -> Path:
    folder = bench_dir() / "tpch" / f"sf{sf:g}"
    if not (folder / "lineitem.parquet").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(gen_python()), "-c", GEN_SCRIPT, "data", str(sf), str(folder)], check=True)
    return folder


def write_models() -> None:
    """The 22 queries as models over ``raw.*``, without their final ORDER BY / LIMIT."""
    import sqlglot
    from sqlglot import exp

    out = subprocess.run([str(gen_python()), "-c", GEN_SCRIPT, "queries", "0", "."], check=True, capture_output=True)
    folder = PROJECT / "models" / "tpch"
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in json.loads(out.stdout):
        tree = sqlglot.parse_one(text, read="duckdb")
        tree.set("order", None)
        tree.set("limit", None)
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if table.name.lower() in TABLES and table.name.lower() not in ctes:
                table.set("db", exp.to_identifier("raw"))
        header = f"-- description: TPC-H Q{number} (DuckDB tpch extension), without its final ORDER BY / LIMIT\n"
        (folder / f"q{number:02d}.sql").write_text(header + tree.sql(dialect="duckdb", pretty=True) + "\n")


def load(db: Path, data: Path) -> None:
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        for table in TABLES:
            con.execute(f"CREATE TABLE raw.{table} AS SELECT * FROM read_parquet('{data / (table + '.parquet')}')")


def refresh(db: Path, step: int) -> dict[str, int]:
    """RF1 + RF2 of 0.1% of the orders, seeded by the step number."""
    with duckdb.connect(str(db)) as con:
        orders = con.execute("SELECT count(*) FROM raw.orders").fetchone()[0]
        n = max(1, orders // 1000)
        con.execute("SELECT setseed(?)", [((step * 7919) % 1000) / 1000])
        con.execute("BEGIN")
        con.execute(
            "CREATE TEMP TABLE picked AS SELECT o_orderkey, row_number() OVER () AS i "
            f"FROM (SELECT o_orderkey FROM raw.orders ORDER BY random() LIMIT {n})"
        )
        top = con.execute("SELECT max(o_orderkey) FROM raw.orders").fetchone()[0]
        con.execute(
            f"INSERT INTO raw.orders SELECT o.* REPLACE ({top} + p.i AS o_orderkey) "
            "FROM raw.orders o JOIN picked p USING (o_orderkey)"
        )
        con.execute(
            f"INSERT INTO raw.lineitem SELECT l.* REPLACE ({top} + p.i AS l_orderkey) "
            "FROM raw.lineitem l JOIN picked p ON l.l_orderkey = p.o_orderkey"
        )
        inserted = con.execute(f"SELECT count(*) FROM raw.lineitem WHERE l_orderkey > {top}").fetchone()[0]
        con.execute(
            "CREATE TEMP TABLE doomed AS SELECT o_orderkey FROM raw.orders "
            f"WHERE o_orderkey <= {top} ORDER BY random() LIMIT {n}"
        )
        deleted = con.execute(
            "SELECT count(*) FROM raw.lineitem WHERE l_orderkey IN (SELECT o_orderkey FROM doomed)"
        ).fetchone()[0]
        con.execute("DELETE FROM raw.lineitem WHERE l_orderkey IN (SELECT o_orderkey FROM doomed)")
        con.execute("DELETE FROM raw.orders WHERE o_orderkey IN (SELECT o_orderkey FROM doomed)")
        con.execute("COMMIT")
    return {"orders": 2 * n, "lineitems": inserted + deleted}


PHASES = {  # (module, attribute, method or None): what each phase's timer wraps
    "capture": ("sqlorch.api", "_capture_sources", None),
    "prepare": ("sqlorch.api", "prepare", None),  # connect, lease, catalog, capture, compile, plan
    "models": ("sqlorch.execution.executor", "Executor", "execute"),
    "prune": ("sqlorch.api", "_prune_change_logs", None),
    "close": ("sqlorch.api", "Prepared", "close"),  # the lease released, DuckDB's checkpoint
}


def timed_build(argv: list[str], out: Path) -> None:
    """``sqlorch build`` (``argv``: its arguments) in this process, its phases' wall seconds
    and CPU seconds (the process's, DuckDB's threads included) written to ``out`` as JSON
    when the process exits."""
    import atexit
    import functools
    import importlib

    seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    def timed(name: str, function: Callable[..., object]) -> Callable[..., object]:
        @functools.wraps(function)
        def run(*args: object, **kwargs: object) -> object:
            started, used = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - used

        return run

    for name, (module, attribute, method) in PHASES.items():
        owner = importlib.import_module(module)
        if method is None:
            setattr(owner, attribute, timed(name, getattr(owner, attribute)))
        else:
            cls = getattr(owner, attribute)
            setattr(cls, method, timed(name, getattr(cls, method)))
    atexit.register(lambda: out.write_text(json.dumps({**seconds, "cpu": cpu})))
    from sqlorch.cli import main as cli_main

    sys.argv = ["sqlorch", "build", *argv]
    cli_main()


def sqlorch_build(project: Path, full_refresh: bool = False) -> tuple[float, dict, dict[str, Any]]:
    """One ``sqlorch build`` in a fresh process: its wall seconds, its run results and where
    its seconds went (``timed_build``: wall per phase, and under ``cpu`` CPU seconds per
    phase and the whole process's)."""
    phases = project / "target" / "phases.json"
    phases.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "timed-build", str(phases), "--project-dir", str(project)]
    if full_refresh:
        command.append("--full-refresh")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = os.times()
    if done.returncode:
        raise SystemExit(f"build failed:\n{done.stdout}\n{done.stderr}")
    split = json.loads(phases.read_text())
    total_cpu = after.children_user + after.children_system - before.children_user - before.children_system

    def phased(part: dict[str, float], total: float) -> dict[str, float]:
        return {
            "capture": part["capture"],
            "plan": part["prepare"] - part["capture"],  # connect, lease, catalog, compile, plan
            "models": part["models"],
            "prune": part["prune"],
            "close": part["close"],
            "process": total - part["prepare"] - part["models"] - part["prune"] - part["close"],
        }

    breakdown: dict[str, Any] = phased(split, seconds)  # process: start, imports, CLI, results file
    breakdown["cpu"] = {**phased(split["cpu"], total_cpu), "total": total_cpu}
    return seconds, json.loads((project / "target" / "run_results.json").read_text()), breakdown


def baseline(db: Path, scratch: Path) -> float:
    """Every model evaluated from scratch with bare DuckDB, on a copy of the sources."""
    shutil.copy(db, scratch)
    with duckdb.connect(str(scratch)) as con:
        con.execute("DROP SCHEMA IF EXISTS tpch CASCADE")
        con.execute("DROP SCHEMA IF EXISTS _sqlorch CASCADE")
        con.execute("CHECKPOINT")
    started = time.perf_counter()
    plain_build(scratch, PROJECT)
    seconds = time.perf_counter() - started
    scratch.unlink()
    return seconds


def check(db: Path) -> list[str]:
    wrong = [c for c in verify(db, PROJECT) if c.status != "ok"]
    return [f"{c.model}: {c.status} ({c.missing_rows} missing, {c.extra_rows} extra) {c.detail}" for c in wrong]


def why_not_signed(project: Path) -> dict[str, str]:
    """Per model, why its groups are not maintained from signed deltas (the key analysis)."""
    from sqlorch import api

    prepared = api.prepare(api.Options(project_dir=project), planning=True)
    prepared.adapter.close()
    return {  # a model with partitions folds per touched partition (analysis/partition.py)
        str(ref): "" if item.keys.partitions else item.keys.not_signed or ""
        for ref, item in prepared.inputs.compiled.items()
    }


def run(sf: float, steps: int, workdir: Path) -> dict:
    compile_bytecode()
    data = generate(sf)
    if workdir.exists():
        shutil.rmtree(workdir)
    project = workdir / "project"
    shutil.copytree(PROJECT, project)
    db = project / "warehouse.duckdb"
    load(db, data)
    cold, _, _ = sqlorch_build(project)
    wrong = check(db)
    result: dict = {"sf": sf, "cold_seconds": cold, "steps": [], "wrong": {"cold": wrong}}
    for step in range(1, steps + 1):
        changed = refresh(db, step)
        plain = baseline(db, workdir / "scratch.duckdb")
        seconds, results, phases = sqlorch_build(project)
        wrong = check(db)
        result["wrong"][f"step {step}"] = wrong
        result["steps"].append(
            {
                "changed": changed,
                "seconds": seconds,
                "scratch_seconds": plain,
                "load": os.getloadavg()[0],
                "phases": phases,
                "models": {
                    r["model"]: {k: r.get(k) for k in ("action", "strategy", "reason", "seconds")}
                    for r in results["results"]
                },
            }
        )
        print(
            f"step {step}: build {seconds:.2f}s ({', '.join(f'{k} {phases[k]:.2f}' for k in PHASE_TITLES)}; "
            f"CPU {', '.join(f'{k} {v:.2f}' for k, v in phases['cpu'].items())}), "
            f"from scratch {plain:.2f}s, load {os.getloadavg()[0]:.1f}, mismatches {wrong or 'none'}",
            flush=True,
        )
    result["not_signed"] = why_not_signed(project)
    return result


PHASE_TITLES = {
    "capture": "change capture of the sources",
    "plan": "connect, lease, catalog, compile, plan",
    "models": "the models (the executor, from its first statement to its last)",
    "prune": "prune of consumed change logs",
    "close": "close: lease released, DuckDB checkpoint",
    "process": "process start, imports, CLI, results file",
}


def report(result: dict, command: str) -> str:
    steps = result["steps"]
    build = statistics.median(s["seconds"] for s in steps)
    scratch = statistics.median(s["scratch_seconds"] for s in steps)
    last = steps[-1]["models"]
    loads = ", ".join(f"{s['load']:.1f}" for s in steps)
    builds = ", ".join(f"{s['seconds']:.2f}" for s in steps)
    scratches = ", ".join(f"{s['scratch_seconds']:.2f}" for s in steps)
    lines = [
        MARK_START,
        f"## TPC-H refresh workload, scale factor {result['sf']:g} (issue 11)",
        "",
        f"- Command: `{command}`",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; 2 cores (shared); "
        f"DuckDB {duckdb.__version__}; "
        f"1-minute load average during the steps {loads}",
        f"- {len(steps)} steps, each RF1 + RF2: {steps[0]['changed']['orders']:,} orders and "
        f"~{steps[0]['changed']['lineitems']:,} lineitems inserted or deleted",
        "",
        "| measure | value |",
        "|---|---|",
        f"| median incremental step, whole `sqlorch build` (fresh process) | {build:.2f} s ({builds}) |",
        f"| median from-scratch evaluation of the 22 models, bare DuckDB | {scratch:.2f} s ({scratches}) |",
        f"| ratio (target ≤ 0.25x) | {build / scratch:.2f}x |",
        f"| queries not rebuilt in full on the last step (target ≥ 20 of 22) | "
        f"{sum(1 for m in last.values() if m['action'] != 'full')} of {len(last)} |",
        f"| cold build | {result['cold_seconds']:.2f} s |",
        f"| mismatches after the cold build and every step | "
        f"{sum(len(w) for w in result['wrong'].values()) or 'none'} |",
        "",
        "Where a step's seconds go (medians over the steps; `timed-build` in bench/tpch.py; CPU: the",
        "build process's, DuckDB's threads included):",
        "",
        "| phase | wall seconds | share of the wall | CPU seconds |",
        "|---|---|---|---|",
        *(
            f"| {title} | {wall:.2f} | {wall / build:.0%} | {cpu:.2f} |"
            for title, wall, cpu in (
                (
                    title,
                    statistics.median(s["phases"][name] for s in steps),
                    statistics.median(s["phases"]["cpu"][name] for s in steps),
                )
                for name, title in PHASE_TITLES.items()
            )
        ),
        f"| whole build | {build:.2f} | 100% | {statistics.median(s['phases']['cpu']['total'] for s in steps):.2f} |",
        "",
        "Per query, the last step (seconds of the model's own run):",
        "",
        "| query | action | strategy | seconds | reason | why not from signed deltas |",
        "|---|---|---|---|---|---|",
    ]
    for name, model in sorted(last.items()):
        reason = model["reason"].replace("|", "\\|")
        why = "" if model["strategy"] == "fold signed deltas" else result.get("not_signed", {}).get(name, "")
        why = why.replace("|", "\\|")
        lines.append(f"| {name} | {model['action']} | {model['strategy']} | {model['seconds']} | {reason} | {why} |")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_results(section: str, sf: float) -> None:
    start, end = MARK_START.replace(":start", f":sf{sf:g}:start"), MARK_END.replace(":end", f":sf{sf:g}:end")
    replace_section(HERE / "RESULTS.md", section.replace(MARK_START, start).replace(MARK_END, end))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="rewrite bench/tpch/models from the extension's query texts")
    runner = sub.add_parser("run", help="data, cold build, refresh steps, verification, report")
    runner.add_argument("--sf", type=float, default=1.0)
    runner.add_argument("--steps", type=int, default=5)
    runner.add_argument("--json", type=Path, help="write the raw figures here")
    runner.add_argument("--write-results", action="store_true", help="write the section into bench/RESULTS.md")
    if (argv if argv is not None else sys.argv[1:])[:1] == ["timed-build"]:
        arguments = argv if argv is not None else sys.argv[1:]
        timed_build(arguments[2:], Path(arguments[1]))  # not argparse's: sqlorch's own arguments
        return 0
    args = parser.parse_args(argv)
    if args.command == "models":
        write_models()
        return 0
    result = run(args.sf, args.steps, bench_dir() / "tpch" / f"run-sf{args.sf:g}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    section = report(result, "python bench/tpch.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(section)
    if args.write_results:
        write_results(section, args.sf)
    return 1 if any(result["wrong"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
