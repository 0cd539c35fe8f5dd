"""Projects written in dialects that fold identifiers differently compile and build on DuckDB.

sqlorch knows seed columns, declared source columns and model outputs in lower case;
Snowflake folds unquoted names to upper case, BigQuery's columns are case-insensitive even
quoted. Each project reads a seed, a source with declared ``columns:`` and a two-level model
chain, naming columns in mixed case unquoted and (where the dialect says it is the same
column) quoted. After the first build and after an incremental one, every model equals its
SQL evaluated from scratch, and its columns are written in lower case.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Run

# A quoted spelling of the seed's ``label`` column that names the same column in the dialect.
QUOTED_LABEL = {"snowflake": '"LABEL"', "bigquery": "`Label`", "postgres": '"label"', "duckdb": '"Label"'}

SOURCES = """
sources:
  raw.orders:
    unique_key: id
    columns: {id: INT, Customer: VARCHAR, amount: "DECIMAL(10, 2)"}
"""

ORACLE = {
    "staging.orders": "SELECT o.id, o.customer, o.amount * 2 AS doubled, s.label "
    "FROM raw.orders AS o JOIN seeds.labels AS s ON s.id = o.id % 3",
    "marts.by_customer": "SELECT customer, label, sum(doubled) AS total, count(*) AS n "
    "FROM ({staging}) GROUP BY customer, label",
}


def _files(dialect: str) -> dict[str, str]:
    return {
        "sqlorch.yml": f"dialect: {dialect}\n",
        "seeds/labels.csv": "id,label\n0,zero\n1,one\n2,two\n",
        "models/sources.yml": SOURCES,
        "models/staging/orders.sql": f"SELECT O.ID, o.CUSTOMER, o.Amount * 2 AS Doubled, S.{QUOTED_LABEL[dialect]} "
        "FROM raw.orders AS O JOIN seeds.labels AS S ON S.Id = O.id % 3",
        "models/marts/by_customer.sql": "SELECT Customer, LABEL, SUM(doubled) AS Total, COUNT(*) AS N "
        "FROM staging.orders GROUP BY customer, label",
    }


def _insert(root: Path, first: int, count: int) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.sql("CREATE SCHEMA IF NOT EXISTS raw")
        con.sql("CREATE TABLE IF NOT EXISTS raw.orders (id INTEGER, customer VARCHAR, amount DECIMAL(10, 2))")
        rows = [(key, f"c{key % 4}", key * 1.5) for key in range(first, first + count)]
        con.executemany("INSERT INTO raw.orders VALUES (?, ?, ?)", rows)


def _check(root: Path, run: Run) -> list[str]:
    assert run.exit_code == 0 and run.exception is None, run.output
    results = json.loads((root / "target/run_results.json").read_text())["results"]
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        staging = ORACLE["staging.orders"]
        for model, oracle in ORACLE.items():
            built = sorted(con.sql(f"SELECT * FROM {model}").fetchall(), key=repr)
            expected = sorted(con.sql(oracle.format(staging=staging)).fetchall(), key=repr)
            assert built and built == expected, f"{model} differs from a from-scratch evaluation"
        names = {m: [r[0] for r in con.sql(f"DESCRIBE {m}").fetchall()] for m in ORACLE}
    assert names == {
        "staging.orders": ["id", "customer", "doubled", "label"],
        "marts.by_customer": ["customer", "label", "total", "n"],
    }
    return [f"{r['model']}:{r['action']}" for r in results]


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery", "postgres", "duckdb"])
def test_project_in_dialect_reads_seeds_sources_and_models(make_project, cli, dialect: str) -> None:
    root = make_project(_files(dialect))
    run = cli("compile", "--project-dir", root)
    assert run.exit_code == 0, run.output
    assert "compiled 2 models: no errors" in run.output
    _insert(root, 0, 20)
    assert "marts.by_customer:full" in _check(root, cli("build", "--project-dir", root))
    _insert(root, 20, 5)
    assert "staging.orders:incremental" in _check(root, cli("build", "--project-dir", root))


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery"])
def test_unknown_column_is_still_found_in_dialect(make_project, cli, dialect: str) -> None:
    """The columns are really checked at compile: a misspelt one fails, located."""
    files = _files(dialect)
    files["models/marts/by_customer.sql"] = "SELECT customer,\n  Totl FROM staging.orders"
    run = cli("compile", "--project-dir", make_project(files))
    assert run.exit_code == 1
    assert "by_customer.sql:2:3: error: unknown column" in run.output
    assert "totl" in run.output.lower()
