"""Bad input through the CLI: every error names its file, exits 1, prints no traceback."""

from __future__ import annotations

import json

import duckdb
import pytest

from tests.conftest import assert_error


def test_syntax_error(make_project, cli):
    root = make_project({"models/s/a.sql": "-- tags: x\nSELECT id,\n  FROM WHERE t"})
    run = cli("compile", "--project-dir", root)
    assert_error(run, f"{root / 'models/s/a.sql'}:3:8: error: syntax error")


def test_not_a_select(make_project, cli):
    root = make_project({"models/s/a.sql": "DELETE FROM t"})
    assert_error(cli("compile", "--project-dir", root), "models/s/a.sql:1:1", "SELECT")


def test_two_statements(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a; SELECT 2 AS b"})
    assert_error(cli("compile", "--project-dir", root), "models/s/a.sql", "exactly one SELECT")


def test_unknown_model_in_select(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    for command in ("compile", "plan", "build", "ls"):
        assert_error(cli(command, "--project-dir", root, "--select", "s.nope"), str(root), "s.nope", "`sqlorch ls`")


def test_selection_left_empty_by_exclude(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    run = cli("build", "--project-dir", root, "--select", "a", "--exclude", "s.a")
    assert_error(run, "leave nothing selected", "sqlorch ls")
    assert not (root / "warehouse.duckdb").exists()


def test_ls_lists_selected_models_and_seeds(make_project, cli):
    root = make_project(
        {
            "seeds/people.csv": "id\n1\n",
            "models/s/a.sql": "-- materialized: view\nSELECT id FROM seeds.people",
            "models/m/b.sql": "SELECT id FROM s.a",
            "models/m/c.sql": "SELECT 1 AS x",
        }
    )
    run = cli("ls", "--project-dir", root, "--select", "+b")
    assert run.exit_code == 0, run.output
    lines = [line.split() for line in run.output.splitlines()]
    assert lines == [
        ["seeds.people", "seed", "seed", "seeds/people.csv"],
        ["s.a", "model", "view", "models/s/a.sql"],
        ["m.b", "model", "incremental", "models/m/b.sql"],
    ]
    listed = json.loads(cli("ls", "--project-dir", root, "--exclude", "+b", "--json").output)
    assert listed == [{"relation": "m.c", "kind": "model", "materialized": "incremental", "path": "models/m/c.sql"}]
    assert not (root / "warehouse.duckdb").exists()  # no warehouse needed


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one(make_project, cli, threads):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    run = cli("build", "--project-dir", root, "--threads", threads)
    assert_error(run, f"error: --threads must be at least 1, not {threads}")
    assert not (root / "warehouse.duckdb").exists()


def test_source_cursor_missing_in_warehouse(make_project, cli):
    """Without declared columns the check runs at build, against the warehouse's columns."""
    root = make_project(
        {
            "models/sources.yml": "sources:\n  raw.orders:\n    cursor: loaded_at\n    unique_key: id\n",
            "models/s/a.sql": "SELECT id FROM raw.orders",
        }
    )
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.sql("CREATE SCHEMA raw; CREATE TABLE raw.orders (id INT, loadedat TIMESTAMP)")
        con.sql("INSERT INTO raw.orders VALUES (1, now())")
    assert cli("compile", "--project-dir", root).exit_code == 0  # no columns declared: nothing to check against
    for command in ("plan", "build"):
        run = cli(command, "--project-dir", root)
        assert_error(
            run,
            f"{root / 'models/sources.yml'}:3:5: error: cursor 'loaded_at' of source raw.orders is not "
            "one of its columns",
            "did you mean 'loadedat'?",
        )
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM raw.orders").fetchall() == [(1,)]
        assert con.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 's'").fetchall() == [(0,)]


def test_cycle(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT id FROM s.b", "models/s/b.sql": "SELECT id FROM s.a"})
    for command in ("compile", "build"):
        run = cli(command, "--project-dir", root)
        assert_error(run, "dependency cycle: ")
        assert "s.a -> s.b -> s.a" in run.output or "s.b -> s.a -> s.b" in run.output
        assert str(root) in run.output  # the error names a file of the cycle


def test_two_models_claim_one_relation(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a", "models/s/x/a.sql": "SELECT 2 AS a"})
    assert_error(cli("compile", "--project-dir", root), "models/s/x/a.sql:1:1", "two files claim the relation s.a")


def test_ambiguous_bare_name(make_project, cli):
    root = make_project(
        {"models/s/a.sql": "SELECT 1 AS id", "models/t/a.sql": "SELECT 1 AS id", "models/u/m.sql": "SELECT id FROM a"}
    )
    assert_error(cli("compile", "--project-dir", root), "models/u/m.sql:1:16", "'a' is ambiguous", "s.a", "t.a")


def test_missing_env_var(make_project, cli, monkeypatch):
    monkeypatch.delenv("SQLORCH_T_MISSING", raising=False)
    root = make_project({"models/s/a.sql": "SELECT '{{ env_var(\"SQLORCH_T_MISSING\") }}' AS a"})
    assert_error(cli("compile", "--project-dir", root), "models/s/a.sql", "SQLORCH_T_MISSING", "is not set")


def test_missing_env_var_in_profile(make_project, cli, monkeypatch):
    monkeypatch.delenv("SQLORCH_T_SECRET", raising=False)
    root = make_project(
        {
            "models/s/a.sql": "SELECT 1 AS a",
            "profiles.yml": "target: p\ntargets:\n  p:\n    type: postgres\n"
            "    password: \"{{ env_var('SQLORCH_T_SECRET') }}\"\n",
        }
    )
    assert_error(cli("compile", "--project-dir", root), "profiles.yml", "SQLORCH_T_SECRET")


def test_malformed_profiles_yml(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a", "profiles.yml": "target: dev\ntargets:\n  dev: [\n"})
    assert_error(cli("compile", "--project-dir", root), f"{root / 'profiles.yml'}:", "invalid YAML")


def test_profiles_yml_without_targets(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a", "profiles.yml": "target: dev\n"})
    assert_error(cli("compile", "--project-dir", root), "profiles.yml:1:1", "targets")


def test_profiles_dir_without_profiles(make_project, cli, tmp_path):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    assert_error(cli("compile", "--project-dir", root, "--profiles-dir", tmp_path / "empty"), "no profiles.yml")


def test_malformed_yaml_source_file(make_project, cli):
    root = make_project(
        {"models/s/a.sql": "SELECT 1 AS a", "models/sources.yml": "sources:\n  raw.e:\n    cursor: x\n   bad: [\n"}
    )
    assert_error(cli("compile", "--project-dir", root), f"{root / 'models/sources.yml'}:", "invalid YAML")


def test_source_file_wrong_shape(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a", "models/sources.yml": "sources:\n  - raw.e\n"})
    assert_error(cli("compile", "--project-dir", root), "models/sources.yml", "sources:")


def test_unknown_target(make_project, cli):
    root = make_project(
        {"models/s/a.sql": "SELECT 1 AS a", "profiles.yml": "target: dev\ntargets:\n  dev: {type: duckdb}\n"}
    )
    assert_error(
        cli("compile", "--project-dir", root, "--target", "prod"), "profiles.yml", "unknown target 'prod'", "dev"
    )


def test_unknown_target_without_profiles(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    assert_error(cli("build", "--project-dir", root, "--target", "prod"), "unknown target 'prod'")


def test_unknown_target_type(make_project, cli):
    root = make_project(
        {"models/s/a.sql": "SELECT 1 AS a", "profiles.yml": "target: dev\ntargets:\n  dev: {type: oracle}\n"}
    )
    assert_error(cli("compile", "--project-dir", root), "profiles.yml", "type must be one of")


def test_secret_never_printed(make_project, cli, monkeypatch):
    monkeypatch.setenv("SQLORCH_T_PW", "hunter2-secret")
    root = make_project(
        {
            "models/s/a.sql": "SELECT 1 AS a",
            "profiles.yml": "target: dev\ntargets:\n  dev: {type: duckdb, path: \"{{ env_var('SQLORCH_T_PW') }}\","
            " bogus: \"{{ env_var('SQLORCH_T_PW') }}\"}\n",
        }
    )
    run = cli("compile", "--project-dir", root, "--target", "nope")
    assert_error(run, "unknown target 'nope'")
    assert "hunter2" not in run.output


def test_bad_vars_option(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a"})
    assert_error(cli("compile", "--project-dir", root, "--vars", "[1, 2]"), "--vars must be a YAML mapping")


def test_bad_seed(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT 1 AS a", "seeds/people.csv": "id,name\n1\n"})
    assert_error(cli("compile", "--project-dir", root), "seeds/people.csv:2:1", "fields")


PROJECT = {
    "seeds/people.csv": "id,name\n1,ada\n2,grace\n",
    "models/s/good.sql": "SELECT id, name FROM seeds.people",
    "models/s/bad.sql": "SELECT id, name FROM seeds.people",
    "models/m/downstream.sql": "SELECT id, upper(name) AS name FROM s.bad",
    "models/m/independent.sql": "SELECT id, name FROM s.good",
}


@pytest.mark.parametrize("materialized", ["incremental", "table"])
def test_model_failing_in_warehouse(make_project, cli, materialized):
    files = {**PROJECT, "models/s/bad.sql": f"-- materialized: {materialized}\n" + PROJECT["models/s/bad.sql"]}
    root = make_project(files)
    assert cli("build", "--project-dir", root).exit_code == 0
    (root / "models/s/bad.sql").write_text(
        f"-- materialized: {materialized}\nSELECT id, CAST(name AS INTEGER) AS name FROM seeds.people"
    )
    (root / "models/s/good.sql").write_text("SELECT id, name || '!' AS name FROM seeds.people")
    run = cli("build", "--project-dir", root)
    assert_error(run, "models/s/bad.sql", "Conversion Error")
    results = {r["model"]: r for r in json.loads((root / "target/run_results.json").read_text())["results"]}
    assert results["s.bad"]["status"] == "error"
    assert results["m.downstream"]["status"] == "skipped"
    assert results["s.good"]["status"] == "success"
    assert results["m.independent"]["status"] == "success"
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT id, name FROM s.bad ORDER BY id").fetchall() == [(1, "ada"), (2, "grace")]
        assert con.sql("SELECT id, name FROM m.downstream ORDER BY id").fetchall() == [(1, "ADA"), (2, "GRACE")]
        assert con.sql("SELECT name FROM m.independent ORDER BY id").fetchall() == [("ada!",), ("grace!",)]


def test_first_build_failure(make_project, cli):
    root = make_project({**PROJECT, "models/s/bad.sql": "SELECT id, CAST(name AS INTEGER) AS name FROM seeds.people"})
    run = cli("build", "--project-dir", root)
    assert_error(run, "models/s/bad.sql")
    results = {r["model"]: r["status"] for r in json.loads((root / "target/run_results.json").read_text())["results"]}
    assert results == {
        "seeds.people": "success",
        "s.good": "success",
        "s.bad": "error",
        "m.downstream": "skipped",
        "m.independent": "success",
    }


def test_summary_of_a_build_where_nothing_succeeded(make_project, cli):
    root = make_project({"models/s/a.sql": "SELECT no_such_column FROM range(3) AS r"})
    run = cli("build", "--project-dir", root)
    assert run.exit_code == 1, run.output
    assert "done: 1 error in " in run.output, run.output
    assert "()" not in run.output, run.output
