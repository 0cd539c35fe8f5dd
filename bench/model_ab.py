"""One TPC-H model's step, two code trees, the same data: A/B of a strategy on its own.

    python bench/model_ab.py --project DIR/tpch/run-sf1/project --model tpch.q15 \\
        --a /path/to/main/checkout --b . --trials 4

``--project`` is a project ``bench/tpch.py run`` left behind (its warehouse built and up to
date). It is copied twice; each trial applies the same RF1 + RF2 step (``tpch.refresh``,
seeded by the trial) to both copies, then runs ``sqlorch build --select MODEL`` with tree A's
code on one and tree B's on the other, alternating which goes first (A B, B A, ...). Each build
runs in a fresh process (``build-one`` below) that times only the executor, where the model's
statements run, apart from the change capture of the sources: its wall and CPU seconds (the
process's, DuckDB's threads included), and the rows DuckDB's profile says its statements
scanned (profiles.yml ``profile_log``, read by ``rows_read.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rows_read import statement_rows  # noqa: E402
from tpch import refresh  # noqa: E402


def build_one(project: Path, model: str, out: Path) -> None:
    """``sqlorch build --select model`` in this process; the executor's seconds and its
    statements' profiles (the capture's are left out of the log) written to ``out``."""
    from sqlorch.adapters import duckdb as adapter_module
    from sqlorch.execution import executor as executor_module

    running = {"models": False}
    timed = {"wall": 0.0, "cpu": 0.0}
    log_profile = adapter_module.DuckDBAdapter._log_profile
    execute = executor_module.Executor.execute

    def only_models(self: adapter_module.DuckDBAdapter) -> None:
        if running["models"]:
            log_profile(self)

    def executing(self: executor_module.Executor, *args: object, **kwargs: object) -> object:
        running["models"] = True
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return execute(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            running["models"] = False
            timed["wall"] += time.perf_counter() - wall
            timed["cpu"] += time.process_time() - cpu

    adapter_module.DuckDBAdapter._log_profile = only_models  # type: ignore[method-assign]
    executor_module.Executor.execute = executing  # type: ignore[method-assign,assignment]
    from sqlorch import api

    result = api.build(api.Options(project_dir=project, select=model))
    (step,) = [r for r in result.results if r.model == model]
    out.write_text(json.dumps({**timed, "action": step.action, "strategy": step.strategy, "status": step.status}))


def trial(code: Path, project: Path, model: str) -> dict:
    log, out = project / "profile.jsonl", project / "step.json"
    log.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / "model_ab.py"), "build-one", str(project), model, str(out)]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"build failed:\n{done.stdout}\n{done.stderr}")
    rows = sum(statement_rows(json.loads(line)) for line in log.read_text().splitlines()) if log.exists() else 0
    return {**json.loads(out.read_text()), "rows_scanned": rows, "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("build-one")
    one.add_argument("project", type=Path)
    one.add_argument("model")
    one.add_argument("out", type=Path)
    ab = sub.add_parser("run")
    ab.add_argument("--project", type=Path, required=True)
    ab.add_argument("--model", required=True)
    ab.add_argument("--a", type=Path, required=True, help="code tree A (a checkout: its sqlorch is imported)")
    ab.add_argument("--b", type=Path, required=True)
    ab.add_argument("--trials", type=int, default=4)
    ab.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "model-ab")
    args = parser.parse_args(argv)
    if args.command == "build-one":
        build_one(args.project, args.model, args.out)
        return 0
    sides = {"A": args.a.resolve(), "B": args.b.resolve()}
    shutil.rmtree(args.work, ignore_errors=True)
    for side in sides:
        copy = args.work / side
        shutil.copytree(args.project, copy)
        log = copy / "profile.jsonl"
        (copy / "profiles.yml").write_text(
            f"target: dev\ntargets:\n  dev:\n    type: duckdb\n    path: warehouse.duckdb\n    profile_log: {log}\n"
        )
    for number in range(args.trials):
        for side in "AB" if number % 2 == 0 else "BA":
            refresh(args.work / side / "warehouse.duckdb", 1000 + number)
            found = trial(sides[side], args.work / side, args.model)
            print(
                f"trial {number} {side}: {found['action']} ({found['strategy']}), executor {found['wall']:.3f} s wall, "
                f"{found['cpu']:.3f} s CPU, {found['rows_scanned']:,} rows scanned, load {found['load']:.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
