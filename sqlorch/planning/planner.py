"""Decide, per node, skip | incremental | full, and why. Pure: no warehouse access.

The same ``decide_model`` runs twice: when planning (with upstream changes predicted from
the upstream steps) and in the executor just before a model runs (with the batches its
inputs really produced in this build), so a plan and a build agree on their reasons. The
choice between an exact incremental form and a cheaper rebuild (``planning/cost.py``) is
the plan's: the build applies the plan's winner (``by_cost``) rather than estimate again
from counts the plan could not know, so both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlorch.adapters.base import Capabilities
from sqlorch.analysis.keys import KeyAnalysis
from sqlorch.compiler import CompiledModel
from sqlorch.planning.cost import FULL, INCREMENTAL, Costs, Estimate, Work, estimate_costs
from sqlorch.planning.steps import Plan, Step
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef
from sqlorch.state.history import latest_stats, recent
from sqlorch.state.store import StateSnapshot

INSERT_ONLY = "insert new rows"
PARTIAL_AGGREGATES = "add partial aggregates"


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


def pending_changes(snapshot: StateSnapshot, consumer: str, inputs: list[TableRef]) -> dict[TableRef, InputChange]:
    changes: dict[TableRef, InputChange] = {}
    for ref in inputs:
        window = snapshot.pending(consumer, str(ref))
        if window is None:
            continue
        after, upto = window
        changes[ref] = InputChange(
            after=after,
            upto=upto,
            rows=snapshot.pending_rows(str(ref), after, upto),
            full=snapshot.has_full_batch(str(ref), after, upto),
            appends_only=snapshot.only_appends(str(ref), after, upto),
        )
    return changes


def _mentions(tables: set[tuple[str, str]], ref: TableRef) -> bool:
    return (ref.schema, ref.name) in tables or ("", ref.name) in tables


def _single_appended_input(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """One changed input, only appended to, read once, not on a LEFT JOIN's nullable side."""
    if len(changes) != 1:
        return False
    ((ref, change),) = changes.items()
    return (
        change.appends_only
        and not _mentions(keys.nullable_tables, ref)
        and keys.occurrences.get((ref.schema, ref.name), 0) + keys.occurrences.get(("", ref.name), 0) == 1
    )


