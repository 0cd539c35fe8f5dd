"""Build end to end on a real DuckDB file: the demo project, views, full refresh, threads."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.conftest import REPO

MODELS = [
    "staging.stg_customers",
    "staging.stg_orders",
    "intermediate.int_orders_enriched",
    "marts.customer_orders",
    "marts.customer_summary",
    "marts.daily_revenue",
]


def model_sql(root: Path, ref: str) -> str:
    schema, name = ref.split(".")
    return (root / "models" / schema / f"{name}.sql").read_text()


def tables(root: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return {ref: sorted(con.sql(f"SELECT * FROM {ref}").fetchall(), key=repr) for ref in MODELS}


def expected_from_sql(root: Path) -> dict[str, list[tuple]]:
    """Run every model's SQL directly on a scratch database built from the seeds."""
    con = duckdb.connect()
    con.sql("CREATE SCHEMA seeds")
    for csv in sorted((root / "seeds").glob("*.csv")):
        con.sql(f"CREATE TABLE seeds.{csv.stem} AS SELECT * FROM read_csv_auto('{csv}')")
    out = {}
    for ref in MODELS:
        schema = ref.split(".")[0]
        con.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.sql(f"CREATE TABLE {ref} AS {model_sql(root, ref)}")
        out[ref] = sorted(con.sql(f"SELECT * FROM {ref}").fetchall(), key=repr)
    con.close()
    return out


def results(root: Path) -> dict[str, dict]:
    return {r["model"]: r for r in json.loads((root / "target/run_results.json").read_text())["results"]}


