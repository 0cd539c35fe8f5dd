"""`plan` is read-only on DuckDB down to the file: the database's bytes and modification
time stay as they were, no file appears beside it (no WAL, no lock note), and in the
project only the caches ``compile`` also keeps (``target/cache/``) may be written. The same
scenario on every target, warehouse contents compared table by table, is in
tests/adapters/test_read_only_plan.py; this file adds what only a local file shows, and
the DuckDB-only changes (a column added by ALTER TABLE, a column's type changed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.adapters.test_read_only_plan import PROJECT, assert_build_as_planned, before_batches
from tests.conftest import Run, run_cli, write_files

CACHES = "target/cache/"  # plan may refresh these, like compile: deleting them only costs time


def files(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: (modification time in ns, size, md5)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        found[str(path.relative_to(root))] = (
            stat.st_mtime_ns,
            stat.st_size,
            hashlib.md5(path.read_bytes()).hexdigest(),
        )
    return found


def sql(root: Path, *statements: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


def batches(root: Path) -> set[tuple[str, int, str, int]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute('SELECT relation, batch, kind, "rows" FROM _sqlorch.batches').fetchall()
    return {(str(r), int(b), str(k), int(n)) for r, b, k, n in rows}


def schemas(root: Path) -> set[str]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}


def make(root: Path) -> Path:
    write_files(root, PROJECT)
    sql(
        root,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.customers (customer_id BIGINT, name VARCHAR, country VARCHAR, updated_at TIMESTAMP)",
        "CREATE TABLE raw.events (event_id BIGINT, customer_id BIGINT, amount DECIMAL(12, 2), loaded_at TIMESTAMP)",
        "CREATE TABLE raw.tags (tag_id BIGINT, label VARCHAR)",
        "CREATE TABLE raw.rates (currency VARCHAR, rate DECIMAL(12, 4))",
        "INSERT INTO raw.customers SELECT i, 'c' || i, CASE WHEN i % 2 = 1 THEN 'UK' ELSE 'US' END, "
        "TIMESTAMP '2026-01-01 12:00:00' + to_minutes(i) FROM range(1, 41) t(i)",
        "INSERT INTO raw.events SELECT i, 1 + i % 40, i + 0.25, "
        "TIMESTAMP '2026-01-01 12:00:00' + to_minutes(i // 40) FROM range(1, 121) t(i)",
        "INSERT INTO raw.tags SELECT i, 't' || i FROM range(1, 5) t(i)",
        "INSERT INTO raw.rates VALUES ('EUR', 1.1), ('GBP', 1.3)",
    )
    return root


def plan_changes_nothing(root: Path, *args: str) -> Run:
    """Run ``plan`` (with ``args``) and assert it left every file as it was, but caches."""
    before = files(root)
    run = run_cli("plan", "--project-dir", root, *args)
    assert run.exception is None and run.exit_code == 0, f"{run.exception!r}\n{run.output}"
    after = files(root)
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name) and CACHES not in name
    )
    assert not changed, f"plan wrote {changed}"
    return run


def plan_then_build(root: Path) -> dict[str, dict[str, Any]]:
    """Plan (file untouched, --explain too), build, and compare: per source the batches
    recorded with those predicted, per model the action and strategy. The plan's sources."""
    before = batches(root) if "_sqlorch" in schemas(root) else set()
    plan = json.loads(plan_changes_nothing(root, "--json").output)
    plan_changes_nothing(root, "--explain", "mart.by_country")
    built = run_cli("build", "--project-dir", root)
    assert built.exception is None and built.exit_code == 0, f"{built.exception!r}\n{built.output}"
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    assert_build_as_planned(plan["steps"], results)
    recorded: dict[str, list[tuple[str, int]]] = {}
    for relation, _, kind, rows in sorted(batches(root) - before):
        recorded.setdefault(relation, []).append((kind, rows))
    for source in plan["sources"]:
        kinds = {kind for kind, _ in recorded.get(source["source"], [])}
        change = "none" if not kinds else "full" if "full" in kinds else "append" if kinds == {"append"} else "delta"
        rows = sum(rows for _, rows in recorded.get(source["source"], []))
        assert (change, rows, len(recorded.get(source["source"], []))) == (
            source["change"],
            source["rows"],
            source["batches"],
        ), f"{source}: build recorded {recorded.get(source['source'])}"
    return {s["source"]: s for s in plan["sources"]}


