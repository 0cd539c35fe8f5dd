"""Turn the results JSON of `bench/run` into bench/RESULTS.md: targets, tables, versions, machine.

    python bench/report.py .bench/results/bench-20261124-220000.json --output bench/RESULTS.md

Every verdict is computed here from the measurements (MET / NOT MET / NOT MEASURED),
never written by hand. Ratios between two builds are taken within one repetition (the
tools run interleaved, so both saw the same machine) and the median over repetitions is
reported; single figures are medians of the repetitions, peak memory is the maximum.
A verdict measured at another scale than the target's (the CI smoke) says so.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Result = dict[str, Any]  # one Measurement as the JSON holds it

# The targets of issue 5. The rows-read multiple is ours: "a small multiple of rows changed".
TARGET_EVENTS = 10_000_000
TARGET_LARGE_EVENTS = 50_000_000
DELTA_VS_FULL = 10.0  # the delta build at least this much faster than sqlorch's own --full-refresh
SCALING_LIMIT = 1.5  # delta at 50M over delta at 10M, same delta size
ROWS_READ_MULTIPLE = 10.0  # rows read by the delta build over rows changed by the delta
NOOP_SECONDS = 0.5
TARGET_MODELS = 10_000
COMPILE_COLD_SECONDS = 10.0
COMPILE_WARM_SECONDS = 1.0
COMPILE_MEMORY_MB = 1024.0
HELP_SECONDS = 0.3


@dataclass
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured
    note: str = ""  # e.g. measured at another scale than the target's

    @property
    def word(self) -> str:
        return "NOT MEASURED" if self.met is None else ("MET" if self.met else "NOT MET")


# ----------------------------------------------------------------------------- reading the results


def ok(ms: list[Result], tool: str, scenario: str) -> list[Result]:
    return [m for m in ms if m["tool"] == tool and m["scenario"] == scenario and m["returncode"] == 0]


def failed(ms: list[Result], tool: str, scenario: str) -> bool:
    return any(m["tool"] == tool and m["scenario"] == scenario and m["returncode"] != 0 for m in ms)


def median_of(ms: list[Result], tool: str, scenario: str, key: str = "seconds") -> float | None:
    values = [m[key] for m in ok(ms, tool, scenario) if m.get(key) is not None]
    return statistics.median(values) if values else None


def peak(ms: list[Result], tool: str, scenarios: tuple[str, ...]) -> float | None:
    values = [m["peak_rss_mb"] for s in scenarios for m in ok(ms, tool, s)]
    return max(values) if values else None


def run_ratios(ms: list[Result], num: tuple[str, str], den: tuple[str, str]) -> list[float]:
    """num/den of the wall times, per repetition where both succeeded."""
    top = {m["run"]: m["seconds"] for m in ok(ms, *num)}
    bottom = {m["run"]: m["seconds"] for m in ok(ms, *den)}
    return [top[r] / bottom[r] for r in sorted(top) if r in bottom and bottom[r] > 0]


def flavour(results: Result, tool: str) -> str:
    return str(results.get("tool_info", {}).get(tool, {}).get("flavour") or tool)


def sqlorch_tools(results: Result, names: list[str]) -> list[str]:
    return [n for n in names if flavour(results, n) == "sqlorch"]


def peer_tools(results: Result, names: list[str]) -> list[str]:
    return [n for n in names if flavour(results, n) in ("dbt", "sqlmesh")]


def label(results: Result, tool: str) -> str:
    duckdb = results.get("versions", {}).get(tool, {}).get("duckdb")
    return f"{tool} (DuckDB {duckdb})" if duckdb else tool


def wrong_after(block: Result, tool: str, scenario: str) -> dict[str, Any] | None:
    """Models that differ from the from-scratch evaluation; None when not verified."""
    checks = [c for c in block["checks"] if c["tool"] == tool and c["scenario"] == scenario]
    if not checks:
        return None
    return {model: info for c in checks for model, info in c["wrong"].items()}


def rows_changed(block: Result, tool: str) -> int | None:
    deltas = [d for d in block.get("deltas", []) if d["tool"] == tool]
    return int(deltas[0]["new_events"]) + int(deltas[0]["updated_users"]) if deltas else None


def events_text(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def scale_note(measured: int, target: int, unit: str) -> str:
    if measured == target:
        return ""
    return f"measured at {events_text(measured)} {unit}; the target is set at {events_text(target)}"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def fmt_x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def fmt_runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}x" for v in values)


# ----------------------------------------------------------------------------- targets


def delta_targets(results: Result) -> list[Verdict]:
    """At the first scale: delta vs own full refresh, vs the peers' incremental runs, exactness."""
    if not results["builds"]:
        return [Verdict(f"delta build at {events_text(TARGET_EVENTS)} events", "no builds run", None)]
    block = results["builds"][0]
    ms, note = block["measurements"], scale_note(block["events"], TARGET_EVENTS, "events")
    verdicts: list[Verdict] = []
    for tool in sqlorch_tools(results, block["tools"]):
        name = label(results, tool)
        ratios = run_ratios(ms, (tool, "full"), (tool, "delta"))
        verdicts.append(
            ratio_verdict(
                f"{name}: delta build ≥ {DELTA_VS_FULL:g}x faster than its own --full-refresh",
                ratios,
                lambda r: r >= DELTA_VS_FULL,
                f"delta {fmt_s(median_of(ms, tool, 'delta'))}, full refresh {fmt_s(median_of(ms, tool, 'full'))}",
                note,
                failed(ms, tool, "delta") or failed(ms, tool, "full"),
            )
        )
        for peer in peer_tools(results, block["tools"]):
            ratios = run_ratios(ms, (peer, "delta"), (tool, "delta"))
            wrong = wrong_after(block, peer, "delta")
            peer_state = (
                (
                    f"; {peer} is WRONG after the delta ({', '.join(sorted(wrong))}): "
                    f"its time is not that of a correct result"
                )
                if wrong
                else ""
            )
            verdicts.append(
                ratio_verdict(
                    f"{name}: delta build faster than the incremental run of {label(results, peer)}",
                    ratios,
                    lambda r: r > 1.0,
                    f"{tool} {fmt_s(median_of(ms, tool, 'delta'))}, {peer} {fmt_s(median_of(ms, peer, 'delta'))}"
                    f"{peer_state}",
                    note,
                    failed(ms, tool, "delta") or failed(ms, peer, "delta"),
                )
            )
        verdicts.append(exact_verdict(block, tool, name, note))
    return verdicts


