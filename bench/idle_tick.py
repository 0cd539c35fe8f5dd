"""The cost of an idle tick of ``sqlorch run`` on DuckDB: nothing changed, nothing built.

A project of five models over two sources with a cursor (``raw.events``: append-only,
``raw.users``: keyed) is built by the first tick (a full pass); then ``--ticks`` ticks run
with no change, in this process, through the same ``Runner`` ``sqlorch run`` drives. Per
tick: wall and CPU seconds, and the statements DuckDB received, counted from DuckDB's own
query log (the ``query_log`` target setting), never from sqlorch.

    python bench/idle_tick.py --events 2000000 --users 100000 --ticks 20

Writes the idle-tick section of ``bench/RESULTS.md`` (between its ``idle_tick`` markers).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import replace_section  # noqa: E402
from bench.spikes import MODELS, append  # noqa: E402  (the spike project, plus a keyed source)
from sqlorch.api import Options  # noqa: E402
from sqlorch.api_run import Runner  # noqa: E402

SOURCES = (
    "sources:\n"
    "  raw.events: {cursor: loaded_at, append_only: true}\n"
    "  raw.users: {cursor: updated_at, unique_key: user_id}\n"
)
USERS_MODEL = "SELECT u.user_id, u.plan, count(*) AS events FROM raw.users u GROUP BY u.user_id, u.plan"
MARKERS = ("<!-- idle_tick:start -->", "<!-- idle_tick:end -->")


def statements(log: Path, seen: int) -> tuple[list[str], int]:
    """The statements logged after the first ``seen`` ones (BEGIN/COMMIT counted too)."""
    if not log.exists():
        return [], seen
    with log.open(newline="") as file:
        rows = [row["message"] for row in csv.DictReader(file) if row["type"] == "QueryLog"]
    return rows[seen:], len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        for path, sql in {**MODELS, "marts/users.sql": USERS_MODEL}.items():
            (project / "models" / path).parent.mkdir(parents=True, exist_ok=True)
            (project / "models" / path).write_text(sql + "\n")
        (project / "models" / "sources.yml").write_text(SOURCES)
        log_folder = project / "query_log"
        (project / "profiles.yml").write_text(
            f"target: dev\ntargets:\n  dev: {{type: duckdb, path: warehouse.duckdb, query_log: '{log_folder}'}}\n"
        )
        db = project / "warehouse.duckdb"
        with duckdb.connect(str(db)) as con:
            con.execute("CREATE SCHEMA raw")
            con.execute(
                "CREATE TABLE raw.events (event_id BIGINT, user_id BIGINT, amount DECIMAL(10, 1), loaded_at BIGINT)"
            )
            con.execute(
                "CREATE TABLE raw.users AS SELECT range AS user_id, ['free', 'pro'][range % 2 + 1] AS plan, "
                "range AS updated_at FROM range(?)",
                [args.users],
            )
        append(db, 0, args.events, args.users)
        runner = Runner(Options(project_dir=project, profiles_dir=project, threads=2), interval=30.0)
        first = runner.tick()
        assert first.result is not None and not first.result.failed, "the first tick's build failed"
        log = log_folder / "duckdb_log_entries.csv"
        _, seen = statements(log, 0)
        walls, cpus, counts, sample = [], [], [], []
        for _ in range(args.ticks):
            wall, cpu = time.perf_counter(), time.process_time()
            tick = runner.tick()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert tick.result is None and not tick.due, f"an idle tick built {tick.due}"
            ran, seen = statements(log, seen)
            counts.append(len(ran))
            sample = ran
        runner.close()
    load_after = os.getloadavg()[0]
    control = [s for s in sample if s.strip().upper() in ("BEGIN TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK")]
    lines = [
        MARKERS[0],
        "## Idle tick of `sqlorch run` (issue 12)",
        "",
        "Written by `bench/idle_tick.py`; run it again rather than editing.",
        "",
        f"- Command: `python bench/idle_tick.py {' '.join(sys.argv[1:])}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}, DuckDB {duckdb.__version__}",
        f"- 1-minute load average: {load_before:.1f} at the start, {load_after:.1f} at the end (a shared machine)",
        f"- Project: the spike project's four models over `raw.events` ({args.events:,} rows, append-only by"
        f" cursor) and one over `raw.users` ({args.users:,} rows, keyed, by cursor); {args.ticks} ticks with"
        " nothing changed after a first tick that built everything; in-process `Runner.tick()` (what"
        " `sqlorch run` calls), statements from DuckDB's query log",
        "",
        "| per idle tick (target: < 0.2 s, a handful of metadata queries) | median | max |",
        "|---|---|---|",
        f"| wall seconds | {statistics.median(walls):.3f} | {max(walls):.3f} |",
        f"| CPU seconds of the process | {statistics.median(cpus):.3f} | {max(cpus):.3f} |",
        f"| statements DuckDB received | {statistics.median(counts):.0f} | {max(counts)} |",
        "",
        "CPU seconds count every thread of the process, DuckDB's included: the tick's work. Wall seconds"
        " add the waits for a CPU on a shared machine (see the load average), the opening of the database"
        " file and the commits' syncs.",
        "",
        f"The statements of the last tick ({len(sample)}, of which {len(control)} BEGIN/COMMIT):",
        "",
        "```sql",
        *[" ".join(s.split())[:160] for s in sample],
        "```",
        MARKERS[1],
    ]
    section = "\n".join(lines)
    replace_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
