"""Properties YAML files (``schema.yml``): per model and seed its config, description and
tests, and the ``sources:`` a project reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlorch.config import load_yaml
from sqlorch.errors import ConfigError


@dataclass(frozen=True)
class NodeProperties:
    name: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    columns: tuple[dict[str, Any], ...] = ()
    tests: tuple[Any, ...] = ()  # tests on the whole node


@dataclass(frozen=True)
class DbtSource:
    """One table of a ``sources:`` entry."""

    source: str
    table: str
    schema: str
    identifier: str
    database: str | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    columns: tuple[dict[str, Any], ...] = ()
    loaded_at_field: str | None = None
    freshness: dict[str, Any] | None = None  # dbt's own form: {warn_after: {count, period}, ...}


@dataclass
class Properties:
    models: dict[str, NodeProperties] = field(default_factory=dict)
    seeds: dict[str, NodeProperties] = field(default_factory=dict)
    sources: dict[tuple[str, str], DbtSource] = field(default_factory=dict)


def _mapping(value: Any, what: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"each entry of {what} must be a mapping", path=path)
    return value


def _columns(entry: dict[str, Any], path: Path) -> tuple[dict[str, Any], ...]:
    columns = entry.get("columns") or []
    if not isinstance(columns, list):
        raise ConfigError(f"'columns' of '{entry.get('name')}' must be a list", path=path)
    return tuple(_mapping(column, "'columns'", path) for column in columns)


def _node(entry: dict[str, Any], path: Path) -> NodeProperties:
    return NodeProperties(
        name=str(entry["name"]),
        path=path,
        config=dict(entry.get("config") or {}),
        description=str(entry.get("description") or ""),
        columns=_columns(entry, path),
        tests=tuple(entry.get("data_tests") or entry.get("tests") or ()),
    )


def _sources(entry: dict[str, Any], path: Path) -> list[DbtSource]:
    name = str(entry["name"])
    found = []
    for table in entry.get("tables") or []:
        table = _mapping(table, f"tables of source '{name}'", path)
        meta = {
            **(entry.get("meta") or {}),
            **(table.get("meta") or {}),
            **((table.get("config") or {}).get("meta") or {}),
        }
        found.append(
            DbtSource(
                source=name,
                table=str(table["name"]),
                schema=str(entry.get("schema") or name),
                identifier=str(table.get("identifier") or table["name"]),
                database=str(entry["database"]) if entry.get("database") else None,
                path=path,
                meta=meta,
                columns=_columns(table, path),
                loaded_at_field=table.get("loaded_at_field") or entry.get("loaded_at_field"),
                freshness=_freshness(entry, table),
            )
        )
    return found


def _freshness(source: dict[str, Any], table: dict[str, Any]) -> dict[str, Any] | None:
    """A table's ``freshness`` over its source's, as dbt applies them: the table's own (in
    ``config:`` since dbt 1.9, or beside it), where an explicit ``null`` turns it off."""
    for settings in (table.get("config") or {}, table, source.get("config") or {}, source):
        if "freshness" in settings:
            value = settings["freshness"]
            return value if isinstance(value, dict) else None
    return None


def read_properties(files: list[Path]) -> Properties:
    properties = Properties()
    for path in files:
        data = load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping (models:, sources:, seeds:)", path=path, line=1, col=1)
        for key, store in (("models", properties.models), ("seeds", properties.seeds)):
            for entry in data.get(key) or []:
                entry = _mapping(entry, f"'{key}:'", path)
                if "name" not in entry:
                    raise ConfigError(f"an entry of '{key}:' has no 'name'", path=path)
                store[str(entry["name"])] = _node(entry, path)
        for entry in data.get("sources") or []:
            entry = _mapping(entry, "'sources:'", path)
            if "name" not in entry:
                raise ConfigError("an entry of 'sources:' has no 'name'", path=path)
            for source in _sources(entry, path):
                properties.sources[(source.source, source.table)] = source
    return properties
