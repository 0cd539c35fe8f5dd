"""Set up and run the peer tools of the benchmark: dbt-core + dbt-duckdb, and SQLMesh.

Every tool is one ``Tool`` entry (see ``tool_registry``): a virtual environment, a
project folder and one command line per scenario. Per repetition the runner copies
a freshly generated raw database and the project into a work folder, then runs

    cold     first build of everything
    noop     the same build again, nothing changed
    (delta)  bench/delta.py appends 0.1% events (5% late) and changes 0.1% of plans
    delta    build after the delta
    full     a full refresh after the delta (tools that have one)

timing each as a subprocess (wall clock; peak RSS of the largest process of the
command's tree, from wait4), and compares every model table with a from-scratch
evaluation of the plain SQL (bench/verify.py) after the cold, delta and full builds.

    python bench/peers.py setup
    python bench/peers.py run --events 100000 --runs 3
    python bench/peers.py run --events 10000000 --runs 3 --tools dbt,sqlmesh,duckdb-full

Folders live under ``$SQLORCH_BENCH_DIR`` (default ``<repo>/.bench``): venv-*/ for the
environments, data/ for cached raw databases, work/ for the runs, results/ for JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
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
}

QUIET_ENV = {
    # no telemetry: there is no network here, and it would only add noise
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

SCENARIOS = ("cold", "noop", "delta", "full")


def bench_dir() -> Path:
    return Path(os.environ.get("SQLORCH_BENCH_DIR") or REPO / ".bench").resolve()


def venv_dir(name: str) -> Path:
    return bench_dir() / f"venv-{name}"


def venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


@dataclass
class Tool:
    """One tool under benchmark.

    Commands are argv templates; ``{placeholders}`` are filled from ``Context``:
    ``bin`` (the venv's bin folder), ``python``, ``project`` (the work copy of the
    project), ``db`` (the DuckDB file), ``profiles`` (a folder holding a generated
    profiles.yml, for tools that take one), ``now`` (simulated clock: the hour
    after the newest ``_loaded_at``) and ``today`` (midnight of ``now``).
    """

    name: str
    project: Path
    bin: Path  # folder of the tool's executables
    data_python: Path  # interpreter whose duckdb reads and writes this tool's file
    commands: dict[str, list[str]]  # scenario -> argv template; a missing scenario is skipped
    env: dict[str, str] = field(default_factory=dict)
    profiles_yml: str | None = None  # template for {profiles}/profiles.yml
    verify_map: dict[str, str] = field(default_factory=dict)  # model -> relation, if it differs
    storage_version: str | None = None  # DuckDB STORAGE_VERSION for the raw file, if needed
    notes: str = ""


def tool_registry(sqlorch_bin: Path | None = None) -> dict[str, Tool]:
    dbt_bin = venv_dir("dbt") / "bin"
    sm_bin = venv_dir("sqlmesh") / "bin"
    duck_py = venv_python("duckdb")
    dbt = [
        "{bin}/dbt",
        "run",
        "--project-dir",
        "{project}",
        "--profiles-dir",
        "{project}",
    ]
    sqlmesh = ["{bin}/sqlmesh", "--paths", "{project}"]
    tools = {
        "dbt": Tool(
            name="dbt",
            project=PIPELINE / "dbt",
            bin=dbt_bin,
            data_python=duck_py,
            commands={
                "cold": dbt,
                "noop": dbt,
                "delta": dbt,
                "full": [*dbt, "--full-refresh"],
            },
            notes="incremental models filtered on _loaded_at; append + delete+insert",
        ),
        "sqlmesh": Tool(
            name="sqlmesh",
            project=PIPELINE / "sqlmesh",
            bin=sm_bin,
            data_python=duck_py,
            commands={
                # the first plan creates prod and backfills every interval up to the clock
                "cold": [
                    *sqlmesh,
                    "plan",
                    "--auto-apply",
                    "--no-prompts",
                    "--execution-time",
                    "{now}",
                ],
                # `run` has no --execution-time; --end bounds the intervals to the simulated clock
                "noop": [*sqlmesh, "run", "--end", "{today}"],
                "delta": [*sqlmesh, "run", "--end", "{today}"],
            },
            notes="INCREMENTAL_BY_TIME_RANGE / INCREMENTAL_BY_UNIQUE_KEY, lookback 3 days",
        ),
        "duckdb-full": Tool(
            name="duckdb-full",
            project=PIPELINE / "plain",
            bin=venv_dir("duckdb") / "bin",
            data_python=duck_py,
            commands={
                name: [
                    "{python}",
                    str(BENCH / "plainbuild.py"),
                    "--db",
                    "{db}",
                    "--project",
                    "{project}",
                ]
                for name in ("cold", "noop", "delta")
            },
            notes="baseline: every model rebuilt in full with bare DuckDB, no state",
        ),
    }
    # sqlorch itself: `sqlorch build` on the plain project, its profile pointing at the file.
    s_bin = sqlorch_bin or Path(sys.executable).parent
    sqlorch = [
        "{bin}/sqlorch",
        "build",
        "--project-dir",
        "{project}",
        "--profiles-dir",
        "{profiles}",
    ]
    tools["sqlorch"] = Tool(
        name="sqlorch",
        project=PIPELINE / "plain",
        bin=s_bin,
        data_python=s_bin / "python",
        commands={
            "cold": sqlorch,
            "noop": sqlorch,
            "delta": sqlorch,
            "full": [*sqlorch, "--full-refresh"],
        },
        profiles_yml="target: bench\ntargets:\n  bench:\n    type: duckdb\n    path: {db}\n",
        notes="sqlorch build (DuckDB of its own environment)",
    )
    return tools


# ----------------------------------------------------------------------------- setup


def setup(names: list[str], force: bool = False) -> None:
    """Create the pinned virtual environments (idempotent)."""
    for name in names:
        pins = VENVS[name]
        vdir = venv_dir(name)
        marker = vdir / "bench-pins.txt"
        if not force and marker.exists() and marker.read_text().split() == pins:
            print(f"{vdir}: up to date ({' '.join(pins)})")
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
        marker.write_text("\n".join(pins) + "\n")
        print(f"{vdir}: ok", flush=True)


# ----------------------------------------------------------------------------- running


@dataclass
class Measurement:
    tool: str
    scenario: str
    run: int
    seconds: float
    peak_rss_mb: float
    returncode: int
    log: str
    cpu_seconds: float = 0.0  # user + system CPU of the command's tree: steadier than wall time on a busy machine
    load_before: float = 0.0  # 1-minute load average when the command started (others' work skews wall time)


@dataclass
class Check:
    tool: str
    scenario: str
    run: int
    ok: bool
    wrong: dict[str, dict[str, object]]  # model -> counts, for models that differ


@dataclass
class Usage:
    seconds: float  # wall clock
    peak_rss_mb: float  # largest resident set of any one process of the tree
    cpu_seconds: float  # user + system, whole tree
    returncode: int


def run_measured(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Usage:
    """Run argv with its output going to ``log``, and measure it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write("$ " + shlex.join(argv) + "\n")
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        # wait4's rusage covers the child and every descendant it waited for;
        # ru_maxrss is the largest resident set of any one of them, in KiB on Linux.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(seconds, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime, proc.returncode)


