"""Load a dbt project (``dbt_project.yml``) into the same ``Project`` sqlorch builds.

Models are rendered with dbt's Jinja (``sqlorch.dbt.context``) and then treated like any
sqlorch model: the DAG comes from the tables the rendered SQL reads. A model's relation is
``<schema from generate_schema_name>.<alias or file name>``; ephemeral models are not built
but inlined as CTEs into the models that ``ref`` them, as dbt does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch.config import ProjectSettings
from sqlorch.dbt.configs import HANDLED, IGNORED, SUPERSEDED, as_list, merge, normalise, tree_config
from sqlorch.dbt.context import DbtRenderer, Node
from sqlorch.dbt.profiles import dbt_target
from sqlorch.dbt.project_file import DbtProjectFile, read_dbt_project
from sqlorch.dbt.properties import DbtSource, Properties, read_properties
from sqlorch.dbt.schema_names import generate_schema_name
from sqlorch.dbt.tests import translate_tests
from sqlorch.errors import ConfigError, ErrorGroup, GraphError, SqlorchError
from sqlorch.outputs import output_dir
from sqlorch.project.dependencies import table_ref, table_references
from sqlorch.project.header import HeaderValue, ModelConfig
from sqlorch.project.loader import Project, resolve_dependencies
from sqlorch.project.model import Model, Seed, SourceSpec
from sqlorch.project.parse_cache import ParseCache
from sqlorch.project.parsing import parse_model_sql, strip_positions
from sqlorch.refs import TableRef

log = logging.getLogger(__name__)

MATERIALIZED = {"table": "table", "view": "view", "incremental": "incremental", "ephemeral": "ephemeral"}


def _files(root: Path, folders: tuple[str, ...], patterns: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(folder, file) for every file matching ``patterns`` under the given folders."""
    found = []
    for folder in folders:
        base = root / folder
        for pattern in patterns:
            found += [(base, path) for path in base.rglob(pattern)]
    return sorted(found, key=lambda item: item[1])


def _source_refs(properties: Properties) -> dict[tuple[str, str], TableRef]:
    return {
        key: TableRef(schema=source.schema.lower(), name=source.identifier.lower(), catalog=source.database)
        for key, source in properties.sources.items()
    }


def _untranslated_source_tests(properties: Properties, specs: dict[TableRef, SourceSpec]) -> list[str]:
    """Tests on sources, except those that gave the source its capture key (which sqlorch
    checks while capturing): sources are not models, so there is nothing to audit after."""
    skipped = []
    for (source_name, table), source in properties.sources.items():
        key = specs[TableRef(source.schema.lower(), source.identifier.lower(), source.database)].unique_key
        for column in source.columns:
            name = str(column["name"])
            for test in column.get("data_tests") or column.get("tests") or ():
                label = test if isinstance(test, str) else next(iter(test), "")
                if not (label in ("unique", "not_null") and key == (name.lower(),)):
                    skipped.append(f"{source_name}.{table}: {label}({name})")
    return skipped


def _source_spec(ref: TableRef, source: DbtSource) -> SourceSpec:
    """How sqlorch captures a source's changes: ``meta: {sqlorch: {...}}`` when given,
    else a key from the columns dbt tests as both ``unique`` and ``not_null``."""
    declared = source.meta.get("sqlorch") or {}
    if not isinstance(declared, dict):
        raise ConfigError(
            f"meta.sqlorch of source '{source.source}.{source.table}' must be a mapping", path=source.path
        )
    unique_key = tuple(str(c).lower() for c in as_list(declared.get("unique_key")))
    if not unique_key:
        for column in source.columns:
            tests = {
                t if isinstance(t, str) else next(iter(t), "")
                for t in column.get("data_tests") or column.get("tests") or ()
            }
            if {"unique", "not_null"} <= tests:
                unique_key = (str(column["name"]).lower(),)
                break
    cursor = declared.get("cursor")
    warn_after, error_after = (
        _dbt_period(source, (source.freshness or {}).get(k)) for k in ("warn_after", "error_after")
    )
    return SourceSpec(
        ref=ref,
        cursor=str(cursor).lower() if cursor else None,
        unique_key=unique_key,
        append_only=bool(declared.get("append_only", False)) and bool(cursor),
        path=source.path,
        warn_after=warn_after,
        error_after=error_after,
        loaded_at=str(source.loaded_at_field).lower() if source.loaded_at_field else None,
        loaded_at_checked=False,
    )


