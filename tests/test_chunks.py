"""Volume swings (planning/chunks.py): a change over ``max_batch_rows`` replaces its keys in
chunks, on real DuckDB, and every table still equals its SQL run from scratch; the plan
shows the chunks, and the build runs as many as the changed rows call for."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from sqlorch import api
from sqlorch.execution.results import RunResult
from sqlorch.planning.chunks import chunk_budget, default_max_batch_rows
from sqlorch.planning.steps import Chunks, InputChange, Step
from sqlorch.refs import TableRef
from tests.conftest import REPO, write_files

MODELS = {
    # merge keys: a unique key per user (COUNT DISTINCT: no folding strategy applies)
    "models/marts/per_user.sql": (
        "SELECT e.user_id, count(*) AS events, count(DISTINCT e.kind) AS kinds, max(c.tier) AS tier\n"
        "FROM raw.events e LEFT JOIN raw.customers c ON c.customer_id = e.user_id GROUP BY e.user_id\n"
    ),
    # delete+insert keys: a window partition per user holds many rows
    "models/marts/ranked.sql": (
        "SELECT event_id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS nth\n"
        "FROM raw.events\n"
    ),
    "models/sources.yml": (
        "sources:\n  raw.events: {cursor: ts, append_only: true}\n  raw.customers: {unique_key: customer_id}\n"
    ),
}
BUDGET = 40


def _project(tmp_path: Path, budget: int | None = BUDGET) -> Path:
    files = dict(MODELS)
    if budget is not None:
        files["sqlorch.yml"] = f"max_batch_rows: {budget}\n"
    project = write_files(tmp_path / "p", files)
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.events (event_id INT, user_id INT, kind TEXT, ts INT)")
        con.execute("CREATE TABLE raw.customers (customer_id INT, tier TEXT)")
    return project


class Sources:
    """Appends events (NULL users among them) and inserts, updates and deletes customers."""

    def __init__(self, project: Path, seed: int) -> None:
        self.db, self.rng, self.event, self.ts = project / "warehouse.duckdb", random.Random(seed), 0, 0

    def change(self, events: int, customers: int) -> None:
        rng = self.rng
        rows = []
        for _ in range(events):
            self.event += 1
            self.ts += rng.randint(0, 2)  # ties on ts
            user = None if rng.random() < 0.05 else rng.randint(1, 60)
            rows.append((self.event, user, rng.choice(["a", "b", "c"]), self.ts))
        with duckdb.connect(str(self.db)) as con:
            if rows:
                con.executemany("INSERT INTO raw.events VALUES (?, ?, ?, ?)", rows)
            for _ in range(customers):
                customer = rng.randint(1, 70)
                con.execute("DELETE FROM raw.customers WHERE customer_id = ?", [customer])
                if rng.random() < 0.8:
                    con.execute("INSERT INTO raw.customers VALUES (?, ?)", [customer, rng.choice(["x", "y", None])])


def _differences(project: Path, models: dict[str, str] = MODELS) -> dict[str, int]:
    """Per model, rows that differ (either way, as multisets) from its SQL run from scratch."""
    out = {}
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        for path, sql in models.items():
            if not path.endswith(".sql"):
                continue
            table = path.removeprefix("models/").removesuffix(".sql").replace("/", ".")
            query = f"(SELECT * FROM {table} EXCEPT ALL ({sql})) UNION ALL (({sql}) EXCEPT ALL SELECT * FROM {table})"
            row = con.execute(f"SELECT count(*) FROM ({query})").fetchone()
            out[table] = row[0] if row else -1
    return out


def _options(project: Path) -> api.Options:
    return api.Options(project_dir=project, threads=1, rebuild_when_cheaper=False)


def _build(project: Path) -> RunResult:
    result = api.build(_options(project))
    assert not result.failed, [r.error for r in result.results if r.error]
    return result


def _chunks(step: Step) -> list[Chunks]:
    return [item for item in step.statements if isinstance(item, Chunks)]


def test_a_change_over_the_budget_is_applied_in_chunks_of_keys_and_stays_exact(tmp_path: Path) -> None:
    project = _project(tmp_path)
    sources = Sources(project, seed=7)
    sources.change(events=300, customers=40)
    _build(project)
    chunked = 0
    for events, customers in [(150, 30), (25, 3), (400, 0), (0, 50), (90, 12)]:
        sources.change(events, customers)
        steps = {str(s.ref): s for s in api.plan(_options(project)).steps}
        result = _build(project)
        for model in ("marts.per_user", "marts.ranked"):
            step = steps[model]
            ran = next(r for r in result.results if r.model == model)
            over = (step.estimated_changed_rows or 0) > BUDGET
            assert bool(_chunks(step)) == (over and step.action == "incremental"), (model, step.action)
            if _chunks(step):
                # as many chunks as the changed rows call for: the plan shows the rule, the build its count
                assert ran.chunks == -(-(step.estimated_changed_rows or 0) // BUDGET) and ran.chunks > 1
                chunked += 1
                rendered = [s.render("duckdb") for s in _chunks(step)[0].statements]
                assert all("$chunk" in sql for sql in rendered if "sqlorch_tmp_keys" in sql)
            else:
                assert ran.chunks is None
        assert _differences(project) == {"marts.per_user": 0, "marts.ranked": 0}, (events, customers)
    assert chunked >= 6  # both strategies, several changes


def test_chunks_are_a_partition_of_the_keys_whatever_their_count(tmp_path: Path) -> None:
    """The same change applied in 1 chunk (a budget above it) and in many gives the same
    tables, and the same change-log rows for consumers (``reports.reader`` reads
    ``marts.per_user``: a change log no model reads is not written)."""
    tables = []
    for budget in (100_000, 3):
        project = _project(tmp_path / str(budget), budget)
        write_files(project, {"models/reports/reader.sql": "SELECT user_id, events FROM marts.per_user\n"})
        sources = Sources(project, seed=11)
        sources.change(events=200, customers=30)
        _build(project)
        sources.change(events=120, customers=25)
        result = _build(project)
        chunks = [r.chunks for r in result.results if r.model.startswith("marts.")]
        assert chunks == [None, None] if budget > 1000 else all(n and n > 30 for n in chunks), chunks
        assert _differences(project) == {"marts.per_user": 0, "marts.ranked": 0}
        with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
            tables.append(
                [
                    con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                    for t in ("marts.per_user", "marts.ranked", "_sqlorch.chg__marts__per_user")
                ]
            )
    assert tables[0] == tables[1]


def test_the_plan_explains_the_chunks(tmp_path: Path, cli) -> None:
    project = _project(tmp_path)
    sources = Sources(project, seed=3)
    sources.change(events=100, customers=0)
    _build(project)
    sources.change(events=100, customers=0)
    run = cli("plan", "--project-dir", project, "--explain", "marts.ranked")
    assert run.exit_code == 0, run.output
    assert "once per chunk of the affected keys: changed rows of raw.events / 40 (max_batch_rows)" in run.output
    assert '"_sqlorch_chunk" % $chunks = $chunk' in run.output
    table = cli("plan", "--project-dir", project)
    assert "in chunks of keys: 3 estimated, of 40 changed rows each" in table.output, table.output


@pytest.mark.parametrize(
    ("budget", "rows", "ddl", "audited", "expected"),
    [(40, 41, True, False, 40), (40, 40, True, False, None), (None, 10**9, True, False, None),
     (40, 41, False, False, None), (40, 41, True, True, None)],
)  # fmt: skip
def test_the_budget_rule(budget: int | None, rows: int, ddl: bool, audited: bool, expected: int | None) -> None:
    changes = {TableRef("raw", "events"): InputChange(0, 1, rows, False)}
    assert chunk_budget(budget, changes, ddl, True, audited) == expected
    assert default_max_batch_rows() >= 100_000


def test_max_batch_rows_must_be_a_whole_number(tmp_path: Path, cli) -> None:
    project = _project(tmp_path)
    (project / "sqlorch.yml").write_text("max_batch_rows: 2.5\n")
    run = cli("compile", "--project-dir", project)
    assert run.exit_code == 1
    assert "sqlorch.yml:1:1: error: 'max_batch_rows' must be a whole number, at least 1, not 2.5" in run.output


PAYLOADS = "SELECT user_id, list(payload ORDER BY event_id) AS payloads FROM raw.events GROUP BY user_id"
PROFILE = "target: dev\ntargets:\n  dev: {{type: duckdb, path: warehouse.duckdb, threads: 1{}}}\n"


def _payloads_project(tmp_path: Path, budget: int) -> tuple[Path, api.Options]:
    """1,000 users with 400 events of 200-byte payloads each, all listed in one row per user
    (merge keys: a LIST aggregate folds into no group); built once without a memory limit,
    then one new event per user, to be built under DuckDB's ``memory_limit``."""
    project = write_files(
        tmp_path / "p",
        {
            "models/marts/payloads.sql": PAYLOADS + "\n",
            "models/sources.yml": "sources:\n  raw.events: {cursor: event_id, append_only: true}\n",
            "sqlorch.yml": f"max_batch_rows: {budget}\n",
            "profiles.yml": PROFILE.format(""),
        },
    )
    rows = "range AS event_id, range % 1000 AS user_id, repeat('x', 200) || range AS payload"
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(f"CREATE TABLE raw.events AS SELECT {rows} FROM range(400000)")
    options = api.Options(project_dir=project, profiles_dir=project, threads=1, rebuild_when_cheaper=False)
    api.build(options)
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute(f"INSERT INTO raw.events SELECT {rows} FROM range(400000, 401000)")
    # the limit is tuned to DuckDB 2.0's memory use on this project, one thread: the whole
    # change in one or two chunks does not fit in it, in eight it does
    (project / "profiles.yml").write_text(PROFILE.format(", memory_limit: 185MB"))
    return project, options


