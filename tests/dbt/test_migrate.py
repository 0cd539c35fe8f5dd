"""``sqlorch migrate --from-dbt``: the shop fixture as plain sqlorch models builds the same
tables as the dbt project it came from."""

from __future__ import annotations

from pathlib import Path

from _shop import FIXTURE, copy_project, create_raw, tables

from sqlorch.project.loader import load_project
from sqlorch.refs import TableRef
from tests.conftest import assert_error, run_cli


def test_migrated_project_builds_the_same_tables(tmp_path: Path) -> None:
    dbt_project = copy_project(tmp_path / "dbt", tmp_path / "dbt.duckdb")
    create_raw(tmp_path / "dbt.duckdb")
    assert run_cli("build", "--project-dir", dbt_project).exit_code == 0

    out = tmp_path / "plain"
    run = run_cli("migrate", "--from-dbt", out, "--project-dir", dbt_project)
    assert run.exit_code == 0, run.output
    assert "not carried over: main_staging.stg_payments: dbt tests skipped" in run.output
    assert "column_types" in run.output
    assert not (out / "dbt_project.yml").exists()
    sql = (out / "models/marts/daily_revenue.sql").read_text()
    assert "{{" not in sql and "{%" not in sql and "from raw.orders_v2 as o" in sql
    profile = (out / "profiles.yml").read_text().replace(str(tmp_path / "dbt.duckdb"), str(tmp_path / "plain.duckdb"))
    (out / "profiles.yml").write_text(profile)

    plain = load_project(out)
    assert set(plain.models) == set(load_project(dbt_project).models)
    orders = plain.models[TableRef("main_staging", "stg_orders")].config
    assert orders.materialized == "table"
    assert orders.audits_warn == ("relationships(customer_id, main_staging.stg_customers.customer_id)",)
    assert orders.audits[-1] == "accepted_values(status, 'placed', 'shipped', 'completed', 'returned')"

    create_raw(tmp_path / "plain.duckdb")
    run = run_cli("build", "--project-dir", out)
    assert run.exit_code == 0, run.output
    assert tables(tmp_path / "plain.duckdb") == tables(tmp_path / "dbt.duckdb")


def test_migrate_needs_a_dbt_project_and_an_empty_folder(tmp_path: Path, make_project) -> None:
    plain = make_project({"models/a.sql": "select 1 as a"})
    assert_error(run_cli("migrate", "--from-dbt", tmp_path / "o", "--project-dir", plain), "no dbt_project.yml")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert_error(run_cli("migrate", "--from-dbt", busy, "--project-dir", FIXTURE), "is not empty")
    assert (busy / "keep.txt").read_text() == "mine"
