"""A dbt ``profiles.yml`` (``<profile>: {target: dev, outputs: {dev: {...}}}``) as a sqlorch
target, for duckdb, postgres, snowflake and bigquery outputs.

Each output field is renamed to what sqlorch's adapter takes; fields sqlorch has no use for
are reported (logged as warnings), never passed to a driver. The output's ``schema`` is
dbt's target schema: model schemas are made from it (see ``schema_names``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlorch.config import Target, _render_env, find_profiles, load_target, load_yaml
from sqlorch.errors import ConfigError

log = logging.getLogger(__name__)

# dbt output field -> sqlorch target setting (None: understood, not a connection setting)
FIELDS: dict[str, dict[str, str | None]] = {
    "duckdb": {"path": "path", "schema": None, "database": None, "threads": None},
    "postgres": {
        "host": "host", "port": "port", "user": "user", "password": "password", "pass": "password",
        "dbname": "dbname", "database": "dbname", "schema": None, "threads": None, "sslmode": "sslmode",
        "sslrootcert": "sslrootcert", "sslcert": "sslcert", "sslkey": "sslkey",
        "connect_timeout": "connect_timeout",
    },
    "snowflake": {
        "account": "account", "user": "user", "password": "password", "role": "role",
        "database": "database", "warehouse": "warehouse", "schema": None, "threads": None,
        "authenticator": "authenticator", "private_key_path": "private_key_file",
        "private_key_passphrase": "private_key_file_pwd", "host": "host", "port": "port",
        "protocol": "protocol", "client_session_keep_alive": "client_session_keep_alive",
    },
    "bigquery": {
        "project": "project", "database": "project", "dataset": None, "schema": None, "threads": None,
        "keyfile": "keyfile", "location": "location", "method": None, "api_endpoint": "api_endpoint",
    },
}  # fmt: skip
DEFAULT_SCHEMA = {"duckdb": "main", "postgres": "public", "snowflake": "public", "bigquery": "dbt"}


@dataclass(frozen=True)
class DbtTarget:
    """What ``{{ target }}`` shows a model: ``target.name``, ``.schema``, ``.type``..."""

    name: str
    type: str
    schema: str
    database: str | None = None
    profile_name: str | None = None


def is_dbt_profiles(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "targets" not in data
        and any(isinstance(value, dict) and "outputs" in value for value in data.values())
    )


def _profile_name(root: Path, data: dict[str, Any], path: Path) -> str:
    from sqlorch.dbt.project_file import is_dbt_project, read_dbt_project

    profiles = [name for name, value in data.items() if isinstance(value, dict) and "outputs" in value]
    wanted = read_dbt_project(root).profile if is_dbt_project(root) else None
    if wanted is None and len(profiles) == 1:
        return str(profiles[0])
    if wanted not in profiles:
        raise ConfigError(
            f"profile {wanted!r} is not in {path.name}"
            if wanted
            else "which profile? none is named in dbt_project.yml",
            path=path,
            hint=f"profiles defined: {', '.join(map(str, profiles)) or 'none'}",
        )
    return str(wanted)


def load_dbt_target(root: Path, data: dict[str, Any], path: Path, target_name: str | None) -> tuple[Target, DbtTarget]:
    profile = _profile_name(root, data, path)
    outputs = data[profile].get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise ConfigError(f"profile '{profile}' has no outputs", path=path)
    name = target_name or data[profile].get("target") or next(iter(outputs))
    if name not in outputs or not isinstance(outputs[name], dict):
        raise ConfigError(
            f"unknown target '{name}' in profile '{profile}'", path=path, hint=f"outputs: {', '.join(outputs)}"
        )
    raw = _render_env(dict(outputs[name]), path)
    kind = raw.pop("type", None)
    if kind not in FIELDS:
        raise ConfigError(
            f"output '{name}' has type {kind!r}",
            path=path,
            hint=f"sqlorch runs dbt outputs of type {', '.join(FIELDS)}",
        )
    fields = FIELDS[kind]
    unknown = sorted(key for key in raw if key not in fields)
    if unknown:
        log.warning("%s: output '%s': not used by sqlorch: %s", path, name, ", ".join(unknown))
    settings = {str(fields[key]): value for key, value in raw.items() if fields.get(key)}
    if kind == "duckdb":
        settings.setdefault("path", "warehouse.duckdb")
        if settings["path"] != ":memory:" and not Path(str(settings["path"])).expanduser().is_absolute():
            settings["path"] = str(root / str(settings["path"]))
    schema = str(raw.get("schema") or raw.get("dataset") or DEFAULT_SCHEMA[kind])
    database = settings.get("database") if kind == "snowflake" else None
    target = Target(name=str(name), type=kind, settings=settings, database=database)
    return target, DbtTarget(str(name), kind, schema, raw.get("database") or raw.get("dbname"), profile)


def dbt_target(root: Path, profiles_dir: Path | None, target_name: str | None) -> DbtTarget:
    """The target a dbt project's models see, from a dbt or a sqlorch ``profiles.yml``."""
    path = find_profiles(root, profiles_dir)
    if path is not None:
        data = load_yaml(path)
        if is_dbt_profiles(data):
            return load_dbt_target(root, data, path, target_name)[1]
    target = load_target(root, profiles_dir, target_name)
    return DbtTarget(target.name, target.type, DEFAULT_SCHEMA[target.type], target.database)
