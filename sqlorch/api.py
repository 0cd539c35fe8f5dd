"""Thin composition of the layers: returns data, never prints or exits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.analysis.lineage import RANK, LineageJson
from sqlorch.analysis.lineage_graph import Impact, LineageGraph, LineageResult, Reached
from sqlorch.analysis.schemas import Schema, SchemaMap, columns_read
from sqlorch.audits.calls import AuditCall
from sqlorch.audits.declared import declared_audits
from sqlorch.audits.run import AuditResult, ModelAudits, explain_audits, model_audits
from sqlorch.audits.sources import SourceAudits, audit_sources
from sqlorch.audits.subject import physical_resolver
from sqlorch.config import Target, load_target
from sqlorch.dbt.adoption import adoptable, dbt_built_relations
from sqlorch.dbt.project_file import is_dbt_project
from sqlorch.errors import CompileError, GraphError, SqlorchError
from sqlorch.execution.capture import Captured, capture_source, captured_columns, predict_capture
from sqlorch.execution.executor import BuildInputs, Executor, Listener
from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.execution.retry import RetryPolicy, batch_recorded, retry_step
from sqlorch.execution.seeds import predicted_seed_change
from sqlorch.execution.statements import count_rows
from sqlorch.execution.stop import StopRequest
from sqlorch.gcpause import collector_paused
from sqlorch.graph.dag import DAG
from sqlorch.graph.selection import project_dag, select_nodes
from sqlorch.model_facts import FactsCache, model_keys, model_lineage
from sqlorch.outputs import output_dir
from sqlorch.planning.chunks import default_max_batch_rows
from sqlorch.planning.compiler import CompileCache, CompiledModel, compile_project
from sqlorch.planning.planner import build_plan, decide_seed
from sqlorch.planning.rewrites.kept_aggregates import kept_tables
from sqlorch.planning.rewrites.signed_statements import kept_value_tables, state_is_current
from sqlorch.planning.step_statements import StepTarget
from sqlorch.planning.steps import (
    KEPT_GROUPS,
    SIGNED_DELTAS,
    WINDOW_TAILS,
    Choice,
    Chunks,
    Item,
    KeptState,
    Plan,
    SourceChange,
    Step,
)
from sqlorch.planning.transaction_groups import group_transactions
from sqlorch.project.loader import Project, load_project, make_resolver
from sqlorch.project.sources import check_source_columns
from sqlorch.project.templating import reading_env_vars
from sqlorch.refs import TableRef
from sqlorch.state.lease import DEFAULT_WAIT, Lease, acquire_lease, lost_error
from sqlorch.state.ownership import OWNED, load_owned, not_owned_message, read_owned
from sqlorch.state.store import (
    STATE_TABLES,
    StateSnapshot,
    aggregate_state,
    change_log,
    consumed_batch,
    edge_table,
    ensure_state,
    kept_states_record,
    load_snapshot,
    prune_change_log_statement,
    prune_due,
    shadow_table,
    tail_state,
    tails_record,
)

if TYPE_CHECKING:
    from sqlorch.unittests.runner import UnitTestResult
    from sqlorch.unittests.spec import UnitTest


@dataclass(frozen=True)
class Options:
    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    target: str | None = None
    select: str | None = None
    exclude: str | None = None
    full_refresh: bool = False
    threads: int = 4
    vars: dict[str, Any] | None = None
    audits: str = "on"  # off | warn (run, never block) | on
    # False for unit tests: their few rows always make a rebuild "cheaper", and the
    # incremental path under test would never run
    rebuild_when_cheaper: bool = True
    lease_wait: float = DEFAULT_WAIT  # seconds to wait for another process's lease on the target (0: refuse)


@dataclass
class Session:
    """A loaded project, its target and its graph: what every command starts from."""

    project: Project
    target: Target
    dag: DAG[TableRef]
    selected: set[TableRef]
    physical_of: dict[TableRef, TableRef]

    @property
    def order(self) -> list[TableRef]:
        return [ref for ref in self.dag.topological_order() if ref in self.selected]


def open_session(options: Options) -> Session:
    project = load_project(options.project_dir, options.vars, options.profiles_dir, options.target)
    target = load_target(project.root, options.profiles_dir, options.target)
    dag = project_dag(project)
    dag.topological_order()  # cycles are reported before anything else
    selected = select_nodes(project, dag, options.select, options.exclude)
    physical_of = {ref: target.physical(ref) for ref in project.node_refs()}
    return Session(project, target, dag, selected, physical_of)


@dataclass(frozen=True)
class NodeInfo:
    """One model or seed as ``sqlorch ls`` shows it."""

    relation: str
    kind: str  # model | seed
    materialized: str  # a model's materialization; "seed" for a seed
    path: str  # relative to the project folder

    def to_json(self) -> dict[str, str]:
        return {"relation": self.relation, "kind": self.kind, "materialized": self.materialized, "path": self.path}


def list_nodes(options: Options) -> list[NodeInfo]:
    """The selected models and seeds in dependency order, without a warehouse."""
    session = open_session(options)
    project, nodes = session.project, []
    for ref in session.order:
        model = project.models.get(ref)
        path = model.path if model else project.seeds[ref].path
        materialized = model.config.materialized if model else "seed"
        nodes.append(
            NodeInfo(str(ref), "model" if model else "seed", materialized, str(path.relative_to(project.root)))
        )
    return nodes


def _seed_schemas(project: Project) -> SchemaMap:
    return {ref: seed.read()[0] for ref, seed in project.seeds.items()}


def compile_only(options: Options) -> tuple[dict[TableRef, CompiledModel], set[str]]:
    """Check every model without a warehouse and write ``target/compiled`` + manifest.
    Also returns the environment variables the templates read (the compile stamp's)."""
    with reading_env_vars() as env_vars:
        return compile_and_write(options).models, env_vars


@dataclass
class Compiled:
    """What ``compile`` wrote, kept for the commands built on it (lineage, docs)."""

    session: Session
    models: dict[TableRef, CompiledModel]
    lineage: dict[TableRef, LineageJson | None]
    facts: FactsCache


def compile_and_write(options: Options) -> Compiled:
    session = open_session(options)
    out = output_dir(session.project.root)
    target_key = f"{session.target.type}:{session.target.schema_prefix}:{session.target.database}"
    cache = CompileCache(out / "cache" / "compile.json", target_key)
    previous = set(cache.entries) if cache.written_for == target_key else set()
    compiled = compile_project(
        session.project, session.dag, session.physical_of, seed_schemas=_seed_schemas(session.project), cache=cache
    )
    facts = FactsCache(out / "cache" / "analysis.json")
    lineage = model_lineage(compiled, facts)
    facts.save({item.cache_key for item in compiled.values()})
    dialect = session.target.type
    folders: set[Path] = set()
    # Creating a file costs about a millisecond on some file systems, all of it in the
    # kernel: writer threads overlap that with generating the next model's SQL.
    with collector_paused(), ThreadPoolExecutor(max_workers=4) as writers:
        writes = []
        for ref, item in compiled.items():
            path = out / "compiled" / ref.schema / f"{ref.name}.sql"
            if item.cache_key in previous and path.exists() and path.stat().st_mtime >= item.model.path.stat().st_mtime:
                continue  # unchanged model, unchanged inputs: the file written last time still holds
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            writes.append(writers.submit(path.write_text, item.compiled_sql(dialect) + "\n"))
        for write in writes:
            write.result()  # re-raise the first failed write
    _check_audits_and_tests(session, compiled)
    manifest = {
        "project": session.project.settings.name,
        "target": {"name": session.target.name, "type": session.target.type},
        "models": {
            str(ref): {
                "path": str(item.model.path.relative_to(session.project.root)),
                "relation": str(session.physical_of[ref]),
                "materialized": item.model.config.materialized,
                "depends_on": sorted(str(r) for r in item.model.depends_on),
                "sources": sorted(str(r) for r in item.model.sources),
                "columns": item.columns,
                "tags": list(item.model.config.tags),
                "lineage": lineage[ref],
            }
            for ref, item in compiled.items()
        },
        "seeds": {
            str(ref): str(seed.path.relative_to(session.project.root)) for ref, seed in session.project.seeds.items()
        },
        "edges": sorted([str(p), str(c)] for c, ps in session.dag.parents.items() for p in ps),
    }
    (out / "manifest.json").write_text(json.dumps(manifest))  # compact: indenting is 10x slower
    return Compiled(session, compiled, lineage, facts)


def _check_audits_and_tests(session: Session, compiled: dict[TableRef, CompiledModel]) -> list[UnitTest]:
    """Audit calls and unit-test files, checked against the compiled columns; the tests."""
    from sqlorch.audits.check import check_audits
    from sqlorch.unittests.spec import check_unit_test_columns, load_unit_tests

    check_audits(declared_audits(session.project), session.project, compiled)
    tests = load_unit_tests(session.project)
    check_unit_test_columns(tests, {ref: list(s) for ref, s in _known_schemas(session, compiled).items() if s})
    return tests


def _known_schemas(session: Session, compiled: dict[TableRef, CompiledModel]) -> dict[TableRef, Schema | None]:
    """Columns known without a warehouse: compiled models, seeds, sources declaring columns."""
    schemas: dict[TableRef, Schema | None] = {ref: item.columns for ref, item in compiled.items()}
    schemas.update(_seed_schemas(session.project))
    schemas.update({ref: spec.columns for ref, spec in session.project.sources.items() if spec.columns})
    return schemas


def unit_test(options: Options) -> list[UnitTestResult]:
    """``sqlorch test``: the selected models' unit tests, each on a scratch DuckDB file."""
    from sqlorch.unittests.runner import run_unit_test

    session = open_session(options)
    compiled = compile_project(
        session.project, session.dag, session.physical_of, seed_schemas=_seed_schemas(session.project)
    )
    tests = [t for t in _check_audits_and_tests(session, compiled) if t.model in session.selected]
    schemas = _known_schemas(session, compiled)
    return [run_unit_test(test, session.project, schemas) for test in tests]


@dataclass
class Prepared:
    session: Session
    adapter: Adapter
    snapshot: StateSnapshot
    plan: Plan
    inputs: BuildInputs
    known: dict[TableRef, dict[str, exp.DataType]]  # tables that existed before the build, and their columns
    lease: Lease | None = None  # held by a build (one writer per target), released after it

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()  # on its own connection, which the adapter's close would end (DuckDB)
        self.adapter.close()


def _capture_sources(
    adapter: Adapter,
    session: Session,
    snapshot: StateSnapshot,
    known: dict[TableRef, dict[str, exp.DataType]],
    full_refresh: bool,
    planning: bool,
    capturing: Callable[[TableRef], None] | None = None,
) -> dict[TableRef, Captured | None]:
    """Capture the changes of the selected models' sources (None: nothing written), or with
    ``planning`` predict them, read-only (None: the source is missing). ``capturing`` is
    told of each source before its capture (build progress).
    With ``full_refresh`` each of them is recaptured whole: its change log, shadow and
    watermark start over (consumers outside the selection rebuild on their next build)."""
    sources: set[TableRef] = set()
    for ref in session.selected:
        model = session.project.models.get(ref)
        if model is not None:
            sources |= model.sources
    capture = predict_capture if planning else capture_source
    audits = _source_audit_calls(session.project)
    policy = RetryPolicy(attempts=1 if planning else session.project.settings.retry_attempts)
    captured: dict[TableRef, Captured | None] = {}
    for ref in sorted(sources):
        if capturing is not None:
            capturing(ref)
        batch = snapshot.latest_batch.get(str(ref), 0) + 1
        spec, state = session.project.sources.get(ref), snapshot.relations.get(str(ref))
        read = partial(_columns_read_of, session.project, ref, audits)  # parsed only if asked: a keyed source
        captured[ref] = retry_step(  # a transient error is retried as a model step's is (execution/retry.py)
            partial(capture, adapter, ref, spec, state, batch, known, full_refresh, read),
            adapter,
            policy,
            str(ref),
            partial(batch_recorded, adapter, str(ref), batch),
        )
    return captured


def _source_audit_calls(project: Project) -> Callable[[], dict[TableRef, list[AuditCall]]]:
    """The audits declared on sources, parsed on the first call only."""
    return cache(lambda: declared_audits(project).sources)


def _columns_read_of(
    project: Project, ref: TableRef, audits: Callable[[], dict[TableRef, list[AuditCall]]]
) -> frozenset[str] | None:
    """The names by which the models reading a source, and its audits, may read its
    columns (``columns_read``; None: any column): what its capture keeps
    (``captured_columns``). Every model of the project counts, selected or not: they share
    the source's shadow and change log."""
    readers = [model.ast for model in project.models.values() if ref in model.sources]
    named = columns_read(readers)
    if named is None:
        return None
    calls = audits().get(ref, [])
    audited = {
        node.name.lower()
        for call in calls
        for value in (*call.args, *call.kwargs.values())
        for node in value.find_all(exp.Identifier, exp.Var)
    }
    return named | audited


def _source_changes(
    session: Session, captured: dict[TableRef, Captured | None], known: dict[TableRef, dict[str, exp.DataType]]
) -> list[SourceChange]:
    changes = []
    for ref, found in captured.items():
        spec = session.project.sources.get(ref)
        mode = "fingerprint" if spec is None or not (spec.cursor or spec.unique_key) else "keyed"
        mode = "append-only" if spec is not None and spec.append_only else mode
        if ref not in known:
            changes.append(SourceChange(str(ref), mode, "missing", 0, 0, "not in the warehouse"))
            continue
        found = found or Captured()
        reason = found.reason or ("unchanged" if not found.batches else "")
        changes.append(SourceChange(str(ref), mode, found.kind, found.rows, len(found.batches), reason))
    return changes


def _catalog(
    adapter: Adapter, session: Session, sources: set[TableRef], extra: tuple[TableRef, ...] = ()
) -> dict[TableRef, dict[str, exp.DataType]]:
    """The columns of every table a build asks about up front, in one catalog query: the
    state tables, the sources with their change logs, shadows and edges, every node's table
    (and ``extra`` tables the caller needs)."""
    tables = [*STATE_TABLES, OWNED, *sorted(sources), *session.physical_of.values(), *extra]
    tables += [table for ref in sorted(sources) for table in (change_log(ref), shadow_table(ref), edge_table(ref))]
    tables += [change_log(ref) for ref in sorted(session.selected)]  # the plan's statements depend on them
    return adapter.columns_many(tables)


def _type_texts(known: dict[TableRef, dict[str, exp.DataType]], dialect: str) -> dict[TableRef, dict[str, str]]:
    """The catalog's column types as the target writes them, each distinct type rendered
    once (a project of 1,000 models has a few types over thousands of columns)."""
    texts: dict[exp.DataType, str] = {}
    out: dict[TableRef, dict[str, str]] = {}
    for table, columns in known.items():
        out[table] = {}
        for name, kind in columns.items():
            if kind not in texts:
                texts[kind] = kind.sql(dialect=dialect)
            out[table][name] = texts[kind]
    return out


def _planning_target(target: Target) -> Target:
    """The target a plan connects to (read-only): a DuckDB file that does not exist yet is
    planned as an empty in-memory warehouse, since connecting to the path would create the
    file; one that exists is opened read-only."""
    path = str(target.settings.get("path", ":memory:"))
    if target.type != "duckdb" or path.startswith(":") or Path(path).exists():
        return target
    return replace(target, settings={**target.settings, "path": ":memory:"})


def prepare(
    options: Options,
    stop: StopRequest | None = None,
    planning: bool = False,
    capturing: Callable[[TableRef], None] | None = None,
    lease: bool = False,
) -> Prepared:
    """Connect, capture source changes, compile against real schemas and plan. ``planning``
    (plan, explain, impact): nothing is built after, and nothing is written: the connection
    is read-only, source changes are predicted instead of captured, and state tables that
    do not exist yet read as empty (no warehouse file, schema, table or row is created).
    ``lease``: take the target's lease first (a build), held until ``Prepared.close()``."""
    session = open_session(options)
    if stop is not None:
        stop.total = len(session.selected)
    if planning:
        adapter = connect(_planning_target(session.target), read_only=True)
    else:
        adapter = connect(session.target, lock_timeout=options.lease_wait)
    if stop is not None:
        stop.attach(adapter)
    held = None
    try:
        project = session.project
        if lease:
            expiry = project.settings.lease_expiry
            held = acquire_lease(adapter, "build", options.lease_wait, expiry, adapter.interrupts.interrupt)
        source_refs = {s for m in project.models.values() for s in m.sources}
        known = _catalog(adapter, session, source_refs)
        for ref, spec in project.sources.items():
            if ref in known:
                check_source_columns(ref, spec, known[ref])
        if planning:
            snapshot = load_snapshot(adapter, known)
        else:
            ensure_state(adapter, known)
            snapshot = load_snapshot(adapter)
        captured = _capture_sources(adapter, session, snapshot, known, options.full_refresh, planning, capturing)
        if planning:  # the batches the build's capture will record
            for ref, found in captured.items():
                for batch, kind, rows in found.batches if found is not None else ():
                    snapshot.record_batch(str(ref), batch, kind, rows)
        elif any(found is not None for found in captured.values()):
            snapshot = load_snapshot(adapter)
        source_schemas: SchemaMap = {
            ref: {name: kind.sql(dialect=adapter.dialect) for name, kind in known[ref].items()}
            for ref in source_refs
            if ref in known
        }
        seed_schemas = _seed_schemas(project)
        cache = CompileCache(output_dir(project.root) / "cache" / "build-compile.json")
        failed: dict[TableRef, SqlorchError] = {}
        compiled = compile_project(
            project, session.dag, session.physical_of, source_schemas, seed_schemas, cache, failed
        )
        owned = (read_owned if planning else load_owned)(
            adapter, known, [session.physical_of[ref] for ref in project.node_refs() if str(ref) in snapshot.relations]
        )
        _check_ownership(session, known, owned, failed)
        existing = {ref for ref in session.selected if session.physical_of[ref] in known}
        # a keyed source's change log holds the columns its capture keeps
        audits = _source_audit_calls(project)
        input_columns: dict[TableRef, list[str]] = {
            ref: list(
                captured_columns(project.sources.get(ref), known[ref], partial(_columns_read_of, project, ref, audits))
            )
            for ref in source_refs
            if ref in known
        }
        input_columns.update({ref: list(cols) for ref, cols in seed_schemas.items()})
        for ref, item in compiled.items():
            if item.columns is not None:
                input_columns[ref] = list(item.columns)
        input_rows = _input_rows(adapter, session, compiled, snapshot, existing, known)
        seed_decisions = {
            ref: decide_seed(
                project.seeds[ref], snapshot.relations.get(str(ref)), ref in existing, options.full_refresh
            )
            for ref in session.selected
            if ref in project.seeds
        }
        declared = declared_audits(project)
        target = StepTarget(
            dialect=adapter.dialect,
            physical_of=session.physical_of,
            input_columns=input_columns,
            default_schema=project.settings.default_schema,
            resolve=make_resolver(project),
            catalog=_type_texts(known, adapter.dialect),
            owned=owned,
            audited=set()
            if declared is None or options.audits == "off"
            else {ref for ref, calls in declared.models.items() if calls},
            consumed=frozenset(i for model in project.models.values() for i in model.inputs),
            max_batch_rows=project.settings.max_batch_rows or default_max_batch_rows(),
        )
        plan = build_plan(
            project,
            session.order,
            compiled,
            snapshot,
            seed_decisions,
            {
                ref: predicted_seed_change(
                    adapter, project.seeds[ref], session.physical_of[ref], decision, snapshot.relations.get(str(ref))
                )
                for ref, decision in seed_decisions.items()
            },
            existing,
            input_rows,
            options.full_refresh,
            adapter.capabilities,
            target,
            choose_by_cost=options.rebuild_when_cheaper,
        )
        cache.save()  # the fingerprints the plan looked up (``CompileCache.fingerprint``)
        _mark_failed(plan, session.dag, failed)
        plan.groups = group_transactions(plan.steps, adapter.capabilities, target.audited)
        plan.sources = _source_changes(session, captured, known)
        if planning:  # shown by plan; a build has no use for the counts
            _note_kept_state(adapter, plan, snapshot, compiled)
            _note_kept_tables(adapter, plan, snapshot, compiled)
    except BaseException:
        if held is not None:
            held.release()
        adapter.close()
        if held is not None and held.lost.is_set():
            raise lost_error() from None
        raise
    for step in plan.steps:
        step.reason = _noted(step.reason, project.notes.get(step.ref))
    inputs = BuildInputs(
        project,
        compiled,
        session.physical_of,
        input_columns,
        existing,
        input_rows,
        options.full_refresh,
        target.resolve,
        owned,
        audits=declared,
        audit_mode=options.audits,
        retry=RetryPolicy(attempts=project.settings.retry_attempts),
    )
    return Prepared(session, adapter, snapshot, plan, inputs, known, held)


def _noted(reason: str, notes: list[str] | None) -> str:
    """A step's reason followed by what loading found out about the model (a dbt
    project's superseded incremental logic, tests not translated)."""
    return "; ".join([reason, *notes]) if notes else reason


def _noting(project: Project, listener: Listener | None) -> Listener | None:
    """The build listener, seeing each model's result with its notes (which the run
    results then carry too)."""
    if not project.notes:
        return listener
    by_name = {str(ref): notes for ref, notes in project.notes.items()}

    def noted(event: str, item: ModelResult | Step | AuditResult) -> None:
        if event == "done" and isinstance(item, ModelResult) and item.model in by_name:
            item.reason = _noted(item.reason, by_name[item.model])
        if listener is not None:
            listener(event, item)

    return noted


def _check_ownership(
    session: Session,
    known: dict[TableRef, dict[str, exp.DataType]],
    owned: set[str],
    failed: dict[TableRef, SqlorchError],
) -> None:
    """A selected model or seed whose relation exists but was not created by sqlorch fails
    (that node only: its descendants are skipped); nothing is ever written to it."""
    project = session.project
    built_by_dbt: set[tuple[str, str]] | None = None  # dbt's manifest, read only when a relation is not ours
    for ref in session.selected:
        relation = session.physical_of[ref]
        if ref in failed or relation not in known or str(relation) in owned:
            continue
        if built_by_dbt is None:
            built_by_dbt = dbt_built_relations(project.root) if is_dbt_project(project.root) else set()
        if adoptable(relation, built_by_dbt):
            # the project's own dbt built it: the build claims it before replacing it
            project.notes.setdefault(ref, []).append(f"{relation} was built by this project's dbt: taken over")
            continue
        node = project.models.get(ref) or project.seeds.get(ref)
        failed[ref] = SqlorchError(
            not_owned_message(relation),
            path=node.path if node is not None else None,
            hint="rename the model or seed (or give it another schema); if the table really is "
            "sqlorch's to replace, drop it first",
        )


def _note_kept_state(
    adapter: Adapter, plan: Plan, snapshot: StateSnapshot, compiled: dict[TableRef, CompiledModel]
) -> None:
    """The group state each step folding signed deltas keeps, and its size, and the same of
    its DISTINCT values (one count per table: what ``plan`` shows and ``--full-refresh`` rebuilds)."""
    folding = [step for step in plan.steps if step.strategy == SIGNED_DELTAS]
    if not folding:
        return
    values = {step.ref: kept_value_tables(compiled[step.ref]) for step in folding if step.ref in compiled}
    present = adapter.columns_many(
        [aggregate_state(step.ref) for step in folding] + [t for tables in values.values() for t in tables]
    )

    def size(table: TableRef) -> int | None:
        return int(adapter.fetch(count_rows(table))[0][0]) if table in present else None

    for step in folding:
        table = aggregate_state(step.ref)
        rows = size(table)
        current = (
            rows is not None
            and step.batch is not None
            and state_is_current(snapshot.aggregate_states.get(str(step.ref)), step.batch)
        )
        kept = tuple((str(t), size(t)) for t in values.get(step.ref, []))
        step.kept_state = KeptState(str(table), rows, current, kept)


def _note_kept_tables(
    adapter: Adapter, plan: Plan, snapshot: StateSnapshot, compiled: dict[TableRef, CompiledModel]
) -> None:
    """The tables of state each step recomputing from kept groups or extending window tails
    keeps, and their rows (what ``plan`` shows and ``--full-refresh`` rebuilds), in one
    catalog query: the groups of its aggregated derived tables, or one tail per partition."""
    kinds = {
        KEPT_GROUPS: (lambda ref: kept_tables(compiled[ref]), kept_states_record, "group"),
        WINDOW_TAILS: (lambda ref: [tail_state(ref)], tails_record, "partition tail"),
    }
    steps = [step for step in plan.steps if step.strategy in kinds and step.ref in compiled]
    if not steps:
        return
    tables = {step.ref: kinds[step.strategy][0](step.ref) for step in steps}
    present = adapter.columns_many([t for kept in tables.values() for t in kept])
    for step in steps:
        _, record, unit = kinds[step.strategy]
        sizes = [(str(t), int(adapter.fetch(count_rows(t))[0][0]) if t in present else None) for t in tables[step.ref]]
        recorded = snapshot.aggregate_states.get(record(step.ref))
        current = all(n is not None for _, n in sizes) and step.batch is not None
        current = current and state_is_current(recorded, step.batch or 0)
        (table, rows), *more = sizes
        step.kept_state = KeptState(table, rows, current, more=tuple(more), unit=unit)


def _mark_failed(plan: Plan, dag: DAG[TableRef], failed: dict[TableRef, SqlorchError]) -> None:
    """Steps of nodes that failed before the build (compile, ownership) become ``error``,
    their descendants ``skipped``: the plan says what the build will do."""
    blocked: dict[TableRef, TableRef] = {}
    for ref in dag.topological_order():
        if ref in failed:
            for child in dag.descendants([ref]):
                blocked.setdefault(child, ref)
    for step in plan.steps:
        if step.ref in failed:
            step.action, step.reason = "error", failed[step.ref].render()
        elif step.ref in blocked:
            step.action, step.reason = "skipped", f"upstream {blocked[step.ref]} failed"
        else:
            continue
        step.strategy, step.key, step.estimated_changed_rows, step.estimated_full_rows = "", None, None, None
        step.statements = []


def _input_rows(
    adapter: Adapter,
    session: Session,
    compiled: dict[TableRef, CompiledModel],
    snapshot: StateSnapshot,
    existing: set[TableRef],
    known: dict[TableRef, dict[str, exp.DataType]],
) -> dict[TableRef, int]:
    """Row counts of the inputs of models that have pending changes (for the cost estimate)."""
    wanted: set[TableRef] = set()
    for ref in session.selected:
        item = compiled.get(ref)
        if item is None:
            continue
        if any(snapshot.pending(str(ref), str(i)) for i in item.model.inputs):
            wanted |= item.model.inputs
    counts: dict[TableRef, int] = {}
    for ref in wanted:
        relation = session.physical_of.get(ref, ref)
        if ref in session.physical_of and ref not in existing and ref in session.selected:
            continue
        if relation in known:
            counts[ref] = int(adapter.fetch(count_rows(relation))[0][0])
    # the groups a model keeps of its aggregated derived tables: what its incremental form reads
    kept = [
        table
        for ref in session.selected
        if ref in compiled and any(snapshot.pending(str(ref), str(i)) for i in compiled[ref].model.inputs)
        for table in kept_tables(compiled[ref])
    ]
    for table in adapter.columns_many(kept) if kept else {}:
        counts[table] = int(adapter.fetch(count_rows(table))[0][0])
    return counts


def plan(options: Options, stop: StopRequest | None = None) -> Plan:
    prepared = prepare(options, stop, planning=True)
    prepared.adapter.close()
    return prepared.plan


def build(
    options: Options,
    listener: Listener | None = None,
    stop: StopRequest | None = None,
    capturing: Callable[[TableRef], None] | None = None,
) -> RunResult:
    """Run on a thread of its own when ``stop`` is given: the caller's thread takes the
    signals and pulls ``stop``. A stopped build returns what finished (the rest ``skipped``
    with the reason ``interrupted``); every model either committed whole or not at all."""
    prepared = prepare(options, stop, capturing=capturing, lease=True)
    try:
        # a schema holding a table the build already knows of exists
        present = {table.schema for table in prepared.known}
        for schema in sorted({prepared.session.physical_of[ref].schema for ref in prepared.session.selected}):
            if schema not in present:
                prepared.adapter.ensure_schema(schema)
        snapshot = prepared.snapshot
        latest, watermarks = dict(snapshot.latest_batch), dict(snapshot.watermarks)
        prepared.inputs.source_audits = _audit_sources(prepared, options)
        listener = _noting(prepared.session.project, listener)
        executor = Executor(prepared.adapter, snapshot, prepared.inputs, uuid.uuid4().hex[:12], listener)
        result = executor.execute(prepared.plan, options.threads)
        if stop is None or not stop.stopped:  # stopped: as a build that died before its prune
            moved = {name for name, batch in snapshot.latest_batch.items() if latest.get(name) != batch}
            moved |= {
                name
                for (consumer, name), batch in snapshot.watermarks.items()
                if watermarks.get((consumer, name)) != batch
            }
            _prune_change_logs(prepared, moved, latest, watermarks)
    except SqlorchError:
        if prepared.lease is not None and prepared.lease.lost.is_set():
            raise lost_error() from None  # stopped in whatever statement ran when it was lost
        raise
    finally:
        prepared.close()
    result.write(output_dir(prepared.session.project.root) / "run_results.json")
    if prepared.lease is not None and prepared.lease.lost.is_set():
        raise lost_error()
    return result


def _audit_sources(prepared: Prepared, options: Options) -> SourceAudits | None:
    """Source audits on the captured changes the selected models are about to read."""
    declared = prepared.inputs.audits
    if declared is None or not declared.sources:
        return None
    project = prepared.session.project
    consumers: dict[TableRef, list[TableRef]] = {}
    for ref in prepared.session.selected:
        model = project.models.get(ref)
        for source in model.sources if model is not None else ():
            if source in declared.sources:
                consumers.setdefault(source, []).append(ref)

    relation_of = physical_resolver(prepared.inputs.resolve, prepared.session.physical_of)
    return audit_sources(prepared.adapter, declared, options.audits, project, consumers, prepared.snapshot, relation_of)


def _prune_change_logs(
    prepared: Prepared, moved: set[str], latest: dict[str, int], watermarks: dict[tuple[str, str], int]
) -> None:
    """Drop change-log batches that every consumer in the project has consumed, where due
    (``state.store.prune_due``: large ones at once, small ones every few batches).

    Only for the relations in ``moved`` (a new batch, or a consumer's watermark advanced in
    this build): for any other, the prune would delete what an earlier build's already did.
    ``latest`` and ``watermarks``: the state before the build. A build that died before its
    prune leaves consumed batches behind until the relation next moves; consumers only read
    batches past their own watermark, so nothing reads them.
    """
    project, adapter, snapshot = prepared.session.project, prepared.adapter, prepared.snapshot
    consumers: dict[TableRef, list[str]] = {}
    for ref, model in project.models.items():
        for input_ref in model.inputs:
            consumers.setdefault(input_ref, []).append(str(ref))
    relations = [*project.models, *project.seeds, *{s for m in project.models.values() for s in m.sources}]
    consumed: dict[TableRef, int] = {}
    for relation in relations:
        name, readers = str(relation), consumers.get(relation, [])
        if name not in moved:
            continue
        before = consumed_batch(name, readers, watermarks, latest.get(name, 0))
        now = consumed_batch(name, readers, snapshot.watermarks, snapshot.latest_batch.get(name, 0))
        if prune_due(name, before, now, snapshot):
            consumed[relation] = now
    relations = list(consumed)
    # a change log the build found is still there (no step drops one for good): the catalog
    # is asked only about the others, which this build may have created
    unknown = [change_log(relation) for relation in relations if change_log(relation) not in prepared.known]
    logs = {*(log for log in map(change_log, relations) if log in prepared.known), *adapter.columns_many(unknown)}
    with adapter.transaction():  # one commit, not one per change log (a chain of 1,000 has 1,000)
        for relation in relations:
            if change_log(relation) in logs:
                adapter.execute(prune_change_log_statement(relation, consumed[relation]))


def explain(options: Options, model_name: str) -> list[tuple[str, str]]:
    """The statements the plan holds for one model, as (title, SQL) pairs: each exactly as
    the build sends it (placeholders for the row counts it binds while running), a choice's
    branches each under its rule, and the audit queries where the audits run."""
    prepared = prepare(options, planning=True)
    prepared.adapter.close()
    matches = [s for s in prepared.plan.steps if str(s.ref) == model_name or s.ref.name == model_name]
    if not matches:
        raise GraphError(f"--explain: no selected model named '{model_name}'")
    step = matches[0]
    out = [("decision", f"-- {step.action}: {step.reason}")]
    if step.group is not None:
        shared = [str(s.ref) for s in prepared.plan.steps if s.group == step.group]
        span = f"{len(shared)} steps, {shared[0]} to {shared[-1]}"
        out.append(("transaction", f"-- commits in one transaction with the other steps of its chain ({span})"))
    if step.kind == "seed":
        out.append(("seed", f"-- load {step.ref} from its CSV file"))
    audits = None
    declared = prepared.inputs.audits
    if declared is not None and step.kind == "model":
        relation_of = physical_resolver(prepared.inputs.resolve, prepared.session.physical_of)
        audits = model_audits(declared.models.get(step.ref), str(step.ref), options.audits, declared, relation_of)
    out += _explain_items(step.statements, prepared.plan.dialect, audits)
    if step.group is not None:
        last = [s for s in prepared.plan.steps if s.group == step.group][-1]
        title = f"bookkeeping of transaction group {step.group}, after {last.ref}, in its transaction"
        out.append((title, "-- the batches and watermarks of all its steps"))
        out += _explain_items([*prepared.plan.groups[step.group]], prepared.plan.dialect, None, 1)
    return out


_GROUPED = {  # ``Statement.grouped``, as ``--explain`` says it
    "row": "in a transaction group: a row of the group's batch insert instead",
    "covered": "in a transaction group: the group's watermark statements instead",
}


def _explain_items(
    items: list[Item], dialect: str, audits: ModelAudits | None, depth: int = 0
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    indent = "  " * depth
    for item in items:
        if isinstance(item, Chunks):
            out.append((f"{indent}{item.describe()} [in transaction]", "-- $chunk: 0 to $chunks - 1"))
            out += _explain_items(list(item.statements), dialect, audits, depth + 1)
        elif isinstance(item, Choice):
            for number, branch in enumerate(item.branches, 1):
                rule = " and ".join(r.describe() for r in branch.rules) or "otherwise"
                out.append(
                    (
                        f"{indent}branch {number} '{branch.name}' when {rule}",
                        f"-- {branch.action} ({branch.strategy}): {branch.reason}",
                    )
                )
                out += _explain_items(branch.statements, dialect, audits, depth + 1)
        elif item.kind == "audit" and item.audit is not None:
            out += [
                (indent + title, sql)
                for title, sql in explain_audits(audits, item.audit.table, item.audit.columns, dialect)
            ]
        elif item.kind != "audit":
            notes = [n for n, on in (("in transaction", item.transaction), ("always", item.always)) if on]
            notes += [_GROUPED[item.grouped]] if item.grouped else []
            binds = [f"binds {item.binds}"] if item.binds and item.kind != "let" else []
            suffix = f" [{', '.join(notes + binds)}]" if notes or binds else ""
            out.append((f"{indent}{item.purpose}{suffix}", item.render(dialect)))
    return out


def migrate_from_dbt(options: Options, out: Path) -> list[str]:
    """Write the dbt project in ``options.project_dir`` as a plain sqlorch project in
    ``out``; returns what could not be carried over."""
    from sqlorch.dbt.migrate import check_out_dir, migrate_project
    from sqlorch.dbt.project_file import DBT_PROJECT_FILE, is_dbt_project
    from sqlorch.errors import ConfigError

    root = options.project_dir.resolve()
    if not is_dbt_project(root):
        raise ConfigError(f"no {DBT_PROJECT_FILE} in {root}", path=root, hint="pass the dbt project's --project-dir")
    check_out_dir(out)  # before loading, which writes the project's parse cache
    project = load_project(root, options.vars, options.profiles_dir, options.target)
    return migrate_project(project, out.resolve())


def lineage_graph(compiled: Compiled) -> LineageGraph:
    return LineageGraph({str(ref): lineage for ref, lineage in compiled.lineage.items() if lineage is not None})


def lineage(options: Options, name: str, downstream: bool = False) -> LineageResult:
    """``sqlorch lineage MODEL.COLUMN``: compile (no warehouse), then walk the column graph."""
    compiled = compile_and_write(options)
    unknown = {str(ref) for ref, found in compiled.lineage.items() if found is None}
    graph = lineage_graph(compiled)
    try:
        column = graph.find(name)
    except GraphError:
        relation = name.lower().rpartition(".")[0]
        if any(relation in (model, model.rpartition(".")[2]) for model in unknown):
            raise CompileError(
                f"the lineage of {relation} is not known: the columns of its inputs are not",
                hint="declare the columns of its sources (columns: in the sources YAML)",
            ) from None
        raise
    reached = graph.downstream(column) if downstream else graph.upstream(column)
    own = graph.models[column[0]][column[1]]["kind"] if graph.is_model(column[0]) else None
    return LineageResult(column, own, downstream, reached, graph)


@dataclass
class DocsResult:
    page: Path  # the index.html to open
    nodes: int
    runs_note: str | None  # why no run history is shown, if it is not


def docs(options: Options, out: Path | None = None, inputs_digest: str | None = None) -> DocsResult:
    """``sqlorch docs``: the site data from the last docs when ``inputs_digest`` (see
    ``compile_stamp.inputs_digest``) says nothing changed, else from a compile (no
    warehouse needed); then the run ledger when the target is reachable; then the static
    site (default ``target/docs/``)."""
    from sqlorch.docs.cache import load_site, save_site
    from sqlorch.docs.runs import fetch_runs
    from sqlorch.docs.site import with_audit_results, with_runs, write_site

    root = options.project_dir.resolve()
    site = load_site(root, inputs_digest) if inputs_digest else None
    if site is None:
        with reading_env_vars() as env_vars:
            site = _site_from_compile(options)
        if inputs_digest:
            save_site(root, inputs_digest, env_vars, site)
    target = load_target(root, options.profiles_dir, options.target)
    runs, note = fetch_runs(target)
    site = with_audit_results(with_runs(site, runs, note), output_dir(root) / "run_results.json")
    with collector_paused():
        page = write_site(out if out is not None else output_dir(root) / "docs", site)
    return DocsResult(page, len(site["nodes"]), note)


def _site_from_compile(options: Options) -> dict[str, Any]:
    from sqlorch.docs.site import ModelDoc, site_data

    compiled = compile_and_write(options)
    with collector_paused():  # a full collection over 10,000 compiled models costs seconds
        keys = model_keys(compiled.models, compiled.facts)
        compiled.facts.save({item.cache_key for item in compiled.models.values()})
        project = compiled.session.project
        folder = output_dir(project.root) / "compiled"
        models = {
            ref: ModelDoc(
                compiled_sql=(folder / ref.schema / f"{ref.name}.sql").read_text(encoding="utf-8"),
                columns=item.columns,
                lineage=compiled.lineage[ref],
                key=keys[ref],
            )
            for ref, item in compiled.models.items()
        }
        edges = [(i, ref) for ref, item in compiled.models.items() for i in sorted(item.model.inputs)]
        declared = declared_audits(project)
        audits = {
            str(ref): [(call.text, call.blocking) for call in calls]
            for ref, calls in [*declared.models.items(), *declared.sources.items()]
        }
        return site_data(project, edges, models, compiled.session.target.name, audits)


def plan_with_impact(options: Options, stop: StopRequest | None = None) -> tuple[Plan, list[Impact]]:
    """``plan``, plus the impact of each changed model's SQL on the columns downstream.

    Without the old SQL the change cannot be narrowed to some columns, so every column of
    the changed model counts as changed: the list can only be too long, never too short."""
    prepared = prepare(options, stop, planning=True)
    prepared.adapter.close()
    compiled = prepared.inputs.compiled
    changed = [
        step.ref
        for step in prepared.plan.steps
        if step.kind == "model"
        and (state := prepared.snapshot.relations.get(str(step.ref))) is not None
        and state.fingerprint != compiled[step.ref].fingerprint
    ]
    if not changed:
        return prepared.plan, []
    facts = FactsCache(output_dir(prepared.session.project.root) / "cache" / "analysis.json")
    lineage = model_lineage(compiled, facts)
    facts.save({item.cache_key for item in compiled.values()} | set(facts.entries))
    graph = LineageGraph({str(ref): found for ref, found in lineage.items() if found is not None})
    impacts = []
    for ref in changed:
        reached: dict[tuple[str, str], Reached] = {}
        for column in graph.models.get(str(ref), {}):
            for found in graph.downstream((str(ref), column)):
                best = reached.get(found.column)
                if found.column[0] != str(ref) and (best is None or RANK[found.kind] < RANK[best.kind]):
                    reached[found.column] = found
        impacts.append(Impact(str(ref), sorted(reached.values(), key=lambda r: r.column)))
    return prepared.plan, impacts


def check_sources(
    adapter: Adapter, session: Session, extra: list[TableRef] | None = None
) -> tuple[StateSnapshot, dict[TableRef, dict[str, exp.DataType]]]:
    """The tick of ``sqlorch run``: capture every source of the selected models (the build's
    own capture: one cheap query per unchanged source, nothing written) and return the state
    with the catalog, which also covers ``extra`` tables."""
    project = session.project
    sources = {s for ref in session.selected if (m := project.models.get(ref)) is not None for s in m.sources}
    known = _catalog(adapter, session, sources, tuple(extra or ()))
    for ref in sorted(sources):
        spec = project.sources.get(ref)
        if spec is not None and ref in known:
            check_source_columns(ref, spec, known[ref])
    ensure_state(adapter, known)
    snapshot = load_snapshot(adapter)
    captured = _capture_sources(adapter, session, snapshot, known, False, planning=False)
    if any(found is not None for found in captured.values()):
        snapshot = load_snapshot(adapter)
    return snapshot, known
