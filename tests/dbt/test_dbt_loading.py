"""Loading dbt projects without dbt: relation names, configs, profiles, tests as audits,
plan notes and errors that point at the file and line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import duckdb
import pytest
from _shop import FIXTURE, create_raw
from sqlglot import exp

from sqlorch.config import load_target
from sqlorch.project.header import HeaderValue
from sqlorch.project.loader import load_project
from sqlorch.refs import TableRef
from tests.conftest import assert_error, run_cli, write_files


def _audit_text(value: HeaderValue | None) -> str:
    """Audit calls as the loader gives them to a model: one header value, joined with ', '."""
    return value.text if value is not None else ""


def _joined(*calls: str) -> str:
    return ", ".join(calls)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A copy of the shop fixture, its DuckDB file next to it (the profile's default)."""
    root = tmp_path / "shop"
    shutil.copytree(FIXTURE, root)
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_relations_follow_dbt_naming_and_the_project_override(shop: Path) -> None:
    project = load_project(shop)
    names = {str(ref) for ref in project.models}
    # staging and intermediate: <target schema>_<custom>; marts: the override's own rule
    assert {"main_staging.stg_orders", "main_intermediate.int_events", "marts.orders", "marts.customers"} <= names
    assert not any("int_payments_pivoted" in n or "stg_order_status" in n for n in names), "ephemeral: not built"
    assert not any("legacy_report" in n or "disabled_by_config" in n for n in names), "disabled: not loaded"
    assert {str(ref) for ref in project.seeds} == {
        "main_reference.country_codes",
        "main_reference.payment_methods",
        "main_reference.order_status",
    }
    orders = project.models[TableRef("main_intermediate", "int_orders_enriched")]
    assert "__dbt__cte__int_payments_pivoted AS (" in orders.sql  # the ephemeral model, inlined
    assert {str(r) for r in orders.depends_on} == {
        "main_staging.stg_orders",
        "main_staging.stg_payments",
        "main_reference.order_status",
    }, "the DAG comes from the rendered SQL, through the ephemeral CTEs"


