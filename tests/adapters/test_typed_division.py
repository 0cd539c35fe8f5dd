"""A DuckDB-dialect model's ``/`` on a target whose division is typed: every build renders it
the same way. sqlglot spells DuckDB's float division for Postgres as ``CAST(a AS DOUBLE
PRECISION) / b`` unless it knows an operand is DECIMAL; the compile left the tree typed on a
fresh compile and not on a cached one, so the first build divided NUMERICs and later ones
doubles, and a model differed from its own rebuild in the last digits (TPC-H Q14 on
Postgres). Each build here runs in its own process, as a user's builds do."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlglot import exp

from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import create_table, run_sqlorch
from tests.conftest import write_files

SOURCE = TableRef("raw", "amounts")
MODEL = TableRef("marts", "shares")
PROJECT = {
    "models/sources.yml": "sources:\n  raw.amounts: {unique_key: id}\n",
    "models/marts/shares.sql": (
        "SELECT g, sum(x) / 7.0 AS per_week, 100.00 * sum(CASE WHEN x > 50 THEN x ELSE 0 END) / sum(x) AS share "
        "FROM raw.amounts GROUP BY g"
    ),
}


def _rows(warehouse: Warehouse) -> list[tuple[object, ...]]:
    adapter = warehouse.connect()
    rows = adapter.fetch(exp.select("g", "per_week", "share").from_(MODEL.to_table()).order_by("g"))
    warehouse.close_all()
    return sorted(rows)


def _build(warehouse: Warehouse, project: Path, *options: str) -> None:
    done = run_sqlorch("build", "--project-dir", project, "--profiles-dir", warehouse.profiles_dir, *options)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("warehouse", ["postgres", "snowflake"], indirect=True)
def test_a_model_equals_its_rebuild_to_the_last_digit(warehouse: Warehouse, tmp_path: Path) -> None:
    adapter = warehouse.connect()
    create_table(adapter, SOURCE, {"id": "BIGINT", "g": "BIGINT", "x": "DECIMAL(15, 2)"})
    adapter.insert_rows(SOURCE, ["id", "g", "x"], [(i, i % 3, round(i * 1.37 % 100, 2)) for i in range(1, 400)])
    warehouse.close_all()
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()

    _build(warehouse, project)  # a fresh compile
    first = _rows(warehouse)
    _build(warehouse, project, "--full-refresh")  # the compile cache's
    assert first == _rows(warehouse)

    adapter = warehouse.connect()
    adapter.insert_rows(SOURCE, ["id", "g", "x"], [(1000 + i, i % 3, 12.34 + i) for i in range(5)])
    warehouse.close_all()
    _build(warehouse, project)  # incremental
    incremental = _rows(warehouse)
    _build(warehouse, project, "--full-refresh")
    assert incremental == _rows(warehouse)
