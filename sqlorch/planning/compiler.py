"""Compile: qualify every model against the schemas known, in dependency order.

Output: per model its qualified query, output columns, key analysis, fingerprint and the
SQL to run on the target (relations renamed, target dialect). Errors are collected across
all models so one `sqlorch compile` reports every problem.

A model whose inputs are not all known (a source without declared columns, no warehouse)
cannot be checked itself, but when it lists its output columns explicitly their names are
known (types UNKNOWN), so the models reading it are still checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from sqlglot import exp
from sqlglot.schema import MappingSchema

from sqlorch.analysis.keys import KeyAnalysis, analyse_keys
from sqlorch.analysis.schemas import Schema, SchemaMap, dialect_of, mapping_schema, output_schema, qualify_query
from sqlorch.errors import CompileError, ErrorGroup, GraphError, SqlorchError
from sqlorch.gcpause import collector_paused
from sqlorch.graph.dag import DAG
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.project.loader import Project
from sqlorch.project.model import Model
from sqlorch.refs import TableRef


@dataclass
class CompiledModel:
    """One checked model. The key analysis, fingerprint and physical SQL are computed on
    first use: `compile` (the CI check) needs only the SQL, a build needs the rest."""

    model: Model
    input_schemas: SchemaMap | None  # None when an input's schema is unknown
    columns: Schema | None
    dialect: str
    physical_names: dict[TableRef, TableRef]  # the model's dependencies -> physical relations
    default_schema: str
    cache_key: str = ""
    # the columns that identify an input's rows (a source's unique_key, an upstream model's
    # key), looked up when the key analysis runs: it narrows a row-level model's key to them
    identity_of: Callable[[TableRef], tuple[tuple[str, ...], bool]] | None = None
    fingerprints: CompileCache | None = None  # where the fingerprint is kept (``CompileCache.fingerprint``)

    @cached_property
    def input_schema(self) -> MappingSchema | None:
        """The sqlglot schema of this model's inputs, shared by qualifying and typing."""
        return mapping_schema(self.input_schemas, self.dialect) if self.input_schemas is not None else None

    @cached_property
    def qualified(self) -> exp.Query | None:
        if self.input_schema is None:
            return None
        return qualify_query(
            self.model.ast, self.input_schema, self.dialect, self.model.path, positioned=self.model.positioned
        )

    def compiled_sql(self, target_dialect: str) -> str:
        """The model as the user wrote it, relations renamed, in the target dialect."""
        renamed = rename_relations(self.model.ast, self.physical_names, self.default_schema)
        return renamed.sql(dialect=dialect_of(target_dialect), pretty=True, copy=False)  # renamed is a copy already

    @cached_property
    def keys(self) -> KeyAnalysis:
        if self.qualified is None:
            return KeyAnalysis(key=None, reason="input columns unknown")
        identities = {}
        complete = set()
        if self.identity_of is not None:
            for ref in self.model.inputs:
                name = (ref.schema.lower(), ref.name.lower())
                identities[name], logs_whole_keys = self.identity_of(ref)
                if logs_whole_keys:
                    complete.add(name)
        declared = self.model.config.unique_key
        return analyse_keys(self.qualified, declared, self.input_schema, dialect_of(self.dialect), identities, complete)

    @cached_property
    def fingerprint(self) -> str:
        if self.fingerprints is not None:
            return self.fingerprints.fingerprint(self.model, self.dialect)
        return model_fingerprint(self.model, self.dialect)

    @cached_property
    def physical_sql(self) -> exp.Query:
        """The (qualified, where schemas are known) query with physical relation names."""
        return rename_relations(self.qualified or self.model.ast, self.physical_names, self.default_schema)


def model_fingerprint(model: Model, dialect: str) -> str:
    """Normalised SQL (no whitespace, no comments) plus the settings that change the table."""
    normal = model.ast.sql(dialect=dialect_of(dialect), comments=False, normalize=True)
    config = f"{model.config.materialized}|{','.join(model.config.unique_key)}"
    return hashlib.sha256(f"{normal}|{config}".encode()).hexdigest()[:32]


def schema_digest(ref: TableRef, columns: Schema) -> str:
    """A short fingerprint of one relation's name and columns, computed once per relation
    rather than once per reader."""
    text = f"{ref}\0" + "\0".join(f"{name}\1{kind}" for name, kind in columns.items())
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _declared_schemas(project: Project) -> SchemaMap:
    return {ref: dict(spec.columns) for ref, spec in project.sources.items() if spec.columns}