def test_default_schema_names_and_config_precedence(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": """
                name: p
                profile: p
                models:
                  p:
                    +materialized: table
                    +tags: [all]
                    s:
                      +schema: staging
                      +tags: [s]
                seeds:
                  p:
                    +schema: ref
            """,
            "profiles.yml": """
                p:
                  target: dev
                  outputs:
                    dev: {type: duckdb, path: w.duckdb, schema: analytics}
            """,
            "models/s/a.sql": "{{ config(tags=['file']) }}\nselect 1 as id, '{{ target.name }}' as t",
            "models/s/b.sql": "select * from {{ ref('a') }} join {{ ref('c') }} using (id)",
            "models/s/schema.yml": """
                version: 2
                models:
                  - name: b
                    config: {materialized: view, schema: other}
            """,
            "models/top.sql": "select * from {{ ref('b') }}",
            "seeds/c.csv": "id\n1\n",
        }
    )
    project = load_project(root)
    a = project.models[TableRef("analytics_staging", "a")]
    assert a.config.materialized == "table"
    assert a.config.tags == ("all", "s", "file")  # tags add up down the tree and in the file
    assert "'dev' AS t" in a.sql or "'dev' as t" in a.sql
    b = project.models[TableRef("analytics_other", "b")]  # schema.yml beats the tree
    assert b.config.materialized == "view"
    assert project.models[TableRef("analytics", "top")].depends_on == {b.ref}
    assert b.depends_on == {a.ref, TableRef("analytics_ref", "c")}


def test_schema_yml_tests_become_audits(shop: Path) -> None:
    models = load_project(shop).models
    orders = models[TableRef("main_staging", "stg_orders")].config
    assert _audit_text(orders.audits) == _joined(
        "unique(order_id)",
        "not_null(order_id)",
        "accepted_values(status, 'placed', 'shipped', 'completed', 'returned')",
    )
    assert _audit_text(orders.audits_warn) == _joined(
        "relationships(customer_id, main_staging.stg_customers.customer_id)",
    )
    customers = models[TableRef("main_staging", "stg_customers")].config
    assert _audit_text(customers.audits).endswith("relationships(country_code, main_reference.country_codes.code)")
    fct = models[TableRef("marts", "orders")].config
    assert _audit_text(fct.audits) == _joined(
        "unique(order_id)",
        "not_null(order_id)",
        "relationships(customer_id, marts.customers.customer_id)",
    )
    assert _audit_text(fct.audits_warn) == _joined(
        "accepted_values(status, 'placed', 'shipped', 'completed', 'returned')",
    )
    assert _audit_text(models[TableRef("main_intermediate", "int_events")].config.audits_warn) == _joined(
        "not_null(event_id)",
    )


def test_plan_says_what_is_superseded_and_which_tests_are_skipped(shop: Path) -> None:
    create_raw(shop / "shop.duckdb")
    run = run_cli("plan", "--project-dir", shop, "--json")
    assert run.exit_code == 0, run.output
    reasons = {step["model"]: step["reason"] for step in json.loads(run.output)["steps"]}
    for model in ("main_intermediate.int_events", "marts.daily_revenue"):
        assert (
            "superseded (sqlorch maintains the query exactly): hand-written is_incremental() logic, " in reasons[model]
        )
        assert "incremental_strategy" in reasons[model]
    assert "is_incremental" not in reasons["marts.orders"]
    assert "dbt tests skipped: is_positive(amount)" in reasons["main_staging.stg_payments"]
    table = run_cli("plan", "--project-dir", shop)
    assert "is_positive(amount)" in table.output


def test_package_tests_and_filtered_tests_are_reported_as_skipped(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select 1 as id, 2 as v",
            "models/schema.yml": """
                version: 2
                models:
                  - name: a
                    data_tests:
                      - dbt_utils.unique_combination_of_columns:
                          arguments: {combination_of_columns: [id, v]}
                    columns:
                      - name: id
                        data_tests:
                          - not_null
                          - unique:
                              config: {where: "v > 0"}
                          - dbt_utils.at_least_one
            """,
        }
    )
    project = load_project(root)
    ref = TableRef("main", "a")
    assert _audit_text(project.models[ref].config.audits) == _joined(
        "not_null(id)",
    )
    assert project.notes[ref] == [
        "dbt tests skipped: unique(id), dbt_utils.at_least_one(id), dbt_utils.unique_combination_of_columns"
    ]


def test_sources_take_their_key_from_tests_or_meta(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select * from {{ source('app', 'users') }} join {{ source('app', 'logins') }} using (id)",
            "models/sources.yml": """
                version: 2
                sources:
                  - name: app
                    schema: raw_app
                    tables:
                      - name: users
                        identifier: users_v1
                        columns:
                          - {name: id, data_tests: [unique, not_null]}
                      - name: logins
                        meta: {sqlorch: {cursor: loaded_at, append_only: true}}
            """,
        }
    )
    project = load_project(root)
    users = project.sources[TableRef("raw_app", "users_v1")]
    assert users.unique_key == ("id",) and users.cursor is None
    logins = project.sources[TableRef("raw_app", "logins")]
    assert (logins.cursor, logins.append_only, logins.unique_key) == ("loaded_at", True, ())
    assert project.models[TableRef("main", "a")].sources == {users.ref, logins.ref}


def test_source_freshness_and_loaded_at_field_come_from_dbt(make_project) -> None:
    """dbt's source freshness drives `sqlorch status`: the table's setting over its source's
    (an explicit null turns it off), `loaded_at_field` as the column compared with now."""
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select * from {{ source('app', 'users') }} join {{ source('app', 'logins') }} using (id)"
            " join {{ source('app', 'plans') }} using (id)",
            "models/sources.yml": """
                version: 2
                sources:
                  - name: app
                    schema: raw_app
                    loaded_at_field: _loaded_at
                    freshness: {warn_after: {count: 12, period: hour}, error_after: {count: 1, period: day}}
                    tables:
                      - name: users
                      - name: logins
                        loaded_at_field: logged_in_at
                        config:
                          freshness: {warn_after: {count: 30, period: minute}}
                      - name: plans
                        freshness: null
            """,
        }
    )
    project = load_project(root)
    users = project.sources[TableRef("raw_app", "users")]
    assert (users.warn_after, users.error_after, users.loaded_at_column) == (43200.0, 86400.0, "_loaded_at")
    logins = project.sources[TableRef("raw_app", "logins")]
    assert (logins.warn_after, logins.error_after, logins.loaded_at_column) == (1800.0, None, "logged_in_at")
    plans = project.sources[TableRef("raw_app", "plans")]
    assert (plans.warn_after, plans.error_after) == (None, None)


def test_a_bad_dbt_freshness_period_is_a_clear_error(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select * from {{ source('app', 'users') }}",
            "models/sources.yml": """
                version: 2
                sources:
                  - name: app
                    tables:
                      - name: users
                        freshness: {warn_after: {count: 2, period: fortnight}}
            """,
        }
    )
    assert_error(run_cli("compile", "--project-dir", root), "sources.yml", "period: minute|hour|day")


@pytest.mark.parametrize(
    ("output", "settings", "database"),
    [
        (
            "{type: postgres, host: db, port: 5432, user: u, pass: s3cret, dbname: analytics, schema: x, threads: 4}",
            {"host": "db", "port": 5432, "user": "u", "password": "s3cret", "dbname": "analytics"},
            None,
        ),
        (
            "{type: snowflake, account: acme, user: u, password: p, role: r, database: DB, warehouse: WH, "
            "schema: s, private_key_path: k.p8}",
            {"account": "acme", "user": "u", "password": "p", "role": "r", "database": "DB", "warehouse": "WH",
             "private_key_file": "k.p8"},
            "DB",
        ),
        (
            "{type: bigquery, method: oauth, project: proj, dataset: ds, location: EU, threads: 8}",
            {"project": "proj", "location": "EU"},
            None,
        ),
    ],
)  # fmt: skip
def test_dbt_profiles_map_to_sqlorch_targets(make_project, output: str, settings: dict, database: str | None) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\nprofile: p\n",
            "profiles.yml": f"p:\n  target: dev\n  outputs:\n    dev: {output}\n",
        }
    )
    target = load_target(root, None, None)
    assert target.settings == settings
    assert target.database == database
    assert "s3cret" not in repr(target)


def test_unknown_profile_fields_are_reported(make_project, caplog) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\nprofile: p\n",
            "profiles.yml": "p:\n  outputs:\n    dev: {type: duckdb, path: w.duckdb, extensions: [httpfs]}\n",
        }
    )
    with caplog.at_level(logging.WARNING):
        target = load_target(root, None, None)
    assert target.settings == {"path": str(root / "w.duckdb")}
    assert "not used by sqlorch: extensions" in caplog.text


def test_unknown_ref_points_at_the_line(shop: Path) -> None:
    path = shop / "models/intermediate/int_orders_enriched.sql"
    _replace(path, "ref('stg_orders')", "ref('stg_order')")
    run = run_cli("compile", "--project-dir", shop)
    assert_error(run, f"{path}:3: error: ref('stg_order'): no enabled model", "did you mean 'stg_orders'?")


def test_unknown_source_points_at_the_line(shop: Path) -> None:
    path = shop / "models/staging/stg_customers.sql"
    _replace(path, "source('shop', 'customers')", "source('shop', 'customer')")
    run = run_cli("compile", "--project-dir", shop)
    assert_error(run, f"{path}:10: error: source('shop', 'customer'): no such source", "did you mean 'shop.customers'?")


def test_a_raising_macro_points_at_the_macro_and_its_caller(shop: Path) -> None:
    model = shop / "models/staging/stg_payments.sql"
    _replace(model, "scale=0", "scale=3")
    run = run_cli("compile", "--project-dir", shop)
    assert_error(
        run,
        f"{shop / 'macros/money.sql'}:3: error: cents_to_dollars: unsupported",
        f"called from {model}:7",
    )


def test_raise_compiler_error_in_a_model(shop: Path) -> None:
    run = run_cli("compile", "--project-dir", shop, "--vars", "{min_order_amount: -5}")
    assert_error(
        run,
        f"{shop / 'models/marts/order_status_counts.sql'}:3: error: min_order_amount must not be",
    )


def test_ref_to_another_package_is_an_error(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select 1 as x",
            "models/b.sql": "-- reads a package\nselect * from {{ ref('q', 'a') }}",
        }
    )
    run = run_cli("compile", "--project-dir", root)
    assert_error(run, f"{root / 'models/b.sql'}:2: error: ref('q', 'a'): packages are not supported")


def test_write_files_helper_makes_models_folder(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "x", {"dbt_project.yml": "name: x\nmodel-paths: [sql]\n", "sql/m.sql": "select 1 as a"}
    )
    assert {str(ref) for ref in load_project(root).models} == {"main.m"}


def test_compile_sees_edits_to_dbt_project_yml_and_custom_folders(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "p",
        {"dbt_project.yml": "name: p\nmodel-paths: [sql]\n", "sql/m.sql": "select {{ var('x', 1) }} as a"},
    )
    assert run_cli("compile", "--project-dir", root).exit_code == 0
    assert "nothing changed" in run_cli("compile", "--project-dir", root).output
    (root / "dbt_project.yml").write_text("name: p\nmodel-paths: [sql]\nvars: {x: 2}\n")
    run = run_cli("compile", "--project-dir", root)
    assert "nothing changed" not in run.output and run.exit_code == 0
    assert "2 AS a" in (root / "target/sqlorch/compiled/main/m.sql").read_text()
    (root / "sql/m.sql").write_text("select 3 as a")
    assert "nothing changed" not in run_cli("compile", "--project-dir", root).output


def test_profiles_found_where_dbt_looks(make_project, tmp_path: Path, monkeypatch) -> None:
    root = make_project({"dbt_project.yml": "name: p\nprofile: p\n", "models/a.sql": "select 1 as a"})
    home = tmp_path / "home"
    write_files(
        home, {".dbt/profiles.yml": "p:\n  outputs:\n    dev: {type: duckdb, path: /tmp/h.duckdb, schema: h}\n"}
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    assert load_target(root, None, None).settings == {"path": "/tmp/h.duckdb"}
    assert {str(ref) for ref in load_project(root).models} == {"h.a"}
    env_dir = tmp_path / "env"
    write_files(env_dir, {"profiles.yml": "p:\n  outputs:\n    ci: {type: duckdb, path: /tmp/e.duckdb}\n"})
    monkeypatch.setenv("DBT_PROFILES_DIR", str(env_dir))
    assert load_target(root, None, None).name == "ci"


def test_what_is_not_run_is_reported(make_project, caplog) -> None:
    root = make_project(
        {
            "dbt_project.yml": 'name: p\non-run-end: ["grant select on all tables to reporter"]\n',
            "packages.yml": "packages:\n  - package: dbt-labs/dbt_utils\n",
            "snapshots/s.sql": "{% snapshot s %}select 1{% endsnapshot %}",
            "macros/alias.sql": "{% macro generate_alias_name(custom_alias_name, node) %}x{% endmacro %}",
            "models/a.sql": "select * from {{ source('app', 't') }} join {{ ref('c') }} using (id)",
            "models/sources.yml": """
                version: 2
                sources:
                  - name: app
                    tables:
                      - name: t
                        columns:
                          - {name: id, data_tests: [unique, not_null]}
                          - name: kind
                            data_tests:
                              - accepted_values: {arguments: {values: [a, b]}}
            """,
            "seeds/c.csv": "id,v\n1,2\n",
            "seeds/schema.yml": "seeds:\n  - name: c\n    columns:\n      - {name: id, data_tests: [unique]}\n",
        }
    )
    with caplog.at_level(logging.WARNING):
        project = load_project(root)
    assert "on-run-end hooks: not supported" in caplog.text
    assert "packages (packages.yml): not supported" in caplog.text
    assert "snapshots: not supported" in caplog.text
    assert "macro generate_alias_name: not supported" in caplog.text
    assert "dbt tests on sources are not run: app.t: accepted_values(kind)" in caplog.text
    assert "unique(id)" not in caplog.text, "the key of the source: checked by its change capture"
    assert project.notes[TableRef("main", "c")] == ["dbt tests on seeds are not run yet: unique(id)"]


def test_jinja_syntax_errors_and_undefined_names_point_at_the_line(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select 1 as a\n{% if true %}\nfrom t\n",
            "models/b.sql": "-- dispatch needs an adapter\nselect {{ adapter.dispatch('x')() }} as b",
        }
    )
    run = run_cli("compile", "--project-dir", root)
    assert_error(
        run,
        f"{root / 'models/a.sql'}:2: error: Unexpected end of template",
        f"{root / 'models/b.sql'}:2: error: 'adapter' is undefined",
    )


def test_tests_in_the_older_form_without_arguments(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "models/a.sql": "select 1 as id, 'x' as s, 2 as n",
            "models/b.sql": "select 1 as id",
            "models/schema.yml": """
                version: 2
                models:
                  - name: a
                    columns:
                      - name: s
                        tests:
                          - accepted_values: {values: [x, "it's"], severity: warn}
                      - name: n
                        tests:
                          - accepted_values: {values: [1, 2], quote: false}
                      - name: id
                        tests:
                          - relationships: {to: ref('b'), field: id}
            """,
        }
    )
    config = load_project(root).models[TableRef("main", "a")].config
    assert _audit_text(config.audits_warn) == _joined(
        "accepted_values(s, 'x', 'it''s')",
    )
    assert _audit_text(config.audits) == _joined("accepted_values(n, 1, 2)", "relationships(id, main.b.id)")


def test_select_by_model_name_when_the_alias_differs(shop: Path) -> None:
    create_raw(shop / "shop.duckdb")
    run = run_cli("plan", "--project-dir", shop, "--json", "--select", "dim_customers+")
    assert run.exit_code == 0, run.output
    assert {step["model"] for step in json.loads(run.output)["steps"]} == {
        "marts.customers",
        "marts.revenue_by_country",
    }


def test_hooks_and_unknown_settings_are_noted(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": 'name: p\nmodels:\n  p:\n    +post-hook: ["grant select on {{ this }} to reporter"]\n',
            "models/a.sql": "{{ config(persist_docs={'relation': true}, sort='id') }}\nselect 1 as id",
        }
    )
    assert load_project(root).notes[TableRef("main", "a")] == [
        "not run (not supported yet): post_hook",
        "dbt settings ignored: sort",
    ]


def test_macro_file_errors_point_at_the_macro_file(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\n",
            "macros/bad.sql": "{% macro ok() %}1{% endmacro %}\n{{ config(materialized='table') }}\n",
            "models/a.sql": "select {{ ok() }} as a",
        }
    )
    assert_error(run_cli("compile", "--project-dir", root), f"{root / 'macros/bad.sql'}:2: error: ref, source, config")


def test_nested_ephemeral_models_become_ordered_ctes(make_project) -> None:
    root = make_project(
        {
            "dbt_project.yml": "name: p\nmodels:\n  p:\n    +materialized: table\n",
            "models/e1.sql": "{{ config(materialized='ephemeral') }}\nselect 1 as id",
            "models/e2.sql": "{{ config(materialized='ephemeral') }}\nselect id, id * 10 as ten from {{ ref('e1') }}",
            "models/m.sql": "with x as (select 2 as two)\nselect * from {{ ref('e2') }} join {{ ref('e1') }} using (id), x",  # noqa: E501
            "models/c1.sql": "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('c2') }}",
            "models/c2.sql": "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('c1') }}",
        }
    )
    (root / "models/c1.sql").rename(root / "c1.sql.off")  # first without the cycle
    model = load_project(root).models[TableRef("main", "m")]
    ctes = [cte.alias for cte in model.ast.find_all(exp.CTE)]
    assert ctes == ["__dbt__cte__e1", "__dbt__cte__e2", "x"]
    run = run_cli("build", "--project-dir", root)
    assert run.exit_code == 0, run.output
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select id, ten, two from main.m").fetchall() == [(1, 10, 2)]
    (root / "c1.sql.off").rename(root / "models/c1.sql")
    (root / "models/m.sql").write_text("select * from {{ ref('c1') }}")
    run = run_cli("compile", "--project-dir", root)
    assert_error(run, f"{root / 'models/c2.sql'}:2: error: ephemeral models refer to each other in a cycle")
    assert "m -> c1 -> c2 -> c1" in run.output


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("duckdb", ["DATE_TRUNC('MONTH', d)", "d + INTERVAL 7 DAY", "DATE_DIFF('DAY', a, d)", "TRY_CAST(x AS TEXT)"]),
        (
            "bigquery",
            ["DATE_TRUNC(d, MONTH)", "DATE_ADD(d, INTERVAL 7 DAY)", "DATE_DIFF(d, a, DAY)", "SAFE_CAST(x AS STRING)"],
        ),
        ("snowflake", ["DATE_TRUNC('MONTH', d)", "DATEADD(DAY, 7, d)", "DATEDIFF(DAY, a, d)", "CAST(x AS VARCHAR)"]),
    ],
)
def test_cross_database_macros_print_in_the_target_dialect(make_project, dialect: str, expected: list[str]) -> None:
    outputs = {
        "duckdb": "{type: duckdb, path: w.duckdb}",
        "bigquery": "{type: bigquery, project: p, dataset: d}",
        "snowflake": "{type: snowflake, account: a, user: u, database: db, schema: s}",
    }
    root = make_project(
        {
            "dbt_project.yml": "name: p\nprofile: p\n",
            "profiles.yml": f"p:\n  outputs:\n    dev: {outputs[dialect]}\n",
            "models/a.sql": "select {{ dbt.date_trunc('month', 'd') }} as m, {{ dbt.dateadd('day', 7, 'd') }} as w, "
            "{{ dbt.datediff('a', 'd', 'day') }} as n, {{ dbt.safe_cast('x', dbt.type_string()) }} as s from t",
        }
    )
    (model,) = load_project(root).models.values()
    for fragment in expected:
        assert fragment in model.sql
