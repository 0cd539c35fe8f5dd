"""Thin composition of the layers: returns data, never prints or exits."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.analysis.schemas import SchemaMap
from sqlorch.compiler import CompileCache, CompiledModel, compile_project
from sqlorch.config import Target, load_target
from sqlorch.execution.capture import capture_source
from sqlorch.execution.executor import BuildInputs, Executor, Listener
from sqlorch.execution.results import RunResult
from sqlorch.execution.seeds import decide_seed
from sqlorch.execution.statements import count_rows
from sqlorch.gcpause import collector_paused
from sqlorch.graph.dag import DAG
from sqlorch.graph.selection import project_dag, select_nodes
from sqlorch.planning.planner import build_plan
from sqlorch.planning.steps import Plan
from sqlorch.project.loader import Project, load_project, make_resolver
from sqlorch.project.seeds import read_seed
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    STATE_TABLES,
    StateSnapshot,
    change_log,
    edge_table,
    ensure_state,
    load_snapshot,
    prune_change_log_statement,
    shadow_table,
    work_table,
)


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
    project = load_project(options.project_dir, options.vars)
    target = load_target(project.root, options.profiles_dir, options.target)
    dag = project_dag(project)
    dag.topological_order()  # cycles are reported before anything else
    selected = select_nodes(project, dag, options.select, options.exclude)
    physical_of = {ref: target.physical(ref) for ref in project.node_refs()}
    return Session(project, target, dag, selected, physical_of)


def _seed_schemas(project: Project) -> SchemaMap:
    return {ref: read_seed(seed.path)[0] for ref, seed in project.seeds.items()}


def compile_only(options: Options) -> dict[TableRef, CompiledModel]:
    """Check every model without a warehouse and write ``target/compiled`` + manifest."""
    session = open_session(options)
    out = session.project.root / "target"
    target_key = f"{session.target.type}:{session.target.schema_prefix}:{session.target.database}"
    cache = CompileCache(out / "cache" / "compile.json", target_key)
    previous = set(cache.entries) if cache.written_for == target_key else set()
    compiled = compile_project(
        session.project, session.dag, session.physical_of, seed_schemas=_seed_schemas(session.project), cache=cache
    )
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
            }
            for ref, item in compiled.items()
        },
        "seeds": {
            str(ref): str(seed.path.relative_to(session.project.root)) for ref, seed in session.project.seeds.items()
        },
        "edges": sorted([str(p), str(c)] for c, ps in session.dag.parents.items() for p in ps),
    }
    (out / "manifest.json").write_text(json.dumps(manifest))  # compact: indenting is 10x slower
    return compiled


@dataclass
class Prepared:
    session: Session
    adapter: Adapter
    snapshot: StateSnapshot
    plan: Plan
    inputs: BuildInputs
    known: dict[TableRef, dict[str, exp.DataType]]  # tables that existed before the build, and their columns


def _capture_sources(
    adapter: Adapter,
    session: Session,
    snapshot: StateSnapshot,
    known: dict[TableRef, dict[str, exp.DataType]],
    full_refresh: bool,
) -> bool:
    """Capture the changes of the selected models' sources; True if any capture wrote state.
    With ``full_refresh`` each of them is recaptured whole: its change log, shadow and
    watermark start over (consumers outside the selection rebuild on their next build)."""
    sources: set[TableRef] = set()
    for ref in session.selected:
        model = session.project.models.get(ref)
        if model is not None:
            sources |= model.sources
    wrote = False
    for ref in sorted(sources):
        name = str(ref)
        captured = capture_source(
            adapter,
            ref,
            session.project.sources.get(ref),
            snapshot.relations.get(name),
            snapshot.latest_batch.get(name, 0) + 1,
            known,
            full_refresh,
        )
        wrote = wrote or captured is not None
    return wrote


def _catalog(adapter: Adapter, session: Session, sources: set[TableRef]) -> dict[TableRef, dict[str, exp.DataType]]:
    """The columns of every table a build asks about up front, in one catalog query: the
    state tables, the sources with their change logs, shadows and edges, every node's table."""
    tables = [*STATE_TABLES, *sorted(sources), *session.physical_of.values()]
    tables += [table for ref in sorted(sources) for table in (change_log(ref), shadow_table(ref), edge_table(ref))]
    return adapter.columns_many(tables)


def prepare(options: Options) -> Prepared:
    """Connect, capture source changes, compile against real schemas and plan."""
    session = open_session(options)
    adapter = connect(session.target)
    try:
        project = session.project
        source_refs = {s for m in project.models.values() for s in m.sources}
        known = _catalog(adapter, session, source_refs)
        ensure_state(adapter, known)
        snapshot = load_snapshot(adapter)
        if _capture_sources(adapter, session, snapshot, known, options.full_refresh):
            snapshot = load_snapshot(adapter)
        source_schemas: SchemaMap = {
            ref: {name: kind.sql(dialect=adapter.dialect) for name, kind in known[ref].items()}
            for ref in source_refs
            if ref in known
        }
        seed_schemas = _seed_schemas(project)
        cache = CompileCache(project.root / "target" / "cache" / "build-compile.json")
        compiled = compile_project(project, session.dag, session.physical_of, source_schemas, seed_schemas, cache)
        existing = {ref for ref in session.selected if session.physical_of[ref] in known}
        input_columns: dict[TableRef, list[str]] = {ref: list(cols) for ref, cols in source_schemas.items()}
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
        plan = build_plan(
            project,
            session.order,
            compiled,
            snapshot,
            seed_decisions,
            existing,
            input_rows,
            options.full_refresh,
            adapter.capabilities,
        )
    except BaseException:
        adapter.close()
        raise
    inputs = BuildInputs(
        project,
        compiled,
        session.physical_of,
        input_columns,
        existing,
        input_rows,
        options.full_refresh,
        make_resolver(project),
    )
    return Prepared(session, adapter, snapshot, plan, inputs, known)


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
    return counts


