"""State records and the statements that read and write them.

Tables (all in ``_sqlorch``):

- ``relations``: per model/seed/source its fingerprint (compiled SQL; a seed's or an
  undeclared source's content; for a keyed source, its shadow's content), output columns
  and key (JSON), and for sources the capture cursor; for a keyed source, the number of
  buckets of its bucket fingerprints (NULL: none that describe its shadow); for a model,
  its inputs' column types when it last ran (JSON: a type changed under it rebuilds it).
- ``batches``: every change set a relation produced: ``kind`` is ``append`` (only new
  rows in its change log), ``delta`` (old and new images) or ``full`` (consumers rebuild).
- ``watermarks``: per consumer and input, the last batch consumed.
- ``runs``: one row per model per build.
- ``chg__<schema>__<name>``: a relation's change log: its columns plus ``_sqlorch_batch``
  and ``_sqlorch_old`` (old image true, new image false).
- ``shadow__<schema>__<name>``: a keyed source's last captured rows.
- ``buckets__<schema>__<name>``: a keyed source's shadow, fingerprinted per bucket of keys
  (``execution/buckets.py``).
- ``edge__<schema>__<name>``: an append-only source's rows captured at its cursor's
  maximum, to tell a later row with the same cursor value (a tie) from one taken already.

Writes are returned as statements so the executor can commit them in the same
transaction as the data they describe. Reads are batched: the whole state is one query.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.refs import TableRef
from sqlorch.state.history import HISTORY_COLUMNS, RunCost, read_run_cost

STATE_SCHEMA = "_sqlorch"
BATCH_COLUMN = "_sqlorch_batch"
OLD_COLUMN = "_sqlorch_old"

_TABLES: dict[str, dict[str, str]] = {
    "relations": {
        "relation": "TEXT",
        "fingerprint": "TEXT",
        "columns": "TEXT",
        "key": "TEXT",
        "cursor_hi": "TEXT",
        "buckets": "BIGINT",
        "inputs": "TEXT",
    },
    # a model run's cost and table statistics too (``state/history.py``)
    "batches": {"relation": "TEXT", "batch": "BIGINT", "kind": "TEXT", "rows": "BIGINT", **HISTORY_COLUMNS},
    "watermarks": {"consumer": "TEXT", "input": "TEXT", "batch": "BIGINT"},
    # the model batch each aggregate state (``aggregate_state``) is up to date with
    "aggregate_states": {"relation": "TEXT", "batch": "BIGINT"},
    "runs": {
        "run_id": "TEXT",
        "model": "TEXT",
        "status": "TEXT",
        "action": "TEXT",
        "reason": "TEXT",
        "rows": "BIGINT",
        "seconds": "DOUBLE",
    },
}


def state_table(name: str) -> TableRef:
    return TableRef(schema=STATE_SCHEMA, name=name)


def _relation_slug(ref: TableRef) -> str:
    return "__".join(part for part in (ref.catalog, ref.schema, ref.name) if part)


def change_log(ref: TableRef) -> TableRef:
    return state_table(f"chg__{_relation_slug(ref)}")


def aggregate_state(ref: TableRef) -> TableRef:
    """Per group of a model maintained from signed deltas, its row count and partial
    aggregates (``planning/rewrites/signed_aggregates.py``)."""
    return state_table(f"agg__{_relation_slug(ref)}")


def distinct_state(ref: TableRef, index: int) -> TableRef:
    """Per group and value of a DISTINCT aggregate's argument (the ``index``-th value set of
    the model), the rows holding it (``planning/rewrites/signed_distinct.py``)."""
    return state_table(f"dst{index}__{_relation_slug(ref)}")


def kept_state(ref: TableRef, index: int) -> TableRef:
    """Per group of the ``index``-th aggregated derived table a model keeps as state, its row
    count and partial aggregates (``planning/rewrites/kept_aggregates.py``)."""
    return state_table(f"agg{index}__{_relation_slug(ref)}")


def kept_states_record(ref: TableRef) -> str:
    """The name under which ``aggregate_states`` records the batch a model's kept derived
    tables (``kept_state``) match: apart from its own group state's, which another strategy
    keeps (a model may take either, step by step)."""
    return f"{ref} derived"


def tail_state(ref: TableRef) -> TableRef:
    """Per window partition of a model extended at its partitions' ends, its last row's input
    columns and running window values (``planning/rewrites/window_tails.py``)."""
    return state_table(f"tails__{_relation_slug(ref)}")


def tails_record(ref: TableRef) -> str:
    """The name under which ``aggregate_states`` records the batch a model's window tails
    (``tail_state``) match."""
    return f"{ref} tails"


def work_table(ref: TableRef, part: str, temporary: bool = False) -> TableRef:
    """A scratch table of one model's run (``keys``, ``rows``, ``old``, ``gone``, ``added``).
    ``temporary``: a connection's own temporary table (``capabilities.temp_tables``), named
    by its part only, since one connection runs one model at a time."""
    if temporary:
        return TableRef(schema="", name=f"sqlorch_tmp_{part}")
    return state_table(f"tmp_{part}__{_relation_slug(ref)}")


def shadow_table(ref: TableRef) -> TableRef:
    return state_table(f"shadow__{_relation_slug(ref)}")


def edge_table(ref: TableRef) -> TableRef:
    return state_table(f"edge__{_relation_slug(ref)}")


def bucket_table(ref: TableRef) -> TableRef:
    return state_table(f"buckets__{_relation_slug(ref)}")


@dataclass(frozen=True)
class RelationState:
    fingerprint: str | None
    columns: dict[str, str] | None
    key: list[str] | None
    cursor_hi: str | None
    buckets: int | None = None  # a keyed source's buckets (``execution/buckets.py``); None: not kept
    # a model's inputs' column types when it last ran (``planner.input_types_changed``); None: not kept
    inputs: dict[str, dict[str, str]] | None = None


@dataclass
class StateSnapshot:
    """Everything the planner needs from state, loaded with a handful of queries."""

    relations: dict[str, RelationState] = field(default_factory=dict)
    latest_batch: dict[str, int] = field(default_factory=dict)
    full_batches: dict[str, list[int]] = field(default_factory=dict)
    delta_rows: dict[str, dict[int, int]] = field(default_factory=dict)
    append_batches: dict[str, set[int]] = field(default_factory=dict)  # batches holding only new rows
    watermarks: dict[tuple[str, str], int] = field(default_factory=dict)
    aggregate_states: dict[str, int] = field(default_factory=dict)  # model -> batch its group state matches
    runs: dict[str, list[tuple[int, RunCost]]] = field(default_factory=dict)  # per model: (batch, its run's cost)

    def pending(self, consumer: str, input_name: str) -> tuple[int, int] | None:
        """The batch range ``(after, upto]`` the consumer has not read yet, if any."""
        after = self.watermarks.get((consumer, input_name), 0)
        upto = self.latest_batch.get(input_name, 0)
        return (after, upto) if upto > after else None

    def has_full_batch(self, input_name: str, after: int, upto: int) -> bool:
        return any(after < batch <= upto for batch in self.full_batches.get(input_name, []))

    def only_appends(self, input_name: str, after: int, upto: int) -> bool:
        appended = self.append_batches.get(input_name, set())
        return all(batch in appended for batch in range(after + 1, upto + 1) if self._exists(input_name, batch))

    def _exists(self, input_name: str, batch: int) -> bool:
        return batch in self.delta_rows.get(input_name, {}) or batch in self.full_batches.get(input_name, [])

    def record_batch(self, name: str, batch: int, kind: str, rows: int) -> None:
        self.latest_batch[name] = max(batch, self.latest_batch.get(name, 0))
        if kind == "full":
            self.full_batches.setdefault(name, []).append(batch)
        else:
            self.delta_rows.setdefault(name, {})[batch] = rows
            if kind == "append":
                self.append_batches.setdefault(name, set()).add(batch)

    def forget_batch(self, name: str, batch: int, latest: int | None) -> None:
        """Undo ``record_batch`` (the transaction that wrote the batch rolled back); ``latest``:
        the relation's latest batch before it (None: none)."""
        if latest is None:
            self.latest_batch.pop(name, None)
        else:
            self.latest_batch[name] = latest
        if batch in self.full_batches.get(name, []):
            self.full_batches[name].remove(batch)
        self.delta_rows.get(name, {}).pop(batch, None)
        self.append_batches.get(name, set()).discard(batch)

    def pending_rows(self, input_name: str, after: int, upto: int) -> int:
        return sum(rows for batch, rows in self.delta_rows.get(input_name, {}).items() if after < batch <= upto)