def ratio_verdict(
    target: str, ratios: list[float], test: Callable[[float], bool], detail: str, note: str, broken: bool
) -> Verdict:
    if broken:
        return Verdict(target, "a command failed", False, note)
    if not ratios:
        return Verdict(target, "not run", None, note)
    median = statistics.median(ratios)
    runs = f" (per run: {fmt_runs(ratios)})" if len(ratios) > 1 else ""
    return Verdict(target, f"{fmt_x(median)}{runs}; {detail}", test(median), note)


def exact_verdict(block: Result, tool: str, name: str, note: str) -> Verdict:
    target = f"{name}: exact after the delta (every table equals a from-scratch evaluation)"
    wrong = wrong_after(block, tool, "delta")
    if wrong is None:
        return Verdict(target, "not verified", None, note)
    if not wrong:
        return Verdict(target, "all tables match", True, note)
    return Verdict(target, "wrong: " + describe_wrong(wrong), False, note)


def describe_wrong(wrong: dict[str, Any]) -> str:
    return "; ".join(
        f"{model} {info['status']} ({info['missing_rows']:,} missing, {info['extra_rows']:,} extra "
        f"of {info['expected_rows']:,})"
        for model, info in sorted(wrong.items())
    )


def scaling_targets(results: Result) -> list[Verdict]:
    """The largest scale against the first: the delta's time and its rows read."""
    builds = results["builds"]
    if len(builds) < 2:
        return [
            Verdict(
                f"delta at {events_text(TARGET_LARGE_EVENTS)} ≤ {SCALING_LIMIT:g}x its time at "
                f"{events_text(TARGET_EVENTS)}",
                "only one scale run",
                None,
            )
        ]
    ref, large = builds[0], max(builds[1:], key=lambda b: b["events"])
    note = ""
    if (ref["events"], large["events"]) != (TARGET_EVENTS, TARGET_LARGE_EVENTS):
        note = (
            f"measured at {events_text(large['events'])} vs {events_text(ref['events'])}; the target is set "
            f"at {events_text(TARGET_LARGE_EVENTS)} vs {events_text(TARGET_EVENTS)}"
        )
    verdicts = []
    for tool in sqlorch_tools(results, [t for t in large["tools"] if t in ref["tools"]]):
        name = label(results, tool)
        small_s = median_of(ref["measurements"], tool, "delta")
        large_s = median_of(large["measurements"], tool, "delta")
        target = (
            f"{name}: delta build at {events_text(large['events'])} events ≤ {SCALING_LIMIT:g}x its time at "
            f"{events_text(ref['events'])} (same delta size)"
        )
        if small_s is None or large_s is None:
            verdicts.append(
                Verdict(target, "a delta build failed or was not run", False if large_s is None else None, note)
            )
        else:
            ratio = large_s / small_s
            verdicts.append(
                Verdict(target, f"{fmt_x(ratio)}: {fmt_s(large_s)} vs {fmt_s(small_s)}", ratio <= SCALING_LIMIT, note)
            )
        verdicts.append(rows_read_verdict(results, large, ref, tool, note))
    return verdicts


