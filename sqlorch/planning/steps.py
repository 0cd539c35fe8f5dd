"""The plan as data: one typed step per selected node, printable and testable offline.

A model's step holds the exact statements ``build`` runs for it, in order, bookkeeping
included, as sqlglot expressions rendered for the target at the edge. Two kinds of value
are only known while the build runs, and stay visible as placeholders (``$rows`` in
DuckDB's rendering, ``%(rows)s`` in Postgres'): the rows a statement wrote (``binds``
names them) and what the bookkeeping records from them (``rows``, ``kind``). Batch
numbers and watermark ranges are computed at plan time: a step that runs records exactly
one batch, so every consumer's range is known before the build starts.

Where a step's choice depends on what an upstream step produces in the same build (how
many rows it changed, whether it wrote a whole new table), the step holds a ``Choice``:
ordered branches, each with the rule that selects it and its own statements. The
executor takes the first branch whose rules all hold, and ``run_results.json`` records
which (``branch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from sqlglot import exp

from sqlorch.refs import TableRef

# The incremental strategies' names, as plans and run results say them (``rewrites/strategies.py``).
INSERT_ONLY = "insert new rows"
MAP_CHANGES = "map changed rows"
PARTIAL_AGGREGATES = "add partial aggregates"
SIGNED_DELTAS = "fold signed deltas"
KEPT_GROUPS = "recompute from kept groups"
WINDOW_TAILS = "extend windows at partition ends"
RECOMPUTE_ALL = "recompute all"
MERGE_KEYS = "merge keys"
DELETE_INSERT_KEYS = "delete+insert keys"

# Values bound by the executor while it runs a step (see ``Statement.binds``).
ROWS = "rows"  # the batch's row count, in the bookkeeping
KIND = "kind"  # the batch's kind ("full" | "delta" | "append"), in the bookkeeping
OLD_ROWS = "old_rows"  # old images written to the change log
NEW_ROWS = "new_rows"  # new images written to the change log
WRITTEN = "written"  # rows written to the model's table (``ModelResult.rows``)
MICROSECONDS = "microseconds"  # the step's time so far, bound before each statement (its recorded cost)
CHUNK = "chunk"  # the chunk of the affected keys a statement works on (``Chunks``), from 0
CHUNKS = "chunks"  # how many chunks the affected keys are cut into (``Chunks``)


def placeholder(name: str) -> exp.Placeholder:
    return exp.Placeholder(this=name)


def batch_record(bound: dict[str, int | str]) -> tuple[str, int, int]:
    """(kind, rows, written) of a step's batch, from the values its statements bound: the
    kind a branch set, else ``delta`` when old images were logged and ``append`` when not;
    the rows counted for the batch, else the images logged, else the rows written; the rows
    written to the table, else the batch's rows (an incremental step writes what it logs)."""
    logged = OLD_ROWS in bound or NEW_ROWS in bound
    old = int(bound.get(OLD_ROWS, 0))
    if ROWS in bound:
        rows = int(bound[ROWS])
    elif logged:
        rows = old + int(bound.get(NEW_ROWS, 0))
    else:
        rows = int(bound.get(WRITTEN, 0))
    kind = str(bound[KIND]) if KIND in bound else ("delta" if old else "append")
    return kind, rows, int(bound.get(WRITTEN, rows))


def bind(statement: exp.Expr, bound: dict[str, int | str]) -> exp.Expr:
    """``statement`` (which holds placeholders: ``Statement.placeholders``) with each
    placeholder replaced by the value bound to its name."""
    kind, rows, _ = batch_record(bound)
    values = {**bound, KIND: kind, ROWS: rows}
    return statement.transform(
        lambda node: exp.convert(values[node.name]) if isinstance(node, exp.Placeholder) else node
    )


@dataclass(frozen=True)
class InputChange:
    """What a consumer has not yet read from one input."""

    after: int
    upto: int
    rows: int
    full: bool  # a batch in the range is "everything changed"
    appends_only: bool = False  # every batch in the range holds only new rows


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    strategy: str = ""


