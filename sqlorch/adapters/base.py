"""The one interface every warehouse adapter implements.

Adapters take sqlglot expressions and ``TableRef``s, render them in their own dialect,
and turn every driver exception into ``AdapterError``. They make no planning decisions:
the planner reads ``Capabilities`` and decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from sqlglot import exp

from sqlorch.errors import AdapterError
from sqlorch.refs import TableRef


@dataclass(frozen=True)
class Capabilities:
    """What the renderer and planner may rely on for one warehouse."""

    transactions: bool = True  # multi-statement transactions
    merge_in_transaction: bool = True  # a MERGE may run inside BEGIN ... COMMIT
    create_or_replace: bool = True  # CREATE OR REPLACE TABLE ... AS
    except_all: bool = False  # EXCEPT ALL (multiset difference), to diff a rebuilt table
    transactional_ddl: bool = True  # CREATE/DROP TABLE may run inside a transaction and roll back
    read_own_writes: bool = True  # a fetch inside transaction() sees the transaction's earlier writes
    views_bind_early: bool = False  # views hold their tables by identity: replacing a table needs CASCADE
    # CREATE TEMPORARY TABLE, unqualified, seen by this connection only and gone with it: a
    # model's scratch tables then cost no catalog or log write, and need no DROP
    temp_tables: bool = False
    row_counts: bool = False  # execute() returns the rows an INSERT/DELETE/MERGE wrote, inside a transaction too
    # COUNT(*) of a whole table is answered from metadata, not by a scan: a capture may then
    # ask a source's row count before deciding whether to fingerprint it
    free_row_count: bool = False


SECRET_SETTINGS = ("password", "private_key_file_pwd", "private_key_passphrase", "token", "passcode", "private_key")


def redact(message: str, settings: dict[str, Any]) -> str:
    """A driver's message with every secret from ``settings`` replaced by ``***``."""
    for key in SECRET_SETTINGS:
        value = settings.get(key)
        if isinstance(value, str) and value:
            message = message.replace(value, "***")
    return message.strip()