DBT_PERIODS = {"minute": 60, "hour": 3600, "day": 86400}


def _dbt_period(source: DbtSource, value: Any) -> float | None:
    """dbt's ``{count: 12, period: hour}`` in seconds (what ``sqlorch status`` compares the
    source's newest ``loaded_at_field`` with); a missing count or period means no limit,
    as in dbt."""
    if not isinstance(value, dict) or value.get("count") is None or value.get("period") is None:
        return None
    count, period = value["count"], str(value["period"])
    if period not in DBT_PERIODS or not isinstance(count, int | float) or isinstance(count, bool) or count <= 0:
        raise ConfigError(
            f"freshness of source '{source.source}.{source.table}' must be {{count: <positive number>, "
            f"period: minute|hour|day}}, not {value}",
            path=source.path,
        )
    return float(count) * DBT_PERIODS[period]


def _header_value(calls: list[str]) -> HeaderValue | None:
    """schema.yml tests translated to audit calls, in the form a model header gives them
    (positions are the model file's first line: the calls were not written there)."""
    return HeaderValue(", ".join(calls), 1, 1) if calls else None


def _notes(node: Node, skipped_tests: list[str]) -> list[str]:
    """What plan and build say about a model, beside their own reason."""
    superseded = ["hand-written is_incremental() logic"] if node.uses_is_incremental else []
    superseded += [key for key in sorted(node.config) if key in SUPERSEDED]
    hooks = [key for key in ("pre_hook", "post_hook") if as_list(node.config.get(key))]
    known = {*HANDLED, *IGNORED, *SUPERSEDED, "pre_hook", "post_hook"}
    ignored = sorted(key for key in node.config if key not in known)
    notes = [f"superseded (sqlorch maintains the query exactly): {', '.join(superseded)}"] if superseded else []
    notes += [f"not run (not supported yet): {', '.join(hooks)}"] if hooks else []
    notes += [f"dbt settings ignored: {', '.join(ignored)}"] if ignored else []
    notes += [f"dbt tests skipped: {', '.join(skipped_tests)}"] if skipped_tests else []
    return notes


