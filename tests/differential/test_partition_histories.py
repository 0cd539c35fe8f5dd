"""Differential test of row-level models whose changed inputs are read in subqueries through
one partition key (TPC-H Q20's shape): their affected keys are those of their rows in the
touched partitions, now and before the change (``signed_statements.partition_key_statements``).
Random histories of inserts, updates and deletes on the FROM table and the subquery tables
alike, NULL partition keys among them (``_histories.corpus_histories``); after each
incremental build every model equals a from-scratch evaluation of its SQL, ran as ``plan``
said, each took the path (the cost model is off: on data this small it rebuilds), and no
scratch table was left behind as a table of the warehouse."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import duckdb
import pytest
from _harness import History, check_exact
from _histories import corpus_histories

from sqlorch import api
from sqlorch.api import Options
from sqlorch.execution.results import ModelResult

CORPUS = Path(__file__).parent / "partition_corpus"
STEPS = 6
TAKEN = "touched partitions' rows"


def _kept_scratch_tables(db: Path) -> list[str]:
    """Scratch tables left as tables of the warehouse. One meant to be temporary but created
    as a table is read by its bare name, where another model's temporary table of the same
    name on the same connection shadows it (the row-level form read a model's touched
    partitions as another's)."""
    with duckdb.connect(str(db)) as con:
        rows = con.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
            " WHERE NOT temporary AND table_name LIKE 'sqlorch\\_tmp\\_%' ESCAPE '\\'"
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_row_level_partition_histories_are_exact(seed: int, tmp_path: Path) -> None:
    taken: set[str] = set()

    def took_the_path_and_left_no_table(step: int, results: list[ModelResult]) -> list[str]:
        taken.update(r.model for r in results if TAKEN in r.reason)
        kept = _kept_scratch_tables(tmp_path / "project" / "warehouse.duckdb")
        return [f"step {step}: scratch table {name} kept" for name in kept]

    problems, _ = corpus_histories(
        CORPUS, seed, tmp_path, STEPS, rebuild_when_cheaper=False, after_build=took_the_path_and_left_no_table
    )
    assert not problems, "\n\n".join(problems)
    models = {f"part.{path.stem}" for path in (CORPUS / "models" / "part").glob("*.sql")}
    assert taken == models, f"the affected keys never came from the touched partitions for {models - taken}"


def test_a_row_that_leaves_its_partition_is_deleted(tmp_path: Path) -> None:
    """A user whose items stop qualifying, one whose plan changes, and one whose id changes
    (it leaves its partition for another: its old key is only among the rows before the
    change): the old rows go, the new ones come."""
    project = tmp_path / "project"
    shutil.copytree(CORPUS, project)
    db = project / "warehouse.duckdb"
    History(db, random.Random(1)).create()
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM raw.items")
        for order in (1, 2, 3, 30):
            con.execute("INSERT INTO raw.items VALUES (?, 1, 'a', 5, 1, now()), (?, 2, 'a', 1, 1, now())", [order] * 2)
    options = Options(project_dir=project, rebuild_when_cheaper=False)
    api.build(options)
    model = "part.users_over_own_average"
    with duckdb.connect(str(db)) as con:
        assert con.execute(f"SELECT user_id FROM {model} ORDER BY 1").fetchall() == [(1,), (2,), (3,)]
        con.execute("UPDATE raw.items SET qty = 0, updated_at = now() + INTERVAL 1 HOUR WHERE order_id = 1")
        con.execute("UPDATE raw.users SET plan = 'changed' WHERE user_id = 2")
        con.execute("UPDATE raw.users SET user_id = 30 WHERE user_id = 3")
    result = api.build(options)
    (step,) = [r for r in result.results if r.model == model]
    assert TAKEN in step.reason, step.reason
    assert not check_exact(db, project)
    with duckdb.connect(str(db)) as con:
        assert con.execute(f"SELECT user_id, plan FROM {model} ORDER BY 1").fetchall()[0] == (2, "changed")
        assert [r[0] for r in con.execute(f"SELECT user_id FROM {model} ORDER BY 1").fetchall()] == [2, 30]