def rows_read_verdict(results: Result, large: Result, ref: Result, tool: str, note: str) -> Verdict:
    target = (
        f"{label(results, tool)}: rows read by the delta build at {events_text(large['events'])} within "
        f"{ROWS_READ_MULTIPLE:g}x the rows the delta changed"
    )
    read = median_of(large["measurements"], tool, "delta", "rows_read")
    changed = rows_changed(large, tool)
    if read is None or not changed:
        return Verdict(target, "not measured (no profile log)", None, note)
    ref_read = median_of(ref["measurements"], tool, "delta", "rows_read")
    growth = f"; at {events_text(ref['events'])}: {ref_read:,.0f} rows read" if ref_read is not None else ""
    measured = f"{read / changed:,.0f}x: {read:,.0f} rows read for {changed:,} rows changed{growth}"
    return Verdict(target, measured, read <= ROWS_READ_MULTIPLE * changed, note)


def noop_targets(results: Result) -> list[Verdict]:
    if not results["builds"]:
        return []
    block = results["builds"][0]
    ms, note = block["measurements"], scale_note(block["events"], TARGET_EVENTS, "events")
    verdicts = []
    for tool in sqlorch_tools(results, block["tools"]):
        name = label(results, tool)
        seconds = median_of(ms, tool, "noop")
        target = f"{name}: no-op build < {NOOP_SECONDS:g} s"
        if seconds is None:
            verdicts.append(
                Verdict(
                    target,
                    "failed" if failed(ms, tool, "noop") else "not run",
                    False if failed(ms, tool, "noop") else None,
                    note,
                )
            )
        else:
            verdicts.append(Verdict(target, fmt_s(seconds), seconds < NOOP_SECONDS, note))
        for peer in peer_tools(results, block["tools"]):
            verdicts.append(
                ratio_verdict(
                    f"{name}: no-op build faster than the no-op run of {label(results, peer)}",
                    run_ratios(ms, (peer, "noop"), (tool, "noop")),
                    lambda r: r > 1.0,
                    f"{tool} {fmt_s(seconds)}, {peer} {fmt_s(median_of(ms, peer, 'noop'))}",
                    note,
                    failed(ms, tool, "noop") or failed(ms, peer, "noop"),
                )
            )
    return verdicts


