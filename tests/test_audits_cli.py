"""Audits on DuckDB through the CLI: declared in headers, YAML and custom files, on sources,
checked by compile, reported in the summary and in run_results.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb

from tests.conftest import Run, assert_error, write_files

PROJECT = {
    "models/sources.yml": """
        sources:
          raw.users:
            unique_key: id
            audits: [not_null(email)]
            audits_warn: ["accepted_values(plan, 'free', 'pro')"]
    """,
    "models/marts/users.sql": """
        -- audits: unique(id), no_gmail(column => email)
        SELECT id, email, plan FROM raw.users
    """,
    "models/marts/plans.sql": "SELECT plan, count(*) AS n FROM marts.users GROUP BY plan",
    "models/checks.yml": """
        models:
          marts.plans:
            audits:
              - row_count(min => 1)
    """,
    "audits/no_gmail.sql": "SELECT * FROM this WHERE :column LIKE '%@gmail.com'",
}


def _sql(project: Path, *statements: str) -> None:
    with duckdb.connect(str(project / "warehouse.duckdb")) as connection:
        for statement in statements:
            connection.execute(statement)


def _rows(project: Path, query: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(project / "warehouse.duckdb")) as connection:
        return connection.execute(query).fetchall()


def _results(project: Path) -> dict[str, dict[str, object]]:
    payload = json.loads((project / "target" / "run_results.json").read_text())
    return {r["model"]: r for r in payload["results"]}


def test_source_yaml_and_custom_audits(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = write_files(tmp_path / "p", PROJECT)
    _sql(
        project,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.users (id INT, email VARCHAR, plan VARCHAR)",
        "INSERT INTO raw.users VALUES (1, 'a@x.org', 'free'), (2, 'b@x.org', 'pro')",
    )
    assert cli("compile", "--project-dir", project).exit_code == 0
    run = cli("build", "--project-dir", project)
    assert run.exit_code == 0, run.output
    assert "audits: 5 pass" in run.output
    statuses = {a["name"]: a["status"] for a in _results(project)["marts.users"]["audits"]}  # type: ignore[union-attr]
    assert statuses == {
        "not_null(email)": "pass",
        "accepted_values(plan, 'free', 'pro')": "pass",
        "unique(id)": "pass",
        "no_gmail(column => email)": "pass",
    }

    # a bad change at the source: the source audit blocks every reader, the warn audit warns
    _sql(project, "INSERT INTO raw.users VALUES (3, NULL, 'gold')")
    run = cli("build", "--project-dir", project)
    assert run.exit_code == 1
    results = _results(project)
    assert results["marts.users"]["status"] == "error" and results["marts.plans"]["status"] == "skipped"
    audits = {a["name"]: a for a in results["marts.users"]["audits"]}  # type: ignore[union-attr]
    assert audits["not_null(email)"]["status"] == "fail" and audits["not_null(email)"]["bad_rows"] == 1
    assert audits["not_null(email)"]["sample"] == [[3, None, "gold"]]
    assert audits["accepted_values(plan, 'free', 'pro')"]["status"] == "warn"
    assert "audit fail raw.users: not_null(email): 1 bad row(s)" in run.output
    assert _rows(project, "SELECT count(*) FROM marts.users") == [(2,)]

    # the NULL fixed at the source: the model's own custom audit now blocks the gmail row
    _sql(
        project,
        "UPDATE raw.users SET email = 'c@x.org', plan = 'pro' WHERE id = 3",
        "INSERT INTO raw.users VALUES (4, 'd@gmail.com', 'free')",
    )
    run = cli("build", "--project-dir", project)
    assert run.exit_code == 1
    audits = {a["name"]: a for a in _results(project)["marts.users"]["audits"]}  # type: ignore[union-attr]
    assert audits["not_null(email)"]["status"] == "pass"
    assert audits["no_gmail(column => email)"]["status"] == "fail"
    assert audits["no_gmail(column => email)"]["sample"] == [[4, "d@gmail.com", "free"]]

    # everything fixed: published exactly, the pending batches included
    _sql(project, "DELETE FROM raw.users WHERE id = 4")
    run = cli("build", "--project-dir", project)
    assert run.exit_code == 0, run.output
    assert _rows(project, "SELECT id, email, plan FROM marts.users ORDER BY id") == [
        (1, "a@x.org", "free"),
        (2, "b@x.org", "pro"),
        (3, "c@x.org", "pro"),
    ]
    assert _rows(project, "SELECT plan, n FROM marts.plans ORDER BY plan") == [("free", 1), ("pro", 2)]


def test_compile_checks_audits(tmp_path: Path, cli: Callable[..., Run]) -> None:
    cases = [
        ("-- audits: not_null(idd)\n", "users.sql:1:12: error: audit not_null(idd): unknown column 'idd'"),
        ("-- audits: not_null(id), nope(id)\n", "users.sql:1:26: error: audit nope(id): unknown audit 'nope'"),
        ("-- audits: not_null(id\n", "users.sql:1:12: error:"),
        ("-- audits: row_count(1)\n", "users.sql:1:12: error: audit row_count(1): takes min => m and/or max => n"),
        (
            "-- audits_warn: relationships(id, raw.other.id)\n",
            "users.sql:1:17: error: audit relationships(id, raw.other.id): relationships target",
        ),
        (
            "-- audits: no_gmail(column => mail)\n",
            "users.sql:1:12: error: audit no_gmail(column => mail): unknown column",
        ),
    ]
    for header, fragment in cases:
        files = {**PROJECT, "models/marts/users.sql": header + "SELECT id, email, plan FROM raw.users\n"}
        files["models/sources.yml"] = "sources:\n  raw.users: {columns: {id: INT, email: VARCHAR, plan: VARCHAR}}\n"
        project = write_files(tmp_path / f"c{len(header)}", files)
        assert_error(cli("compile", "--project-dir", project), fragment)
    project = write_files(
        tmp_path / "yaml", {**PROJECT, "models/checks.yml": "models:\n  marts.nothing:\n    audits: [unique(x)]\n"}
    )
    assert_error(
        cli("compile", "--project-dir", project), "checks.yml:2:3: error: audits for unknown model 'marts.nothing'"
    )
    assert_error(cli("build", "--project-dir", project, "--audits", "maybe"), "error: --audits must be off, warn or on")


def test_plan_explain_shows_the_audit_queries(tmp_path: Path, cli: Callable[..., Run]) -> None:
    project = write_files(tmp_path / "p", PROJECT)
    _sql(project, "CREATE SCHEMA raw", "CREATE TABLE raw.users (id INT, email VARCHAR, plan VARCHAR)")
    run = cli("plan", "--project-dir", project, "--explain", "marts.users")
    assert run.exit_code == 0, run.output
    assert "-- audit unique(id) (blocks), before the write commits: its bad rows" in run.output
    assert "LIKE '%@gmail.com'" in run.output  # the custom audit, its placeholder filled
    assert "-- audit" not in cli("plan", "--project-dir", project, "--explain", "marts.users", "--audits", "off").output