def insert_only(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """New output rows are exactly a row-preserving model over the appended input rows."""
    return keys.row_preserving and _single_appended_input(keys, changes)


def partial_aggregates(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """COUNT/SUM/MIN/MAX of appended rows fold into the stored groups."""
    return keys.distributive is not None and _single_appended_input(keys, changes)


def output_columns_changed(compiled: CompiledModel, recorded: dict[str, str] | None) -> str | None:
    """Why the model's output columns differ from those of its table, if they do: its SQL
    is unchanged, so an input's columns changed under a ``*``. Names are compared without
    case (the warehouse may keep the case the SQL was written in, the compiler folds it)."""
    if compiled.columns is None or recorded is None:
        return None
    now = [name.lower() for name in compiled.columns]
    before = [name.lower() for name in recorded]
    if now == before:
        return None
    gained = [name for name in now if name not in before]
    lost = [name for name in before if name not in now]
    inputs = compiled.input_schemas or {}
    reasons = []
    for name in gained:
        owners = sorted(str(ref) for ref, schema in inputs.items() if name in {c.lower() for c in schema})
        owner = owners[0] if owners else "an input"
        kind = "source " if any(str(s) == owner for s in compiled.model.sources) else ""
        reasons.append(f"{kind}{owner} gained column {name}")
    reasons += [f"an input lost column {name}" for name in lost]
    return "; ".join(reasons) or "output column order changed"


def decide_model(
    compiled: CompiledModel,
    snapshot: StateSnapshot,
    changes: dict[TableRef, InputChange],
    full_refresh: bool,
    table_exists: bool,
    capabilities: Capabilities,
) -> Decision:
    """The exact form for the model and its changes; whether a rebuild is cheaper than an
    incremental one is ``by_cost``'s."""
    model = compiled.model
    name = str(model.ref)
    state = snapshot.relations.get(name)
    materialized = model.config.materialized
    rebuild = "replace view" if materialized == "view" else "rebuild"
    if full_refresh:
        return Decision("full", "--full-refresh", rebuild)
    if state is None or not table_exists:
        return Decision("full", "first build" if state is None else "table is missing", rebuild)
    if state.fingerprint != compiled.fingerprint:
        return Decision("full", "model SQL or settings changed", rebuild)
    reshaped = output_columns_changed(compiled, state.columns)
    if reshaped:
        return Decision("full", reshaped, rebuild)
    if not changes:
        return Decision("skip", "model and inputs unchanged")
    changed_names = ", ".join(sorted(str(r) for r in changes))
    if materialized != "incremental":
        return Decision("full", f"inputs changed ({changed_names}); materialized: {materialized}", rebuild)
    keys = compiled.keys
    if keys.key is None:
        return Decision("full", f"inputs changed ({changed_names}); not incremental: {keys.reason}", rebuild)
    full_inputs = sorted(str(r) for r, c in changes.items() if c.full)
    if full_inputs:
        return Decision("full", f"{', '.join(full_inputs)} changed as a whole (rebuilt, or no change capture)", rebuild)
    in_subquery = sorted(str(r) for r in changes if _mentions(keys.subquery_tables, r))
    if in_subquery:
        return Decision("full", f"{', '.join(in_subquery)} is read in a subquery expression", rebuild)
    # Appending and folding are exact only if applied once: they need a transaction that
    # commits them with the watermark. Without one, replacing keys is idempotent.
    if capabilities.transactions and insert_only(keys, changes):
        return Decision("incremental", f"{changed_names} appended rows; the model keeps rows one for one", INSERT_ONLY)
    if capabilities.transactions and partial_aggregates(keys, changes):
        return Decision(
            "incremental", f"{changed_names} appended rows; COUNT/SUM/MIN/MAX folded into groups", PARTIAL_AGGREGATES
        )
    if not keys.key:
        return Decision("incremental", f"{changed_names} changed; one-row aggregate recomputed", "recompute all")
    strategy = "merge keys" if keys.unique else "delete+insert keys"
    return Decision(
        "incremental", f"{changed_names} changed; recompute affected keys ({', '.join(keys.key)})", strategy
    )


def by_cost(decision: Decision, winner: str, reason: str) -> Decision:
    """``decision``, or a rebuild where the cost model found one cheaper than its
    incremental form."""
    if decision.action != "incremental" or winner != FULL:
        return decision
    return Decision("full", reason, "rebuild")


def _estimate(
    item: CompiledModel,
    snapshot: StateSnapshot,
    changes: dict[TableRef, InputChange],
    input_sizes: dict[TableRef, int],
    strategy: str,
    diffs: bool,
) -> Estimate:
    """The sizes one model's costs are estimated from: its inputs' rows (counted, or as
    their last runs left them), its table's rows and keys (its last runs)."""
    stats = latest_stats(snapshot.runs.get(str(item.model.ref), []))
    sizes = [input_sizes.get(ref) for ref in item.model.inputs]
    table_rows = stats.rows if stats is not None else None
    distinct = table_rows if item.keys.unique else (stats.distinct_keys if stats is not None else None)
    return Estimate(
        changed_rows=sum(c.rows for c in changes.values()),
        input_rows=sum(size for size in sizes if size is not None) if sizes and None not in sizes else None,
        table_rows=table_rows,
        distinct_keys=distinct,
        appends_only=bool(changes) and all(c.appends_only for c in changes.values()),
        scans=strategy != INSERT_ONLY,
        diffs=diffs,
    )


def _logged_rows(step: Step) -> int:
    """The rows an upstream step will put in its change log, for its consumers."""
    if step.kind == "model" and step.estimated_log_rows is not None:
        return step.estimated_log_rows
    return step.estimated_changed_rows or 0


def _delta_rebuild(step: Step) -> bool:
    """A rebuild chosen as cheaper that diffs for its consumers: they read a delta. (A
    rebuild for another reason may change the output's columns or types, which makes the
    batch whole: its consumers are planned to rebuild.)"""
    return step.action == "full" and step.cost_winner == FULL and step.rebuild_diffs


def _skip_useless_diffs(steps: dict[TableRef, Step], consumers: dict[TableRef, list[TableRef]]) -> None:
    """A rebuild chosen as cheaper whose every consumer rebuilds in this plan records a whole
    batch: diffing its old and new rows would only be read by no one."""
    for ref, step in steps.items():
        readers = consumers.get(ref, [])
        if _delta_rebuild(step) and all(r in steps and steps[r].action == "full" for r in readers):
            step.rebuild_diffs = False


def predicted_changes(
    snapshot: StateSnapshot,
    consumer: str,
    inputs: list[TableRef],
    upstream_steps: dict[TableRef, Step],
) -> dict[TableRef, InputChange]:
    """Pending changes, plus one predicted batch per upstream step that will run."""
    changes = pending_changes(snapshot, consumer, inputs)
    for ref in inputs:
        step = upstream_steps.get(ref)
        if step is None or step.action == "skip":
            continue
        if step.kind == "seed" and step.action == "incremental" and step.estimated_changed_rows == 0:
            continue  # a CSV that changed but holds the same rows records no batch
        current = changes.get(ref)
        after = current.after if current else snapshot.watermarks.get((consumer, str(ref)), 0)
        full = (step.action == "full" and not _delta_rebuild(step)) or (current.full if current else False)
        appends = (step.strategy == INSERT_ONLY or step.appends_only) and (current.appends_only if current else True)
        predicted = _logged_rows(step)
        changes[ref] = InputChange(
            after=after,
            upto=after + 1,
            rows=(current.rows if current else 0) + predicted,
            full=full,
            appends_only=appends,
        )
    return changes


def build_plan(
    project: Project,
    order: list[TableRef],
    compiled: dict[TableRef, CompiledModel],
    snapshot: StateSnapshot,
    seed_decisions: dict[TableRef, Decision],
    seed_changes: dict[TableRef, tuple[int, bool] | None],
    existing_tables: set[TableRef],
    input_rows: dict[TableRef, int],
    full_refresh: bool,
    capabilities: Capabilities,
    choose_by_cost: bool = True,
) -> Plan:
    """``input_rows``: rows of the inputs counted for this plan; other inputs' sizes come
    from their last runs (``state/history.py``). ``choose_by_cost`` False keeps every exact
    incremental form (unit tests: on their few rows a rebuild is always cheaper)."""
    steps: dict[TableRef, Step] = {}
    consumers: dict[TableRef, list[TableRef]] = {}
    for model_ref, model in project.models.items():
        for input_ref in model.inputs:
            consumers.setdefault(input_ref, []).append(model_ref)
    sizes = dict(input_rows)
    for ref in order:
        stats = latest_stats(snapshot.runs.get(str(ref), []))
        if stats is not None and stats.rows is not None:
            sizes.setdefault(ref, stats.rows)
    for ref in order:
        if ref in project.seeds:
            decision = seed_decisions[ref]
            change = seed_changes.get(ref)
            steps[ref] = Step(
                ref=ref,
                kind="seed",
                materialized="seed",
                action=decision.action,
                reason=decision.reason,
                strategy=decision.strategy,
                estimated_changed_rows=change[0] if change else None,
                appends_only=change[1] if change else False,
            )
            continue
        item = compiled[ref]
        inputs = sorted(item.model.inputs)
        changes = predicted_changes(snapshot, str(ref), inputs, steps)
        decision = decide_model(item, snapshot, changes, full_refresh, ref in existing_tables, capabilities)
        diffs = (
            ref in existing_tables
            and not full_refresh
            and ref in consumers
            and item.model.config.materialized == "incremental"
            and capabilities.except_all
        )
        costs: Costs | None = None
        compared = decision.action == "incremental"  # else no exact incremental form to price
        if decision.action != "skip":
            runs = snapshot.runs.get(str(ref), [])
            estimate = _estimate(item, snapshot, changes, sizes, decision.strategy, diffs)
            costs = estimate_costs(estimate, recent(runs, FULL) + recent(runs, INCREMENTAL))
            if estimate.table_rows is None and estimate.input_rows is not None and decision.action == "full":
                sizes[ref] = estimate.input_rows  # a first build holds about as many rows as it reads
            if choose_by_cost:
                decision = by_cost(decision, costs.winner, costs.reason())
        work: Work | None = None
        if costs is not None:
            work = costs.full_work if decision.action == "full" else costs.incremental_work
        rows = sum(input_rows.get(i, 0) for i in inputs) if input_rows else None
        steps[ref] = Step(
            ref=ref,
            kind="model",
            materialized=item.model.config.materialized,
            action=decision.action,
            reason=decision.reason,
            strategy=decision.strategy,
            # analysed only for models that run: a skipped model's key is not worth its cost
            key=item.keys.key if decision.action != "skip" else None,
            estimated_changed_rows=sum(c.rows for c in changes.values()) if changes else 0,
            estimated_full_rows=rows,
            depends_on=sorted(item.model.depends_on),
            estimated_affected_keys=costs.affected_keys if costs is not None else None,
            estimated_rows_read=work.rows_read if work is not None else None,
            estimated_rows_written=work.rows_written if work is not None else None,
            cost_incremental=round(costs.incremental, 6) if costs is not None and compared else None,
            cost_full=round(costs.full, 6) if costs is not None else None,
            cost_winner=costs.winner if costs is not None and compared else "",
            estimated_log_rows=costs.logged_rows if costs is not None else None,
            rebuild_diffs=diffs,
        )
    _skip_useless_diffs(steps, consumers)
    return Plan(steps=list(steps.values()))
