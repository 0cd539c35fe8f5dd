"""A build killed with SIGKILL part-way, then rerun, must still be exact; two concurrent builds must each
succeed or fail with a clear lock message (no traceback), and one more build must be exact."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _harness import History, check_exact, make_project

from sqlorch import api
from sqlorch.api import Options

CLI = [sys.executable, "-m", "sqlorch.cli"]


def _cli_build(project: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "build", "--project-dir", str(project), "--threads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def _assert_exact(db: Path, project: Path, context: str) -> None:
    mismatches = check_exact(db, project)
    assert not mismatches, f"{context}:\n" + "\n\n".join(str(m) for m in mismatches)


def _assert_built_ok(project: Path, context: str) -> None:
    result = api.build(Options(project_dir=project, threads=2))
    errors = [f"{r.model}: {r.error or r.reason}" for r in result.results if r.status == "error"]
    assert not errors, f"{context}: build after recovery failed:\n" + "\n".join(errors)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, History]:
    project = make_project(tmp_path)
    history = History(project / "warehouse.duckdb", random.Random(7))
    history.create()
    _assert_built_ok(project, "initial build")
    return project, history


def _timed_cli_build(path: Path, history: History) -> float:
    """Seconds of one uninterrupted CLI build after a source change: a normal incremental
    build, so that a test's kills and signals can be timed to land inside one."""
    history.step()
    start = time.monotonic()
    proc = _cli_build(path)
    _out, err = proc.communicate(timeout=120)
    typical = time.monotonic() - start
    assert proc.returncode == 0, err
    return typical


def test_sigkill_mid_build_then_rebuild_is_exact(project: tuple[Path, History]) -> None:
    path, history = project
    db = path / "warehouse.duckdb"
    rng = random.Random(99)
    typical = _timed_cli_build(path, history)
    _assert_exact(db, path, "after an uninterrupted CLI build")
    kills = mid_write = 0
    wal = db.with_name(db.name + ".wal")
    # four kills at random points; more (up to eight) until one lands after a committed write:
    # a faster build leaves a larger share of its time to start-up, before the first commit
    for trial in range(8):
        if trial >= 4 and kills >= 2 and mid_write >= 1:
            break
        history.log.clear()
        history.step()
        # every connection is closed: the build does not wait for a lock, and the log of
        # committed writes is empty (closing the last connection checkpoints)
        assert not wal.exists() or wal.stat().st_size == 0, "a connection is still open on the database"
        delay = rng.uniform(0.3, max(0.5, typical * 0.95))
        proc = _cli_build(path)
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        wrote = killed and wal.exists() and wal.stat().st_size > 0  # it had committed writes
        mid_write += wrote
        context = (
            f"trial {trial}: SIGKILL after {delay:.2f}s (killed={killed}, wrote={wrote}, typical build "
            f"{typical:.2f}s); changes {history.log}"
        )
        _assert_built_ok(path, context)
        _assert_exact(db, path, context)
        # and again with no new changes: the state must be consistent enough to keep going exactly
        _assert_built_ok(path, context + " (second build)")
        _assert_exact(db, path, context + " (second build)")
    assert kills >= 2, f"only {kills} builds were still running when the kill was due: delays too long"
    assert mid_write >= 1, f"none of the {kills} killed builds had committed a write: they proved nothing"


def test_two_concurrent_builds(project: tuple[Path, History]) -> None:
    path, history = project
    db = path / "warehouse.duckdb"
    for trial in range(2):
        history.log.clear()
        history.step()
        procs = [_cli_build(path), _cli_build(path)]
        outputs = [p.communicate(timeout=180) for p in procs]
        for proc, (out, err) in zip(procs, outputs, strict=False):
            text = out + err
            assert "Traceback" not in text, f"trial {trial}: traceback in build output:\n{text}"
            assert "internal error" not in text, f"trial {trial}: internal error:\n{text}"
            if proc.returncode != 0:
                assert "lock" in text.lower(), f"trial {trial}: failed without a lock message:\n{text}"
        _assert_built_ok(path, f"trial {trial}: build after concurrent builds")
        _assert_exact(db, path, f"trial {trial}: after concurrent builds {[p.returncode for p in procs]}")


def test_sigint_and_sigterm_mid_build_then_rebuild_is_exact(project: tuple[Path, History]) -> None:
    """Ctrl-C and SIGTERM at several points of real builds (capture, models): the build says
    `interrupted` and what finished, exits 130 without a traceback, and the next build is exact."""
    path, history = project
    db = path / "warehouse.duckdb"
    typical = _timed_cli_build(path, history)
    rng = random.Random(5)
    stopped = 0
    # six signals at random points; more (up to twelve) until three stopped a build: a build
    # that finished before its signal proves nothing, and on a loaded machine a build's time varies
    for trial, signum in enumerate([signal.SIGINT, signal.SIGTERM] * 6):
        if trial >= 6 and stopped >= 3:
            break
        history.log.clear()
        history.step()
        delay = rng.uniform(0.4, max(0.6, typical * 0.95))
        proc = _cli_build(path)
        time.sleep(delay)
        sent = proc.poll() is None
        if sent:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        text = out + err
        context = f"trial {trial}: {signum.name} after {delay:.2f}s (sent={sent}); changes {history.log}\n{text}"
        assert "Traceback" not in text and "internal error" not in text, context
        if proc.returncode == 130:
            stopped += 1
            assert "interrupted" in err.splitlines(), context
            # what finished, or that the signal came before any model started (importing,
            # loading, compiling: a loaded machine takes longer than the shortest delay)
            assert re.search(r"^(\d+ of \d+ models finished|no model started$)", err, re.MULTILINE), context
        elif proc.returncode == -signum:
            # the signal came after the build had finished and restored the default handlers,
            # as the process was exiting: the build's summary is there and its work is done
            assert re.search(r"^done: ", text, re.MULTILINE), context
        else:
            assert proc.returncode == 0, context
        _assert_built_ok(path, context)
        _assert_exact(db, path, context)
    assert stopped >= 3, f"only {stopped} of {trial + 1} builds were stopped by the signal: delays too long"
