"""Source descriptions from YAML files under ``models/`` (key ``sources:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlorch.config import load_yaml
from sqlorch.errors import ConfigError
from sqlorch.project.model import SourceSpec
from sqlorch.refs import TableRef

# audits, audits_warn: read by sqlorch.audits.declared
SOURCE_KEYS = {"cursor", "unique_key", "append_only", "columns", "description", "audits", "audits_warn"}


def _as_columns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.lower(),)
    return tuple(str(item).lower() for item in value)


def _line_of(path: Path, needle: str) -> int | None:
    """The first line mentioning ``needle``; only error messages look it up (a lookup per
    source would read the file once per source)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    return None


def load_sources(yaml_files: list[Path]) -> dict[TableRef, SourceSpec]:
    specs: dict[TableRef, SourceSpec] = {}
    for path in yaml_files:
        data = load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping with a 'sources:' key", path=path, line=1, col=1)
        sources = data.get("sources") or {}
        if not isinstance(sources, dict):
            raise ConfigError(
                "'sources:' must map 'schema.table' to settings", path=path, line=_line_of(path, "sources")
            )
        for name, settings in sources.items():
            parts = str(name).lower().split(".")
            if len(parts) not in (2, 3) or not all(parts):
                raise ConfigError(
                    f"source name '{name}' must be 'schema.table'", path=path, line=_line_of(path, str(name))
                )
            settings = settings or {}
            if not isinstance(settings, dict):
                raise ConfigError(
                    f"settings of source '{name}' must be a mapping", path=path, line=_line_of(path, str(name))
                )
            unknown = set(settings) - SOURCE_KEYS
            if unknown:
                raise ConfigError(
                    f"unknown source setting(s) {', '.join(sorted(unknown))} for '{name}'",
                    path=path,
                    line=_line_of(path, str(name)),
                    hint=f"known settings: {', '.join(sorted(SOURCE_KEYS))}",
                )
            columns = settings.get("columns")
            if columns is not None and not isinstance(columns, dict):
                raise ConfigError(
                    f"'columns' of '{name}' must map column names to types", path=path, line=_line_of(path, str(name))
                )
            ref = TableRef(schema=parts[-2], name=parts[-1], catalog=parts[0] if len(parts) == 3 else None)
            if ref in specs:
                raise ConfigError(
                    f"source '{name}' is described twice",
                    path=path,
                    line=_line_of(path, str(name)),
                    hint=f"the other description is in {specs[ref].path}",
                )
            specs[ref] = SourceSpec(
                ref=ref,
                cursor=str(settings["cursor"]).lower() if settings.get("cursor") else None,
                unique_key=_as_columns(settings.get("unique_key")),
                append_only=bool(settings.get("append_only", False)),
                columns={str(k).lower(): str(v) for k, v in columns.items()} if columns else None,
                path=path,
            )
            if specs[ref].append_only and not specs[ref].cursor:
                raise ConfigError(
                    f"source '{name}' is append_only but has no cursor",
                    path=path,
                    line=_line_of(path, str(name)),
                    hint="append_only sources need a 'cursor:' column that grows with each load",
                )
    return specs
