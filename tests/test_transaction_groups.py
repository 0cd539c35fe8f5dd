"""A chain of small model steps commits as one transaction (``planning/transaction_groups.py``),
on a real DuckDB file: the plan says which steps share one, a fork or a target without
transactional DDL keeps one transaction a step, and a group whose step fails is rolled
back and run again step by step, so the models before the failure are built, the failed
one reports its error and its readers are skipped, as without grouping."""

from __future__ import annotations

import csv
import gc
from pathlib import Path

import duckdb
import pytest
import yaml

from sqlorch import api
from sqlorch.adapters.base import Capabilities
from sqlorch.api import Options
from sqlorch.planning.steps import Step
from sqlorch.planning.transaction_groups import group_transactions
from sqlorch.refs import TableRef
from tests.conftest import write_files

CHAIN = {
    "models/sources.yml": "sources:\n  raw.src: {unique_key: id}\n",
    "models/chain/a.sql": "SELECT id, v FROM raw.src\n",
    "models/chain/b.sql": "SELECT id, v FROM chain.a\n",
    # v is unique until the change below makes it not: the step fails while building
    "models/chain/c.sql": "-- unique_key: v\nSELECT id, v FROM chain.b\n",
    "models/chain/d.sql": "SELECT id, v FROM chain.c\n",
    "models/side/e.sql": "SELECT id FROM chain.a WHERE v > 5\n",
}


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "p", CHAIN)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.src AS SELECT range AS id, range * 10 AS v FROM range(20)")
    result = api.build(Options(project_dir=root, threads=1))
    assert {r.status for r in result.results} == {"success"}
    return root


