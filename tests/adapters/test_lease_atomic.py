"""Taking the lease is atomic on each networked stand-in: processes that try at the same
instant (each ``acquire_lease(wait=0)`` at a shared wall-clock start) see exactly one
winner, and every loser is told who won. This is what the conditional UPDATE's
affected-row count is relied on for (state/lease.py). The target is new: the racers
also race to create the state schema and the lease table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.adapters.conftest import Warehouse
from tests.conftest import REPO

RACER = """
import json, sys, time
from sqlorch.adapters.registry import connect
from sqlorch.config import Target
from sqlorch.errors import LockError
from sqlorch.state.lease import acquire_lease
kind, settings, start = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
adapter = connect(Target(kind, kind, settings, settings.get("database")))
time.sleep(max(0.0, start - time.time()))
try:
    with acquire_lease(adapter, "build", wait=0):
        print("won", flush=True)
        time.sleep(3)  # held while the others try
except LockError as error:
    print("lost", error.message, flush=True)
adapter.close()
"""


@pytest.mark.parametrize("warehouse", ["postgres", "snowflake", "bigquery"], indirect=True)
def test_racing_processes_see_exactly_one_winner(warehouse: Warehouse) -> None:
    start = time.time() + 8
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, warehouse.kind, json.dumps(warehouse.settings), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    assert time.time() > start + 3, "the racers did not wait for the shared start"
    lines = [out.strip() for out, _ in outputs]
    winners = [racer for racer, line in zip(racers, lines, strict=True) if line == "won"]
    assert len(winners) == 1, lines
    for line in lines:
        if line != "won":
            assert line.startswith("lost the target is in use by sqlorch build on host ") and (
                f"pid {winners[0].pid}," in line
            ), lines
