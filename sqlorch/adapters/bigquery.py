"""BigQuery through google-cloud-bigquery: schemas are datasets of the configured project.

Transactions: BigQuery's ``BEGIN TRANSACTION ... COMMIT TRANSACTION`` must sit in one
script, and cannot hold ``CREATE TABLE`` (only temporary tables) on the real service, while
sqlorch's runners create tables and read their own writes inside ``transaction()``.
So this adapter declares ``transactions=False``: ``transaction()`` runs each statement at
once, in order, without atomicity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from sqlglot import exp
from sqlglot.errors import ParseError

from sqlorch.adapters.base import Capabilities, Interrupts, driver_error, fingerprinted, redact, refuse_writes
from sqlorch.errors import AdapterError
from sqlorch.refs import TableRef

_DML = (exp.Insert, exp.Delete, exp.Update, exp.Merge)
_BATCH = 500  # rows per INSERT ... VALUES statement
_MAX31 = 2147483647
# legacy type names the REST API reports -> GoogleSQL names sqlglot knows
_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
# server errors and throttling, and requests' ConnectionError/Timeout (OSErrors)
_TRANSIENT: tuple[type[Exception], ...] = (
    google_exceptions.InternalServerError,
    google_exceptions.BadGateway,
    google_exceptions.ServiceUnavailable,
    google_exceptions.GatewayTimeout,
    google_exceptions.TooManyRequests,
    google_exceptions.DeadlineExceeded,
    google_exceptions.RetryError,
    OSError,
)
# reasons BigQuery gives in a 4xx for work that may pass later: quota and rate limits, and
# a DML statement that lost a race with another on the same table
_TRANSIENT_REASONS = ("rateLimitExceeded", "backendError", "internalError", "jobRateLimitExceeded")
_ERRORS: tuple[type[Exception], ...] = (
    google_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    OSError,  # requests' ConnectionError is an OSError
)


def _row_hash(columns: list[str] | None, alias: str) -> exp.Expr:
    """A signed 64-bit hash of a row's JSON text (the whole row when ``columns`` is None)."""
    row: exp.Expr = (
        exp.Anonymous(this="STRUCT", expressions=[exp.column(c, table=alias, quoted=True) for c in columns])
        if columns
        else exp.column(alias)
    )
    return exp.Anonymous(this="FARM_FINGERPRINT", expressions=[exp.Anonymous(this="TO_JSON_STRING", expressions=[row])])


