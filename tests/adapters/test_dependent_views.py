"""Postgres drops the views on a table it replaces (DROP ... CASCADE): a rebuild must never
destroy a view sqlorch does not own, nor one of its own that this build does not rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlglot import exp

from sqlorch import api
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse, _Servers, _warehouse
from tests.conftest import write_files

SRC = TableRef("raw", "src")
FILES = {
    "models/staging/base.sql": "SELECT id, v FROM raw.src",
    "models/marts/v.sql": "-- materialized: view\nSELECT id, v FROM staging.base",
}


@pytest.fixture
def postgres(standin_servers: _Servers, tmp_path: Path) -> Iterator[Warehouse]:
    yield from _warehouse("postgres", standin_servers, tmp_path)


def _build(warehouse: Warehouse, project: Path, select: str | None = None) -> dict[str, tuple[str, str | None]]:
    result = api.build(api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, select=select))
    return {r.model: (r.status, r.error) for r in result.results}


def _exists(warehouse: Warehouse, relation: TableRef) -> bool:
    adapter = warehouse.connect()
    try:
        return adapter.columns(relation) is not None
    finally:
        warehouse.close_all()


def test_rebuild_keeps_views_sqlorch_does_not_own_or_does_not_rebuild(postgres: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "views", FILES)
    postgres.write_profiles()
    adapter = postgres.connect()
    adapter.ensure_schema("raw")
    adapter.execute(exp.Create(this=SRC.to_table(), kind="TABLE", expression=exp.select("1 AS id", "2 AS v")))
    postgres.close_all()
    assert {status for status, _ in _build(postgres, project).values()} == {"success"}

    # a view of someone else's on the model's table, then a change that rebuilds the table
    theirs = TableRef("reporting", "theirs")
    adapter = postgres.connect()
    adapter.ensure_schema("reporting")
    adapter.execute(exp.Create(this=theirs.to_table(), kind="VIEW", expression=exp.select("id").from_("staging.base")))
    postgres.close_all()
    (project / "models/staging/base.sql").write_text("SELECT id, v + 1 AS v FROM raw.src")
    results = _build(postgres, project)
    status, error = results["staging.base"]
    assert status == "error" and error is not None, results
    assert "reporting.theirs" in error and "not created by sqlorch" in error, error
    assert results["marts.v"][0] == "skipped", results
    assert _exists(postgres, theirs) and _exists(postgres, TableRef("marts", "v"))

    # their view gone: sqlorch's own view may be dropped only when this build rebuilds it
    adapter = postgres.connect()
    adapter.execute(exp.Drop(tables=[theirs.to_table()], kind="VIEW"))
    postgres.close_all()
    results = _build(postgres, project, select="staging.base")
    status, error = results["staging.base"]
    assert status == "error" and error is not None and "marts.v" in error, results
    assert _exists(postgres, TableRef("marts", "v"))
    results = _build(postgres, project)
    assert {status for status, _ in results.values()} == {"success"}, results
    adapter = postgres.connect()
    assert adapter.fetch(exp.select("id", "v").from_("marts.v")) == [(1, 3)]
    postgres.close_all()