class _DbtLoad:
    """One load: the nodes found, rendered, placed, and added to the project."""

    def __init__(
        self, root: Path, file: DbtProjectFile, renderer: DbtRenderer, properties: Properties, project: Project
    ) -> None:
        self.root, self.file, self.renderer, self.properties, self.project = root, file, renderer, properties, project
        self.errors: list[SqlorchError] = []
        self.claimed: dict[TableRef, Path] = {}
        self.cache_keys: set[str] = set()

    def nodes(self) -> tuple[list[Node], list[Node]]:
        models: list[Node] = []
        seeds: list[Node] = []
        for kind, folders, pattern, tree, props in (
            ("model", self.file.model_paths, "*.sql", self.file.models, self.properties.models),
            ("seed", self.file.seed_paths, "*.csv", self.file.seeds, self.properties.seeds),
        ):
            for base, path in _files(self.root, folders, (pattern,)):
                folders_in = list(path.relative_to(base).parent.parts)
                fqn = [self.file.name, *folders_in, path.stem]
                own = props.get(path.stem)
                config = merge(tree_config(tree, self.file.name, fqn[1:]), normalise(own.config) if own else {})
                if str(config.get("enabled", True)).lower() in ("false", "0", "no"):
                    continue
                if path.stem in self.renderer.nodes:
                    other = self.renderer.nodes[path.stem].path.relative_to(self.root)
                    self.errors.append(
                        GraphError(
                            f"two nodes are named '{path.stem}': {other} and {path.relative_to(self.root)}",
                            path=path,
                            hint="dbt needs node names to be unique: rename one",
                        )
                    )
                    continue
                node = Node(name=path.stem, path=path, fqn=fqn, resource_type=kind, config=config)
                node.materialized = "seed" if kind == "seed" else str(config.get("materialized", "view"))
                self.renderer.nodes[node.name] = node
                (models if kind == "model" else seeds).append(node)
        return models, seeds

    def parse(self, models: list[Node]) -> list[Node]:
        """The parse pass: every model's ``config(...)``; returns the enabled models."""
        enabled = []
        for node in models:
            try:
                self.renderer.render(node)
            except SqlorchError as error:
                self.errors.append(error)
                continue
            node.config = merge(node.config, normalise(node.file_config))
            if str(node.config.get("enabled", True)).lower() in ("false", "0", "no"):
                del self.renderer.nodes[node.name]
                continue
            materialized = str(node.config.get("materialized", "view"))
            if materialized not in MATERIALIZED:
                self.errors.append(
                    ConfigError(
                        f"materialized '{materialized}' is not supported",
                        path=node.path,
                        hint=f"sqlorch runs {', '.join(MATERIALIZED)}",
                    )
                )
                continue
            node.materialized = materialized
            enabled.append(node)
        return enabled

    def place(self, nodes: list[Node]) -> None:
        """Every node's relation: generate_schema_name and the alias."""
        for node in nodes:
            try:
                schema = generate_schema_name(self.renderer, node.config.get("schema"), node, node.config)
            except SqlorchError as error:
                self.errors.append(error)
                continue
            alias = str(node.config.get("alias") or node.name)
            node.relation = TableRef(schema=schema.lower(), name=alias.lower())

    def compile(self, node: Node) -> str | None:
        try:
            sql = self.renderer.render(node)
            if not node.ctes:
                return sql
            return _with_ctes(sql, node.ctes, self.renderer.dialect, node.path)
        except SqlorchError as error:
            self.errors.append(error)
            return None

    def claim(self, node: Node) -> TableRef | None:
        """The node's relation, unless another node already builds it (an error)."""
        ref = node.relation
        assert ref is not None
        if ref in self.claimed:
            self.errors.append(
                GraphError(
                    f"two nodes are built as {ref}: {self.claimed[ref].relative_to(self.root)} "
                    f"and {node.path.relative_to(self.root)}",
                    path=node.path,
                    hint="give one of them another alias or schema",
                )
            )
            return None
        self.claimed[ref] = node.path
        return ref

    def add_seed(self, node: Node) -> None:
        ref = self.claim(node)
        if ref is None:
            return
        types = node.config.get("column_types") or {}
        self.project.seeds[ref] = Seed(
            ref=ref,
            path=node.path,
            delimiter=str(node.config.get("delimiter") or ","),
            column_types=tuple((str(k), str(v)) for k, v in types.items()),
        )
        own = self.properties.seeds.get(node.name)
        audits = translate_tests(own.columns, own.tests, lambda *_: None) if own else None
        if audits and (audits.error or audits.warn or audits.skipped):
            tests = [*audits.error, *audits.warn, *audits.skipped]
            self.project.notes[ref] = [f"dbt tests on seeds are not run yet: {', '.join(tests)}"]

    def relation_of(self, kind: str, first: str, second: str | None) -> str | None:
        """The relation a ``relationships`` test's ``to:`` names."""
        if kind == "source":
            ref = self.renderer.sources.get((first, second or ""))
            return str(ref) if ref else None
        node = self.renderer.nodes.get(first)
        return str(node.relation) if node is not None and node.relation is not None else None

    def add_model(self, node: Node, parse_cache: ParseCache) -> None:
        sql = self.compile(node)
        ref = self.claim(node) if sql is not None else None
        if sql is None or ref is None:
            return
        dialect = self.renderer.dialect
        cache_key = parse_cache.key(sql, dialect)
        self.cache_keys.add(cache_key)
        tables, tree = parse_cache.get(cache_key), None
        if tables is None:
            try:
                tree = strip_positions(parse_model_sql(sql, dialect, node.path))
            except SqlorchError as error:
                self.errors.append(error)
                return
            tables = tuple(table_ref(t) for t in table_references(tree))
            parse_cache.put(cache_key, tables)
        own = self.properties.models.get(node.name)
        audits = translate_tests(own.columns, own.tests, self.relation_of) if own else None
        config = ModelConfig(
            materialized=MATERIALIZED[node.materialized],
            tags=tuple(str(tag) for tag in as_list(node.config.get("tags"))),
            unique_key=tuple(str(c).lower() for c in as_list(node.config.get("unique_key"))),
            description=own.description if own else "",
            explicit=frozenset(key for key in ("materialized", "tags", "unique_key") if key in node.config),
            audits=_header_value(audits.error) if audits else None,
            audits_warn=_header_value(audits.warn) if audits else None,
        )
        model = Model(ref=ref, path=node.path, config=config, sql=sql, dialect=dialect, tables=tables)
        if tree is not None:  # parsed already: keep the tree rather than parse it again later
            model.ast = tree
        self.project.models[ref] = model
        notes = _notes(node, audits.skipped if audits else [])
        if notes:
            self.project.notes[ref] = notes