@dataclass(frozen=True)
class AuditPoint:
    """Where the model's audits run on the rows about to be published (write, audit,
    publish): ``table`` holds them, ``rest`` the stored rows the step keeps."""

    table: TableRef
    columns: list[str]
    rest: exp.Select | None
    message: str  # what a failure left behind, for the error


@dataclass(frozen=True)
class Statement:
    """One statement of a step.

    ``kind``: ``execute`` (its row count is kept under ``binds`` when named), ``count``
    (a ``SELECT count(*)`` whose answer is kept under ``binds``), ``unique`` (a query for
    a duplicate of the declared unique key: a row fails the model), ``audit`` (the
    model's audits, at ``audit``), ``let`` (binds ``value`` under ``binds``: what a
    branch records). Consecutive statements with ``transaction`` run in one transaction;
    ``always`` ones run even after a failure (dropping scratch tables). ``grouped``: in a
    transaction group, bookkeeping the group's own statements do for all its steps
    (``transaction_groups.py``): ``row`` (bound, its row joins the group's batch insert)
    or ``covered`` (the group's watermark statements write the same)."""

    sql: exp.Expr | None
    purpose: str
    kind: str = "execute"
    transaction: bool = False
    binds: str = ""
    value: int | str = ""
    always: bool = False
    audit: AuditPoint | None = None
    grouped: str = ""

    @cached_property
    def placeholders(self) -> bool:
        """Whether ``bind`` has values to put in: a walk of the whole tree, done once (and
        ahead of the run, ``execution/prefetch.py``), not every time the statement runs."""
        return self.sql is not None and self.sql.find(exp.Placeholder) is not None

    def render(self, dialect: str) -> str:
        if self.kind == "let":
            return f"-- {self.binds} = {self.value}"
        if self.sql is None:
            return f"-- {self.purpose}"
        return self.sql.sql(dialect=dialect)

    def to_json(self, dialect: str) -> dict[str, Any]:
        data: dict[str, Any] = {"purpose": self.purpose, "kind": self.kind, "sql": self.render(dialect)}
        if self.transaction:
            data["transaction"] = True
        if self.binds:
            data["binds"] = self.binds
        if self.always:
            data["always"] = True
        if self.grouped:
            data["grouped"] = self.grouped
        return data


@dataclass(frozen=True)
class Rule:
    """One test a branch needs, on what the build has recorded when the step starts.

    ``test``: ``whole`` (a batch of ``inputs`` in its range is "everything changed"),
    ``appended`` (every batch of ``inputs`` in its range only added rows),
    ``rebuild_cheaper`` (the rows changed in ``inputs`` exceed ``threshold``, where the cost
    model found a rebuild cheaper: ``planner.rebuild_cheaper``), ``rows_at_most`` (the rows changed
    in ``inputs`` are at most ``threshold``), ``same_columns`` (the rebuilt table has
    the names and types in ``columns``, which its change log holds)."""

    test: str
    inputs: tuple[tuple[str, int, int], ...] = ()  # (input, after, upto): the batch range read
    threshold: int = 0
    columns: tuple[tuple[str, str], ...] = ()
    negate: bool = False

    def describe(self) -> str:
        names = ", ".join(name for name, _, _ in self.inputs)
        text = {
            "whole": f"{names} changed as a whole",
            "appended": f"{names} only appended to",
            "rebuild_cheaper": f"changed rows of {names} > {self.threshold}: a rebuild is estimated cheaper",
            "rows_at_most": f"changed rows of {names} <= {self.threshold}",
            "same_columns": "the rebuilt table keeps its column names and types",
        }[self.test]
        return f"not ({text})" if self.negate else text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"test": self.test, "rule": self.describe()}
        if self.inputs:
            data["inputs"] = [{"input": n, "after": a, "upto": u} for n, a, u in self.inputs]
        if self.test in ("rebuild_cheaper", "rows_at_most"):
            data["threshold"] = self.threshold
        if self.negate:
            data["negate"] = True
        return data