def _named_outputs(query: exp.Query) -> Schema | None:
    """The output column names of a query whose inputs are not known, types UNKNOWN: known
    whenever its (leftmost) SELECT lists explicit, named columns. Enough for a consumer's
    columns to be checked at compile, although this query's own cannot be."""
    while isinstance(query, exp.SetOperation):
        left = query.this
        if not isinstance(left, exp.Query):
            return None
        query = left
    if not isinstance(query, exp.Select):
        return None
    columns: Schema = {}
    for select in query.selects:
        if isinstance(select, exp.Alias):
            name = select.alias.lower()
        elif isinstance(select, exp.Column) and not select.is_star:
            name = select.name.lower()
        else:
            return None  # the warehouse names it (``count(*)``, ``1``)
        # COLUMNS(...) and UNNEST can stand for several columns
        if not name or name in columns or select.find(exp.Columns, exp.Explode):
            return None
        columns[name] = "UNKNOWN"
    return columns


def _declared_source_clash(
    node: TableRef, path: Path, physical: TableRef, project: Project, kind: str = "model"
) -> SqlorchError | None:
    """A model or seed whose relation is a declared source would overwrite the source's data."""
    for ref in (node, physical):
        spec = project.sources.get(ref)
        if spec is not None:
            where = f" (declared in {spec.path})" if spec.path else ""
            return CompileError(
                f"{kind} {node} would write the relation {ref}, which is a declared source{where}",
                path=path,
                line=1,
                col=1,
                hint=f"sqlorch never writes a source: rename or move the {kind} file",
            )
    return None


def _check_unknown_tables(project: Project, model: Model, nodes: set[TableRef], owned: set[str]) -> list[SqlorchError]:
    """A table in a schema that holds models or seeds (``owned``), but is none of them: a typo."""
    errors: list[SqlorchError] = []
    for table in model.tables:
        if table.schema in owned:
            ref = TableRef(schema=table.schema, name=table.name)
            if ref not in nodes and ref not in project.sources:
                line, col = model.locate_table(table)
                names = sorted(str(r) for r in nodes if r.schema == ref.schema)
                errors.append(
                    CompileError(
                        f"unknown table {ref}: schema '{ref.schema}' holds models, but none named '{ref.name}'",
                        path=model.path,
                        line=line,
                        col=col,
                        hint=f"models in {ref.schema}: {', '.join(names)}",
                    )
                )
    return errors


class CompileCache:
    """Output columns per model, keyed by everything they depend on (the model's SQL, its
    dialect and the schemas of its inputs), kept in ``target/`` so an unchanged project
    compiles without qualifying anything again."""

    VERSION = "2"

    def __init__(self, path: Path | None, target: str = "") -> None:
        self.path = path
        self.target = target  # the target the compiled files were last written for
        self.entries: dict[str, Schema] = {}
        self.fingerprints: dict[str, str] = {}  # ``fingerprint``
        self.written_for = ""
        self.dirty = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == self.VERSION:
                    self.entries = data["entries"]
                    self.fingerprints = data.get("fingerprints", {})
                    self.written_for = data.get("target", "")
            except (ValueError, KeyError, OSError):
                self.entries = {}
        self.dirty = self.written_for != target

    @staticmethod
    def key(model: Model, dialect: str, input_digests: list[str]) -> str:
        """``input_digests``: one ``schema_digest`` per input, in any order."""
        return hashlib.sha256(f"{dialect}\0{model.sql}\0{','.join(sorted(input_digests))}".encode()).hexdigest()

    def get(self, key: str) -> Schema | None:
        return self.entries.get(key)

    def fingerprint(self, model: Model, dialect: str) -> str:
        """``model_fingerprint``, kept by the SQL text and settings it is computed from: it
        generates the whole normalised SQL again (0.6 ms a model, a tenth of a one-row
        change's cost per model in a long chain). Looked up when a plan first reads it (not
        by ``compile``, which never does), so the build saves the cache once it has planned."""
        config = model.config
        text = f"{model.dialect}\0{dialect}\0{config.materialized}\0{','.join(config.unique_key)}\0{model.sql}"
        key = hashlib.sha256(text.encode()).hexdigest()
        found = self.fingerprints.get(key)
        if found is None:
            found = self.fingerprints[key] = model_fingerprint(model, dialect)
            self.dirty = True
        return found

    def put(self, key: str, columns: Schema) -> None:
        self.entries[key] = columns
        self.dirty = True

    def save(self) -> None:
        if self.path is not None and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "version": self.VERSION,
                "target": self.target,
                "entries": self.entries,
                "fingerprints": self.fingerprints,
            }
            self.path.write_text(json.dumps(payload))