def _with_ctes(sql: str, ctes: list[tuple[str, str]], dialect: str, path: Path) -> str:
    """``sql`` with the ephemeral models it reads as leading CTEs (as dbt inlines them)."""
    tree = parse_model_sql(sql, dialect, path)
    with_ = tree.args.get("with_")
    existing = list(with_.expressions) if with_ else []
    added = [
        exp.CTE(this=parse_model_sql(body, dialect, path), alias=exp.TableAlias(this=exp.to_identifier(name)))
        for name, body in ctes
    ]
    tree.set("with_", exp.With(expressions=[*added, *existing], recursive=bool(with_ and with_.args.get("recursive"))))
    return tree.sql(dialect=dialect, pretty=True)


def load_dbt_project(
    root: Path, cli_vars: dict[str, Any] | None, profiles_dir: Path | None, target_name: str | None
) -> Project:
    file = read_dbt_project(root)
    target = dbt_target(root, profiles_dir, target_name)
    variables = {**file.vars, **(cli_vars or {})}
    yaml_files = [path for _, path in _files(root, (*file.model_paths, *file.seed_paths), ("*.yml", "*.yaml"))]
    properties = read_properties(yaml_files)
    source_refs = _source_refs(properties)
    renderer = DbtRenderer(file.name, target, variables, target.type, source_refs)
    renderer.load_macros([path for _, path in _files(root, file.macro_paths, ("*.sql",))])
    settings = ProjectSettings(
        root=root,
        name=file.name,
        dialect=target.type,
        vars=variables,
        seed_schema=target.schema,
        default_schema=target.schema,
    )
    project = Project(settings=settings)
    for key, ref in source_refs.items():
        project.sources[ref] = _source_spec(ref, properties.sources[key])
    unsupported = [*file.unsupported]
    unsupported += [
        f"macro {name}" for name in ("generate_alias_name", "generate_database_name") if name in renderer.macros
    ]
    for feature in unsupported:
        log.warning("%s: %s: not supported by sqlorch yet, ignored", file.path, feature)
    skipped_source_tests = _untranslated_source_tests(properties, project.sources)
    if skipped_source_tests:
        log.warning("dbt tests on sources are not run: %s", ", ".join(skipped_source_tests))
    load = _DbtLoad(root, file, renderer, properties, project)
    models, seeds = load.nodes()
    models = load.parse(models)
    load.place([*models, *seeds])
    _raise(load.errors)
    for node in seeds:
        load.add_seed(node)
    renderer.compiling = True
    parse_cache = ParseCache(output_dir(root) / "cache" / "parse.json")
    for node in models:
        if node.materialized != "ephemeral":
            load.add_model(node, parse_cache)
    parse_cache.save(load.cache_keys)
    load.errors.extend(resolve_dependencies(project))
    _raise(load.errors)
    return project


def _raise(errors: list[SqlorchError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
