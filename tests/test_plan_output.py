"""What a person reads from `sqlorch plan`: every line fits the terminal (80 columns, or
COLUMNS when piped), a model name is never cut, the key is named once and not inside the
reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sqlorch.console import plan_lines
from sqlorch.planning.steps import Plan, Step
from sqlorch.refs import TableRef
from tests.conftest import REPO, run_cli

# a relation longer than a whole 80-column line, and one longer than the model column
HUGE = "marts_of_the_finance_department.revenue_per_customer_and_day_with_every_refund_and_late_correction"
LONG = "intermediate.orders_enriched_with_customers"


def _plan_after_a_new_order(root: Path, monkeypatch: pytest.MonkeyPatch, columns: str = "80") -> list[str]:
    assert run_cli("build", "--project-dir", root).exit_code == 0
    with (root / "seeds/orders.csv").open("a") as csv:
        csv.write("1011,4,2024-03-06,completed,55.00\n")
    monkeypatch.setenv("COLUMNS", columns)
    run = run_cli("plan", "--project-dir", root)
    assert run.exit_code == 0, run.output
    return run.output.splitlines()


def test_demo_plan_fits_80_columns_and_names_the_key_once(demo_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _plan_after_a_new_order(demo_project, monkeypatch)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert lines[0].split() == ["model", "action", "strategy", "changed"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line[:1] not in ("", " ")}
    assert rows["marts.customer_orders"] == ["incremental", "delete+insert", "keys", "1"]
    assert rows["intermediate.int_orders_enriched"] == ["incremental", "insert", "new", "rows", "1"]
    assert rows["staging.stg_customers"] == ["skip", "model", "and", "inputs", "unchanged"]
    at = lines.index(next(line for line in lines if line.startswith("marts.customer_orders ")))
    assert lines[at + 1 : at + 3] == [
        "    intermediate.int_orders_enriched changed; recompute affected keys",
        "    key: customer_id",
    ]
    assert "(customer_id)" not in "\n".join(lines)
    assert lines[-1] == "plan: 1 full, 5 incremental, 2 skip"


def test_long_model_names_are_never_cut_and_lines_still_fit(make_project, monkeypatch: pytest.MonkeyPatch) -> None:
    huge_schema, huge_name = HUGE.split(".")
    long_schema, long_name = LONG.split(".")
    root = make_project(
        {
            "seeds/orders.csv": (REPO / "seeds/orders.csv").read_text(),
            f"models/{long_schema}/{long_name}.sql": "SELECT order_id, customer_id, amount FROM seeds.orders",
            f"models/{huge_schema}/{huge_name}.sql": f"""
                SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM {LONG} GROUP BY customer_id
            """,
        }
    )
    lines = _plan_after_a_new_order(root, monkeypatch)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, text
    assert f"\n{LONG}\n" in text  # on a line of its own, whole; its row continues on the next
    at = lines.index(LONG)
    assert lines[at + 1].split() == ["incremental", "insert", "new", "rows", "1"]
    at = lines.index(HUGE[:80])  # longer than a line: broken at the width, never shortened
    assert lines[at] + lines[at + 1] == HUGE
    assert lines[at + 2].split() == ["incremental", "add", "partial", "aggregates", "1"]
    assert "    key: customer_id" in lines[at + 3 :]


def test_columns_is_honoured_when_piped(demo_project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)

    def plan(columns: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-m", "sqlorch.cli", "plan", "--project-dir", str(demo_project)],
            env={**env, "COLUMNS": columns},
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    assert run_cli("build", "--project-dir", demo_project).exit_code == 0
    with (demo_project / "seeds/orders.csv").open("a") as csv:
        csv.write("1011,4,2024-03-06,completed,55.00\n")
    narrow, wide = plan("80"), plan("100")
    assert max(len(line) for line in narrow) <= 80, "\n".join(narrow)
    assert 80 < max(len(line) for line in wide) <= 100, "\n".join(wide)
    assert len(wide) < len(narrow)  # the same plan, fewer reasons wrapped


def test_plan_lines_name_the_cheaper_cost_first_and_keep_an_error_whole() -> None:
    error = "/a/very/long/path/to/the/project/models/marts/orders.sql:12:8: error: unknown column: nope"
    plan = Plan(
        [
            Step(TableRef("s", "a"), "model", "incremental", "full", "a rebuild is cheaper", "rebuild", ["id"],
                 900, cost_incremental=1.3, cost_full=0.2, cost_winner="full"),
            Step(TableRef("s", "b"), "model", "incremental", "incremental", "s.a changed; recompute affected keys",
                 "merge keys", ["id"], 3, cost_incremental=0.01, cost_full=0.015, cost_winner="incremental"),
            Step(TableRef("s", "c"), "model", "incremental", "error", error),
            Step(TableRef("s", "d"), "model", "incremental", "skipped", "upstream s.c failed"),
        ]
    )  # fmt: skip
    lines = ["".join(part if isinstance(part, str) else part[0] for part in line) for line in plan_lines(plan, 80)]
    assert lines[1:4] == [
        "s.a    full         rebuild         900",
        "    a rebuild is cheaper",
        "    cost: full 0.2 s < incremental 1.3 s",
    ]
    assert lines[4:8] == [
        "s.b    incremental  merge keys        3",
        "    s.a changed; recompute affected keys",
        "    key: id",
        "    cost: incremental 0.01 s < full 0.015 s",
    ]
    assert lines[9] == f"    {error}"  # longer than 80 columns: a path:line:col line is never broken
    assert lines[10] == "s.d    skipped      upstream s.c failed"
    assert all(len(line) <= 80 for line in lines if error not in line)


def test_plan_shows_the_group_state_a_signed_delta_model_keeps(demo_project: Path, monkeypatch) -> None:
    """issue 11: auxiliary state is visible: `plan` names the table and its groups, says
    when the next step builds it, and --json gives the same."""
    monkeypatch.setenv("COLUMNS", "100")
    orders = demo_project / "seeds/orders.csv"
    warehouse = str(demo_project / "warehouse.duckdb")
    state = "_sqlorch.agg__marts__daily_revenue"

    def change_an_amount(old: str, new: str) -> list[str]:
        text = orders.read_text()
        orders.write_text(text.replace(f"1002,2,2024-03-01,completed,{old}", f"1002,2,2024-03-01,completed,{new}"))
        run = run_cli("plan", "--project-dir", demo_project)
        assert run.exit_code == 0, run.output
        return run.output.splitlines()

    assert run_cli("build", "--project-dir", demo_project).exit_code == 0  # the rebuild writes the state
    lines = change_an_amount("80.00", "81.00")  # an update: daily revenue folds signed deltas
    with duckdb.connect(warehouse, read_only=True) as con:
        groups = con.execute("SELECT count(*) FROM marts.daily_revenue").fetchone()[0]
    assert f"    state: {state}, {groups} groups" in lines
    run = run_cli("plan", "--project-dir", demo_project, "--json")
    step = next(s for s in json.loads(run.output)["steps"] if s["model"] == "marts.daily_revenue")
    assert step["kept_state"] == {"table": state, "rows": groups, "current": True, "unit": "group", "values": []}
    with duckdb.connect(warehouse) as con:
        con.execute(f"DROP TABLE {state}")  # lost: the next fold builds it again
        con.execute("DELETE FROM _sqlorch.aggregate_states WHERE relation = 'marts.daily_revenue'")
    assert f"    state: {state}, built by this step from the inputs" in change_an_amount("81.00", "82.00")
    assert run_cli("build", "--project-dir", demo_project).exit_code == 0
