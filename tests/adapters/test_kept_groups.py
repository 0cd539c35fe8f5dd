"""``recompute from kept groups`` (planning/rewrites/kept_aggregates.py) on the DuckDB file and
the Postgres and Snowflake stand-ins (BigQuery, without transactions, rebuilds): models that
read a changed table inside an aggregated CTE, once joined and once in a scalar subquery over
it (TPC-H Q15's shape: the suppliers of the largest revenue), keep the CTE's groups in
``_sqlorch`` and are recomputed from them. They follow inserts, deletes, updates moving rows
between groups, a group emptied, the maximum moving to another supplier, ties, a NULL group
key, MIN over groups whose extreme leaves, HAVING, and a ``--full-refresh``; after every build
each table equals its SQL evaluated from scratch, and the kept groups equal the CTE's groups
evaluated from scratch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from sqlorch import api
from sqlorch.planning.steps import KEPT_GROUPS
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import build, create_table, run_sqlorch
from tests.adapters.test_schema_event_histories import differences
from tests.adapters.test_type_changes import run
from tests.conftest import write_files

REVENUE = "SELECT sup AS sup_no, SUM(price * qty) AS total FROM raw.items WHERE qty > 0 GROUP BY sup"
PROJECT = {
    "models/sources.yml": "sources:\n  raw.items: {unique_key: item_id}\n  raw.sups: {unique_key: sup_id}\n",
    # TPC-H Q15: the CTE joined, and its MAX in a scalar subquery
    "models/mart/top.sql": (
        f"WITH revenue AS ({REVENUE}) SELECT s.sup_id, s.name, r.total FROM raw.sups AS s, revenue AS r "
        "WHERE s.sup_id = r.sup_no AND r.total = (SELECT MAX(total) FROM revenue)"
    ),
    # a NULL group key kept; MIN recomputed where its extreme leaves; AVG of an INT (NUMERIC on
    # Postgres, DOUBLE on DuckDB, from the kept sum and count); HAVING on the kept groups
    "models/mart/crowded.sql": (
        "WITH g AS (SELECT sup, COUNT(*) AS n, MIN(price) AS lo, AVG(qty) AS mean FROM raw.items GROUP BY sup "
        "HAVING COUNT(*) > 1) SELECT sup, n, lo, mean FROM g WHERE n >= (SELECT AVG(n) FROM g)"
    ),
    # folds signed deltas: its AVG finalised as the target's AVG of an INT, exactly
    "models/mart/means.sql": "SELECT sup, AVG(qty) AS mean FROM raw.items GROUP BY sup",
}
ITEMS, SUPS = TableRef("raw", "items"), TableRef("raw", "sups")
KEPT = {"mart.top": "_sqlorch.agg0__mart__top", "mart.crowded": "_sqlorch.agg0__mart__crowded"}


def _changed(warehouse: Warehouse, *statements: str) -> None:
    adapter = warehouse.connect()
    for sql in statements:
        run(adapter, sql)
    warehouse.close_all()  # DuckDB: the next command opens the file alone


def _rows(warehouse: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    adapter = warehouse.connect()
    try:
        return sorted(adapter.fetch(exp.maybe_parse(sql, dialect=adapter.dialect)), key=str)  # type: ignore[arg-type]
    finally:
        warehouse.close_all()


def _kept_groups_exact(warehouse: Warehouse) -> None:
    """The kept groups of mart.top are its CTE's groups now: a group at zero rows is gone."""
    kept = _rows(warehouse, f'SELECT sup_no, "_sqlorch_rows", "_sqlorch_a0_s" FROM {KEPT["mart.top"]}')
    fresh = _rows(
        warehouse,
        "SELECT sup AS sup_no, COUNT(*), SUM(price * qty) FROM raw.items WHERE qty > 0 GROUP BY sup",
    )
    assert kept == fresh


def _exactly_from_scratch(warehouse: Warehouse) -> None:
    """Each model's rows equal its SQL evaluated now, value for value (``differences`` rounds
    numbers to six places: an AVG finalised in DOUBLE on Postgres, whose AVG of an INT is a
    NUMERIC to the 16th decimal, passed it)."""
    adapter = warehouse.connect()
    try:
        for name in [*KEPT, "mart.means"]:
            sql = PROJECT[f"models/{name.replace('.', '/')}.sql"]
            fresh = adapter.fetch(sqlglot.parse_one(sql, read="duckdb"))
            stored = adapter.fetch(exp.select("*").from_(name))
            assert Counter(stored) == Counter(fresh), name
    finally:
        warehouse.close_all()


def _transactions(warehouse: Warehouse) -> bool:
    try:
        return warehouse.connect().capabilities.transactions
    finally:
        warehouse.close_all()