@dataclass
class Branch:
    name: str
    rules: list[Rule]  # all must hold; none: the fallback
    action: str
    strategy: str
    reason: str
    # the statements, or the function of plan-time values that builds them (``statements``)
    built: list[Item] | Callable[[], list[Item]] = field(default_factory=list)

    @property
    def statements(self) -> list[Item]:
        """Built when first read, from values all fixed when the plan was made: a build reads
        only the branch it takes, and a long chain's fallback branches (scratch tables for a
        change too large for the small form) would cost more to build than to run."""
        if callable(self.built):
            self.built = self.built()
        return self.built

    def to_json(self, dialect: str) -> dict[str, Any]:
        return {
            "branch": self.name,
            "when": [rule.to_json() for rule in self.rules],
            "action": self.action,
            "strategy": self.strategy,
            "reason": self.reason,
            "statements": [item.to_json(dialect) for item in self.statements],
        }


@dataclass
class Choice:
    """Branches in order; the first whose rules all hold runs (the last has none)."""

    branches: list[Branch]
    transaction: bool = False  # inside the step's transaction
    expected: int = 0  # the branch the plan's estimates select (the one built ahead: ``execution/prefetch.py``)

    def to_json(self, dialect: str) -> dict[str, Any]:
        return {"choice": [branch.to_json(dialect) for branch in self.branches]}


