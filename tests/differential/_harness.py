"""Differential-testing harness: a project over random source histories, and a reference evaluator.

The reference evaluator never touches sqlorch: it copies the current sources out of the
warehouse into an in-memory DuckDB and runs every model's SQL there from scratch, in
dependency order (found by retrying until every model's inputs exist).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

CORPUS = Path(__file__).parent / "corpus"
SOURCES = ("events", "users", "items", "fx")
BASE = dt.datetime(2026, 1, 1)
COUNTRIES = ["US", "DE", "FR", "BR", None]
PLANS = ["free", "pro", "team"]
EVENTS_INSERT = "INSERT INTO raw.events (event_id, user_id, ts, country, amount, _loaded_at) VALUES (?,?,?,?,?,?)"
# Source schema changes and boundary cases (issue 9), one per history step that draws one.
SCHEMA_EVENTS = ("add_column", "drop_column", "widen", "recreate", "truncate", "ties")
SKUS = ["a", "b", "c", "d"]


def model_files(project: Path) -> dict[str, str]:
    """{"schema.name": sql} for every model in the project."""
    out = {}
    for path in sorted((project / "models").rglob("*.sql")):
        schema = path.relative_to(project / "models").parts[0]
        out[f"{schema}.{path.stem}"] = path.read_text()
    return out


def make_project(tmp: Path) -> Path:
    """Copy the corpus. SQLORCH_DIFF_EXCLUDE=schema.name,... drops models (for triage only: the suite
    is meant to run on the whole corpus)."""
    project = tmp / "project"
    shutil.copytree(CORPUS, project)
    for name in filter(None, os.environ.get("SQLORCH_DIFF_EXCLUDE", "").split(",")):
        schema, stem = name.strip().split(".")
        (project / "models" / schema / f"{stem}.sql").unlink()
    return project


@dataclass
class History:
    """Keeps the mutable sources of one project and mutates them with a seeded RNG."""

    db: Path
    rng: random.Random
    clock: dt.datetime = BASE + dt.timedelta(days=30)
    next_event: int = 1
    next_user: int = 1
    next_order: int = 1
    log: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)  # columns added to raw.users
    widened: bool = False

    def tick(self) -> dt.datetime:
        self.clock += dt.timedelta(minutes=1)
        return self.clock

    def _event(self, late: bool = False) -> tuple:
        rng = self.rng
        eid = self.next_event
        self.next_event += 1
        user = None if rng.random() < 0.08 else rng.randint(1, self.next_user + 2)  # may not exist
        day = rng.randint(0, 6) if late else rng.randint(20, 29)
        ts = BASE + dt.timedelta(days=day, seconds=rng.randint(0, 86399))
        country = rng.choice(COUNTRIES)
        amount = Decimal(rng.randint(0, 20000)) / 100 if rng.random() > 0.03 else Decimal("-1.00")
        return (eid, user, ts, country, amount, self.clock)

    def create(self) -> None:
        rng = self.rng
        with duckdb.connect(str(self.db)) as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS raw")
            con.execute(
                "CREATE TABLE raw.events (event_id INTEGER, user_id INTEGER, ts TIMESTAMP, country VARCHAR,"
                " amount DECIMAL(12,2), _loaded_at TIMESTAMP)"
            )
            con.execute("CREATE TABLE raw.users (user_id INTEGER, plan VARCHAR, country VARCHAR)")
            con.execute(
                "CREATE TABLE raw.items (order_id INTEGER, line INTEGER, sku VARCHAR, qty INTEGER,"
                " price DECIMAL(12,2), updated_at TIMESTAMP)"
            )
            con.execute("CREATE TABLE raw.fx (country VARCHAR, rate DECIMAL(12,4))")
            self.tick()
            for _ in range(20):
                self._insert_user(con)
            con.executemany(EVENTS_INSERT, [self._event(rng.random() < 0.2) for _ in range(120)])
            for _ in range(10):
                self._insert_order(con)
            con.executemany(
                "INSERT INTO raw.fx VALUES (?,?)",
                [("US", Decimal("1.0000")), ("DE", Decimal("1.1000")), ("FR", Decimal("1.0900"))],
            )

    def _insert_user(self, con) -> None:
        uid = self.next_user
        self.next_user += 1
        con.execute(
            "INSERT INTO raw.users (user_id, plan, country) VALUES (?,?,?)",
            [uid, self.rng.choice(PLANS), self.rng.choice(COUNTRIES)],
        )

    def _insert_order(self, con) -> None:
        oid = self.next_order
        self.next_order += 1
        for line in range(1, self.rng.randint(1, 4) + 1):
            con.execute(
                "INSERT INTO raw.items (order_id, line, sku, qty, price, updated_at) VALUES (?,?,?,?,?,?)",
                [
                    oid,
                    line,
                    self.rng.choice(SKUS),
                    self.rng.randint(0, 5),
                    Decimal(self.rng.randint(100, 5000)) / 100,
                    self.clock,
                ],
            )

    def schema_event(self, event: str) -> None:
        """One source schema change or boundary case, described in self.log. Run before
        ``step`` so that ties meet the cursor maximum the last build captured."""
        with duckdb.connect(str(self.db)) as con:
            if event == "add_column" or (event == "drop_column" and not self.extra_columns):
                name = f"extra{len(self.extra_columns) + 1}"
                con.execute(f"ALTER TABLE raw.users ADD COLUMN {name} VARCHAR DEFAULT 'x'")
                self.extra_columns.append(name)
                event = "add_column"
            elif event == "drop_column":
                con.execute(f"ALTER TABLE raw.users DROP COLUMN {self.extra_columns.pop()}")
            elif event == "widen":
                if not self.widened:
                    con.execute("ALTER TABLE raw.items ALTER price TYPE DECIMAL(18,3)")
                    self.widened = True
                con.execute("UPDATE raw.items SET price = price + 0.001, updated_at = ? WHERE line = 1", [self.tick()])
            elif event == "recreate":
                con.execute("CREATE OR REPLACE TABLE raw.users AS SELECT * FROM raw.users WHERE user_id % 5 <> 0")
            elif event == "truncate":
                con.execute("CREATE TEMP TABLE keep AS SELECT * FROM raw.events WHERE event_id % 3 <> 0")
                con.execute("DELETE FROM raw.events")
                con.execute("INSERT INTO raw.events SELECT * FROM keep")
            else:  # ties: rows stamped with the cursor maximum the last build captured
                top = con.execute("SELECT max(_loaded_at) FROM raw.events").fetchall()[0][0]
                con.executemany(EVENTS_INSERT, [(*self._event()[:-1], top) for _ in range(3)])
        self.log.append(f"schema event {event}")

    def step(self) -> None:
        """One batch of mixed changes, described in self.log."""
        rng = self.rng
        self.tick()
        with duckdb.connect(str(self.db)) as con:
            # events: appends, some late (old days), some with NULL user/country
            n = rng.randint(0, 30)
            rows = [self._event(late=rng.random() < 0.25) for _ in range(n)]
            if rows:
                con.executemany(EVENTS_INSERT, rows)
            self.log.append(f"events +{n}")
            # users: in-place updates that move rows between groups, inserts, hard deletes
            ids = [r[0] for r in con.execute("SELECT user_id FROM raw.users").fetchall()]
            for uid in rng.sample(ids, min(len(ids), rng.randint(0, 4))):
                if rng.random() < 0.5:
                    con.execute("UPDATE raw.users SET plan = ? WHERE user_id = ?", [rng.choice(PLANS), uid])
                else:
                    con.execute("UPDATE raw.users SET country = ? WHERE user_id = ?", [rng.choice(COUNTRIES), uid])
                self.log.append(f"users update {uid}")
            for _ in range(rng.randint(0, 2)):
                self._insert_user(con)
                self.log.append(f"users insert {self.next_user - 1}")
            if ids and rng.random() < 0.5:
                uid = rng.choice(ids)
                con.execute("DELETE FROM raw.users WHERE user_id = ?", [uid])
                self.log.append(f"users delete {uid}")
            # items: updates (updated_at advanced), deletes, inserts
            keys = con.execute("SELECT order_id, line FROM raw.items").fetchall()
            for oid, line in rng.sample(keys, min(len(keys), rng.randint(0, 4))):
                con.execute(
                    "UPDATE raw.items SET qty = ?, price = price + 1, updated_at = ? WHERE order_id = ? AND line = ?",
                    [rng.randint(0, 5), self.tick(), oid, line],
                )
                self.log.append(f"items update {oid},{line}")
            if keys and rng.random() < 0.4:
                oid, line = rng.choice(keys)
                con.execute("DELETE FROM raw.items WHERE order_id = ? AND line = ?", [oid, line])
                self.log.append(f"items delete {oid},{line}")
            if rng.random() < 0.6:
                self.tick()
                self._insert_order(con)
                self.log.append(f"items insert order {self.next_order - 1}")
            # fx: rare change
            if rng.random() < 0.2:
                if rng.random() < 0.5:
                    con.execute(
                        "UPDATE raw.fx SET rate = rate + 0.01 WHERE country = ?", [rng.choice(["US", "DE", "FR"])]
                    )
                    self.log.append("fx update")
                else:
                    con.execute("DELETE FROM raw.fx WHERE country = 'BR'")
                    con.execute("INSERT INTO raw.fx VALUES ('BR', ?)", [Decimal(rng.randint(15, 25)) / 100])
                    self.log.append("fx upsert BR")


@dataclass
class Mismatch:
    model: str
    problem: str
    only_in_built: list[tuple] = field(default_factory=list)
    only_in_reference: list[tuple] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.model}: {self.problem}\n  only in built table ({len(self.only_in_built)} shown): "
            f"{self.only_in_built[:5]}\n  only in reference: {self.only_in_reference[:5]}"
        )


def _ident(name: str) -> str:
    return ".".join(f'"{p}"' for p in name.split("."))


def check_exact(db: Path, project: Path) -> list[Mismatch]:
    """Compare every model table in ``db`` with a from-scratch evaluation of its SQL."""
    models = model_files(project)
    mismatches: list[Mismatch] = []
    con = duckdb.connect()  # in-memory: the reference world
    try:
        con.execute(f"ATTACH '{db}' AS w (READ_ONLY)")
        con.execute("CREATE SCHEMA raw")
        for table in SOURCES:
            con.execute(f"CREATE TABLE raw.{table} AS SELECT * FROM w.raw.{table}")
        for schema in {m.split(".")[0] for m in models}:
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        pending = dict(models)
        while pending:
            progressed = False
            errors = {}
            for name, sql in list(pending.items()):
                body = re.sub(r"--[^\n]*", "", sql).strip().rstrip(";")
                try:
                    con.execute(f"CREATE TABLE memory.{_ident(name)} AS {body}")
                except duckdb.CatalogException as error:
                    errors[name] = str(error)
                    continue
                del pending[name]
                progressed = True
            if not progressed:
                raise AssertionError(f"reference evaluation cannot resolve: {errors}")
        for name in models:
            built = f"w.{_ident(name)}"
            ref = f"memory.{_ident(name)}"
            try:
                got_cols = con.execute(f"DESCRIBE SELECT * FROM {built}").fetchall()
            except duckdb.CatalogException:
                mismatches.append(Mismatch(name, "table missing in warehouse"))
                continue
            want_cols = con.execute(f"DESCRIBE SELECT * FROM {ref}").fetchall()
            got = [(c[0], c[1]) for c in got_cols]
            want = [(c[0], c[1]) for c in want_cols]
            if [c[0] for c in got] != [c[0] for c in want]:
                mismatches.append(Mismatch(name, f"columns differ: built {got} vs reference {want}"))
                continue
            only_built = con.execute(f"SELECT * FROM {built} EXCEPT ALL SELECT * FROM {ref} LIMIT 20").fetchall()
            only_ref = con.execute(f"SELECT * FROM {ref} EXCEPT ALL SELECT * FROM {built} LIMIT 20").fetchall()
            if only_built or only_ref:
                mismatches.append(Mismatch(name, "rows differ (multiset)", only_built, only_ref))
            elif got != want:
                mismatches.append(Mismatch(name, f"column types differ: built {got} vs reference {want}"))
    finally:
        con.close()
    return mismatches
