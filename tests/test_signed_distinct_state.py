"""issue 11: the (group, value) multiplicities behind a COUNT(DISTINCT) are bounded and visible:
`plan` names their table and size (text and --json), a rebuild writes them, a fold keeps
exactly the pairs the inputs hold, a lost table is built again from the inputs, and
--full-refresh rebuilds them."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli

VALUES = "_sqlorch.dst0__marts__buyers"  # customer ids per day
AMOUNTS = "_sqlorch.dst1__marts__buyers"  # amounts per day
MODEL = """
SELECT day, count(DISTINCT customer_id) AS buyers, count(*) AS orders, sum(DISTINCT amount) AS amounts
FROM raw.orders
GROUP BY day
"""
PAIRS = "SELECT day, customer_id, count(*) FROM raw.orders WHERE customer_id IS NOT NULL GROUP BY ALL"
AMOUNT_PAIRS = "SELECT day, amount, count(*) FROM raw.orders WHERE amount IS NOT NULL GROUP BY ALL"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "models" / "sources.yml").write_text("sources:\n  raw.orders: {unique_key: order_id}\n")
    (tmp_path / "models" / "marts" / "buyers.sql").write_text(MODEL)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.orders (order_id INT, day INT, customer_id INT, amount DECIMAL(10, 2))")
        con.execute(
            "INSERT INTO raw.orders SELECT i, i % 3, CASE WHEN i % 7 = 0 THEN NULL ELSE i % 5 END, i % 4 "
            "FROM range(1, 41) t(i)"
        )
    return tmp_path


def _sql(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        return sorted(con.execute(sql).fetchall(), key=repr)


def _exact(project: Path) -> None:
    assert _sql(project, "SELECT * FROM marts.buyers") == _sql(project, MODEL)
    assert _sql(project, f'SELECT day, "_sqlorch_x", "_sqlorch_rows" FROM {VALUES}') == _sql(project, PAIRS)
    assert _sql(project, f'SELECT day, "_sqlorch_x", "_sqlorch_rows" FROM {AMOUNTS}') == _sql(project, AMOUNT_PAIRS)


def _plan(project: Path) -> tuple[list[str], dict]:
    text = run_cli("plan", "--project-dir", project)
    assert text.exit_code == 0, text.output
    run = run_cli("plan", "--project-dir", project, "--json")
    step = next(s for s in json.loads(run.output)["steps"] if s["model"] == "marts.buyers")
    return [line.strip() for line in text.output.splitlines()], step


def test_distinct_values_are_kept_shown_and_rebuilt(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert run_cli("build", "--project-dir", project).exit_code == 0
    _exact(project)  # the rebuild wrote the values

    # customers 1 and 2 leave day 1 (one of them entirely), one order moves to day 2, one is deleted
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("UPDATE raw.orders SET customer_id = 4 WHERE day = 1 AND customer_id IN (1, 2)")
        con.execute("UPDATE raw.orders SET day = 2 WHERE order_id = 4")
        con.execute("DELETE FROM raw.orders WHERE order_id = 9")
    lines, step = _plan(project)
    assert step["strategy"] == "fold signed deltas", step
    pairs, amounts = (len(_sql(project, f"SELECT * FROM {t}")) for t in (VALUES, AMOUNTS))
    assert f"DISTINCT values: {VALUES}, {pairs} (group, value) pairs" in lines, lines
    assert f"DISTINCT values: {AMOUNTS}, {amounts} (group, value) pairs" in lines, lines
    assert step["kept_state"]["values"] == [{"table": VALUES, "rows": pairs}, {"table": AMOUNTS, "rows": amounts}]
    assert run_cli("build", "--project-dir", project).exit_code == 0
    _exact(project)  # pairs whose rows reached 0 are gone: the table stays the size of the input's pairs

    # lost: the next fold builds it from the inputs, and says so
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute(f"DROP TABLE {VALUES}")
        con.execute("DELETE FROM _sqlorch.aggregate_states")
        con.execute("UPDATE raw.orders SET customer_id = 3 WHERE order_id = 10")
    lines, step = _plan(project)
    assert f"DISTINCT values: {VALUES}, built by this step from the inputs" in lines, lines
    assert f"DISTINCT values: {AMOUNTS}, {amounts} (group, value) pairs, out of date: rebuilt from the inputs" in lines
    assert step["kept_state"]["values"] == [{"table": VALUES, "rows": None}, {"table": AMOUNTS, "rows": amounts}]
    assert run_cli("build", "--project-dir", project).exit_code == 0
    _exact(project)

    # --full-refresh rebuilds it, whatever it holds
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute(f"INSERT INTO {VALUES} VALUES (1, 99, 5)")
    assert run_cli("build", "--project-dir", project, "--full-refresh").exit_code == 0
    _exact(project)


def _explained(project: Path, model: str) -> list[tuple[str, str]]:
    """(title, SQL) of each statement ``plan --explain`` prints for ``model``."""
    run = run_cli("plan", "--project-dir", project, "--explain", model)
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    return [(line[3:], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("-- ") and i + 1 < len(lines)]


def test_changed_pairs_are_deleted_by_rowid_inside_the_lookups_transaction(project: Path) -> None:
    """DuckDB: the stored pairs a change moves are deleted by the rowid their lookup found,
    a scan of the table fewer; a rowid is stable within a transaction only, so every
    statement from the lookup to that DELETE runs in the model's one transaction. A model
    another model reads keeps the DELETE by (group, value)."""
    (project / "models" / "marts" / "top_days.sql").write_text("SELECT day FROM marts.buyers WHERE buyers > 2\n")
    assert run_cli("build", "--project-dir", project).exit_code == 0
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("UPDATE raw.orders SET customer_id = 4 WHERE day = 1 AND customer_id IN (1, 2)")
        con.execute("DELETE FROM raw.orders WHERE order_id = 9")
    read = _explained(project, "marts.buyers")
    assert not [sql for _, sql in read if "rowid" in sql], "a model others read deletes its pairs by value"

    (project / "models" / "marts" / "top_days.sql").unlink()
    assert run_cli("build", "--project-dir", project).exit_code == 0
    _exact(project)
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("UPDATE raw.orders SET customer_id = 1 WHERE day = 1 AND customer_id = 4")
        con.execute("INSERT INTO raw.orders VALUES (41, 2, NULL, 3), (42, NULL, 2, NULL)")
    statements = _explained(project, "marts.buyers")
    titles = [title for title, _ in statements]
    first = titles.index("DISTINCT values: their rows after the change [in transaction]")
    deletes = [i for i, (title, sql) in enumerate(statements) if title.startswith("DISTINCT values: delete")]
    assert len(deletes) == 2 and all('"rowid" IN (SELECT' in statements[i][1] for i in deletes), statements
    between = titles[first : deletes[-1] + 1]
    assert all("[in transaction" in title for title in between), between
    assert run_cli("build", "--project-dir", project).exit_code == 0
    _exact(project)