def _create(name: str, columns: dict[str, str]) -> exp.Create:
    schema = exp.Schema(
        this=state_table(name).to_table(),
        expressions=[
            exp.ColumnDef(this=exp.to_identifier(col, quoted=True), kind=exp.DataType.build(kind))
            for col, kind in columns.items()
        ],
    )
    return exp.Create(this=schema, kind="TABLE", exists=True)


STATE_TABLES = [state_table(name) for name in _TABLES]


def ensure_state(adapter: Adapter, existing: Mapping[TableRef, Collection[str]] | Collection[TableRef] = ()) -> None:
    """Create the state schema and tables, unless ``existing`` (tables known to exist, with
    their columns when it is a mapping) has them all already; add the columns a state
    table of an earlier version lacks."""
    if all(table in existing for table in STATE_TABLES):
        if isinstance(existing, Mapping):
            for name, columns in _TABLES.items():
                have = {column.lower() for column in existing[state_table(name)]}
                for column, kind in columns.items():
                    if column not in have:
                        adapter.execute(_add_column(name, column, kind))
        return
    adapter.ensure_schema(STATE_SCHEMA)
    for name, columns in _TABLES.items():
        adapter.execute(_create(name, columns))


def _add_column(name: str, column: str, kind: str) -> exp.Alter:
    definition = exp.ColumnDef(this=exp.to_identifier(column, quoted=True), kind=exp.DataType.build(kind))
    return exp.Alter(this=state_table(name).to_table(), kind="TABLE", actions=[definition])


