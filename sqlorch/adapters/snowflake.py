"""Snowflake through snowflake-connector-python: one session per adapter, explicit transactions.

Identifier case: sqlorch's names are lower case and case-insensitive; Snowflake folds
unquoted identifiers to upper case. The adapter therefore renders every quoted identifier
that is all lower case in upper case (``"marts"."daily"`` -> ``"MARTS"."DAILY"``), the same
object an unquoted ``marts.daily`` in a model or a user's query finds. Identifiers with any
upper-case letter are left as written (the user quoted them on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import snowflake.connector
from snowflake.connector import errors as snowflake_errors
from snowflake.connector.errors import Error as SnowflakeError
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

_NOT_CONNECT_KEYS = {"threads", "type", "schema_prefix"}
_DML = (exp.Insert, exp.Delete, exp.Update, exp.Merge)
_DDL = (exp.Create, exp.Drop, exp.Alter)
_MAX63 = 9223372036854775807  # keep hashes non-negative 64-bit (see fingerprint)
_MAX31 = 2147483647
# The connector's HTTP failures that a later try may not meet (5xx, 429, timeouts), beyond the
# retries the connector makes itself within network_timeout
_TRANSIENT = (
    snowflake_errors.InternalServerError,
    snowflake_errors.ServiceUnavailableError,
    snowflake_errors.BadGatewayError,
    snowflake_errors.GatewayTimeoutError,
    snowflake_errors.OtherHTTPRetryableError,
    snowflake_errors.RequestTimeoutError,
)
# Snowflake error numbers: 000625, a statement aborted while waiting for a table's lock
_TRANSIENT_ERRNOS = {625}


def _masked_hash(columns: list[str], alias: str, mask: int) -> exp.Expr:
    """``HASH`` of ``columns`` with only the bits of ``mask`` kept (see ``fingerprint_aggregates``)."""
    hashed = exp.Anonymous(this="HASH", expressions=[exp.column(c, table=alias, quoted=True) for c in columns])
    return exp.Anonymous(this="BITAND", expressions=[hashed, exp.Literal.number(mask)])


class SnowflakeAdapter:
    dialect: ClassVar[str] = "snowflake"
    fingerprint_parts: ClassVar[tuple[str, ...]] = ("sum", "xor", "sum")  # count, then the hash aggregates
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=True,
        merge_in_transaction=False,  # fakesnow: MERGE inside BEGIN ... COMMIT fails (see README quirks)
        create_or_replace=True,
        except_all=False,
        # Snowflake runs every DDL statement as its own transaction and commits the open one
        # first: a CREATE TABLE inside BEGIN ... COMMIT is not rolled back with it.
        transactional_ddl=False,
        free_row_count=True,  # micro-partition metadata
    )

    def __init__(self, settings: dict[str, Any], read_only: bool = False) -> None:
        self.settings = settings
        self.read_only = read_only
        self.interrupts = Interrupts()
        params = {key: value for key, value in settings.items() if key not in _NOT_CONNECT_KEYS and value != ""}
        # Without a network_timeout the connector retries an HTTP 500 for ever (seen against
        # fakesnow); a bounded default turns that into an error.
        params.setdefault("network_timeout", 300)
        params.setdefault("login_timeout", 60)
        self.params = params
        self.in_transaction = False
        account = params.get("account", "?")
        where = (
            f"{params['host']}:{params.get('port', 443)}" if params.get("host") else f"{account}.snowflakecomputing.com"
        )
        try:
            self.connection = snowflake.connector.connect(**params)
        except SnowflakeError as error:
            raise AdapterError(
                f"cannot connect to Snowflake at {where} (account {account}) as {params.get('user', '?')}: "
                + redact(str(error), settings),
                hint="check account, user, password/private_key_file, role and warehouse in profiles.yml",
            ) from None
        except (OSError, ValueError, TypeError) as error:  # e.g. an unreadable private_key_file
            raise AdapterError(
                f"cannot connect to Snowflake at {where}: {type(error).__name__}: {redact(str(error), settings)}"
            ) from None

    def fork(self, interrupts: Interrupts | None = None) -> SnowflakeAdapter:
        clone = SnowflakeAdapter(self.settings, read_only=self.read_only)
        clone.interrupts = interrupts or self.interrupts  # a running statement finishes: stops before the next
        return clone

    def render(self, statement: exp.Expr) -> str:
        def upper(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Identifier) and node.quoted and node.name == node.name.lower():
                return exp.Identifier(this=node.name.upper(), quoted=True)
            return node

        return statement.transform(upper).sql(dialect=self.dialect)

    def _run(self, sql: str, params: Any = None) -> Any:
        self.interrupts.check()
        try:
            cursor = self.connection.cursor()
            cursor.execute(sql, params)
            return cursor
        except SnowflakeError as error:
            raise AdapterError(redact(str(error), self.settings)) from None

    def execute(self, statement: exp.Expr, sql: str | None = None) -> int | None:
        refuse_writes(self, "execute")
        sql = self.render(statement) if sql is None else sql
        if self.in_transaction and isinstance(statement, _DDL):
            # Real Snowflake commits the open transaction before a DDL statement and runs the DDL
            # on its own; done explicitly here because fakesnow instead fails a typed
            # CREATE TABLE inside BEGIN (HTTP 500: "a single transaction can only write to a
            # single attached database", its catalog lives in another one) and then silently
            # drops the transaction's earlier writes at COMMIT. (capabilities.transactional_ddl)
            self._run("COMMIT")
            try:
                self._run(sql)
            finally:
                self._run("BEGIN")
            return None
        cursor = self._run(sql)
        if isinstance(statement, _DML):
            return int(cursor.rowcount) if cursor.rowcount is not None and cursor.rowcount >= 0 else None
        return None

    def fetch(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        cursor = self._run(self.render(query))
        try:
            return [tuple(row) for row in cursor.fetchall()]
        except SnowflakeError as error:
            raise AdapterError(redact(str(error), self.settings)) from None

    def columns(self, table: TableRef) -> dict[str, exp.DataType] | None:
        return self.columns_many([table]).get(table)

    def columns_many(self, tables: Iterable[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
        by_catalog: dict[str | None, dict[tuple[str, str], list[TableRef]]] = {}
        for table in tables:
            wanted = by_catalog.setdefault(table.catalog, {})
            wanted.setdefault((_fold(table.schema), _fold(table.name)), []).append(table)
        found: dict[TableRef, dict[str, exp.DataType]] = {}
        for catalog, wanted in by_catalog.items():  # one INFORMATION_SCHEMA per database
            schemas = sorted({schema for schema, _ in wanted})
            names = sorted({name for _, name in wanted})
            query = (
                exp.select("table_schema", "table_name", "column_name")
                .select("data_type", "numeric_precision", "numeric_scale")
                .from_(exp.table_("COLUMNS", db="INFORMATION_SCHEMA", catalog=catalog))
                .where(exp.column("table_schema").isin(*[exp.Literal.string(s) for s in schemas]))
                .where(exp.column("table_name").isin(*[exp.Literal.string(n) for n in names]))
                .order_by("table_schema", "table_name", "ordinal_position")
            )
            for schema, name, column, kind, precision, scale in self.fetch(query):
                for table in wanted.get((str(schema), str(name)), []):
                    found.setdefault(table, {})[str(column).lower()] = _data_type(str(kind), precision, scale)
        return found

    def fingerprint(self, table: TableRef | exp.Query, columns: list[str] | None = None) -> str | None:
        present = self.columns(table) if isinstance(table, TableRef) else {}
        if present is None:
            return None
        aggregates = self.fingerprint_aggregates(columns or list(present))
        count, xor, total = self.fetch(exp.select(*aggregates).from_(fingerprinted(table)))[0]
        return f"{count}:{xor}:{total}"

    def fingerprint_aggregates(self, columns: list[str], alias: str = "t") -> list[exp.Expr]:
        # HASH_AGG is Snowflake's own order-independent hash, but fakesnow lacks it, and fakesnow's
        # HASH is DuckDB's unsigned 64-bit hash, which fails to encode when >= 2^63 (HTTP 500).
        # Portable and exact on both: XOR of the hash masked to 63 bits, plus the sum of its low
        # 31 bits (the XOR alone cannot see a row added twice).
        return [
            exp.func("count", exp.Star()),
            exp.func(
                "coalesce",
                exp.Anonymous(this="BITXOR_AGG", expressions=[_masked_hash(columns, alias, _MAX63)]),
                exp.Literal.number(0),
            ),
            exp.func(
                "coalesce",
                # fakesnow: SUM over integers comes back as a float; the cast makes it exact again
                exp.cast(exp.func("sum", _masked_hash(columns, alias, _MAX31)), exp.DataType.build("DECIMAL(38, 0)")),
                exp.Literal.number(0),
            ),
        ]

    def key_bucket(self, columns: list[str], alias: str, buckets: int) -> exp.Expr:
        return exp.Mod(this=_masked_hash(columns, alias, _MAX63), expression=exp.Literal.number(buckets))

    def dependent_views(self, table: TableRef) -> list[TableRef]:
        return []  # views bind their tables by name: replacing a table leaves them in place

    def ensure_schema(self, schema: str) -> None:
        self.execute(create_schema_statement(schema))

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        refuse_writes(self, "insert_rows")
        sql = parameterized_insert(self.render, table, columns, "%s")
        try:
            cursor = self.connection.cursor()
            cursor.executemany(sql, rows)
        except SnowflakeError as error:
            raise AdapterError(redact(str(error), self.settings)) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.in_transaction:  # nested: part of the enclosing transaction
            yield
            return
        self._run("BEGIN")
        self.in_transaction = True
        try:
            yield
        except BaseException:
            try:
                self._run("ROLLBACK")
            except AdapterError:
                pass  # the original error is the one to report
            raise
        else:
            self._run("COMMIT")
        finally:
            self.in_transaction = False

    def close(self) -> None:
        try:
            self.connection.close()
        except SnowflakeError:
            pass

    def is_transient(self, error: BaseException) -> bool:
        cause = driver_error(error, SnowflakeError)
        if cause is None:
            return False
        if isinstance(cause, _TRANSIENT):
            return True
        if isinstance(cause, snowflake_errors.OperationalError):  # the network or the session went away
            return True
        return getattr(cause, "errno", None) in _TRANSIENT_ERRNOS or self.connection.is_closed()

    def relieve_memory(self, error: BaseException) -> bool:
        return False  # the server's memory: nothing the client can lower

    def reconnect(self) -> None:
        if not self.connection.is_closed():
            return
        try:
            self.connection = snowflake.connector.connect(**self.params)
        except SnowflakeError as error:
            raise AdapterError(redact(str(error), self.settings)) from None
        self.in_transaction = False


def _fold(name: str) -> str:
    """The stored name of an identifier as this adapter renders it (see the module docstring)."""
    return name.upper() if name == name.lower() else name


def _data_type(kind: str, precision: Any, scale: Any) -> exp.DataType:
    if kind.upper() in ("NUMBER", "DECIMAL", "NUMERIC") and precision is not None:
        kind = f"NUMBER({int(precision)}, {int(scale or 0)})"
    try:
        return exp.DataType.build(kind, dialect="snowflake")
    except (ParseError, ValueError):
        return exp.DataType.build(kind, dialect="snowflake", udt=True)