def test_out_of_memory_retries_the_step_once_with_smaller_chunks(tmp_path: Path) -> None:
    project, options = _payloads_project(tmp_path / "chunked", budget=999)  # 1,000 changed rows: 2 chunks
    plan = {str(s.ref): s for s in api.plan(options).steps}
    assert [c.count(1000) for c in _chunks(plan["marts.payloads"])] == [2]
    result = api.build(options)
    (ran,) = result.results
    assert (ran.status, ran.strategy, ran.chunks) == ("success", "merge keys", 8), ran.error
    assert _differences(project, {"models/marts/payloads.sql": PAYLOADS}) == {"marts.payloads": 0}
    # the same step unchunked runs out of memory on its retry too (one thread, no insertion
    # order kept): the smaller chunks are what made it fit
    project, options = _payloads_project(tmp_path / "whole", budget=10**9)
    (failed,) = api.build(options).results
    assert failed.status == "error" and "Out of Memory" in (failed.error or ""), failed


def test_a_bad_memory_limit_is_an_error_naming_it(tmp_path: Path, cli) -> None:
    project = _project(tmp_path)
    (project / "profiles.yml").write_text(PROFILE.format(", memory_limit: plenty"))
    run = cli("build", "--project-dir", project, "--profiles-dir", project)
    assert run.exit_code == 1 and "Traceback" not in run.output
    assert "error: memory_limit: " in run.output, run.output


