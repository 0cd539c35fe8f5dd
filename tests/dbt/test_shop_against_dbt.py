"""The shop fixture (tests/fixtures/dbt_shop), a dbt project written for these tests, built
by sqlorch and by dbt-duckdb from the same raw data: every table equal. Then appends (with
late rows), updates and deletes, and an incremental build of each: sqlorch's tables equal
a from-scratch build, and dbt's two hand-written incremental models miss exactly the late
and corrected rows they are expected to miss.

dbt-duckdb lives in its own venv, made by tests/dbt/setup.sh (run by scripts/test).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest
from _shop import (
    DBT,
    DELETED_EVENT,
    LATE_EVENT,
    change_raw,
    copy_project,
    create_raw,
    run_dbt,
    tables,
)

from tests.conftest import run_cli

REQUIRED = os.environ.get("SQLORCH_STANDINS_REQUIRED") == "1"
HAND_WRITTEN = ("main_intermediate.int_events", "marts.daily_revenue")


@pytest.fixture(scope="module")
def dbt() -> Path:
    if not DBT.exists():
        message = f"dbt is not installed at {DBT}: run tests/dbt/setup.sh"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return DBT


def _dbt_build(root: Path) -> None:
    result = run_dbt(root, "build")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _sqlorch_build(root: Path) -> list[dict[str, object]]:
    run = run_cli("build", "--project-dir", root)
    assert run.exit_code == 0, run.output
    return json.loads((root / "target" / "sqlorch" / "run_results.json").read_text())["results"]


def test_same_tables_as_dbt_then_exact_where_dbt_incremental_models_drift(dbt: Path, tmp_path: Path) -> None:
    projects = {
        name: copy_project(tmp_path / name, tmp_path / f"{name}.duckdb") for name in ("sqlorch", "dbt", "fresh")
    }
    for name in projects:
        create_raw(tmp_path / f"{name}.duckdb")

    _sqlorch_build(projects["sqlorch"])
    _dbt_build(projects["dbt"])
    dbt_manifest = (projects["dbt"] / "target" / "manifest.json").read_text()
    assert run_cli("compile", "--project-dir", projects["dbt"]).exit_code == 0
    assert (projects["dbt"] / "target" / "manifest.json").read_text() == dbt_manifest, "dbt's artifacts are left alone"
    assert (projects["dbt"] / "target" / "sqlorch" / "manifest.json").exists()
    ours, theirs = tables(tmp_path / "sqlorch.duckdb"), tables(tmp_path / "dbt.duckdb")
    assert sorted(ours) == sorted(theirs)
    assert len(ours) == 20  # 21 model files: 17 built, 2 ephemeral (CTEs), 2 disabled; and 3 seeds
    assert {"marts.customers", "marts.orders", "main_staging.stg_orders", "main_reference.country_codes"} <= set(ours)
    for relation in sorted(ours):
        assert ours[relation] == theirs[relation], relation
    assert all(ours[relation] for relation in ours), "every table holds rows"

    for name in projects:
        change_raw(tmp_path / f"{name}.duckdb")
    results = {r["model"]: r for r in _sqlorch_build(projects["sqlorch"])}
    _dbt_build(projects["dbt"])  # incremental: the is_incremental() branches run
    _dbt_build(projects["fresh"])  # from scratch on the changed data
    ours, theirs, fresh = (tables(tmp_path / f"{n}.duckdb") for n in ("sqlorch", "dbt", "fresh"))
    for relation in sorted(fresh):
        assert ours[relation] == fresh[relation], relation
    for relation in HAND_WRITTEN:  # maintained incrementally by sqlorch, not rebuilt
        assert results[relation]["action"] == "incremental", results[relation]
        assert "superseded (sqlorch maintains the query exactly): hand-written is_incremental()" in str(
            results[relation]["reason"]
        )

    drifted = sorted(r for r in fresh if theirs[r] != fresh[r])
    assert drifted == ["main_intermediate.int_events", "marts.customer_event_summary", "marts.daily_revenue"]
    events = "main_intermediate.int_events"
    missing = {row[2] for row in fresh[events] - theirs[events]}  # columns in name order: event_id third
    stale = {row[2] for row in theirs[events] - fresh[events]}
    assert missing == {LATE_EVENT[0]}, "the late event is missed by `occurred_at > max(occurred_at)`"
    assert stale == {DELETED_EVENT}, "the deleted event stays in dbt's table"
    revenue = "marts.daily_revenue"
    wrong_days = {row[0] for row in theirs[revenue] - fresh[revenue]}
    assert wrong_days == {date(2024, 1, 1), date(2024, 1, 2)}, "a corrected payment and a late order on old days"

    # Switching in place: sqlorch in the folder and warehouse dbt built. Without dbt's
    # manifest the existing tables are nobody's sqlorch knows, and every one is refused,
    # untouched; with it, the tables dbt built for this project are taken over and rebuilt
    # exactly, the drift repaired.
    manifest = projects["dbt"] / "target" / "manifest.json"
    saved = manifest.read_text()
    manifest.unlink()
    refused = run_cli("build", "--project-dir", projects["dbt"])
    assert refused.exit_code == 1 and "was not created by sqlorch" in refused.output, refused.output
    assert tables(tmp_path / "dbt.duckdb") == theirs
    manifest.write_text(saved)
    taken = {r["model"]: r for r in _sqlorch_build(projects["dbt"])}
    assert "built by this project's dbt: taken over" in str(taken["marts.daily_revenue"]["reason"])
    adopted = tables(tmp_path / "dbt.duckdb")
    for relation in sorted(fresh):
        assert adopted[relation] == fresh[relation], relation


def test_seed_column_types_and_delimiter(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "p", tmp_path / "w.duckdb")
    create_raw(tmp_path / "w.duckdb")
    _sqlorch_build(root)
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'main_reference' and table_name = 'country_codes'"
            ).fetchall()
        )
        assert types == {"code": "VARCHAR", "name": "VARCHAR", "population_m": "DECIMAL(10,1)"}
        assert con.execute("select name from main_reference.country_codes where code = 'NL'").fetchall() == [
            ("Netherlands",)
        ]
    project_file = root / "dbt_project.yml"
    project_file.write_text(project_file.read_text().replace('"decimal(10,1)"', "double"))
    _sqlorch_build(root)  # the CSV did not change, its settings did: loaded again
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        kind = con.execute(
            "select data_type from information_schema.columns "
            "where table_schema = 'main_reference' and table_name = 'country_codes' and column_name = 'population_m'"
        ).fetchall()
        assert kind == [("DOUBLE",)]
