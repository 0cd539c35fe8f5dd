"""Set up the benchmark's tools and run the build scenarios: dbt-core + dbt-duckdb, SQLMesh, sqlorch.

Every tool is one ``Tool`` entry (see ``tool_registry``): a virtual environment, a
project folder, one command line per scenario and one for the compile benchmark.
``bench/run`` is the one command that runs everything and writes bench/RESULTS.md;
this script is the smaller tool underneath:

    python bench/peers.py setup                     # the pinned venvs (idempotent)
    python bench/peers.py list                      # tools, their commands, whether set up
    python bench/peers.py run --events 100000 --runs 3 --tools dbt,sqlmesh,sqlorch

``run`` goes through cold, no-op, delta and full-refresh builds with the tools
interleaved (bench/scenarios.py), verifies every table against a from-scratch
evaluation, and writes a results JSON.

Folders live under ``$SQLORCH_BENCH_DIR`` (default ``<repo>/.bench``): venv-*/ for the
environments, data/ for cached raw databases, work/ for the runs, results/ for JSON.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from scenarios import BENCH, REPO, SCENARIOS, Scale, Tool, bench_dir, run_interleaved, summarize

PIPELINE = BENCH / "pipeline"

# Exact pins that installed on this machine (Python 3.11). dbt-core 1.12 needs a
# download from outside the package registry here; SQLMesh needs duckdb < 2. Both
# peers share one DuckDB release so that they run the same engine.
DUCKDB_PEER_PIN = "duckdb==1.5.6"
VENVS: dict[str, list[str]] = {
    "dbt": ["dbt-core==1.11.16", "dbt-duckdb==1.11.1", DUCKDB_PEER_PIN],
    "sqlmesh": ["sqlmesh==0.236.4", DUCKDB_PEER_PIN],
    # bare DuckDB of the peers' release: data generation, deltas, verification, baseline
    "duckdb": [DUCKDB_PEER_PIN],
    # sqlorch on the peers' engine (its pyproject allows duckdb>=1.5): same-engine figures
    "sqlorch-duckdb15": ["-e", str(REPO), DUCKDB_PEER_PIN],
}


def venv_dir(name: str) -> Path:
    return bench_dir() / f"venv-{name}"


def venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def tool_registry(sqlorch_bin: Path | None = None) -> dict[str, Tool]:
    """Every tool the benchmark knows; ``sqlorch_bin``: the environment of the main sqlorch."""
    s_bin = sqlorch_bin or Path(sys.executable).parent
    tools = [
        dbt_tool(),
        sqlmesh_tool(),
        duckdb_full_tool(),
        sqlorch_tool("sqlorch", s_bin, "sqlorch build (DuckDB of its own environment)"),
        sqlorch_tool(
            "sqlorch-duckdb15",
            venv_dir("sqlorch-duckdb15") / "bin",
            f"sqlorch build on the peers' DuckDB ({DUCKDB_PEER_PIN})",
            venvs=("sqlorch-duckdb15",),
        ),
    ]
    return {t.name: t for t in tools}


def dbt_tool() -> Tool:
    dbt = ["{bin}/dbt", "run", "--project-dir", "{project}", "--profiles-dir", "{project}"]
    return Tool(
        name="dbt",
        project=PIPELINE / "dbt",
        bin=venv_dir("dbt") / "bin",
        data_python=venv_python("duckdb"),
        commands={"cold": dbt, "noop": dbt, "delta": dbt, "full": [*dbt, "--full-refresh"]},
        venvs=("dbt", "duckdb"),
        packages=("dbt-core", "dbt-duckdb", "duckdb"),
        flavour="dbt",
        # without target/partial_parse.msgpack dbt parses every file; with it, only changed ones
        compile_command=["{bin}/dbt", "parse", "--project-dir", "{project}", "--profiles-dir", "{project}"],
        compile_caches=("target", "logs"),
        notes="incremental models filtered on _loaded_at; append + delete+insert",
    )


def sqlmesh_tool() -> Tool:
    sqlmesh = ["{bin}/sqlmesh", "--paths", "{project}"]
    return Tool(
        name="sqlmesh",
        project=PIPELINE / "sqlmesh",
        bin=venv_dir("sqlmesh") / "bin",
        data_python=venv_python("duckdb"),
        commands={
            # the first plan creates prod and backfills every interval up to the clock
            "cold": [*sqlmesh, "plan", "--auto-apply", "--no-prompts", "--execution-time", "{now}"],
            # `run` has no --execution-time; --end bounds the intervals to the simulated clock
            "noop": [*sqlmesh, "run", "--end", "{today}"],
            "delta": [*sqlmesh, "run", "--end", "{today}"],
        },
        venvs=("sqlmesh", "duckdb"),
        packages=("sqlmesh", "sqlglot", "duckdb"),
        flavour="sqlmesh",
        # `dag` loads and parses every model (the project's Context) and writes an HTML page:
        # the cheapest command that does so without a warehouse (render and info also connect
        # and fingerprint; measured 23 s and 22 s against 12 s warm at 1,000 models)
        compile_command=[*sqlmesh, "dag", "{project}/dag.html"],
        compile_caches=(".cache", "logs"),
        notes="INCREMENTAL_BY_TIME_RANGE / INCREMENTAL_BY_UNIQUE_KEY, lookback 3 days",
    )


def duckdb_full_tool() -> Tool:
    plain = ["{python}", str(BENCH / "plainbuild.py"), "--db", "{db}", "--project", "{project}"]
    return Tool(
        name="duckdb-full",
        project=PIPELINE / "plain",
        bin=venv_dir("duckdb") / "bin",
        data_python=venv_python("duckdb"),
        commands={name: plain for name in ("cold", "noop", "delta")},
        venvs=("duckdb",),
        packages=("duckdb",),
        notes="baseline: every model rebuilt in full with bare DuckDB, no state",
    )


SQLORCH_PROFILES = """\
target: bench
targets:
  bench:
    type: duckdb
    path: {db}
    profile_log: {profile_log}
