"""Steps that run in one transaction: a chain of small model steps commits once, not once a
model.

A commit is the dearest statement of a small step (DuckDB writes and syncs its log: a few
milliseconds, more than the step's own statements on a few rows). Where the warehouse
rolls back DDL with the rest of a transaction, a run of steps each of which is the only
running reader of the one before it (and reads no other step of the plan) commits as one:
nothing else could start between them anyway, and a crash leaves all of them undone, as
if the build had died before the first. A group that fails is rolled back and its steps
run again one by one, each in its own transaction, so a failure costs exactly the models
it costs without grouping (``execution/executor.py``).

The group's bookkeeping is written once, after its last step: one INSERT of all its
batches and one DELETE + INSERT of all its watermarks (``Plan.groups``), where each step run
alone writes its own (a few hundred microseconds a statement, the cost of a small step
again). A step's batch row is bound when the step ends (its kind, rows and time), the
rows of all steps bound into the group's INSERT; its watermarks are fixed by the plan.

Left out: seeds (loaded by their own code), models with audits (their ``relationships``
may read other steps), steps that may write many rows (``GROUP_ROWS``: the commit is then
a small share of their cost, and a failure would undo more), and groups past
``GROUP_STEPS`` steps (the progress a person watches, and the work a crash undoes).
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.adapters.base import Capabilities
from sqlorch.planning.steps import Statement, Step, placeholder
from sqlorch.refs import TableRef
from sqlorch.state.store import BATCH_COLUMNS, group_batches_statement, group_watermark_statements

GROUP_STEPS = 100
GROUP_ROWS = 100_000  # estimated rows written (table and change log) above which a step commits alone


def _groupable(step: Step, audited: set[TableRef]) -> bool:
    return (
        step.kind == "model"
        and step.action in ("full", "incremental")
        and step.ref not in audited
        and step.estimated_rows_written is not None
        and step.estimated_rows_written <= GROUP_ROWS
    )


def group_transactions(
    steps: list[Step], capabilities: Capabilities, audited: set[TableRef]
) -> dict[int, list[Statement]]:
    """Number the steps (in dependency order) that share a transaction (``Step.group``);
    returns each group's bookkeeping (``Plan.groups``)."""
    if not (capabilities.transactions and capabilities.transactional_ddl):
        return {}
    by_ref = {step.ref: step for step in steps}
    running = {ref for ref, step in by_ref.items() if step.action not in ("skip", "error", "skipped")}
    readers: dict[TableRef, list[TableRef]] = {}  # running steps only: a skipped one waits for nothing
    for step in steps:
        for parent in step.depends_on:
            if parent in running and step.ref in running:
                readers.setdefault(parent, []).append(step.ref)
    members: dict[TableRef, list[TableRef]] = {}  # the group's first step -> its steps
    first_of: dict[TableRef, TableRef] = {}
    for step in steps:
        if not _groupable(step, audited):
            continue
        # every step of the plan it reads, running or not: one the executor would wait for
        # (a skipped step whose upstream fails blocks its readers) must not be bypassed
        parents = [p for p in step.depends_on if p in by_ref]
        if len(parents) == 1 and parents[0] in first_of:
            parent = parents[0]
            group = members[first_of[parent]]
            if group[-1] == parent and readers.get(parent) == [step.ref] and len(group) < GROUP_STEPS:
                group.append(step.ref)
                first_of[step.ref] = first_of[parent]
                continue
        members[step.ref] = [step.ref]
        first_of[step.ref] = step.ref
    number = 0
    bookkeeping: dict[int, list[Statement]] = {}
    for group in members.values():
        if len(group) > 1:
            number += 1
            for ref in group:
                by_ref[ref].group = number
            watermarks = {str(ref): by_ref[ref].watermarks for ref in group}
            bookkeeping[number] = [
                Statement(group_batches_statement(placeholder(BATCH_ROWS)), "bookkeeping of the group: batches"),
                *(Statement(s, "bookkeeping of the group: watermarks") for s in group_watermark_statements(watermarks)),
            ]
    return bookkeeping


BATCH_ROWS = "batch_rows"  # the group's batch rows, bound by its steps


def batch_row(statement: exp.Expr) -> exp.Tuple:
    """A step's bound batch INSERT (one row, ``Statement.grouped == "row"``) as a row of the
    group's INSERT: its values in the order of ``BATCH_COLUMNS``, NULL for a column it lacks.
    The values are moved, not copied: ``statement`` is a bound copy, of no further use."""
    assert isinstance(statement, exp.Insert) and isinstance(statement.expression, exp.Values)
    columns = [column.name for column in statement.this.expressions]
    (values,) = statement.expression.expressions
    by_column = dict(zip(columns, values.expressions, strict=True))
    return exp.Tuple(expressions=[by_column.get(column, exp.null()) for column in BATCH_COLUMNS])


def bind_rows(statement: exp.Expr, rows: list[exp.Tuple]) -> exp.Expr:
    """A group's bookkeeping statement with the batch rows its steps bound (``$batch_rows``)."""
    values = statement.find(exp.Values)
    if values is None or not any(isinstance(e, exp.Placeholder) and e.name == BATCH_ROWS for e in values.expressions):
        return statement
    bound = statement.copy()
    bound.find(exp.Values).set("expressions", rows)  # type: ignore[union-attr]
    return bound
