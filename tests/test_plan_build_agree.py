"""`plan` says what the next `build` does: per model the same action and strategy, and
run_results.json carries the strategy run, the plan's estimate and the rows written."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sqlorch import api
from sqlorch.api import Options
from tests.conftest import Run


def _planned(cli, demo: Path) -> dict[str, tuple[str, str]]:
    run: Run = cli("plan", "--json", "--project-dir", demo)
    assert run.exit_code == 0, run.output
    return {s["model"]: (s["action"], s["strategy"]) for s in json.loads(run.output)["steps"]}


def _built(demo: Path) -> list[dict]:
    return json.loads((demo / "target" / "run_results.json").read_text())["results"]


def _append(demo: Path) -> None:
    orders = demo / "seeds" / "orders.csv"
    lines = orders.read_text().splitlines()
    last = lines[-1].split(",")
    last[0] = str(int(last[0]) + 1000)
    orders.write_text("\n".join([*lines, ",".join(last)]) + "\n")


def _update(demo: Path) -> None:
    orders = demo / "seeds" / "orders.csv"
    lines = orders.read_text().splitlines()
    first = lines[1].split(",")
    first[-1] = str(float(first[-1]) + 1)
    orders.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")


def _nothing(demo: Path) -> None:
    pass


@pytest.mark.parametrize(("change", "work"), [(_append, True), (_update, True), (_nothing, False)])
def test_plan_says_what_the_demo_build_does(demo_project: Path, cli, change, work: bool) -> None:
    api.build(Options(project_dir=demo_project))
    change(demo_project)
    planned = _planned(cli, demo_project)
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    results = _built(demo_project)
    assert {r["model"]: (r["action"], r["strategy"]) for r in results} == planned
    assert any(r["action"] != "skip" for r in results) == work


def test_run_results_carry_strategy_estimate_and_rows_written(demo_project: Path, cli) -> None:
    api.build(Options(project_dir=demo_project))
    _append(demo_project)
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    results = {r["model"]: r for r in _built(demo_project)}
    orders = results["seeds.orders"]
    # one appended CSV row: the plan estimated one changed row and the seed wrote one
    assert (orders["strategy"], orders["estimated_rows"], orders["rows_written"]) == ("diff rows", 1, 1)
    assert results["staging.stg_orders"]["strategy"] == "insert new rows"
    assert results["staging.stg_orders"]["estimated_rows"] == 1
    for r in results.values():
        assert r["rows_written"] == r["rows"]


def test_a_full_rebuild_reports_the_rows_it_wrote(demo_project: Path, cli) -> None:
    """A rebuild of an existing incremental table diffs old and new rows for its consumers;
    `rows` is still every row written, not the size of that diff."""
    api.build(Options(project_dir=demo_project))
    model = demo_project / "models" / "staging" / "stg_orders.sql"
    model.write_text(model.read_text().replace("lower(status) AS status", "lower(trim(status)) AS status"))
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    result = next(r for r in _built(demo_project) if r["model"] == "staging.stg_orders")
    assert result["action"] == "full"
    con = duckdb.connect(str(demo_project / "warehouse.duckdb"), read_only=True)
    try:
        table_rows = con.sql("SELECT count(*) FROM staging.stg_orders").fetchall()[0][0]
    finally:
        con.close()
    assert result["rows"] == result["rows_written"] == table_rows > 0


def test_plan_in_an_empty_project_creates_no_warehouse(demo_project: Path, cli) -> None:
    run = cli("plan", "--json", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    steps = json.loads(run.output)["steps"]
    # planned as for an empty warehouse: everything loads or builds in full
    assert steps and all(s["action"] == "full" for s in steps)
    assert not (demo_project / "warehouse.duckdb").exists()
    assert not list(demo_project.glob("warehouse.duckdb*"))