def data_call(python: Path, script: str, *args: str, env: dict[str, str]) -> str:
    res = subprocess.run(
        [str(python), str(BENCH / script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    allowed = (0, 1) if script == "verify.py" else (0,)  # verify.py exits 1 on a mismatch
    if res.returncode not in allowed:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def duckdb_version(python: Path) -> str:
    res = subprocess.run(
        [str(python), "-c", "import duckdb; print(duckdb.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def clock(python: Path, db: Path) -> tuple[str, str]:
    """Simulated wall clock: the hour after the newest load, and that day's midnight."""
    code = (
        "import duckdb, sys\n"
        "c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "r = c.execute(\"SELECT date_trunc('hour', max(_loaded_at)) + INTERVAL 1 HOUR FROM raw.events\").fetchone()\n"
        "print(r[0].isoformat(sep=' '))\n"
    )
    res = subprocess.run([str(python), "-c", code, str(db)], capture_output=True, text=True, check=True)
    now = datetime.datetime.fromisoformat(res.stdout.strip())
    today = datetime.datetime.combine(now.date(), datetime.time())
    return now.strftime("%Y-%m-%d %H:%M:%S"), today.strftime("%Y-%m-%d %H:%M:%S")


def base_database(tool: Tool, events: int, users: int, seed: int, env: dict[str, str]) -> Path:
    """Raw tables for this scale, generated once per DuckDB release (the file format differs)."""
    version = duckdb_version(tool.data_python)
    suffix = f"-{tool.storage_version}" if tool.storage_version else ""
    path = bench_dir() / "data" / f"raw-e{events}-u{users}-s{seed}-duckdb{version}{suffix}.duckdb"
    if not path.exists():
        tmp = path.with_suffix(".tmp.duckdb")
        tmp.unlink(missing_ok=True)
        args = [
            "--db",
            str(tmp),
            "--events",
            str(events),
            "--users",
            str(users),
            "--seed",
            str(seed),
        ]
        if tool.storage_version:
            args += ["--storage-version", tool.storage_version]
        print(
            "  " + data_call(tool.data_python, "datagen.py", *args, env=env).strip(),
            flush=True,
        )
        tmp.rename(path)
    return path


def verify_tables(tool: Tool, db: Path, out: Path, env: dict[str, str]) -> tuple[bool, dict[str, dict[str, object]]]:
    args = ["--db", str(db), "--json", str(out)]
    for model, rel in tool.verify_map.items():
        args += ["--map", f"{model}={rel}"]
    data_call(tool.data_python, "verify.py", *args, env=env)
    report = json.loads(out.read_text())
    wrong = {
        r["model"]: {
            k: r[k]
            for k in (
                "status",
                "expected_rows",
                "actual_rows",
                "missing_rows",
                "extra_rows",
                "detail",
            )
        }
        for r in report["results"]
        if r["status"] != "ok"
    }
    return bool(report["ok"]), wrong


@dataclass
class RunFolder:
    """The work folder of one repetition of one tool."""

    run: int
    work: Path
    project: Path
    db: Path
    profiles: Path
    env: dict[str, str]
    verify: bool


def prepare_run(tool: Tool, base: Path, events: int, r: int, env: dict[str, str], verify: bool) -> RunFolder:
    work = bench_dir() / "work" / f"{tool.name}-e{events}" / f"run{r}"
    if work.exists():
        shutil.rmtree(work)
    project = work / "project"
    ignore = shutil.ignore_patterns("target", "logs", ".cache", "*.duckdb*")
    shutil.copytree(tool.project, project, ignore=ignore)
    db = work / f"bench_{tool.name.replace('-', '_')}.duckdb"
    shutil.copyfile(base, db)
    profiles = work / "profiles"
    if tool.profiles_yml is not None:
        profiles.mkdir()
        text = tool.profiles_yml.format(db=json.dumps(str(db)))
        (profiles / "profiles.yml").write_text(text)
    run_env = {**env, "SQLORCH_BENCH_DB": str(db)}
    return RunFolder(r, work, project, db, profiles, run_env, verify)


def run_scenario(
    tool: Tool,
    scenario: str,
    rf: RunFolder,
    measurements: list[Measurement],
    checks: list[Check],
) -> bool:
    """Run, time and (maybe) verify one scenario; False when the command failed."""
    template = tool.commands.get(scenario)
    if template is None:
        return True
    now, today = clock(tool.data_python, rf.db)
    ctx = {
        "bin": str(tool.bin),
        "python": str(tool.bin / "python"),
        "project": str(rf.project),
        "db": str(rf.db),
        "profiles": str(rf.profiles),
        "now": now,
        "today": today,
    }
    argv = [part.format(**ctx) for part in template]
    log = rf.work / "logs" / f"{scenario}.log"
    load = os.getloadavg()[0]
    use = run_measured(argv, rf.env, rf.work, log)
    rc = use.returncode
    measurements.append(
        Measurement(tool.name, scenario, rf.run, use.seconds, use.peak_rss_mb, rc, str(log), use.cpu_seconds, load)
    )
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log})"
    print(
        f"  run {rf.run} {scenario:<6} {use.seconds:8.2f}s wall {use.cpu_seconds:8.2f}s cpu "
        f"{use.peak_rss_mb:8.1f} MB  load {load:.1f}  {status}",
        flush=True,
    )
    if rc != 0:
        tail = log.read_text().splitlines()[-15:]
        print("    " + "\n    ".join(tail), flush=True)
        return False
    if rf.verify and scenario != "noop":
        out = rf.work / f"verify-{scenario}.json"
        ok, wrong = verify_tables(tool, rf.db, out, rf.env)
        checks.append(Check(tool.name, scenario, rf.run, ok, wrong))
        if ok:
            print("           verify: all tables match", flush=True)
        for model, info in wrong.items():
            print(
                f"           verify: {model} {info['status']}: "
                f"{info['missing_rows']} rows missing, {info['extra_rows']} extra "
                f"({info['expected_rows']} expected) {info['detail']}",
                flush=True,
            )
    return True


def run_tool(
    tool: Tool,
    events: int,
    users: int,
    seed: int,
    runs: int,
    verify_mode: str,
    scenarios: tuple[str, ...],
) -> tuple[list[Measurement], list[Check]]:
    env = {**os.environ, **QUIET_ENV, **tool.env}
    missing = [p for p in (tool.bin, tool.data_python) if not p.exists()]
    if missing:
        raise SystemExit(f"{tool.name}: {missing[0]} not found (run `python bench/peers.py setup`?)")
    base = base_database(tool, events, users, seed, env)
    measurements: list[Measurement] = []
    checks: list[Check] = []
    for r in range(1, runs + 1):
        verify = verify_mode == "all" or (verify_mode == "first" and r == 1)
        rf = prepare_run(tool, base, events, r, env, verify)
        for scenario in ("cold", "noop", "delta", "full"):
            if scenario == "delta":
                args = ["--db", str(rf.db), "--step", "1", "--seed", str(seed)]
                summary = data_call(tool.data_python, "delta.py", *args, env=env)
                print("  " + summary.strip(), flush=True)
            if scenario not in scenarios:
                continue
            if not run_scenario(tool, scenario, rf, measurements, checks):
                break
    return measurements, checks


def summarize(measurements: list[Measurement], checks: list[Check], tools: list[str]) -> str:
    """Markdown table: per scenario median wall s / median CPU s / max peak RSS MB; verdicts."""
    head = " | ".join(f"{s}: wall s / cpu s / MB" for s in SCENARIOS)
    lines = [
        f"| tool | {head} | wrong after delta |",
        "|---|" + "---|" * len(SCENARIOS) + "---|",
    ]
    for name in tools:
        cells = []
        for scenario in SCENARIOS:
            mine = [m for m in measurements if m.tool == name and m.scenario == scenario]
            ok = [m for m in mine if m.returncode == 0]
            if not mine:
                cells.append("-")
            elif not ok:
                cells.append("failed")
            else:
                seconds = statistics.median(m.seconds for m in ok)
                cpu = statistics.median(m.cpu_seconds for m in ok)
                rss = max(m.peak_rss_mb for m in ok)
                cells.append(f"{seconds:.2f} / {cpu:.1f} / {rss:.0f}")
        delta_checks = [c for c in checks if c.tool == name and c.scenario == "delta"]
        wrong = sorted({model for c in delta_checks for model in c.wrong})
        verdict = (", ".join(wrong) or "none") if delta_checks else "not verified"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    registry = tool_registry(args.sqlorch_bin)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; known: {sorted(registry)}")
    scenarios = tuple(s.strip() for s in args.scenarios.split(","))
    measurements: list[Measurement] = []
    checks: list[Check] = []
    for name in names:
        print(f"{name}: {args.events} events, {args.runs} run(s)", flush=True)
        m, c = run_tool(
            registry[name],
            args.events,
            args.users,
            args.seed,
            args.runs,
            args.verify,
            scenarios,
        )
        measurements += m
        checks += c
    table = summarize(measurements, checks, names)
    print()
    print(table)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.output or bench_dir() / "results" / f"peers-e{args.events}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "events": args.events,
                "users": args.users,
                "seed": args.seed,
                "runs": args.runs,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "measurements": [asdict(m) for m in measurements],
                "checks": [asdict(c) for c in checks],
                "summary": table,
            },
            indent=2,
        )
    )
    print(f"\nresults: {out}")
    return 0 if all(m.returncode == 0 for m in measurements) else 1


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
        print(f"{tool.name:<12} {ready:<11} {tool.project.relative_to(REPO)}  {tool.notes}")
        for scenario, argv in tool.commands.items():
            print(f"    {scenario:<6} {shlex.join(argv)}")
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
        help="comma-separated tools (default: %(default)s)",
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
