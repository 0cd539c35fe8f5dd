"""The control plane's state on every target: a tick through ``api_run.Runner`` (lease,
source check, first-seen times, heartbeat, build, ledger, control rows), ``status``,
``suspend`` and ``resume``, read back through the same warehouse's adapter."""

from __future__ import annotations

from pathlib import Path

from sqlglot import exp

from sqlorch import api_run
from sqlorch.api import Options
from sqlorch.refs import TableRef
from sqlorch.schedule.due import ModelControl
from sqlorch.state.control import (
    CONTROL_TABLES,
    ControlState,
    Heartbeat,
    LedgerRow,
    append_ledger,
    beat,
    ensure_control,
    load_control,
    load_ledger,
    prune_changes,
    record_changes,
    save_models,
)
from sqlorch.state.store import state_table
from tests.adapters.conftest import Warehouse
from tests.conftest import write_files

EVENTS = TableRef("raw", "events")


def test_control_state_round_trips(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    ensure_control(adapter)
    assert load_control(adapter) == ControlState()
    ensure_control(adapter, adapter.columns_many(CONTROL_TABLES))  # all there: nothing to do
    with adapter.transaction():
        save_models(adapter, {"marts.a": ModelControl(1.5, 2.25, 3, True, 0.125), "marts.b": ModelControl()})
        record_changes(adapter, {"raw.e": {1: 10.0, 2: 20.0, 3: 30.0}})
        append_ledger(adapter, [LedgerRow("r1", "run", None, "success", started=5.0, summary={"due": {"a": "x"}})])
    save_models(adapter, {"marts.a": ModelControl(1.5, 2.25, 0, False, 0.125)})  # replaces its row
    prune_changes(adapter, "raw.e", 20.0)
    beat(adapter, Heartbeat("host:1", "host", 1, 30.0, 99.0))
    beat(adapter, Heartbeat("host:2", "host", 2, 30.0, 100.0))  # one row: the latest
    state = load_control(adapter)
    assert state.models == {"marts.a": ModelControl(1.5, 2.25, 0, False, 0.125), "marts.b": ModelControl()}
    assert state.changes == {"raw.e": {3: 30.0}}
    assert state.heartbeat == Heartbeat("host:2", "host", 2, 30.0, 100.0)
    ledger = load_ledger(adapter)
    assert [(row["run_id"], row["kind"], row["status"]) for row in ledger] == [("r1", "run", "success")]
    rows = adapter.fetch(exp.select("count(*)").from_(state_table("control_models").to_table()))
    assert rows[0][0] == 2  # a model's row is replaced, never duplicated


def test_a_tick_on_every_target(warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse.write_profiles()
    project = write_files(
        tmp_path / "project",
        {
            "models/sources.yml": "sources:\n  raw.events: {unique_key: id}\n",
            "models/staging/ev.sql": "-- freshness: downstream\nSELECT id, amount FROM raw.events\n",
            "models/marts/totals.sql": "-- freshness: 1h\nSELECT count(*) AS n, sum(amount) AS total FROM staging.ev\n",
        },
    )
    adapter = warehouse.connect()
    adapter.ensure_schema("raw")
    adapter.execute(exp.Create(this=EVENTS.to_table(), kind="TABLE", expression=exp.select("1 AS id", "10 AS amount")))
    warehouse.close_all()
    options = Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=1)
    runner = api_run.Runner(options, 30.0)
    first = runner.tick()
    assert first.due == ["marts.totals", "staging.ev"] and first.result is not None and not first.result.failed
    idle = runner.tick()
    assert idle.due == [] and idle.result is None

    adapter = warehouse.connect()
    adapter.execute(exp.insert(exp.select("2 AS id", "5 AS amount"), EVENTS.to_table()))
    warehouse.close_all()
    seen = runner.tick()
    assert seen.changed == ["raw.events"] and seen.due == []  # a 1 h target: not due yet
    report = api_run.status(options)
    models = {m.model: m for m in report.models}
    assert models["marts.totals"].lag_seconds > 0 and models["marts.totals"].next_due is not None
    assert report.heartbeat is not None and report.heartbeat.interval == 30

    assert "suspended" in api_run.set_suspended(options, "staging.ev", True)
    statuses = runner.tick().statuses
    assert statuses["marts.totals"].suspended_by == "staging.ev"
    assert "resumed" in api_run.set_suspended(options, "staging.ev", False)
    runner.close()
    adapter = warehouse.connect()
    ledger = load_ledger(adapter)
    assert [row["status"] for row in ledger if row["kind"] == "run"] == ["success"]
    assert load_control(adapter).heartbeat is None
