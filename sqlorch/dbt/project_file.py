"""``dbt_project.yml``: the folders, vars and the ``models:`` / ``seeds:`` config trees."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlorch.config import load_yaml
from sqlorch.errors import ConfigError

DBT_PROJECT_FILE = "dbt_project.yml"


@dataclass(frozen=True)
class DbtProjectFile:
    root: Path
    name: str
    profile: str | None
    model_paths: tuple[str, ...] = ("models",)
    seed_paths: tuple[str, ...] = ("seeds",)
    macro_paths: tuple[str, ...] = ("macros",)
    vars: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)  # the config tree, as written
    seeds: dict[str, Any] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()  # features the project uses that sqlorch does not run

    @property
    def path(self) -> Path:
        return self.root / DBT_PROJECT_FILE


def is_dbt_project(root: Path) -> bool:
    return (root / DBT_PROJECT_FILE).is_file()


def _paths(data: dict[str, Any], key: str, default: str, path: Path) -> tuple[str, ...]:
    value = data.get(key, [default])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"'{key}' must be a list of folders", path=path)
    return tuple(value)


def _project_vars(raw: Any, name: str, path: Path) -> dict[str, Any]:
    """dbt's ``vars:``: global values, plus those scoped under the project's own name
    (which win). Values scoped to other packages do not apply to this project's models."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("'vars' must be a mapping", path=path)
    variables = {key: value for key, value in raw.items() if not (isinstance(value, dict) and key == name)}
    scoped = raw.get(name)
    if isinstance(scoped, dict):
        variables.update(scoped)
    return variables


def read_dbt_project(root: Path) -> DbtProjectFile:
    path = root / DBT_PROJECT_FILE
    data = load_yaml(path)
    if not isinstance(data, dict) or not data.get("name"):
        raise ConfigError("expected a mapping with at least 'name:'", path=path, line=1, col=1)
    name = str(data["name"])
    for key in ("models", "seeds"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f"'{key}:' must be a mapping (the config tree)", path=path)
    unsupported = [f"{key} hooks" for key in ("on-run-start", "on-run-end") if data.get(key)]
    unsupported += [f"packages ({name})" for name in ("packages.yml", "dependencies.yml") if (root / name).is_file()]
    snapshots = [root / folder for folder in _paths(data, "snapshot-paths", "snapshots", path)]
    if any(any(folder.rglob("*.sql")) for folder in snapshots if folder.is_dir()):
        unsupported.append("snapshots")
    return DbtProjectFile(
        unsupported=tuple(unsupported),
        root=root,
        name=name,
        profile=str(data["profile"]) if data.get("profile") else None,
        model_paths=_paths(data, "model-paths", "models", path),
        seed_paths=_paths(data, "seed-paths", "seeds", path),
        macro_paths=_paths(data, "macro-paths", "macros", path),
        vars=_project_vars(data.get("vars"), name, path),
        models=data.get("models") or {},
        seeds=data.get("seeds") or {},
    )
