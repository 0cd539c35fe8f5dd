"""The benchmark's CI smoke: `bench/run --smoke` end to end, so the benchmark never rots.

It runs the real command on 100k and 200k events, sqlorch on its own DuckDB and on the
peers' DuckDB 1.5.6 (a venv under ${SQLORCH_BENCH_DIR:-.bench}, created on first use),
through cold / no-op / delta / full-refresh builds with every table verified against a
from-scratch evaluation, rows read from DuckDB's profile, the compile and --help phases,
and the report. dbt and SQLMesh are not part of the smoke: installing their venvs and
their start-up cost would add about 3.5 minutes to CI (bench/README.md), so the report's
peer paths are checked on synthetic results instead. Nothing here is ever skipped: a
smoke that cannot run fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SQLORCH_TOOLS = ("sqlorch", "sqlorch-duckdb15")
BUILD_SCENARIOS = ("cold", "noop", "delta", "full")


def load_report() -> ModuleType:
    """bench/report.py (standard library only), without putting bench/ on sys.path."""
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_smoke(out: Path) -> tuple[dict[str, Any], str]:
    sqlorch_bin = Path(sys.executable).parent
    assert (sqlorch_bin / "sqlorch").exists(), f"no sqlorch executable beside {sys.executable}"
    command = [
        "bash", str(BENCH / "run"), "--smoke",
        "--output", str(out / "RESULTS.md"),
        "--json", str(out / "results.json"),
        "--work", str(out / "work"),
        "--sqlorch-bin", str(sqlorch_bin),
    ]  # fmt: skip
    env = {**os.environ, "SQLORCH_BENCH_PYTHON": sys.executable}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"bench/run --smoke failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return json.loads((out / "results.json").read_text()), (out / "RESULTS.md").read_text()


def assert_builds_exact(results: dict[str, Any]) -> None:
    """Every scenario of every sqlorch at every scale ran, and every verified table matched."""
    assert [b["events"] for b in results["builds"]] == [100_000, 200_000]
    for block in results["builds"]:
        for tool in block["tools"]:
            ran = {m["scenario"]: m for m in block["measurements"] if m["tool"] == tool}
            assert set(ran) == set(BUILD_SCENARIOS), (tool, sorted(ran))
            assert all(m["returncode"] == 0 for m in ran.values()), ran
            checks = {c["scenario"]: c for c in block["checks"] if c["tool"] == tool}
            assert set(checks) == {"cold", "delta", "full"}, (tool, sorted(checks))
            assert all(c["ok"] for c in checks.values()), checks
    assert set(results["builds"][0]["tools"]) == set(SQLORCH_TOOLS)


def assert_rows_read(results: dict[str, Any]) -> None:
    """Rows read come from the profile log of both DuckDB releases, and the two agree."""
    first = results["builds"][0]
    rows = {(m["tool"], m["scenario"]): m["rows_read"] for m in first["measurements"]}
    for tool in SQLORCH_TOOLS:
        for scenario in BUILD_SCENARIOS:
            assert rows[tool, scenario] and rows[tool, scenario] > 0, (tool, scenario, rows)
    for scenario in BUILD_SCENARIOS:  # 2.x nests the total, 1.5 keeps it flat: same data, same figure
        a, b = rows["sqlorch", scenario], rows["sqlorch-duckdb15", scenario]
        assert abs(a - b) <= 0.01 * max(a, b), (scenario, a, b)
    deltas = [d for d in first["deltas"] if d["tool"] == "sqlorch"]
    assert deltas and deltas[0]["new_events"] == 100 and deltas[0]["updated_users"] == 200


def assert_report(results: dict[str, Any], text: str) -> None:
    versions = results["versions"]
    assert versions["sqlorch-duckdb15"]["duckdb"] == "1.5.6"
    assert int(versions["sqlorch"]["duckdb"].split(".")[0]) >= 2
    assert results["compile"][0]["measurements"] and results["help"]
    for fragment in (
        "## Targets",
        "Smoke run",
        "bench/run --smoke",
        f"{os.cpu_count()} cores",
        "## Builds at 100,000",
        "## Builds at 200,000",
        "Rows read",
        "## Compile",
        "`sqlorch --help`",
        "## Tool versions",
    ):
        assert fragment in text, fragment
    target_rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith("** |")]
    assert len(target_rows) >= 10, target_rows
    assert all(("**MET**" in r) or ("**NOT MET**" in r) for r in target_rows), target_rows


def test_bench_smoke(tmp_path: Path) -> None:
    """One test, not several: under pytest-xdist a shared fixture would run the smoke once per worker."""
    results, text = run_smoke(tmp_path)
    assert_builds_exact(results)
    assert_rows_read(results)
    assert_report(results, text)


def measurement(tool: str, scenario: str, run: int, seconds: float, rows: int | None = None) -> dict[str, Any]:
    return {
        "tool": tool,
        "scenario": scenario,
        "run": run,
        "seconds": seconds,
        "peak_rss_mb": 100.0,
        "returncode": 0,
        "log": "",
        "cpu_seconds": seconds,
        "load_before": 0.0,
        "rows_read": rows,
        "statements": None,
        "top_statements": [],
    }


def synthetic_results() -> dict[str, Any]:
    """Two runs at 10M and 50M with dbt and SQLMesh, dbt wrong after the delta."""
    times = {"sqlorch": (20.0, 1.0, 2.0, 25.0), "dbt": (50.0, 8.0, 14.0, 48.0), "sqlmesh": (30.0, 0.4, 3.0, None)}
    ms = [
        measurement(tool, scenario, run, t * run, 1000 if tool == "sqlorch" else None)
        for tool, row in times.items()
        for run in (1, 2)
        for scenario, t in zip(BUILD_SCENARIOS, row, strict=True)
        if t is not None
    ]
    wrong = {
        "marts.revenue_by_plan": {
            "status": "wrong",
            "expected_rows": 10,
            "actual_rows": 10,
            "missing_rows": 3,
            "extra_rows": 3,
            "detail": "",
        }
    }
    checks = [
        {"tool": t, "scenario": "delta", "run": 1, "ok": t != "dbt", "wrong": wrong if t == "dbt" else {}}
        for t in times
    ]
    deltas = [{"tool": "sqlorch", "run": 1, "step": 1, "new_events": 10_000, "late_events": 500, "updated_users": 200}]
    large = [measurement("sqlorch", s, 1, t) for s, t in zip(BUILD_SCENARIOS, (90.0, 1.0, 2.5, 80.0), strict=True)]
    return {
        "command": "bench/run", "smoke": False, "started": "2026-01-01T00:00:00+00:00", "machine": {"cores": 2},
        "versions": {t: {"duckdb": "1.5.6"} for t in times},
        "tool_info": {t: {"flavour": t, "notes": ""} for t in times},
        "builds": [
            {"events": 10_000_000, "users": 200_000, "seed": 42, "runs": 2, "tools": list(times),
             "measurements": ms, "checks": checks, "deltas": deltas},
            {"events": 50_000_000, "users": 200_000, "seed": 42, "runs": 1, "tools": ["sqlorch"],
             "measurements": large, "checks": [], "deltas": deltas},
        ],
        "compile": [], "help": [],
    }  # fmt: skip


def test_report_verdicts_with_peers() -> None:
    """The peer paths of the report, which the smoke does not reach: verdicts come from the data."""
    report = load_report()
    results = synthetic_results()
    verdicts = {v.target: v for v in report.all_targets(results)}
    name = "sqlorch (DuckDB 1.5.6)"
    assert verdicts[f"{name}: delta build ≥ 10x faster than its own --full-refresh"].met is True  # 12.5x
    dbt = verdicts[f"{name}: delta build faster than the incremental run of dbt (DuckDB 1.5.6)"]
    assert dbt.met is True and "WRONG" in dbt.measured
    assert verdicts[f"{name}: no-op build faster than the no-op run of sqlmesh (DuckDB 1.5.6)"].met is False
    assert verdicts[f"{name}: no-op build < 0.5 s"].met is False  # median of 1.0 and 2.0
    scaling = [v for v in verdicts.values() if "≤ 1.5x its time" in v.target]
    assert scaling and scaling[0].met is True and scaling[0].note == ""  # 2.5 s vs median 3.0 s
    assert verdicts["`sqlorch compile` of 10,000 models"].met is None
    text = report.render(results)
    assert "**WRONG**: marts.revenue_by_plan" in text
    assert "| dbt delta / sqlorch delta | 7.00x | 7.00x | 7.00x |" in text
    assert report.healthy(results)  # a wrong peer is a finding, not a broken benchmark
    for check in results["builds"][0]["checks"]:
        check["ok"] = check["ok"] and check["tool"] != "sqlorch"
    assert not report.healthy(results)


def test_report_keeps_every_marked_section(tmp_path: Path) -> None:
    """The benchmark scripts (docs_bench, tpch, spikes, idle_tick) and hand-written notes
    keep their sections of RESULTS.md between markers: rewriting the page keeps them all,
    and a script replacing its own section leaves the others alone."""
    report = load_report()
    output = tmp_path / "RESULTS.md"
    docs = "<!-- docs_bench:start -->\n## docs figures\n<!-- docs_bench:end -->"
    tpch = "<!-- tpch:sf1:start -->\n## TPC-H\n<!-- tpch:sf1:end -->"
    output.write_text(f"old page\n{docs}\nbetween\n{tpch}\nold tail\n")
    report.write(synthetic_results(), output)
    text = output.read_text()
    assert "old page" not in text and "old tail" not in text and "between" not in text
    assert text.startswith(report.render(synthetic_results()))
    assert text.endswith(f"\n{docs}\n\n{tpch}\n")
    report.write(synthetic_results(), output)  # again: each section is kept once, not twice
    assert output.read_text() == text
    report.replace_section(output, "<!-- docs_bench:start -->\n## new docs figures\n<!-- docs_bench:end -->")
    assert output.read_text() == text.replace("## docs figures", "## new docs figures")
    report.replace_section(output, "<!-- spikes:start -->\n## spikes\n<!-- spikes:end -->")
    assert output.read_text().endswith(f"{tpch}\n\n<!-- spikes:start -->\n## spikes\n<!-- spikes:end -->\n")
