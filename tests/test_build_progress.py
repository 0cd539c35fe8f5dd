"""`sqlorch build` progress: on a terminal a count per finished model and a live line saying
what runs (source capture included); piped, the same plain lines as ever."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb

from sqlorch.console import activity, counter
from tests.conftest import REPO, write_files

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_counter_and_activity_say_where_the_build_is() -> None:
    assert counter(3, 40) == "[ 3/40]"
    assert counter(40, 40) == "[40/40]"
    assert activity(None, [], 0, 8) == "preparing…"
    assert activity("raw.orders", [], 0, 8) == "capturing raw.orders…"
    assert activity(None, ["marts.a", "marts.b"], 3, 8) == "[3/8] marts.a, marts.b…"
    assert activity(None, [], 3, 8) == "[3/8] finishing…"
    group = [f"marts.m{i}" for i in range(100)]  # a transaction group's models run together
    assert activity(None, group, 3, 108) == "[  3/108] marts.m0, marts.m1 and 98 more…"
    assert activity(None, group[:3], 3, 8) == "[3/8] marts.m0, marts.m1, marts.m2…"


def _project(root: Path) -> Path:
    write_files(
        root,
        {
            "models/sources.yml": "sources:\n  raw.orders: {unique_key: id}\n",
            "models/staging/orders.sql": "SELECT id, amount FROM raw.orders",
            "models/marts/total.sql": "SELECT count(*) AS orders, sum(amount) AS amount FROM staging.orders",
        },
    )
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.orders AS SELECT range AS id, range * 2 AS amount FROM range(5)")
    return root


def _build(root: Path, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    run = subprocess.run(
        [sys.executable, "-m", "sqlorch.cli", "build", "--project-dir", str(root), "--threads", "1"],
        env={**base, "PYTHONPATH": str(REPO), "COLUMNS": "100", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return ANSI.sub("", run.stdout).replace("\r", "\n").splitlines()


def test_a_terminal_sees_counts_and_the_source_capture(tmp_path: Path) -> None:
    lines = _build(_project(tmp_path / "p"), TTY_COMPATIBLE="1")  # rich's rule: style as on a terminal
    assert any(line.endswith("capturing raw.orders…") for line in lines), lines
    finished = [line for line in lines if line.startswith("[")]
    assert [line.split()[:4] for line in finished] == [
        ["[1/2]", "success", "full", "staging.orders"],
        ["[2/2]", "success", "full", "marts.total"],
    ]
    assert re.search(r"\d:\d\d:\d\d \[1/2\] marts\.total…", "\n".join(lines)), lines  # elapsed, count, model


def test_piped_output_stays_plain(tmp_path: Path) -> None:
    lines = _build(_project(tmp_path / "p"))
    assert [line.split()[:3] for line in lines if line] == [
        ["success", "full", "staging.orders"],
        ["success", "full", "marts.total"],
        ["done:", "2", "success"],
    ]
    assert not any("capturing" in line or "preparing" in line for line in lines)
