"""A build SIGKILLed after its audits passed and before it published, then rerun: exact.

The kill is aimed by the build's own output: each audit's result is printed as soon as it
is known, and the build is killed on that line, while the new table's change log is
still being written. A kill that arrives after the commit proves nothing, so such a trial
is repeated; the test fails if no kill ever lands between the audit and the publish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlglot import exp

from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build
from tests.conftest import REPO, write_files

EVENTS, BIG = TableRef("raw", "events"), TableRef("marts", "big")
AUDIT_LINE = "audit   pass  marts.big: not_null(id)"
PROJECT = {
    # raw.events declares nothing: every change rebuilds marts.big in full, and the rebuild
    # diffs old and new rows into the change log after the audit: a wide window to hit
    "models/marts/big.sql": """
        -- audits: not_null(id)
        SELECT id, id % 97 AS g, 'label ' || id AS label FROM raw.events
    """,
    "models/marts/groups.sql": "SELECT g, count(*) AS n FROM marts.big GROUP BY g",
}


def _fill(warehouse: Warehouse, start: int, count: int) -> None:
    adapter = warehouse.connect()
    adapter.ensure_schema("raw")
    if adapter.columns(EVENTS) is None:
        adapter.execute(
            exp.Create(this=EVENTS.to_table(), kind="TABLE", expression=exp.select("0 AS id").where("false"))
        )
    adapter.execute(exp.insert(f"SELECT range AS id FROM range({start}, {start + count})", EVENTS.to_table()))
    warehouse.close_all()  # the build process needs the DuckDB file lock


def _published(warehouse: Warehouse) -> int:
    adapter = warehouse.connect()
    rows = int(adapter.fetch(exp.select("count(*)").from_(BIG.to_table()))[0][0])
    warehouse.close_all()
    return rows


def _build_until_audited(warehouse: Warehouse, project: Path) -> bool:
    """Start a build, SIGKILL it right after its audit passed; True if it was killed."""
    command = ["build", "--project-dir", str(project), "--profiles-dir", str(warehouse.profiles_dir), "--threads", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlorch.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(AUDIT_LINE):
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return True
    process.wait(timeout=300)
    return False


@pytest.mark.parametrize("warehouse", ["duckdb"], indirect=True)
def test_killed_between_audit_and_publish_then_rebuild_is_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "crash", PROJECT)
    warehouse.write_profiles()
    size = 1_000_000
    _fill(warehouse, 0, size)
    build(warehouse, project)
    warehouse.close_all()
    landed = 0
    for trial in range(1, 4):
        _fill(warehouse, trial * size, 1000)
        before = _published(warehouse)
        assert _build_until_audited(warehouse, project), "the build never printed its audit"
        after = _published(warehouse)
        if after == before:  # killed after the audit, before the commit
            landed += 1
            break
        assert after == before + 1000  # the kill came after the commit: try again
    assert landed, "no kill landed between the audit and the publish"
    build(warehouse, project)
    assert _published(warehouse) == size + 1000 * trial
    assert_models_match_their_sql(warehouse, project)
