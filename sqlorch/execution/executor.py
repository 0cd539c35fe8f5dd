"""Walk a plan in dependency order on worker threads; never builds SQL itself.

Each node is re-decided just before it runs, with the batches its inputs actually
produced in this build. A failed node marks its descendants skipped; independent
branches go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

from sqlorch.adapters.base import Adapter
from sqlorch.audits.declared import DeclaredAudits, audit_parents
from sqlorch.audits.run import AuditFailed, AuditResult, model_audits
from sqlorch.audits.sources import SourceAudits
from sqlorch.audits.subject import physical_resolver
from sqlorch.compiler import CompiledModel
from sqlorch.errors import SqlorchError
from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.execution.seeds import decide_seed, execute_seed
from sqlorch.graph.dag import DAG
from sqlorch.planning.cost import Work
from sqlorch.planning.planner import INSERT_ONLY, PARTIAL_AGGREGATES, by_cost, decide_model, pending_changes
from sqlorch.planning.steps import Plan, Step
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef
from sqlorch.state.history import latest_stats
from sqlorch.state.ownership import claim
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


def _planned_work(step: Step, action: str) -> Work | None:
    """The rows the plan estimated the step's form reads and writes, when the build runs
    the form the plan chose (recorded in the run history beside the run's seconds)."""
    if action != step.action or step.estimated_rows_read is None or step.estimated_rows_written is None:
        return None
    return Work(step.estimated_rows_read, step.estimated_rows_written)


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

    def _adapter(self) -> Adapter:
        if not hasattr(self.local, "adapter"):
            self.local.adapter = self.adapter.fork()
        adapter: Adapter = self.local.adapter
        return adapter

    def _record_batch(self, name: str, batch: int, kind: str, rows: int, watermarks: dict[str, int]) -> None:
        """The batch in the build's snapshot (its cost, in ``_sqlorch``, is for the next build's plan)."""
        with self.lock:
            self.snapshot.record_batch(name, batch, kind, rows)
            for input_name, consumed in watermarks.items():
                self.snapshot.watermarks[(name, input_name)] = consumed

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
        adapter = self._adapter()
        state = self.snapshot.relations.get(name)
        decision = decide_seed(seed, state, step.ref in self.inputs.existing, self.inputs.full_refresh)
        if decision.action == "skip":
            return ModelResult(name, "success", "skip", decision.reason, 0, strategy=decision.strategy)
        if decision.action == "full":
            self._guard_dependent_views(step.ref)
        batch = self.snapshot.latest_batch.get(name, 0) + 1
        rows, kind = execute_seed(adapter, seed, self.inputs.physical_of[step.ref], decision, state, batch)
        if kind == "full" or rows:
            self._record_batch(name, batch, kind, rows, {})
        return ModelResult(name, "success", decision.action, decision.reason, rows, strategy=decision.strategy)

    def _run_model(self, step: Step) -> ModelResult:
        started = time.perf_counter()
        compiled = self.inputs.compiled[step.ref]
        name = str(step.ref)
        inputs = sorted(compiled.model.inputs)
        with self.lock:
            changes = pending_changes(self.snapshot, name, inputs)
            watermarks = {str(i): self.snapshot.latest_batch.get(str(i), 0) for i in inputs}
            watermarks_stored = all((name, i) in self.snapshot.watermarks for i in watermarks)
            state = self.snapshot.relations.get(name)
            batch = self.snapshot.latest_batch.get(name, 0) + 1
        # a failed source audit fails the models that would read its change
        source_audits = self.inputs.source_audits.for_inputs(set(changes)) if self.inputs.source_audits else []
        decision = decide_model(
            compiled,
            self.snapshot,
            changes,
            self.inputs.full_refresh,
            step.ref in self.inputs.existing,
            self.adapter.capabilities,
        )
        decision = by_cost(decision, step.cost_winner, step.reason)
        if decision.action == "skip":
            return ModelResult(name, "success", "skip", decision.reason, 0, strategy=decision.strategy)
        # Imported here: a build where every model is skipped never loads the runners and
        # their rewrites.
        from sqlorch.execution.models import ModelContext, execute_full, execute_incremental, execute_insert_only

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
        ctx = ModelContext(
            audits=audits,
            compiled=compiled,
            physical=self.inputs.physical_of[step.ref],
            physical_of=self.inputs.physical_of,
            input_columns=self.inputs.input_columns,
            watermarks=watermarks,
            batch=batch,
            default_schema=self.inputs.project.settings.default_schema,
            state=state,
            watermarks_stored=watermarks_stored,
            started=started,
            work=_planned_work(step, decision.action),
            stats=latest_stats(self.snapshot.runs.get(name, [])),
        )
        adapter = self._adapter()
        if decision.action == "full":
            self._guard_dependent_views(step.ref)
            may_diff = step.ref in self.inputs.existing and not self.inputs.full_refresh and step.rebuild_diffs
            written = execute_full(adapter, ctx, may_diff)
        elif decision.strategy == INSERT_ONLY:
            written = execute_insert_only(adapter, ctx, changes, self.inputs.resolve)
        else:
            fold = decision.strategy == PARTIAL_AGGREGATES
            written = execute_incremental(adapter, ctx, changes, self.inputs.resolve, fold_appends=fold)
        self._record_batch(name, batch, written.kind, written.rows, watermarks)
        with self.lock:
            self.inputs.existing.add(step.ref)
            self.inputs.input_columns[step.ref] = written.columns
        result = ModelResult(
            name, "success", decision.action, decision.reason, written.written, strategy=decision.strategy
        )
        result.audits = [asdict(r) for r in (audits.results if audits else source_audits)]
        return result

    def _depends_on(self, step: Step) -> set[TableRef]:
        """The step's inputs, plus the models its ``relationships`` audits compare against."""
        audits = self.inputs.audits
        if audits is None or self.inputs.audit_mode == "off" or step.ref not in audits.models:
            return set(step.depends_on)
        return set(step.depends_on) | audit_parents(audits.models[step.ref], self.inputs.resolve)

    def _claim(self, ref: TableRef) -> None:
        """Record a relation as sqlorch's before creating it (see ``state/ownership.py``)."""
        relation = self.inputs.physical_of[ref]
        with self.lock:
            if str(relation) in self.inputs.owned:
                return
            self.inputs.owned.add(str(relation))
        claim(self._adapter(), relation)

    def _run(self, step: Step) -> ModelResult:
        self.listener("start", step)
        started = time.perf_counter()
        if step.action == "error":  # failed before the build (compile, ownership): never run
            result = ModelResult(str(step.ref), "error", "skip", "not built", None, error=step.reason)
            self.listener("done", result)
            return result
        try:
            if step.ref not in self.inputs.existing:
                self._claim(step.ref)
            result = self._run_seed(step) if step.kind == "seed" else self._run_model(step)
        except SqlorchError as error:
            if self.adapter.interrupts.event.is_set():  # stopped (Ctrl-C): rolled back, not a failure
                return ModelResult(str(step.ref), "skipped", "skip", "interrupted")
            path = getattr(self.inputs.compiled.get(step.ref), "model", None)
            if error.path is None and path is not None:
                error.path = path.path
            result = ModelResult(str(step.ref), "error", step.action, step.reason, None, error=error.render())
            if isinstance(error, AuditFailed):
                result.audits = [asdict(r) for r in error.results]
        result.seconds = round(time.perf_counter() - started, 3)
        result.estimated_rows = step.estimated_changed_rows
        result.rows_written = result.rows
        self.listener("done", result)
        return result

    def execute(self, plan: Plan, threads: int) -> RunResult:
        steps = {step.ref: step for step in plan.steps}
        # relations this build may replace (re-decided when they run, they rebuild after an input did)
        self.rebuilt = {
            str(self.inputs.physical_of[ref]) for ref, step in steps.items() if step.action not in ("error", "skipped")
        }
        dag = DAG({ref: {d for d in self._depends_on(step) if d in steps} for ref, step in steps.items()})
        results: dict[TableRef, ModelResult] = {}
        blocked: dict[TableRef, str] = {}
        running: dict[Future[ModelResult], TableRef] = {}
        remaining = list(dag.topological_order())
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
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
                    elif all(p in results for p in parents):
                        remaining.remove(ref)
                        running[pool.submit(self._run, steps[ref])] = ref
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    ref = running.pop(future)
                    results[ref] = future.result()
                    if results[ref].status != "success":
                        for child in dag.descendants([ref]):
                            blocked.setdefault(child, f"upstream {ref} failed")
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