"""


def sqlorch_tool(name: str, bin_dir: Path, notes: str, venvs: tuple[str, ...] = ()) -> Tool:
    """`sqlorch build` on the plain project, its profile pointing at the file and logging profiles."""
    build = ["{bin}/sqlorch", "build", "--project-dir", "{project}", "--profiles-dir", "{profiles}"]
    return Tool(
        name=name,
        project=PIPELINE / "plain",
        bin=bin_dir,
        data_python=bin_dir / "python",
        commands={"cold": build, "noop": build, "delta": build, "full": [*build, "--full-refresh"]},
        profiles_yml=SQLORCH_PROFILES,
        profile_log=True,
        venvs=venvs,
        packages=("sqlorch", "sqlglot", "duckdb"),
        flavour="sqlorch",
        compile_command=["{bin}/sqlorch", "compile", "--project-dir", "{project}"],
        compile_caches=("target",),
        notes=notes,
    )


# ----------------------------------------------------------------------------- setup


def venv_marker(name: str) -> list[str]:
    """What a venv was made from; an editable install also records its pyproject, whose
    dependencies may change under it."""
    pins = VENVS[name]
    if "-e" not in pins:
        return pins
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return [*pins, f"pyproject-sha256={digest}"]


def setup(names: list[str], force: bool = False) -> None:
    """Create the pinned virtual environments (idempotent)."""
    for name in names:
        pins, marker_text = VENVS[name], venv_marker(name)
        vdir = venv_dir(name)
        marker = vdir / "bench-pins.txt"
        if not force and marker.exists() and marker.read_text().split() == marker_text:
            print(f"{vdir}: up to date ({' '.join(pins)})", flush=True)
            continue
        if vdir.exists():
            shutil.rmtree(vdir)
        print(f"{vdir}: creating with {' '.join(pins)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(vdir)], check=True)
        py = str(vdir / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", *pins], check=True)
        freeze = subprocess.run([py, "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
        (vdir / "bench-freeze.txt").write_text(freeze)
        marker.write_text("\n".join(marker_text) + "\n")
        print(f"{vdir}: ok", flush=True)


# ----------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    registry = tool_registry(args.sqlorch_bin)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; known: {sorted(registry)}")
    scenarios = tuple(s.strip() for s in args.scenarios.split(","))
    scale = Scale(args.events, args.users, args.seed, args.delta_events)
    print(f"{', '.join(names)}: {args.events} events, {args.runs} run(s), interleaved", flush=True)
    results = run_interleaved([registry[n] for n in names], scale, args.runs, args.verify, scenarios)
    table = summarize(results.measurements, results.checks, names)
    print()
    print(table)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.output or bench_dir() / "results" / f"peers-e{args.events}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
    out.write_text(json.dumps({**results.as_dict(), "machine": machine, "summary": table}, indent=2))
    print(f"\nresults: {out}")
    return 0 if all(m.returncode == 0 for m in results.measurements) else 1


def cmd_setup(args: argparse.Namespace) -> int:
    names = [t.strip() for t in args.venvs.split(",") if t.strip()]
    unknown = [n for n in names if n not in VENVS]
    if unknown:
        raise SystemExit(f"unknown venv(s) {unknown}; known: {sorted(VENVS)}")
    setup(names, args.force)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for tool in tool_registry(args.sqlorch_bin).values():
        ready = "ready" if tool.bin.exists() and tool.data_python.exists() else "not set up"
        print(f"{tool.name:<16} {ready:<11} {tool.project.relative_to(REPO)}  {tool.notes}")
        for scenario, argv in tool.commands.items():
            print(f"    {scenario:<7} {shlex.join(argv)}")
        if tool.compile_command:
            print(f"    {'compile':<7} {shlex.join(tool.compile_command)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sqlorch-bin",
        type=Path,
        default=None,
        help="folder holding the sqlorch executable and its python (default: this python's)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="create the pinned virtual environments")
    p_setup.add_argument(
        "--venvs",
        default=",".join(VENVS),
        help="comma-separated (default: %(default)s)",
    )
    p_setup.add_argument("--force", action="store_true", help="recreate even when up to date")
    p_setup.set_defaults(func=cmd_setup)
    p_run = sub.add_parser("run", help="run the scenarios and verify the results")
    p_run.add_argument(
        "--tools",
        default="dbt,sqlmesh",
        help="comma-separated tools, run interleaved (default: %(default)s)",
    )
    p_run.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="raw.events rows (default: %(default)s)",
    )
    p_run.add_argument(
        "--users",
        type=int,
        default=200_000,
        help="raw.users rows (default: %(default)s)",
    )
    p_run.add_argument("--seed", type=int, default=42, help="data seed (default: %(default)s)")
    p_run.add_argument(
        "--delta-events",
        type=int,
        default=None,
        help="new events in the delta (default: 0.1%% of --events)",
    )
    p_run.add_argument("--runs", type=int, default=3, help="repetitions per tool; medians are reported")
    p_run.add_argument("--scenarios", default=",".join(SCENARIOS), help="subset of %(default)s")
    p_run.add_argument(
        "--verify",
        choices=("first", "all", "none"),
        default="first",
        help="compare tables after the builds of the first run (default), every run, or never",
    )
    p_run.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON (default: <bench dir>/results/...)",
    )
    p_run.set_defaults(func=cmd_run)
    p_list = sub.add_parser("list", help="show the tools and their commands")
    p_list.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
