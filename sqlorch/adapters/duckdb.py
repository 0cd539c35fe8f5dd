"""DuckDB, the embedded default: one connection per build on one database file.

The driver is used through its extension module ``_duckdb`` (what ``import duckdb``
re-exports): the Python layer of the ``duckdb`` package (relational API, Arrow and pandas
glue) costs ~0.1 s to import and none of it is used here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from sqlorch.adapters.base import (
    Capabilities,
    Interrupts,
    create_schema_statement,
    driver_error,
    fingerprinted,
    parameterized_insert,
    refuse_writes,
)
from sqlorch.errors import AdapterError, LockError
from sqlorch.refs import TableRef

try:
    import _duckdb as duckdb
except ImportError:  # pragma: no cover - a driver that keeps its extension inside the package
    import duckdb  # type: ignore[no-redef]


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


def fingerprint_aggregates(columns: list[str] | None, alias: str = "t") -> list[exp.Expr]:
    hashed = exp.cast(row_hash(columns, alias), "HUGEINT")
    return [exp.func("count", exp.Star()), exp.func("coalesce", exp.func("sum", hashed), exp.Literal.number(0))]


def fingerprint_query(table: TableRef | exp.Query, columns: list[str] | None = None) -> exp.Select:
    return exp.select(*fingerprint_aggregates(columns)).from_(fingerprinted(table))


_TYPES: dict[str, exp.DataType] = {}


def _data_type(kind: str) -> exp.DataType:
    """A column type as sqlglot reads it; parsed once per type string."""
    if kind not in _TYPES:
        _TYPES[kind] = exp.DataType.build(kind, dialect="duckdb")
    return _TYPES[kind].copy()


_DUCKDB = Dialect.get_or_raise("duckdb")
_INSERT_BATCH = 100  # rows per INSERT statement: larger statements take longer to bind per row
_PROFILE_LOG_LOCK = threading.Lock()  # worker threads append to one profile log


class DuckDBAdapter:
    dialect: ClassVar[str] = "duckdb"
    fingerprint_parts: ClassVar[tuple[str, ...]] = ("sum", "sum")  # count, then the hash aggregates
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=True, except_all=True, temp_tables=True, row_counts=True, free_row_count=True
    )

    def __init__(self, settings: dict[str, Any], lock_timeout: float = 30.0, read_only: bool = False) -> None:
        """``read_only`` opens an existing file read-only (DuckDB then refuses every write and
        writes no WAL); an in-memory database cannot be opened so, and relies on
        ``refuse_writes``. A read-only holder writes no lock note: the note names the
        holder of the write lock, and a plan creates no file."""
        self.path = str(settings.get("path", ":memory:"))
        self.read_only = read_only
        on_disk = _lock_note_path(self.path) is not None
        deadline = time.monotonic() + lock_timeout
        waiting = False
        while True:
            try:
                self.connection = duckdb.connect(self.path, read_only=read_only and on_disk)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise AdapterError(f"cannot open DuckDB database {self.path}: {error}") from None
                holder = _lock_holder(self.path, str(error))
                if lock_timeout <= 0:  # --no-wait
                    raise LockError(
                        f"the DuckDB database {self.path} is in use: held by {holder}",
                        hint="wait for that process to finish (or stop it), or leave out --no-wait to wait for it",
                    ) from None
                if not waiting:
                    waiting = True
                    # A notice, not an error: the build goes on by itself once the lock is free.
                    sys.stderr.write(
                        f"waiting for the lock on {self.path}, held by {holder}: waiting up to {lock_timeout:g} s\n"
                    )
                    sys.stderr.flush()
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"the DuckDB database {self.path} is still locked after {lock_timeout:g} s: held by {holder}",
                        hint="wait for that process to finish (or stop it), then run again",
                    ) from None
                time.sleep(0.2)
        self._lock_note = None if read_only else _write_lock_note(self.path)
        self.interrupts = Interrupts()
        self.interrupts.register(self.connection.interrupt)
        threads = settings.get("threads")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        if settings.get("memory_limit"):  # DuckDB's own cap (default 80% of the memory), e.g. "4GB"
            try:
                self.connection.execute("SET memory_limit = ?", [str(settings["memory_limit"])])
            except duckdb.Error as error:
                raise AdapterError(f"memory_limit: {error}") from None
        self.profile_log: Path | None = None
        if settings.get("profile_log"):
            # One JSON line per statement, DuckDB's own profile of it (operators, rows scanned):
            # the machine-independent cost measure the benchmark reports.
            self.profile_log = Path(str(settings["profile_log"])).expanduser()
            self.profile_log.parent.mkdir(parents=True, exist_ok=True)
            self.connection.execute("PRAGMA enable_profiling = 'no_output'")
        if settings.get("query_log"):
            # DuckDB's own query log: every statement this target runs, appended as CSV to
            # duckdb_log_entries.csv in that folder (what tests compare with the plan).
            folder = str(Path(str(settings["query_log"])).expanduser())
            self.connection.execute("CALL enable_logging('QueryLog', storage = 'file', storage_path = ?)", [folder])

    def fork(self, interrupts: Interrupts | None = None) -> DuckDBAdapter:
        """An adapter on its own cursor of the same database, for another worker thread."""
        clone = object.__new__(DuckDBAdapter)
        clone.path = self.path
        clone.read_only = self.read_only
        clone._lock_note = None  # the note belongs to the first connection
        clone.connection = self.connection.cursor()
        clone.interrupts = interrupts or self.interrupts
        clone.interrupts.register(clone.connection.interrupt)
        clone.profile_log = self.profile_log
        if self.profile_log is not None:
            clone.connection.execute("PRAGMA enable_profiling = 'no_output'")
        return clone

    def render(self, statement: exp.Expr) -> str:
        # Not copied first, as ``sql()`` does: the copy is most of the cost of rendering (a
        # chain of 1,000 models renders thousands of statements). DuckDB's generator moves no
        # CTE and adds no boolean cast; it rewrites only constructs DuckDB lacks (CONNECT BY,
        # Snowflake's SEQ), into ones it renders again unchanged: a tree (rendered by the one
        # thread running its step) gives the same text every time.
        return _DUCKDB.generate(statement, copy=False)

    def execute(self, statement: exp.Expr, sql: str | None = None) -> int | None:
        refuse_writes(self, "execute")
        self.interrupts.check()
        sql = self.render(statement) if sql is None else sql
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
        self.interrupts.check()
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
        return self.columns_many([table]).get(table)

    def columns_many(self, tables: Iterable[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
        wanted: dict[tuple[str, str], list[TableRef]] = {}
        for table in tables:
            wanted.setdefault((table.schema.lower(), table.name.lower()), []).append(table)
        if not wanted:
            return {}
        self.interrupts.check()
        schemas = sorted({schema for schema, _ in wanted})
        names = sorted({name for _, name in wanted})
        try:
            rows = self.connection.execute(
                "SELECT lower(table_schema), lower(table_name), column_name, data_type "
                "FROM information_schema.columns "
                f"WHERE lower(table_schema) IN ({', '.join('?' for _ in schemas)}) "
                f"AND lower(table_name) IN ({', '.join('?' for _ in names)}) "
                "ORDER BY lower(table_schema), lower(table_name), ordinal_position",
                [*schemas, *names],
            ).fetchall()
        except duckdb.Error as error:
            raise AdapterError(str(error).strip()) from None
        self._log_profile()
        found: dict[TableRef, dict[str, exp.DataType]] = {}
        for schema, name, column, kind in rows:
            for table in wanted.get((schema, name), []):
                found.setdefault(table, {})[str(column).lower()] = _data_type(str(kind))
        return found

    def fingerprint(self, table: TableRef | exp.Query, columns: list[str] | None = None) -> str | None:
        self.interrupts.check()
        try:
            row = self.connection.execute(self.render(fingerprint_query(table, columns))).fetchall()[0]
        except duckdb.CatalogException:
            return None  # no such table
        except duckdb.Error as error:
            raise AdapterError(str(error).strip()) from None
        self._log_profile()
        return f"{row[0]}:{row[1]}"

    def fingerprint_aggregates(self, columns: list[str] | None, alias: str = "t") -> list[exp.Expr]:
        return fingerprint_aggregates(columns, alias)

    def key_bucket(self, columns: list[str], alias: str, buckets: int) -> exp.Expr:
        return exp.Mod(this=row_hash(columns, alias), expression=exp.Literal.number(buckets))

    def dependent_views(self, table: TableRef) -> list[TableRef]:
        return []  # views bind their tables by name: replacing a table leaves them in place

    def ensure_schema(self, schema: str) -> None:
        self.execute(create_schema_statement(schema))

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        refuse_writes(self, "insert_rows")
        # Many rows per statement: DuckDB's executemany runs one statement per row (~1.5 ms each).
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            sql = parameterized_insert(self.render, table, columns, "?", rows=len(batch))
            self.interrupts.check()
            try:
                self.connection.execute(sql, [value for row in batch for value in row])
            except duckdb.Error as error:
                raise AdapterError(str(error).strip()) from None
            self._log_profile()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            with contextlib.suppress(duckdb.TransactionException):  # DuckDB may have ended it (out of memory)
                self.connection.execute("ROLLBACK")
            raise
        try:
            self.connection.execute("COMMIT")
        except duckdb.Error as error:  # a failed COMMIT: nothing of the transaction was applied
            with contextlib.suppress(duckdb.TransactionException):  # nor left open, when it ran out of memory
                self.connection.execute("ROLLBACK")
            raise AdapterError(str(error).strip()) from None

    def close(self) -> None:
        self.connection.close()
        if self._lock_note is not None:
            self._lock_note.unlink(missing_ok=True)

    def is_transient(self, error: BaseException) -> bool:
        """A write-write conflict with another connection of this process (two worker
        threads); an embedded database has no connection to lose or server to fail."""
        cause = driver_error(error, duckdb.Error)
        return isinstance(cause, duckdb.TransactionException) and "conflict" in str(cause).lower()

    def reconnect(self) -> None:
        pass  # an embedded database file: nothing to reconnect

    def relieve_memory(self, error: BaseException) -> bool:
        """DuckDB's own advice on an out-of-memory error: fewer threads (each holds its own
        buffers) and no insertion order to keep (lets large inserts stream). Settings of the
        database, so for the rest of the build. True on every out-of-memory error, even when
        the settings were already that low: the retry also cuts a chunked step's keys
        smaller (``planning/chunks.py``); ``retry_step`` tries once more only."""
        if not isinstance(driver_error(error, duckdb.Error), duckdb.OutOfMemoryException):
            return False
        with contextlib.suppress(duckdb.Error):
            self.connection.execute("SET threads = 1")
            self.connection.execute("SET preserve_insertion_order = false")
        return True


def _lock_note_path(path: str) -> Path | None:
    return None if path == ":memory:" or path.startswith(":") else Path(path + ".sqlorch-lock")


def _write_lock_note(path: str) -> Path | None:
    """Beside the database, while this process holds its lock: who and since when, for a
    second build to name while it waits. A note left by a killed process is overwritten by
    the next holder and ignored by waiters when its pid is not DuckDB's lock holder."""
    note = _lock_note_path(path)
    if note is None:
        return None
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    written = note.with_name(f"{note.name}.{os.getpid()}")
    try:  # whole or not at all (a rename): a waiter never reads a note half written
        written.write_text(json.dumps({"pid": os.getpid(), "since": started, "command": " ".join(sys.argv[1:2])}))
        os.replace(written, note)
    except OSError:
        with contextlib.suppress(OSError):
            written.unlink(missing_ok=True)
        return None  # informative only
    return note


def _lock_holder(path: str, message: str) -> str:
    """``pid N (sqlorch build, since ...)``: DuckDB's error names the pid, the note the rest."""
    match = re.search(r"PID (\d+)", message)
    pid = int(match.group(1)) if match else None
    note = _lock_note_path(path)
    try:
        info = json.loads(note.read_text()) if note is not None and note.exists() else {}
    except (OSError, ValueError):
        info = {}
    if pid is None or info.get("pid") != pid:
        return f"pid {pid}" if pid is not None else "another process"
    command = f"sqlorch {info['command']}, " if info.get("command") else "sqlorch, "
    return f"pid {pid} ({command}since {info.get('since', '?')})"
