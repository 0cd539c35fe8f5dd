"""`plan` is read-only on every target, and its source estimates are what the build records.

On DuckDB and each stand-in: build a project, make pending changes of every kind a capture
handles (a keyed source's update, delete, insert and an update that does not move its
cursor; an append-only source's new rows and a tie at its cursor; a new source column; an
undeclared source changed; a seed changed; a model's SQL changed), then the cases that
recapture a source whole (a repeated key, a row gone below an append-only cursor, a
changed unique_key). Each time: the whole warehouse (every schema, table, column and row,
``_sqlorch`` included) is the same after ``plan`` as before, and the following build
records per source exactly the batches the plan predicted, and runs every model with the
action and strategy the plan said. The DuckDB file itself is checked in
tests/test_plan_read_only.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.errors import AdapterError
from sqlorch.refs import TableRef
from sqlorch.state.store import state_table
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import create_table
from tests.conftest import run_cli, write_files

SOURCES_YML = """
sources:
  raw.customers: {cursor: updated_at, unique_key: customer_id}
  raw.events: {cursor: loaded_at, append_only: true}
  raw.tags: {unique_key: tag_id}
"""

PROJECT = {
    "models/sources.yml": SOURCES_YML,
    "models/stg/customers.sql": "SELECT customer_id, name, country, updated_at FROM raw.customers",
    "models/stg/events.sql": "SELECT event_id, customer_id, amount, loaded_at FROM raw.events",
    "models/mart/by_customer.sql": (
        "SELECT customer_id, count(*) AS n, sum(amount) AS total FROM stg.events GROUP BY customer_id"
    ),
    "models/mart/by_country.sql": """
        SELECT c.country, count(*) AS n
        FROM stg.events AS e JOIN stg.customers AS c ON c.customer_id = e.customer_id
        GROUP BY c.country
    """,
    "models/mart/tags.sql": "SELECT tag_id, label FROM raw.tags",
    "models/mart/rated.sql": "SELECT currency, rate FROM raw.rates",
    "models/mart/regions.sql": "SELECT region, count(*) AS n FROM seeds.regions GROUP BY region",
    "models/mart/names.sql": "SELECT customer_id, name FROM stg.customers",
    "seeds/regions.csv": "region,code\nnorth,1\nsouth,2\n",
}

CUSTOMERS, EVENTS, TAGS, RATES = (TableRef("raw", n) for n in ("customers", "events", "tags", "rates"))
COLUMNS = {
    CUSTOMERS: {"customer_id": "BIGINT", "name": "VARCHAR", "country": "VARCHAR", "updated_at": "TIMESTAMP"},
    EVENTS: {"event_id": "BIGINT", "customer_id": "BIGINT", "amount": "DECIMAL(12, 2)", "loaded_at": "TIMESTAMP"},
    TAGS: {"tag_id": "BIGINT", "label": "VARCHAR"},
    RATES: {"currency": "VARCHAR", "rate": "DECIMAL(12, 4)"},
}
T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def _minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def run(adapter: Adapter, duckdb_sql: str) -> None:
    adapter.execute(sqlglot.parse_one(duckdb_sql, read="duckdb"))


def make_sources(adapter: Adapter) -> None:
    for table, columns in COLUMNS.items():
        create_table(adapter, table, columns)
    adapter.insert_rows(
        CUSTOMERS, list(COLUMNS[CUSTOMERS]), [(i, f"c{i}", "UK" if i % 2 else "US", _minutes(i)) for i in range(1, 41)]
    )
    adapter.insert_rows(
        EVENTS,
        list(COLUMNS[EVENTS]),
        [(i, 1 + i % 40, Decimal(i) + Decimal("0.25"), _minutes(i // 40)) for i in range(1, 121)],
    )
    adapter.insert_rows(TAGS, list(COLUMNS[TAGS]), [(i, f"t{i}") for i in range(1, 5)])
    adapter.insert_rows(RATES, list(COLUMNS[RATES]), [("EUR", Decimal("1.1")), ("GBP", Decimal("1.3"))])


def pending_changes(adapter: Adapter, project: Path) -> None:
    """One change of every kind a capture handles, and a seed and a model changed."""
    later = _minutes(60)
    run(adapter, f"UPDATE raw.customers SET name = 'renamed', updated_at = TIMESTAMP '{later}' WHERE customer_id = 2")
    run(adapter, "DELETE FROM raw.customers WHERE customer_id = 3")
    adapter.insert_rows(CUSTOMERS, list(COLUMNS[CUSTOMERS]), [(41, "c41", "SE", later)])
    run(adapter, "UPDATE raw.customers SET country = 'quiet' WHERE customer_id = 5")  # cursor not moved
    adapter.insert_rows(
        EVENTS,
        list(COLUMNS[EVENTS]),
        [
            (121, 1, Decimal("5.00"), _minutes(3)),  # a tie at the last captured cursor value
            (122, 2, Decimal("7.00"), _minutes(5)),
            (123, 3, Decimal("1.00"), _minutes(5)),
        ],
    )
    # a new column, by recreating the table (the BigQuery stand-in's catalog does not show
    # a column added by ALTER TABLE; tests/test_plan_read_only.py adds one so on DuckDB)
    run(
        adapter,
        "CREATE TABLE raw.tags_next AS SELECT tag_id, label, CASE WHEN tag_id = 2 THEN 'n' END AS note FROM raw.tags",
    )
    run(adapter, "DROP TABLE raw.tags")
    run(adapter, "CREATE TABLE raw.tags AS SELECT * FROM raw.tags_next")
    run(adapter, "DROP TABLE raw.tags_next")
    run(adapter, "UPDATE raw.rates SET rate = 1.2 WHERE currency = 'EUR'")
    seed = project / "seeds" / "regions.csv"
    seed.write_text(seed.read_text().replace("south,2", "south,20") + "east,3\n")
    model = project / "models" / "mart" / "names.sql"
    model.write_text("SELECT customer_id, upper(name) AS name FROM stg.customers")


def recapture_changes(adapter: Adapter, project: Path) -> None:
    """Changes after which sources are captured whole: a repeated key, a row gone below an
    append-only source's cursor, a changed unique_key."""
    adapter.insert_rows(CUSTOMERS, list(COLUMNS[CUSTOMERS]), [(4, "again", "FR", _minutes(90))])
    run(adapter, "DELETE FROM raw.events WHERE event_id = 1")
    sources = project / "models" / "sources.yml"
    sources.write_text(sources.read_text().replace("{unique_key: tag_id}", "{unique_key: [tag_id, label]}"))