def compile_targets(results: Result) -> list[Verdict]:
    blocks = results["compile"]
    if not blocks:
        return [Verdict(f"`sqlorch compile` of {TARGET_MODELS:,} models", "compile benchmark not run", None)]
    block = max(blocks, key=lambda b: b["models"])
    ms, n = block["measurements"], block["models"]
    note = "" if n == TARGET_MODELS else f"measured at {n:,} models; the target is set at {TARGET_MODELS:,}"
    verdicts = []
    tools = sqlorch_tools(results, block["tools"])
    for tool in tools:
        cold, warm = median_of(ms, tool, "cold"), median_of(ms, tool, "warm")
        memory = peak(ms, tool, ("cold", "warm"))
        broken = failed(ms, tool, "cold") or failed(ms, tool, "warm")
        name = f"`{tool} compile`" if len(tools) > 1 else "`sqlorch compile`"
        for what, value, limit, text in (
            (f"cold < {COMPILE_COLD_SECONDS:g} s", cold, COMPILE_COLD_SECONDS, fmt_s(cold)),
            (f"warm < {COMPILE_WARM_SECONDS:g} s", warm, COMPILE_WARM_SECONDS, fmt_s(warm)),
            (
                f"peak memory < {COMPILE_MEMORY_MB:,.0f} MB",
                memory,
                COMPILE_MEMORY_MB,
                "-" if memory is None else f"{memory:,.0f} MB",
            ),
        ):
            met = False if broken else (None if value is None else value < limit)
            verdicts.append(Verdict(f"{name} of {n:,} models, {what}", "failed" if broken else text, met, note))
    return verdicts


def help_targets(results: Result) -> list[Verdict]:
    ms = results["help"]
    tools = list(dict.fromkeys(m["tool"] for m in ms))
    if not tools:
        return [Verdict(f"sqlorch --help < {HELP_SECONDS:g} s", "not run", None)]
    verdicts = []
    for tool in tools:
        seconds = median_of(ms, tool, "help")
        target = f"{label(results, tool)}: `sqlorch --help` < {HELP_SECONDS:g} s"
        met = False if failed(ms, tool, "help") or seconds is None else seconds < HELP_SECONDS
        verdicts.append(Verdict(target, fmt_s(seconds), met))
    return verdicts


def all_targets(results: Result) -> list[Verdict]:
    return [
        *delta_targets(results),
        *scaling_targets(results),
        *noop_targets(results),
        *compile_targets(results),
        *help_targets(results),
    ]


# ----------------------------------------------------------------------------- tables


def cell(ms: list[Result], tool: str, scenario: str) -> str:
    """Median wall [min-max] · peak MB, or why there is no figure."""
    runs = ok(ms, tool, scenario)
    if not runs:
        return "failed" if failed(ms, tool, scenario) else "-"
    seconds = sorted(m["seconds"] for m in runs)
    spread = f" [{seconds[0]:.2f}-{seconds[-1]:.2f}]" if len(seconds) > 1 else ""
    failures = " (+failed)" if failed(ms, tool, scenario) else ""
    return f"{statistics.median(seconds):.2f} s{spread} · {max(m['peak_rss_mb'] for m in runs):,.0f} MB{failures}"


def exact_cell(block: Result, tool: str) -> str:
    wrong = wrong_after(block, tool, "delta")
    if wrong is None:
        return "not verified"
    return "exact" if not wrong else "**WRONG**: " + describe_wrong(wrong)


