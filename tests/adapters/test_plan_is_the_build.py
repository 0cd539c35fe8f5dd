"""The plan is the build: for every model of a build, the statements the warehouse received
are exactly the statements the plan held for it (the branch the build took, where the plan
held a choice), and ``plan --explain`` prints those statements.

What ran is read from the warehouse's own log of the statements it received, never from
sqlorch: DuckDB's query log (the ``query_log`` target setting), Postgres' server log with
``log_statement = 'all'`` for the test's database.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from sqlorch import api
from sqlorch.planning.steps import MAP_CHANGES, Choice, Chunks, Item, Plan, placeholder
from sqlorch.planning.transaction_groups import BATCH_ROWS
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse, _Servers, _warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, create_table
from tests.conftest import write_files

PROJECT = {
    "models/sources.yml": (
        "sources:\n  raw.orders: {unique_key: order_id}\n  raw.events: {cursor: ts, append_only: true}\n"
    ),
    "models/staging/stg_orders.sql": (
        "SELECT order_id, customer_id, amount, status FROM raw.orders WHERE status <> 'void'\n"
    ),
    "models/staging/stg_events.sql": "SELECT user_id, ts, kind FROM raw.events\n",
    "models/marts/customer_totals.sql": (
        "SELECT customer_id, count(DISTINCT amount) AS amounts, sum(amount) AS total\n"
        "FROM staging.stg_orders GROUP BY customer_id\n"  # not signed-foldable: keys replaced
    ),
    "models/marts/ranked_orders.sql": (
        "SELECT customer_id, order_id,\n"
        "  row_number() OVER (PARTITION BY customer_id ORDER BY order_id) AS n\n"
        "FROM staging.stg_orders\n"
    ),
    "models/marts/event_counts.sql": "SELECT user_id, count(*) AS events FROM staging.stg_events GROUP BY user_id\n",
    "models/marts/big_customers.sql": (
        "-- materialized: view\nSELECT customer_id FROM marts.customer_totals WHERE total > 100\n"
    ),
}
ORDERS = TableRef(schema="raw", name="orders")
EVENTS = TableRef(schema="raw", name="events")


@pytest.fixture(params=["duckdb", "postgres"])
def logged(request: pytest.FixtureRequest, standin_servers: _Servers, tmp_path: Path) -> Any:
    """A warehouse whose statements are logged by the warehouse itself, and a reader of
    the statements logged since the last read (BEGIN/COMMIT left out)."""
    for warehouse in _warehouse(request.param, standin_servers, tmp_path):
        if warehouse.kind == "duckdb":
            folder = tmp_path / "query_log"
            warehouse.settings["query_log"] = str(folder)
            read = _duckdb_log(folder / "duckdb_log_entries.csv")
        else:
            server = standin_servers.get("postgres")
            admin = warehouse.connect(dbname="postgres")
            admin.execute(
                exp.Command(
                    this="ALTER", expression=f"DATABASE \"{warehouse.settings['dbname']}\" SET log_statement = 'all'"
                )
            )
            read = _postgres_log(server.log_path)
        warehouse.write_profiles()
        yield warehouse, read


def _duckdb_log(path: Path) -> Callable[[], list[str]]:
    seen = [0]

    def read() -> list[str]:
        if not path.exists():
            return []
        with path.open(newline="") as file:
            rows = [row["message"] for row in csv.DictReader(file) if row["type"] == "QueryLog"]
        new, seen[0] = rows[seen[0] :], len(rows)
        return [s for s in new if not _control(s)]

    return read


_PG_STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)$")


def _postgres_log(path: Path) -> Callable[[], list[str]]:
    offset = [path.stat().st_size]

    def read() -> list[str]:
        with path.open("rb") as file:
            file.seek(offset[0])
            text = file.read().decode("utf-8", "replace")
            offset[0] = file.tell()
        found = [m.group(1) for line in text.splitlines() if (m := _PG_STATEMENT.search(line))]
        return [s for s in found if not _control(s)]

    return read


def _control(sql: str) -> bool:
    return sql.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK", "BEGIN TRANSACTION")


def _pattern(sql: str, dialect: str) -> re.Pattern[str]:
    """A planned statement as the warehouse receives it, the values bound while running left open."""
    if sql == CATALOG_READ:
        return re.compile(r"SELECT .*(information_schema|pg_catalog|pg_attribute).*", re.DOTALL)
    # a placeholder as the dialect renders it: $name (DuckDB), %(name)s (Postgres)
    mark = re.escape(placeholder("NAME").sql(dialect=dialect)).replace("NAME", r"[a-z_]+")
    value = r"(?:-?\d+(?:\.\d+)?|'[a-z]+')"  # a count, a time or a batch kind, bound while running
    rows = placeholder(BATCH_ROWS).sql(dialect=dialect)  # a transaction group's batch rows, bound by its steps
    if rows in sql:
        before, after = sql.split(rows)
        return re.compile(re.escape(before) + r"\(.*\)" + re.escape(after), re.DOTALL)
    text = value.join(re.escape(part) for part in re.split(mark, sql))
    return re.compile(text)


def _consecutive(executed: list[str], planned: list[str], dialect: str) -> int:
    """Where ``planned`` ran, one statement after the other, in ``executed``."""
    patterns = [_pattern(sql, dialect) for sql in planned]
    starts = [i for i, sql in enumerate(executed) if patterns[0].fullmatch(sql)]
    assert starts, f"{planned[0]!r} never ran"
    start = starts[0]
    for offset, pattern in enumerate(patterns):
        ran = executed[start + offset] if start + offset < len(executed) else None
        assert ran is not None and pattern.fullmatch(ran), f"planned {planned[offset]!r}, ran {ran!r}"
    return start


CATALOG_READ = "-- the catalog read that evaluates a same_columns rule"


def _resolve(
    items: list[Item], taken: list[str], dialect: str, chunks: int | None = None, grouped: bool = False
) -> list[str]:
    """The statements of the branches the build took, in order (``branch`` in run_results),
    with the one read a rule makes of the warehouse: the rebuilt table's columns; a step's
    chunks of keys, as many times as it ran them (``chunks`` in run_results). In a
    transaction group (``grouped``), without the bookkeeping the group's statements do."""
    out: list[str] = []
    for item in items:
        if isinstance(item, Chunks):
            assert chunks, "the plan held chunks of keys, the build ran none"
            out += [statement.render(dialect) for statement in item.statements] * chunks
        elif isinstance(item, Choice):
            if any(rule.test == "same_columns" for branch in item.branches for rule in branch.rules):
                out.append(CATALOG_READ)
            branch = next(b for b in item.branches if b.name == taken[0])
            taken.pop(0)
            out += _resolve(branch.statements, taken, dialect, chunks, grouped)
        elif item.sql is not None and not (grouped and item.grouped):
            out.append(item.render(dialect))
    return out