def _text(value: exp.Expr | None) -> exp.Expr:
    return exp.cast(value if value is not None else exp.null(), exp.DataType.build("TEXT"))


_WIDTH = max(len(columns) for columns in _TABLES.values())


def _tagged(tag: str, name: str, columns: list[str], have: Collection[str] | None = None) -> exp.Select:
    """One state table's rows as ``(tag, text columns)``, to read all tables in one query;
    a column not in ``have`` (a table of an earlier version, read by ``plan``) reads NULL."""
    values = [_text(exp.column(c, quoted=True) if have is None or c in have else None) for c in columns]
    values += [_text(None)] * (_WIDTH - len(values))
    return exp.select(exp.Literal.string(tag), *values).from_(state_table(name).to_table())


def _columns_of(existing: Collection[TableRef] | None, name: str) -> Collection[str] | None:
    if not isinstance(existing, Mapping) or state_table(name) not in existing:
        return None
    return {column.lower() for column in existing[state_table(name)]}


def load_snapshot(adapter: Adapter, existing: Collection[TableRef] | None = None) -> StateSnapshot:
    """The state (see ``ensure_state``) in one query: relations, batches and watermarks.
    With ``existing`` (the tables known to exist), a state table missing from it reads as
    empty instead of being created: how ``plan`` reads a warehouse never built."""
    parts = [
        _tagged(tag, name, list(_TABLES[name]), _columns_of(existing, name))
        for tag, name in (("r", "relations"), ("b", "batches"), ("w", "watermarks"), ("a", "aggregate_states"))
        if existing is None or state_table(name) in existing
    ]
    snapshot = StateSnapshot()
    if not parts:
        return snapshot
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False)
    for tag, *row in adapter.fetch(query):
        if tag == "r":
            relation, fingerprint, columns, key, cursor_hi, buckets, inputs = row[:7]
            snapshot.relations[relation] = RelationState(
                fingerprint=fingerprint,
                columns=json.loads(columns) if columns else None,
                key=json.loads(key) if key else None,
                cursor_hi=cursor_hi,
                buckets=int(buckets) if buckets else None,
                inputs=json.loads(inputs) if inputs else None,
            )
        elif tag == "b":
            relation, batch, kind, rows = row[:4]
            snapshot.record_batch(relation, int(batch), kind, int(rows or 0))
            cost = read_run_cost(dict(zip(HISTORY_COLUMNS, row[4:], strict=False)))
            if cost is not None:
                snapshot.runs.setdefault(relation, []).append((int(batch), cost))
        elif tag == "a":
            relation, batch = row[:2]
            snapshot.aggregate_states[relation] = int(batch)
        else:
            consumer, input_name, batch = row[:3]
            snapshot.watermarks[(consumer, input_name)] = int(batch)
    return snapshot


def _eq(column: str, value: Any) -> exp.Expr:
    return exp.EQ(this=exp.column(column, quoted=True), expression=exp.convert(value))


def _values_insert(name: str, row: dict[str, Any], *more: dict[str, Any]) -> exp.Insert:
    """One INSERT of ``row`` and ``more`` rows of the same columns (their expressions built
    for it: not copied)."""
    columns = list(row)
    return exp.insert(
        exp.values([tuple(r[c] for c in columns) for r in (row, *more)]),
        state_table(name).to_table(),
        columns=[exp.to_identifier(c, quoted=True) for c in columns],
        copy=False,
    )


def save_relation_statements(relation: str, state: RelationState) -> list[exp.Expr]:
    row = {
        "relation": relation,
        "fingerprint": state.fingerprint,
        "columns": json.dumps(state.columns) if state.columns is not None else None,
        "key": json.dumps(state.key) if state.key is not None else None,
        "cursor_hi": state.cursor_hi,
        "buckets": state.buckets,
        "inputs": json.dumps(state.inputs) if state.inputs is not None else None,
    }
    return [
        exp.delete(state_table("relations").to_table(), where=_eq("relation", relation)),
        _values_insert("relations", row),
    ]