def plan(options: Options) -> Plan:
    prepared = prepare(options)
    prepared.adapter.close()
    return prepared.plan


def build(options: Options, listener: Listener | None = None) -> RunResult:
    prepared = prepare(options)
    try:
        # a schema holding a table the build already knows of exists
        present = {table.schema for table in prepared.known}
        for schema in sorted({prepared.session.physical_of[ref].schema for ref in prepared.session.selected}):
            if schema not in present:
                prepared.adapter.ensure_schema(schema)
        snapshot = prepared.snapshot
        latest, watermarks = dict(snapshot.latest_batch), dict(snapshot.watermarks)
        executor = Executor(prepared.adapter, snapshot, prepared.inputs, uuid.uuid4().hex[:12], listener)
        result = executor.execute(prepared.plan, options.threads)
        moved = {name for name, batch in snapshot.latest_batch.items() if latest.get(name) != batch}
        moved |= {
            name for (consumer, name), batch in snapshot.watermarks.items() if watermarks.get((consumer, name)) != batch
        }
        _prune_change_logs(prepared, moved)
    finally:
        prepared.adapter.close()
    result.write(prepared.session.project.root / "target" / "run_results.json")
    return result


def _prune_change_logs(prepared: Prepared, moved: set[str]) -> None:
    """Drop change-log batches that every consumer in the project has consumed.

    Only for the relations in ``moved`` (a new batch, or a consumer's watermark advanced in
    this build): for any other, the prune would delete what an earlier build's already did.
    A build that died before its prune leaves consumed batches behind until the relation
    next moves; consumers only read batches past their own watermark, so nothing reads them.
    """
    project, adapter = prepared.session.project, prepared.adapter
    consumers: dict[TableRef, list[str]] = {}
    for ref, model in project.models.items():
        for input_ref in model.inputs:
            consumers.setdefault(input_ref, []).append(str(ref))
    relations = [*project.models, *project.seeds, *{s for m in project.models.values() for s in m.sources}]
    relations = [relation for relation in relations if str(relation) in moved]
    logs = adapter.columns_many([change_log(relation) for relation in relations]) if relations else {}
    for relation in relations:
        if change_log(relation) in logs:
            adapter.execute(prune_change_log_statement(relation, consumers.get(relation, []), prepared.snapshot))


def explain(options: Options, model_name: str) -> list[tuple[str, str]]:
    """The statements a build would run for one model, as (title, SQL) pairs."""
    from sqlorch.execution.merge import build_key_merge
    from sqlorch.planning.rewrites.restrict_to_keys import restrict_to_keys

    prepared = prepare(options)
    prepared.adapter.close()
    dialect = prepared.adapter.dialect
    matches = [s for s in prepared.plan.steps if str(s.ref) == model_name or s.ref.name == model_name]
    if not matches:
        from sqlorch.errors import GraphError

        raise GraphError(f"--explain: no selected model named '{model_name}'")
    step = matches[0]
    if step.kind == "seed":
        return [("seed", f"-- load {step.ref} ({step.reason})")]
    item = prepared.inputs.compiled[step.ref]
    target = prepared.session.physical_of[step.ref]
    out = [("decision", f"-- {step.action}: {step.reason}")]
    if step.action == "full":
        kind = "VIEW" if item.model.config.materialized == "view" else "TABLE"
        out.append(
            (
                "rebuild",
                exp.Create(this=target.to_table(), kind=kind, expression=item.physical_sql, replace=True).sql(
                    dialect=dialect, pretty=True
                ),
            )
        )
    elif step.action == "incremental" and item.keys.key:
        keys_table, rows_table = work_table(step.ref, "keys"), work_table(step.ref, "rows")
        recompute = restrict_to_keys(item.physical_sql, item.keys.key, keys_table.to_table(alias="k"))
        out.append(("recompute affected keys into " + str(rows_table), recompute.sql(dialect=dialect, pretty=True)))
        if item.keys.unique:
            merge = build_key_merge(target, rows_table, keys_table, item.keys.key, list(item.columns or {}))
            out.append(("apply", merge.sql(dialect=dialect, pretty=True)))
        else:
            out.append(
                (
                    "apply",
                    f"-- delete the rows of {target} whose key ({', '.join(item.keys.key)}) is "
                    "affected, then insert the recomputed rows",
                )
            )
        out.append(
            (
                "bookkeeping",
                "-- in the same transaction: old and new images into the change log, "
                "the batch record, the watermarks and the model's state",
            )
        )
    return out
