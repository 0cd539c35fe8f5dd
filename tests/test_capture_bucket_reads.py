"""What a capture by bucket fingerprints reads of the shadow (``execution/capture.py``,
``_taken_fingerprint`` and ``_keep_buckets``). The source's and the shadow's rows of the
changed buckets are copied once for the diff; after it, the shadow holds the source's copy
there. So the shadow's new fingerprint and its changed buckets' fingerprints are computed
from the two copies (a few rows), never by hashing the shadow whole again: at TPC-H sf 1
those two scans of 6M lineitems were a quarter of the capture. Checked from outside, with
DuckDB's profile of every statement, against the state recomputed from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from sqlorch.adapters.duckdb import DuckDBAdapter
from sqlorch.state.store import shadow_table
from tests.test_capture_buckets import ITEMS, assert_buckets_describe_the_shadow, make
from tests.test_capture_exactness import assert_exact, sql
from tests.test_noop_build import build as profiled_build

SHADOW = '"_sqlorch"."shadow__raw__items"'


def _profiled(root: Path) -> Path:
    (root / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev: {type: duckdb, path: warehouse.duckdb, profile_log: target/profile.jsonl}\n"
    )
    return root


def _recorded_and_whole(root: Path) -> tuple[str, str]:
    """The shadow's recorded fingerprint, and the one it has hashed whole now."""
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT fingerprint FROM _sqlorch.relations WHERE relation = 'raw.items'").fetchone()
    assert row is not None
    adapter = DuckDBAdapter({"path": str(root / "warehouse.duckdb")})
    try:
        whole = adapter.fingerprint(shadow_table(ITEMS), ["id", "cat", "price", "name"])
    finally:
        adapter.close()
    assert whole is not None
    return str(row[0]), whole


def test_the_shadow_is_read_once_per_capture_of_changed_buckets(cli, tmp_path: Path) -> None:
    root = _profiled(make(tmp_path / "p"))
    profiled_build(cli, root)
    sql(
        root,
        "UPDATE raw.items SET price = price + 1 WHERE id IN (5, 77, 1999)",
        "DELETE FROM raw.items WHERE id = 12",
        "INSERT INTO raw.items VALUES (5000, 1, 2.00, 'new'), (NULL, 2, 3.00, 'null key')",
    )
    _, statements = profiled_build(cli, root)
    reads = [s for s in statements if SHADOW in s]
    # the copy of its changed buckets for the diff, then the batch's keys replaced in it
    assert len(reads) == 3, reads
    assert "sqlorch_tmp_shadowed" in reads[0], reads
    assert reads[1].startswith(f"DELETE FROM {SHADOW}") and reads[2].startswith(f"INSERT INTO {SHADOW}"), reads
    recorded, whole = _recorded_and_whole(root)
    assert recorded == whole
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)
    # the record describes the shadow: nothing changed is nothing diffed
    _, statements = profiled_build(cli, root)
    assert not [s for s in statements if SHADOW in s], statements
    # a NULL key's row deleted, another updated: the same again
    sql(root, "DELETE FROM raw.items WHERE id IS NULL", "UPDATE raw.items SET name = 'again' WHERE id = 5000")
    _, statements = profiled_build(cli, root)
    assert len([s for s in statements if SHADOW in s]) == 3, statements
    recorded, whole = _recorded_and_whole(root)
    assert recorded == whole
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)


def test_a_recorded_fingerprint_that_does_not_move_to_the_sources_is_healed(cli, tmp_path: Path) -> None:
    """Moved by the copies, a wrong record (another engine version's hash) stays wrong: it
    must come out as the source's fingerprint, else the shadow is hashed whole."""
    root = _profiled(make(tmp_path / "p"))
    profiled_build(cli, root)
    sql(
        root,
        "UPDATE _sqlorch.relations SET fingerprint = '2000:17' WHERE relation = 'raw.items'",
        "UPDATE raw.items SET price = 0 WHERE id = 1500",
    )
    _, statements = profiled_build(cli, root)
    assert [s for s in statements if s.startswith("SELECT COUNT(*)") and f"FROM {SHADOW} AS t" in s], statements
    recorded, whole = _recorded_and_whole(root)
    assert recorded == whole
    _, statements = profiled_build(cli, root)
    assert not [s for s in statements if SHADOW in s], statements
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)


def test_plan_predicts_a_capture_by_buckets_in_one_query(cli, tmp_path: Path) -> None:
    """``plan`` writes nothing, so it cannot copy the changed buckets as the build does: its
    prediction is one query whose parts share them as CTEs. Asked in several queries, each
    evaluated the per-bucket pass over the source again (TPC-H sf 1: 11 s of ``plan`` where
    the build's capture took 2.6 s). The predicted batch is the one the build records."""
    root = _profiled(make(tmp_path / "p"))
    profiled_build(cli, root)
    sql(
        root,
        "UPDATE raw.items SET price = price + 1 WHERE id IN (5, 77)",
        "DELETE FROM raw.items WHERE id = 12",
        "INSERT INTO raw.items VALUES (5000, 1, 2.00, 'new'), (NULL, 2, 3.00, 'null key')",
    )
    log = root / "target" / "profile.jsonl"
    log.unlink(missing_ok=True)
    shown = cli("plan", "--project-dir", root)
    assert shown.exit_code == 0, shown.output
    profiles = [json.loads(line) for line in log.read_text().splitlines()]
    statements = [str((p.get("query") or {}).get("sql") or p.get("query_name")) for p in profiles]
    source = [s for s in statements if '"raw"."items"' in s]
    # its row count moved (no whole fingerprint taken: ``_count_moved``): the prediction alone
    assert len(source) == 1 and source[0].startswith("WITH"), source
    assert source[0].count(SHADOW) == 1, source[0]
    # two updates (old and new images), a delete, two inserts
    assert "7 old and new row images" in shown.output, shown.output
    actions, _ = profiled_build(cli, root)
    assert actions["marts.items"] == "incremental", actions
