"""Listing a project's files: models, YAML source files, macros and seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectFiles:
    models: list[Path]
    yaml_files: list[Path]
    macros: list[Path]
    seeds: list[Path]


def discover_files(root: Path) -> ProjectFiles:
    models_dir = root / "models"
    return ProjectFiles(
        models=sorted(models_dir.rglob("*.sql")),
        yaml_files=sorted([*models_dir.rglob("*.yml"), *models_dir.rglob("*.yaml")]),
        macros=sorted((root / "macros").glob("*.sql")),
        seeds=sorted((root / "seeds").glob("*.csv")),
    )
