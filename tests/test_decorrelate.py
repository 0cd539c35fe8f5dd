"""Subquery expressions decorrelated into joins (analysis/decorrelate.py): the shapes that are
rewritten give the same rows as the query as written on data with NULLs, duplicates and
empty groups; the others keep their form, and the reason says why."""

from __future__ import annotations

import random

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from sqlorch.analysis.decorrelate import NotDecorrelated, decorrelate

SCHEMA = {
    "raw": {
        "o": {"id": "INT", "grp": "VARCHAR", "amount": "DECIMAL(10,2)"},
        "l": {"oid": "INT", "qty": "INT", "flag": "BOOLEAN"},
    }
}

REWRITTEN = [
    "SELECT o.grp, count(*) AS n FROM raw.o WHERE EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id AND l.flag) "
    "GROUP BY 1",
    "SELECT o.grp, count(*) AS n FROM raw.o WHERE o.id IN (SELECT l.oid FROM raw.l WHERE l.qty > 2) GROUP BY 1",
    "SELECT o.grp, count(*) AS n FROM raw.o WHERE o.id IN "
    "(SELECT l.oid FROM raw.l GROUP BY l.oid HAVING sum(l.qty) > 5) GROUP BY 1",
    "SELECT o.id, o.amount FROM raw.o WHERE o.amount > (SELECT 10 * sum(l.qty) FROM raw.l WHERE l.oid = o.id)",
    "SELECT o.id FROM raw.o WHERE o.amount > (SELECT avg(l.qty) FROM raw.l WHERE l.flag)",
    "SELECT o.grp, count(*) AS n FROM raw.o WHERE o.id IN (SELECT l.oid FROM raw.l WHERE l.qty = o.id % 7) GROUP BY 1",
    "SELECT o.grp FROM raw.o WHERE o.id IN (SELECT l.oid FROM raw.l WHERE l.qty < "
    "(SELECT max(x.qty) FROM raw.l AS x WHERE x.oid = l.oid))",
    "SELECT count(*) AS n FROM (SELECT o.grp FROM raw.o WHERE EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)) AS t",
]

KEPT = [
    ("SELECT o.id FROM raw.o WHERE NOT EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)", "NOT EXISTS: an anti-join"),
    ("SELECT o.id FROM raw.o WHERE o.id NOT IN (SELECT l.oid FROM raw.l)", "NOT IN"),
    ("SELECT o.id FROM raw.o WHERE EXISTS (SELECT 1 FROM raw.l WHERE l.oid <> o.id)", "only equalities"),
    ("SELECT o.id FROM raw.o WHERE o.id > (SELECT count(*) FROM raw.l WHERE l.oid = o.id)", "correlated COUNT"),
    (
        "SELECT o.id FROM raw.o WHERE o.amount > coalesce((SELECT sum(l.qty) FROM raw.l WHERE l.oid = o.id), 0)",
        "a subquery inside",
    ),
    ("SELECT o.id FROM raw.o WHERE o.id = 1 OR EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)", "a subquery inside"),
    ("SELECT o.id, (SELECT max(l.qty) FROM raw.l) AS m FROM raw.o", "outside the WHERE"),
]


def _qualified(sql: str) -> exp.Query:
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    assert isinstance(query, exp.Query)
    return query


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    rng = random.Random(11)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.o (id INT, grp VARCHAR, amount DECIMAL(10,2))")
    con.execute("CREATE TABLE raw.l (oid INT, qty INT, flag BOOLEAN)")
    orders = [
        (i if rng.random() > 0.05 else None, rng.choice(["a", "b", None]), rng.randint(0, 9000) / 100)
        for i in range(60)
    ]
    lines = [
        (rng.choice([*range(70), None]), rng.choice([*range(8), None]), rng.choice([True, False, None]))
        for _ in range(150)
    ]
    con.executemany("INSERT INTO raw.o VALUES (?, ?, ?)", orders + orders[:5])  # duplicate rows
    con.executemany("INSERT INTO raw.l VALUES (?, ?, ?)", lines + lines[:10])
    return con