def build_section(results: Result, block: Result) -> list[str]:
    ms = block["measurements"]
    deltas = [d for d in block.get("deltas", []) if d["run"] == 1][:1]
    delta = (
        (
            f"; the delta: {deltas[0]['new_events']:,} new events ({deltas[0]['late_events']:,} late), "
            f"{deltas[0]['updated_users']:,} users changed plan"
        )
        if deltas
        else ""
    )
    lines = [
        f"## Builds at {block['events']:,} events",
        "",
        f"{block['users']:,} users, seed {block['seed']}, {block['runs']} run(s), tools interleaved{delta}. "
        "Wall time median [min-max] · peak RSS of the largest process.",
        "",
        "| tool | cold | no-op | delta | full refresh | after the delta |",
        "|---|---|---|---|---|---|",
    ]
    for tool in block["tools"]:
        cells = " | ".join(cell(ms, tool, s) for s in ("cold", "noop", "delta", "full"))
        lines.append(f"| {label(results, tool)} | {cells} | {exact_cell(block, tool)} |")
    lines += ["", *ratio_table(results, block), *rows_read_table(results, block)]
    return lines


def ratio_table(results: Result, block: Result) -> list[str]:
    """Per repetition: the ratios the targets use, each taken within that repetition."""
    ms, rows = block["measurements"], []
    for tool in sqlorch_tools(results, block["tools"]):
        rows.append((f"{tool} full refresh / {tool} delta", (tool, "full"), (tool, "delta")))
        for peer in peer_tools(results, block["tools"]):
            rows.append((f"{peer} delta / {tool} delta", (peer, "delta"), (tool, "delta")))
            rows.append((f"{peer} no-op / {tool} no-op", (peer, "noop"), (tool, "noop")))
    if not rows:
        return []
    runs = range(1, block["runs"] + 1)
    lines = [
        "Ratios of wall times within each run (above 1: the sqlorch build is faster):",
        "",
        "| ratio | " + " | ".join(f"run {r}" for r in runs) + " | median |",
        "|---|" + "---|" * (len(runs) + 1),
    ]
    for name, num, den in rows:
        top = {m["run"]: m["seconds"] for m in ok(ms, *num)}
        bottom = {m["run"]: m["seconds"] for m in ok(ms, *den)}
        values = [fmt_x(top[r] / bottom[r]) if r in top and bottom.get(r) else "-" for r in runs]
        ratios = run_ratios(ms, num, den)
        median = fmt_x(statistics.median(ratios)) if ratios else "-"
        lines.append(f"| {name} | " + " | ".join(values) + f" | {median} |")
    return [*lines, ""]


