"""The hostile-input corpus: one case is a project, the tables sqlorch does not own, a
command, and what must come out of it.

Every case asserts the same four things (issue 9):

- the exit code;
- the message shape: ``path:line:col: error:`` where a file is to blame (``location``),
  and every expected fragment;
- no traceback, no "internal error";
- every relation sqlorch does not own (the tables ``sources_sql`` created) is byte for
  byte unchanged: its column names and types, and its rows in a fixed order, read before
  the case's command and after it.

Cases live in ``tests/hostile/test_*_cases.py`` as lists of ``Case`` run through
``run_case``; the list is the corpus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tests.conftest import Run, run_cli

WAREHOUSE = "warehouse.duckdb"  # the default target: a DuckDB file in the project folder

Snapshot = dict[str, tuple[list[tuple[str, str]], list[tuple]]]  # table -> (columns, rows)


@dataclass(frozen=True)
class Case:
    id: str
    files: Mapping[str, str | bytes]  # project files; bytes are written as they are (bad encodings)
    args: Sequence[str]  # the command under test, e.g. ("build",); --project-dir is added
    expect_exit: int = 1
    expect: Sequence[str] = ()  # fragments that must appear in the output
    location: str | None = None  # regex the output must match, e.g. r"models/s/a\.sql:\d+:\d+: error:"
    sources_sql: Sequence[str] = ()  # run first, on the project's warehouse: the tables sqlorch does not own
    before: Sequence[Sequence[str]] = ()  # commands run before the one under test; each must exit 0
    between_sql: Sequence[str] = ()  # run after ``before``, before the snapshot
    env: Mapping[str, str] = field(default_factory=dict)


def _quoted(schema: str, name: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


def unowned_tables(db_path: Path) -> list[str]:
    """Every table and view outside ``_sqlorch``, as ``schema.name`` (quoted)."""
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.sql(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name <> '_sqlorch' "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE NOT internal AND schema_name <> '_sqlorch'"
        ).fetchall()
    return sorted(_quoted(schema, name) for schema, name in rows)


def unowned_snapshot(db_path: Path, tables: Sequence[str]) -> Snapshot:
    """Columns with their types, and all rows in a fixed order, of each table; a table
    that is gone maps to ``([], [])`` so that losing it shows as a difference."""
    snapshot: Snapshot = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        for table in tables:
            try:
                relation = con.sql(f"SELECT * FROM {table}")
            except duckdb.Error:
                snapshot[table] = ([], [])
                continue
            columns = [(str(name), str(kind)) for name, kind in zip(relation.columns, relation.types, strict=True)]
            snapshot[table] = (columns, sorted(relation.fetchall(), key=repr))
    return snapshot


def write_project(root: Path, files: Mapping[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _run_sql(db_path: Path, statements: Sequence[str]) -> None:
    if statements:
        with duckdb.connect(str(db_path)) as con:
            for statement in statements:
                con.execute(statement)


def assert_clean_failure(run: Run, case: Case) -> None:
    """The exit code, no traceback, the fragments and the location shape of one run."""
    assert run.exception is None, f"{case.id}: unexpected exception {run.exception!r}\n{run.output}"
    assert run.exit_code == case.expect_exit, f"{case.id}: exit {run.exit_code}\n{run.output}"
    assert "Traceback" not in run.output, f"{case.id}:\n{run.output}"
    assert "internal error" not in run.output, f"{case.id}:\n{run.output}"
    for fragment in case.expect:
        assert fragment in run.output, f"{case.id}: {fragment!r} not in:\n{run.output}"
    if case.location is not None:
        assert re.search(case.location, run.output), f"{case.id}: no match for {case.location!r} in:\n{run.output}"


def run_case(case: Case, tmp_path: Path, monkeypatch: object | None = None) -> Run:
    """Set the case up, run its command, assert the four things; returns the run for
    further checks. Pass pytest's ``monkeypatch`` when the case sets ``env``."""
    root = write_project(tmp_path / "project", case.files)
    db = root / WAREHOUSE
    if case.env:
        assert monkeypatch is not None, f"{case.id}: a case with env needs monkeypatch"
        for name, value in case.env.items():
            monkeypatch.setenv(name, value)  # type: ignore[attr-defined]
    _run_sql(db, case.sources_sql)
    foreign = unowned_tables(db) if db.exists() else []
    for command in case.before:
        setup = run_cli(*command, "--project-dir", root)
        assert setup.exit_code == 0, f"{case.id}: set-up {command} failed\n{setup.output}"
    _run_sql(db, case.between_sql)
    before = unowned_snapshot(db, foreign) if foreign else {}
    run = run_cli(*case.args, "--project-dir", root)
    assert_clean_failure(run, case)
    if foreign:
        after = unowned_snapshot(db, foreign)
        changed = [table for table in foreign if before[table] != after[table]]
        assert not changed, f"{case.id}: tables sqlorch does not own changed: {changed}\n{run.output}"
    return run