# --------------------------------------------------------------------------------------------
# the whole warehouse, as data
# --------------------------------------------------------------------------------------------

_SYSTEM = {"information_schema", "pg_catalog", "pg_toast"}


def _catalog(kind: str, adapter: Adapter) -> tuple[set[str], list[TableRef]]:
    """Every user schema and table of the warehouse."""
    if kind == "bigquery":
        client = adapter.client  # type: ignore[attr-defined]
        schemas = {d.dataset_id for d in client.list_datasets()}
        return schemas, [TableRef(s, t.table_id) for s in sorted(schemas) for t in client.list_tables(s)]

    def query(sql: str) -> list[tuple[Any, ...]]:
        return adapter.fetch(sqlglot.parse_one(sql, read="duckdb"))

    where = "" if kind != "duckdb" else " WHERE catalog_name = current_database()"
    schemas = {str(row[0]) for row in query(f"SELECT schema_name FROM information_schema.schemata{where}")}
    where = "" if kind != "duckdb" else " WHERE table_catalog = current_database()"
    tables = query(f"SELECT table_schema, table_name FROM information_schema.tables{where}")
    schemas = {s for s in schemas if s.lower() not in _SYSTEM and not s.lower().startswith("pg_temp")}
    return schemas, [TableRef(str(s), str(t)) for s, t in tables if str(s) in schemas]


def contents(warehouse: Warehouse) -> dict[str, Any]:
    """Every schema, and every table's columns with their types and its rows (a multiset)."""
    adapter = warehouse.connect()
    try:
        schemas, tables = _catalog(warehouse.kind, adapter)
        columns = adapter.columns_many(tables)
        found: dict[str, Any] = {"schemas": sorted(schemas)}
        for table in sorted(tables, key=str):
            rows = Counter(adapter.fetch(exp.select("*").from_(table.to_table())))
            types = {name: kind.sql() for name, kind in columns.get(table, {}).items()}
            found[str(table)] = (types, sorted(rows.items(), key=repr))
        return found
    finally:
        warehouse.close_all()