@dataclass
class Chunks:
    """Statements run once per chunk of a step's affected keys, all in the step's
    transaction (``planning/chunks.py``): ``$chunk`` runs from 0 to ``$chunks - 1``, and
    ``$chunks`` is the rows changed in ``inputs`` (what the build recorded when the step
    starts) divided by ``rows_per_chunk``, rounded up; after an out-of-memory error the
    step is tried once more with ``SMALLER_CHUNKS`` times as many chunks."""

    statements: list[Statement]
    inputs: tuple[tuple[str, int, int], ...]  # (input, after, upto): the batch range read
    rows_per_chunk: int  # ``max_batch_rows``
    transaction: bool = True

    def count(self, changed_rows: int, smaller: bool = False) -> int:
        chunks = max(1, -(-changed_rows // self.rows_per_chunk))
        return chunks * SMALLER_CHUNKS if smaller else chunks

    def describe(self) -> str:
        names = ", ".join(name for name, _, _ in self.inputs)
        return (
            f"once per chunk of the affected keys: changed rows of {names} / {self.rows_per_chunk} "
            f"(max_batch_rows) chunks, {SMALLER_CHUNKS}x as many after an out-of-memory error"
        )

    def to_json(self, dialect: str) -> dict[str, Any]:
        return {
            "chunks": self.describe(),
            "rows_per_chunk": self.rows_per_chunk,
            "inputs": [{"input": n, "after": a, "upto": u} for n, a, u in self.inputs],
            "statements": [item.to_json(dialect) for item in self.statements],
        }


SMALLER_CHUNKS = 4  # the retry after an out-of-memory error cuts each chunk in four

Item = Statement | Choice | Chunks


def flatten(items: list[Item]) -> list[Statement]:
    """Every statement, of every branch and chunk, in order (for printing)."""
    out: list[Statement] = []
    for item in items:
        if isinstance(item, Choice):
            for branch in item.branches:
                out.extend(flatten(branch.statements))
        elif isinstance(item, Chunks):
            out.extend(item.statements)
        else:
            out.append(item)
    return out


@dataclass(frozen=True)
class KeptState:
    """Auxiliary state a model keeps in ``_sqlorch`` beside its table (the groups of a model
    maintained from signed deltas): shown by ``plan`` so that its size is never a surprise."""

    table: str
    rows: int | None  # None: not there yet (the step builds it from the inputs)
    current: bool  # matches the model's last batch: folded into; else rebuilt from the inputs
    # per value set of its DISTINCT aggregates: the table of (group, value) pairs and their number
    values: tuple[tuple[str, int | None], ...] = ()
    # a model recomputed from kept groups with more than one aggregated derived table: the
    # groups of the others (``table`` holds the first's)
    more: tuple[tuple[str, int | None], ...] = ()
    unit: str = "group"  # what a row of ``table`` is: a group, or a window partition's tail

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "table": self.table,
            "rows": self.rows,
            "current": self.current,
            "unit": self.unit,
            "values": [{"table": table, "rows": rows} for table, rows in self.values],
        }
        if self.more:
            found["more"] = [{"table": table, "rows": rows} for table, rows in self.more]
        return found


@dataclass
class Step:
    ref: TableRef
    kind: str  # "model" | "seed"
    materialized: str  # "incremental" | "table" | "view" | "seed"
    action: str  # "skip" | "incremental" | "full"
    reason: str
    strategy: str = ""  # "merge keys" | "delete+insert keys" | "rebuild" | "replace view" | ...
    key: list[str] | None = None
    estimated_changed_rows: int | None = None
    estimated_full_rows: int | None = None
    appends_only: bool = False  # the change this step will record only adds rows (a seed's diff)
    depends_on: list[TableRef] = field(default_factory=list)
    # what build runs; a step whose choice depends on upstream results holds one Choice
    statements: list[Item] = field(default_factory=list)
    batch: int | None = None  # the batch number this step records
    watermarks: dict[str, int] = field(default_factory=dict)  # input -> batch consumed by this step
    changed_inputs: list[TableRef] = field(default_factory=list)  # inputs whose changes it reads
    # the cost model's estimates (``planning/cost.py``): rows in the cost model's terms
    # (read: inputs and scans; written: table and change log) of the form the step runs
    estimated_affected_keys: int | None = None
    estimated_rows_read: int | None = None
    estimated_rows_written: int | None = None
    cost_incremental: float | None = None  # seconds, learned from the model's runs
    cost_full: float | None = None
    cost_winner: str = ""  # "incremental" | "full" | "" (not compared: a skip, a shape with no exact rewrite)
    estimated_log_rows: int | None = None  # rows the step puts in its change log: its consumers' change
    kept_state: KeptState | None = None
    # steps sharing a number run in order in one transaction (``transaction_groups.py``)
    group: int | None = None

    def to_json(self, dialect: str = "duckdb") -> dict[str, Any]:
        return {
            "model": str(self.ref),
            "kind": self.kind,
            "materialized": self.materialized,
            "action": self.action,
            "reason": self.reason,
            "strategy": self.strategy,
            "key": self.key,
            "estimated_changed_rows": self.estimated_changed_rows,
            "estimated_full_rows": self.estimated_full_rows,
            "appends_only": self.appends_only,
            "depends_on": [str(r) for r in self.depends_on],
            "batch": self.batch,
            "watermarks": self.watermarks,
            "statements": [item.to_json(dialect) for item in self.statements],
            "estimated_affected_keys": self.estimated_affected_keys,
            "estimated_rows_read": self.estimated_rows_read,
            "estimated_rows_written": self.estimated_rows_written,
            "cost_incremental": self.cost_incremental,
            "cost_full": self.cost_full,
            "cost_winner": self.cost_winner,
            "kept_state": self.kept_state.to_json() if self.kept_state is not None else None,
            "transaction_group": self.group,
        }


@dataclass
class SourceChange:
    """One source's capture: what ``plan`` predicts (read-only) and ``build`` records in
    ``_sqlorch.batches``, the same numbers when the source does not change in between."""

    source: str
    capture: str  # "append-only" | "keyed" | "fingerprint" (nothing declared)
    change: str  # "none" | "append" | "delta" | "full" (captured whole: consumers rebuild) | "missing"
    rows: int  # change-log rows: new rows, or old and new images (0 for "full")
    batches: int  # batches recorded (a keyed source diffed whole after its cursor diff: 2)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    steps: list[Step]  # in dependency order
    dialect: str = "duckdb"  # the target's: statements render in it
    sources: list[SourceChange] = field(default_factory=list)  # the selected models' sources, by name
    # per transaction group (``Step.group``): the bookkeeping of all its steps, run after its last
    groups: dict[int, list[Statement]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dialect": self.dialect,
            "steps": [step.to_json(self.dialect) for step in self.steps],
            "sources": [s.to_json() for s in self.sources],
            "transaction_groups": [
                {
                    "group": number,
                    "models": [str(step.ref) for step in self.steps if step.group == number],
                    "statements": [statement.to_json(self.dialect) for statement in statements],
                }
                for number, statements in sorted(self.groups.items())
            ],
        }