@pytest.mark.parametrize("sql", REWRITTEN)
def test_decorrelated_queries_give_the_rows_of_the_query_as_written(sql: str, con: duckdb.DuckDBPyConnection) -> None:
    query = _qualified(sql)
    joined = decorrelate(query)
    assert not [n for n in joined.find_all(exp.Exists)]
    assert not [n for n in joined.find_all(exp.Subquery) if not isinstance(n.parent, (exp.From, exp.Join))]
    expected = sorted(con.execute(query.sql("duckdb")).fetchall(), key=repr)
    assert expected, "the data must give the query rows to compare"
    assert sorted(con.execute(joined.sql("duckdb")).fetchall(), key=repr) == expected


@pytest.mark.parametrize(("sql", "reason"), KEPT)
def test_shapes_without_an_exact_join_form_keep_theirs(sql: str, reason: str) -> None:
    with pytest.raises(NotDecorrelated, match=reason):
        decorrelate(_qualified(sql))


def _project(tmp_path, condition: str):
    from pathlib import Path

    project = Path(tmp_path)
    (project / "models" / "m").mkdir(parents=True)
    (project / "models" / "sources.yml").write_text(
        "sources:\n  raw.o: {unique_key: id}\n  raw.l: {unique_key: [oid, qty]}\n"
    )
    (project / "models" / "m" / "x.sql").write_text(
        f"-- materialized: incremental\nSELECT o.grp, count(*) AS n FROM raw.o WHERE {condition} GROUP BY o.grp\n"
    )
    with duckdb.connect(str(project / "warehouse.duckdb")) as db:
        db.execute("CREATE SCHEMA raw")
        db.execute("CREATE TABLE raw.o AS SELECT i AS id, ['a', 'b'][i % 2 + 1] AS grp FROM range(10) t(i)")
        db.execute("CREATE TABLE raw.l AS SELECT i AS oid, i % 3 AS qty FROM range(6) t(i)")
    return project


@pytest.mark.parametrize(
    ("condition", "action", "says"),
    [
        ("EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)", "incremental", "signed deltas"),
        # an anti-join keeps its form, but reads raw.l through o.id: per touched partition (partition.py)
        ("NOT EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)", "incremental", "per touched partition"),
        ("NOT EXISTS (SELECT 1 FROM raw.l WHERE l.oid <> o.id)", "full", "not decorrelated: NOT EXISTS"),
    ],
)
def test_the_plan_says_whether_a_subquery_was_decorrelated(tmp_path, condition: str, action: str, says: str) -> None:
    from sqlorch import api

    project = _project(tmp_path, condition)
    api.build(api.Options(project_dir=project))
    with duckdb.connect(str(project / "warehouse.duckdb")) as db:
        db.execute("DELETE FROM raw.l WHERE oid = 1")
    step = next(s for s in api.plan(api.Options(project_dir=project)).steps if str(s.ref) == "m.x")
    assert (step.action, says in step.reason) == (action, True), step.reason


def test_a_rebuild_leaves_the_group_state_the_next_change_folds_into(tmp_path) -> None:
    """The cold build (a rebuild) writes the decorrelated model's group state; the next
    change is folded into it, not rebuilt from the inputs (signed_statements.py)."""
    from sqlorch import api
    from sqlorch.planning.steps import flatten

    project = _project(tmp_path, "EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id)")
    api.build(api.Options(project_dir=project))
    with duckdb.connect(str(project / "warehouse.duckdb")) as db:
        db.execute("DELETE FROM raw.l WHERE oid = 1")
    step = next(s for s in api.plan(api.Options(project_dir=project)).steps if str(s.ref) == "m.x")
    purposes = [statement.purpose for statement in flatten(step.statements)]
    assert "signed delta per group" in purposes
    assert "group state from the inputs" not in purposes
    api.build(api.Options(project_dir=project))
    with duckdb.connect(str(project / "warehouse.duckdb")) as db:
        expected = "SELECT grp, count(*) FROM raw.o WHERE id IN (SELECT oid FROM raw.l) GROUP BY 1 ORDER BY 1"
        assert db.execute("SELECT * FROM m.x ORDER BY 1").fetchall() == db.execute(expected).fetchall()


