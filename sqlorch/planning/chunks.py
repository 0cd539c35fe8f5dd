"""Volume swings: a change larger than ``max_batch_rows`` is applied in chunks of keys.

The affected keys are numbered once, as their scratch table is created (``row_number()``,
a column of that table). Chunk ``i`` of ``n`` holds the keys whose number modulo ``n`` is
``i``: for any ``n`` the chunks partition the affected keys, so each key's rows are
recomputed, diffed, logged and replaced exactly once, and the memory one statement needs
is that of a chunk (the recomputation: a key's groups or window partitions; its diff).
Every statement between the keys and the bookkeeping is restricted to the chunk's keys
(each SELECT that reads the keys table) and runs once per chunk, with the scratch tables
of the chunk replacing the last chunk's; all chunks, the unique-key check and the
bookkeeping commit in one transaction, as the unchunked step does, so a crash or an
error in any chunk leaves nothing behind and a retry starts over from the first chunk.

How many chunks is decided when the step runs, from the rows its inputs really changed
(an upstream step of the same build may change more or fewer than the plan estimated):
``ceil(changed rows / max_batch_rows)``, and after an out-of-memory error four times as
many (``steps.Chunks``). The plan holds the statements with ``$chunk`` and ``$chunks`` left
open, as it leaves the rows a statement will write.

Chunked where the changed keys drive the work (``merge keys``, ``delete+insert keys``), on
a warehouse whose DDL is transactional and whose driver reports row counts (DuckDB,
Postgres): the chunks' scratch tables are created inside the step's transaction. Not
chunked: ``insert new rows``, ``map changed rows`` and ``add partial aggregates`` (their
statements read only the input's changed rows, once, in one streaming pass, one hash
aggregate or one hash join, which DuckDB spills to disk; no key partitions them), ``fold signed deltas`` (its state
table commits with the model in statements of its own), ``recompute all`` (one row), a
full rebuild (one ``CREATE TABLE AS``, streamed), a model with audits (they check the
rows about to be published as a whole), and Snowflake and BigQuery (DDL outside the
transaction; the warehouse sizes its own memory).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlglot import exp

from sqlorch.planning.steps import CHUNK, CHUNKS, Choice, Chunks, InputChange, Item, Statement, placeholder
from sqlorch.refs import TableRef

CHUNK_COLUMN = "_sqlorch_chunk"  # the affected key's number, in the keys table
BYTES_PER_ROW = 4096  # the default budget: one changed row per 4 KiB of the machine's memory
LEAST_BATCH_ROWS = 100_000  # ... and never fewer rows than this


# where a container's memory limit is (cgroup v2, v1): a pod's limit, not the node's memory
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def default_max_batch_rows() -> int:
    """``max_batch_rows`` when ``sqlorch.yml`` does not set it: the memory sqlorch may use
    / 4 KiB (24 GB: about 6 million rows), at least 100,000. That memory is the machine's
    physical memory, or the container's limit where it is lower (a Kubernetes pod); never
    the memory available at the moment: ``plan`` and ``build`` must plan the same chunks.
    A changed row costs a step far less than 4 KiB on its own, but it brings its key's
    other rows (a user's window partition) into the recomputation and its diff; set the
    budget lower where keys fan out to many rows."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return LEAST_BATCH_ROWS
    for path in CGROUP_LIMITS:
        try:
            limit = path.read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # "max": no limit
            memory = min(memory, int(limit))
    return max(LEAST_BATCH_ROWS, memory // BYTES_PER_ROW)


def chunk_budget(
    max_batch_rows: int | None,
    changes: dict[TableRef, InputChange],
    transactional_ddl: bool,
    row_counts: bool,
    audited: bool,
) -> int | None:
    """The rows per chunk when the step's change, as the plan estimates it, exceeds the
    budget and the warehouse can run the chunks in one transaction; None: not chunked."""
    changed = sum(change.rows for change in changes.values())
    if max_batch_rows is None or changed <= max_batch_rows or audited:
        return None
    return max_batch_rows if transactional_ddl and row_counts else None


def numbered_keys(affected: exp.Query) -> exp.Select:
    """The affected keys, each with its number (``CHUNK_COLUMN``); they are distinct, so a
    key has one number."""
    number = exp.Window(this=exp.RowNumber())
    return exp.select(exp.Star(), exp.alias_(number, CHUNK_COLUMN, quoted=True)).from_(affected.subquery("a"))


def chunk_statements(
    statements: list[Item], keys: TableRef, changes: dict[TableRef, InputChange], rows_per_chunk: int
) -> Chunks:
    """``statements`` restricted to one chunk of the keys, to run once per chunk."""
    out: list[Statement] = []
    for item in statements:
        assert isinstance(item, Statement) and item.sql is not None, item
        out.append(
            Statement(
                in_chunk(item.sql, keys), item.purpose, item.kind, True, item.binds, item.value, item.always, item.audit
            )
        )
    inputs = tuple((str(ref), change.after, change.upto) for ref, change in sorted(changes.items()))
    return Chunks(out, inputs, rows_per_chunk)


def in_chunk(statement: exp.Expr, keys: TableRef) -> exp.Expr:
    """``statement`` with each SELECT that reads the keys table restricted to the keys of
    chunk ``$chunk`` of ``$chunks``. The keys are read only in FROM clauses (the MERGE's
    source, the ``EXISTS`` of ``restrict_to_keys.key_match``); a read elsewhere would escape
    the chunk, so it is refused."""
    statement = statement.copy()
    wanted = keys.to_table().sql()
    reads = [t for t in statement.find_all(exp.Table) if _unaliased(t) == wanted]
    restricted = 0
    for select in list(statement.find_all(exp.Select)):
        source = select.args.get("from_")
        table = source.this if isinstance(source, exp.From) else None
        if isinstance(table, exp.Table) and _unaliased(table) == wanted:
            column = exp.column(CHUNK_COLUMN, table=table.alias_or_name, quoted=True)
            modulo = exp.Mod(this=column, expression=placeholder(CHUNKS))
            select.where(exp.EQ(this=modulo, expression=placeholder(CHUNK)), copy=False)
            restricted += 1
    assert restricted == len(reads), f"the keys table is read outside a FROM clause: {statement.sql()}"
    return statement


def planned_chunks(items: list[Item]) -> Chunks | None:
    """The step's chunks of keys, in its statements or in a branch of its choice."""
    for item in items:
        if isinstance(item, Chunks):
            return item
        if isinstance(item, Choice):
            for branch in item.branches:
                found = planned_chunks(branch.statements)
                if found is not None:
                    return found
    return None


def _unaliased(table: exp.Table) -> str:
    bare = table.copy()
    bare.set("alias", None)
    return bare.sql()