def batches(warehouse: Warehouse) -> set[tuple[str, int, str, int]]:
    """The rows of ``_sqlorch.batches``: (relation, batch, kind, rows)."""
    adapter = warehouse.connect()
    try:
        columns = [exp.column(c, quoted=True) for c in ("relation", "batch", "kind", "rows")]
        rows = adapter.fetch(exp.select(*columns).from_(state_table("batches").to_table()))
        return {(str(r), int(b), str(k), int(n or 0)) for r, b, k, n in rows}
    finally:
        warehouse.close_all()


def _summary(recorded: list[tuple[int, str, int]]) -> tuple[str, int, int]:
    """(change, rows, batches) as the plan's ``sources`` states them."""
    kinds = {kind for _, kind, _ in recorded}
    change = "none" if not kinds else "full" if "full" in kinds else "append" if kinds == {"append"} else "delta"
    return change, sum(rows for _, _, rows in recorded), len(recorded)


# --------------------------------------------------------------------------------------------
# the check: plan changes nothing, and says what the build then does
# --------------------------------------------------------------------------------------------


def plan_then_build(warehouse: Warehouse, project: Path) -> dict[str, dict[str, Any]]:
    """Plan (asserting it changed nothing), build, and assert the build recorded per source
    the batches the plan predicted and ran each model as planned. Returns the plan's sources."""
    before = contents(warehouse)
    args = ("--project-dir", project, "--profiles-dir", warehouse.profiles_dir)
    planned = run_cli("plan", "--json", *args)
    assert planned.exception is None and planned.exit_code == 0, f"{planned.exception!r}\n{planned.output}"
    after = contents(warehouse)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"plan changed {changed} on {warehouse.kind}"
    plan = json.loads(planned.output)

    built = run_cli("build", *args)
    assert built.exception is None and built.exit_code == 0, f"{built.exception!r}\n{built.output}"
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    assert_build_as_planned(plan["steps"], results)
    old = {(r, b) for r, b, _, _ in before_batches(before)}
    new: dict[str, list[tuple[int, str, int]]] = {}
    for relation, batch, kind, rows in sorted(batches(warehouse)):
        if (relation, batch) not in old:
            new.setdefault(relation, []).append((batch, kind, rows))
    sources = {s["source"]: s for s in plan["sources"]}
    assert {name: _summary(new.get(name, [])) for name in sources} == {
        name: (s["change"], s["rows"], s["batches"]) for name, s in sources.items()
    }, f"plan estimated {sources}, build recorded {new}"
    return sources