def test_a_decorrelated_model_reads_its_partitions_tables_once_where_they_hold_the_change(tmp_path) -> None:
    """A change to the tables one key anchors (raw.o and raw.l through o.id; raw.o and raw.g
    through the group) is folded per touched partition: the query as written over the touched
    keys' rows, each changed table copied aside once. A change to tables no one key anchors
    together (raw.g and raw.l) folds through the decorrelated joins. Both exact (keys.py:
    ``KeyAnalysis.written``)."""
    from sqlorch import api
    from sqlorch.planning.steps import flatten

    project = _project(tmp_path, "EXISTS (SELECT 1 FROM raw.l WHERE l.oid = o.id AND l.qty <> 2)")
    model = project / "models" / "m" / "x.sql"
    model.write_text(model.read_text().replace("FROM raw.o WHERE", "FROM raw.o JOIN raw.g ON g.grp = o.grp WHERE"))
    (project / "models" / "sources.yml").write_text(
        "sources:\n  raw.o: {unique_key: id}\n  raw.l: {unique_key: [oid, qty]}\n  raw.g: {unique_key: grp}\n"
    )
    with duckdb.connect(str(project / "warehouse.duckdb")) as db:
        db.execute("CREATE TABLE raw.g AS SELECT * FROM (VALUES ('a'), ('b')) t(grp)")
    expected = (
        "SELECT o.grp, count(*) FROM raw.o JOIN raw.g ON g.grp = o.grp WHERE EXISTS "
        "(SELECT 1 FROM raw.l WHERE l.oid = o.id AND l.qty <> 2) GROUP BY 1 ORDER BY 1"
    )
    api.build(api.Options(project_dir=project))
    changes = [  # (the change, whether one key anchors every table it changes)
        ("DELETE FROM raw.l WHERE oid = 1; INSERT INTO raw.l VALUES (7, 0), (7, 1), (8, 2)", True),
        ("UPDATE raw.o SET grp = 'b' WHERE id = 4; INSERT INTO raw.o VALUES (10, 'a'), (11, NULL)", True),
        ("INSERT INTO raw.l VALUES (10, 0), (11, 1), (NULL, 0); DELETE FROM raw.o WHERE id = 3", True),
        ("DELETE FROM raw.g WHERE grp = 'b'", True),  # o and g: anchored by the group
        ("INSERT INTO raw.g VALUES ('b'); DELETE FROM raw.l WHERE oid = 7 AND qty = 0", False),
        ("DELETE FROM raw.l WHERE oid = 10", True),
    ]
    for change, partitioned in changes:
        with duckdb.connect(str(project / "warehouse.duckdb")) as db:
            db.execute(change)
        step = next(s for s in api.plan(api.Options(project_dir=project)).steps if str(s.ref) == "m.x")
        copied = [s.purpose for s in flatten(step.statements)].count("rows now, touched partitions")
        assert step.strategy == "fold signed deltas", step.reason
        assert ("per touched partition" in step.reason) is partitioned, (change, step.reason)
        assert copied == (len(step.changed_inputs) if partitioned else 0), (change, copied)
        api.build(api.Options(project_dir=project, rebuild_when_cheaper=False))
        with duckdb.connect(str(project / "warehouse.duckdb")) as db:
            assert db.execute("SELECT * FROM m.x ORDER BY 1").fetchall() == db.execute(expected).fetchall(), change
