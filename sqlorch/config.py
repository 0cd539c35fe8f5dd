"""Project settings (``sqlorch.yml``) and targets (``profiles.yml``) as frozen dataclasses.

Secrets in profiles come from ``{{ env_var('X') }}``; a ``Target`` keeps its connection
settings in a private mapping and never includes them in its ``repr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqlorch.errors import ConfigError
from sqlorch.refs import TableRef

PROJECT_FILE = "sqlorch.yml"
PROFILES_FILE = "profiles.yml"
TARGET_TYPES = ("duckdb", "snowflake", "bigquery", "postgres")
PROJECT_KEYS = {"name", "dialect", "vars", "seed_schema", "default_schema"}


@dataclass(frozen=True)
class ProjectSettings:
    """Everything in ``sqlorch.yml``; every key is optional.

    name: project name (default: the folder name).
    dialect: sqlglot dialect the models are written in (default ``duckdb``).
    vars: values for ``{{ var('x') }}``.
    seed_schema: schema seeds load into (default ``seeds``).
    default_schema: schema of models directly under ``models/`` (default ``main``).
    """

    root: Path
    name: str
    dialect: str = "duckdb"
    vars: dict[str, Any] = field(default_factory=dict)
    seed_schema: str = "seeds"
    default_schema: str = "main"


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, turning a syntax error into ``path:line:col: error``."""
    try:
        # libyaml's loader when PyYAML has it: several times faster on large source files
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise ConfigError(
            f"invalid YAML: {error.problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", path=path) from None


def load_project_settings(root: Path, cli_vars: dict[str, Any] | None = None) -> ProjectSettings:
    path = root / PROJECT_FILE
    data: Any = {}
    if path.exists():
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping of settings", path=path, line=1, col=1)
        unknown = set(data) - PROJECT_KEYS
        if unknown:
            raise ConfigError(
                f"unknown setting(s): {', '.join(sorted(unknown))}",
                path=path,
                hint=f"known settings: {', '.join(sorted(PROJECT_KEYS))}",
            )
    variables = dict(data.get("vars") or {})
    variables.update(cli_vars or {})
    return ProjectSettings(
        root=root,
        name=str(data.get("name") or root.resolve().name),
        dialect=str(data.get("dialect") or "duckdb"),
        vars=variables,
        seed_schema=str(data.get("seed_schema") or "seeds"),
        default_schema=str(data.get("default_schema") or "main"),
    )


@dataclass(frozen=True)
class Target:
    """One entry of ``profiles.yml``'s ``targets``. ``settings`` may hold secrets."""

    name: str
    type: str
    settings: dict[str, Any] = field(repr=False)
    schema_prefix: str = ""
    database: str | None = None

    def __repr__(self) -> str:
        return f"Target(name={self.name!r}, type={self.type!r})"

    def physical(self, ref: TableRef) -> TableRef:
        """Where a project relation (model or seed) lives on this target."""
        return TableRef(schema=self.schema_prefix + ref.schema, name=ref.name, catalog=self.database)


def _render_env(value: Any, path: Path) -> Any:
    """Render ``{{ env_var('X') }}`` inside profile values (recursively)."""
    if isinstance(value, dict):
        return {key: _render_env(item, path) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_env(item, path) for item in value]
    if isinstance(value, str) and "{{" in value:
        from sqlorch.project.templating import render_string

        return render_string(value, path=path, variables={})
    return value


def default_target(root: Path) -> Target:
    return Target(name="dev", type="duckdb", settings={"path": str(root / "warehouse.duckdb")})


def find_profiles(root: Path, profiles_dir: Path | None) -> Path | None:
    candidates = [profiles_dir] if profiles_dir else [root, Path.home() / ".sqlorch"]
    if profiles_dir is None and (root / "dbt_project.yml").is_file():  # where dbt looks too
        dbt_dir = os.environ.get("DBT_PROFILES_DIR")
        candidates = [*([Path(dbt_dir)] if dbt_dir else []), *candidates, Path.home() / ".dbt"]
    for folder in candidates:
        if folder is not None and (folder / PROFILES_FILE).exists():
            return folder / PROFILES_FILE
    if profiles_dir is not None:
        raise ConfigError(f"no {PROFILES_FILE} in {profiles_dir}", path=profiles_dir)
    return None


def load_target(root: Path, profiles_dir: Path | None, target_name: str | None) -> Target:
    """Resolve the target to build against: the named one, the profile's default, or DuckDB."""
    path = find_profiles(root, profiles_dir)
    if path is None:
        if target_name not in (None, "dev"):
            raise ConfigError(
                f"unknown target '{target_name}': there is no {PROFILES_FILE}",
                hint=f"create {PROFILES_FILE} (see profiles.yml.example)",
            )
        return default_target(root)
    data = load_yaml(path)
    from sqlorch.dbt.profiles import is_dbt_profiles, load_dbt_target

    if is_dbt_profiles(data):  # a dbt profiles.yml, taken as it is
        return load_dbt_target(root, data, path, target_name)[0]
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        raise ConfigError("expected a mapping with a 'targets:' mapping", path=path, line=1, col=1)
    targets: dict[str, Any] = data["targets"]
    name = target_name or data.get("target") or next(iter(targets), None)
    if name not in targets:
        raise ConfigError(
            f"unknown target '{name}'",
            path=path,
            hint=f"targets defined: {', '.join(targets) or 'none'}",
        )
    raw = targets[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"target '{name}' must be a mapping", path=path)
    settings = _render_env(dict(raw), path)
    kind = settings.pop("type", None)
    if kind not in TARGET_TYPES:
        raise ConfigError(
            f"target '{name}' has type {kind!r}",
            path=path,
            hint=f"type must be one of: {', '.join(TARGET_TYPES)}",
        )
    if kind == "duckdb":
        for key, default in (("path", "warehouse.duckdb"), ("profile_log", None)):
            if (key in settings or default is not None) and settings.get(key) != ":memory:":
                file = Path(os.path.expanduser(str(settings.get(key, default))))
                settings[key] = str(file if file.is_absolute() else root / file)
    return Target(
        name=str(name),
        type=kind,
        settings=settings,
        schema_prefix=str(settings.pop("schema_prefix", "") or ""),
        database=settings.get("database") if kind != "duckdb" else None,
    )
