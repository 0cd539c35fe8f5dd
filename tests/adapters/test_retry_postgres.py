"""A real dropped connection in the middle of a step: the build's Postgres backend is
terminated (``pg_terminate_backend``) while its INSERT waits for a lock the test holds on
the model's table. The step is rolled back by the server, tried again on a new
connection, and the result is exact: every pending row applied once."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql
from tests.adapters.test_lease_builds import Build, append, copied, prepared, wait_until


def waiting_backend(admin: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The build's backend blocked on the test's lock on marts.copy (the step reads or writes
    it, whichever strategy the planner chose), once it is."""
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND query LIKE %s",
        ('%"marts"."copy"%',),
    ).fetchone()
    return int(row[0]) if row else None


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_terminated_backend_is_retried_on_a_new_connection_and_exact(warehouse: Warehouse, tmp_path: Path) -> None:
    project = prepared(warehouse, tmp_path)
    settings = {k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")}
    lock = psycopg.connect(**settings)
    lock.execute('LOCK TABLE "marts"."copy" IN ACCESS EXCLUSIVE MODE')
    admin = psycopg.connect(**settings, autocommit=True)
    build = Build(warehouse, project, "--threads", "1")
    found: list[int] = []
    wait_until(lambda: bool(found.append(waiting_backend(admin) or 0) or found[-1]), "the step to wait for the lock")
    assert admin.execute("SELECT pg_terminate_backend(%s)", (found[-1],)).fetchone() == (True,)
    lock.commit()
    lock.close()
    assert build.wait() == 0, build.stderr
    assert "marts.copy: transient error on try 1 of 3, trying again in" in build.stderr
    assert "terminating connection due to administrator command" in build.stderr
    assert waiting_backend(admin) is None
    admin.close()
    assert copied(warehouse) == 150
    assert_models_match_their_sql(warehouse, project)
    append(warehouse, 150, 5)  # and the next build goes on from there
    assert Build(warehouse, project).wait() == 0
    assert copied(warehouse) == 155
    assert_models_match_their_sql(warehouse, project)
