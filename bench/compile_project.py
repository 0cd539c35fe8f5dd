"""Generate a layered project of N models, for sqlorch, dbt or SQLMesh, and time `sqlorch compile` on it.

    python bench/compile_project.py [--models 1000] [--out DIR] [--repeat 3]
    python bench/compile_project.py --models 1000 --flavour dbt --out DIR --generate-only

Layers: staging (reads declared sources raw.*), intermediate (joins of earlier staging /
intermediate models, some with CTEs and subqueries), marts (aggregates, UNION ALL of
intermediates). Every source declares its columns, so sqlorch's compile checks every
column of every model. The three flavours hold the same models and the same SQL; only
the way a relation is named (``staging.stg_1``, ``{{ ref('stg_1') }}``) and the
project files around the models differ, so the compile/parse figures of the tools are
comparable. ``bench/run`` times all three; this script's own timing is sqlorch only.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COLUMNS = {
    "id": "BIGINT",
    "customer_id": "BIGINT",
    "amount": "DECIMAL(12, 2)",
    "created_at": "TIMESTAMP",
    "category": "VARCHAR",
}
FLAVOURS = ("sqlorch", "dbt", "sqlmesh")

# (schema, name) -> how a model's SQL names that relation in one flavour
RelationNamer = Callable[[str, str], str]


@dataclass(frozen=True)
class GeneratedModel:
    schema: str
    name: str
    sql: str  # the SELECT, relations named by the flavour's namer
    tag: str | None = None


def plain_name(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def dbt_name(schema: str, name: str) -> str:
    """dbt resolves relations through Jinja: sources by (source, table), models by name."""
    if schema == "raw":
        return f"{{{{ source('raw', '{name}') }}}}"
    return f"{{{{ ref('{name}') }}}}"


def layer_sizes(n_models: int) -> dict[str, int]:
    n_staging = max(1, n_models * 2 // 5)
    n_marts = max(1, n_models // 4)
    return {
        "sources": max(1, n_models // 20),
        "staging": n_staging,
        "intermediate": max(0, n_models - n_staging - n_marts),
        "marts": n_marts,
    }


def build_models(n_models: int, seed: int, rel: RelationNamer) -> list[GeneratedModel]:
    """The project's models in dependency order; the random choices depend on the seed only,
    so every flavour gets the same graph."""
    rng = random.Random(seed)
    sizes = layer_sizes(n_models)
    n_sources = sizes["sources"]
    models = [
        GeneratedModel(
            "staging",
            f"stg_{i}",
            f"SELECT\n    id,\n    customer_id,\n    CAST(amount AS DECIMAL(12, 2)) AS amount,\n"
            f"    created_at,\n    lower(category) AS category\n"
            f"FROM {rel('raw', f'events_{i % n_sources}')}\nWHERE amount IS NOT NULL\n",
            tag="staging",
        )
        for i in range(sizes["staging"])
    ]
    earlier = [("staging", m.name) for m in models]
    for i in range(sizes["intermediate"]):
        pair = rng.sample(earlier, 2) if len(earlier) > 1 else [earlier[0], earlier[0]]
        a, b = (rel(*p) for p in pair)
        if i % 3 == 0:
            sql = (
                f"WITH base AS (\n    SELECT id, customer_id, amount, created_at, category FROM {a}\n"
                f"    WHERE customer_id IN (SELECT customer_id FROM {b} WHERE amount > 10)\n)\n"
                f"SELECT id, customer_id, amount, created_at, category FROM base\n"
            )
        else:
            sql = (
                f"SELECT\n    a.id,\n    a.customer_id,\n    a.amount + coalesce(b.amount, 0) AS amount,\n"
                f"    a.created_at,\n    a.category\nFROM {a} AS a\nLEFT JOIN {b} AS b ON a.id = b.id\n"
            )
        models.append(GeneratedModel("intermediate", f"int_{i}", sql))
        earlier.append(("intermediate", f"int_{i}"))
    inters = [e for e in earlier if e[0] == "intermediate"] or earlier
    for i in range(sizes["marts"]):
        if i % 4 == 0 and len(inters) > 1:
            a, b = (rel(*p) for p in rng.sample(inters, 2))
            sql = (
                f"SELECT category, count(*) AS orders, sum(amount) AS revenue\nFROM (\n"
                f"    SELECT category, amount FROM {a}\n    UNION ALL\n"
                f"    SELECT category, amount FROM {b}\n) AS u\nGROUP BY category\n"
            )
            models.append(GeneratedModel("marts", f"mart_{i}", sql))
        else:
            a = rel(*rng.choice(inters))
            sql = (
                f"SELECT\n    customer_id,\n    CAST(created_at AS DATE) AS day,\n"
                f"    count(*) AS orders,\n    sum(amount) AS revenue,\n    max(created_at) AS last_seen\n"
                f"FROM {a}\nGROUP BY customer_id, CAST(created_at AS DATE)\n"
            )
            models.append(GeneratedModel("marts", f"mart_{i}", sql, tag="marts"))
    return models


def write_sqlorch(root: Path, models: list[GeneratedModel], n_sources: int) -> None:
    """models/<schema>/<name>.sql with a `-- tags:` header, sources (with columns) in sources.yml."""
    lines = ["sources:"]
    for s in range(n_sources):
        lines += [f"  raw.events_{s}:", "    cursor: created_at", "    unique_key: id", "    columns:"]
        lines.extend(f"      {name}: {kind}" for name, kind in COLUMNS.items())
    write(root / "models" / "sources.yml", "\n".join(lines) + "\n")
    for m in models:
        header = f"-- tags: {m.tag}\n" if m.tag else ""
        write(root / "models" / m.schema / f"{m.name}.sql", header + m.sql)


DBT_PROJECT = """\
name: cbench
version: "1.0.0"
config-version: 2
profile: cbench
model-paths: ["models"]
macro-paths: ["macros"]
flags:
  send_anonymous_usage_stats: false
  partial_parse: true
