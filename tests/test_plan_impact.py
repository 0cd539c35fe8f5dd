"""`plan` shows the impact of a changed model's SQL: the downstream columns that may change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plan_json(cli: Any, root: Path) -> dict[str, Any]:
    run = cli("plan", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    return json.loads(run.output)


def test_plan_lists_the_columns_downstream_of_changed_sql(demo_project: Path, cli: Any) -> None:
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    assert plan_json(cli, demo_project)["impact"] == []  # nothing changed

    model = demo_project / "models" / "staging" / "stg_orders.sql"
    model.write_text(model.read_text().replace("lower(status) AS status", "upper(status) AS status"))
    impact = plan_json(cli, demo_project)["impact"]
    assert [entry["model"] for entry in impact] == ["staging.stg_orders"]
    reached = {f"{c['relation']}.{c['column']}": c["kind"] for c in impact[0]["columns"]}
    assert reached["intermediate.int_orders_enriched.status"] == "passthrough"
    assert reached["marts.daily_revenue.revenue"] == "transformed"  # sum(amount) FILTER (WHERE status = ...)
    assert reached["marts.daily_revenue.orders"] == "filter"
    assert {name.rsplit(".", 1)[0] for name in reached} == {
        "intermediate.int_orders_enriched",
        "marts.customer_orders",
        "marts.customer_summary",
        "marts.daily_revenue",
    }
    assert not any(name.startswith(("staging.", "seeds.")) for name in reached)

    text = cli("plan", "--project-dir", demo_project).output
    assert f"staging.stg_orders changed: {len(reached)} downstream columns in 4 models may change" in text
    assert "  marts.daily_revenue: country, order_date, orders, revenue" in text