def _plan_then_build(
    warehouse: Warehouse, project: Path, read: Callable[[], list[str]]
) -> tuple[Plan, dict, list[str]]:
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=1)
    plan = api.plan(options)
    read()
    result = api.build(options)
    failed = {r.model: r.error for r in result.results if r.status != "success"}
    assert not failed, failed
    return plan, {r.model: r for r in result.results}, read()


def _assert_ran_as_planned(plan: Plan, results: dict, executed: list[str]) -> int:
    """Every model's planned statements ran, consecutively, in the warehouse; nothing ran
    between two models' statements; a transaction group's bookkeeping ran right after the
    statements of its last step. Returns the statements matched."""
    blocks: list[tuple[int, int]] = []
    last_of = {step.group: step.ref for step in plan.steps if step.group is not None}
    for step in plan.steps:
        result = results[str(step.ref)]
        assert (result.action, result.strategy) == (step.action, step.strategy) or result.branch, step.ref
        taken = [part.split(":")[0] for part in result.branch.split("; ")] if result.branch else []
        expected = _resolve(step.statements, taken, plan.dialect, result.chunks, step.group is not None)
        assert not taken, (step.ref, taken)
        if step.group is not None and last_of[step.group] == step.ref:
            expected += [statement.render(plan.dialect) for statement in plan.groups[step.group]]
        if not expected:
            continue
        start = _consecutive(executed, expected, plan.dialect)
        blocks.append((start, start + len(expected)))
    blocks.sort()
    for (_, end), (start, _) in itertools.pairwise(blocks):
        between = executed[end:start]
        # Postgres: the view guard's query; any target: the lease's heartbeat (state/lease.py, its own connection)
        assert all("pg_catalog.pg_depend" in sql or '"_sqlorch"."lease"' in sql for sql in between), between
    return sum(end - start for start, end in blocks)


