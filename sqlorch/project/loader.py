"""Load a project folder into models, seeds and sources with resolved dependencies."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch.config import PLAIN_IDENTIFIER, ProjectSettings, load_project_settings, read_utf8
from sqlorch.errors import ConfigError, ErrorGroup, GraphError, SqlorchError
from sqlorch.gcpause import collector_paused
from sqlorch.project.dependencies import table_ref, table_references
from sqlorch.project.discover import ProjectFiles, discover_files
from sqlorch.project.header import parse_header
from sqlorch.project.model import Model, Seed, SourceSpec
from sqlorch.project.parse_cache import ParseCache
from sqlorch.project.parsing import parse_model_sql, strip_positions
from sqlorch.project.sources import load_sources
from sqlorch.project.templating import load_macros, needs_rendering, render_string
from sqlorch.refs import TableRef


@dataclass
class Project:
    settings: ProjectSettings
    models: dict[TableRef, Model] = field(default_factory=dict)
    seeds: dict[TableRef, Seed] = field(default_factory=dict)
    sources: dict[TableRef, SourceSpec] = field(default_factory=dict)
    notes: dict[TableRef, list[str]] = field(default_factory=dict)  # shown per model by plan and build

    @property
    def root(self) -> Path:
        return self.settings.root

    def node_refs(self) -> set[TableRef]:
        return set(self.models) | set(self.seeds)


def model_ref(path: Path, models_dir: Path, default_schema: str) -> TableRef:
    """``<first folder>.<file stem>``, both plain identifiers (checked: a file name becomes
    a relation name in every statement sqlorch writes, and in every model that reads it)."""
    relative = path.relative_to(models_dir)
    schema = relative.parts[0] if len(relative.parts) > 1 else default_schema
    for part, what in ((path.stem, "model file name"), (schema, "schema folder name")):
        if not PLAIN_IDENTIFIER.fullmatch(part):
            raise ConfigError(
                f"{what} {part!r} is not a plain identifier",
                path=path,
                line=1,
                col=1,
                hint="rename it: letters, digits and underscores, not starting with a digit "
                "(the folder and file name are the model's schema and table name)",
            )
    return TableRef(schema=schema.lower(), name=path.stem.lower())


def make_resolver(project: Project) -> Callable[[exp.Table], TableRef]:
    """Map a table reference in model SQL to the project relation or source it names."""
    by_name: dict[str, list[TableRef]] = defaultdict(list)
    for ref in project.node_refs():
        by_name[ref.name].append(ref)

    def resolve(table: exp.Table) -> TableRef:
        ref = table_ref(table)
        if ref.schema:
            return ref
        candidates = by_name.get(ref.name, [])
        if len(candidates) == 1:
            return candidates[0]
        return ref.with_schema(project.settings.default_schema)

    return resolve


def resolve_dependencies(project: Project) -> list[SqlorchError]:
    """Turn every table reference into an edge (model or seed) or a source."""
    errors: list[SqlorchError] = []
    by_name: dict[str, list[TableRef]] = defaultdict(list)
    for ref in project.node_refs():
        by_name[ref.name].append(ref)
    nodes = project.node_refs()
    for model in project.models.values():
        for ref in model.tables:
            if ref.schema:
                (model.depends_on if ref in nodes else model.sources).add(ref)
                continue
            candidates = by_name.get(ref.name, [])
            if len(candidates) == 1:
                model.depends_on.add(candidates[0])
            elif len(candidates) > 1:
                line, col = model.locate_table(ref)
                options = ", ".join(sorted(str(c) for c in candidates))
                errors.append(
                    GraphError(
                        f"'{ref.name}' is ambiguous: it could be {options}",
                        path=model.path,
                        line=line,
                        col=col,
                        hint="qualify the name with its schema",
                    )
                )
            else:
                model.sources.add(ref.with_schema(project.settings.default_schema))
        if model.ref in model.depends_on:
            model.depends_on.discard(model.ref)
            itself = next(t for t in model.tables if t.name == model.ref.name)
            line, col = model.locate_table(itself)
            errors.append(GraphError(f"model {model.ref} reads itself", path=model.path, line=line, col=col))
    return errors


def load_project(
    root: Path,
    cli_vars: dict[str, Any] | None = None,
    profiles_dir: Path | None = None,
    target_name: str | None = None,
) -> Project:
    """Read every file of the project; raise one ErrorGroup with all errors found. A dbt
    project (``dbt_project.yml``) is read by ``sqlorch.dbt``: its relation names depend on
    the target, hence the profile arguments."""
    root = root.resolve()
    if (root / "dbt_project.yml").is_file():
        from sqlorch.dbt.loader import load_dbt_project

        return load_dbt_project(root, cli_vars, profiles_dir, target_name)
    settings = load_project_settings(root, cli_vars)
    if not (root / "models").is_dir():
        raise SqlorchError(f"no models/ folder in {root}", path=root, hint="pass --project-dir")
    files = discover_files(root)
    with collector_paused():
        return _load_files(root, settings, files)


def _load_files(root: Path, settings: ProjectSettings, files: ProjectFiles) -> Project:
    project = Project(settings=settings, sources=load_sources(files.yaml_files))
    errors: list[SqlorchError] = []
    macros = load_macros(files.macros, settings.vars)
    claimed: dict[TableRef, Path] = {}
    for seed_path in files.seeds:
        if not PLAIN_IDENTIFIER.fullmatch(seed_path.stem):
            errors.append(
                ConfigError(
                    f"seed file name {seed_path.stem!r} is not a plain identifier",
                    path=seed_path,
                    hint="rename it: letters, digits and underscores, not starting with a digit "
                    "(the file name is the seed's table name)",
                )
            )
            continue
        ref = TableRef(schema=settings.seed_schema, name=seed_path.stem.lower())
        project.seeds[ref] = Seed(ref=ref, path=seed_path)
        claimed[ref] = seed_path
    parse_cache = ParseCache(root / "target" / "cache" / "parse.json")
    current: set[str] = set()
    parsed: dict[str, exp.Query] = {}  # this run's trees by SQL: identical files parse once
    for path in files.models:
        tree = None
        try:
            ref = model_ref(path, root / "models", settings.default_schema)
            text = read_utf8(path)
            config = parse_header(text, path)
            if not config.enabled:
                continue
            sql = render_string(text, path, settings.vars, macros) if needs_rendering(text) else text
            key = parse_cache.key(sql, settings.dialect)
            tables = parse_cache.get(key)
            if tables is not None and key in parsed:
                tree = parsed[key].copy()
            elif tables is None:
                tree = strip_positions(parse_model_sql(sql, settings.dialect, path))
                tables = tuple(table_ref(t) for t in table_references(tree))
                parse_cache.put(key, tables)
                parsed[key] = tree
            current.add(key)
        except SqlorchError as error:
            errors.append(error)
            continue
        if ref in claimed:
            errors.append(
                GraphError(
                    f"two files claim the relation {ref}: "
                    f"{claimed[ref].relative_to(root)} and {path.relative_to(root)}",
                    path=path,
                    line=1,
                    col=1,
                    hint="rename one of the files",
                )
            )
            continue
        claimed[ref] = path
        model = Model(ref=ref, path=path, config=config, sql=sql, dialect=settings.dialect, tables=tables)
        if tree is not None:  # parsed already: keep the tree rather than parse it again later
            model.ast = tree
        project.models[ref] = model
    parse_cache.save(current)
    errors.extend(resolve_dependencies(project))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return project