def test_plan_on_a_warehouse_never_built_creates_no_state(tmp_path: Path) -> None:
    root = make(tmp_path / "project")
    run = plan_changes_nothing(root, "--json")
    assert "_sqlorch" not in schemas(root)  # state read as empty, not created
    assert {s["change"] for s in json.loads(run.output)["sources"]} == {"full"}
    assert not list(root.glob("warehouse.duckdb.*"))  # no WAL, no lock note


def test_plan_leaves_the_duckdb_file_as_it_was_and_predicts_the_build(tmp_path: Path) -> None:
    root = make(tmp_path / "project")
    assert {s["change"] for s in plan_then_build(root).values()} == {"full"}

    sql(
        root,
        "UPDATE raw.customers SET name = 'renamed', updated_at = TIMESTAMP '2026-01-01 13:00:00' WHERE customer_id = 2",
        "DELETE FROM raw.customers WHERE customer_id = 3",
        "INSERT INTO raw.customers VALUES (41, 'c41', 'SE', TIMESTAMP '2026-01-01 13:00:00')",
        "INSERT INTO raw.events VALUES (121, 1, 5, TIMESTAMP '2026-01-01 12:03:00'), "  # a tie at the cursor
        "(122, 2, 7, TIMESTAMP '2026-01-01 12:05:00')",
        "ALTER TABLE raw.tags ADD COLUMN note VARCHAR",
        "UPDATE raw.tags SET note = 'n' WHERE tag_id IN (1, 2)",  # a column no model names: no change
        "UPDATE raw.tags SET label = 'x' WHERE tag_id = 3",
        "UPDATE raw.rates SET rate = 1.2 WHERE currency = 'EUR'",
    )
    seed = root / "seeds" / "regions.csv"
    seed.write_text(seed.read_text() + "east,3\n")
    (root / "models" / "mart" / "names.sql").write_text("SELECT customer_id, upper(name) AS name FROM stg.customers")
    sources = plan_then_build(root)
    assert (sources["raw.customers"]["change"], sources["raw.customers"]["rows"]) == ("delta", 4)
    assert (sources["raw.events"]["change"], sources["raw.events"]["rows"]) == ("append", 2)
    assert (sources["raw.tags"]["change"], sources["raw.tags"]["rows"]) == ("delta", 2)
    assert sources["raw.rates"]["change"] == "full"

    # a column's type changed: the source is captured whole
    sql(root, "ALTER TABLE raw.events ALTER COLUMN amount TYPE DECIMAL(18, 3)")
    sources = plan_then_build(root)
    assert sources["raw.events"]["change"] == "full"
    assert "column amount DECIMAL(12, 2) -> DECIMAL(18, 3)" in sources["raw.events"]["reason"]
    assert {s["change"] for name, s in sources.items() if name != "raw.events"} == {"none"}


def test_plan_reads_a_file_another_process_reads(tmp_path: Path) -> None:
    """Opened read-only, plan shares the file with other readers (a read-write open would
    wait for their lock)."""
    root = make(tmp_path / "project")
    assert run_cli("build", "--project-dir", root).exit_code == 0
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as reader:
        # same process: DuckDB refuses a second connection of another mode to an open file
        run = plan_changes_nothing(root, "--json")
        assert reader.execute("SELECT count(*) FROM raw.events").fetchall() == [(120,)]
    assert {s["action"] for s in json.loads(run.output)["steps"]} == {"skip"}


def test_snapshot_helper_reads_recorded_batches(tmp_path: Path) -> None:
    """The stand-in suite reads the batches out of its warehouse snapshot: checked here on a
    real build, so that comparison cannot pass on an empty list."""
    root = make(tmp_path / "project")
    assert run_cli("build", "--project-dir", root).exit_code == 0
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        types = {"relation": "VARCHAR", "batch": "BIGINT", "kind": "VARCHAR", "rows": "BIGINT"}
        rows = con.execute('SELECT relation, batch, kind, "rows", 1 FROM _sqlorch.batches').fetchall()
    snapshot = {"_sqlorch.batches": (types, [(row[:4], row[4]) for row in rows])}
    assert set(before_batches(snapshot)) == batches(root) != set()


@pytest.mark.parametrize("command", ["plan", "build"])
def test_plan_refuses_to_write_where_build_writes(tmp_path: Path, command: str) -> None:
    """The same project: build creates state, plan does not (nothing else differs)."""
    root = make(tmp_path / "project")
    run = run_cli(command, "--project-dir", root)
    assert run.exit_code == 0, run.output
    assert ("_sqlorch" in schemas(root)) == (command == "build")
