"""The capture of a keyed source with a cursor (``raw.customers: {cursor: updated_at,
unique_key: customer_id}``) takes the narrowest diff that accounts for the change, each
checked against the source's fingerprint before anything is written
(``execution/capture.py: keyed_changes``): rows past the last captured cursor value; else
from that value on with deletes; else every row. Each test builds a real DuckDB project
through the CLI, reads the path ``plan --json`` predicts, checks the batch the build
records against it, and compares every model with its SQL run from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli
from tests.test_capture_exactness import assert_exact, build, make, sql

LATER = "TIMESTAMP '2026-03-01'"
FROM_LAST = "deletes or rows stamped with the last captured cursor value"
WHOLE = "diffed by key"  # in full, or in the buckets whose fingerprint changed


def planned_capture(root: Path) -> dict:
    run = run_cli("plan", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    return next(s for s in json.loads(run.output)["sources"] if s["source"] == "raw.customers")


def customers_batches(root: Path) -> list[tuple[int, str, int]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT batch, kind, \"rows\" FROM _sqlorch.batches WHERE relation = 'raw.customers' ORDER BY batch"
        ).fetchall()
    return [(int(b), str(k), int(n)) for b, k, n in rows]


def captured(root: Path, caplog: pytest.LogCaptureFixture) -> tuple[dict, tuple[int, str, int], bool]:
    """Plan, then build: the planned capture, the batch the build recorded, and whether the
    build warned that it diffed the source whole."""
    plan = planned_capture(root)
    caplog.clear()
    before = customers_batches(root)
    build(root)
    after = customers_batches(root)
    assert len(after) == len(before) + 1, after
    batch = after[-1]
    assert (plan["change"], plan["rows"], plan["batches"]) == (batch[1], batch[2], 1)
    return plan, batch, any(WHOLE in r.getMessage() for r in caplog.records)


def test_inserts_and_updates_past_the_cursor_are_taken_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        f"UPDATE raw.customers SET name = 'moved', updated_at = {LATER} WHERE customer_id = 3",
        f"INSERT INTO raw.customers VALUES (11, 'new', {LATER})",
    )
    plan, batch, whole = captured(root, caplog)
    assert batch[1:] == ("delta", 3)  # the update's old and new images, the insert's new image
    assert plan["reason"] == "3 old and new row images"  # no other path was needed
    assert not whole
    assert_exact(root)


def test_a_delete_is_found_without_a_whole_diff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "DELETE FROM raw.customers WHERE customer_id = 5",
        f"UPDATE raw.customers SET name = 'moved', updated_at = {LATER} WHERE customer_id = 3",
    )
    plan, batch, whole = captured(root, caplog)
    assert batch[1:] == ("delta", 3)  # the delete's old image, the update's two
    assert FROM_LAST in plan["reason"]
    assert not whole
    assert_exact(root)
    sql(root, "DELETE FROM raw.customers WHERE customer_id IN (1, 2)")  # deletes alone
    plan, batch, whole = captured(root, caplog)
    assert (batch[1:], whole) == (("delta", 2), False)
    assert_exact(root)


def test_an_update_that_leaves_its_cursor_is_diffed_whole_in_one_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "UPDATE raw.customers SET name = 'quiet' WHERE customer_id = 4",
        f"UPDATE raw.customers SET name = 'loud', updated_at = {LATER} WHERE customer_id = 6",
    )
    plan, batch, whole = captured(root, caplog)
    assert batch[1:] == ("delta", 4)
    assert WHOLE in plan["reason"]
    assert whole
    assert_exact(root)
    # the shadow is in step again: the next change is taken past the cursor alone
    sql(root, f"UPDATE raw.customers SET name = 'again', updated_at = {LATER} + INTERVAL 1 DAY WHERE customer_id = 4")
    plan, batch, whole = captured(root, caplog)
    assert (batch[1:], plan["reason"], whole) == (("delta", 2), "2 old and new row images", False)
    assert_exact(root)


def test_a_repeated_key_the_cursor_accounts_for_keeps_readers_incremental(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key diff cannot see a second copy of a row, so a repeated key is captured whole;
    once captured, changes the cursor accounts for are exact deltas again (checked whole by
    the fingerprint), while the key still repeats."""
    root = make(tmp_path / "p")
    build(root)
    sql(root, f"INSERT INTO raw.customers VALUES (7, 'twin', {LATER})")
    plan = planned_capture(root)
    assert plan["change"] == "full" and "repeated values" in plan["reason"]
    build(root)
    assert_exact(root)
    sql(root, f"UPDATE raw.customers SET name = 'moved', updated_at = {LATER} + INTERVAL 1 DAY WHERE customer_id = 2")
    plan, batch, whole = captured(root, caplog)
    assert (batch[1:], whole) == (("delta", 2), False)
    assert build(root)["staging.stg_customers"]["action"] == "skip"
    assert_exact(root)
    # the second copy updated past the cursor: its key's old images are both rows
    sql(root, f"UPDATE raw.customers SET name = 'twin 2', updated_at = {LATER} + INTERVAL 2 DAY WHERE name = 'twin'")
    build(root)
    assert_exact(root)
