"""Two ``sqlorch build`` processes on one target: one writer at a time, never a double apply.

On Postgres the first build is held inside its work by a table lock the test takes on the
source (the build takes its lease before it reads anything), so the second one provably
starts while the first holds the target. Elsewhere both start together, repeated until
one was seen waiting. Every build appends the same pending rows: applied twice, the
insert-only model would hold them twice and no longer equal its SQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlglot import exp

from sqlorch.refs import TableRef
from sqlorch.state.lease import read_holder
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build, create_table
from tests.conftest import REPO, write_files

EVENTS = TableRef("raw", "events")
COPY = TableRef("marts", "copy")
PROJECT = {
    "models/sources.yml": "sources:\n  raw.events: {cursor: id, append_only: true}\n",
    "models/marts/copy.sql": "SELECT id, g FROM raw.events",  # insert only: a double apply doubles rows
    "models/marts/per_group.sql": "SELECT g, count(*) AS n, sum(id) AS total FROM raw.events GROUP BY g",
}


def append(warehouse: Warehouse, start: int, count: int) -> None:
    adapter = warehouse.connect()
    if adapter.columns(EVENTS) is None:
        create_table(adapter, EVENTS, {"id": "BIGINT", "g": "BIGINT"})
    adapter.insert_rows(EVENTS, ["id", "g"], [(i, i % 7) for i in range(start, start + count)])
    warehouse.close_all()  # DuckDB: a build must not wait for this test's file lock


def copied(warehouse: Warehouse) -> int:
    adapter = warehouse.connect()
    rows = int(adapter.fetch(exp.select("count(*)").from_(COPY.to_table()))[0][0])
    warehouse.close_all()
    return rows


class Build:
    """``sqlorch build`` in another process, its stderr collected as it comes."""

    def __init__(self, warehouse: Warehouse, project: Path, *options: str) -> None:
        command = ["build", "--project-dir", str(project), "--profiles-dir", str(warehouse.profiles_dir), *options]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sqlorch.cli", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            },
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.1)  # the reader thread's last lines
        return code


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def holder_pid(warehouse: Warehouse) -> int | None:
    adapter = warehouse.connect()
    try:
        holder = read_holder(adapter)
    finally:
        warehouse.close_all()
    return holder.pid if holder is not None else None


def lock_source(warehouse: Warehouse) -> psycopg.Connection[tuple[object, ...]]:
    """A transaction holding raw.events: a build that reads it waits inside its work."""
    connection = psycopg.connect(**{k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")})
    connection.execute("LOCK TABLE raw.events IN ACCESS EXCLUSIVE MODE")
    return connection


def prepared(warehouse: Warehouse, tmp_path: Path, expiry: float | None = None) -> Path:
    files = dict(PROJECT)
    if expiry is not None:
        files["sqlorch.yml"] = f"lease_expiry: {expiry}\n"
    project = write_files(tmp_path / "lease", files)
    warehouse.write_profiles()
    append(warehouse, 0, 100)
    build(warehouse, project)
    warehouse.close_all()
    append(warehouse, 100, 50)  # pending for the builds under test
    return project


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_second_build_waits_for_the_holder_and_applies_nothing_twice(warehouse: Warehouse, tmp_path: Path) -> None:
    project = prepared(warehouse, tmp_path)
    lock = lock_source(warehouse)
    first = Build(warehouse, project)
    wait_until(lambda: holder_pid(warehouse) == first.pid, "the first build to hold the lease")
    second = Build(warehouse, project, "--lease-timeout", "300")
    wait_until(lambda: "waiting for the target" in second.stderr, "the second build to wait")
    assert f"in use by sqlorch build on host {os.uname().nodename}, pid {first.pid}, since" in second.stderr
    refused = Build(warehouse, project, "--no-wait")
    assert refused.wait() == 1
    assert f"error: the target is in use by sqlorch build on host {os.uname().nodename}, pid {first.pid}" in (
        refused.stderr
    )
    lock.commit()
    lock.close()
    assert first.wait() == 0, first.stderr
    assert second.wait() == 0, second.stderr
    assert copied(warehouse) == 150
    assert_models_match_their_sql(warehouse, project)
    assert holder_pid(warehouse) is None  # both released it


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_killed_holder_on_this_host_is_taken_over_at_once(warehouse: Warehouse, tmp_path: Path) -> None:
    project = prepared(warehouse, tmp_path)
    lock = lock_source(warehouse)
    first = Build(warehouse, project)
    wait_until(lambda: holder_pid(warehouse) == first.pid, "the first build to hold the lease")
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    lock.commit()
    lock.close()
    second = Build(warehouse, project, "--no-wait")
    assert second.wait() == 0, second.stderr
    assert f"took over the lease of sqlorch build on host {os.uname().nodename}, pid {first.pid}" in second.stderr
    assert copied(warehouse) == 150
    assert_models_match_their_sql(warehouse, project)


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_silent_holder_expires_and_stops_when_it_wakes(warehouse: Warehouse, tmp_path: Path) -> None:
    """SIGSTOP: alive but silent, as a hung or cut-off process looks. Its lease expires after
    lease_expiry, the next build takes it; woken up, the first finds it lost and stops."""
    project = prepared(warehouse, tmp_path, expiry=3)
    lock = lock_source(warehouse)
    first = Build(warehouse, project)
    wait_until(lambda: holder_pid(warehouse) == first.pid, "the first build to hold the lease")
    first.process.send_signal(signal.SIGSTOP)
    try:
        second = Build(warehouse, project, "--lease-timeout", "300")
        wait_until(lambda: holder_pid(warehouse) == second.pid, "the second build to take the lease over")
        assert "took over the lease of sqlorch build" in second.stderr
    finally:
        first.process.send_signal(signal.SIGCONT)
    assert first.wait(timeout=60) == 1  # the lock on the source is still held: it stopped by itself
    assert "error: the build lost the target's lease" in first.stderr
    lock.commit()
    lock.close()
    assert second.wait() == 0, second.stderr
    assert copied(warehouse) == 150
    assert_models_match_their_sql(warehouse, project)


@pytest.mark.parametrize("warehouse", ["duckdb", "bigquery"], indirect=True)
def test_two_builds_started_together_apply_the_change_once(warehouse: Warehouse, tmp_path: Path) -> None:
    project = prepared(warehouse, tmp_path)
    expected = 150
    for trial in range(5):
        builds = [Build(warehouse, project), Build(warehouse, project)]
        codes = [b.wait() for b in builds]
        assert codes == [0, 0], [b.stderr for b in builds]
        assert copied(warehouse) == expected
        assert_models_match_their_sql(warehouse, project)
        waited = [b for b in builds if "waiting for the " in b.stderr]
        if waited:
            other = next(b for b in builds if b is not waited[0])
            # DuckDB's file lock is met first there, and names the holder the same way
            assert f"pid {other.pid}" in waited[0].stderr
            return
        append(warehouse, expected, 10 * (trial + 1))
        expected += 10 * (trial + 1)
    pytest.fail("the two builds never overlapped: no test of the lease happened")
