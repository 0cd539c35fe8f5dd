"""The statements of each model step, and the branches where an upstream step of the same
build decides between them.

A model reads an upstream model that runs in the same build: the planner does not know
how many rows that upstream will change, nor (for an upstream rebuilt in full that can
diff its old and new rows) whether it records a whole new table. The step then holds a
``Choice`` of branches, in order: ``whole`` (an input changed as a whole: rebuild),
``rebuild`` (the changed rows make a rebuild cheaper), ``small`` (few enough changed rows
for the statements without scratch tables, which replace keys by DELETE + INSERT: its
strategy says so), and the incremental statements. Each branch
is one ``decide_model`` outcome with the statements that carry it out; the step's own
action, strategy and reason are those of the branch the estimates select.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from sqlglot import exp

from sqlorch.adapters.base import Capabilities
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.cost import Costs
from sqlorch.planning.planner import decide_model, rebuild_cheaper
from sqlorch.planning.rewrites import replace_keys
from sqlorch.planning.rewrites.model_statements import ModelContext
from sqlorch.planning.rewrites.rebuild import full_statements
from sqlorch.planning.rewrites.replace_keys import small_change_possible, small_statements
from sqlorch.planning.rewrites.strategies import STRATEGY
from sqlorch.planning.steps import (
    DELETE_INSERT_KEYS,
    INSERT_ONLY,
    KEPT_GROUPS,
    MAP_CHANGES,
    MERGE_KEYS,
    PARTIAL_AGGREGATES,
    SIGNED_DELTAS,
    WINDOW_TAILS,
    Branch,
    Choice,
    Decision,
    InputChange,
    Item,
    Rule,
    Statement,
    Step,
)
from sqlorch.refs import TableRef
from sqlorch.state.history import TableStats
from sqlorch.state.ownership import claim_statement
from sqlorch.state.store import StateSnapshot, change_log, kept_states_record, tails_record


@dataclass
class StepTarget:
    """What a step's statements depend on besides the decision: all read before planning."""

    dialect: str
    physical_of: dict[TableRef, TableRef]
    input_columns: dict[TableRef, list[str]]
    default_schema: str
    resolve: Callable[[exp.Table], TableRef | None]
    catalog: dict[TableRef, dict[str, str]]  # relation -> column types (target dialect), before the build
    owned: set[str]  # physical relations sqlorch created
    audited: set[TableRef]  # models with audits to run
    # relations some model of the project reads (None: unknown, taken as all): a rebuild of
    # one no model reads records a whole batch instead of diffing its old and new rows
    consumed: frozenset[TableRef] | None = None
    max_batch_rows: int | None = None  # sqlorch.yml's, or sized for the machine (``planning/chunks.py``)

    def reads(self, ref: TableRef) -> bool:
        """Whether some model of the project reads ``ref``'s change log (unknown: yes)."""
        return self.consumed is None or ref in self.consumed

    def claim(self, ref: TableRef) -> list[Item]:
        """The ownership claim, before the statement that creates the relation."""
        relation = self.physical_of[ref]
        if relation in self.catalog or str(relation) in self.owned:
            return []
        return [Statement(claim_statement(relation), "claim ownership (committed before the create)")]


def _ranges(changes: dict[TableRef, InputChange], refs: list[TableRef]) -> tuple[tuple[str, int, int], ...]:
    return tuple((str(r), changes[r].after, changes[r].upto) for r in sorted(refs))


def _writes(decision: Decision, diff_possible: bool) -> frozenset[str]:
    """The batch kinds a branch records."""
    if decision.action == "full":
        return frozenset({"full", "delta"} if diff_possible else {"full"})
    if decision.strategy == INSERT_ONLY:
        return frozenset({"append"})
    return frozenset({"append", "delta"})


