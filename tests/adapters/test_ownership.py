"""On every target: a model whose relation exists but was not created by sqlorch fails
alone, and the table is left exactly as it was."""

from __future__ import annotations

from pathlib import Path

from sqlglot import exp

from sqlorch import api
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.conftest import write_files

THEIRS = TableRef("marts", "report")


def test_a_foreign_table_under_a_model_is_never_written(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(
        tmp_path / "own",
        {
            "models/marts/report.sql": "SELECT 1 AS n",
            "models/marts/report_child.sql": "SELECT n FROM marts.report",
            "models/marts/fine.sql": "SELECT 2 AS n",
        },
    )
    warehouse.write_profiles()
    adapter = warehouse.connect()
    adapter.ensure_schema(THEIRS.schema)
    adapter.execute(
        exp.Create(this=THEIRS.to_table(), kind="TABLE", expression=exp.select("42 AS n", "'theirs' AS who"))
    )
    before = adapter.fingerprint(THEIRS)
    warehouse.close_all()
    result = api.build(api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir))
    statuses = {r.model: r.status for r in result.results}
    assert statuses == {"marts.report": "error", "marts.report_child": "skipped", "marts.fine": "success"}
    error = next(r.error for r in result.results if r.model == "marts.report") or ""
    assert "marts.report already exists in the warehouse and was not created by sqlorch" in error, error
    adapter = warehouse.connect()
    assert adapter.fingerprint(THEIRS) == before
    assert list(adapter.columns(THEIRS) or {}) == ["n", "who"]