def test_demo_project_builds_and_matches_plain_sql(demo_project, cli):
    run = cli("build", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    built = tables(demo_project)
    assert built == expected_from_sql(demo_project)
    assert built["marts.daily_revenue"]  # not trivially empty
    by_model = results(demo_project)
    assert set(by_model) == {*MODELS, "seeds.customers", "seeds.orders"}
    for result in by_model.values():
        assert {"model", "status", "action", "reason", "rows", "seconds"} <= set(result)
        assert result["status"] == "success" and result["action"] == "full"
        assert isinstance(result["seconds"], float) and result["seconds"] >= 0
        assert result["reason"]
    with duckdb.connect(str(demo_project / "warehouse.duckdb"), read_only=True) as con:
        for ref in MODELS:
            if ref != "marts.customer_summary":  # a view: rows are not counted at build
                assert by_model[ref]["rows"] == con.sql(f"SELECT count(*) FROM {ref}").fetchall()[0][0], ref


def test_demo_second_build_skips_and_keeps_data(demo_project, cli):
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    before = tables(demo_project)
    run = cli("build", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    assert tables(demo_project) == before
    assert {r["action"] for r in results(demo_project).values()} == {"skip"}


def test_seed_change_propagates(demo_project, cli):
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    orders = demo_project / "seeds/orders.csv"
    orders.write_text(orders.read_text() + "2001,1,2024-03-09,completed,999.99\n")
    run = cli("build", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    assert tables(demo_project) == expected_from_sql(demo_project)


def test_view_materialization(demo_project, cli):
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    with duckdb.connect(str(demo_project / "warehouse.duckdb"), read_only=True) as con:
        kinds = dict(
            con.sql("SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables").fetchall()
        )
    assert kinds["marts.customer_summary"] == "VIEW"
    assert kinds["marts.daily_revenue"] == "BASE TABLE"


def test_full_refresh(demo_project, cli):
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    with duckdb.connect(str(demo_project / "warehouse.duckdb")) as con:
        con.sql("DELETE FROM marts.daily_revenue")  # damage outside sqlorch
    run = cli("build", "--project-dir", demo_project, "--full-refresh")
    assert run.exit_code == 0, run.output
    assert {r["action"] for r in results(demo_project).values()} == {"full"}
    assert tables(demo_project) == expected_from_sql(demo_project)


def test_threads_give_same_result(tmp_path, cli):
    import shutil

    outputs = []
    for threads in (1, 4):
        root = tmp_path / f"t{threads}"
        shutil.copytree(REPO / "models", root / "models")
        shutil.copytree(REPO / "seeds", root / "seeds")
        run = cli("build", "--project-dir", root, "--threads", str(threads))
        assert run.exit_code == 0, run.output
        outputs.append(tables(root))
        statuses = {m: r["status"] for m, r in results(root).items()}
        assert set(statuses.values()) == {"success"}
    assert outputs[0] == outputs[1]


def test_select_builds_only_selected(demo_project, cli):
    run = cli("build", "--project-dir", demo_project, "--select", "+stg_orders")
    assert run.exit_code == 0, run.output
    assert set(results(demo_project)) == {"seeds.orders", "staging.stg_orders"}
    with duckdb.connect(str(demo_project / "warehouse.duckdb"), read_only=True) as con:
        names = {
            r[0]
            for r in con.sql(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema IN ('staging', 'marts')"
            ).fetchall()
        }
    assert names == {"staging.stg_orders"}


def test_profile_duckdb_path_and_schema_prefix(demo_project, cli):
    (demo_project / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev: {type: duckdb, path: other.duckdb, schema_prefix: dev_}\n"
    )
    run = cli("build", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    assert not (demo_project / "warehouse.duckdb").exists()
    with duckdb.connect(str(demo_project / "other.duckdb"), read_only=True) as con:
        rows = con.sql("SELECT count(*) FROM dev_marts.daily_revenue").fetchall()[0][0]
    assert rows == len(expected_from_sql(demo_project)["marts.daily_revenue"])


def test_profile_log_records_each_statement(demo_project, cli):
    (demo_project / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev: {type: duckdb, profile_log: target/profile.jsonl}\n"
    )
    run = cli("build", "--project-dir", demo_project)
    assert run.exit_code == 0, run.output
    profiles = [json.loads(line) for line in (demo_project / "target/profile.jsonl").read_text().splitlines()]
    # DuckDB 2.x nests the statement under query.sql; 1.x has it as query_name
    queries = " ".join(str(p.get("query", {}).get("sql") or p.get("query_name")) for p in profiles)
    # every model's write is profiled, with DuckDB's operator tree
    assert "daily_revenue" in queries and "customer_orders" in queries
    assert all(p.get("children") or p.get("operator") for p in profiles)


def test_vars_in_build(make_project, cli):
    root = make_project(
        {"sqlorch.yml": "vars: {n: 2}\n", "models/s/a.sql": "SELECT range AS i FROM range({{ var('n') }})"}
    )
    assert cli("build", "--project-dir", root, "--vars", "{n: 5}").exit_code == 0
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM s.a").fetchall()[0][0] == 5


def test_rendering_leaves_every_planned_statement_as_it_was(demo_project, cli):
    """The DuckDB adapter renders a statement without copying it first (``render``): every
    statement of the demo's plans (a first build, then a changed seed), of every branch, is
    the same tree after rendering, and renders as its copy does."""
    from sqlorch import api
    from sqlorch.adapters.duckdb import DuckDBAdapter
    from sqlorch.planning.steps import flatten

    options = api.Options(project_dir=demo_project)
    plans = [api.plan(options)]
    assert cli("build", "--project-dir", demo_project).exit_code == 0
    orders = demo_project / "seeds" / "orders.csv"
    lines = orders.read_text().splitlines()
    orders.write_text("\n".join([*lines[:-1], lines[-1].replace(",", ",1", 1)]) + "\n")  # one order changed
    plans.append(api.plan(options))
    adapter = DuckDBAdapter({})
    statements = [s.sql for plan in plans for step in plan.steps for s in flatten(step.statements) if s.sql]
    assert len(statements) > 20
    for statement in statements:
        before = statement.copy()
        assert adapter.render(statement) == before.sql(dialect="duckdb")
        assert statement == before
