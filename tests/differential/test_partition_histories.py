"""Differential test of a row-level model whose changed input is read in subqueries through
one partition key (TPC-H Q20's shape): its affected keys are those of its rows in the touched
partitions, now and before the change (``signed_statements.partition_key_statements``). Random
histories of inserts, updates and deletes; after each incremental build the model equals a
from-scratch evaluation of its SQL, and the path was taken (the cost model is off: on data this
small it rebuilds)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from _harness import History, check_exact

from sqlorch import api
from sqlorch.api import Options

CORPUS = Path(__file__).parent / "partition_corpus"
STEPS = 6


@pytest.mark.parametrize("seed", [3, 4])
def test_row_level_partition_histories_are_exact(seed: int, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(CORPUS, project)
    db = project / "warehouse.duckdb"
    history = History(db, random.Random(seed))
    history.create()
    options = Options(project_dir=project, rebuild_when_cheaper=False)
    problems: list[str] = []
    taken = 0
    for step in range(STEPS + 1):
        if step:
            history.log.clear()
            history.step()
        result = api.build(options)
        for r in result.results:
            if r.status == "error":
                problems.append(f"step {step} {r.model}: {r.error}")
            taken += "touched partitions' rows" in r.reason
        problems += [f"seed {seed} step {step} changes {history.log}\n{m}" for m in check_exact(db, project)]
    assert not problems, "\n\n".join(problems)
    assert taken, "the affected keys never came from the touched partitions"


def test_a_row_that_leaves_its_partition_is_deleted(tmp_path: Path) -> None:
    """A user whose items stop qualifying, and one whose plan changes (its old key is only
    among the rows before the change): both old rows go, the new one comes."""
    import duckdb

    project = tmp_path / "project"
    shutil.copytree(CORPUS, project)
    db = project / "warehouse.duckdb"
    History(db, random.Random(1)).create()
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM raw.items")
        con.execute("INSERT INTO raw.items VALUES (1, 1, 'a', 5, 1, now()), (1, 2, 'a', 1, 1, now())")
        con.execute("INSERT INTO raw.items VALUES (2, 1, 'a', 5, 1, now()), (2, 2, 'a', 1, 1, now())")
    options = Options(project_dir=project, rebuild_when_cheaper=False)
    api.build(options)
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM part.users_over_own_average").fetchone() == (2,)
        con.execute("UPDATE raw.items SET qty = 0, updated_at = now() + INTERVAL 1 HOUR WHERE order_id = 1")
        con.execute("UPDATE raw.users SET plan = 'changed' WHERE user_id = 2")
    result = api.build(options)
    (step,) = result.results
    assert "touched partitions' rows" in step.reason, step.reason
    assert not check_exact(db, project)
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT user_id, plan FROM part.users_over_own_average").fetchall() == [(2, "changed")]