def _sources(warehouse: Warehouse, *sql: str, create: bool = True) -> None:
    adapter = warehouse.connect()
    if create:
        create_table(adapter, ORDERS, {"order_id": "INT", "customer_id": "INT", "amount": "INT", "status": "TEXT"})
        create_table(adapter, EVENTS, {"user_id": "INT", "ts": "INT", "kind": "TEXT"})
    for statement in sql:
        adapter.execute(exp.Command(this="INSERT", expression=statement.split(" ", 1)[1]))
    warehouse.close_all()  # DuckDB: plan opens the file read-only, alone


def test_every_model_runs_the_statements_of_its_plan(
    logged: tuple[Warehouse, Callable[[], list[str]]], tmp_path: Path
) -> None:
    warehouse, read = logged
    project = write_files(tmp_path / "p", PROJECT)
    _sources(warehouse)

    def run(*sql: str) -> None:
        adapter = warehouse.connect()
        for statement in sql:
            adapter.execute(exp.Command(this=statement.split()[0], expression=statement.split(" ", 1)[1]))
        warehouse.close_all()  # DuckDB: plan opens the file read-only, alone

    run(
        "INSERT INTO raw.orders VALUES " + ", ".join(f"({i}, {i % 7}, {i * 3}, 'paid')" for i in range(1, 60)),
        "INSERT INTO raw.events VALUES " + ", ".join(f"({i % 5}, {i}, 'click')" for i in range(1, 40)),
    )
    plan, results, executed = _plan_then_build(warehouse, project, read)
    assert {r.action for r in results.values()} == {"full"}
    matched = _assert_ran_as_planned(plan, results, executed)

    # a few changed orders and appended events: incremental, with choices on upstream outcomes
    run(
        "UPDATE raw.orders SET amount = amount + 1 WHERE order_id IN (3, 4)",
        "DELETE FROM raw.orders WHERE order_id = 5",
        "INSERT INTO raw.events VALUES (1, 50, 'view'), (9, 51, 'view')",
    )
    plan, results, executed = _plan_then_build(warehouse, project, read)
    assert results["marts.customer_totals"].action == "incremental"
    # the upstream's change size is only known while building: where the plan holds a choice
    # on it (a rebuild can win, or few rows take the small-change statements), the build
    # records the branch it took
    totals = next(s for s in plan.steps if str(s.ref) == "marts.customer_totals")
    chose = any(isinstance(item, Choice) for item in totals.statements)
    assert bool(results["marts.customer_totals"].branch) == chose
    assert results["marts.event_counts"].strategy in ("add partial aggregates", "fold signed deltas")
    matched += _assert_ran_as_planned(plan, results, executed)

    # changed SQL upstream: a full rebuild whose diff keeps consumers incremental (or not)
    model = project / "models" / "staging" / "stg_orders.sql"
    model.write_text(model.read_text().replace("amount,", "amount * 2 AS amount,"))
    plan, results, executed = _plan_then_build(warehouse, project, read)
    assert results["staging.stg_orders"].action == "full"
    matched += _assert_ran_as_planned(plan, results, executed)

    # a source column's type changed: its readers rebuild, saying which column and types
    run(
        "ALTER TABLE raw.orders ALTER COLUMN amount TYPE DECIMAL(12, 2)",
        "INSERT INTO raw.orders VALUES (70, 1, 2.5, 'paid')",
    )
    plan, results, executed = _plan_then_build(warehouse, project, read)
    stg = next(s for s in plan.steps if str(s.ref) == "staging.stg_orders")
    assert (stg.action, stg.reason) == ("full", "source raw.orders: column amount INT -> DECIMAL(12, 2)")
    assert (results["staging.stg_orders"].action, results["staging.stg_orders"].reason) == (stg.action, stg.reason)
    matched += _assert_ran_as_planned(plan, results, executed)
    assert_models_match_their_sql(warehouse, project)
    assert matched > 40


