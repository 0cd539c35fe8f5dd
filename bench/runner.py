"""The whole benchmark in one command: `bench/run` (this file) writes bench/RESULTS.md.

    bench/run                 # full run: 10M events (all tools, 3 runs) and 50M (sqlorch),
                              # compile 1,000 and 10,000 models, sqlorch --help; hours, not minutes
    bench/run --smoke         # 100k events, the same code paths in ~1 minute (CI runs it)
    bench/run --runs 1 --scales 1000000 --compile-models 1000

In order: the pinned venvs (idempotent, bench/peers.py), the build scenarios at each
scale with the tools interleaved (bench/scenarios.py; the first scale runs every tool,
the others only ``--scale-tools``, with a delta of the same size), the compile
benchmark on generated projects for each compile tool (bench/compile_project.py),
`sqlorch --help`, then the report (bench/report.py). The results JSON is rewritten
after every phase, so a run that dies keeps what it measured; `python bench/report.py
<json>` turns it into Markdown again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import peers
import report
from bytecode import compile_bytecode
from compile_project import generate
from scenarios import (
    QUIET_ENV,
    REPO,
    Measurement,
    Scale,
    Tool,
    bench_dir,
    print_measurement,
    run_interleaved,
    run_measured,
)

FULL = {
    "scales": "10000000,50000000",
    "runs": 3,
    "tools": "sqlorch,sqlorch-duckdb15,dbt,sqlmesh",
    "scale_tools": "sqlorch",
    "compile_models": "1000,10000",
    "compile_tools": "sqlorch,dbt,sqlmesh",
    "help_runs": 10,
}
# The smoke: every phase and every code path of the full run, on data small enough for CI.
SMOKE = {
    "scales": "100000,200000",
    "runs": 1,
    "tools": "sqlorch,sqlorch-duckdb15",
    "scale_tools": "sqlorch",
    "compile_models": "100",
    "compile_tools": "sqlorch",
    "help_runs": 3,
}
DELTA_FRACTION = 0.001  # the delta appends 0.1% of the first scale's events, at every scale


@dataclass(frozen=True)
class Plan:
    """What one invocation measures, after the --smoke presets are applied."""

    smoke: bool
    scales: list[int]
    runs: int
    tools: list[str]
    scale_tools: list[str]
    delta_events: int
    compile_models: list[int]
    compile_tools: list[str]
    compile_runs: int
    help_runs: int
    verify: str
    work: Path
    output: Path
    json_path: Path
    keep_databases: bool


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_plan(args: argparse.Namespace) -> Plan:
    preset = SMOKE if args.smoke else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset[name] if value is None else value

    scales = [int(s) for s in csv(str(pick("scales")))]
    runs = int(pick("runs"))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results = bench_dir() / "results"
    default_output = results / "SMOKE.md" if args.smoke else REPO / "bench" / "RESULTS.md"
    return Plan(
        smoke=args.smoke,
        scales=scales,
        runs=runs,
        tools=csv(pick("tools")),
        scale_tools=csv(pick("scale_tools")),
        delta_events=args.delta_events or max(1, round((scales[0] if scales else 0) * DELTA_FRACTION)),
        compile_models=[int(n) for n in csv(str(pick("compile_models")))],
        compile_tools=csv(pick("compile_tools")),
        compile_runs=args.compile_runs or runs,
        help_runs=int(pick("help_runs")),
        verify=args.verify,
        work=(args.work or bench_dir() / "work").resolve(),
        output=(args.output or default_output).resolve(),
        json_path=(args.json or results / f"bench-{'smoke-' if args.smoke else ''}{stamp}.json").resolve(),
        keep_databases=args.keep_databases,
    )


def chosen_tools(plan: Plan, registry: dict[str, Tool]) -> dict[str, Tool]:
    """The tools some phase of this plan runs (only their venvs are set up)."""
    names = [*(plan.tools if plan.scales else []), *(plan.scale_tools if len(plan.scales) > 1 else [])]
    names += plan.compile_tools if plan.compile_models else []
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; known: {sorted(registry)}")
    missing_compile = [n for n in plan.compile_tools if registry[n].compile_command is None]
    if missing_compile:
        raise SystemExit(f"no compile command for {missing_compile}")
    if plan.help_runs and all(registry[n].flavour != "sqlorch" for n in names):
        names.append("sqlorch")  # the --help phase times every sqlorch environment in the plan
    return {n: registry[n] for n in dict.fromkeys(names)}


# ----------------------------------------------------------------------------- facts about the run


def proc_lines(name: str) -> list[str]:
    path = Path("/proc") / name
    return path.read_text().splitlines() if path.exists() else []


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model: the figures only mean something next to these."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    memory = [line for line in proc_lines("meminfo") if line.startswith("MemTotal:")]
    if memory:
        info["memory_gib"] = round(int(memory[0].split()[1]) / 1024 / 1024, 1)
    cpus = [line for line in proc_lines("cpuinfo") if line.startswith("model name")]
    if cpus:
        info["cpu"] = cpus[0].split(":", 1)[1].strip()
    return info


def package_versions(tool: Tool) -> dict[str, str]:
    """Versions as the tool's own interpreter sees them (each tool has its own venv)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    python = tool.bin / "python"
    if not python.exists():
        return {name: "not set up" for name in tool.packages}
    res = subprocess.run([str(python), "-c", code, *tool.packages], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(res.stdout)
    return versions


def git_revision() -> str:
    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return res.stdout.strip() if res.returncode == 0 else ""

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + (" + uncommitted changes" if git("status", "--porcelain", "--", "sqlorch", "bench") else "")


def command_string(argv: list[str]) -> str:
    entry = os.environ.get("SQLORCH_BENCH_ENTRY") or f"python {Path(sys.argv[0]).as_posix()}"
    return " ".join([entry, *(shlex.quote(a) for a in argv)]).strip()


# ----------------------------------------------------------------------------- phases


def run_builds(plan: Plan, tools: dict[str, Tool], results: dict[str, Any], save: Callable[[], None]) -> None:
    for i, events in enumerate(plan.scales):
        names = plan.tools if i == 0 else plan.scale_tools
        scale = Scale(events, delta_events=plan.delta_events)
        print(
            f"\n== builds: {events:,} events, delta {plan.delta_events:,} events; {', '.join(names)}; "
            f"{plan.runs} run(s), interleaved",
            flush=True,
        )
        block = run_interleaved(
            [tools[n] for n in names],
            scale,
            plan.runs,
            plan.verify,
            work_root=plan.work,
            keep_databases=plan.keep_databases,
        )
        results["builds"].append(block.as_dict())
        save()


def clear_caches(tool: Tool, project: Path) -> None:
    for relative in tool.compile_caches:
        path = project / relative
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def run_compile(plan: Plan, tools: dict[str, Tool], results: dict[str, Any], save: Callable[[], None]) -> None:
    """Per model count: each tool's generated project, cold (caches removed) then warm, interleaved."""
    env = {**os.environ, **QUIET_ENV}
    for n in plan.compile_models:
        names = plan.compile_tools
        print(f"\n== compile: {n:,} models; {', '.join(names)}; {plan.compile_runs} run(s)", flush=True)
        projects = {}
        for name in names:
            flavour = tools[name].flavour or name
            projects[name] = plan.work / f"compile-{flavour}-{n}"
            generate(projects[name], n, flavour=flavour)
        measurements: list[Measurement] = []
        for r in range(1, plan.compile_runs + 1):
            order = names[(r - 1) % len(names) :] + names[: (r - 1) % len(names)]
            for name in order:
                tool, project = tools[name], projects[name]
                clear_caches(tool, project)
                for scenario in ("cold", "warm"):
                    argv = [p.format(bin=tool.bin, project=project) for p in tool.compile_command or []]
                    log = plan.work / "logs" / f"compile-{name}-{n}-run{r}-{scenario}.log"
                    m = measure(name, scenario, r, argv, env, project, log)
                    measurements.append(m)
                    print_measurement(tool, m)
        commands = {name: tools[name].compile_command for name in names}
        results["compile"].append(
            {"models": n, "tools": names, "commands": commands, "measurements": [asdict(m) for m in measurements]}
        )
        save()


def measure(
    tool: str, scenario: str, run: int, argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Measurement:
    load = os.getloadavg()[0]
    use = run_measured(argv, env, cwd, log)
    return Measurement(
        tool, scenario, run, use.seconds, use.peak_rss_mb, use.returncode, str(log), use.cpu_seconds, load
    )


def run_help(plan: Plan, tools: dict[str, Tool], results: dict[str, Any], save: Callable[[], None]) -> None:
    """`sqlorch --help` of every sqlorch environment: one untimed run first (disk cache), then N."""
    env = {**os.environ, **QUIET_ENV}
    names = [n for n, t in tools.items() if t.flavour == "sqlorch"]
    print(f"\n== sqlorch --help; {', '.join(names)}; {plan.help_runs} run(s)", flush=True)
    for name in names:
        argv = [str(tools[name].bin / "sqlorch"), "--help"]
        log = plan.work / "logs" / f"help-{name}.log"
        run_measured(argv, env, plan.work, log)
        for r in range(1, plan.help_runs + 1):
            m = measure(name, "help", r, argv, env, plan.work, log)
            results["help"].append(asdict(m))
            if r == plan.help_runs or m.returncode != 0:
                print_measurement(tools[name], m)
    save()


def venvs_needed(tools: dict[str, Tool]) -> list[str]:
    return list(dict.fromkeys(v for t in tools.values() for v in t.venvs))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = build_plan(args)
    registry = peers.tool_registry(args.sqlorch_bin)
    tools = chosen_tools(plan, registry)
    if not args.skip_setup:
        peers.setup(venvs_needed(tools))
    compile_bytecode()  # as installed: no timed build compiles sqlorch's modules first (bytecode.py)
    plan.work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {
        "schema": 1,
        "command": command_string(argv),
        "smoke": plan.smoke,
        "started": started.isoformat(timespec="seconds"),
        "machine": {**machine(), "load_at_start": os.getloadavg()[0]},
        "sqlorch_revision": git_revision(),
        "versions": {name: package_versions(tool) for name, tool in tools.items()},
        "tool_info": {name: {"flavour": tool.flavour, "notes": tool.notes} for name, tool in tools.items()},
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
        "builds": [],
        "compile": [],
        "help": [],
    }

    def save() -> None:
        results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        results["machine"]["load_at_end"] = os.getloadavg()[0]
        plan.json_path.parent.mkdir(parents=True, exist_ok=True)
        plan.json_path.write_text(json.dumps(results, indent=1))

    save()
    if plan.scales and plan.tools:
        run_builds(plan, tools, results, save)
    if plan.compile_models and plan.compile_tools:
        run_compile(plan, tools, results, save)
    if plan.help_runs:
        run_help(plan, tools, results, save)
    save()
    report.write(results, plan.output, plan.json_path)
    print(f"\nresults: {plan.json_path}\nreport:  {plan.output}")
    return 0 if report.healthy(results) else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="small presets for CI (defaults below marked smoke:)")
    p.add_argument(
        "--scales",
        help=f"events per scale, comma-separated; the first is the reference "
        f"(full: {FULL['scales']}; smoke: {SMOKE['scales']}); empty: no builds",
    )
    p.add_argument("--runs", type=int, help="repetitions; medians are reported (full: 3; smoke: 1)")
    p.add_argument("--tools", help=f"tools at the first scale (full: {FULL['tools']}; smoke: {SMOKE['tools']})")
    p.add_argument("--scale-tools", help="tools at the other scales (default: sqlorch)")
    p.add_argument("--delta-events", type=int, help="new events per delta (default: 0.1%% of the first scale)")
    p.add_argument(
        "--compile-models",
        help=f"model counts (full: {FULL['compile_models']}; smoke: {SMOKE['compile_models']}); empty: skip",
    )
    p.add_argument("--compile-tools", help=f"full: {FULL['compile_tools']}; smoke: {SMOKE['compile_tools']}")
    p.add_argument("--compile-runs", type=int, help="repetitions of the compile benchmark (default: --runs)")
    p.add_argument("--help-runs", type=int, help="timed `sqlorch --help` runs (full: 10; smoke: 3); 0: skip")
    p.add_argument(
        "--verify",
        choices=("first", "all", "none"),
        default="first",
        help="compare tables after the builds of the first run (default), every run, or never",
    )
    p.add_argument(
        "--output", type=Path, help="the Markdown report (full: bench/RESULTS.md; smoke: <bench dir>/results/SMOKE.md)"
    )
    p.add_argument("--json", type=Path, help="the results JSON (default: <bench dir>/results/bench-*.json)")
    p.add_argument("--work", type=Path, help="work folders of the runs (default: <bench dir>/work)")
    p.add_argument("--keep-databases", action="store_true", help="keep each run's DuckDB files")
    p.add_argument("--skip-setup", action="store_true", help="do not check or create the venvs")
    p.add_argument(
        "--sqlorch-bin",
        type=Path,
        default=None,
        help="folder holding the sqlorch executable and its python (default: this python's)",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
