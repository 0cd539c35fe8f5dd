"""``sqlorch status`` names the process that holds the target: a ``sqlorch build`` on the
Postgres stand-in, held inside its work by a table lock the test takes on a source it
captures (``raw.gate``, keyed, no cursor: ``status`` reads no row of it), read by
``status`` from another process while the build holds the lease."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import build, create_table, run_sqlorch
from tests.adapters.test_lease_builds import Build, holder_pid, wait_until
from tests.conftest import write_files

GATE = TableRef("raw", "gate")
PROJECT = {
    "models/sources.yml": "sources:\n  raw.gate: {unique_key: id}\n",
    "models/marts/gated.sql": "SELECT id FROM raw.gate",
}


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_status_shows_the_build_that_holds_the_lease(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "p", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, GATE, {"id": "INT"})
    adapter.insert_rows(GATE, ["id"], [(1,)])
    build(warehouse, project)
    warehouse.close_all()
    args = ("--project-dir", project, "--profiles-dir", warehouse.profiles_dir)
    lock = psycopg.connect(**{k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")})
    lock.execute("LOCK TABLE raw.gate IN ACCESS EXCLUSIVE MODE")  # the build waits in its capture
    first = Build(warehouse, project)
    try:
        wait_until(lambda: holder_pid(warehouse) == first.pid, "the build to hold the lease")
        done = run_sqlorch("status", "--json", *args)
        assert done.returncode == 0, done.stderr
        lease = json.loads(done.stdout)["lease"]
        assert (lease["host"], lease["pid"], lease["command"]) == (os.uname().nodename, first.pid, "build")
        text = run_sqlorch("status", *args).stdout
        assert f"lease: held by sqlorch build on host {os.uname().nodename}, pid {first.pid}, since" in text
    finally:
        lock.commit()
        lock.close()
    assert first.wait() == 0, first.stderr
    assert json.loads(run_sqlorch("status", "--json", *args).stdout)["lease"] is None