def _kept_models(warehouse: Warehouse) -> list[str]:
    """The models the target keeps groups for: none without transactions (BigQuery), and on
    Snowflake not mart.crowded, whose AVG of an integer (NUMBER(38, 0) there) no stored sum
    and count reproduce (``signed_shape.AVG_FROM_SUM_AND_COUNT``): they are rebuilt."""
    if not _transactions(warehouse):
        return []
    return [name for name in KEPT if not (warehouse.kind == "snowflake" and name == "mart.crowded")]


def _build(warehouse: Warehouse, project: Path, **options: Any) -> dict[str, dict[str, Any]]:
    results = build(warehouse, project, rebuild_when_cheaper=False, **options)
    assert differences(warehouse, project) == {}, results
    _exactly_from_scratch(warehouse)
    if _transactions(warehouse):
        _kept_groups_exact(warehouse)
    return results


def _kept(warehouse: Warehouse, results: dict[str, dict[str, Any]]) -> None:
    """Recomputed from kept groups; rebuilt where the target cannot (``_kept_models``), as
    before the strategy existed."""
    kept = _kept_models(warehouse)
    for name in KEPT:
        expected = ("incremental", KEPT_GROUPS) if name in kept else ("full", "rebuild")
        assert (results[name]["action"], results[name]["strategy"]) == expected, results[name]


def test_models_recomputed_from_kept_groups_follow_every_kind_of_change(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    item_columns = {"item_id": "INTEGER", "sup": "INTEGER", "qty": "INTEGER", "price": "DECIMAL(12,2)"}
    create_table(adapter, ITEMS, item_columns)
    create_table(adapter, SUPS, {"sup_id": "INTEGER", "name": "VARCHAR"})
    items = [(i, i % 4 or None, i % 3, 1.25 * i) for i in range(1, 13)]  # sup 0 is NULL
    adapter.insert_rows(ITEMS, list(item_columns), items)
    adapter.insert_rows(SUPS, ["sup_id", "name"], [(s, f"s{s}") for s in range(1, 5)])
    warehouse.close_all()
    results = _build(warehouse, project)
    assert {results[name]["action"] for name in KEPT} == {"full"}

    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, rebuild_when_cheaper=False)
    steps = [
        # sup 3's quantities average 8/6: a NUMERIC on Postgres to its 16th decimal
        (
            "INSERT INTO raw.items VALUES (20, 1, 2, 3.00), (21, NULL, 1, 1.00), (22, 3, 2, 1.00), (23, 3, 2, 1.00)",
            "INSERT INTO raw.items VALUES (24, 3, 1, 1.00)",
        ),
        ("DELETE FROM raw.items WHERE item_id = 5", "UPDATE raw.items SET sup = 2 WHERE item_id = 7"),
        # the maximum moves to another supplier
        ("UPDATE raw.items SET qty = 9 WHERE item_id = 10",),
        # a tie for the maximum: both suppliers in the output
        ("DELETE FROM raw.items", "INSERT INTO raw.items VALUES (1, 1, 1, 4.00), (2, 2, 2, 2.00), (3, 3, 1, 1.00)"),
        # a group emptied (sup 3), the NULL group's MIN leaves, the tie broken
        (
            "DELETE FROM raw.items WHERE item_id = 3",
            "INSERT INTO raw.items VALUES (4, NULL, 1, 0.50), (5, NULL, 0, 9.00)",
            "UPDATE raw.items SET price = 4.50 WHERE item_id = 1",
        ),
        ("DELETE FROM raw.items WHERE item_id = 4", "UPDATE raw.items SET sup = NULL WHERE item_id = 2"),
    ]
    _changed(warehouse, *steps[0])
    transactions = _transactions(warehouse)
    if transactions:
        shown = run_sqlorch("plan", "--project-dir", project, "--profiles-dir", warehouse.profiles_dir)
        groups = len(_rows(warehouse, f"SELECT * FROM {KEPT['mart.top']}"))
        assert f"state: {KEPT['mart.top']}, {groups} groups" in shown.stdout, shown.stdout
    # Without transactions (BigQuery) the models rebuild at every change: one step checks that
    # fallback and its exactness (the stand-in runs each build slowly; the fold is not there)
    for index, statements in enumerate(steps if transactions else steps[:1]):
        if index:
            _changed(warehouse, *statements)
        if index < 2:  # the plan sees the groups kept by the first build, then by the first fold
            plan = {str(step.ref): step for step in api.plan(options).steps}
            for name in _kept_models(warehouse):
                kept = plan[name].kept_state
                assert kept is not None and kept.table == KEPT[name] and kept.current, kept
        _kept(warehouse, _build(warehouse, project))
    if not transactions:
        return

    # --full-refresh rebuilds the model and its kept groups; the next change folds into them
    _changed(warehouse, "UPDATE raw.items SET sup = 4 WHERE item_id = 1")
    results = _build(warehouse, project, full_refresh=True)
    assert {results[name]["action"] for name in KEPT} == {"full"}
    _changed(warehouse, "INSERT INTO raw.items VALUES (30, 4, 3, 2.00), (31, 1, 1, 1.00)")
    _kept(warehouse, _build(warehouse, project))