def test_a_build_killed_between_chunks_commits_nothing_of_the_step(tmp_path: Path) -> None:
    """SIGKILL while a step runs its chunks (seen in DuckDB's own query log): every model is
    either as before the build or equal to its SQL (all chunks commit in one transaction,
    or none), and the next build is exact."""
    project = _project(tmp_path, budget=2)  # hundreds of chunks: a wide window to kill in
    log = project / "query_log"
    (project / "profiles.yml").write_text(PROFILE.format(f", query_log: '{log}'"))
    sources = Sources(project, seed=5)
    sources.change(events=300, customers=40)
    _build(project)
    sources.change(events=400, customers=60)
    tables = ("marts.per_user", "marts.ranked")

    def rows(sql: bool = False) -> dict[str, list[tuple]]:
        """Each model's table, or with ``sql`` its SQL run from scratch now."""
        with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
            return {
                t: con.execute(f"SELECT * FROM ({MODELS[_path(t)] if sql else f'TABLE {t}'}) ORDER BY ALL").fetchall()
                for t in tables
            }

    before = rows()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "sqlorch.cli", "build", "--project-dir", str(project), "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    entries = log / "duckdb_log_entries.csv"
    deadline = time.monotonic() + 120
    fifth = re.compile(r'_sqlorch_chunk"* % \d+ = 5\D')  # as the CSV log quotes it
    while not (entries.exists() and fifth.search(entries.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, "the build ended before its fifth chunk"
        time.sleep(0.02)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    after, fresh = rows(), rows(sql=True)
    assert all(after[t] in (before[t], fresh[t]) for t in tables)
    assert any(after[t] == before[t] != fresh[t] for t in tables)  # the killed step left its table as it was
    _build(project)
    assert _differences(project) == {"marts.per_user": 0, "marts.ranked": 0}


def _path(table: str) -> str:
    return "models/" + table.replace(".", "/") + ".sql"