class BigQueryAdapter:
    dialect: ClassVar[str] = "bigquery"
    fingerprint_parts: ClassVar[tuple[str, ...]] = ("sum", "xor", "sum")  # count, then the hash aggregates
    capabilities: ClassVar[Capabilities] = Capabilities(
        transactions=False,
        merge_in_transaction=True,
        create_or_replace=True,
        # (no ALTER TABLE ... RENAME is issued: on bqemulator it changes the data, not the catalog)
        except_all=False,
        transactional_ddl=False,
        read_own_writes=True,  # statements run at once (transactions=False)
        free_row_count=True,  # table metadata: no bytes billed
    )

    def __init__(self, settings: dict[str, Any], read_only: bool = False) -> None:
        self.settings = settings
        self.read_only = read_only
        self.interrupts = Interrupts()
        self.project = str(settings.get("project") or "")
        self.location = settings.get("location") or None
        self.timeout = float(settings.get("timeout") or 300)
        endpoint = settings.get("api_endpoint") or None
        self.where = endpoint or "bigquery.googleapis.com"
        keyfile = settings.get("keyfile") or None
        kwargs: dict[str, Any] = {"project": self.project or None, "location": self.location}
        try:
            if keyfile:
                from google.oauth2 import service_account

                kwargs["credentials"] = service_account.Credentials.from_service_account_file(str(keyfile))
            elif endpoint:
                # a local endpoint (the bqemulator stand-in) takes no credentials
                from google.auth.credentials import AnonymousCredentials

                kwargs["credentials"] = AnonymousCredentials()
            if endpoint:
                kwargs["client_options"] = {"api_endpoint": endpoint}
            self.client = bigquery.Client(**kwargs)
        except (*_ERRORS, ValueError) as error:  # type: ignore[misc]
            source = f"keyfile {keyfile}" if keyfile else "application-default credentials"
            raise AdapterError(
                f"cannot connect to BigQuery at {self.where} (project {self.project}) with {source}: "
                + redact(str(error), settings),
                hint="check project and keyfile in profiles.yml (empty keyfile: gcloud auth application-default login)",
            ) from None
        self.project = self.project or str(self.client.project)

    def fork(self, interrupts: Interrupts | None = None) -> BigQueryAdapter:
        clone = BigQueryAdapter(self.settings, read_only=self.read_only)
        clone.interrupts = interrupts or self.interrupts  # a running job finishes: stops before the next
        return clone

    def render(self, statement: exp.Expr) -> str:
        if isinstance(statement, (exp.Delete, exp.Update)) and not statement.args.get("where"):
            # BigQuery requires a WHERE clause on DELETE and UPDATE
            statement = statement.copy().where(exp.true())
        return statement.sql(dialect=self.dialect)

    def _error(self, error: BaseException) -> AdapterError:
        message = getattr(error, "message", None) or str(error)
        if isinstance(error, google_exceptions.RetryError):  # unreachable endpoint, retried until timeout
            message = f"cannot reach BigQuery at {self.where}: {message} (last error: {error.cause})"
        elif isinstance(error, OSError):
            message = f"cannot reach BigQuery at {self.where}: {message}"
        return AdapterError(redact(str(message), self.settings))

    def _query(self, sql: str) -> bigquery.QueryJob:
        self.interrupts.check()
        try:
            job = self.client.query(
                sql,
                location=self.location,
                retry=bigquery.DEFAULT_RETRY.with_timeout(self.timeout),
                job_retry=None,
            )
            job.result(timeout=self.timeout)
            return job
        except _ERRORS as error:
            raise self._error(error) from None

    def execute(self, statement: exp.Expr, sql: str | None = None) -> int | None:
        refuse_writes(self, "execute")
        job = self._query(self.render(statement) if sql is None else sql)
        if isinstance(statement, _DML):
            return job.num_dml_affected_rows
        return None

    def fetch(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        job = self._query(self.render(query))
        try:
            return [tuple(row.values()) for row in job.result()]
        except _ERRORS as error:
            raise self._error(error) from None

    def _table_id(self, table: TableRef) -> str:
        return f"{table.catalog or self.project}.{table.schema}.{table.name}"

    def columns(self, table: TableRef) -> dict[str, exp.DataType] | None:
        try:
            found = self.client.get_table(
                self._table_id(table), retry=bigquery.DEFAULT_RETRY.with_timeout(self.timeout)
            )
        except google_exceptions.NotFound:
            return None
        except _ERRORS as error:
            raise self._error(error) from None
        if not found.schema:
            return None
        return {field.name.lower(): _data_type(field) for field in found.schema}

    def columns_many(self, tables: Iterable[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
        # One tables.get call per table: the REST API has no batch form (INFORMATION_SCHEMA
        # would be a billed query job per dataset, slower than a few metadata calls).
        found: dict[TableRef, dict[str, exp.DataType]] = {}
        for table in dict.fromkeys(tables):
            columns = self.columns(table)
            if columns is not None:
                found[table] = columns
        return found

    def fingerprint(self, table: TableRef | exp.Query, columns: list[str] | None = None) -> str | None:
        if isinstance(table, TableRef) and self.columns(table) is None:
            return None
        count, xor, total = self.fetch(exp.select(*self.fingerprint_aggregates(columns)).from_(fingerprinted(table)))[0]
        return f"{count}:{xor}:{total}"

    def fingerprint_aggregates(self, columns: list[str] | None, alias: str = "t") -> list[exp.Expr]:
        # FARM_FINGERPRINT of the row's JSON text: XOR (order-independent) plus the sum of its
        # low 31 bits (so a duplicated row counts); both exact in INT64.
        hashed = _row_hash(columns, alias)
        return [
            exp.func("count", exp.Star()),
            exp.func("coalesce", exp.Anonymous(this="BIT_XOR", expressions=[hashed]), exp.Literal.number(0)),
            exp.func(
                "coalesce",
                exp.func("sum", exp.BitwiseAnd(this=hashed.copy(), expression=exp.Literal.number(_MAX31))),
                exp.Literal.number(0),
            ),
        ]

    def key_bucket(self, columns: list[str], alias: str, buckets: int) -> exp.Expr:
        # the hash is a signed INT64: its remainder lies in (-buckets, buckets)
        return exp.Abs(this=exp.Mod(this=_row_hash(columns, alias), expression=exp.Literal.number(buckets)))

    def dependent_views(self, table: TableRef) -> list[TableRef]:
        return []  # views bind their tables by name: replacing a table leaves them in place

    def ensure_schema(self, schema: str) -> None:
        refuse_writes(self, "ensure_schema")
        dataset = bigquery.Dataset(f"{self.project}.{schema}")
        if self.location:
            dataset.location = self.location
        try:
            self.client.create_dataset(dataset, exists_ok=True, retry=bigquery.DEFAULT_RETRY.with_timeout(self.timeout))
        except _ERRORS as error:
            raise self._error(error) from None

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """INSERT ... VALUES in batches: bqemulator rejects load_table_from_json (multipart
        upload with Content-Type '*/*'), and streaming inserts would sit in a buffer that DML
        cannot touch on the real service."""
        if not rows:
            return
        types = self.columns(table) or {}

        def literal(value: Any, column: str) -> exp.Expr:
            kind = types.get(column.lower())
            converted = exp.convert(str(value)) if type(value).__name__ == "Decimal" else exp.convert(value)
            return exp.cast(converted, kind.copy()) if kind is not None else converted

        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            values = exp.Values(
                expressions=[
                    exp.Tuple(expressions=[literal(v, c) for v, c in zip(row, columns, strict=True)]) for row in batch
                ]
            )
            self.execute(
                exp.insert(values, table.to_table(), columns=[exp.to_identifier(c, quoted=True) for c in columns])
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield  # no atomicity here: see the module docstring (capabilities.transactions is False)

    def close(self) -> None:
        self.client.close()

    def is_transient(self, error: BaseException) -> bool:
        cause = driver_error(error, _ERRORS)
        if cause is None:
            return False
        if isinstance(cause, _TRANSIENT):
            return True
        reasons = {str(e.get("reason")) for e in getattr(cause, "errors", None) or [] if isinstance(e, dict)}
        concurrent = "could not serialize access" in str(cause).lower()
        return concurrent or bool(reasons & set(_TRANSIENT_REASONS))

    def relieve_memory(self, error: BaseException) -> bool:
        return False  # the server's memory: nothing the client can lower

    def reconnect(self) -> None:
        pass  # each request is its own HTTP call: there is no connection to lose


def _data_type(field: bigquery.SchemaField) -> exp.DataType:
    kind = _TYPES.get(field.field_type.upper(), field.field_type.upper())
    if field.mode == "REPEATED":
        kind = f"ARRAY<{kind}>"
    try:
        return exp.DataType.build(kind, dialect="bigquery")
    except (ParseError, ValueError):
        return exp.DataType.build(kind, dialect="bigquery", udt=True)
