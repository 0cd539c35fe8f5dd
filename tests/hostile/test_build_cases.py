"""Hostile inputs at build time: ownership (issue 9, report 5), per-model failures,
upstream columns at compile, interrupted builds and lock waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, run_cli
from tests.hostile.harness import WAREHOUSE, Case, run_case, unowned_snapshot, unowned_tables, write_project

ORDERS = (
    "CREATE SCHEMA raw",
    "CREATE TABLE raw.orders AS SELECT range AS id, range * 1.5 AS amount, range % 7 AS customer_id FROM range(5000)",
)
DECLARED = {"models/sources.yml": "sources:\n  raw.orders: {}\n"}
UPSTREAM = {  # a staging model over an undeclared source: its columns are only known by name
    "models/staging/stg_orders.sql": "SELECT id, amount, customer_id FROM raw.orders",
}

CASES = [
    Case(
        "report-5-model-over-declared-source-compile",
        {**DECLARED, "models/raw/orders.sql": "SELECT 1 AS id, 1.0 AS amount, 1 AS customer_id"},
        ("compile",),
        expect=("model raw.orders would write the relation raw.orders", "declared source"),
        location=r"models/raw/orders\.sql:1:1: error:",
        sources_sql=ORDERS,
    ),
    Case(
        "report-5-model-over-declared-source-build",
        {**DECLARED, "models/raw/orders.sql": "SELECT 1 AS id, 1.0 AS amount, 1 AS customer_id"},
        ("build",),
        expect=("declared source",),
        location=r"models/raw/orders\.sql:1:1: error:",
        sources_sql=ORDERS,
    ),
    Case(
        "model-over-undeclared-existing-table",
        {"models/raw/orders.sql": "SELECT 1 AS id, 1.0 AS amount, 1 AS customer_id"},
        ("build",),
        expect=("raw.orders already exists in the warehouse", "not created by sqlorch"),
        location=r"models/raw/orders\.sql: error:",
        sources_sql=ORDERS,
    ),
    Case(
        "model-over-foreign-table-others-build",
        {
            "models/marts/report.sql": "SELECT 1 AS n",
            "models/marts/report_child.sql": "SELECT n FROM marts.report",
            "models/marts/fine.sql": "SELECT count(*) AS n FROM raw.orders",
        },
        ("build",),
        expect=(
            "marts.report already exists in the warehouse",
            "upstream marts.report failed",
            "marts.fine",
        ),
        location=r"models/marts/report\.sql: error:",
        sources_sql=(*ORDERS, "CREATE SCHEMA marts", "CREATE TABLE marts.report AS SELECT 42 AS n, 'theirs' AS who"),
    ),
    Case(
        "seed-over-foreign-table",
        {"seeds/customers.csv": "id,name\n1,Ada\n", "models/s/a.sql": "SELECT id FROM seeds.customers"},
        ("build",),
        expect=("seeds.customers already exists in the warehouse", "not created by sqlorch"),
        location=r"seeds/customers\.csv: error:",
        sources_sql=("CREATE SCHEMA seeds", "CREATE TABLE seeds.customers AS SELECT 7 AS id, 'theirs' AS name"),
    ),
    Case(
        "model-named-like-a-seed",
        {"seeds/customers.csv": "id,name\n1,Ada\n", "models/seeds/customers.sql": "SELECT 1 AS id"},
        ("build",),
        expect=("two files claim the relation seeds.customers",),
        location=r"models/seeds/customers\.sql:1:1: error:",
        sources_sql=ORDERS,
    ),
    Case(
        "seed-named-like-a-declared-source",
        {
            "models/sources.yml": "sources:\n  seeds.customers: {}\n",
            "seeds/customers.csv": "id,name\n1,Ada\n",
            "models/s/a.sql": "SELECT id FROM seeds.customers",
        },
        ("compile",),
        expect=("seed seeds.customers would write the relation", "declared source"),
        location=r"seeds/customers\.csv:1:1: error:",
        sources_sql=("CREATE SCHEMA seeds", "CREATE TABLE seeds.customers AS SELECT 7 AS id, 'theirs' AS name"),
    ),
    Case(
        "upstream-model-unknown-column-at-compile",
        {**UPSTREAM, "models/marts/m.sql": "SELECT id,\n       no_such_col\nFROM staging.stg_orders"},
        ("compile",),
        expect=("no_such_col",),
        location=r"models/marts/m\.sql:2:8: error: unknown column",
    ),
    Case(
        "upstream-model-unknown-column-through-star-and-union",
        {
            **UPSTREAM,
            "models/intermediate/both.sql": "SELECT * FROM staging.stg_orders\n"
            "UNION ALL SELECT * FROM staging.stg_orders",
            "models/marts/m.sql": "SELECT b.id, b.nope FROM intermediate.both AS b",
        },
        ("compile",),
        expect=("nope",),
        location=r"models/marts/m\.sql:1:\d+: error: unknown column",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


def _statuses(root: Path) -> dict[str, str]:
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    return {r["model"]: r["status"] for r in results}


def test_unknown_column_at_build_skips_only_descendants_then_recovers(tmp_path: Path) -> None:
    """Found only at build (the source's columns are not declared): the model fails with its
    location, its descendant is skipped, the other branch builds with the source's new rows,
    and once the model is fixed the next build succeeds with no manual step."""
    files = {
        **UPSTREAM,
        "models/marts/totals.sql": "SELECT count(*) AS n, sum(amount) AS amount FROM staging.stg_orders",
        "models/marts/bad.sql": "SELECT id, amonut FROM raw.orders",
        "models/marts/bad_child.sql": "SELECT id FROM marts.bad",
    }
    case = Case(
        "unknown-column-at-build",
        files,
        ("build",),
        expect=("amonut", "upstream marts.bad failed"),
        location=r"models/marts/bad\.sql:1:12: error: unknown column",
        sources_sql=ORDERS,
        before=(("build", "--select", "stg_orders+"),),
        between_sql=("INSERT INTO raw.orders VALUES (9000, 2.0, 1)",),
    )
    run = run_case(case, tmp_path)
    root = tmp_path / "project"
    assert _statuses(root) == {
        "staging.stg_orders": "success",
        "marts.totals": "success",
        "marts.bad": "error",
        "marts.bad_child": "skipped",
    }, run.output
    with duckdb.connect(str(root / WAREHOUSE), read_only=True) as con:
        assert con.sql("SELECT n FROM marts.totals").fetchall() == [(5001,)]
    plan = run_cli("plan", "--project-dir", root, "--json")
    assert plan.exit_code == 1, plan.output
    actions = {step["model"]: (step["action"], step["reason"]) for step in json.loads(plan.output)["steps"]}
    assert actions["marts.bad"][0] == "error" and "models/marts/bad.sql:1:12: error:" in actions["marts.bad"][1]
    assert actions["marts.bad_child"] == ("skipped", "upstream marts.bad failed")
    (root / "models/marts/bad.sql").write_text("SELECT id, amount FROM raw.orders")
    fixed = run_cli("build", "--project-dir", root)
    assert fixed.exit_code == 0, fixed.output
    assert set(_statuses(root).values()) == {"success"}


def _slow_project(root: Path) -> Path:
    write_project(
        root,
        {
            "models/s/quick.sql": "SELECT g, count(*) AS n FROM raw.ev GROUP BY g",
            "models/s/quick_child.sql": "SELECT g, n FROM s.quick",
            "models/s/slow.sql": "SELECT a.g, sum(hash(a.id + b.id)) AS h FROM raw.ev AS a "
            "JOIN raw.ev AS b ON a.g = b.g GROUP BY a.g",
        },
    )
    with duckdb.connect(str(root / WAREHOUSE)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.ev AS SELECT range AS id, range % 1200 AS g FROM range(300000)")
    return root


def _build(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sqlorch.cli", "build", "--project-dir", str(root), "--threads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )


def _wait_for_line(process: subprocess.Popen[str], fragment: str, timeout: float = 60) -> str:
    """Read stdout until a line holds ``fragment``; returns what was read."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if fragment in line:
            return seen
    raise AssertionError(f"no line with {fragment!r} in:\n{seen}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_build(tmp_path: Path, signum: signal.Signals) -> None:
    """Stopped while the slow model runs: `interrupted`, what finished, exit 130, no
    traceback, the source untouched; the next build finishes the rest."""
    root = _slow_project(tmp_path / "project")
    db = root / WAREHOUSE
    foreign = unowned_tables(db)
    before = unowned_snapshot(db, foreign)
    process = _build(root)
    seen = _wait_for_line(process, "s.quick_child")  # the quick branch is done, the slow model runs
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    text = seen + out + err
    assert process.returncode == 130, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert "interrupted" in err.splitlines(), text
    assert "2 of 3 models finished: s.quick, s.quick_child" in err, text
    assert unowned_snapshot(db, foreign) == before
    rerun = run_cli("build", "--project-dir", root)
    assert rerun.exit_code == 0, rerun.output
    assert _statuses(root) == {"s.quick": "success", "s.quick_child": "success", "s.slow": "success"}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM s.slow").fetchall() == [(1200,)]


def _second_build_waiting(root: Path) -> tuple[subprocess.Popen[str], subprocess.Popen[str], str]:
    """A first build holding the lock, a second one waiting for it, and the second's first line.
    The first is paused (SIGSTOP) once it holds the lock, until the second has said it waits:
    running, it could finish its slow model (~1 s) before the second's start-up reached the
    lock, and the second then built without waiting (a flaky failure seen in CI)."""
    first = _build(root)
    note = root / (WAREHOUSE + ".sqlorch-lock")
    deadline = time.monotonic() + 60
    while not note.exists() or f'"pid": {first.pid}' not in note.read_text():
        assert time.monotonic() < deadline and first.poll() is None, "the first build never took the lock"
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    try:
        second = _build(root)
        assert second.stderr is not None
        line = second.stderr.readline()  # printed before the wait, not after it
    finally:
        first.send_signal(signal.SIGCONT)
    return first, second, line


def test_lock_wait_names_the_holder(tmp_path: Path) -> None:
    """A second build says at once that it waits and for whom, then builds once the first
    is gone (stopped here, to keep the test short)."""
    root = _slow_project(tmp_path / "project")
    first, second, line = _second_build_waiting(root)
    assert f"held by pid {first.pid} (sqlorch build, since " in line, line
    assert "waiting up to 300 s" in line, line
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err
    assert "Traceback" not in out + err


def test_interrupt_while_waiting_for_the_lock(tmp_path: Path) -> None:
    """Ctrl-C on a build waiting for the database file's lock: exit 130, nothing started.

    The lock is held by this test's own connection, for exactly as long as the test needs.
    A first build as the holder (as this test had) kept it only while its slow model ran,
    about 3.5 s here: on a loaded machine the second build's start-up (imports, project
    load) or the wait for its exit could outlast that, and the first build then released
    the lock before the second asked for it (no waiting line) or finished before its own
    SIGINT (exit 0, not 130): the test's flakiness."""
    root = _slow_project(tmp_path / "project")
    with duckdb.connect(str(root / WAREHOUSE)):
        second = _build(root)
        assert second.stderr is not None
        line = second.stderr.readline()
        assert "waiting for the lock" in line and f"held by pid {os.getpid()}" in line, line
        second.send_signal(signal.SIGINT)
        out, err = second.communicate(timeout=60)
    assert second.returncode == 130, out + err
    assert err.splitlines()[:2] == ["interrupted", "0 of 3 models finished"], err
    assert "Traceback" not in out + err


def test_projects_built_before_ownership_was_recorded_keep_building(tmp_path: Path) -> None:
    """An earlier version recorded what it built only in `_sqlorch.relations`: those relations
    are sqlorch's, so the first build after the upgrade replaces them as before."""
    root = write_project(
        tmp_path / "project", {**UPSTREAM, "models/marts/n.sql": "SELECT count(*) AS n FROM raw.orders"}
    )
    with duckdb.connect(str(root / WAREHOUSE)) as con:
        for statement in ORDERS:
            con.execute(statement)
    assert run_cli("build", "--project-dir", root).exit_code == 0
    with duckdb.connect(str(root / WAREHOUSE)) as con:
        con.execute("DROP TABLE _sqlorch.owned")  # as the previous version left the state
        con.execute("INSERT INTO raw.orders VALUES (9000, 2.0, 1)")
    (root / "models/marts/n.sql").write_text("SELECT count(*) AS n, 1 AS changed FROM raw.orders")
    run = run_cli("build", "--project-dir", root, "--full-refresh")
    assert run.exit_code == 0, run.output
    with duckdb.connect(str(root / WAREHOUSE), read_only=True) as con:
        assert con.sql("SELECT n, changed FROM marts.n").fetchall() == [(5001, 1)]
        owned = {row[0] for row in con.sql("SELECT relation FROM _sqlorch.owned").fetchall()}
    assert owned == {"staging.stg_orders", "marts.n"}
