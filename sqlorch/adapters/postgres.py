"""PostgreSQL through psycopg 3: one autocommit connection per adapter, explicit transactions.

Postgres has transactional DDL, MERGE (15+) and EXCEPT ALL, but no ``CREATE OR REPLACE
TABLE`` (the renderer drops and creates instead) and its views bind their tables early.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from sqlglot import exp
from sqlglot.errors import ParseError

from sqlorch.adapters.base import (
    Capabilities,
    Interrupts,
    create_schema_statement,
    driver_error,
    fingerprinted,
    parameterized_insert,
    redact,
    refuse_writes,
)
from sqlorch.errors import AdapterError
from sqlorch.refs import TableRef

# profiles.yml keys that are psycopg/libpq connection parameters (anything else is ignored)
_CONNECT_KEYS = (
    "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey",
    "connect_timeout", "application_name", "options", "target_session_attrs",
)  # fmt: skip
_DML = (exp.Insert, exp.Delete, exp.Update, exp.Merge)
# SQLSTATEs worth a retry: serialization failure, deadlock, lock not available, the server
# shutting down or restarting, too many connections. Not 57014 (query canceled): that is
# how a stopped build (Ctrl-C) or a statement_timeout ends a statement.
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}


def _row_hash(columns: list[str] | None, alias: str) -> exp.Expr:
    """A signed 64-bit hash of a row's text form (all its columns when ``columns`` is None)."""
    if columns:
        packed: exp.Expr = exp.Anonymous(
            this="ROW", expressions=[exp.column(c, table=alias, quoted=True) for c in columns]
        )
    else:
        packed = exp.column(alias, quoted=True)
    return exp.Anonymous(this="hashtextextended", expressions=[exp.cast(packed, "TEXT"), exp.Literal.number(0)])