def rows_read_table(results: Result, block: Result) -> list[str]:
    """DuckDB's rows scanned per build: the machine-independent figure."""
    ms, tools = block["measurements"], sqlorch_tools(results, block["tools"])
    tools = [t for t in tools if median_of(ms, t, "delta", "rows_read") is not None]
    if not tools:
        return []
    lines = [
        "Rows read (DuckDB profile: rows scanned by every statement of the build, median of runs):",
        "",
        "| tool | cold | no-op | delta | full refresh | full / delta | rows changed by the delta | "
        "delta rows read / rows changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        figures = [median_of(ms, tool, s, "rows_read") for s in ("cold", "noop", "delta", "full")]
        delta, full, changed = figures[2], figures[3], rows_changed(block, tool)
        ratio = fmt_x(full / delta) if full is not None and delta else "-"
        per_change = f"{delta / changed:,.0f}x" if delta is not None and changed else "-"
        cells = " | ".join("-" if f is None else f"{f:,.0f}" for f in figures)
        lines.append(f"| {label(results, tool)} | {cells} | {ratio} | {changed or '-':,} | {per_change} |")
    lines += ["", *top_statements(results, block, tools[0])]
    return lines


def top_statements(results: Result, block: Result, tool: str) -> list[str]:
    first = [m for m in ok(block["measurements"], tool, "delta") if m.get("top_statements")][:1]
    if not first:
        return []
    lines = [f"Where the rows of {label(results, tool)}'s delta build go (run {first[0]['run']}, largest readers):", ""]
    lines += [f"- {rows:,}: `{sql[:120].replace('`', chr(39))}`" for rows, sql in first[0]["top_statements"]]
    return [*lines, ""]


def correctness_section(results: Result) -> list[str]:
    if not results["builds"]:
        return []
    lines = [
        "## Correctness",
        "",
        "After the cold, delta and full builds of the first run every model table is compared with a "
        "from-scratch evaluation of the plain SQL over the same sources (bench/verify.py, `EXCEPT ALL` both "
        "ways). A tool that is wrong is reported as wrong, whatever its time.",
        "",
    ]
    any_wrong = False
    for block in results["builds"]:
        for check in block["checks"]:
            if not check["ok"]:
                any_wrong = True
                lines.append(
                    f"- {events_text(block['events'])} events, {label(results, check['tool'])} after "
                    f"{check['scenario']} (run {check['run']}): {describe_wrong(check['wrong'])}"
                )
    if not any_wrong:
        lines.append("Every verified table of every tool matched.")
    return [*lines, ""]


def compile_section(results: Result) -> list[str]:
    if not results["compile"]:
        return []
    lines = [
        "## Compile / parse of generated projects",
        "",
        "The same layered project (bench/compile_project.py: 40% staging models on declared sources, 35% "
        "joins, 25% aggregates) written for each tool. Cold: the tool's caches removed first; warm: "
        "nothing changed since the previous run. Wall time of a fresh process, median [min-max] · peak RSS.",
        "",
        "| models | tool | command | cold | warm |",
        "|---|---|---|---|---|",
    ]
    for block in results["compile"]:
        ms = block["measurements"]
        for tool in block["tools"]:
            argv = block["commands"].get(tool) or []
            command = " ".join(argv).replace("{bin}/", "").replace("{project}", "<project>")
            lines.append(
                f"| {block['models']:,} | {label(results, tool)} | `{command}` | {cell(ms, tool, 'cold')} | "
                f"{cell(ms, tool, 'warm')} |"
            )
    return [*lines, ""]


def help_section(results: Result) -> list[str]:
    ms = results["help"]
    tools = list(dict.fromkeys(m["tool"] for m in ms))
    if not tools:
        return []
    lines = ["## `sqlorch --help`", "", "| tool | runs | median [min-max] · peak RSS |", "|---|---|---|"]
    lines += [f"| {label(results, t)} | {len(ok(ms, t, 'help'))} | {cell(ms, t, 'help')} |" for t in tools]
    return [*lines, ""]


# What stands between a target and sqlorch, from profiling it (bench/README.md): shown for the
# targets a run finds NOT MET, so the page says why as well as by how much.
KNOWN_CAUSES: list[tuple[str, str]] = [
    (
        "faster than its own --full-refresh",
        "`marts.revenue_by_plan` (stg_events JOIN users GROUP BY day, plan, with COUNT(DISTINCT user_id)): the "
        "0.1% of users who change plan have events on every day, so every (day, plan) group is affected and is "
        "recomputed from all events: the delta costs what a rebuild of that model costs. Making it follow the "
        "delta needs differential maintenance of the join and the aggregates (subtract the old contribution, add "
        "the new; COUNT(DISTINCT) through per-group multiplicities): not built. `marts.sessions` reads only the "
        "affected users' events (the key filter is pushed below the windows) but still scans the user_id column "
        "of every event to find them.",
    ),
    (
        "faster than the incremental run of",
        "On DuckDB 1.5.6 the delta build spends about 7 s (0.8 + 0.2 s on DuckDB 2.0) in two statements of "
        "`marts.sessions` that find the stored rows of the affected keys with a NULL-safe EXISTS (`IS NOT "
        "DISTINCT FROM`): 1.5 plans them far more slowly. The peer it loses to is WRONG after this delta.",
    ),
    (
        "its time at",
        "The same two models: `revenue_by_plan` is recomputed from every event and `sessions` scans every "
        "event's user_id and every stored session to find the affected users' rows, so both grow with the table.",
    ),
    (
        "rows read by the delta build",
        "Rows read are dominated by `revenue_by_plan` (every event, joined) and by the scans that find the "
        "affected users' rows in `stg_events` and `sessions`; see the per-statement list above.",
    ),
    (
        "no-op build <",
        "What remains is fixed cost: the interpreter and imports (sqlglot ~0.13 s, typer, yaml, the DuckDB "
        "extension module), opening the database, one catalog query, one state query, one query per source "
        "(`max(cursor)` or a fingerprint of the keyed source: a scan of its 200k rows) and the run history.",
    ),
    (
        "cold <",
        "A cold compile parses, qualifies and types every column of every model with sqlglot (about 2.5 ms a "
        "model in Python on this machine, with sqlglotc); 10,000 models are ~3x over. The parts are in "
        "bench/COMPILE.md. Splitting the work over processes needs each model's inputs' columns first, and "
        "the generated project is one long dependency chain.",
    ),
]


def targets_section(verdicts: list[Verdict]) -> list[str]:
    lines = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for v in verdicts:
        note = f" ({v.note})" if v.note else ""
        lines.append(f"| {v.target} | {v.measured}{note} | **{v.word}** |")
    causes = [(v.target, why) for v in verdicts if v.met is False for key, why in KNOWN_CAUSES if key in v.target]
    if causes:
        lines += ["", "### Why the targets not met are not met", ""]
        seen: set[str] = set()
        for target, why in causes:
            lines.append(f"- **{target}**: {why}" if why not in seen else f"- **{target}**: as above.")
            seen.add(why)
    return [*lines, ""]


def header(results: Result, json_path: Path | None) -> list[str]:
    m = results["machine"]
    smoke = (
        [
            "",
            "**Smoke run** (CI): small data, one repetition; the figures check that the benchmark works, "
            "they do not measure the targets.",
            "",
        ]
        if results.get("smoke")
        else [""]
    )
    lines = [
        "# Benchmark results",
        *smoke,
        "Written by `bench/run` from the measurements; do not edit by hand, run the command again.",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['started']} to {results.get('finished', '?')} (UTC)",
        f"- Machine: {m.get('cores')} cores ({m.get('cpu', 'unknown CPU')}), {m.get('memory_gib', '?')} GiB memory, "
        f"{m.get('platform')}, Python {m.get('python')}; 1-minute load average {m.get('load_at_start', 0):.1f} at "
        f"the start, {m.get('load_at_end', 0):.1f} at the end (the machine is shared: wall times are noisy, "
        "ratios within one run and rows read much less so)",
        f"- sqlorch revision: {results.get('sqlorch_revision', '?')}",
    ]
    if json_path is not None:
        lines.append(f"- Results JSON: `{shown_path(json_path)}` (`python bench/report.py <it>` rewrites this page)")
    return [*lines, ""]