def test_a_change_over_max_batch_rows_runs_its_chunks_as_planned(
    logged: tuple[Warehouse, Callable[[], list[str]]], tmp_path: Path
) -> None:
    """A step whose change exceeds ``max_batch_rows`` holds its per-chunk statements once,
    with ``$chunk`` and ``$chunks`` open; the warehouse receives them once per chunk, with
    the chunk's number and the count bound."""
    warehouse, read = logged
    project = write_files(tmp_path / "p", {**PROJECT, "sqlorch.yml": "max_batch_rows: 4\n"})
    _sources(
        warehouse,
        "INSERT INTO raw.orders VALUES " + ", ".join(f"({i}, {i % 7}, {i * 3}, 'paid')" for i in range(1, 60)),
    )
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=1)
    api.build(options)
    more = ", ".join(f"({i}, {i % 7}, {i}, 'paid')" for i in range(100, 110))
    _sources(warehouse, f"INSERT INTO raw.orders VALUES {more}", create=False)
    plan, results, executed = _plan_then_build(warehouse, project, read)
    chunked = {str(s.ref) for s in plan.steps if any(isinstance(i, Chunks) for i in s.statements)}
    assert all((results[name].chunks or 0) > 1 for name in chunked)
    # the staging model maps the source's change log in one pass (``chunks.py``: not chunked);
    # a consumer that replaces keys chunks, inside the branch its upstream's outcome selects
    assert results["staging.stg_orders"].strategy == MAP_CHANGES
    assert (results["marts.ranked_orders"].chunks or 0) > 1, results["marts.ranked_orders"]
    assert _assert_ran_as_planned(plan, results, executed) > 20
    assert_models_match_their_sql(warehouse, project)  # the chunks replaced every key, once


def test_plan_explain_prints_the_planned_statements(
    logged: tuple[Warehouse, Callable[[], list[str]]], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    warehouse, read = logged
    project = write_files(tmp_path / "p", PROJECT)
    _sources(warehouse, "INSERT INTO raw.orders VALUES (1, 1, 10, 'paid'), (2, 1, 20, 'paid')")
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=1)
    api.build(options)
    _sources(warehouse, "INSERT INTO raw.orders VALUES (3, 2, 30, 'paid')", create=False)
    args = ("--project-dir", project, "--profiles-dir", warehouse.profiles_dir)
    planned = json.loads(cli("plan", "--json", *args).output)
    step = next(s for s in planned["steps"] if s["model"] == "marts.customer_totals")
    explained = cli("plan", "--explain", "marts.customer_totals", *args)
    assert explained.exit_code == 0, explained.output
    printed = [line for line in explained.output.splitlines() if line and not line.startswith("-- ")]

    def every(items: list[dict]) -> list[str]:
        out: list[str] = []
        for item in items:
            if "choice" in item:
                for branch in item["choice"]:
                    out += every(branch["statements"])
            elif item["kind"] not in ("audit", "let"):
                out.append(item["sql"])
        return out

    group = [g["statements"] for g in planned["transaction_groups"] if g["group"] == step["transaction_group"]]
    assert printed == every(step["statements"]) + every(group[0] if group else []) and len(printed) > 5
    read()
    result = api.build(options)
    built = next(r for r in result.results if r.model == "marts.customer_totals")
    assert built.action == "incremental"
    taken = [part.split(":")[0] for part in built.branch.split("; ")] if built.branch else []

    def chosen(items: list[dict]) -> list[str]:
        out: list[str] = []
        for item in items:
            if "choice" in item:
                name = taken.pop(0)
                out += chosen(next(b for b in item["choice"] if b["branch"] == name)["statements"])
            elif item["kind"] not in ("audit", "let") and not (step["transaction_group"] and "grouped" in item):
                out.append(item["sql"])  # in a transaction group, the group's bookkeeping writes the grouped
        return out

    ran_as_printed = chosen(step["statements"])
    assert set(ran_as_printed) <= set(printed)
    _consecutive(read(), ran_as_printed, planned["dialect"])