def _change(root: Path, sql: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute(sql)


def _groups(root: Path) -> dict[str, int | None]:
    plan = api.plan(Options(project_dir=root))
    return {str(step.ref): step.group for step in plan.steps}


def test_a_chain_shares_one_transaction_and_a_fork_does_not(chain: Path) -> None:
    _change(chain, "UPDATE raw.src SET v = v + 1 WHERE id = 3")
    groups = _groups(chain)
    # a has two readers (b and e): it commits alone; b, c, d are a chain
    assert groups["chain.a"] is None and groups["side.e"] is None
    assert groups["chain.b"] is not None
    assert groups["chain.b"] == groups["chain.c"] == groups["chain.d"]


def test_no_group_without_transactional_ddl() -> None:
    refs = [TableRef("s", name) for name in "abc"]
    steps = [
        Step(ref, "model", "table", "incremental", "", depends_on=refs[:i][-1:], estimated_rows_written=4)
        for i, ref in enumerate(refs)
    ]
    group_transactions(steps, Capabilities(transactional_ddl=False), set())
    assert [s.group for s in steps] == [None, None, None]
    group_transactions(steps, Capabilities(), set())
    assert [s.group for s in steps] == [1, 1, 1]


def test_a_failed_step_in_a_group_fails_alone(chain: Path) -> None:
    _change(chain, "UPDATE raw.src SET v = 10 WHERE id = 3")  # v = 10 twice: c's unique_key breaks
    assert _groups(chain)["chain.c"] is not None
    result = {r.model: r for r in api.build(Options(project_dir=chain, threads=1)).results}
    assert [result[m].status for m in ("chain.a", "chain.b", "chain.c", "chain.d")] == [
        "success",
        "success",
        "error",
        "skipped",
    ]
    assert "not unique" in (result["chain.c"].error or "")
    assert result["chain.d"].reason == "upstream chain.c failed"
    with duckdb.connect(str(chain / "warehouse.duckdb")) as con:
        # b committed its change (run again on its own); d kept its rows (c failed)
        assert con.execute("SELECT v FROM chain.b WHERE id = 3").fetchall() == [(10,)]
        assert con.execute("SELECT v FROM chain.d WHERE id = 3").fetchall() == [(30,)]
        # and so did their bookkeeping: b's batch and watermark, none of the group's for c or d
        recorded = "SELECT relation FROM _sqlorch.batches WHERE relation LIKE 'chain.%' AND batch = 2 ORDER BY 1"
        assert con.execute(recorded).fetchall() == [("chain.a",), ("chain.b",)]
        moved = "SELECT consumer, batch FROM _sqlorch.watermarks WHERE consumer LIKE 'chain.%' ORDER BY 1"
        assert con.execute(moved).fetchall() == [("chain.a", 2), ("chain.b", 2), ("chain.c", 1), ("chain.d", 1)]
    _change(chain, "UPDATE raw.src SET v = 31 WHERE id = 3")
    result = {r.model: r for r in api.build(Options(project_dir=chain, threads=1)).results}
    assert {r.status for r in result.values()} == {"success"}
    with duckdb.connect(str(chain / "warehouse.duckdb")) as con:
        for model in ("chain.a", "chain.b", "chain.c", "chain.d"):
            rows = con.execute(f"SELECT id, v FROM {model} ORDER BY id").fetchall()
            assert rows == con.execute("SELECT id, v FROM raw.src ORDER BY id").fetchall(), model


def _logged_build(root: Path) -> list[str]:
    """A build whose statements DuckDB itself logs; returns those it received."""
    folder = root / "query_log"
    profile = {"type": "duckdb", "path": str(root / "warehouse.duckdb"), "query_log": str(folder)}
    (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": profile}}))
    result = api.build(Options(project_dir=root, profiles_dir=root, threads=1))
    assert {r.status for r in result.results} == {"success"}
    with (folder / "duckdb_log_entries.csv").open(newline="") as file:
        return [row["message"] for row in csv.DictReader(file) if row["type"] == "QueryLog"]


def test_a_group_writes_the_batches_and_watermarks_of_its_steps_at_once(chain: Path) -> None:
    _change(chain, "UPDATE raw.src SET v = v + 1 WHERE id = 3")
    plan = api.plan(Options(project_dir=chain))
    grouped = [step for step in plan.steps if step.group is not None]
    assert [str(step.ref) for step in grouped] == ["chain.b", "chain.c", "chain.d"]
    ran = _logged_build(chain)
    batches = [sql for sql in ran if sql.startswith('INSERT INTO "_sqlorch"."batches"')]
    # one for the group, one for each model that commits alone (a, e), one for the source
    assert len(batches) == 4, batches
    assert len([sql for sql in batches if "'chain.b'" in sql and "'chain.d'" in sql]) == 1
    assert not any(sql.startswith('UPDATE "_sqlorch"."watermarks"') and "'chain.c'" in sql for sql in ran)
    with duckdb.connect(str(chain / "warehouse.duckdb")) as con:
        recorded = con.execute(
            "SELECT relation, batch, kind, rows, strategy, seconds > 0, table_rows FROM _sqlorch.batches "
            "WHERE relation LIKE 'chain.%' AND batch = 2 ORDER BY relation"
        ).fetchall()
        # the kind, rows and time each step bound while running: an old and a new image each
        assert recorded == [(f"chain.{m}", 2, "delta", 2, "incremental", True, 20) for m in "abcd"]
        watermarks = con.execute(
            "SELECT consumer, input, batch FROM _sqlorch.watermarks WHERE consumer LIKE 'chain.%' ORDER BY 1"
        ).fetchall()
    assert watermarks == sorted(
        (str(s.ref), i, b) for s in plan.steps if str(s.ref).startswith("chain.") for i, b in s.watermarks.items()
    )


def test_a_build_keeps_its_plan_out_of_full_collections_and_then_lets_it_go(chain: Path) -> None:
    """While steps run, the plan and the statements of steps done are frozen out of the
    garbage collector's full passes; after the build nothing stays frozen (a process that
    builds again and again, ``sqlorch run``, would otherwise keep every plan alive)."""
    _change(chain, "UPDATE raw.src SET v = v + 1 WHERE id = 3")
    frozen: list[int] = []
    before = gc.get_freeze_count()
    api.build(Options(project_dir=chain, threads=1), lambda event, item: frozen.append(gc.get_freeze_count()))
    assert min(frozen) > before
    assert gc.get_freeze_count() == before
