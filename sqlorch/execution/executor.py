"""Walk a plan in dependency order on worker threads; never builds SQL itself.

Each step runs the statements the plan holds for it and records what they report; where
the plan holds a choice, the executor evaluates its rules on the batches the step's
inputs really produced in this build (``planning/steps.py``). It decides nothing else. A
failed node marks its descendants skipped; independent branches go on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.audits.declared import DeclaredAudits, audit_parents
from sqlorch.audits.run import AuditFailed, AuditResult, ModelAudits, model_audits
from sqlorch.audits.sources import SourceAudits
from sqlorch.audits.subject import physical_resolver
from sqlorch.errors import SqlorchError
from sqlorch.execution.prefetch import StatementPrefetch, statement_prefetch
from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.execution.retry import RetryPolicy, batch_recorded, retry_step
from sqlorch.execution.seeds import execute_seed
from sqlorch.gcpause import long_lived_frozen
from sqlorch.graph.dag import DAG
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.planner import rebuild_cheaper
from sqlorch.planning.steps import (
    CHUNK,
    CHUNKS,
    MICROSECONDS,
    Branch,
    Choice,
    Chunks,
    Decision,
    Item,
    Plan,
    Rule,
    Statement,
    Step,
    batch_record,
    bind,
)
from sqlorch.planning.transaction_groups import batch_row, bind_rows
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef
from sqlorch.state.store import RUN_COLUMNS, RUNS, StateSnapshot

Listener = Callable[[str, ModelResult | Step | AuditResult], None]


@dataclass
class BuildInputs:
    project: Project
    compiled: dict[TableRef, CompiledModel]
    physical_of: dict[TableRef, TableRef]
    input_columns: dict[TableRef, list[str]]
    existing: set[TableRef]
    input_rows: dict[TableRef, int]
    full_refresh: bool
    resolve: Callable[..., TableRef | None]
    owned: set[str]  # physical relations sqlorch created (``state/ownership.py``)
    audits: DeclaredAudits | None = None
    audit_mode: str = "on"  # --audits off|warn|on
    source_audits: SourceAudits | None = None  # checked on the captured changes, before any model runs
    retry: RetryPolicy = field(
        default_factory=RetryPolicy
    )  # steps failing with a transient error (``execution/retry.py``)


class Executor:
    def __init__(
        self,
        adapter: Adapter,
        snapshot: StateSnapshot,
        inputs: BuildInputs,
        run_id: str,
        listener: Listener | None = None,
    ) -> None:
        self.adapter = adapter
        self.snapshot = snapshot
        self.inputs = inputs
        self.run_id = run_id
        self.listener = listener or (lambda event, item: None)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.rebuilt: set[str] = set()
        self.smaller_chunks: set[TableRef] = set()  # steps tried again after running out of memory
        self.prefetch: StatementPrefetch | None = None  # while ``execute`` runs

    def _adapter(self) -> Adapter:
        if not hasattr(self.local, "adapter"):
            self.local.adapter = self.adapter.fork()
        adapter: Adapter = self.local.adapter
        return adapter

    def _record_batch(
        self, name: str, batch: int, kind: str, rows: int, watermarks: dict[str, int], undo: list[Undo] | None = None
    ) -> None:
        """The batch in the build's snapshot, which later steps' rules read; ``undo`` collects
        what takes it back out should its transaction roll back (a group's, see ``_run_group``)."""
        with self.lock:
            if undo is not None:
                previous = {key: self.snapshot.watermarks.get(key) for key in ((name, i) for i in watermarks)}
                undo.append(Undo(name, batch, self.snapshot.latest_batch.get(name), previous))
            self.snapshot.record_batch(name, batch, kind, rows)
            for input_name, consumed in watermarks.items():
                self.snapshot.watermarks[(name, input_name)] = consumed

    def _forget(self, undo: list[Undo]) -> None:
        with self.lock:
            for entry in reversed(undo):
                self.snapshot.forget_batch(entry.name, entry.batch, entry.latest)
                for key, value in entry.watermarks.items():
                    if value is None:
                        self.snapshot.watermarks.pop(key, None)
                    else:
                        self.snapshot.watermarks[key] = value

    def _guard_dependent_views(self, ref: TableRef) -> None:
        """Where replacing a table drops its dependent views (Postgres: DROP ... CASCADE),
        replace it only when every such view is sqlorch's and rebuilt by this build: never
        destroy a view sqlorch does not own, nor one left out of ``--select``."""
        adapter = self._adapter()
        if not adapter.capabilities.views_bind_early or ref not in self.inputs.existing:
            return
        relation = self.inputs.physical_of[ref]
        blocking = [view for view in adapter.dependent_views(relation) if str(view) not in self.rebuilt]
        if not blocking:
            return
        foreign = [str(view) for view in blocking if str(view) not in self.inputs.owned]
        node = self.inputs.project.models.get(ref) or self.inputs.project.seeds.get(ref)
        names = ", ".join(str(view) for view in blocking)
        raise SqlorchError(
            f"cannot rebuild {relation}: the view(s) {names} depend on it, and replacing a table drops "
            "the views on it" + (f"; {', '.join(foreign)} was not created by sqlorch" if foreign else ""),
            path=node.path if node is not None else None,
            hint="drop or recreate those views after the build yourself"
            if foreign
            else f"build them in the same run, e.g. --select {ref}+",
        )

    def _run_seed(self, step: Step) -> ModelResult:
        seed = self.inputs.project.seeds[step.ref]
        name = str(step.ref)
        if step.action == "skip":
            return ModelResult(name, "success", "skip", step.reason, 0, strategy=step.strategy)
        if step.action == "full":
            self._guard_dependent_views(step.ref)
        adapter = self._adapter()
        StepRun(self, step, adapter, None).walk(step.statements)  # the ownership claim
        decision = Decision(step.action, step.reason, step.strategy)
        state = self.snapshot.relations.get(name)
        batch = step.batch if step.batch is not None else self.snapshot.latest_batch.get(name, 0) + 1
        rows, kind = execute_seed(adapter, seed, self.inputs.physical_of[step.ref], decision, state, batch)
        if kind == "full" or rows:
            self._record_batch(name, batch, kind, rows, {})
        return ModelResult(name, "success", step.action, step.reason, rows, strategy=step.strategy)

    def _run_model(
        self, step: Step, undo: list[Undo] | None = None, group_rows: list[exp.Tuple] | None = None
    ) -> ModelResult:
        """The step's statements; inside the group's transaction when ``undo`` is given, its
        batch row then added to ``group_rows`` for the group's bookkeeping (``Statement.grouped``)."""
        name = str(step.ref)
        if step.action == "skip":
            return ModelResult(name, "success", "skip", step.reason, 0, strategy=step.strategy)
        # a failed source audit fails the models that would read its change
        source_audits = (
            self.inputs.source_audits.for_inputs(set(step.changed_inputs)) if self.inputs.source_audits else []
        )
        declared = self.inputs.audits
        audits = (
            None
            if declared is None
            else model_audits(
                declared.models.get(step.ref),
                name,
                self.inputs.audit_mode,
                declared,
                physical_resolver(self.inputs.resolve, self.inputs.physical_of),
                lambda r: self.listener("audit", r),
            )
        )
        if audits is not None:
            audits.inherited = source_audits
        if step.action == "full":
            self._guard_dependent_views(step.ref)
        run = StepRun(self, step, self._adapter(), audits, group_rows)
        if self.prefetch is not None:
            self.prefetch.ready(step)
        run.walk(step.statements, in_transaction=undo is not None)
        top = run.taken[0] if run.taken and isinstance(step.statements[0], Choice) else None
        action, strategy, reason = (
            (top.action, top.strategy, top.reason) if top else (step.action, step.strategy, step.reason)
        )
        kind, rows, written = batch_record(run.bound)
        assert step.batch is not None
        self._record_batch(name, step.batch, kind, rows, step.watermarks, undo)
        with self.lock:
            if undo is not None and step.ref not in self.inputs.existing:
                undo[-1].created = step.ref
            self.inputs.existing.add(step.ref)
        result = ModelResult(name, "success", action, reason, written, strategy=strategy)
        result.branch = run.branch()
        result.chunks = run.chunks
        result.audits = [asdict(r) for r in (audits.results if audits else source_audits)]
        return result

    def _depends_on(self, step: Step) -> set[TableRef]:
        """The step's inputs, plus the models its ``relationships`` audits compare against."""
        audits = self.inputs.audits
        if audits is None or self.inputs.audit_mode == "off" or step.ref not in audits.models:
            return set(step.depends_on)
        return set(step.depends_on) | audit_parents(audits.models[step.ref], self.inputs.resolve)

    def _run(self, step: Step, announce: bool = True) -> ModelResult:
        if announce:
            self.listener("start", step)
        started = time.perf_counter()
        if step.action == "error":  # failed before the build (compile, ownership): never run
            result = ModelResult(str(step.ref), "error", "skip", "not built", None, error=step.reason)
            self.listener("done", result)
            return result
        try:
            result = self._retrying(step)
        except SqlorchError as error:
            if self.adapter.interrupts.event.is_set():  # stopped (Ctrl-C): rolled back, not a failure
                return ModelResult(str(step.ref), "skipped", "skip", "interrupted")
            path = getattr(self.inputs.compiled.get(step.ref), "model", None)
            if error.path is None and path is not None:
                error.path = path.path
            result = ModelResult(str(step.ref), "error", step.action, step.reason, None, error=error.render())
            if isinstance(error, AuditFailed):
                result.audits = [asdict(r) for r in error.results]
        return self._done(step, result, started)

    def _done(self, step: Step, result: ModelResult, started: float, ended: float | None = None) -> ModelResult:
        result.seconds = round((ended or time.perf_counter()) - started, 3)
        result.estimated_rows = step.estimated_changed_rows
        result.rows_written = result.rows
        self.listener("done", result)
        return result

    def _run_group(self, steps: list[Step], bookkeeping: list[Statement]) -> list[ModelResult]:
        """Steps the plan commits together (``planning/transaction_groups.py``), in one
        transaction, their batches and watermarks written by the group's ``bookkeeping``
        after the last. Should one fail, all roll back and run again one by one, each in its
        own transaction as if never grouped: those before it succeed, it fails, those after
        it (its readers) are skipped. Each model is reported done once the group committed,
        with the seconds of its own statements."""
        adapter = self._adapter()
        undo: list[Undo] = []
        rows: list[exp.Tuple] = []
        done: list[tuple[Step, ModelResult, float, float]] = []
        if self.prefetch is not None:
            self.prefetch.ahead(steps)
        try:
            with adapter.transaction():
                for step in steps:
                    self.listener("start", step)
                    started = time.perf_counter()
                    result = self._run_model(step, undo, rows)
                    done.append((step, result, started, time.perf_counter()))
                assert len(rows) == len(steps), "every step of a group records one batch"
                for statement in bookkeeping:
                    assert statement.sql is not None
                    adapter.execute(bind_rows(statement.sql, rows))
        except SqlorchError:
            self._forget(undo)
            with self.lock:
                self.inputs.existing -= {entry.created for entry in undo if entry.created is not None}
            if self.adapter.interrupts.event.is_set():
                return [ModelResult(str(step.ref), "skipped", "skip", "interrupted") for step in steps]
            return self._one_by_one(steps)
        return [self._done(step, result, started, ended) for step, result, started, ended in done]

    def _one_by_one(self, steps: list[Step]) -> list[ModelResult]:
        results: list[ModelResult] = []
        for step in steps:
            failed = next((r for r in results if r.status != "success"), None)
            if failed is not None:  # a reader of the failed step (a group is a chain)
                result = ModelResult(str(step.ref), "skipped", "skip", f"upstream {failed.model} failed")
                self.listener("done", result)
            else:
                result = self._run(step, announce=False)
            results.append(result)
        return results

    def _retrying(self, step: Step) -> ModelResult:
        """The step, tried again after a transient error unless the batch it writes committed."""
        name = str(step.ref)
        with self.lock:
            batch = step.batch if step.batch is not None else self.snapshot.latest_batch.get(name, 0) + 1
        run = self._run_seed if step.kind == "seed" else self._run_model
        committed = lambda: batch_recorded(self._adapter(), name, batch)  # noqa: E731
        smaller = lambda: self.smaller_chunks.add(step.ref)  # noqa: E731
        return retry_step(lambda: run(step), self._adapter(), self.inputs.retry, name, committed, on_memory=smaller)

    def execute(self, plan: Plan, threads: int) -> RunResult:
        steps = {step.ref: step for step in plan.steps}
        # relations this build may replace (a step with a choice may rebuild after an input did)
        self.rebuilt = {
            str(self.inputs.physical_of[ref]) for ref, step in steps.items() if step.action not in ("error", "skipped")
        }
        dag = DAG({ref: {d for d in self._depends_on(step) if d in steps} for ref, step in steps.items()})
        by_number: dict[int, list[Step]] = {}  # a transaction group's steps, in order
        for ref in dag.topological_order():
            if (number := steps[ref].group) is not None:
                by_number.setdefault(number, []).append(steps[ref])
        groups = {members[0].ref: members for members in by_number.values()}  # keyed by the first step
        results: dict[TableRef, ModelResult] = {}
        blocked: dict[TableRef, str] = {}
        running: dict[Future[list[ModelResult]], list[TableRef]] = {}
        remaining = list(dag.topological_order())
        with (
            long_lived_frozen() as freeze,
            statement_prefetch(self.adapter.render) as self.prefetch,
            ThreadPoolExecutor(max_workers=max(1, threads)) as pool,
        ):
            while remaining or running:
                for ref in list(remaining):
                    parents = dag.parents[ref]
                    if self.adapter.interrupts.event.is_set():
                        remaining.remove(ref)
                        results[ref] = ModelResult(str(ref), "skipped", "skip", "interrupted")
                    elif ref in blocked:
                        remaining.remove(ref)
                        result = ModelResult(str(ref), "skipped", "skip", blocked[ref])
                        results[ref] = result
                        self.listener("done", result)
                    elif all(p in results for p in parents) and ref in groups:
                        members = groups[ref]
                        for member in members:
                            remaining.remove(member.ref)
                        bookkeeping = plan.groups[members[0].group or 0]
                        running[pool.submit(self._run_group, members, bookkeeping)] = [m.ref for m in members]
                    elif all(p in results for p in parents):
                        remaining.remove(ref)
                        running[pool.submit(lambda step: [self._run(step)], steps[ref])] = [ref]
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    for ref, result in zip(running.pop(future), future.result(), strict=True):
                        results[ref] = result
                        if result.status != "success":
                            for child in dag.descendants([ref]):
                                blocked.setdefault(child, f"upstream {ref} failed")
                freeze()  # the statements of the steps done stay alive with the plan
        self.prefetch = None
        run = RunResult(run_id=self.run_id, results=[results[ref] for ref in dag.topological_order()])
        if not self.adapter.interrupts.event.is_set():
            self._record_runs(run)
        return run

    def _record_runs(self, run: RunResult) -> None:
        rows = [(self.run_id, r.model, r.status, r.action, r.reason, r.rows, r.seconds) for r in run.results]
        try:
            with self.adapter.transaction():
                self.adapter.insert_rows(RUNS, RUN_COLUMNS, rows)
        except SqlorchError:
            pass  # run history is informative; the build's outcome is already committed


@dataclass
class Undo:
    """One batch a group's step recorded in the build's snapshot, and what it replaced."""

    name: str
    batch: int
    latest: int | None  # the relation's latest batch before
    watermarks: dict[tuple[str, str], int | None]  # (consumer, input) -> batch consumed before
    created: TableRef | None = None  # the model's table, first created by the step


class StepRun:
    """One step's statements run in order: consecutive ``transaction`` statements in one
    transaction, choices resolved by their rules, values bound as they come."""

    def __init__(
        self,
        executor: Executor,
        step: Step,
        adapter: Adapter,
        audits: ModelAudits | None,
        rows: list[exp.Tuple] | None = None,
    ) -> None:
        self.executor = executor
        self.rows = rows  # in a transaction group: its batch rows (``Statement.grouped``)
        self.step = step
        self.adapter = adapter
        self.audits = audits
        self.bound: dict[str, int | str] = {}
        self.taken: list[Branch] = []
        self.chunks: int | None = None  # the chunks of keys the step ran in (``Chunks``)
        self.in_chunks = False
        self.started = time.perf_counter()

    def branch(self) -> str | None:
        """The branches taken and why, for ``run_results.json`` (None: the plan held no choice)."""
        if not self.taken:
            return None
        return "; ".join(
            f"{b.name}: {' and '.join(r.describe() for r in b.rules) or 'no earlier branch applied'}"
            for b in self.taken
        )

    def walk(self, items: list[Item], in_transaction: bool = False) -> None:
        failure: BaseException | None = None
        index = 0
        while index < len(items):
            item = items[index]
            group = [item]
            if not in_transaction and item.transaction:
                while index + len(group) < len(items) and items[index + len(group)].transaction:
                    group.append(items[index + len(group)])
            index += len(group)
            if failure is not None:  # after a failure, only what must always run (scratch drops)
                for rest in group:
                    if isinstance(rest, Statement) and rest.always:
                        with contextlib.suppress(SqlorchError):
                            self.run(rest)
                continue
            try:
                if len(group) > 1 or (not in_transaction and item.transaction):
                    with self.adapter.transaction():
                        for member in group:
                            self.run(member, in_transaction=True)
                else:
                    self.run(item, in_transaction)
            except BaseException as error:  # noqa: BLE001 - re-raised once the always-statements ran
                failure = error
        if failure is not None:
            raise failure

    def run(self, item: Item, in_transaction: bool = False) -> None:
        if isinstance(item, Chunks):
            self.run_chunks(item)
            return
        if isinstance(item, Choice):
            branch = next(b for b in item.branches if all(self.holds(rule) for rule in b.rules))
            self.taken.append(branch)
            if branch.action == "full" and self.step.action != "full":
                self.executor._guard_dependent_views(self.step.ref)
            self.walk(branch.statements, in_transaction)
            return
        if item.kind == "let":
            self.bound[item.binds] = item.value
            return
        if item.kind == "audit":
            point = item.audit
            if self.audits is not None and point is not None:
                self.audits.check(self.adapter, point.table, point.columns, point.rest, point.message)
            return
        assert item.sql is not None
        if self.rows is not None and item.grouped == "covered":
            return
        self.bound[MICROSECONDS] = round((time.perf_counter() - self.started) * 1e6)  # the cost it records
        statement = bind(item.sql, self.bound) if item.placeholders else item.sql
        if self.rows is not None and item.grouped == "row":  # bound into a copy, unless nothing was bound
            self.rows.append(batch_row(statement if statement is not item.sql else statement.copy()))
            return
        if item.kind == "count":
            self.bound[item.binds] = int(self.adapter.fetch(statement)[0][0])
        elif item.kind == "unique":
            duplicates = self.adapter.fetch(statement)
            if duplicates:
                model = self.executor.inputs.compiled[self.step.ref].model
                raise SqlorchError(
                    f"unique_key ({', '.join(model.config.unique_key)}) is not unique: "
                    f"{duplicates[0]} appears more than once",
                    path=model.path,
                    hint="fix the model's SQL or the unique_key setting",
                )
        else:
            prefetch = self.executor.prefetch
            count = self.adapter.execute(statement, prefetch.text(item) if prefetch and statement is item.sql else None)
            if item.binds:
                if count is None:
                    raise SqlorchError(
                        f"the {self.adapter.dialect} driver reported no row count for: {statement.sql()[:80]}"
                    )
                # a chunk's rows add to those of the chunks before it
                self.bound[item.binds] = count + (int(self.bound.get(item.binds, 0)) if self.in_chunks else 0)

    def run_chunks(self, chunks: Chunks) -> None:
        """The statements once per chunk of the keys, as many chunks as the rows the inputs
        really changed call for (more after running out of memory), in the open transaction."""
        with self.executor.lock:
            changed = sum(self.executor.snapshot.pending_rows(n, a, u) for n, a, u in chunks.inputs)
        self.chunks = chunks.count(changed, smaller=self.step.ref in self.executor.smaller_chunks)
        self.in_chunks = True
        for chunk in range(self.chunks):
            self.bound[CHUNK], self.bound[CHUNKS] = chunk, self.chunks
            self.walk(list(chunks.statements), in_transaction=True)
        self.in_chunks = False

    def holds(self, rule: Rule) -> bool:
        snapshot = self.executor.snapshot
        with self.executor.lock:
            if rule.test == "whole":
                result = any(snapshot.has_full_batch(name, after, upto) for name, after, upto in rule.inputs)
            elif rule.test == "appended":
                result = all(snapshot.only_appends(name, after, upto) for name, after, upto in rule.inputs)
            elif rule.test in ("rebuild_cheaper", "rows_at_most"):
                changed = sum(snapshot.pending_rows(name, after, upto) for name, after, upto in rule.inputs)
                result = (
                    rebuild_cheaper(changed, rule.threshold)
                    if rule.test == "rebuild_cheaper"
                    else changed <= rule.threshold
                )
            else:
                result = None
        if rule.test == "same_columns":
            physical = self.executor.inputs.physical_of[self.step.ref]
            now = self.adapter.columns(physical) or {}
            result = {name: kind.sql(dialect=self.adapter.dialect) for name, kind in now.items()} == dict(rule.columns)
        assert result is not None, rule.test
        return result != rule.negate