def _branches(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every branch of every choice in a step's statements (``plan --json``), nested too."""
    found = []
    for item in items:
        for branch in item.get("choice", []):
            found += [branch, *_branches(branch["statements"])]
    return found


def assert_build_as_planned(steps: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """Every model ran with the action and strategy the plan states, or, where the plan
    holds a choice decided by what an upstream step produces, with those of a planned
    branch that run_results.json names as taken."""
    planned = {s["model"]: s for s in steps}
    assert set(planned) == {r["model"] for r in results}
    for result in results:
        step, ran = planned[result["model"]], (result["action"], result["strategy"])
        if ran == (step["action"], step["strategy"]):
            continue
        taken = {part.split(":")[0] for part in (result.get("branch") or "").split("; ")}
        held = [(b["action"], b["strategy"]) for b in _branches(step["statements"]) if b["branch"] in taken]
        assert ran in held, f"{result['model']}: planned {step['action']} {step['strategy']!r}, built {ran}"


def before_batches(snapshot: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    """The ``_sqlorch.batches`` rows in a ``contents`` snapshot (empty before any build)."""
    table = next((value for key, value in snapshot.items() if key.lower() == "_sqlorch.batches"), None)
    if table is None:
        return []
    types, rows = table
    names = [name.lower() for name in types]
    out = []
    for row, count in rows:
        record = dict(zip(names, row, strict=True))
        out += [(str(record["relation"]), int(record["batch"]), str(record["kind"]), int(record["rows"] or 0))] * count
    return out


def test_plan_writes_nothing_and_predicts_every_capture(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    make_sources(adapter)
    warehouse.close_all()

    first = plan_then_build(warehouse, project)  # no _sqlorch yet: state reads as empty
    assert {s["change"] for s in first.values()} == {"full"}

    pending_changes(warehouse.connect(), project)
    warehouse.close_all()
    sources = plan_then_build(warehouse, project)
    # not trivially equal: each kind of change is there, with the rows the capture takes
    assert (sources["raw.events"]["change"], sources["raw.events"]["rows"]) == ("append", 3)  # 2 new + 1 tie
    # the quiet update is outside the cursor's reach: one whole diff of update + delete +
    # insert (4 images) and the quiet update (2)
    customers = sources["raw.customers"]
    assert (customers["change"], customers["rows"], customers["batches"]) == ("delta", 6, 1)
    # a column added that no model reads is not captured (``capture.captured_columns``)
    assert (sources["raw.tags"]["change"], sources["raw.tags"]["rows"]) == ("none", 0)
    assert sources["raw.rates"]["change"] == "full"

    recapture_changes(warehouse.connect(), project)
    warehouse.close_all()
    whole = plan_then_build(warehouse, project)
    assert {name: s["change"] for name, s in whole.items()} == {
        "raw.customers": "full",
        "raw.events": "full",
        "raw.rates": "none",
        "raw.tags": "full",
    }
    assert "repeated values" in whole["raw.customers"]["reason"]
    assert "not append-only" in whole["raw.events"]["reason"]
    assert "unique_key changed" in whole["raw.tags"]["reason"]


def test_a_read_only_connection_refuses_writes(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    create_table(adapter, RATES, COLUMNS[RATES])
    warehouse.close_all()
    reader = connect(warehouse.target(), read_only=True)
    warehouse.adapters.append(reader)
    with pytest.raises(AdapterError, match="read-only"):
        reader.insert_rows(RATES, list(COLUMNS[RATES]), [("EUR", Decimal("1.1"))])
    with pytest.raises(AdapterError, match="read-only"):
        reader.execute(exp.delete(RATES.to_table(), where=exp.true()))
    with pytest.raises(AdapterError, match="read-only"):
        reader.ensure_schema("elsewhere")
    assert reader.fetch(exp.select(exp.func("count", exp.Star())).from_(RATES.to_table()))[0][0] == 0


def test_plan_predicts_captures_through_schema_events(warehouse: Warehouse, tmp_path: Path) -> None:
    """The schema-event histories (a column added or dropped, a type widened, a table
    recreated or truncated and reloaded, ties, an update that leaves its cursor): before
    every build, plan changes nothing and predicts what the capture then records."""
    from tests.adapters.test_schema_event_histories import EVENTS_OF, SchemaHistory
    from tests.adapters.test_schema_event_histories import PROJECT as HISTORY_PROJECT

    project = write_files(tmp_path / "history", HISTORY_PROJECT)
    warehouse.write_profiles()
    history = SchemaHistory(warehouse.connect(), seed=11)
    history.create()
    warehouse.close_all()
    plan_then_build(warehouse, project)
    changes: Counter[str] = Counter()
    for event in EVENTS_OF[warehouse.kind]:
        history.adapter = warehouse.connect()
        history.step(event)
        warehouse.close_all()
        changes.update(source["change"] for source in plan_then_build(warehouse, project).values())
    # every kind of capture was predicted along the way, not only "nothing changed"
    assert {"append", "delta", "full"} <= set(changes), changes


def test_a_query_fingerprints_as_the_table_it_would_be(warehouse: Warehouse) -> None:
    """``plan`` fingerprints a shadow as a capture would leave it, as a query: equal rows
    give the fingerprint the table has, in any order; one row more or changed, another."""
    adapter = warehouse.connect()
    create_table(adapter, TAGS, COLUMNS[TAGS])
    adapter.insert_rows(TAGS, list(COLUMNS[TAGS]), [(1, "a"), (2, None), (3, "c")])
    names = list(COLUMNS[TAGS])
    rows = exp.select(*names).from_(TAGS.to_table())
    table = adapter.fingerprint(TAGS, names)
    assert adapter.fingerprint(rows.order_by("tag_id"), names) == table is not None
    assert adapter.fingerprint(exp.union(rows, rows.where("tag_id = 1"), distinct=False), names) != table
    changed = exp.select(
        "tag_id", exp.alias_(exp.func("coalesce", exp.column("label"), exp.Literal.string("x")), "label")
    )
    assert adapter.fingerprint(changed.from_(TAGS.to_table()), names) != table
