"""``map changed rows`` (planning/rewrites/map_changed_rows.py) on the DuckDB file and the
Postgres stand-in: row-level models over a keyed source (alone, or joined one-to-many and
LEFT to an unchanged table), and one with a declared unique key over such a model, follow
inserts, updates, deletes, rows moving in and out of a filter, NULL keys, an update of a
column the model does not read, and a reader that lags two batches in which a row changed
and changed back; a changed joined table sends its readers back to recomputing keys. After
every build each table equals its SQL evaluated from scratch, and a signed-delta fold
reading a mapped change log stays exact (the log's old and new images are what it adds
and subtracts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from sqlorch import api
from sqlorch.planning.steps import MAP_CHANGES
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import build, create_table
from tests.adapters.test_schema_event_histories import differences
from tests.adapters.test_type_changes import run
from tests.conftest import write_files

PROJECT = {
    "models/sources.yml": "sources:\n  raw.items: {unique_key: item_id}\n  raw.cats: {unique_key: row_id}\n",
    "models/stg/items.sql": "SELECT item_id, qty * price AS value, upper(name) AS name FROM raw.items WHERE qty > 0",
    "models/stg/names.sql": "SELECT item_id, name FROM raw.items",
    "models/mart/big.sql": "SELECT item_id, value FROM stg.items WHERE value > 5",
    "models/mart/declared.sql": "-- unique_key: item_id\nSELECT item_id, name, value FROM stg.items",
    "models/mart/by_name.sql": "SELECT name, SUM(value) AS total, COUNT(*) AS n FROM stg.items GROUP BY name",
    "models/mart/lagging.sql": "SELECT item_id, name FROM raw.items WHERE name IS NOT NULL",
    # keyed by raw.items' identity; a key holds several rows (two cats share a number) or none
    "models/mart/enriched.sql": "SELECT i.item_id, c.label FROM raw.items AS i JOIN raw.cats AS c ON c.cat = i.qty",
    "models/mart/enriched_left.sql": (
        "SELECT i.item_id, c.label, i.name FROM raw.items AS i LEFT JOIN raw.cats AS c ON c.cat = i.qty"
    ),
}
ITEMS, CATS = TableRef("raw", "items"), TableRef("raw", "cats")
NAMED = {"item_id": "INTEGER", "name": "VARCHAR"}  # raw.items' columns in the smaller projects
# mart.big maps stg.items' log: a model of one table keyed by its identity logs whole keys
MAPPED = ["stg.items", "stg.names", "mart.big", "mart.lagging", "mart.enriched", "mart.enriched_left", "mart.declared"]


@pytest.fixture(params=["duckdb", "postgres"])
def mapped_warehouse(request: pytest.FixtureRequest, standin_servers: Any, tmp_path: Path) -> Any:
    from tests.adapters.conftest import _warehouse

    yield from _warehouse(request.param, standin_servers, tmp_path)


def _build(warehouse: Warehouse, project: Path, exclude: str | None = None) -> dict[str, dict[str, Any]]:
    results = build(warehouse, project, rebuild_when_cheaper=False, exclude=exclude)
    differ = differences(warehouse, project)
    assert {name: text for name, text in differ.items() if name != exclude} == {}, results
    return results


def _changed(warehouse: Warehouse, *statements: str) -> None:
    adapter = warehouse.connect()
    for sql in statements:
        run(adapter, sql)
    warehouse.close_all()  # DuckDB: the next command opens the file alone


Tables = dict[TableRef, tuple[dict[str, str], list[Any]]]  # per table its columns and rows


def _built(warehouse: Warehouse, tmp_path: Path, files: dict[str, str], tables: Tables) -> Path:
    """The project written, ``tables`` created with their rows, and a first build, exact."""
    project = write_files(tmp_path / "project", files)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    for table, (columns, rows) in tables.items():
        create_table(adapter, table, columns)
        adapter.insert_rows(table, list(columns), rows)
    warehouse.close_all()
    _build(warehouse, project)
    return project


def test_mapped_models_follow_every_kind_of_change(mapped_warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse = mapped_warehouse
    items = [(i, i % 3, 1.5 * i, f"n{i % 4}") for i in range(1, 9)] + [(None, 2, 4.0, "nokey")]
    cats = [(1, 1, "a"), (2, 1, "b"), (3, 2, "c"), (4, 5, "d"), (5, 2, "a")]
    item_columns = {"item_id": "INTEGER", "qty": "INTEGER", "price": "DECIMAL(12,2)", "name": "VARCHAR"}
    cat_columns = {"row_id": "INTEGER", "cat": "INTEGER", "label": "VARCHAR"}
    project = _built(warehouse, tmp_path, PROJECT, {ITEMS: (item_columns, items), CATS: (cat_columns, cats)})

    _changed(
        warehouse,
        "UPDATE raw.items SET qty = qty + 1 WHERE item_id = 2",  # value changes
        "UPDATE raw.items SET qty = 0 WHERE item_id = 4",  # leaves stg.items' filter
        "UPDATE raw.items SET qty = 5 WHERE item_id = 3",  # enters it (qty was 0)
        "DELETE FROM raw.items WHERE item_id = 5",
        "INSERT INTO raw.items VALUES (10, 1, 9.5, 'n1')",
        "UPDATE raw.items SET qty = 7 WHERE item_id IS NULL",  # the NULL key's row
        "UPDATE raw.items SET price = price + 1 WHERE item_id = 7",  # no column stg.names reads
        "UPDATE raw.items SET qty = 2 WHERE item_id = 1",  # its cats a, b become c, a: one row stays
    )
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, rebuild_when_cheaper=False)
    planned = {str(step.ref): (step.action, step.strategy) for step in api.plan(options).steps}
    results = _build(warehouse, project)
    for name in MAPPED:
        assert (results[name]["action"], results[name]["strategy"]) == ("incremental", MAP_CHANGES), results[name]
        assert planned[name] == ("incremental", MAP_CHANGES)

    # mart.lagging misses a build: the next one reads two batches, a row changed and changed back
    _changed(
        warehouse, "UPDATE raw.items SET name = 'other' WHERE item_id = 6", "DELETE FROM raw.items WHERE item_id = 8"
    )
    _build(warehouse, project, exclude="mart.lagging")
    _changed(
        warehouse,
        "UPDATE raw.items SET name = 'n2' WHERE item_id = 6",  # back to what mart.lagging holds
        "INSERT INTO raw.items VALUES (8, 2, 1.0, 'back')",
        "UPDATE raw.items SET item_id = 11 WHERE item_id = 1",  # a key changes: one delete, one insert
    )
    results = _build(warehouse, project)
    assert (results["mart.lagging"]["action"], results["mart.lagging"]["strategy"]) == ("incremental", MAP_CHANGES)

    # a joined table changes too: its readers recompute their affected keys instead
    _changed(
        warehouse, "UPDATE raw.cats SET cat = 2 WHERE row_id = 2", "UPDATE raw.items SET qty = 1 WHERE item_id = 6"
    )
    results = _build(warehouse, project)
    assert results["mart.enriched"]["action"] == "incremental"
    assert results["mart.enriched"]["strategy"] != MAP_CHANGES


def test_a_mapped_model_audits_the_rows_it_is_about_to_write(mapped_warehouse: Warehouse, tmp_path: Path) -> None:
    """Audits check the mapped new rows beside the stored rows the step keeps: a passing
    ``unique`` is not fooled by the old image it replaces, a failing ``not_null`` writes nothing."""
    warehouse = mapped_warehouse
    files = {
        "models/sources.yml": "sources:\n  raw.items: {unique_key: item_id}\n",
        "models/stg/items.sql": "-- audits: unique(name), not_null(name)\nSELECT item_id, name FROM raw.items",
    }
    project = _built(warehouse, tmp_path, files, {ITEMS: (NAMED, [(1, "a"), (2, "b"), (3, "c")])})
    # b's row becomes d, then a new row takes the name b: unique only because b's old row goes
    _changed(warehouse, "UPDATE raw.items SET name = 'd' WHERE item_id = 2", "INSERT INTO raw.items VALUES (4, 'b')")
    results = _build(warehouse, project)
    assert (results["stg.items"]["action"], results["stg.items"]["strategy"]) == ("incremental", MAP_CHANGES)
    _changed(warehouse, "UPDATE raw.items SET name = NULL WHERE item_id = 3")
    result = api.build(
        api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, rebuild_when_cheaper=False)
    )
    (failed,) = [r for r in result.results if r.model == "stg.items"]
    assert failed.status == "error" and "not_null" in (failed.error or ""), failed
    adapter = warehouse.connect()
    stored = sorted(adapter.fetch(exp.select("item_id", "name").from_("stg.items")), key=str)
    warehouse.close_all()
    assert stored == [(1, "a"), (2, "d"), (3, "c"), (4, "b")]  # nothing of the failed step written


def test_a_rebuilt_model_logs_whole_keys_for_a_reader_that_maps_them(
    mapped_warehouse: Warehouse, tmp_path: Path
) -> None:
    """A source key that repeats (two rows of item 7): a model keyed by that identity is
    rebuilt (its SQL changed) and only one of the key's rows changes; its diff logs both
    rows of the key, old and new, so the reader that maps it deletes and inserts them whole."""
    warehouse = mapped_warehouse
    files = {
        "models/sources.yml": "sources:\n  raw.items: {unique_key: item_id}\n",
        "models/stg/items.sql": "SELECT item_id, name FROM raw.items",
        "models/mart/copy.sql": "SELECT item_id, name FROM stg.items",
    }
    project = _built(warehouse, tmp_path, files, {ITEMS: (NAMED, [(1, "a"), (7, "c7"), (7, "twin")])})
    renamed = "SELECT item_id, CASE WHEN name = 'twin' THEN 'TWIN' ELSE name END AS name FROM raw.items"
    (project / "models" / "stg" / "items.sql").write_text(renamed)
    results = _build(warehouse, project)
    assert results["stg.items"]["action"] == "full"
    assert (results["mart.copy"]["action"], results["mart.copy"]["strategy"]) == ("incremental", MAP_CHANGES)
