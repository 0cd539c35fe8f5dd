"""Project settings (``sqlorch.yml``) and targets (``profiles.yml``) as frozen dataclasses.

Secrets in profiles come from ``{{ env_var('X') }}``; a ``Target`` keeps its connection
settings in a private mapping and never includes them in its ``repr``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqlorch.errors import ConfigError
from sqlorch.refs import TableRef

PROJECT_FILE = "sqlorch.yml"
PROFILES_FILE = "profiles.yml"
TARGET_TYPES = ("duckdb", "snowflake", "bigquery", "postgres")
PROJECT_KEYS = (
    "name",
    "dialect",
    "vars",
    "seed_schema",
    "default_schema",
    "default_freshness",
    "suspend_after_failures",
    "retry_attempts",
    "lease_expiry",
    "max_batch_rows",
)
PROFILE_KEYS = ("target", "targets")
# The settings sqlorch (or its adapter) reads per target type. Snowflake's are the
# connector's own connection parameters, passed through unchecked: there are over a
# hundred, and the connector reports the ones it does not know.
TARGET_KEYS: dict[str, tuple[str, ...] | None] = {
    "duckdb": ("type", "schema_prefix", "path", "threads", "memory_limit", "profile_log", "query_log"),
    "postgres": (
        "type", "schema_prefix", "threads", "host", "port", "dbname", "database", "user", "password", "sslmode",
        "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "options", "target_session_attrs",
    ),
    "bigquery": (
        "type", "schema_prefix", "threads", "project", "database", "location", "timeout", "api_endpoint", "keyfile",
    ),
    "snowflake": None,
}  # fmt: skip
# A relation name part sqlorch derives from a file or folder name, or a schema setting.
PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ProjectSettings:
    """Everything in ``sqlorch.yml``; every key is optional.

    name: project name (default: the folder name).
    dialect: sqlglot dialect the models are written in (default ``duckdb``).
    vars: values for ``{{ var('x') }}``.
    seed_schema: schema seeds load into (default ``seeds``).
    default_schema: schema of models directly under ``models/`` (default ``main``).
    default_freshness: the freshness target (seconds) of models that declare neither
    ``freshness`` nor ``cron``; None: such models are eager in ``sqlorch run``.
    suspend_after_failures: consecutive failures in ``sqlorch run`` that suspend a model.
    retry_attempts: tries of a step that fails with a transient error (default 3; 1: none).
    lease_expiry: seconds a silent holder of the target's lease keeps it (default 60).
    max_batch_rows: changed rows above which a step replaces its keys in chunks (None:
    sized for the machine, ``planning/chunks.py``).
    """

    root: Path
    name: str
    dialect: str = "duckdb"
    vars: dict[str, Any] = field(default_factory=dict)
    seed_schema: str = "seeds"
    default_schema: str = "main"
    default_freshness: float | None = None
    suspend_after_failures: int = 5
    retry_attempts: int = 3
    lease_expiry: float = 60.0
    max_batch_rows: int | None = None


def read_utf8(path: Path) -> str:
    """A project file as text: UTF-8, a leading byte-order mark dropped (editors on
    Windows write one); anything else is an error at the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        col = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            f"the file is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})",
            path=path,
            line=line,
            col=col,
            hint="save the file as UTF-8",
        ) from None


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, turning a syntax error into ``path:line:col: error``."""
    text = read_utf8(path)
    try:
        # libyaml's loader when PyYAML has it: several times faster on large source files
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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


def yaml_position(path: Path, keys: tuple[Any, ...]) -> tuple[int | None, int | None]:
    """Line and column of the key reached by ``keys`` (a path of mapping keys) in a YAML
    file; only error messages ask, so the file is composed again here."""
    try:
        node = yaml.compose(read_utf8(path), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ConfigError):
        return None, None
    mark = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if found is None:
            break
        mark, node = found[0].start_mark, found[1]
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def check_keys(
    mapping: dict[Any, Any],
    known: Collection[str],
    path: Path,
    where: tuple[Any, ...] = (),
    what: str = "setting",
    owner: str = "",
) -> None:
    """An unknown key is a typo until shown otherwise: name it, where it is, and the
    closest known key."""
    for key in mapping:
        if str(key) in known:
            continue
        line, col = yaml_position(path, (*where, key))
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + f"known: {', '.join(sorted(known))}"
        where_text = f" of {owner}" if owner else ""
        raise ConfigError(f"unknown {what} '{key}'{where_text}", path=path, line=line, col=col, hint=hint)


def _check_type(value: Any, kind: type, path: Path, key: str, shape: str) -> None:
    if value is not None and not isinstance(value, kind):
        line, col = yaml_position(path, (key,))
        raise ConfigError(f"'{key}' must be {shape}", path=path, line=line, col=col)


def load_project_settings(root: Path, cli_vars: dict[str, Any] | None = None) -> ProjectSettings:
    path = root / PROJECT_FILE
    data: Any = {}
    if path.exists():
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping of settings", path=path, line=1, col=1)
        check_keys(data, PROJECT_KEYS, path)
        _check_type(data.get("vars"), dict, path, "vars", "a mapping of names to values")
        for key in ("seed_schema", "default_schema"):
            value = data.get(key)
            if value is not None and not PLAIN_IDENTIFIER.fullmatch(str(value)):
                line, col = yaml_position(path, (key,))
                raise ConfigError(
                    f"'{key}' must be a plain identifier (letters, digits, underscores), not {value!r}",
                    path=path,
                    line=line,
                    col=col,
                )
        dialect = data.get("dialect")
        if dialect is not None:
            _check_dialect(str(dialect), path)
        _check_control_settings(data, path)
    variables = dict(data.get("vars") or {})
    variables.update(cli_vars or {})
    return ProjectSettings(
        root=root,
        name=str(data.get("name") or root.resolve().name),
        dialect=str(data.get("dialect") or "duckdb"),
        vars=variables,
        seed_schema=str(data.get("seed_schema") or "seeds"),
        default_schema=str(data.get("default_schema") or "main"),
        default_freshness=duration_setting(data.get("default_freshness"), path, ("default_freshness",)),
        suspend_after_failures=int(data.get("suspend_after_failures") or 5),
        retry_attempts=int(data.get("retry_attempts") or 3),
        lease_expiry=float(data.get("lease_expiry") or 60.0),
        max_batch_rows=int(data["max_batch_rows"]) if data.get("max_batch_rows") is not None else None,
    )


def duration_setting(value: Any, path: Path, keys: tuple[Any, ...]) -> float | None:
    """A YAML duration (``15m``) as seconds, or a ``path:line:col`` error at its key."""
    from sqlorch.schedule.freshness import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(str(value))
    except ValueError as error:
        line, col = yaml_position(path, keys)
        raise ConfigError(f"'{keys[-1]}': {error}", path=path, line=line, col=col) from None


def _check_control_settings(data: dict[str, Any], path: Path) -> None:
    duration_setting(data.get("default_freshness"), path, ("default_freshness",))
    _check_number(data.get("suspend_after_failures"), path, "suspend_after_failures", 1, whole=True)
    _check_number(data.get("retry_attempts"), path, "retry_attempts", 1, whole=True)
    _check_number(data.get("lease_expiry"), path, "lease_expiry", 1)
    _check_number(data.get("max_batch_rows"), path, "max_batch_rows", 1, whole=True)


def _check_number(value: Any, path: Path, key: str, least: float, whole: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool) and (isinstance(value, int) or not whole):
        if value >= least:
            return
    line, col = yaml_position(path, (key,))
    shape = "a whole number" if whole else "a number of seconds"
    raise ConfigError(f"'{key}' must be {shape}, at least {least:g}, not {value!r}", path=path, line=line, col=col)


def _check_dialect(name: str, path: Path) -> None:
    from sqlglot.dialects.dialect import Dialect

    try:
        Dialect.get_or_raise(name)
    except ValueError as error:
        line, col = yaml_position(path, ("dialect",))
        raise ConfigError(f"unknown dialect {name!r}", path=path, line=line, col=col, hint=str(error)) from None


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
    check_keys(data, PROFILE_KEYS, path)
    targets: dict[str, Any] = data["targets"]
    name = target_name or data.get("target") or next(iter(targets), None)
    if name not in targets:
        line, col = (None, None) if target_name else yaml_position(path, ("target",))
        close = difflib.get_close_matches(str(name), [str(t) for t in targets], n=1)
        raise ConfigError(
            f"unknown target '{name}'",
            path=path,
            line=line,
            col=col,
            hint=(f"did you mean '{close[0]}'? " if close else "") + f"targets defined: {', '.join(targets) or 'none'}",
        )
    raw = targets[name]
    if not isinstance(raw, dict):
        line, col = yaml_position(path, ("targets", name))
        raise ConfigError(f"target '{name}' must be a mapping", path=path, line=line, col=col)
    kind = raw.get("type")
    if kind not in TARGET_TYPES:
        line, col = yaml_position(path, ("targets", name, "type") if "type" in raw else ("targets", name))
        close = difflib.get_close_matches(str(kind), TARGET_TYPES, n=1)
        raise ConfigError(
            f"target '{name}' has type {kind!r}",
            path=path,
            line=line,
            col=col,
            hint=(f"did you mean '{close[0]}'? " if close else "") + f"type must be one of: {', '.join(TARGET_TYPES)}",
        )
    known = TARGET_KEYS[kind]
    if known is not None:
        check_keys(raw, known, path, ("targets", name), what=f"{kind} setting", owner=f"target '{name}'")
    settings = _render_env(dict(raw), path)
    settings.pop("type")
    if kind == "duckdb":
        for key, default in (("path", "warehouse.duckdb"), ("profile_log", None), ("query_log", None)):
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
