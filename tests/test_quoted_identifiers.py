"""Warehouse column names that are not plain identifiers, end to end on DuckDB.

Quotes, spaces, unicode, upper case and reserved words, read through ``*`` and by quoted
name, grouped, partitioned, joined under a quoted alias, in a CTE named like a keyword.
After the first build and after every incremental build (keyed source updates, inserts,
deletes), each model equals its SQL evaluated from scratch on the source.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
from sqlglot import parse_one

from sqlorch.analysis.inline_ctes import inline_ctes
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.substitute_occurrence import substitute_occurrence
from sqlorch.refs import TableRef
from tests.conftest import Run

COLUMNS = 'id INTEGER, "order" INTEGER, "my col" VARCHAR, "we""ird" VARCHAR, "Größe" VARCHAR, "Upper" INTEGER'

MODELS = {
    "m.star": "SELECT * FROM raw.src",
    "m.explicit": 'SELECT id, "order", "my col" AS "My Col", "we""ird", "Größe", "Upper" '
    'FROM raw.src WHERE "order" > 2',
    "m.agg": 'SELECT "Größe", count(*) AS n, sum("order") AS "sum order" FROM m.star GROUP BY "Größe"',
    "m.win": 'SELECT id, "my col", row_number() OVER (PARTITION BY "my col" ORDER BY id) AS "row number" FROM m.star',
    "m.joined": 'SELECT "order".id, "order"."we""ird", e."Größe" AS "e.größe" '
    'FROM m.star AS "order" LEFT JOIN m.explicit AS e ON "order".id = e.id',
    "m.cte": 'WITH "select" AS (SELECT "Upper", "order" FROM raw.src) '
    'SELECT "Upper", sum("order") AS "sum" FROM "select" GROUP BY "Upper"',
}

# Each model's SQL over the source alone: the from-scratch result the built table must equal.
ORACLE = {
    "m.star": MODELS["m.star"],
    "m.explicit": MODELS["m.explicit"],
    "m.agg": MODELS["m.agg"].replace("m.star", "raw.src"),
    "m.win": MODELS["m.win"].replace("m.star", "raw.src"),
    "m.joined": MODELS["m.joined"].replace("m.star", "raw.src").replace("m.explicit", f"({MODELS['m.explicit']})"),
    "m.cte": MODELS["m.cte"],
}


def _row(rng: random.Random, key: int) -> tuple:
    return (key, rng.randint(0, 9), rng.choice(["a b", "c", "ü"]), rng.choice(['x"y', "z"]), rng.choice("SML"), key % 3)


def _check(root: Path, run: Run) -> list[str]:
    assert run.exit_code == 0 and run.exception is None, run.output
    actions = [r["action"] for r in json.loads((root / "target/run_results.json").read_text())["results"]]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        for model, oracle in ORACLE.items():
            built = sorted(con.sql(f"SELECT * FROM {model}").fetchall(), key=repr)
            expected = sorted(con.sql(oracle).fetchall(), key=repr)
            assert built == expected, f"{model} differs from a from-scratch evaluation"
    return actions


def test_quoted_column_names_full_and_incremental(make_project, cli):
    files = {f"models/m/{name.split('.')[1]}.sql": sql for name, sql in MODELS.items()}
    root = make_project({**files, "models/sources.yml": "sources:\n  raw.src: {unique_key: id}\n"})
    rng = random.Random(9)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.sql("CREATE SCHEMA raw")
        con.sql(f"CREATE TABLE raw.src ({COLUMNS})")
        con.executemany("INSERT INTO raw.src VALUES (?, ?, ?, ?, ?, ?)", [_row(rng, key) for key in range(400)])
    assert cli("compile", "--project-dir", root).exit_code == 0
    _check(root, cli("build", "--project-dir", root))
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        names = [row[0] for row in con.sql("DESCRIBE m.star").fetchall()]
    assert names == ["id", "order", "my col", 'we"ird', "größe", "upper"]
    actions: list[str] = []
    next_key = 400
    for _ in range(3):
        with duckdb.connect(str(root / "warehouse.duckdb")) as con:
            for key in rng.sample(range(next_key), 4):
                con.execute(
                    'UPDATE raw.src SET "Größe" = ?, "order" = ?, "my col" = ? WHERE id = ?',
                    [rng.choice("SMLX"), rng.randint(0, 9), rng.choice(["a b", "ü"]), key],
                )
            con.executemany(
                "INSERT INTO raw.src VALUES (?, ?, ?, ?, ?, ?)",
                [_row(rng, key) for key in range(next_key, next_key + 3)],
            )
            con.execute("DELETE FROM raw.src WHERE id IN (?, ?)", rng.sample(range(next_key), 2))
            next_key += 3
        actions += _check(root, cli("build", "--project-dir", root))
    assert "incremental" in actions  # the rewrites ran over the quoted names, not only rebuilds


def test_rewrites_keep_aliases_as_written():
    """A quoted alias stays quoted where a rewrite replaces the table it names: on a
    case-sensitive warehouse ``"T"`` and an unquoted ``T`` are different names."""
    query = parse_one('WITH "C" AS (SELECT 1 AS a) SELECT "T".a, "C".a FROM m.a AS "T", "C"', read="postgres")
    renamed = rename_relations(query, {TableRef("m", "a"): TableRef("dev_m", "a")}, "main")
    assert 'FROM "dev_m"."a" AS "T"' in renamed.sql("postgres")
    changed = parse_one("SELECT 1 AS a", read="postgres")
    substituted, _ = substitute_occurrence(query, 0, lambda t: t.name == "a", lambda t: changed, lambda t: changed)
    assert 'SELECT 1 AS a) AS "T"' in substituted.sql("postgres")
    assert 'AS a) AS "C"' in inline_ctes(query).sql("postgres")