def plan_model_statements(
    step: Step,
    item: CompiledModel,
    snapshot: StateSnapshot,
    changes: dict[TableRef, InputChange],
    uncertain: list[TableRef],
    writes: dict[TableRef, frozenset[str]],
    threshold: int | None,
    exists: bool,
    full_refresh: bool,
    capabilities: Capabilities,
    target: StepTarget,
    costs: Costs | None = None,
    stats: TableStats | None = None,
) -> frozenset[str]:
    """Fill ``step.statements`` (and its action, strategy and reason where it holds a
    choice); returns the batch kinds the step may record. ``threshold``: the changed rows
    above which the cost model finds a rebuild cheaper (None: never, or not compared);
    ``costs`` and ``stats`` go into the run's recorded cost (``state/history.py``)."""
    ref = step.ref
    name = str(ref)
    physical = target.physical_of[ref]
    inputs = sorted(item.model.inputs)
    assert step.batch is not None
    ctx = ModelContext(
        compiled=item,
        physical=physical,
        physical_of=target.physical_of,
        input_columns=target.input_columns,
        watermarks=step.watermarks,
        batch=step.batch,
        default_schema=target.default_schema,
        capabilities=capabilities,
        audited=ref in target.audited,
        state=snapshot.relations.get(name),
        watermarks_stored=all((name, str(i)) in snapshot.watermarks for i in inputs),
        previous=target.catalog.get(physical),
        log_exists=change_log(ref) in target.catalog,
        dialect=target.dialect,
        costs=costs,
        stats=stats,
        aggregate_state=snapshot.aggregate_states.get(name),
        kept_state=snapshot.aggregate_states.get(kept_states_record(ref)),
        tails_state=snapshot.aggregate_states.get(tails_record(ref)),
        max_batch_rows=target.max_batch_rows,
        read=target.reads(ref),
    )
    may_diff = exists and not full_refresh and ctx.read
    diff_possible = (
        may_diff
        and item.model.config.materialized == "incremental"
        and capabilities.except_all
        and ctx.previous is not None
        and ctx.log_exists
    )

    def applied(strategy: str) -> str:
        """The strategy as it runs: a merge without a change log replaces keys by DELETE + INSERT."""
        unlogged = strategy == MERGE_KEYS and replace_keys.replaced_unlogged(ctx, changes)
        return DELETE_INSERT_KEYS if unlogged else strategy

    def statements(decision: Decision, small: bool) -> list[Item]:
        if decision.action == "full":
            return full_statements(ctx, may_diff, decision.strategy, decision.reason)
        if small:
            return small_statements(ctx, changes, target.resolve)
        return STRATEGY[decision.strategy].statements(ctx, changes, target.resolve)

    def keyed(decision: Decision) -> bool:
        return decision.strategy not in (
            INSERT_ONLY,
            MAP_CHANGES,
            PARTIAL_AGGREGATES,
            SIGNED_DELTAS,
            KEPT_GROUPS,
            WINDOW_TAILS,
        )

    claim = target.claim(ref)
    changed = sum(c.rows for c in changes.values())
    # the small form is never chunked: over max_batch_rows, the chunked statements
    small_limit = min(replace_keys.SMALL_CHANGE_ROWS, target.max_batch_rows or replace_keys.SMALL_CHANGE_ROWS)
    decide = lambda c, rows: decide_model(item, snapshot, c, full_refresh, exists, rows, capabilities)  # noqa: E731
    base = decide(changes, None)
    declined = (base.strategy == SIGNED_DELTAS and costs is not None and not costs.folds) or (
        base.strategy == WINDOW_TAILS and costs is not None and not costs.tails
    )
    if costs is not None and declined and step.strategy != base.strategy:
        base = decide(changes, costs.incremental_form())  # the keys replaced, as the step chose
    if not uncertain or base.action != "incremental":
        decision = Decision(step.action, step.reason, step.strategy)
        small = (
            decision.action == "incremental"
            and keyed(decision)
            and small_change_possible(ctx, changes, False)
            and changed <= small_limit
        )
        # the small form replaces keys by DELETE + INSERT, whatever the key
        step.strategy = DELETE_INSERT_KEYS if small else applied(step.strategy)
        step.statements = [*claim, *statements(decision, small)]
        return _writes(decision, diff_possible)
    everything = _ranges(changes, list(changes))
    branches: list[Branch] = []
    expected: list[bool] = []  # per branch: whether the plan's estimates select it
    maybe_whole = [r for r in uncertain if "full" in writes[r]]
    if maybe_whole:
        whole = decide({r: replace(c, full=True) if r in maybe_whole else c for r, c in changes.items()}, None)
        if whole.action == "full":
            rule = Rule("whole", _ranges(changes, maybe_whole))
            branches.append(Branch("whole", [rule], whole.action, whole.strategy, whole.reason))
            expected.append(False)  # an upstream rebuild that can diff keeps its column types
    if threshold is not None:
        names = ", ".join(str(r) for r in sorted(changes))
        reason = f"more than {threshold} changed rows of {names}: a full rebuild is estimated cheaper"
        rule = Rule("rebuild_cheaper", everything, threshold=threshold)
        branches.append(Branch("rebuild", [rule], "full", "rebuild", reason))
        expected.append(rebuild_cheaper(changed, threshold))
    if keyed(base) and small_change_possible(ctx, changes, False):
        rule = Rule("rows_at_most", everything, threshold=small_limit)
        branches.append(Branch("small", [rule], base.action, DELETE_INSERT_KEYS, base.reason))
        expected.append(changed <= small_limit)
    branches.append(Branch("incremental", [], base.action, applied(base.strategy), base.reason))
    expected.append(True)
    kinds: frozenset[str] = frozenset()
    for branch in branches:
        decision = Decision(branch.action, branch.reason, branch.strategy)
        branch.built = partial(statements, decision, branch.name == "small")
        kinds |= _writes(decision, diff_possible)
    selected = expected.index(True)
    chosen = branches[selected]
    step.action, step.strategy, step.reason = chosen.action, chosen.strategy, chosen.reason
    # one branch left (no rule could apply): no choice
    choice = Choice(branches, expected=selected)
    step.statements = [*claim, choice] if len(branches) > 1 else [*claim, *branches[0].statements]
    return kinds
