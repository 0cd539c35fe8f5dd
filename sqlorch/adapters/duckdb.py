"""DuckDB, the embedded default: one connection per build on one database file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb
from sqlglot import exp

from sqlorch.adapters.base import Capabilities, create_schema_statement, parameterized_insert
from sqlorch.errors import AdapterError, LockError
from sqlorch.refs import TableRef


# An order-independent fingerprint: row count plus the sum of per-row hashes, so equal
# multisets give equal fingerprints in any row order.
def row_hash(columns: list[str] | None, table_alias: str = "t") -> exp.Expr:
    """A 64-bit hash of one row (all columns when ``columns`` is None)."""
    if columns:
        parts: list[exp.Expr] = [exp.column(c, table=table_alias, quoted=True) for c in columns]
        packed: exp.Expr = exp.func("row", *parts) if len(parts) > 1 else parts[0]
    else:
        packed = exp.column(table_alias, quoted=True)
    return exp.func("hash", packed)


def fingerprint_query(table: TableRef, columns: list[str] | None = None) -> exp.Select:
    hashed = exp.cast(row_hash(columns), "HUGEINT")
    return exp.select(
        exp.func("count", exp.Star()),
        exp.func("coalesce", exp.func("sum", hashed), exp.Literal.number(0)),
    ).from_(table.to_table(alias="t"))


_PROFILE_LOG_LOCK = threading.Lock()  # worker threads append to one profile log


class DuckDBAdapter:
    dialect: ClassVar[str] = "duckdb"
    capabilities: ClassVar[Capabilities] = Capabilities(merge_by_source=True, transactions=True, except_all=True)

    def __init__(self, settings: dict[str, Any], lock_timeout: float = 30.0) -> None:
        self.path = str(settings.get("path", ":memory:"))
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                self.connection = duckdb.connect(self.path)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise AdapterError(f"cannot open DuckDB database {self.path}: {error}") from None
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another sqlorch process holds the lock on {self.path}",
                        hint="wait for the other build to finish, then run again",
                    ) from None
                time.sleep(0.2)
        threads = settings.get("threads")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        self.profile_log: Path | None = None
        if settings.get("profile_log"):
            # One JSON line per statement, DuckDB's own profile of it (operators, rows scanned):
            # the machine-independent cost measure the benchmark reports.
            self.profile_log = Path(str(settings["profile_log"])).expanduser()
            self.profile_log.parent.mkdir(parents=True, exist_ok=True)
            self.connection.execute("PRAGMA enable_profiling = 'no_output'")

    def fork(self) -> DuckDBAdapter:
        """An adapter on its own cursor of the same database, for another worker thread."""
        clone = object.__new__(DuckDBAdapter)
        clone.path = self.path
        clone.connection = self.connection.cursor()
        clone.profile_log = self.profile_log
        if self.profile_log is not None:
            clone.connection.execute("PRAGMA enable_profiling = 'no_output'")
        return clone

    def render(self, statement: exp.Expr) -> str:
        return statement.sql(dialect=self.dialect)

    def execute(self, statement: exp.Expr) -> int | None:
        sql = self.render(statement)
        try:
            cursor = self.connection.execute(sql)
        except duckdb.Error as error:
            raise AdapterError(str(error).strip()) from None
        count = None
        if isinstance(statement, (exp.Insert, exp.Delete, exp.Update, exp.Merge)):
            row = cursor.fetchone()
            count = int(row[0]) if row else None
        self._log_profile()
        return count

    def fetch(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        try:
            rows = self.connection.execute(self.render(query)).fetchall()
        except duckdb.Error as error:
            raise AdapterError(str(error).strip()) from None
        self._log_profile()
        return rows

    def _log_profile(self) -> None:
        if self.profile_log is None:
            return
        profile = json.loads(self.connection.get_profiling_information(format="json"))
        if profile.get("result") == "error":  # statements DuckDB does not profile (DDL, BEGIN)
            return
        with _PROFILE_LOG_LOCK, self.profile_log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(profile) + "\n")

    def columns(self, table: TableRef) -> dict[str, exp.DataType] | None:
        rows = self.connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE lower(table_schema) = ? AND lower(table_name) = ? ORDER BY ordinal_position",
            [table.schema.lower(), table.name.lower()],
        ).fetchall()
        if not rows:
            return None
        return {str(name).lower(): exp.DataType.build(str(kind), dialect="duckdb") for name, kind in rows}

    def fingerprint(self, table: TableRef, columns: list[str] | None = None) -> str | None:
        if self.columns(table) is None:
            return None
        row = self.fetch(fingerprint_query(table, columns))[0]
        return f"{row[0]}:{row[1]}"

    def ensure_schema(self, schema: str) -> None:
        self.execute(create_schema_statement(schema))

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        try:
            self.connection.executemany(parameterized_insert(self.render, table, columns, "?"), rows)
        except duckdb.Error as error:
            raise AdapterError(str(error).strip()) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.close()
