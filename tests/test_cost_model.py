"""The cost model: fixture pairs (estimate and history in; winner, both costs and affected
keys out), and, on a real DuckDB file, that each build records its runs' costs and table
statistics and that this history changes a later plan's decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from sqlorch import api
from sqlorch.api import Options
from sqlorch.planning.cost import INCREMENTAL, Estimate, affected_keys, break_even, estimate_costs
from sqlorch.state.history import RunCost

CASES = yaml.safe_load((Path(__file__).parent / "fixtures" / "cost_model" / "cases.yml").read_text())


def _history(runs: list[dict[str, Any]]) -> list[RunCost]:
    return [RunCost(r["strategy"], r["seconds"], r["rows_read"], r["rows_written"], None, None) for r in runs]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cost_model_fixture(case: dict[str, Any]) -> None:
    costs = estimate_costs(Estimate(**case["estimate"]), _history(case.get("history", [])))
    expect = case["expect"]
    assert costs.winner == expect["winner"]
    assert costs.incremental == pytest.approx(expect["incremental"], rel=1e-5)
    assert costs.full == pytest.approx(expect["full"], rel=1e-5)
    assert costs.affected_keys == expect["affected_keys"]
    assert costs.folds == expect.get("folds", False)


def test_window_tails_are_priced_by_the_groups_they_rewrite() -> None:
    """The events benchmark's sessions at 50M events (48.7M sessions of 200,000 users, tails
    current, a change log no model reads), 0.1% of events appended: the tails rewrite at most
    two sessions per new event, not all ~240 sessions of each of the ~44,000 users touched, and
    a rebuild runs the windows twice (the tails' pass). Priced by the touched users' sessions,
    the break-even was 31,633 events and this append rebuilt the sessions: 57 s, where
    extending the tails takes a few seconds."""
    sessions = Estimate(
        changed_rows=49_457,
        input_rows=49_499_556,
        table_rows=48_748_543,
        distinct_keys=200_000,
        diffs=False,
        logged=False,
        appends_only=True,
        tails=True,
    )
    costs = estimate_costs(sessions, [])
    assert (costs.winner, costs.tails) == (INCREMENTAL, True), costs
    threshold = break_even(sessions, [])
    assert threshold is None or threshold > 20 * sessions.changed_rows, threshold


@pytest.mark.parametrize(
    ("changed", "distinct", "table", "expected"),
    [
        (0, 100, 100, 0),  # nothing changed, nothing hit
        (1, 1_000_000, 1_000_000, 1),
        (10, 3, 3, 3),  # never more keys than the table has
        (5, None, None, 5),  # nothing known: one key per changed row
        (1000, None, 1000, 632),  # unknown keys: counted as unique (the table's rows)
    ],
)
def test_affected_keys(changed: int, distinct: int | None, table: int | None, expected: int) -> None:
    assert affected_keys(changed, distinct, table) == expected


SOURCES = "sources:\n  raw.orders: {unique_key: order_id}\n"
PER_CUSTOMER = "SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM raw.orders GROUP BY customer_id\n"
RANKED = (
    "SELECT order_id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY order_id) AS nth\n"
    "FROM raw.orders\n"
)


@pytest.fixture
def orders_project(tmp_path: Path) -> Path:
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "models" / "sources.yml").write_text(SOURCES)
    (tmp_path / "models" / "marts" / "per_customer.sql").write_text(PER_CUSTOMER)
    (tmp_path / "models" / "marts" / "ranked.sql").write_text(RANKED)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.orders AS SELECT range AS order_id, range % 100 AS customer_id, "
            "CAST(range AS DOUBLE) AS amount FROM range(2000)"
        )
    return tmp_path


def _update(project: Path, where: str) -> None:
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute(f"UPDATE raw.orders SET amount = amount + 1 WHERE {where}")


def _runs(project: Path, model: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT strategy, seconds, rows_read, rows_written, table_rows, distinct_keys "
            "FROM _sqlorch.batches WHERE relation = ? ORDER BY batch",
            [model],
        ).fetchall()


def test_each_build_records_its_cost_and_the_tables_statistics(orders_project: Path) -> None:
    api.build(Options(project_dir=orders_project))
    _update(orders_project, "order_id IN (3, 4)")
    result = api.build(Options(project_dir=orders_project))
    assert {r.model: r.action for r in result.results} == {
        "marts.per_customer": "incremental",
        "marts.ranked": "incremental",
    }
    full, incremental = _runs(orders_project, "marts.ranked")
    # strategy, seconds, rows read and written (the plan's estimate), table rows, distinct keys
    assert full[0] == "full" and full[1] > 0 and full[2] > 0 and full[3] > 0
    assert full[4] == 2000 and abs(full[5] - 100) <= 10  # the window's 100 partitions, counted approximately
    assert incremental[0] == "incremental" and incremental[1] > 0
    assert incremental[4:] == full[4:]  # rows replaced by as many; the key count carried over
    per_customer = _runs(orders_project, "marts.per_customer")
    assert [(r[0], r[4], r[5]) for r in per_customer] == [("full", 100, 100), ("incremental", 100, 100)]


def test_history_changes_a_later_decision(orders_project: Path, cli) -> None:
    """The same pending change is planned incremental, until the model's recorded
    incremental runs say they cost far more than the prior assumed: most of its recent
    runs, not one slow run (a busy machine), and only from three runs on."""
    api.build(Options(project_dir=orders_project))
    for first in (3, 5, 7):
        _update(orders_project, f"order_id IN ({first}, {first + 1})")
        api.build(Options(project_dir=orders_project))
    _update(orders_project, "order_id IN (9, 10, 11, 12, 13, 14, 15, 16)")

    def planned() -> dict[str, dict[str, Any]]:
        run = cli("plan", "--json", "--project-dir", orders_project)
        assert run.exit_code == 0, run.output
        return {s["model"]: s for s in json.loads(run.output)["steps"]}

    def slow_runs(batches: str) -> None:
        with duckdb.connect(str(orders_project / "warehouse.duckdb")) as con:
            # as if those incremental runs had taken a minute each
            con.execute(
                "UPDATE _sqlorch.batches SET seconds = 60 WHERE relation = 'marts.ranked' "
                f"AND strategy = 'incremental' AND batch IN ({batches})"
            )

    before = planned()["marts.ranked"]
    assert (before["action"], before["cost_winner"]) == ("incremental", "incremental")
    assert before["cost_incremental"] < before["cost_full"]
    slow_runs("2")  # one slow run of three: the median run is still a fast one
    assert planned()["marts.ranked"]["cost_incremental"] == pytest.approx(before["cost_incremental"], rel=0.5)
    assert planned()["marts.ranked"]["action"] == "incremental"
    slow_runs("2, 3")
    after = planned()["marts.ranked"]
    assert (after["action"], after["strategy"], after["cost_winner"]) == ("full", "rebuild", "full")
    assert after["cost_incremental"] > max(10 * before["cost_incremental"], after["cost_full"] + 0.1)
    assert after["cost_full"] == pytest.approx(before["cost_full"])
    assert planned()["marts.per_customer"]["action"] == "incremental"  # its own history is unchanged
    # and the build does what the plan said
    result = api.build(Options(project_dir=orders_project))
    ranked = next(r for r in result.results if r.model == "marts.ranked")
    assert (ranked.action, ranked.strategy) == ("full", "rebuild")


def test_a_fold_replaces_keys_when_its_missing_state_costs_more_to_build(tmp_path: Path, cli) -> None:
    """Folding signed deltas first builds its group state from every input row where the
    state is not current: priced at the model's rebuild rate, and where that is dearer than
    replacing the affected keys the keys are replaced and no state is built."""
    (tmp_path / "models" / "staging").mkdir(parents=True)
    (tmp_path / "models" / "marts").mkdir()
    (tmp_path / "models" / "sources.yml").write_text(SOURCES)
    (tmp_path / "models" / "staging" / "orders.sql").write_text(
        "SELECT order_id, customer_id, amount FROM raw.orders\n"
    )
    totals = "SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM staging.orders GROUP BY customer_id"
    (tmp_path / "models" / "marts" / "totals.sql").write_text(totals + "\n")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.orders AS SELECT range AS order_id, range % 100 AS customer_id, "
            "CAST(range AS DECIMAL(12, 2)) AS amount FROM range(2000)"
        )
    api.build(Options(project_dir=tmp_path))
    for _ in range(2):  # three full runs: the cost model learns a rate from three runs on
        api.build(Options(project_dir=tmp_path, full_refresh=True))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        # the rebuild wrote the group state; lost (as after a build by a release that kept none)
        con.execute("DROP TABLE _sqlorch.agg__marts__totals")
        con.execute("DELETE FROM _sqlorch.aggregate_states WHERE relation = 'marts.totals'")
    _update(tmp_path, "order_id IN (3, 4)")

    def planned() -> dict[str, Any]:
        run = cli("plan", "--json", "--project-dir", tmp_path)
        assert run.exit_code == 0, run.output
        return next(s for s in json.loads(run.output)["steps"] if s["model"] == "marts.totals")

    assert planned()["strategy"] == "fold signed deltas"  # 2,100 rows of state cost next to nothing
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        # as if its builds had taken ten minutes each: rows read at a rebuild's rate are dear
        con.execute("UPDATE _sqlorch.batches SET seconds = 600 WHERE relation = 'marts.totals'")
    step = planned()
    assert (step["action"], step["cost_winner"]) == ("incremental", "incremental")
    assert step["strategy"] in ("merge keys", "delete+insert keys")
    result = api.build(Options(project_dir=tmp_path))
    built = next(r for r in result.results if r.model == "marts.totals")
    assert (built.action, built.strategy) == ("incremental", step["strategy"])
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        found = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = '_sqlorch'").fetchall()
        wrong = con.execute(f"SELECT count(*) FROM ((SELECT * FROM marts.totals) EXCEPT ALL ({totals}))").fetchall()
    assert not any(str(name).startswith("agg__") for (name,) in found)
    assert wrong == [(0,)]


def test_a_rebuild_nobody_reads_is_not_diffed(orders_project: Path, cli) -> None:
    """A rebuilt model's old and new rows are diffed into its change log only when a model
    reads it: a table no model reads records a whole batch, one copy and two scans less."""
    (orders_project / "models" / "marts" / "top.sql").write_text("SELECT customer_id, total FROM marts.per_customer\n")
    api.build(Options(project_dir=orders_project))
    for name in ("per_customer", "ranked"):  # a changed SQL: both rebuild
        path = orders_project / "models" / "marts" / f"{name}.sql"
        path.write_text(path.read_text().replace("FROM raw.orders", "FROM raw.orders WHERE order_id >= 0"))
    run = cli("plan", "--json", "--project-dir", orders_project)
    assert run.exit_code == 0, run.output
    steps = {s["model"]: s for s in json.loads(run.output)["steps"]}

    def purposes(step: dict[str, Any]) -> set[str]:
        return {s["purpose"] for s in step["statements"] if "purpose" in s}

    assert steps["marts.ranked"]["action"] == steps["marts.per_customer"]["action"] == "full"
    assert "keep the old rows" not in purposes(steps["marts.ranked"])  # nobody reads it
    assert "keep the old rows" in purposes(steps["marts.per_customer"])  # marts.top reads it
    api.build(Options(project_dir=orders_project))
    with duckdb.connect(str(orders_project / "warehouse.duckdb"), read_only=True) as con:
        kinds = dict(
            con.execute(
                "SELECT relation, kind FROM _sqlorch.batches WHERE batch = 2 AND relation LIKE 'marts.%'"
            ).fetchall()
        )
    assert (kinds["marts.ranked"], kinds["marts.per_customer"]) == ("full", "delta")


def test_a_rebuild_whose_readers_all_rebuild_is_not_diffed(orders_project: Path, cli) -> None:
    """The diff of a rebuilt model feeds its readers' deltas: when every reader rebuilds in
    the same plan, nobody would read it."""
    top = orders_project / "models" / "marts" / "top.sql"
    top.write_text("SELECT customer_id, total FROM marts.per_customer\n")
    api.build(Options(project_dir=orders_project))
    per_customer = orders_project / "models" / "marts" / "per_customer.sql"
    per_customer.write_text(per_customer.read_text().replace("FROM raw.orders", "FROM raw.orders WHERE order_id >= 0"))

    def planned() -> dict[str, Any]:
        run = cli("plan", "--json", "--project-dir", orders_project)
        assert run.exit_code == 0, run.output
        step = next(s for s in json.loads(run.output)["steps"] if s["model"] == "marts.per_customer")
        assert step["action"] == "full"
        return {s["purpose"] for s in step["statements"] if "purpose" in s}

    assert "keep the old rows" in planned()  # marts.top may stay incremental on the delta
    top.write_text("SELECT customer_id, total * 2 AS total FROM marts.per_customer\n")
    assert "keep the old rows" not in planned()  # marts.top rebuilds too: no diff
    result = api.build(Options(project_dir=orders_project))
    actions = {r.model: r.action for r in result.results}
    assert (actions["marts.per_customer"], actions["marts.top"]) == ("full", "full")
    with duckdb.connect(str(orders_project / "warehouse.duckdb"), read_only=True) as con:
        kind = con.execute("SELECT kind FROM _sqlorch.batches WHERE relation = 'marts.per_customer' AND batch = 2")
        assert kind.fetchall() == [("full",)]


def test_readers_that_would_keep_a_rebuilt_inputs_diff_alive_rebuild(tmp_path: Path, cli) -> None:
    """A change of a tenth of 300,000 orders rebuilds the staging model. Its readers, small
    aggregates whose fold of 60,000 changed rows is within 0.1 s of their rebuild, would
    keep that rebuild copying and diffing its old rows only for them: that cost is theirs, so
    they rebuild too, and the staging model then skips its diff (one batch, no change log)."""
    (tmp_path / "models" / "staging").mkdir(parents=True)
    (tmp_path / "models" / "marts").mkdir()
    (tmp_path / "models" / "sources.yml").write_text(SOURCES)
    (tmp_path / "models" / "staging" / "orders.sql").write_text("SELECT order_id, day, amount FROM raw.orders\n")
    daily = "SELECT day, count(*) AS orders, sum(amount) AS total FROM staging.orders GROUP BY day"
    (tmp_path / "models" / "marts" / "daily.sql").write_text(daily + "\n")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.orders AS SELECT range AS order_id, CAST(range % 365 AS INTEGER) AS day, "
            "CAST(range % 1000 AS DECIMAL(12, 2)) AS amount FROM range(300000)"
        )
    api.build(Options(project_dir=tmp_path))
    _update(tmp_path, "order_id % 10 = 0")
    run = cli("plan", "--json", "--project-dir", tmp_path)
    assert run.exit_code == 0, run.output
    steps = {s["model"]: s for s in json.loads(run.output)["steps"]}
    assert steps["staging.orders"]["action"] == "full"
    reader = steps["marts.daily"]
    assert (reader["action"], reader["cost_winner"]) == ("full", "full")
    assert reader["cost_incremental"] > reader["cost_full"] + 0.1
    result = api.build(Options(project_dir=tmp_path))
    assert {r.model: r.action for r in result.results} == {"staging.orders": "full", "marts.daily": "full"}
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        logged = con.execute("SELECT count(*) FROM _sqlorch.chg__staging__orders").fetchall()
        wrong = con.execute(f"SELECT count(*) FROM ((SELECT * FROM marts.daily) EXCEPT ALL ({daily}))").fetchall()
    assert logged == [(0,)]  # the rebuild diffed nothing: no reader needed it
    assert wrong == [(0,)]


APPENDED = "sources:\n  raw.events: {cursor: _loaded_at, append_only: true}\n"
NUMBERED = (
    "SELECT user_id, event_id, ts, row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS nth\n"
    "FROM raw.events\n"
)


def test_a_window_over_appended_rows_is_priced_by_the_rows_that_differ(tmp_path: Path, cli) -> None:
    """A window per user of 2,000,000 events (100 a user) that a model reads, after its first
    build only: 800 appended events hit 4% of the users, 78,400 stored rows of which about 800
    differ (diffed, then logged and replaced), so the affected partitions are recomputed (the
    events benchmark's ``marts.sessions`` was rebuilt because every stored row of an affected
    user was priced as written four times). An event appended to every user rebuilds: all the
    rows are recomputed."""
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "models" / "sources.yml").write_text(APPENDED)
    (tmp_path / "models" / "marts" / "numbered.sql").write_text(NUMBERED)
    (tmp_path / "models" / "marts" / "latest.sql").write_text(
        "SELECT user_id, max(nth) AS events FROM marts.numbered GROUP BY user_id\n"
    )
    database = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(database) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.events AS SELECT range AS event_id, range % 20000 AS user_id, "
            "TIMESTAMP '2024-01-01' + to_seconds(range) AS ts, TIMESTAMP '2024-01-01' AS _loaded_at FROM range(2000000)"
        )
    api.build(Options(project_dir=tmp_path))

    def append(users: int, loaded: str) -> None:
        """One new event for each of the first ``users`` users, later than all of theirs."""
        with duckdb.connect(database) as con:
            con.execute(
                "INSERT INTO raw.events SELECT (SELECT max(event_id) FROM raw.events) + 1 + range, range, "
                "CAST(? AS TIMESTAMP) + to_seconds(range), CAST(? AS TIMESTAMP) FROM range(?)",
                [loaded, loaded, users],
            )

    def planned() -> dict[str, Any]:
        run = cli("plan", "--json", "--project-dir", tmp_path)
        assert run.exit_code == 0, run.output
        return next(s for s in json.loads(run.output)["steps"] if s["model"] == "marts.numbered")

    def step_of(step: dict[str, Any]) -> tuple[str, str]:
        return step["action"], step["strategy"]

    append(800, "2024-02-01")
    step = planned()
    decision = (step["action"], step["strategy"], step["cost_winner"])
    assert decision == ("incremental", "delete+insert keys", "incremental")
    assert 700 <= step["estimated_affected_keys"] <= 850
    assert step["cost_incremental"] < 0.75 * step["cost_full"]  # not a close call left to MIN_SAVING
    # the keys' 78,400 rows copied and diffed at a quarter of a row, 800 rows that differ written
    # four times: 4 * 78,400 = 313,600 rows before
    assert step["estimated_rows_written"] < 50_000
    result = api.build(Options(project_dir=tmp_path))
    assert {r.model: (r.action, r.strategy) for r in result.results}["marts.numbered"] == step_of(step)

    append(20000, "2024-03-01")  # every user
    step = planned()
    assert (step["action"], step["strategy"], step["cost_winner"]) == ("full", "rebuild", "full")
    assert step["cost_incremental"] > 3 * step["cost_full"]
    result = api.build(Options(project_dir=tmp_path))
    assert {r.model: (r.action, r.strategy) for r in result.results}["marts.numbered"] == step_of(step)
    with duckdb.connect(database, read_only=True) as con:
        wrong = con.execute(f"SELECT count(*) FROM ((SELECT * FROM marts.numbered) EXCEPT ALL ({NUMBERED}))").fetchall()
        rows = con.execute("SELECT count(*) FROM marts.numbered").fetchall()
    assert wrong == [(0,)] and rows == [(2020800,)]
