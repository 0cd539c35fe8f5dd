"""sqlorch compile: output files, manifest, column/table checks, all errors, --target."""

from __future__ import annotations

import json

from tests.conftest import assert_error

SOURCES = """
sources:
  raw.orders:
    cursor: updated_at
    unique_key: order_id
    columns:
      order_id: BIGINT
      customer_id: BIGINT
      amount: DECIMAL(12, 2)
      updated_at: TIMESTAMP
"""

GOOD = {
    "models/sources.yml": SOURCES,
    "seeds/customers.csv": "customer_id,name\n1,Ada\n",
    "models/staging/orders.sql": "SELECT order_id, customer_id, amount FROM raw.orders",
    "models/marts/by_customer.sql": """
        -- materialized: table
        SELECT c.name, count(*) AS orders, sum(o.amount) AS revenue
        FROM staging.orders AS o
        JOIN seeds.customers AS c ON c.customer_id = o.customer_id
        GROUP BY c.name
    """,
}


def test_compile_writes_sql_and_manifest(make_project, cli):
    root = make_project(GOOD)
    run = cli("compile", "--project-dir", root)
    assert run.exit_code == 0, run.output
    assert "compiled 2 models" in run.output
    assert not (root / "warehouse.duckdb").exists()
    staging = (root / "target/compiled/staging/orders.sql").read_text()
    assert "raw.orders" in staging.replace('"', "").lower()
    marts = (root / "target/compiled/marts/by_customer.sql").read_text().replace('"', "").lower()
    assert "staging.orders" in marts and "seeds.customers" in marts
    manifest = json.loads((root / "target/manifest.json").read_text())
    assert set(manifest["models"]) == {"staging.orders", "marts.by_customer"}
    assert ["staging.orders", "marts.by_customer"] in manifest["edges"]
    assert ["seeds.customers", "marts.by_customer"] in manifest["edges"]
    by_customer = manifest["models"]["marts.by_customer"]
    assert list(by_customer["columns"]) == ["name", "orders", "revenue"]
    assert by_customer["materialized"] == "table"
    assert by_customer["depends_on"] == ["seeds.customers", "staging.orders"]
    assert manifest["models"]["staging.orders"]["sources"] == ["raw.orders"]
    assert manifest["models"]["staging.orders"]["columns"] == {
        "order_id": "BIGINT",
        "customer_id": "BIGINT",
        "amount": "DECIMAL(12, 2)",
    }


def test_compile_star_expands_declared_columns(make_project, cli):
    root = make_project({**GOOD, "models/marts/everything.sql": "SELECT * FROM raw.orders"})
    assert cli("compile", "--project-dir", root).exit_code == 0
    manifest = json.loads((root / "target/manifest.json").read_text())
    assert list(manifest["models"]["marts.everything"]["columns"]) == [
        "order_id",
        "customer_id",
        "amount",
        "updated_at",
    ]


def test_unknown_column_with_position(make_project, cli):
    root = make_project({**GOOD, "models/staging/orders.sql": "SELECT order_id,\n       amout\nFROM raw.orders"})
    run = cli("compile", "--project-dir", root)
    assert_error(run, f"{root / 'models/staging/orders.sql'}:2:8: error: unknown column", "amout")


def test_unknown_column_of_upstream_model(make_project, cli):
    root = make_project({**GOOD, "models/marts/x.sql": "SELECT updated_at FROM staging.orders"})
    assert_error(cli("compile", "--project-dir", root), "models/marts/x.sql:1:8", "updated_at")


def test_unknown_table_in_model_schema(make_project, cli):
    root = make_project({**GOOD, "models/marts/x.sql": "SELECT 1 AS a\nFROM staging.ordrs"})
    run = cli("compile", "--project-dir", root)
    assert_error(run, f"{root / 'models/marts/x.sql'}:2:6", "unknown table staging.ordrs", "staging.orders")


def test_all_errors_reported(make_project, cli):
    root = make_project(
        {
            **GOOD,
            "models/marts/bad_col.sql": "SELECT nope FROM staging.orders",
            "models/marts/bad_table.sql": "SELECT 1 AS a FROM staging.missing",
            "models/other/bad_col2.sql": "SELECT amount, zzz FROM raw.orders",
        }
    )
    run = cli("compile", "--project-dir", root)
    assert_error(run, "bad_col.sql:1:8", "nope", "bad_table.sql:1:", "staging.missing", "bad_col2.sql:1:16", "zzz")


def test_all_syntax_errors_reported(make_project, cli):
    root = make_project({"models/a.sql": "SELECT FROM WHERE (", "models/b.sql": "SELECT a b c\nFROM t"})
    assert_error(cli("compile", "--project-dir", root), "a.sql:", "b.sql:")


def test_undeclared_source_columns_are_not_checked(make_project, cli):
    root = make_project({"models/a.sql": "SELECT anything, goes FROM raw.undeclared"})
    run = cli("compile", "--project-dir", root)
    assert run.exit_code == 0, run.output
    assert (root / "target/compiled/main/a.sql").exists()


def test_compile_for_snowflake_target_without_connecting(make_project, cli, monkeypatch):
    monkeypatch.delenv("SNOWFLAKE_PASSWORD", raising=False)
    root = make_project(
        {
            **GOOD,
            "models/marts/typed.sql": "SELECT order_id::VARCHAR AS id, amount // 2 AS half, "
            "epoch_ms(1000) AS t FROM raw.orders",
            "profiles.yml": """
            target: dev
            targets:
              dev: {type: duckdb, path: dev.duckdb}
              prod:
                type: snowflake
                account: "nowhere.invalid"
                user: u
                password: "{{ env_var('SNOWFLAKE_PASSWORD', '') }}"
                database: ANALYTICS
        """,
        }
    )
    run = cli("compile", "--project-dir", root, "--target", "prod")
    assert run.exit_code == 0, run.output
    manifest = json.loads((root / "target/manifest.json").read_text())
    assert manifest["target"] == {"name": "prod", "type": "snowflake"}
    marts = (root / "target/compiled/marts/by_customer.sql").read_text().upper()
    assert "ANALYTICS" in marts and "STAGING" in marts
    typed = (root / "target/compiled/marts/typed.sql").read_text().upper()
    assert "::VARCHAR" not in typed or "CAST(" in typed
    assert "EPOCH_MS" not in typed  # DuckDB-only function translated for Snowflake
    assert not (root / "dev.duckdb").exists()


def test_compile_default_target_is_duckdb(make_project, cli):
    root = make_project(GOOD)
    assert cli("compile", "--project-dir", root).exit_code == 0
    manifest = json.loads((root / "target/manifest.json").read_text())
    assert manifest["target"]["type"] == "duckdb"
    assert manifest["models"]["marts.by_customer"]["relation"] == "marts.by_customer"