def shown_path(path: Path) -> str:
    """Inside the repository, the path from its root: the page should not name one machine's folders."""
    repo = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(repo))
    except ValueError:
        return str(path)


def versions_section(results: Result) -> list[str]:
    lines = ["## Tool versions", "", "| tool | packages | what it runs |", "|---|---|---|"]
    for tool, packages in results.get("versions", {}).items():
        text = ", ".join(f"{k} {v}" for k, v in packages.items())
        notes = results.get("tool_info", {}).get(tool, {}).get("notes", "")
        lines.append(f"| {tool} | {text} | {notes} |")
    return [*lines, ""]


METHOD = """\
## How it is measured

- Each build is a fresh subprocess: wall clock from start to exit; peak RSS is `ru_maxrss` of the
  largest single process of the command's tree (from `wait4`). Medians over the runs; memory is the
  maximum.
- Per run every tool starts from a fresh copy of the same generated raw database (bench/datagen.py,
  a year of 2024, 200k users) and of its project, then: cold build, no-op build, the delta
  (bench/delta.py: new events, 95% on the next day and 5% up to 3 days late, all with a newer
  `_loaded_at`; 0.1% of users change plan), the build after the delta, and a full refresh
  (`sqlorch build --full-refresh`, `dbt run --full-refresh`; SQLMesh has none in this setup). Every
  scenario runs for every tool before the next starts, and the tool order rotates per run.
- The delta has the same number of new events at every scale, so the larger scale shows what the
  table size alone costs.
- Rows read: sqlorch's DuckDB target writes DuckDB's JSON profile of every statement it runs
  (profiles.yml `profile_log:`); the report sums the rows scanned over the build
  (`query.total_rows_scanned` on DuckDB 2.x, `cumulative_rows_scanned` on 1.5). The peers expose no
  such hook, so only sqlorch has this figure. "Rows changed" is new events plus changed users.
- sqlorch runs twice: on DuckDB 2.x (its own environment) and on DuckDB 1.5.6, the release both
  peers are pinned to, so the comparison with the peers is also made on the same engine.
- Compile: `sqlorch compile` (parses, qualifies and types every column of every model; cold without
  `target/`), `dbt parse` (cold without `target/partial_parse.msgpack`, warm with it; dbt does not
  parse the SQL itself), `sqlmesh dag <file>` (the cheapest SQLMesh command that loads and parses
  every model without touching a warehouse; cold without `.cache/`).
"""


