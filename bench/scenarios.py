"""Run the build scenarios of the benchmark pipeline for several tools, interleaved, and verify them.

Per repetition every tool gets a fresh copy of the generated raw database and of its
project, then the scenarios run in order, each scenario for every tool before the next
scenario starts (the tool order rotates per repetition), so that a busy spell of the
shared machine hits all tools alike and ratios between tools are taken within one run:

    cold     first build of everything
    noop     the same build again, nothing changed
    (delta)  bench/delta.py appends new events (5% late) and changes 0.1% of plans
    delta    build after the delta
    full     a full refresh after the delta (tools that have one)

Each command is timed as a subprocess (wall clock; peak RSS of the largest process of
its tree and CPU of the whole tree, from wait4). After the cold, delta and full builds
every model table is compared with a from-scratch evaluation of the plain SQL
(bench/verify.py). Tools that write a DuckDB profile log (sqlorch) also report the rows
their statements scanned (bench/rows_read.py).

This module needs only the standard library: the data scripts run with the Python of
each tool's own DuckDB, because a file written by DuckDB 2.x cannot be opened by 1.5.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rows_read import read_log

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

QUIET_ENV = {
    # no telemetry: there is no network here, and it would only add noise
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
    # Bytecode caches stay on for every tool: the peers are installed with theirs, and
    # sqlorch (an editable install) would otherwise recompile its modules on every run.
}

SCENARIOS = ("cold", "noop", "delta", "full")
VERIFIED = ("cold", "delta", "full")  # a no-op build changes nothing worth comparing


def bench_dir() -> Path:
    """Venvs and cached raw data live here: ``$SQLORCH_BENCH_DIR``, default ``<repo>/.bench``."""
    return Path(os.environ.get("SQLORCH_BENCH_DIR") or REPO / ".bench").resolve()


@dataclass
class Tool:
    """One tool under benchmark.

    Commands are argv templates; ``{placeholders}`` are filled in when a command runs:
    ``bin`` (the venv's bin folder), ``python``, ``project`` (the work copy of the
    project), ``db`` (the DuckDB file), ``profiles`` (a folder holding a generated
    profiles.yml, for tools that take one), ``now`` (simulated clock: the hour
    after the newest ``_loaded_at``) and ``today`` (midnight of ``now``). The compile
    template gets ``bin`` and ``project`` (a generated project, bench/compile_project.py).
    """

    name: str
    project: Path
    bin: Path  # folder of the tool's executables
    data_python: Path  # interpreter whose duckdb reads and writes this tool's file
    commands: dict[str, list[str]]  # scenario -> argv template; a missing scenario is skipped
    env: dict[str, str] = field(default_factory=dict)
    profiles_yml: str | None = None  # template for {profiles}/profiles.yml ({db}, {profile_log})
    profile_log: bool = False  # the profile writes DuckDB's per-statement profiles: rows read are measured
    verify_map: dict[str, str] = field(default_factory=dict)  # model -> relation, if it differs
    storage_version: str | None = None  # DuckDB STORAGE_VERSION for the raw file, if needed
    venvs: tuple[str, ...] = ()  # pinned venvs (peers.VENVS) the tool and its data scripts run from
    packages: tuple[str, ...] = ()  # distributions whose versions the report names
    flavour: str | None = None  # bench/compile_project.py flavour of the compile benchmark
    compile_command: list[str] | None = None  # argv template: load and parse every model, no warehouse run
    compile_caches: tuple[str, ...] = ()  # paths in the project removed before a cold compile
    notes: str = ""


@dataclass(frozen=True)
class Scale:
    """The data of one benchmark scale: generated raw tables and the size of the delta."""

    events: int
    users: int = 200_000
    seed: int = 42
    delta_events: int | None = None  # new events in the delta; None: delta.py's 0.1% of the events


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
    rows_read: int | None = None  # rows scanned by all statements (DuckDB profile), where the tool logs them
    statements: int | None = None  # statements profiled
    top_statements: list[tuple[int, str]] = field(default_factory=list)  # largest readers: (rows, SQL start)


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


@dataclass
class BuildResults:
    """Everything measured at one scale: the results JSON keeps it as it is."""

    events: int
    users: int
    seed: int
    runs: int
    tools: list[str]
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    deltas: list[dict[str, Any]] = field(default_factory=list)  # delta.py's summary per tool and run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def base_database(tool: Tool, scale: Scale, env: dict[str, str]) -> Path:
    """Raw tables for this scale, generated once per DuckDB release (the file format differs)."""
    version = duckdb_version(tool.data_python)
    suffix = f"-{tool.storage_version}" if tool.storage_version else ""
    name = f"raw-e{scale.events}-u{scale.users}-s{scale.seed}-duckdb{version}{suffix}.duckdb"
    path = bench_dir() / "data" / name
    if not path.exists():
        tmp = path.with_suffix(".tmp.duckdb")
        tmp.unlink(missing_ok=True)
        args = ["--db", str(tmp), "--events", str(scale.events), "--users", str(scale.users)]
        args += ["--seed", str(scale.seed)]
        if tool.storage_version:
            args += ["--storage-version", tool.storage_version]
        print("  " + data_call(tool.data_python, "datagen.py", *args, env=env).strip(), flush=True)
        tmp.rename(path)
    return path


def verify_tables(tool: Tool, db: Path, out: Path, env: dict[str, str]) -> tuple[bool, dict[str, dict[str, object]]]:
    args = ["--db", str(db), "--json", str(out)]
    for model, rel in tool.verify_map.items():
        args += ["--map", f"{model}={rel}"]
    data_call(tool.data_python, "verify.py", *args, env=env)
    report = json.loads(out.read_text())
    keys = ("status", "expected_rows", "actual_rows", "missing_rows", "extra_rows", "detail")
    wrong = {r["model"]: {k: r[k] for k in keys} for r in report["results"] if r["status"] != "ok"}
    return bool(report["ok"]), wrong


@dataclass
class RunFolder:
    """The work folder of one repetition of one tool."""

    run: int
    work: Path
    project: Path
    db: Path
    profiles: Path
    profile_log: Path
    env: dict[str, str]
    verify: bool


def prepare_run(
    tool: Tool, base: Path, work_root: Path, events: int, r: int, env: dict[str, str], verify: bool
) -> RunFolder:
    work = work_root / f"{tool.name}-e{events}" / f"run{r}"
    if work.exists():
        shutil.rmtree(work)
    project = work / "project"
    ignore = shutil.ignore_patterns("target", "logs", ".cache", "*.duckdb*")
    shutil.copytree(tool.project, project, ignore=ignore)
    db = work / f"bench_{tool.name.replace('-', '_')}.duckdb"
    shutil.copyfile(base, db)
    profiles = work / "profiles"
    profile_log = work / "profile.jsonl"
    if tool.profiles_yml is not None:
        profiles.mkdir()
        text = tool.profiles_yml.format(db=json.dumps(str(db)), profile_log=json.dumps(str(profile_log)))
        (profiles / "profiles.yml").write_text(text)
    run_env = {**env, "SQLORCH_BENCH_DB": str(db)}
    return RunFolder(r, work, project, db, profiles, profile_log, run_env, verify)


def command_line(tool: Tool, template: list[str], rf: RunFolder) -> list[str]:
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
    return [part.format(**ctx) for part in template]


def run_scenario(
    tool: Tool, scenario: str, rf: RunFolder, measurements: list[Measurement], checks: list[Check]
) -> bool:
    """Run, time and (maybe) verify one scenario; False when the command failed."""
    template = tool.commands.get(scenario)
    if template is None:
        return True
    argv = command_line(tool, template, rf)
    log = rf.work / "logs" / f"{scenario}.log"
    rf.profile_log.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    use = run_measured(argv, rf.env, rf.work, log)
    m = Measurement(
        tool.name, scenario, rf.run, use.seconds, use.peak_rss_mb, use.returncode, str(log), use.cpu_seconds, load
    )
    if tool.profile_log and use.returncode == 0:
        rows = read_log(rf.profile_log)
        m.rows_read, m.statements, m.top_statements = rows.rows, rows.statements, rows.top
        if rf.profile_log.exists():
            rf.profile_log.rename(rf.work / "logs" / f"profile-{scenario}.jsonl")
    measurements.append(m)
    print_measurement(tool, m)
    if use.returncode != 0:
        print("    " + "\n    ".join(log.read_text().splitlines()[-15:]), flush=True)
        return False
    if rf.verify and scenario in VERIFIED:
        ok, wrong = verify_tables(tool, rf.db, rf.work / f"verify-{scenario}.json", rf.env)
        checks.append(Check(tool.name, scenario, rf.run, ok, wrong))
        print_check(ok, wrong)
    return True


def print_measurement(tool: Tool, m: Measurement) -> None:
    status = "ok" if m.returncode == 0 else f"FAILED (exit {m.returncode}, see {m.log})"
    rows = f"  {m.rows_read:,} rows read" if m.rows_read is not None else ""
    print(
        f"  {tool.name:<16} run {m.run} {m.scenario:<6} {m.seconds:8.2f}s wall {m.cpu_seconds:8.2f}s cpu "
        f"{m.peak_rss_mb:8.1f} MB  load {m.load_before:.1f}{rows}  {status}",
        flush=True,
    )


def print_check(ok: bool, wrong: dict[str, dict[str, object]]) -> None:
    if ok:
        print("           verify: all tables match", flush=True)
    for model, info in wrong.items():
        print(
            f"           verify: {model} {info['status']}: {info['missing_rows']} rows missing, "
            f"{info['extra_rows']} extra ({info['expected_rows']} expected) {info['detail']}",
            flush=True,
        )


def apply_delta(tool: Tool, rf: RunFolder, scale: Scale, env: dict[str, str]) -> dict[str, Any]:
    """Delta step 1 on the tool's file (not timed); returns delta.py's summary."""
    args = ["--db", str(rf.db), "--step", "1", "--seed", str(scale.seed), "--json"]
    if scale.delta_events is not None:
        args += ["--new-events", str(scale.delta_events)]
    summary: dict[str, Any] = json.loads(data_call(tool.data_python, "delta.py", *args, env=env))
    return {"tool": tool.name, "run": rf.run, **summary}


def check_ready(tool: Tool) -> None:
    missing = [p for p in (tool.bin, tool.data_python) if not p.exists()]
    if not missing:
        return
    if tool.venvs:
        raise SystemExit(f"{tool.name}: {missing[0]} not found (run `python bench/peers.py setup`?)")
    raise SystemExit(
        f"{tool.name}: {missing[0]} not found: activate the environment sqlorch is installed in, "
        f"or pass --sqlorch-bin (bench/run: or set SQLORCH_BENCH_PYTHON)"
    )


def drop_databases(folders: list[RunFolder]) -> None:
    """The repetition's database files go (hundreds of MB each at 10M events); logs stay."""
    for rf in folders:
        for path in (rf.db, rf.db.with_name(rf.db.name + ".wal")):
            path.unlink(missing_ok=True)