models:
  cbench:
    staging: {+schema: staging, +materialized: table}
    intermediate: {+schema: intermediate, +materialized: table}
    marts: {+schema: marts, +materialized: table}
"""
DBT_PROFILES = """\
cbench:
  target: dev
  outputs:
    dev: {type: duckdb, path: cbench.duckdb, schema: main}
"""


def write_dbt(root: Path, models: list[GeneratedModel], n_sources: int) -> None:
    """A dbt-duckdb project: ref()/source(), tags as config, sources with columns in sources.yml."""
    write(root / "dbt_project.yml", DBT_PROJECT)
    write(root / "profiles.yml", DBT_PROFILES)
    macro = Path(__file__).resolve().parent / "pipeline" / "dbt" / "macros" / "generate_schema_name.sql"
    write(root / "macros" / "generate_schema_name.sql", macro.read_text())
    lines = ["version: 2", "sources:", "  - name: raw", "    schema: raw", "    tables:"]
    for s in range(n_sources):
        lines += [f"      - name: events_{s}", "        columns:"]
        lines.extend(f"          - {{name: {name}, data_type: {kind}}}" for name, kind in COLUMNS.items())
    write(root / "models" / "sources.yml", "\n".join(lines) + "\n")
    for m in models:
        header = f"{{{{ config(tags=['{m.tag}']) }}}}\n" if m.tag else ""
        write(root / "models" / m.schema / f"{m.name}.sql", header + m.sql)


SQLMESH_CONFIG = """\
gateways:
  duckdb:
    connection: {type: duckdb, database: cbench.duckdb}
default_gateway: duckdb
model_defaults:
  dialect: duckdb
  start: '2024-01-01'
disable_anonymized_analytics: true
"""


def write_sqlmesh(root: Path, models: list[GeneratedModel], n_sources: int) -> None:
    """A SQLMesh project: a MODEL block per file (kind FULL), sources in external_models.yaml."""
    write(root / "config.yaml", SQLMESH_CONFIG)
    lines = []
    for s in range(n_sources):
        lines += [f"- name: raw.events_{s}", "  columns:"]
        lines.extend(f"    {name}: {kind}" for name, kind in COLUMNS.items())
    write(root / "external_models.yaml", "\n".join(lines) + "\n")
    for m in models:
        tags = f",\n  tags [{m.tag}]" if m.tag else ""
        header = f"MODEL (\n  name {m.schema}.{m.name},\n  kind FULL{tags}\n);\n\n"
        write(root / "models" / m.schema / f"{m.name}.sql", header + m.sql)


WRITERS: dict[str, tuple[RelationNamer, Callable[[Path, list[GeneratedModel], int], None]]] = {
    "sqlorch": (plain_name, write_sqlorch),
    "dbt": (dbt_name, write_dbt),
    "sqlmesh": (plain_name, write_sqlmesh),
}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def generate(root: Path, n_models: int, seed: int = 7, flavour: str = "sqlorch") -> dict[str, int]:
    """Write the project (replacing ``root``); returns the size of each layer."""
    namer, writer = WRITERS[flavour]
    if root.exists():
        shutil.rmtree(root)
    sizes = layer_sizes(n_models)
    writer(root, build_models(n_models, seed, namer), sizes["sources"])
    return sizes


def time_compile(root: Path, repeat: int, cold: bool) -> list[float]:
    """Wall time of `sqlorch compile` in a fresh process. Cold: no compile cache and no
    compiled files (``target/`` removed first); warm: nothing changed since the last run."""
    sqlorch = Path(sys.executable).with_name("sqlorch")
    command = [str(sqlorch), "compile", "--project-dir", str(root)]
    times = []
    if not cold:
        subprocess.run(command, capture_output=True, text=True)
    for _ in range(repeat):
        if cold:
            shutil.rmtree(root / "target", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"compile failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="project folder (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flavour", choices=FLAVOURS, default="sqlorch", help="which tool's project to write")
    parser.add_argument("--generate-only", action="store_true", help="write the project, time nothing")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="sqlorch-compile-bench-")) / "project"
    counts = generate(root, args.models, flavour=args.flavour)
    print(f"project: {root} ({args.models} {args.flavour} models: {counts})")
    if args.generate_only or args.flavour != "sqlorch":
        return
    for label, cold in (("cold", True), ("warm", False)):
        times = time_compile(root, args.repeat, cold)
        runs = ", ".join(f"{t:.2f}s" for t in times)
        print(f"sqlorch compile, {args.models} models, {label}: median {statistics.median(times):.2f}s wall ({runs})")


if __name__ == "__main__":
    main()
