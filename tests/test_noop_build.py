"""A build with nothing to do reads its metadata once and writes only its run history;
a keyed source that did not change is not diffed, yet any change to it is still caught.

What a build sends to DuckDB is read from outside, through the ``profile_log`` target
option (DuckDB's own profile of every statement).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sqlorch.state.store import PRUNE_EVERY, PRUNE_ROWS
from tests.conftest import write_files

MODELS = {
    "marts.users_by_plan": (
        "SELECT plan, count(*) AS users, count(country) AS with_country FROM raw.users GROUP BY plan"
    ),
    "marts.events_per_user": (
        "SELECT e.user_id, u.plan, count(*) AS events FROM raw.events AS e "
        "LEFT JOIN raw.users AS u ON e.user_id = u.user_id GROUP BY e.user_id, u.plan"
    ),
    "staging.events": "SELECT event_id, user_id, _loaded_at FROM raw.events",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    files = {f"models/{ref.replace('.', '/')}.sql": sql for ref, sql in MODELS.items()}
    files["models/sources.yml"] = """
        sources:
          raw.events: {cursor: _loaded_at, append_only: true}
          raw.users: {unique_key: user_id}
        """
    files["profiles.yml"] = """
        target: dev
        targets:
          dev: {type: duckdb, path: warehouse.duckdb, profile_log: target/profile.jsonl}
        """
    root = write_files(tmp_path / "project", files)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.users AS SELECT range AS user_id, ['free', 'pro', 'team'][range % 3 + 1] AS plan, "
            "CASE WHEN range % 4 = 0 THEN NULL ELSE 'DE' END AS country FROM range(50)"
        )
        con.execute(
            "CREATE TABLE raw.events AS SELECT range AS event_id, range % 60 AS user_id, "
            "TIMESTAMP '2026-01-01' + INTERVAL (range) MINUTE AS _loaded_at FROM range(500)"
        )
    return root


def sql(root: Path, *statements: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


def build(cli, root: Path) -> tuple[dict[str, str], list[str]]:
    """Run a build; return each model's action and the statements DuckDB profiled."""
    log = root / "target" / "profile.jsonl"
    log.unlink(missing_ok=True)
    run = cli("build", "--project-dir", root)
    assert run.exit_code == 0, run.output
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    profiles = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # DuckDB 2.x nests the statement under query.sql; 1.x has it as query_name
    statements = [str((p.get("query") or {}).get("sql") or p.get("query_name")) for p in profiles]
    return {r["model"]: r["action"] for r in results}, statements


def assert_models_match_their_sql(root: Path) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        for ref, query in MODELS.items():
            built = sorted(con.execute(f"SELECT * FROM {ref}").fetchall(), key=repr)
            expected = sorted(con.execute(query).fetchall(), key=repr)
            assert built == expected, ref


def test_noop_build_reads_metadata_once_and_writes_only_run_history(cli, project):
    build(cli, project)
    actions, statements = build(cli, project)
    assert set(actions.values()) == {"skip"}
    catalog = [s for s in statements if "information_schema" in s.lower()]
    assert len(catalog) == 1, statements  # one catalog query for every table, not one per table
    assert not [s for s in statements if "chg__" in s or "shadow__" in s], statements
    writes = [s for s in statements if s.split()[0].upper() in {"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE"}]
    assert all('"_sqlorch"."runs"' in s or '"_sqlorch"."lease"' in s for s in writes), writes
    lease = [s for s in writes if '"_sqlorch"."lease"' in s]
    assert len(lease) == 2, lease  # the target's lease: taken and released (state/lease.py)
    # catalog, state, one check per source, run history, and the lease
    assert len(statements) <= 5 + len(lease), statements
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT count(DISTINCT run_id), count(*) FROM _sqlorch.runs").fetchall()[0]
    assert runs == (2, 2 * len(MODELS))


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE raw.users SET plan = 'team' WHERE user_id = 7",
        # the same plans and countries, on other rows: counts per value do not move
        "UPDATE raw.users SET plan = CASE WHEN user_id = 1 THEN 'free' ELSE 'pro' END WHERE user_id IN (0, 1)",
        "UPDATE raw.users SET country = NULL WHERE user_id = 5",
        "DELETE FROM raw.users WHERE user_id = 3",
        "INSERT INTO raw.users VALUES (NULL, 'team', NULL)",
        # the declared key repeats: captured whole, readers rebuilt (a key diff cannot see it)
        "INSERT INTO raw.users SELECT * FROM raw.users WHERE user_id = 2",
    ],
)
def test_unchanged_keyed_source_is_not_diffed_but_a_change_is_caught(cli, project, change):
    build(cli, project)
    _, statements = build(cli, project)
    assert not [s for s in statements if "shadow__raw__users" in s], statements  # no diff
    sql(project, change)
    actions, statements = build(cli, project)
    assert [s for s in statements if "shadow__raw__users" in s], statements  # diffed
    assert actions["marts.users_by_plan"] != "skip"
    assert_models_match_their_sql(project)
    actions, statements = build(cli, project)  # and quiet again
    assert set(actions.values()) == {"skip"}
    assert not [s for s in statements if "shadow__raw__users" in s], statements
    assert_models_match_their_sql(project)