def add_batch_statement(
    relation: str,
    batch: int,
    kind: str | exp.Expr,
    rows: int | exp.Expr,
    cost: dict[str, Any] | None = None,
) -> exp.Expr:
    """``kind`` and ``rows`` may be placeholders a plan's executor binds (``planning/steps.py``);
    ``cost``: a model run's cost and statistics (``state/history.py``), in the same row."""
    row: dict[str, Any] = {"relation": relation, "batch": batch, "kind": kind, "rows": rows}
    return _values_insert("batches", {**row, **cost} if cost is not None else row)


def save_watermark_statements(consumer: str, batches: dict[str, int]) -> list[exp.Expr]:
    statements: list[exp.Expr] = [exp.delete(state_table("watermarks").to_table(), where=_eq("consumer", consumer))]
    rows = [{"consumer": consumer, "input": name, "batch": batch} for name, batch in sorted(batches.items())]
    if rows:
        statements.append(_values_insert("watermarks", *rows))
    return statements


def update_watermarks_statement(consumer: str, batches: dict[str, int]) -> exp.Update:
    """Move the consumer's watermarks, one row per input already stored, in one statement:
    for a consumer whose inputs did not change since its last run (half the statements of
    ``save_watermark_statements``, which a build runs once per model)."""
    value = exp.Case(this=exp.column("input", quoted=True))
    for name, batch in sorted(batches.items()):
        value = value.when(exp.Literal.string(name), exp.Literal.number(batch))
    return exp.Update(
        this=state_table("watermarks").to_table(),
        expressions=[exp.EQ(this=exp.column("batch", quoted=True), expression=value)],
        where=exp.Where(
            this=exp.and_(
                _eq("consumer", consumer),
                exp.column("input", quoted=True).isin(*[exp.Literal.string(n) for n in sorted(batches)]),
            )
        ),
    )


BATCH_COLUMNS = list(_TABLES["batches"])


def group_watermark_statements(watermarks: dict[str, dict[str, int]]) -> list[exp.Expr]:
    """Every consumer's watermarks in two statements, whatever the number of consumers: a
    transaction group's (``planning/transaction_groups.py``), instead of one or two a model."""
    consumers = sorted(watermarks)
    table = state_table("watermarks").to_table()
    statements: list[exp.Expr] = [
        exp.delete(table, where=exp.column("consumer", quoted=True).isin(*map(exp.Literal.string, consumers)))
    ]
    rows = [
        {"consumer": consumer, "input": name, "batch": batch}
        for consumer in consumers
        for name, batch in sorted(watermarks[consumer].items())
    ]
    if rows:
        statements.append(_values_insert("watermarks", *rows))
    return statements


def group_batches_statement(rows: exp.Placeholder) -> exp.Insert:
    """One INSERT of a transaction group's batches, every column of ``batches``: the rows
    (``rows``) are those its steps bound while running (``planning/steps.bind_rows``)."""
    return exp.insert(
        exp.Values(expressions=[rows]),
        state_table("batches").to_table(),
        columns=[exp.to_identifier(c, quoted=True) for c in BATCH_COLUMNS],
        copy=False,
    )


RUNS = state_table("runs")
RUN_COLUMNS = list(_TABLES["runs"])  # run_id, model, status, action, reason, rows, seconds


# A change log's consumed batches are deleted at once when they hold many rows, else only
# when the relation's consumed batch passes a multiple of PRUNE_EVERY: a DELETE per change
# log per build was a fifth of the statements of a build that moves one row through 1,000
# models. So a log keeps fewer than PRUNE_EVERY batches of fewer than PRUNE_ROWS rows each
# that nobody reads any more (readers take only the batches past their own watermark). The
# multiple is offset per relation, so the deferred deletes spread over builds.
PRUNE_EVERY = 8
PRUNE_ROWS = 1_000


def consumed_batch(name: str, consumers: list[str], watermarks: Mapping[tuple[str, str], int], latest: int) -> int:
    """The last batch of ``name`` every consumer has read (its latest when nothing reads it)."""
    return min((watermarks.get((consumer, name), 0) for consumer in consumers), default=latest)


def prune_due(name: str, before: int, now: int, snapshot: StateSnapshot) -> bool:
    """Whether a build that moved ``name``'s consumed batch from ``before`` to ``now`` prunes
    its change log (see ``PRUNE_EVERY``)."""
    if now <= before:
        return False
    if snapshot.pending_rows(name, before, now) >= PRUNE_ROWS:
        return True
    offset = zlib.crc32(name.encode()) % PRUNE_EVERY
    return (now + offset) // PRUNE_EVERY > (before + offset) // PRUNE_EVERY


def prune_change_log_statement(relation: TableRef, consumed: int) -> exp.Expr:
    """Delete the batches every consumer has read (``consumed_batch``)."""
    return exp.delete(
        change_log(relation).to_table(),
        where=exp.LTE(this=exp.column(BATCH_COLUMN, quoted=True), expression=exp.Literal.number(consumed)),
    )
