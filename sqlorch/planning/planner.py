"""Decide, per node, skip | incremental | full, and why. Pure: no warehouse access.

``decide_model`` runs only here, at plan time. Where an upstream step of the same build
decides what a model reads (how many rows it changes, whether it writes a whole new
table), the planner decides the model once per outcome and the step holds each as a
branch with its rule (``step_statements.py``); the executor only evaluates the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from sqlorch.adapters.base import Capabilities
from sqlorch.analysis.schemas import columns_named, type_changes
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.cost import (
    FULL,
    INCREMENTAL,
    Costs,
    Estimate,
    Work,
    break_even,
    estimate_costs,
    upstream_diff,
)
from sqlorch.planning.rewrites.kept_aggregates import kept_tables
from sqlorch.planning.rewrites.model_statements import mentions, partitioned_keys
from sqlorch.planning.rewrites.strategies import STRATEGIES, kept_groups, signed_deltas, signed_form
from sqlorch.planning.steps import (
    INSERT_ONLY,
    KEPT_GROUPS,
    MAP_CHANGES,
    SIGNED_DELTAS,
    WINDOW_TAILS,
    Decision,
    InputChange,
    Plan,
    Step,
)
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef
from sqlorch.state.history import RunCost, latest_stats, recent
from sqlorch.state.store import StateSnapshot, kept_states_record, tails_record

if TYPE_CHECKING:
    from sqlorch.planning.step_statements import StepTarget
    from sqlorch.project.model import Seed
    from sqlorch.state.store import RelationState


def rebuild_cheaper(changed_rows: int, threshold: int) -> bool:
    """Whether ``changed_rows`` changed input rows make a rebuild cheaper than the
    incremental form, ``threshold`` being where the cost model's two estimates cross
    (``cost.break_even``): the comparison a plan's ``rebuild_cheaper`` rule makes at build
    time, once an upstream step has counted its change."""
    return changed_rows > threshold


def decide_seed(seed: Seed, state: RelationState | None, exists: bool, full_refresh: bool) -> Decision:
    """A seed is loaded whole the first time or when its header or inferred types change,
    otherwise diffed row by row, so its consumers stay incremental."""
    if full_refresh:
        return Decision("full", "--full-refresh", "load")
    if state is None or not exists:
        return Decision("full", "first load", "load")
    if state.fingerprint != seed.fingerprint():
        if state.columns != seed.read()[0]:
            return Decision("full", "CSV columns or their inferred types changed", "load")
        return Decision("incremental", "CSV changed; rows diffed", "diff rows")
    return Decision("skip", "CSV unchanged")


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


def input_types_changed(
    compiled: CompiledModel, recorded: dict[str, dict[str, str]] | None, changes: dict[TableRef, InputChange]
) -> str | None:
    """Which input columns the model may read changed type since it last ran, if any: a
    schema change of that input, so the model is rebuilt (its table holds the old types,
    and incremental rows of the new type would be cast to them). A source column the model
    does not name (``columns_named``) counts only where the source was captured whole (for
    another model that names it): where no model names it, the capture does not keep it
    (``capture.captured_columns``) and the model stays incremental. Every column of an
    upstream model or seed counts: a rebuilt model whose column types changed records a
    whole batch anyway (``rewrites/rebuild.py``)."""
    if compiled.input_schemas is None or recorded is None:
        return None
    reasons = []
    for ref, schema in sorted(compiled.input_schemas.items(), key=lambda item: str(item[0])):
        changed = type_changes(recorded.get(str(ref), {}), schema)
        source = ref in compiled.model.sources
        if changed and source and not (ref in changes and changes[ref].full):
            named = columns_named(compiled.model.ast)
            changed = {name: text for name, text in changed.items() if named is None or name in named}
        if changed:
            reasons.append(f"{'source ' if source else ''}{ref}: column {', column '.join(changed.values())}")
    return "; ".join(reasons) or None


def decide_model(
    compiled: CompiledModel,
    snapshot: StateSnapshot,
    changes: dict[TableRef, InputChange],
    full_refresh: bool,
    table_exists: bool,
    costs: Costs | None,
    capabilities: Capabilities,
) -> Decision:
    """The exact form for the model and its changes, or a rebuild where ``costs`` (the
    cost model's, ``planning/cost.py``; None: not compared) found one cheaper."""
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
    retyped = input_types_changed(compiled, state.inputs, changes)
    if retyped:
        return Decision("full", retyped, rebuild)
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
    partitioned = keys.not_signed != "" and signed_deltas(keys, changes, capabilities)  # analysis/partition.py
    if keys.unanchored and not partitioned:
        why = "not read through one partition key" if capabilities.transactions else "no transactions"
        return Decision(
            "full", f"inputs changed ({changed_names}); not incremental: {keys.unanchored} ({why})", rebuild
        )
    in_subquery = sorted(str(r) for r in changes if mentions(keys.subquery_tables, r))
    kept = kept_groups(keys, changes, capabilities)  # rewrites/kept_aggregates.py
    if in_subquery and not partitioned and not partitioned_keys(keys, changes) and not kept:
        why = f" ({keys.not_signed})" if keys.not_signed else ""  # e.g. not decorrelated: an anti-join
        return Decision("full", f"{', '.join(in_subquery)} is read in a subquery expression{why}", rebuild)
    if costs is not None and costs.winner == FULL:
        return Decision("full", costs.reason(), rebuild)
    for strategy in STRATEGIES:  # cheapest first
        if strategy.name == SIGNED_DELTAS and costs is not None and not costs.folds:
            if partitioned:  # no other incremental form follows a change read through the partition
                return Decision("full", "group state must be built first: a rebuild writes it", rebuild)
            continue  # its group state must be built first, dearer than replacing the keys (cost.py)
        if strategy.name == WINDOW_TAILS and costs is not None and not costs.tails:
            continue  # dearer than replacing the keys (cost.py: "Window tails")
        if strategy.applies(keys, changes, capabilities):
            return Decision("incremental", strategy.reason(changed_names, keys, changes), strategy.name)
    raise AssertionError("the last strategy always applies")


def _history(snapshot: StateSnapshot, name: str) -> list[RunCost]:
    runs = snapshot.runs.get(name, [])
    return recent(runs, FULL) + recent(runs, INCREMENTAL)


def model_estimate(
    item: CompiledModel,
    snapshot: StateSnapshot,
    changes: dict[TableRef, InputChange],
    input_sizes: dict[TableRef, int],
    diffs: bool,
    logged: bool = True,
    strategy: str = "",
) -> Estimate:
    """The sizes one model's costs are estimated from: the changed rows of its inputs, its
    inputs' rows (counted for this plan, or as their last runs left them), its table's rows
    and keys (as its last runs left them). ``strategy``: the exact form the model would take."""
    stats = latest_stats(snapshot.runs.get(str(item.model.ref), []))
    sizes = [input_sizes.get(ref) for ref in item.model.inputs]
    table_rows = stats.rows if stats is not None else None
    distinct = table_rows if item.keys.unique else (stats.distinct_keys if stats is not None else None)
    appended = bool(changes) and all(c.appends_only for c in changes.values())
    kept_rows: int | None = None
    joined = sum(size or 0 for ref, size in zip(item.model.inputs, sizes, strict=True) if ref not in changes)
    if strategy == KEPT_GROUPS:  # the groups kept (else unknown: built from the inputs) and what is read whole
        groups = [input_sizes.get(table) for table in kept_tables(item)]
        kept_rows = sum(n for n in groups if n is not None) if None not in groups else None
        inside = item.keys.kept_tables
        joined = sum(size or 0 for ref, size in zip(item.model.inputs, sizes, strict=True) if not mentions(inside, ref))
    return Estimate(
        changed_rows=sum(c.rows for c in changes.values()),
        input_rows=sum(size for size in sizes if size is not None) if sizes and None not in sizes else None,
        table_rows=table_rows,
        distinct_keys=distinct,
        diffs=diffs,
        logged=logged,
        appends_only=appended,
        # the input's changed rows inserted or mapped: no key looked for in the tables
        scans=strategy not in (INSERT_ONLY, MAP_CHANGES),
        joined_rows=joined,
        folds=signed_form(item.keys, changes),
        kept=strategy == KEPT_GROUPS,
        kept_rows=kept_rows,
        tails=strategy == WINDOW_TAILS,
    )


def _logged_rows(step: Step) -> int:
    """The rows an upstream step will put in its change log, for its consumers."""
    if step.kind == "model" and step.estimated_log_rows is not None:
        return step.estimated_log_rows
    return step.estimated_changed_rows or 0


def predicted_changes(
    snapshot: StateSnapshot,
    consumer: str,
    inputs: list[TableRef],
    upstream_steps: dict[TableRef, Step],
    latest: dict[str, int],
    writes: dict[TableRef, frozenset[str]],
) -> dict[TableRef, InputChange]:
    """Pending changes, plus the batch each upstream step that runs will record: read up to
    ``latest`` (the batch numbers once the upstream steps ran). An upstream's batch counts
    as whole or only appended when every outcome of its step (``writes``: the batch kinds
    it may record) makes it so; an upstream full rebuild that can diff is expected to."""
    changes = pending_changes(snapshot, consumer, inputs)
    for ref in inputs:
        step = upstream_steps.get(ref)
        kinds = writes.get(ref)
        if step is None or not kinds:
            continue
        current = changes.get(ref)
        after = current.after if current else snapshot.watermarks.get((consumer, str(ref)), 0)
        predicted = _logged_rows(step)
        changes[ref] = InputChange(
            after=after,
            upto=latest[str(ref)],
            rows=(current.rows if current else 0) + predicted,
            full=kinds == {"full"} or (current.full if current else False),
            appends_only=kinds == {"append"} and (current.appends_only if current else True),
        )
    return changes


def _with_costs(step: Step, costs: Costs | None, compared: bool) -> None:
    """The cost model's estimates on the step; both costs only where an exact incremental
    form exists to compare with a rebuild."""
    if costs is None:
        return
    work: Work = costs.full_work if step.action == "full" else costs.incremental_work
    step.estimated_affected_keys = costs.affected_keys
    step.estimated_rows_read, step.estimated_rows_written = work.rows_read, work.rows_written
    step.cost_incremental = round(costs.incremental, 6) if compared else None
    step.cost_full = round(costs.full, 6)
    step.cost_winner = costs.winner if compared else ""
    step.estimated_log_rows = costs.logged_rows


def seed_writes(step: Step) -> frozenset[str]:
    """The batch kinds a seed's step records: none for a skip or a CSV that changed but holds
    the same rows; a whole load records ``full``."""
    if step.action == "skip" or step.action not in ("full", "incremental"):
        return frozenset()
    if step.action == "incremental" and step.estimated_changed_rows == 0:
        return frozenset()
    if step.action == "full" or step.estimated_changed_rows is None:
        return frozenset({"full"})
    return frozenset({"append" if step.appends_only else "delta"})


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
    target: StepTarget | None = None,
    choose_by_cost: bool = True,
) -> Plan:
    """The plan; with ``target`` (what the statements depend on), every step that runs holds
    its statements. ``input_rows``: rows of the inputs counted for this plan; other inputs'
    sizes come from their last runs (``state/history.py``). ``choose_by_cost`` False keeps
    every exact incremental form (unit tests: on their few rows a rebuild is cheaper)."""
    steps: dict[TableRef, Step] = {}
    sizes = dict(input_rows)
    for ref in order:
        stats = latest_stats(snapshot.runs.get(str(ref), []))
        if stats is not None and stats.rows is not None:
            sizes.setdefault(ref, stats.rows)
    latest = dict(snapshot.latest_batch)  # after the steps planned so far ran
    writes: dict[TableRef, frozenset[str]] = {}
    replan: dict[TableRef, Callable[[StepTarget], frozenset[str]]] = {}
    diffing: dict[TableRef, int] = {}  # models rebuilt in full that diff for their readers: table rows
    for ref in order:
        name = str(ref)
        if ref in project.seeds:
            decision = seed_decisions[ref]
            change = seed_changes.get(ref)
            step = Step(
                ref=ref,
                kind="seed",
                materialized="seed",
                action=decision.action,
                reason=decision.reason,
                strategy=decision.strategy,
                estimated_changed_rows=change[0] if change else None,
                appends_only=change[1] if change else False,
                batch=latest.get(name, 0) + 1,
            )
            writes[ref] = seed_writes(step)
            if target is not None and step.action != "skip":
                step.statements = target.claim(ref)
        else:
            item = compiled[ref]
            inputs = sorted(item.model.inputs)
            changes = predicted_changes(snapshot, name, inputs, steps, latest, writes)
            rows = sum(input_rows.get(i, 0) for i in inputs) if input_rows else None
            exists = ref in existing_tables
            structural = decide_model(item, snapshot, changes, full_refresh, exists, None, capabilities)
            costs: Costs | None = None
            threshold: int | None = None  # changed rows above which a rebuild is cheaper
            if structural.action != "skip":
                consumed = target is None or target.reads(ref)
                diffs = exists and not full_refresh and consumed and item.model.config.materialized == "incremental"
                estimate = model_estimate(
                    item, snapshot, changes, sizes, diffs and capabilities.except_all, consumed, structural.strategy
                )
                kept_diffs = sum(upstream_diff(diffing[r]) for r in changes if r in diffing)
                estimate = replace(estimate, upstream_diff_rows=kept_diffs)  # cost.py: "An input rebuilt"
                if structural.strategy == SIGNED_DELTAS and snapshot.aggregate_states.get(name) != latest.get(name, 0):
                    estimate = replace(estimate, builds_state=True)  # its group state is not current
                kept_batch = snapshot.aggregate_states.get(kept_states_record(ref))
                if structural.strategy == KEPT_GROUPS and kept_batch != latest.get(name, 0):
                    estimate = replace(estimate, builds_state=True)  # its kept groups are not current
                tails_batch = snapshot.aggregate_states.get(tails_record(ref))
                if structural.strategy == WINDOW_TAILS and tails_batch != latest.get(name, 0):
                    estimate = replace(estimate, builds_state=True)  # its window tails are not current
                history = _history(snapshot, name)
                costs = estimate_costs(estimate, history)
                if estimate.table_rows is None and estimate.input_rows is not None:
                    sizes[ref] = estimate.input_rows  # a first build holds about as many rows as it reads
                if choose_by_cost and structural.action == "incremental":
                    threshold = break_even(estimate, history)
            use = costs if choose_by_cost and structural.action == "incremental" else None
            decision = decide_model(item, snapshot, changes, full_refresh, exists, use, capabilities)
            if decision.action == "full" and costs is not None and estimate.diffs:
                diffing[ref] = estimate.table_rows or 0
            step = Step(
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
                changed_inputs=sorted(changes),
            )
            if decision.action in ("full", "incremental"):
                step.batch = latest.get(name, 0) + 1
                step.watermarks = {str(i): latest.get(str(i), 0) for i in inputs}
            kinds: frozenset[str] = frozenset({"full"}) if decision.action == "full" else frozenset()
            if target is not None and step.batch is not None:
                # step_statements builds on this module's decisions: imported once they exist
                from sqlorch.planning.step_statements import plan_model_statements

                uncertain = [
                    r for r in changes if r in steps and steps[r].kind == "model" and writes.get(r, frozenset())
                ]
                planned = partial(
                    plan_model_statements,
                    step,
                    item,
                    snapshot,
                    changes,
                    uncertain,
                    dict(writes),
                    threshold,
                    exists,
                    full_refresh,
                    capabilities,
                    costs=costs,
                    stats=latest_stats(snapshot.runs.get(name, [])),
                )
                kinds = planned(target)
                replan[ref] = planned
            elif decision.action == "incremental":
                kinds = frozenset({"append"} if decision.strategy == INSERT_ONLY else {"append", "delta"})
            writes[ref] = kinds
            _with_costs(step, costs, compared=structural.action == "incremental")
        if writes[ref]:
            latest[name] = latest.get(name, 0) + 1
        steps[ref] = step
    if target is not None:
        _skip_unread_diffs(project, steps, replan, target)
    return Plan(steps=list(steps.values()), dialect=target.dialect if target is not None else "duckdb")


def _skip_unread_diffs(
    project: Project,
    steps: dict[TableRef, Step],
    replan: dict[TableRef, Callable[[StepTarget], frozenset[str]]],
    target: StepTarget,
) -> None:
    """A model rebuilt in full whose every reader rebuilds in this plan too is planned again
    without the diff of its old and new rows: they would only feed a delta no one reads. Its
    whole batch sends each reader down the branch it was planned to take (a rebuild)."""
    readers: dict[TableRef, list[TableRef]] = {}
    for ref, model in project.models.items():
        for input_ref in model.inputs:
            readers.setdefault(input_ref, []).append(ref)
    for ref, planned in replan.items():
        step, consumers = steps[ref], readers.get(ref, [])
        consumed = target.consumed if target.consumed is not None else frozenset(readers)
        if step.action != "full" or ref not in consumed or not consumers:
            continue
        if all(r in steps and steps[r].action == "full" for r in consumers):
            planned(replace(target, consumed=consumed - {ref}))
