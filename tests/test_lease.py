"""The target's lease (state/lease.py) on a real DuckDB file: taken, named, waited for,
expired and renewed. Waiting runs on an injected clock and sleep: no test sleeps out an
expiry. Builds in separate processes on every target: tests/adapters/test_lease_builds.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.config import Target
from sqlorch.errors import LockError
from sqlorch.state.lease import LEASE, acquire_lease, ensure_lease_table, read_holder


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[Adapter]:
    adapter = connect(Target("dev", "duckdb", {"path": str(tmp_path / "warehouse.duckdb")}, None))
    yield adapter
    adapter.close()


def hold(adapter: Adapter, host: str, pid: int, beat: int = 3, expiry: float = 10.0, owner: str = "other") -> None:
    """Make the lease look held by another process."""
    ensure_lease_table(adapter)
    values = {
        "owner": owner, "host": host, "pid": pid, "command": "run", "since": "2026-01-01 00:00:00 UTC",
        "heartbeat": "2026-01-01 00:00:05 UTC", "beat": beat, "expiry": expiry,
    }  # fmt: skip
    adapter.execute(
        exp.update(LEASE.to_table(), {k: exp.convert(v) for k, v in values.items()}, where="lease = 'target'")
    )


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.now = 1000.0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.on_sleep()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_free_lease_is_taken_named_and_released(adapter: Adapter) -> None:
    assert read_holder(adapter) is None  # never taken: no table yet
    with acquire_lease(adapter, "build", wait=0):
        holder = read_holder(adapter)
        assert holder is not None
        assert (holder.host, holder.pid, holder.command) == (socket.gethostname(), os.getpid(), "build")
    assert read_holder(adapter) is None


def test_a_live_holder_is_named_and_a_no_wait_build_refused(adapter: Adapter) -> None:
    hold(adapter, "elsewhere", 4242)
    with pytest.raises(LockError) as raised:
        acquire_lease(adapter, "build", wait=0)
    message = raised.value.render()
    assert "sqlorch run on host elsewhere, pid 4242, since 2026-01-01 00:00:00 UTC" in message
    assert "--no-wait" in message
    holder = read_holder(adapter)
    assert holder is not None and holder.owner == "other"


def test_a_beating_holder_is_waited_for_until_the_timeout(adapter: Adapter) -> None:
    hold(adapter, "elsewhere", 4242, expiry=10.0)

    def holder_beats() -> None:
        adapter.execute(exp.update(LEASE.to_table(), {"beat": exp.column("beat") + 1}))

    fake = FakeTime(holder_beats)
    with pytest.raises(LockError, match="in use by sqlorch run on host elsewhere"):
        acquire_lease(adapter, "build", wait=100, clock=fake.clock, sleep=fake.sleep)
    assert fake.now >= 1100  # it waited the whole timeout, over ten expiries, and never took over
    holder = read_holder(adapter)
    assert holder is not None and holder.owner == "other"


def test_a_silent_holder_expires_after_its_expiry(adapter: Adapter) -> None:
    hold(adapter, "elsewhere", 4242, expiry=10.0)
    fake = FakeTime()
    with acquire_lease(adapter, "build", wait=100, clock=fake.clock, sleep=fake.sleep):
        holder = read_holder(adapter)
        assert holder is not None and holder.pid == os.getpid()
        assert 1010 <= fake.now <= 1011  # taken over after ten silent seconds, not before
    assert read_holder(adapter) is None


def test_a_dead_process_on_this_host_is_taken_over_at_once(adapter: Adapter) -> None:
    hold(adapter, socket.gethostname(), dead_pid())
    with acquire_lease(adapter, "build", wait=0):
        holder = read_holder(adapter)
        assert holder is not None and holder.pid == os.getpid()


def test_a_live_process_on_this_host_is_not_taken_over(adapter: Adapter) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold(adapter, socket.gethostname(), sleeper.pid)
        with pytest.raises(LockError, match=f"pid {sleeper.pid}"):
            acquire_lease(adapter, "build", wait=0)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_former_process_with_this_pid_is_taken_over(adapter: Adapter) -> None:
    """pid 1 of a restarted container: same host, same pid, another process's token."""
    hold(adapter, socket.gethostname(), os.getpid(), owner="a previous incarnation")
    with acquire_lease(adapter, "build", wait=0):
        holder = read_holder(adapter)
        assert holder is not None and holder.owner != "a previous incarnation"


def test_this_process_holding_it_is_granted_a_nested_lease(adapter: Adapter) -> None:
    with acquire_lease(adapter, "run", wait=0):
        with acquire_lease(adapter, "build", wait=0):
            holder = read_holder(adapter)
            assert holder is not None and holder.command == "run"
        holder = read_holder(adapter)  # the inner release leaves it to the outer holder
        assert holder is not None and holder.command == "run"
    assert read_holder(adapter) is None


def test_the_heartbeat_renews_and_a_lost_lease_stops_the_holder(adapter: Adapter) -> None:
    lost = threading.Event()
    with acquire_lease(adapter, "build", wait=0, expiry=0.3, on_lost=lost.set) as lease:
        wait_until(lambda: (h := read_holder(adapter)) is not None and h.beat >= 2, "two heartbeats")
        assert not lost.is_set()
        hold(adapter, "elsewhere", 4242, owner="thief")  # taken over while this holder was silent
        wait_until(lost.is_set, "the holder to notice")
        assert lease.lost.is_set()
    holder = read_holder(adapter)  # its release leaves the new holder alone
    assert holder is not None and holder.owner == "thief"


def test_plan_takes_no_lease(tmp_path: Path) -> None:
    """``plan`` is read-only: it neither waits for a holder nor writes the lease."""
    from tests.conftest import run_cli, write_files

    project = write_files(tmp_path / "project", {"models/marts/a.sql": "SELECT range AS id FROM range(3)"})
    assert run_cli("build", "--project-dir", project).exit_code == 0
    adapter = connect(Target("dev", "duckdb", {"path": str(project / "warehouse.duckdb")}, None))
    try:
        hold(adapter, "elsewhere", 4242)
    finally:
        adapter.close()
    planned = run_cli("plan", "--project-dir", project)
    assert planned.exit_code == 0, planned.output
    assert "in use by" not in planned.output
    refused = run_cli("build", "--project-dir", project, "--no-wait")  # while a build is refused
    assert refused.exit_code == 1
    assert "in use by sqlorch run on host elsewhere, pid 4242" in refused.output