class Interrupts:
    """Shared by an adapter and its forks (one build): ``interrupt()`` cancels the statement
    running on each connection where the driver can, and every later statement fails at
    once, so a build stopped between two statements goes no further."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._cancels: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def register(self, cancel: Callable[[], None]) -> None:
        with self._lock:
            self._cancels.append(cancel)
        if self.event.is_set():
            cancel()

    def interrupt(self) -> None:
        self.event.set()
        with self._lock:
            cancels = list(self._cancels)
        for cancel in cancels:
            try:
                cancel()
            except Exception:  # noqa: BLE001 - a connection already closed has nothing to cancel
                pass

    def check(self) -> None:
        if self.event.is_set():
            raise AdapterError("interrupted")


class Adapter(Protocol):
    dialect: ClassVar[str]  # sqlglot dialect name
    capabilities: ClassVar[Capabilities]
    # How each ``:``-separated part of a ``fingerprint`` combines over disjoint sets of rows:
    # "sum" (the row count, hash sums) or "xor". A fingerprint then moves with a change
    # (``fingerprint_moved``) without reading the rows the change left alone.
    fingerprint_parts: ClassVar[tuple[str, ...]]

    def execute(self, statement: exp.Expr, sql: str | None = None) -> int | None:
        """Run one statement; return the affected row count where the driver knows it.
        ``sql``: the statement as ``render`` renders it, when rendered already
        (``execution/prefetch.py`` renders ahead of the run)."""
        ...

    def render(self, statement: exp.Expr) -> str:
        """The statement's text in the warehouse's dialect, as ``execute`` runs it."""
        ...

    def fetch(self, query: exp.Expr) -> list[tuple[Any, ...]]: ...

    def columns(self, table: TableRef) -> dict[str, exp.DataType] | None:
        """Column names (lower case) and types of a relation, or None if it does not exist."""
        ...

    def columns_many(self, tables: Iterable[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
        """``columns`` of many relations in one catalog query where the warehouse has one
        (a build reads its metadata once); relations that do not exist are left out."""
        ...

    def fingerprint(self, table: TableRef | exp.Query, columns: list[str] | None = None) -> str | None:
        """An order-independent fingerprint (row count + hash aggregate), None if absent.
        ``table`` may be a query (with ``columns``): ``plan`` fingerprints a table as a
        capture would leave it, without writing it."""
        ...

    def fingerprint_aggregates(self, columns: list[str], alias: str = "t") -> list[exp.Expr]:
        """The aggregates ``fingerprint`` computes over rows aliased ``alias`` (row count first):
        grouped by bucket they give each bucket's fingerprint (``execution/buckets.py``)."""
        ...

    def key_bucket(self, columns: list[str], alias: str, buckets: int) -> exp.Expr:
        """A bucket number from 0 to ``buckets`` - 1 for each row, from a hash of ``columns``
        (equal values, NULLs included, share a bucket)."""
        ...

    def dependent_views(self, table: TableRef) -> list[TableRef]:
        """Views that a ``DROP ... CASCADE`` of ``table`` would drop, transitively: only
        where views bind their tables early (``views_bind_early``); empty elsewhere."""
        ...

    def ensure_schema(self, schema: str) -> None: ...

    def insert_rows(self, table: TableRef, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Bulk-insert literal rows (seeds, state records) the fastest way the driver has."""
        ...

    def transaction(self) -> AbstractContextManager[None]: ...

    interrupts: Interrupts

    read_only: bool  # opened by ``connect(..., read_only=True)``: see ``refuse_writes``

    def fork(self, interrupts: Interrupts | None = None) -> Adapter:
        """An adapter for another worker thread (its own connection or cursor), stopped with
        this one, or by ``interrupts`` alone when given (the lease: released after a stop)."""
        ...

    def close(self) -> None: ...

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` (an ``AdapterError`` this adapter raised) came from a failure that
        may pass if the work is tried again: a dropped connection, a server error (5xx), a lock
        timeout, a serialization failure or deadlock. Classification only: whether and when to
        retry is ``execution/retry.py``'s decision."""
        ...

    def reconnect(self) -> None:
        """Replace a connection that died (in place: the adapter keeps its interrupts);
        a no-op when the connection is alive or the driver has none to lose."""
        ...

    def relieve_memory(self, error: BaseException) -> bool:
        """When ``error`` is the warehouse running out of memory and the adapter can make the
        next try need less (DuckDB: one thread, no insertion order kept), do so and return
        True; False otherwise (a warehouse's own memory is not the client's to manage)."""
        ...


def driver_error(
    error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The driver's exception behind an ``AdapterError``: adapters raise theirs ``from None``
    inside the ``except`` that caught it, which keeps the driver's as ``__context__``."""
    seen: BaseException | None = error
    for _ in range(8):  # a chain of wrappers is short; a cycle must not loop for ever
        if seen is None:
            return None
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refuse_writes(adapter: Adapter, what: str) -> None:
    """Fail a write on a connection opened read-only (``plan``): a second guard behind the
    plan path's own care, and on DuckDB and Postgres the database itself refuses too."""
    if adapter.read_only:
        raise AdapterError(f"internal error: {what} on a read-only connection (plan never writes)")


def moved_parts(
    whole: Sequence[int], removed: Sequence[int], added: Sequence[int], parts: tuple[str, ...]
) -> tuple[int, ...]:
    """The parts of a fingerprint of a multiset of rows once the rows fingerprinted
    ``removed`` (a sub-multiset of it) left and those fingerprinted ``added`` joined: sums
    subtract and add, XORs cancel. Exact: every part is an integer aggregate."""
    return tuple(
        (whole_part ^ out ^ into) if kind == "xor" else (whole_part - out + into)
        for kind, whole_part, out, into in zip(parts, whole, removed, added, strict=True)
    )


def fingerprint_moved(fingerprint: str, removed: str, added: str, parts: tuple[str, ...]) -> str:
    """``moved_parts`` of fingerprints in their text form (``count:...``)."""
    whole, out, into = ([int(part) for part in text.split(":")] for text in (fingerprint, removed, added))
    moved = moved_parts(whole, out, into, parts)
    return ":".join(str(part) for part in moved)


def fingerprinted(table: TableRef | exp.Query) -> exp.Expr:
    """What a fingerprint reads, as ``t``: the table, or the query's rows."""
    return table.to_table(alias="t") if isinstance(table, TableRef) else table.copy().subquery("t")


def create_schema_statement(schema: str) -> exp.Create:
    return exp.Create(this=exp.Table(this=exp.to_identifier(schema, quoted=True)), kind="SCHEMA", exists=True)


def parameterized_insert(
    render: Callable[[exp.Expr], str], table: TableRef, columns: list[str], placeholder: str, rows: int = 1
) -> str:
    """``INSERT INTO t (cols) VALUES (?, ...)`` (``rows`` tuples) for a driver's parameters:
    identifiers are rendered by the adapter through sqlglot, values only ever travel as
    parameters."""
    names = ", ".join(render(exp.to_identifier(c, quoted=True)) for c in columns)
    row = f"({', '.join(placeholder for _ in columns)})"
    return f"INSERT INTO {render(table.to_table())} ({names}) VALUES {', '.join(row for _ in range(rows))}"
