"""Column lineage: one fixture per SQL construct (tests/fixtures/lineage/constructs.sql),
the graph across models, `sqlorch lineage`, the manifest, and the demo project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlorch.analysis.lineage import column_lineage
from sqlorch.analysis.lineage_graph import LineageGraph
from sqlorch.analysis.schemas import SchemaMap, mapping_schema, qualify_query
from sqlorch.project.parsing import parse_model_sql
from sqlorch.refs import TableRef
from tests.conftest import assert_error

FIXTURES = Path(__file__).parent / "fixtures" / "lineage" / "constructs.sql"
SCHEMAS: SchemaMap = {
    TableRef("raw", "orders"): {
        "order_id": "BIGINT",
        "customer_id": "BIGINT",
        "amount": "DECIMAL(12, 2)",
        "status": "TEXT",
        "created_at": "TIMESTAMP",
    },
    TableRef("raw", "customers"): {"customer_id": "BIGINT", "name": "TEXT", "country": "TEXT"},
    TableRef("raw", "events"): {"user_id": "BIGINT", "tags": "TEXT[]", "payload": "STRUCT(kind TEXT, n INT)"},
}


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    """(title, sql, {column: expected line}) per block of the fixture file."""
    cases = []
    for block in FIXTURES.read_text().split("\n\n"):
        lines = block.strip().splitlines()
        sql_lines = [line for line in lines if not line.startswith("--")]
        if not sql_lines:
            continue
        start, end = lines.index(sql_lines[0]), lines.index(sql_lines[-1])
        title = " ".join(line[3:] for line in lines[:start]) or sql_lines[0]
        expected = dict(line[3:].split(": ", 1) for line in lines[end + 1 :])
        cases.append((title, " ".join(sql_lines).rstrip(";"), expected))
    return cases


def render(sql: str) -> dict[str, str]:
    query = parse_model_sql(sql, "duckdb", Path("fixture.sql"))
    qualified = qualify_query(query, mapping_schema(SCHEMAS, "duckdb"), "duckdb", Path("fixture.sql"))
    return {
        name: f"{column.kind} <-" + ",".join(f" {rel}.{col} {kind}" for (rel, col), kind in column.inputs.items())
        for name, column in column_lineage(qualified, SCHEMAS).items()
    }


@pytest.mark.parametrize(("title", "sql", "expected"), _cases(), ids=[case[0] for case in _cases()])
def test_construct(title: str, sql: str, expected: dict[str, str]) -> None:
    assert expected, f"fixture '{title}' expects nothing"
    assert render(sql) == expected


def test_fixture_file_covers_every_construct() -> None:
    titles = " ".join(title for title, _, _ in _cases())
    for construct in ("CTE", "subquery", "join", "USING", "*", "window", "aggregate", "UNION", "QUALIFY", "EXCEPT"):
        assert construct.lower() in titles.lower(), construct


# Across models: staging reads a source, intermediate joins, marts aggregate.
PROJECT = {
    "models/sources.yml": """
        sources:
          raw.orders:
            columns: {order_id: BIGINT, customer_id: BIGINT, amount: "DECIMAL(12, 2)", status: TEXT}
          raw.customers:
            columns: {customer_id: BIGINT, country: TEXT}
    """,
    "models/staging/orders.sql": """
        SELECT order_id, customer_id, amount, lower(status) AS status FROM raw.orders WHERE amount > 0
    """,
    "models/staging/customers.sql": "SELECT customer_id, upper(country) AS country FROM raw.customers",
    "models/marts/revenue.sql": """
        WITH joined AS (
            SELECT o.amount, c.country FROM orders AS o JOIN staging.customers AS c USING (customer_id)
        )
        SELECT country, sum(amount) AS revenue FROM joined GROUP BY country
    """,
    "models/marts/orders_copy.sql": "SELECT * FROM staging.orders",
}


def test_upstream_reaches_source_columns_with_the_weakest_kind_on_each_path(make_project, cli) -> None:
    root = make_project(PROJECT)
    run = cli("lineage", "marts.revenue.revenue", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    data = json.loads(run.output)
    reached = {f"{c['relation']}.{c['column']}": c["kind"] for c in data["columns"]}
    assert data["kind"] == "transformed"
    assert reached == {
        "staging.orders.amount": "transformed",
        "staging.orders.customer_id": "filter",
        "staging.customers.customer_id": "filter",
        "staging.customers.country": "filter",
        "raw.orders.amount": "transformed",  # transformed above, passthrough below: transformed
        "raw.orders.customer_id": "filter",
        "raw.customers.customer_id": "filter",
        "raw.customers.country": "filter",
    }
    assert ["raw.orders", "amount", "staging.orders", "amount", "passthrough"] in data["edges"]
    sources = {c["relation"] for c in data["columns"] if not c["model"]}
    assert sources == {"raw.orders", "raw.customers"}


def test_downstream_lists_every_column_a_change_reaches(make_project, cli) -> None:
    root = make_project(PROJECT)
    run = cli("lineage", "raw.orders.amount", "--downstream", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    reached = {f"{c['relation']}.{c['column']}": c["kind"] for c in json.loads(run.output)["columns"]}
    # amount > 0 filters every column of staging.orders, and so every column built on it
    assert reached == {
        "staging.orders.order_id": "filter",
        "staging.orders.customer_id": "filter",
        "staging.orders.amount": "passthrough",
        "staging.orders.status": "filter",
        "marts.revenue.country": "filter",
        "marts.revenue.revenue": "transformed",
        "marts.orders_copy.order_id": "filter",
        "marts.orders_copy.customer_id": "filter",
        "marts.orders_copy.amount": "passthrough",
        "marts.orders_copy.status": "filter",
    }


def test_lineage_prints_a_tree_down_to_the_sources(make_project, cli) -> None:
    root = make_project(PROJECT)
    run = cli("lineage", "revenue.revenue", "--project-dir", root)  # a bare model name, unique
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[0].split() == ["marts.revenue.revenue", "transformed"]
    assert "├─ staging.orders.amount  transformed" in lines[1]
    assert any("└─ raw.orders.amount  passthrough  (source)" in line for line in lines)
    assert "source columns (4):" in run.output


def test_lineage_errors_name_what_is_wrong(make_project, cli) -> None:
    root = make_project(PROJECT)
    typo = cli("lineage", "marts.revenu.revenue", "--project-dir", root)
    assert_error(typo, "no model or source named", "did you mean marts.revenue")
    assert_error(cli("lineage", "marts.revenue.revenu", "--project-dir", root), "has no column 'revenu'", "revenue")
    assert_error(cli("lineage", "revenue", "--project-dir", root), "is not MODEL.COLUMN")


def test_lineage_of_a_model_over_undeclared_columns_is_unknown(make_project, cli) -> None:
    root = make_project({"models/staging/events.sql": "SELECT id FROM raw.events"})
    assert_error(cli("lineage", "staging.events.id", "--project-dir", root), "lineage of staging.events is not known")


def test_manifest_holds_each_models_lineage(make_project, cli) -> None:
    root = make_project(PROJECT)
    assert cli("compile", "--project-dir", root).exit_code == 0
    manifest = json.loads((root / "target/manifest.json").read_text())
    assert manifest["models"]["staging.customers"]["lineage"] == {
        "customer_id": {"kind": "passthrough", "from": [["raw.customers", "customer_id", "passthrough"]]},
        "country": {"kind": "transformed", "from": [["raw.customers", "country", "transformed"]]},
    }
    # a second compile (lineage from target/cache/analysis.json, nothing qualified) writes the same
    (root / "target/compile_stamp.json").unlink(missing_ok=True)
    (root / "target/cache/compile_stamp.json").unlink(missing_ok=True)
    assert cli("compile", "--project-dir", root).exit_code == 0
    assert json.loads((root / "target/manifest.json").read_text()) == manifest


def test_every_demo_column_has_lineage_down_to_a_source_or_a_literal(demo_project, cli) -> None:
    assert cli("compile", "--project-dir", demo_project).exit_code == 0
    manifest = json.loads((demo_project / "target/manifest.json").read_text())
    lineage = {name: model["lineage"] for name, model in manifest["models"].items()}
    assert all(value is not None for value in lineage.values()), lineage
    graph = LineageGraph(lineage)
    checked = 0
    for model, columns in lineage.items():
        assert set(columns) == set(manifest["models"][model]["columns"])
        for column, own in columns.items():
            reached = graph.upstream((model, column))
            sources = [r for r in reached if not graph.is_model(r.column[0])]
            by_value = [r for r in sources if r.kind != "filter"]
            computed_from_rows = own["kind"] == "transformed" and sources  # count(*) over grouped rows
            assert by_value or own["kind"] == "literal" or computed_from_rows, (model, column, reached)
            assert all(r.column[0].startswith("seeds.") for r in sources), sources
            checked += 1
    assert checked == sum(len(m["columns"]) for m in manifest["models"].values())