def compile_project(
    project: Project,
    dag: DAG[TableRef],
    physical: dict[TableRef, TableRef],
    source_schemas: SchemaMap | None = None,
    seed_schemas: SchemaMap | None = None,
    cache: CompileCache | None = None,
    failed: dict[TableRef, SqlorchError] | None = None,
) -> dict[TableRef, CompiledModel]:
    """Compile every model. Errors are raised together at the end, unless ``failed`` is
    given: a build collects them there per model (the model fails, its descendants are
    skipped, everything else builds), and every model stays in the result."""
    dialect = project.settings.dialect
    schemas: SchemaMap = {**_declared_schemas(project), **(source_schemas or {}), **(seed_schemas or {})}
    compiled: dict[TableRef, CompiledModel] = {}
    errors: list[SqlorchError] = []

    def identity_of(ref: TableRef) -> tuple[tuple[str, ...], bool]:
        """A source's declared unique_key, or an upstream model's key (analysed on demand), and
        whether its change log holds every row of each key it touches (``analyse_keys``'
        ``complete_identities``)."""
        if ref in project.sources:
            key = tuple(project.sources[ref].unique_key)
            return key, bool(key)
        upstream = compiled.get(ref)
        if upstream is None:
            return (), False
        keys = upstream.keys
        return tuple(keys.key or ()), keys.whole_key_log

    try:
        order = dag.topological_order()
    except GraphError as error:
        cycle_models = [project.models[r] for r in dag.nodes if r in project.models]
        error.path = error.path or (cycle_models[0].path if cycle_models else None)
        raise
    nodes = project.node_refs()
    owned = {node.schema for node in nodes}
    digests: dict[TableRef, str] = {}
    for ref, seed in project.seeds.items():
        clash = _declared_source_clash(ref, seed.path, physical[ref], project, "seed")
        if clash is not None:
            errors.append(clash)
            if failed is not None:
                failed[ref] = clash
    with collector_paused():
        for ref in order:
            model = project.models.get(ref)
            if model is None:
                continue
            model_errors = _check_unknown_tables(project, model, nodes, owned)
            clash = _declared_source_clash(ref, model.path, physical[ref], project)
            if clash is not None:
                model_errors.append(clash)
            known = all(i in schemas for i in model.inputs) and not model_errors
            # only this model's inputs: passing every schema known makes compile quadratic
            inputs = {i: schemas[i] for i in model.inputs} if known else None
            item = CompiledModel(
                model=model,
                input_schemas=inputs,
                columns=None,
                dialect=dialect,
                # depends_on holds every model/seed the SQL names (bare names resolved at load)
                physical_names={d: physical[d] for d in model.depends_on},
                default_schema=project.settings.default_schema,
                identity_of=identity_of,
                fingerprints=cache,
            )
            if inputs is not None:
                for i in model.inputs:
                    if i not in digests:
                        digests[i] = schema_digest(i, schemas[i])
                item.cache_key = CompileCache.key(model, dialect, [digests[i] for i in model.inputs])
                item.columns = cache.get(item.cache_key) if cache else None
                if item.columns is None:
                    try:
                        qualified, schema = item.qualified, item.input_schema
                        assert qualified is not None and schema is not None
                        item.columns = output_schema(
                            qualified, schema, model.path, dialect, positioned=model.positioned
                        )
                    except SqlorchError as error:
                        model_errors.append(error)
                    else:
                        if cache:
                            cache.put(item.cache_key, item.columns)
                if item.columns is not None:
                    schemas[ref] = item.columns
            elif not model_errors:
                names = _named_outputs(model.ast)
                if names is not None:
                    schemas[ref] = names
            if model_errors:
                # a failed model is not analysed further (a build plans it as an error)
                item = replace(item, input_schemas=None, columns=None)
                if failed is not None:
                    failed[ref] = model_errors[0] if len(model_errors) == 1 else ErrorGroup(model_errors)
                errors.extend(model_errors)
            compiled[ref] = item
    if cache:
        cache.save()
    if errors and failed is None:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return compiled