def render(results: Result, json_path: Path | None = None) -> str:
    lines = [*header(results, json_path), *targets_section(all_targets(results))]
    for block in results["builds"]:
        lines += build_section(results, block)
    lines += [
        *correctness_section(results),
        *compile_section(results),
        *help_section(results),
        *versions_section(results),
        METHOD,
    ]
    return "\n".join(lines).rstrip() + "\n"


# Sections other scripts write (docs_bench, tpch, spikes, idle_tick, ...) and hand-written
# ones, each between its own `<!-- name:start -->` and `<!-- name:end -->`.
MARKED = re.compile(r"<!-- ([\w:.-]+):start -->.*?<!-- \1:end -->", re.S)


def marked_sections(text: str) -> list[str]:
    return [found.group(0) for found in MARKED.finditer(text)]


def replace_section(output: Path, section: str) -> None:
    """Put ``section`` (its markers included) where the section with the same markers is,
    or at the end of the page: how each benchmark script writes its own part of it."""
    found = MARKED.match(section.strip())
    assert found is not None, "a section starts and ends with its markers"
    old = output.read_text() if output.exists() else ""
    start, end = f"<!-- {found.group(1)}:start -->", f"<!-- {found.group(1)}:end -->"
    if start in old and end in old:
        text = old.split(start, 1)[0] + section.strip() + old.split(end, 1)[1]
    else:
        text = old.rstrip("\n") + "\n\n" + section.strip() + "\n"
    output.write_text(text)


def write(results: Result, output: Path, json_path: Path | None = None) -> None:
    """Write the page; every marked section of the old page stays, in its order."""
    output.parent.mkdir(parents=True, exist_ok=True)
    text = render(results, json_path)
    old = output.read_text() if output.exists() else ""
    kept = marked_sections(old)
    if kept:
        text += "\n" + "\n\n".join(kept) + "\n"
    output.write_text(text)


def healthy(results: Result) -> bool:
    """Every command ran and sqlorch was exact wherever it was verified (a peer may be wrong)."""
    measurements = [m for b in results["builds"] for m in b["measurements"]]
    measurements += [m for b in results["compile"] for m in b["measurements"]] + results["help"]
    sqlorch_wrong = [
        c for b in results["builds"] for c in b["checks"] if not c["ok"] and flavour(results, c["tool"]) == "sqlorch"
    ]
    return all(m["returncode"] == 0 for m in measurements) and not sqlorch_wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results JSON written by bench/run")
    parser.add_argument("--output", type=Path, default=None, help="Markdown file (default: print it)")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    if args.output is None:
        print(render(results, args.results), end="")
    else:
        write(results, args.output, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