def run_interleaved(
    tools: list[Tool],
    scale: Scale,
    runs: int,
    verify_mode: str = "first",
    scenarios: tuple[str, ...] = SCENARIOS,
    work_root: Path | None = None,
    keep_databases: bool = False,
) -> BuildResults:
    """Every repetition: all tools through cold, noop, delta, full, one scenario at a time."""
    results = BuildResults(scale.events, scale.users, scale.seed, runs, [t.name for t in tools])
    work_root = work_root or bench_dir() / "work"
    envs = {t.name: {**os.environ, **QUIET_ENV, **t.env} for t in tools}
    for tool in tools:
        check_ready(tool)
    bases = {t.name: base_database(t, scale, envs[t.name]) for t in tools}
    for r in range(1, runs + 1):
        order = tools[(r - 1) % len(tools) :] + tools[: (r - 1) % len(tools)]
        verify = verify_mode == "all" or (verify_mode == "first" and r == 1)
        folders = {
            t.name: prepare_run(t, bases[t.name], work_root, scale.events, r, envs[t.name], verify) for t in order
        }
        failed: set[str] = set()
        for scenario in SCENARIOS:
            if scenario == "delta":
                for tool in order:
                    results.deltas.append(apply_delta(tool, folders[tool.name], scale, envs[tool.name]))
                print_delta(results.deltas[-1])
            if scenario not in scenarios:
                continue
            for tool in order:
                if tool.name in failed:
                    continue
                if not run_scenario(tool, scenario, folders[tool.name], results.measurements, results.checks):
                    failed.add(tool.name)
        if not keep_databases:
            drop_databases(list(folders.values()))
    return results


def print_delta(summary: dict[str, Any]) -> None:
    print(
        f"  delta step {summary['step']}: {summary['new_events']} new events ({summary['late_events']} late), "
        f"{summary['updated_users']} users changed plan",
        flush=True,
    )


def summarize(measurements: list[Measurement], checks: list[Check], tools: list[str]) -> str:
    """Console table: per scenario median wall s / median CPU s / max peak RSS MB; verdicts."""
    head = " | ".join(f"{s}: wall s / cpu s / MB" for s in SCENARIOS)
    lines = [f"| tool | {head} | wrong after delta |", "|---|" + "---|" * len(SCENARIOS) + "---|"]
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
                cells.append(f"{seconds:.2f} / {cpu:.1f} / {max(m.peak_rss_mb for m in ok):.0f}")
        delta_checks = [c for c in checks if c.tool == name and c.scenario == "delta"]
        wrong = sorted({model for c in delta_checks for model in c.wrong})
        verdict = (", ".join(wrong) or "none") if delta_checks else "not verified"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)
