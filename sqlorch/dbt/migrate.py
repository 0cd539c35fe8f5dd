"""``sqlorch migrate --from-dbt OUT_DIR``: a loaded dbt project written out as a plain
sqlorch project, for teams who want to drop Jinja.

Each model becomes ``models/<schema>/<name>.sql``: its settings as header comments, then
its rendered SQL, in which references already are the relation names (ephemeral models
inlined as CTEs, vars and macros expanded for the target the project was loaded with).
Seeds are copied as comma-separated files, sources keep how they are captured.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from sqlorch.errors import ConfigError
from sqlorch.project.loader import Project
from sqlorch.project.model import Model


def _header(model: Model, root: Path) -> list[str]:
    config = model.config
    settings = [("materialized", config.materialized)]
    settings += [("tags", ", ".join(config.tags))] if config.tags else []
    settings += [("unique_key", ", ".join(config.unique_key))] if config.unique_key else []
    settings += [("description", " ".join(config.description.split()))] if config.description else []
    settings += [("audits", config.audits.text)] if config.audits else []
    settings += [("audits_warn", config.audits_warn.text)] if config.audits_warn else []
    origin = f"-- Migrated from {model.path.relative_to(root)} (dbt) by sqlorch migrate --from-dbt"
    return [origin, *(f"-- {key}: {value}" for key, value in settings)]


def check_out_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty", path=out, hint="migrate writes into a new or empty folder")


def migrate_project(project: Project, out: Path) -> list[str]:
    """Write ``project`` under ``out``; returns what could not be carried over."""
    check_out_dir(out)
    root = project.root
    lost: list[str] = []
    seed_schemas = {ref.schema for ref in project.seeds}
    if len(seed_schemas) > 1:
        raise ConfigError(
            f"seeds load into several schemas ({', '.join(sorted(seed_schemas))}); sqlorch loads all into one",
            path=root / "dbt_project.yml",
            hint="give the seeds one +schema before migrating",
        )
    for ref, model in sorted(project.models.items()):
        path = out / "models" / ref.schema / f"{ref.name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(_header(model, root)) + "\n" + model.sql.strip() + "\n", encoding="utf-8")
        lost += [f"{ref}: {note}" for note in project.notes.get(ref, []) if "skipped" in note or "not run" in note]
    for ref, seed in sorted(project.seeds.items()):
        target = out / "seeds" / f"{ref.name}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with seed.path.open(newline="") as source, target.open("w", newline="") as copy:
            csv.writer(copy).writerows(csv.reader(source, delimiter=seed.delimiter))
        if seed.column_types:
            types = ", ".join(f"{name}: {kind}" for name, kind in seed.column_types)
            lost.append(f"{ref}: column_types ({types}): sqlorch infers seed column types")
    sources = {
        str(ref): {
            key: value
            for key, value in (
                ("unique_key", list(spec.unique_key)),
                ("cursor", spec.cursor),
                ("append_only", spec.append_only),
            )
            if value
        }
        for ref, spec in sorted(project.sources.items())
    }
    settings = {
        "name": project.settings.name,
        "dialect": project.settings.dialect,
        "seed_schema": next(iter(seed_schemas), project.settings.seed_schema),
        "default_schema": project.settings.default_schema,
    }
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "sqlorch.yml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    if sources:
        (out / "models" / "sources.yml").write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")
    if (root / "profiles.yml").is_file():
        (out / "profiles.yml").write_text((root / "profiles.yml").read_text(encoding="utf-8"), encoding="utf-8")
    return lost