def test_a_repeated_key_and_its_removal_are_both_exact(cli, project):
    build(cli, project)
    sql(project, "INSERT INTO raw.users SELECT * FROM raw.users WHERE user_id = 2")
    build(cli, project)
    assert_models_match_their_sql(project)
    # one copy goes away: the source no longer repeats the key, the copy taken last time does
    sql(project, "CREATE OR REPLACE TABLE raw.users AS SELECT DISTINCT * FROM raw.users")
    actions, _ = build(cli, project)
    assert actions["marts.users_by_plan"] != "skip"
    assert_models_match_their_sql(project)
    actions, _ = build(cli, project)  # unique again: quiet, then diffed by key as before
    assert set(actions.values()) == {"skip"}
    sql(project, "UPDATE raw.users SET plan = 'team' WHERE user_id = 3")
    build(cli, project)
    assert_models_match_their_sql(project)


def _log_batches(project: Path) -> list[int]:
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT _sqlorch_batch FROM _sqlorch.chg__raw__events ORDER BY 1").fetchall()
        return [int(batch) for (batch,) in rows]


def _append_events(project: Path, first: int, rows: int) -> None:
    sql(
        project,
        f"INSERT INTO raw.events SELECT {first} + range, range, "
        f"TIMESTAMP '2026-02-01' + INTERVAL ({first} + range) MINUTE FROM range({rows})",
    )


def test_appended_rows_are_captured_and_their_change_log_pruned(cli, project):
    """Small consumed batches stay until the consumed batch passes a multiple of
    PRUNE_EVERY (one DELETE per log every few builds, not every build); a batch of
    PRUNE_ROWS rows or more goes in the build that consumed it."""
    build(cli, project)
    _append_events(project, 1000, 5)
    actions, _ = build(cli, project)
    assert actions["staging.events"] == "incremental"
    assert_models_match_their_sql(project)
    lingering: list[int] = []
    # until one small batch lingers right after a prune: the next prune is then 7 builds off
    while not (lingering[-2:] == [0, 1]) and len(lingering) < 2 * PRUNE_EVERY:
        _append_events(project, 2000 + 10 * len(lingering), 5)
        build(cli, project)
        assert_models_match_their_sql(project)
        lingering.append(len(_log_batches(project)))
    assert max(lingering) < PRUNE_EVERY, lingering  # bounded: fewer than 8 batches linger
    assert lingering[-2:] == [0, 1], lingering  # deferred, then pruned
    _append_events(project, 10_000, PRUNE_ROWS)
    build(cli, project)
    # every consumer read the large batch: the prune after the build removed it and the rest
    assert _log_batches(project) == []
    assert_models_match_their_sql(project)


@pytest.mark.parametrize("recorded", ["NULL", "'42:17'"])
def test_a_missing_or_foreign_fingerprint_costs_one_diff(cli, project, recorded):
    """NULL: a capture died between clearing and writing it; a foreign value: e.g. another
    engine version's hash. Either way the next build diffs, then records the shadow's."""
    build(cli, project)
    sql(project, f"UPDATE _sqlorch.relations SET fingerprint = {recorded} WHERE relation = 'raw.users'")
    actions, statements = build(cli, project)
    assert set(actions.values()) == {"skip"}  # the diff found nothing
    assert [s for s in statements if "shadow__raw__users" in s], statements
    actions, statements = build(cli, project)
    assert not [s for s in statements if "shadow__raw__users" in s], statements
    assert_models_match_their_sql(project)
