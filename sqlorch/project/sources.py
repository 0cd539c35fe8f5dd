"""Source descriptions from YAML files under ``models/`` (key ``sources:``)."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlorch.config import check_keys, duration_setting, load_yaml, read_utf8, yaml_position
from sqlorch.errors import ConfigError
from sqlorch.project.model import SourceSpec
from sqlorch.refs import TableRef

# audits, audits_warn: read by sqlorch.audits.declared
YAML_KEYS = ("sources", "models")
SOURCE_KEYS = {
    "cursor", "unique_key", "append_only", "columns", "description", "audits", "audits_warn", "freshness", "loaded_at",
}  # fmt: skip
FRESHNESS_KEYS = ("warn_after", "error_after")


def _as_columns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.lower(),)
    return tuple(str(item).lower() for item in value)


def _line_of(path: Path, needle: str) -> int | None:
    """The first line mentioning ``needle``; only error messages look it up (a lookup per
    source would read the file once per source)."""
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
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
        # 'models:' holds audits declared in YAML (sqlorch.audits.declared reads it); a
        # misspelt 'sources:' would hide every source
        check_keys(data, YAML_KEYS, path, what="key")
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
            check_keys(settings, SOURCE_KEYS, path, ("sources", name), what="source setting", owner=f"'{name}'")
            columns = settings.get("columns")
            if columns is not None and not isinstance(columns, dict):
                raise ConfigError(
                    f"'columns' of '{name}' must map column names to types", path=path, line=_line_of(path, str(name))
                )
            warn_after, error_after = _freshness(settings.get("freshness"), path, name)
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
                warn_after=warn_after,
                error_after=error_after,
                loaded_at=str(settings["loaded_at"]).lower() if settings.get("loaded_at") else None,
            )
            declared = specs[ref].columns
            if declared is not None:
                check_source_columns(ref, specs[ref], declared)
            if specs[ref].append_only and not specs[ref].cursor:
                raise ConfigError(
                    f"source '{name}' is append_only but has no cursor",
                    path=path,
                    line=_line_of(path, str(name)),
                    hint="append_only sources need a 'cursor:' column that grows with each load",
                )
    return specs


def _freshness(value: Any, path: Path, name: Any) -> tuple[float | None, float | None]:
    """``freshness: {warn_after: 2h, error_after: 6h}``: how late the source may be."""
    if value is None:
        return None, None
    where = ("sources", name, "freshness")
    if not isinstance(value, dict) or not value:
        line, col = yaml_position(path, where)
        raise ConfigError(
            f"'freshness' of source '{name}' must be a mapping such as {{warn_after: 2h, error_after: 6h}}",
            path=path, line=line, col=col,
        )  # fmt: skip
    check_keys(value, FRESHNESS_KEYS, path, where, what="freshness setting", owner=f"'{name}'")
    warn = duration_setting(value.get("warn_after"), path, (*where, "warn_after"))
    error = duration_setting(value.get("error_after"), path, (*where, "error_after"))
    if warn is not None and error is not None and warn > error:
        line, col = yaml_position(path, (*where, "warn_after"))
        raise ConfigError(
            f"warn_after of source '{name}' is longer than its error_after", path=path, line=line, col=col,
            hint="a source is first late (warn), then too late (error)",
        )  # fmt: skip
    return warn, error


def check_source_columns(ref: TableRef, spec: SourceSpec, columns: Collection[str]) -> None:
    """The ``cursor`` and ``unique_key`` of a source must be among its columns (declared
    ones at compile, the warehouse's at build): a typo there would otherwise surface as a
    warehouse error in the middle of a capture. Column names compare case-insensitively,
    as unquoted SQL names do."""
    available = {column.lower() for column in columns}
    settings = [("cursor", spec.cursor)] if spec.cursor else []
    settings += [("unique_key", column) for column in spec.unique_key]
    settings += [("loaded_at", spec.loaded_at)] if spec.loaded_at and spec.loaded_at_checked else []
    for setting, column in settings:
        if column.lower() in available:
            continue
        line, col = (
            yaml_position(spec.path, ("sources", _yaml_name(ref, spec.path), setting)) if spec.path else (None, None)
        )
        close = difflib.get_close_matches(column, sorted(available), n=1)
        raise ConfigError(
            f"{setting} '{column}' of source {ref} is not one of its columns",
            path=spec.path,
            line=line,
            col=col,
            hint=(f"did you mean '{close[0]}'? " if close else "") + f"columns: {', '.join(sorted(available))}",
        )


def _yaml_name(ref: TableRef, path: Path) -> str:
    """The source's key as written in its YAML file (its case may differ from the ref)."""
    data = load_yaml(path) or {}
    for name in (data.get("sources") or {}) if isinstance(data, dict) else {}:
        if str(name).lower() == str(ref):
            return str(name)
    return str(ref)
