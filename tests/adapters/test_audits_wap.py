"""Write-audit-publish on every target: DuckDB and the Postgres, Snowflake, BigQuery stand-ins.

One batch of bad source rows breaks all six built-in audits at once, so one failing build
shows each of them failing (with its own count and sample), on an incremental step and on
a full rebuild. A failing blocking audit must leave the published table, its change log
and the watermarks exactly as they were and skip the descendants; after the source rows
are fixed the next build is exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch import api
from sqlorch.adapters.base import Adapter
from sqlorch.refs import TableRef
from sqlorch.state.store import change_log, state_table
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, create_table
from tests.conftest import write_files

AUDITED = "staging.orders"
AUDITS = [
    "not_null(customer_id)",
    "unique(ref_code)",
    "accepted_values(status, 'placed', 'paid')",
    "relationships(customer_id, staging.customers.customer_id)",
    "expression(amount >= 0)",
    "row_count(max => 45)",
]

PROJECT = {
    "models/sources.yml": """
        sources:
          raw.orders: {unique_key: order_id}
          raw.customers: {unique_key: customer_id}
    """,
    "models/staging/customers.sql": "SELECT customer_id, name FROM raw.customers",
    "models/staging/orders.sql": f"""
        -- audits: {", ".join(AUDITS)}
        SELECT order_id, customer_id, ref_code, status, amount FROM raw.orders
    """,
    "models/marts/totals.sql": """
        -- audits_warn: row_count(max => 1)
        SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM staging.orders GROUP BY customer_id
    """,
}

ORDERS, CUSTOMERS = TableRef("raw", "orders"), TableRef("raw", "customers")
ORDER_COLUMNS = {
    "order_id": "BIGINT",
    "customer_id": "BIGINT",
    "ref_code": "VARCHAR",
    "status": "VARCHAR",
    "amount": "BIGINT",
}
# enough stored rows that six more are an incremental step, not a rebuild
GOOD = [(i, i % 2 + 1, f"r{i}", ("placed", "paid")[i % 2], i) for i in range(1, 41)]
# each row breaks one audit; with GOOD they are 46 rows, one more than row_count allows
BAD = [
    (100, None, "r100", "placed", 1),  # not_null
    (101, 1, "r1", "placed", 1),  # unique: r1 is a stored row that stays
    (102, 2, "r102", "bogus", 1),  # accepted_values
    (103, 99, "r103", "paid", 1),  # relationships
    (104, 2, "r104", "paid", -5),  # expression
    (105, 1, "r105", "paid", 1),  # with the five above: row_count
]
EXPECTED_BAD = {AUDITS[0]: 1, AUDITS[1]: 1, AUDITS[2]: 1, AUDITS[3]: 1, AUDITS[4]: 1, AUDITS[5]: 1}


def _build(warehouse: Warehouse, project: Path, **options: Any) -> dict[str, Any]:
    result = api.build(api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=2, **options))
    return {r.model: r for r in result.results}


def _snapshot(adapter: Adapter) -> tuple[Any, ...]:
    """The audited model's published rows (sorted, raw driver values), its change log,
    its batch records, and its own and its descendant's watermarks: what a failed audit
    must not move."""

    def rows(table: TableRef, where: exp.Expr | None = None) -> list[tuple[Any, ...]]:
        columns = list(adapter.columns(table) or {})
        query = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(table.to_table())
        return sorted(adapter.fetch(query.where(where) if where is not None else query), key=repr)

    relation = exp.column("relation", quoted=True).eq(exp.Literal.string(AUDITED))
    # the blocked model's and its skipped descendant's: other models may build meanwhile
    consumers = exp.column("consumer", quoted=True).isin(
        exp.Literal.string(AUDITED), exp.Literal.string("marts.totals")
    )
    return (
        rows(TableRef("staging", "orders")),
        rows(change_log(TableRef("staging", "orders"))),
        rows(state_table("batches"), relation),
        rows(state_table("watermarks"), consumers),
        rows(TableRef("marts", "totals")),
    )


def _assert_all_failed(result: Any, status: str) -> None:
    audits = {a["name"]: a for a in result.audits}
    assert set(audits) == set(AUDITS), result.audits
    for name, count in EXPECTED_BAD.items():
        assert audits[name]["status"] == status, audits[name]
        assert audits[name]["bad_rows"] == count, audits[name]
        assert len(audits[name]["sample"]) == count
    assert audits[AUDITS[3]]["sample"][0][0] == 103  # the orphan order itself
    assert audits[AUDITS[5]]["sample"] == [[46]]


def test_failing_audits_block_and_leave_everything_as_it_was(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "audited", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ORDERS, ORDER_COLUMNS)
    create_table(adapter, CUSTOMERS, {"customer_id": "BIGINT", "name": "VARCHAR"})
    adapter.insert_rows(CUSTOMERS, ["customer_id", "name"], [(1, "a"), (2, "b")])
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), GOOD)

    first = _build(warehouse, project)
    assert first[AUDITED].status == "success", first[AUDITED].error
    assert [a["status"] for a in first[AUDITED].audits] == ["pass"] * 6
    # a declared warning: reported with its count, the table published all the same
    assert first["marts.totals"].status == "success"
    assert [(a["status"], a["bad_rows"], a["sample"]) for a in first["marts.totals"].audits] == [("warn", 1, [[2]])]
    before = _snapshot(adapter)

    # an incremental step with bad rows: blocked, nothing moved, descendants skipped
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), BAD)
    for _ in range(2):  # the batch stays pending: the next build tries it again
        blocked = _build(warehouse, project)
        assert blocked[AUDITED].status == "error", blocked[AUDITED]
        assert blocked[AUDITED].action == "incremental", blocked[AUDITED].reason
        assert "audit not_null(customer_id) on staging.orders: 1 bad row(s)" in blocked[AUDITED].error
        _assert_all_failed(blocked[AUDITED], "fail")
        assert blocked["marts.totals"].status == "skipped"
        assert _snapshot(adapter) == before

    # a full rebuild with the same bad rows: blocked the same way
    refreshed = _build(warehouse, project, full_refresh=True)
    assert refreshed[AUDITED].status == "error" and refreshed[AUDITED].action == "full"
    _assert_all_failed(refreshed[AUDITED], "fail")
    assert _snapshot(adapter) == before

    # --audits warn: the audits run and report, the rows are published
    warned = _build(warehouse, project, audits="warn")
    assert warned[AUDITED].status == "success" and warned["marts.totals"].status == "success"
    _assert_all_failed(warned[AUDITED], "warn")
    assert_models_match_their_sql(warehouse, project)

    # the bad rows fixed at the source: the audits pass, and the build is exact
    adapter.execute(exp.delete(ORDERS.to_table(), where=exp.column("order_id", quoted=True) >= 100))
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), [(106, 2, "r106", "placed", 7)])
    fixed = _build(warehouse, project)
    assert fixed[AUDITED].status == "success", fixed[AUDITED].error
    assert [a["status"] for a in fixed[AUDITED].audits] == ["pass"] * 6
    assert_models_match_their_sql(warehouse, project)

    # --audits off: nothing is checked
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), [BAD[0]])
    off = _build(warehouse, project, audits="off")
    assert off[AUDITED].status == "success" and off[AUDITED].audits == []
    assert_models_match_their_sql(warehouse, project)
