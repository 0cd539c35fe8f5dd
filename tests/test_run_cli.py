"""``status``, ``suspend``, ``resume`` and ``run``'s options on DuckDB: source freshness
verdicts from real rows, read-only status, and the errors users see."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from sqlorch import api_run
from sqlorch.adapters.registry import connect
from sqlorch.api import Options
from sqlorch.config import Target
from sqlorch.errors import SqlorchError
from sqlorch.schedule.due import ModelControl
from sqlorch.state.control import load_control, load_ledger
from sqlorch.state.lease import acquire_lease
from tests.adapters.test_conformance import run_sqlorch
from tests.conftest import run_cli, write_files

SOURCES = """
sources:
  raw.events: {cursor: loaded_at, append_only: true, freshness: {warn_after: 1h, error_after: 2h}}
  raw.users: {unique_key: id, loaded_at: synced_at, freshness: {warn_after: 1h}}
  raw.empty: {unique_key: id, loaded_at: synced_at, freshness: {error_after: 1d}}
  raw.plain: {unique_key: id}
"""
MODELS = {
    "models/sources.yml": SOURCES,
    "models/marts/ev.sql": "SELECT count(*) AS n FROM raw.events",
    "models/marts/us.sql": "SELECT count(*) AS n FROM raw.users",
    "models/marts/em.sql": "SELECT count(*) AS n FROM raw.empty",
    "models/marts/pl.sql": "SELECT count(*) AS n FROM raw.plain",
}


def _fill(project: Path, events_age: str, users_age: str) -> None:
    """Sources whose newest row was loaded ``events_age`` / ``users_age`` ago."""
    stamp = "now()::TIMESTAMP - INTERVAL {}"
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute(f"CREATE OR REPLACE TABLE raw.events AS SELECT 1 AS id, {stamp.format(events_age)} AS loaded_at")
        con.execute(f"CREATE OR REPLACE TABLE raw.users AS SELECT 1 AS id, {stamp.format(users_age)} AS synced_at")
        con.execute("CREATE OR REPLACE TABLE raw.empty (id INT, synced_at TIMESTAMP)")
        con.execute("CREATE OR REPLACE TABLE raw.plain AS SELECT 1 AS id")


def _status(project: Path) -> dict[str, object]:
    done = run_cli("status", "--json", "--project-dir", project)
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_source_verdicts_from_their_loaded_at_column(make_project: Callable[[dict[str, str]], Path]) -> None:
    project = make_project(MODELS)
    _fill(project, "'90 minutes'", "'10 minutes'")
    assert run_sqlorch("run", "--once", "--project-dir", project).returncode == 0
    sources = {s["source"]: s for s in _status(project)["sources"]}  # type: ignore[attr-defined]
    assert sources["raw.events"]["verdict"] == "warn" and 5300 < sources["raw.events"]["age_seconds"] < 5500
    assert sources["raw.events"]["loaded_at"] == "loaded_at"  # the cursor, by default
    assert sources["raw.users"]["verdict"] == "ok" and sources["raw.users"]["loaded_at"] == "synced_at"
    assert sources["raw.empty"]["verdict"] == "error"  # no rows: as late as can be
    assert sources["raw.plain"]["verdict"] is None and sources["raw.plain"]["loaded_at"] is None
    _fill(project, "'3 hours'", "'2 hours'")
    sources = {s["source"]: s for s in _status(project)["sources"]}  # type: ignore[attr-defined]
    assert (sources["raw.events"]["verdict"], sources["raw.users"]["verdict"]) == ("error", "warn")


def test_status_reads_only(make_project: Callable[[dict[str, str]], Path]) -> None:
    project = make_project({"models/marts/one.sql": "-- freshness: 10m\nSELECT 1 AS id"})
    report = _status(project)
    assert not (project / "warehouse.duckdb").exists()  # a DuckDB file is never created by status
    assert "does not exist yet" in str(report["note"])
    assert report["models"] == [  # type: ignore[comparison-overlap]
        {
            "model": "marts.one", "freshness": 600.0, "lag_seconds": 0.0, "last_success": None,
            "next_due": report["models"][0]["next_due"],  # type: ignore[index]
            "consecutive_failures": 0, "suspended": False, "suspended_by": None, "due": True,
            "reason": "not built yet",
        }
    ]  # fmt: skip


def test_run_and_suspension_errors(make_project: Callable[[dict[str, str]], Path]) -> None:
    project = make_project({"models/marts/one.sql": "SELECT 1 AS id"})
    bad = run_cli("run", "--interval", "soon", "--project-dir", project)
    assert bad.exit_code == 1 and "error: --interval: 'soon' is not a duration" in bad.output
    unknown = run_cli("suspend", "marts.nope", "--project-dir", project)
    assert unknown.exit_code == 1 and "error:" in unknown.output and "Traceback" not in unknown.output
    done = run_cli("resume", "marts.one", "--project-dir", project)
    assert done.exit_code == 0 and "marts.one is not suspended" in done.output
    assert run_cli("suspend", "one", "--project-dir", project).exit_code == 0  # the bare name, as --select takes it
    assert _status(project)["models"][0]["suspended"] is True  # type: ignore[index]


def test_docs_show_declared_freshness(make_project: Callable[[dict[str, str]], Path]) -> None:
    project = make_project(
        {
            "sqlorch.yml": "default_freshness: 2h\n",
            "models/staging/a.sql": "-- freshness: downstream\nSELECT 1 AS id",
            "models/marts/b.sql": "-- freshness: 15m\n-- cron: 0 6 * * *\n-- cron_tz: Europe/Berlin\nSELECT 1 AS id",
            "models/marts/c.sql": "SELECT id FROM staging.a",
            "models/marts/d.sql": "-- cron: 30 2 * * *\nSELECT id FROM staging.a",
        }
    )
    assert run_cli("docs", "--project-dir", project).exit_code == 0
    text = (project / "target" / "docs" / "data.js").read_text()
    data = json.loads(json.loads(text[text.index("JSON.parse(") + 11 : text.rindex(");")]))
    targets = {node["id"]: (node["freshness"] or {}).get("target") for node in data["nodes"]}
    assert targets == {
        "staging.a": "downstream",
        "marts.b": "15m, cron 0 6 * * * (Europe/Berlin)",
        "marts.c": "2h (default_freshness)",
        "marts.d": "cron 30 2 * * *",
    }


def test_status_names_the_holder_of_the_lease(make_project: Callable[[dict[str, str]], Path]) -> None:
    """A process holding the target's lease (here this one, as a build would) is shown with
    its host, pid, command and since; a released lease shows as free."""
    project = make_project(MODELS)
    _fill(project, "'1 minute'", "'1 minute'")
    assert _status(project)["lease"] is None  # never taken: no lease table yet
    adapter = connect(Target("dev", "duckdb", {"path": str(project / "warehouse.duckdb")}))
    try:
        with acquire_lease(adapter, "build", wait=0):
            lease = _status(project)["lease"]
            assert isinstance(lease, dict)
            assert (lease["host"], lease["pid"], lease["command"]) == (socket.gethostname(), os.getpid(), "build")
            assert lease["since"] and lease["heartbeat"] and lease["expiry_seconds"] == 60.0
            text = run_cli("status", "--project-dir", project).output
            assert f"lease: held by sqlorch build on host {socket.gethostname()}, pid {os.getpid()}, since" in text
        assert _status(project)["lease"] is None
        assert "lease: free" in run_cli("status", "--project-dir", project).output
    finally:
        adapter.close()


def test_a_build_that_fails_as_a_whole_fails_the_tick_but_no_model(tmp_path: Path) -> None:
    """The build a tick starts fails before any model runs (here its profile broke between
    the tick's source check and the build, through the tick's ``announce`` hook): the tick
    fails with that error and the ledger records it, but no model's failures count, so even
    ``suspend_after_failures: 1`` suspends nothing; the next tick builds everything."""
    profiles = "target: dev\ntargets:\n  dev: {type: duckdb, path: warehouse.duckdb}\n"
    project = write_files(
        tmp_path / "p",
        {
            "models/sources.yml": "sources:\n  raw.events: {cursor: loaded_at, append_only: true}\n",
            "models/marts/n.sql": "SELECT count(*) AS n FROM raw.events\n",
            "sqlorch.yml": "suspend_after_failures: 1\n",
            "profiles.yml": profiles,
        },
    )
    _fill(project, "'1 minute'", "'1 minute'")
    runner = api_run.Runner(Options(project_dir=project, profiles_dir=project, threads=1), 30.0)

    def break_profile(tick: api_run.Tick, why: dict[str, str]) -> None:
        (project / "profiles.yml").write_text("target: dev\ntargets: [\n")

    with pytest.raises(SqlorchError) as failed:
        runner.tick(announce=break_profile)
    assert "profiles.yml" in failed.value.render()
    (project / "profiles.yml").write_text(profiles)

    def state() -> tuple[list[dict[str, object]], dict[str, ModelControl]]:
        adapter = connect(Target("dev", "duckdb", {"path": str(project / "warehouse.duckdb")}))
        try:
            return load_ledger(adapter), load_control(adapter).models
        finally:
            adapter.close()

    ledger, models = state()
    assert [(row["kind"], row["status"]) for row in ledger] == [("run", "error")]  # no step ran
    assert "profiles.yml" in json.loads(str(ledger[0]["summary"]))["error"]
    assert all(m.failures == 0 and not m.suspended for m in models.values()), models
    again = runner.tick()
    assert again.due == ["marts.n"] and again.result is not None and not again.result.failed
    ledger, models = state()
    assert [row["status"] for row in ledger if row["kind"] == "run"] == ["error", "success"]
    runner.close()
