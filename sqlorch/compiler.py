"""Compile: qualify every model against the schemas known, in dependency order.

Output: per model its qualified query, output columns, key analysis, fingerprint and the
SQL to run on the target (relations renamed, target dialect). Errors are collected across
all models so one `sqlorch compile` reports every problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlglot import exp

from sqlorch.analysis.keys import KeyAnalysis, analyse_keys
from sqlorch.analysis.schemas import Schema, SchemaMap, output_schema, qualify_query
from sqlorch.errors import CompileError, GraphError, SqlorchError
from sqlorch.graph.dag import DAG
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.project.dependencies import table_references
from sqlorch.project.loader import Project, position
from sqlorch.project.model import Model
from sqlorch.refs import TableRef


@dataclass
class CompiledModel:
    model: Model
    qualified: exp.Query | None  # None when an input's schema is unknown
    columns: Schema | None
    keys: KeyAnalysis
    fingerprint: str
    physical_sql: exp.Query  # the (qualified, where schemas are known) query with physical relation names


def model_fingerprint(model: Model, dialect: str) -> str:
    """Normalised SQL (no whitespace, no comments) plus the settings that change the table."""
    normal = model.ast.sql(dialect=dialect, comments=False, normalize=True)
    config = f"{model.config.materialized}|{','.join(model.config.unique_key)}"
    return hashlib.sha256(f"{normal}|{config}".encode()).hexdigest()[:32]


def _declared_schemas(project: Project) -> SchemaMap:
    return {ref: dict(spec.columns) for ref, spec in project.sources.items() if spec.columns}


def _check_unknown_tables(project: Project, model: Model, nodes: set[TableRef], owned: set[str]) -> list[SqlorchError]:
    """A table in a schema that holds models or seeds (``owned``), but is none of them: a typo."""
    errors: list[SqlorchError] = []
    for table in table_references(model.ast):
        if table.db and table.db.lower() in owned:
            ref = TableRef(schema=table.db.lower(), name=table.name.lower())
            if ref not in nodes and ref not in project.sources:
                line, col = position(table)
                names = sorted(str(r) for r in nodes if r.schema == ref.schema)
                errors.append(CompileError(
                    f"unknown table {ref}: schema '{ref.schema}' holds models, but none named '{ref.name}'",
                    path=model.path, line=line, col=col,
                    hint=f"models in {ref.schema}: {', '.join(names)}",
                ))
    return errors


def compile_project(
    project: Project,
    dag: DAG[TableRef],
    physical: dict[TableRef, TableRef],
    source_schemas: SchemaMap | None = None,
    seed_schemas: SchemaMap | None = None,
) -> dict[TableRef, CompiledModel]:
    dialect = project.settings.dialect
    schemas: SchemaMap = {**_declared_schemas(project), **(source_schemas or {}), **(seed_schemas or {})}
    compiled: dict[TableRef, CompiledModel] = {}
    errors: list[SqlorchError] = []
    try:
        order = dag.topological_order()
    except GraphError as error:
        cycle_models = [project.models[r] for r in dag.nodes if r in project.models]
        error.path = error.path or (cycle_models[0].path if cycle_models else None)
        raise
    nodes = project.node_refs()
    owned = {node.schema for node in nodes}
    for ref in order:
        model = project.models.get(ref)
        if model is None:
            continue
        unknown_tables = _check_unknown_tables(project, model, nodes, owned)
        errors.extend(unknown_tables)
        known = all(i in schemas for i in model.inputs)
        qualified: exp.Query | None = None
        columns: Schema | None = None
        if known and not unknown_tables:
            try:
                # only this model's inputs: passing every schema known makes compile quadratic
                inputs = {i: schemas[i] for i in model.inputs}
                qualified = qualify_query(model.ast, inputs, dialect, model.path)
                columns = output_schema(qualified, inputs, model.path)
                schemas[ref] = columns
            except SqlorchError as error:
                errors.append(error)
        keys = (
            analyse_keys(qualified, model.config.unique_key)
            if qualified is not None
            else KeyAnalysis(key=None, reason="input columns unknown")
        )
        compiled[ref] = CompiledModel(
            model=model,
            qualified=qualified,
            columns=columns,
            keys=keys,
            fingerprint=model_fingerprint(model, dialect),
            # depends_on holds every model/seed the SQL names (bare names resolved at load)
            physical_sql=rename_relations(qualified or model.ast, {d: physical[d] for d in model.depends_on},
                                          project.settings.default_schema),
        )
    if errors:
        from sqlorch.errors import ErrorGroup

        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return compiled