class PostgresAdapter:
    dialect: ClassVar[str] = "postgres"
    fingerprint_parts: ClassVar[tuple[str, ...]] = ("sum", "sum")  # count, then the hash aggregates
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=True,
        merge_in_transaction=True,
        create_or_replace=False,
        except_all=True,
        views_bind_early=True,
        row_counts=True,
    )

    def __init__(self, settings: dict[str, Any], read_only: bool = False) -> None:
        """``read_only``: every transaction of the session is read-only, so the server itself
        refuses a write (behind ``refuse_writes``)."""
        self.settings = settings
        self.read_only = read_only
        params = {key: settings[key] for key in _CONNECT_KEYS if settings.get(key) not in (None, "")}
        params.setdefault("connect_timeout", 10)
        if "database" in settings and "dbname" not in params:
            params["dbname"] = settings["database"]
        self.params = params
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        try:
            self.connection = psycopg.connect(**params, autocommit=True)
        except psycopg.Error as error:
            raise AdapterError(
                f"cannot connect to PostgreSQL at {where} as {params.get('user', '(default user)')}: "
                + redact(str(error), settings),
                hint="check host, port, dbname, user and password in profiles.yml",
            ) from None
        self.interrupts = Interrupts()
        self.interrupts.register(self._cancel)
        if read_only:
            self._run("SET default_transaction_read_only = on")

    def _cancel(self) -> None:
        """Ask the server to cancel the running statement (a no-op when none runs)."""
        self.connection.cancel_safe()

    def fork(self, interrupts: Interrupts | None = None) -> PostgresAdapter:
        clone = PostgresAdapter(self.settings, read_only=self.read_only)
        clone.interrupts = interrupts or self.interrupts
        clone.interrupts.register(clone._cancel)
        return clone

    def render(self, statement: exp.Expr) -> str:
        return statement.sql(dialect=self.dialect)

    def _run(self, sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        self.interrupts.check()
        try:
            return self.connection.execute(sql, params)
        except psycopg.Error as error:
            raise AdapterError(redact(str(error), self.settings)) from None

    def execute(self, statement: exp.Expr, sql: str | None = None) -> int | None:
        refuse_writes(self, "execute")
        cursor = self._run(self.render(statement) if sql is None else sql)
        if isinstance(statement, _DML):
            return cursor.rowcount if cursor.rowcount >= 0 else None
        return None

    def fetch(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        return list(self._run(self.render(query)).fetchall())

    def columns(self, table: TableRef) -> dict[str, exp.DataType] | None:
        return self.columns_many([table]).get(table)

    def columns_many(self, tables: Iterable[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
        wanted: dict[tuple[str, str], list[TableRef]] = {}
        for table in tables:
            wanted.setdefault((table.schema, table.name), []).append(table)
        if not wanted:
            return {}
        # pg_attribute with format_type keeps precision (numeric(12,2)) and sees views too
        rows = self._run(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY n.nspname, c.relname, a.attnum",
            (sorted({schema for schema, _ in wanted}), sorted({name for _, name in wanted})),
        ).fetchall()
        found: dict[TableRef, dict[str, exp.DataType]] = {}
        for schema, name, column, kind in rows:
            for table in wanted.get((str(schema), str(name)), []):
                found.setdefault(table, {})[str(column).lower()] = _data_type(str(kind))
        return found

    def fingerprint(self, table: TableRef | exp.Query, columns: list[str] | None = None) -> str | None:
        if isinstance(table, TableRef) and self.columns(table) is None:
            return None
        row = self.fetch(exp.select(*self.fingerprint_aggregates(columns)).from_(fingerprinted(table)))[0]
        return f"{row[0]}:{row[1]}"

    def fingerprint_aggregates(self, columns: list[str] | None, alias: str = "t") -> list[exp.Expr]:
        # row count + exact sum of a 64-bit hash of each row's text form (numeric: no overflow)
        hashed = _row_hash(columns, alias)
        return [
            exp.func("count", exp.Star()),
            exp.func("coalesce", exp.func("sum", exp.cast(hashed, "DECIMAL")), exp.Literal.number(0)),
        ]

    def key_bucket(self, columns: list[str], alias: str, buckets: int) -> exp.Expr:
        # the hash is a signed BIGINT: its remainder lies in (-buckets, buckets)
        remainder = exp.Mod(this=_row_hash(columns, alias), expression=exp.Literal.number(buckets))
        return exp.Abs(this=exp.paren(remainder, copy=False))

    def dependent_views(self, table: TableRef) -> list[TableRef]:
        rows = self._run(
            "WITH RECURSIVE dependents(oid) AS ("
            " SELECT r.ev_class FROM pg_catalog.pg_depend d"
            " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
            " JOIN pg_catalog.pg_class t ON t.oid = d.refobjid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace"
            " WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass"
            " AND n.nspname = %s AND t.relname = %s AND r.ev_class <> t.oid"
            " UNION"
            " SELECT r.ev_class FROM dependents p"
            " JOIN pg_catalog.pg_depend d ON d.refobjid = p.oid"
            " AND d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass"
            " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND r.ev_class <> p.oid"
            ") SELECT n.nspname, c.relname FROM dependents x"
            " JOIN pg_catalog.pg_class c ON c.oid = x.oid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2",
            (table.schema, table.name),
        ).fetchall()
        return [TableRef(schema=str(schema), name=str(name)) for schema, name in rows]

    def ensure_schema(self, schema: str) -> None:
        self.execute(create_schema_statement(schema))

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        refuse_writes(self, "insert_rows")
        sql = parameterized_insert(self.render, table, columns, "%s")
        self.interrupts.check()
        try:
            with self.connection.cursor() as cursor:
                cursor.executemany(sql, rows)
        except psycopg.Error as error:
            raise AdapterError(redact(str(error), self.settings)) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.connection.transaction():
                yield
        except psycopg.Error as error:  # COMMIT itself failed
            raise AdapterError(redact(str(error), self.settings)) from None

    def close(self) -> None:
        self.connection.close()

    def is_transient(self, error: BaseException) -> bool:
        cause = driver_error(error, psycopg.Error)
        if not isinstance(cause, psycopg.Error):
            return False
        state = cause.sqlstate or ""
        if state.startswith("08") or state in _TRANSIENT_STATES:  # 08: connection exception
            return True
        # no SQLSTATE: the client lost the connection (reset, server gone, a broken socket)
        lost = isinstance(cause, psycopg.OperationalError) and not state
        return lost or self.connection.broken

    def relieve_memory(self, error: BaseException) -> bool:
        return False  # the server's memory: nothing the client can lower

    def reconnect(self) -> None:
        if not (self.connection.closed or self.connection.broken):
            return
        try:
            self.connection = psycopg.connect(**self.params, autocommit=True)
        except psycopg.Error as error:
            raise AdapterError(redact(str(error), self.settings)) from None


def _data_type(kind: str) -> exp.DataType:
    try:
        return exp.DataType.build(kind, dialect="postgres")
    except (ParseError, ValueError):  # a type sqlglot does not know (domains, extensions): keep its name
        return exp.DataType.build(kind, dialect="postgres", udt=True)
