"""bench/statements.py: the per-statement breakdown of a build, read from the DuckDB profile
log a real build writes (the events figures of issue 11 are read with it)."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import statements  # bench/ is a folder of scripts, not a package


def test_a_builds_statements_slowest_first_with_their_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "models" / "marts" / "per_day.sql").write_text(
        "SELECT day, count(*) AS events FROM raw.events GROUP BY day\n"
    )
    db, log = tmp_path / "warehouse.duckdb", tmp_path / "profile.jsonl"
    (tmp_path / "profiles.yml").write_text(
        f'target: dev\ntargets:\n  dev:\n    type: duckdb\n    path: "{db}"\n    profile_log: "{log}"\n'
    )
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.events AS SELECT i AS id, i % 7 AS day FROM range(5000) t(i)")
    built = run_cli("build", "--project-dir", tmp_path)
    assert built.exit_code == 0, built.output

    timed = statements.timed_statements(log)
    assert [t.seconds for t in timed] == sorted((t.seconds for t in timed), reverse=True)
    assert all(t.seconds >= 0 for t in timed) and sum(t.seconds for t in timed) > 0
    model = [t for t in timed if t.sql.startswith('CREATE TABLE "marts"."per_day"') or "per_day" in t.sql[:80]]
    assert model and max(t.rows for t in model) >= 5000, [t.sql[:80] for t in timed]

    assert statements.main([str(log), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{len(timed)} statements, ") and "rows scanned" in lines[0]
    assert len(lines) == 4
