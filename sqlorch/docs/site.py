"""The docs site: two data files and the static assets, written into one folder.

The page is a single HTML file with its script, styles and the vendored graph library
(``assets/``, refreshed by ``scripts/vendor_docs_assets.sh``); the project is ``data.js``
assigning ``window.SQLORCH_DOCS``, and ``sql.js`` (the SQL texts, loaded once the page is
interactive), because a page opened from file:// may load scripts but not fetch files.
The shape of a node (model, seed or source) in that data:

    {"id": "marts.daily_revenue", "type": "model" | "seed" | "source",
     "path", "materialized", "tags", "description", "sql", "compiled_sql" (sql.js),
     "key": [...] | null, "key_reason", "strategy",
     "columns": [{"name", "type", "kind", "from": [[node index, column, edge kind], ...]}],
     "runs": [{"status", "action", "rows", "seconds", "reason", "run_id"}],
     "freshness": {"target": "15m", "lag_seconds": 120, "status": "ok"} | null,
     "audits": [{"name", "blocking", "status", "failing_rows"}] | null}   # declared; results of the last build

``freshness`` holds a model's declared target (``15m``, ``downstream``, a cron; lag and
status are null: the site is built without asking the control plane), null when none; ``audits`` is null for a node
with none declared. The page renders each whenever it is present.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlorch.analysis.lineage import LineageJson
from sqlorch.docs.runs import Runs
from sqlorch.model_facts import KeyFacts
from sqlorch.planning.steps import INSERT_ONLY, MAP_CHANGES, PARTIAL_AGGREGATES
from sqlorch.project.header import ModelConfig
from sqlorch.project.loader import Project
from sqlorch.project.seeds import read_seed
from sqlorch.refs import TableRef
from sqlorch.schedule.freshness import DOWNSTREAM, format_duration

ASSETS = Path(__file__).parent / "assets"
STATIC = ("index.html", "app.js", "app.css", "vendor/cytoscape.min.js", "vendor/cytoscape.LICENSE")


@dataclass(frozen=True)
class ModelDoc:
    """What the compile knows of one model, for its page."""

    compiled_sql: str
    columns: Mapping[str, str] | None
    lineage: LineageJson | None
    key: KeyFacts | None


def strategy(materialized: str, facts: KeyFacts | None) -> str:
    """How a build keeps the model up to date, as far as the SQL alone decides it (the
    plan picks among these by what changed)."""
    if materialized == "view":
        return "replace view"
    if materialized == "table":
        return "rebuild when an input changed"
    if facts is None:
        return "unknown until the columns of its inputs are known"
    if facts.key is None:
        return f"rebuild when an input changed: {facts.reason}"
    ways = [INSERT_ONLY] if facts.row_preserving else []
    ways += [PARTIAL_AGGREGATES] if facts.distributive else []
    if ways:
        ways = [f"{', or '.join(ways)} when inputs are only appended to"]
    if facts.row_preserving and facts.identity_table:
        ways.append(f"{MAP_CHANGES} when its input changed (DuckDB, Postgres)")
    ways.append("recompute all" if facts.global_aggregate else "merge keys" if facts.unique else "delete+insert keys")
    return "; else ".join(ways)


def declared_freshness(config: ModelConfig, default: float | None) -> dict[str, Any] | None:
    """What ``sqlorch run`` keeps the model to, as the page shows it."""
    parts: list[str] = []
    if config.freshness == DOWNSTREAM:
        parts.append(DOWNSTREAM)
    elif config.freshness is not None:
        parts.append(format_duration(config.freshness))
    elif config.cron is None and default is not None:
        parts.append(f"{format_duration(default)} (default_freshness)")
    if config.cron is not None:
        zone = f" ({config.cron.zone})" if config.cron.zone != "UTC" else ""
        parts.append(f"cron {config.cron.text}{zone}")
    return {"target": ", ".join(parts), "lag_seconds": None, "status": None} if parts else None


def site_data(
    project: Project,
    edges: list[tuple[TableRef, TableRef]],
    models: Mapping[TableRef, ModelDoc],
    target: str,
    audits: Mapping[str, list[tuple[str, bool]]] | None = None,
) -> dict[str, Any]:
    """The ``window.SQLORCH_DOCS`` object (see the module docstring), without the runs:
    ``with_runs`` adds them (this part is cached, they are not). ``audits``: per model or
    source the audit calls declared for it, with whether each blocks."""
    nodes: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    columns_read: dict[str, dict[str, None]] = {}  # source columns some model reads, in order

    def add(ref: str, node: dict[str, Any]) -> None:
        index[ref] = len(nodes)
        declared = (audits or {}).get(ref)
        listed = [
            {"name": name, "blocking": blocking, "status": None, "failing_rows": None}
            for name, blocking in declared or []
        ]
        nodes.append({"id": ref, "freshness": None, "audits": listed or None, "runs": [], **node})

    for ref, seed in sorted(project.seeds.items()):
        add(str(ref), {"type": "seed", "path": _relative(seed.path, project.root), "declared": read_seed(seed.path)[0]})
    for ref, model in sorted(project.models.items()):
        doc = models[ref]
        config = model.config
        add(
            str(ref),
            {
                "type": "model",
                "path": _relative(model.path, project.root),
                "materialized": config.materialized,
                "tags": list(config.tags),
                "description": config.description,
                "sql": model.sql,
                "compiled_sql": doc.compiled_sql,
                "key": doc.key.key if doc.key else None,
                "key_reason": doc.key.reason if doc.key else "the columns of its inputs are not known",
                "strategy": strategy(config.materialized, doc.key),
                "freshness": declared_freshness(model.config, project.settings.default_freshness),
            },
        )
        for columns in (doc.lineage or {}).values():
            for relation, column, _ in columns["from"]:
                columns_read.setdefault(relation, {})[column] = None
    for source in sorted({source for model in project.models.values() for source in model.sources}):
        spec = project.sources.get(source)
        path = _relative(spec.path, project.root) if spec and spec.path else ""
        add(str(source), {"type": "source", "path": path, "declared": dict(spec.columns or {}) if spec else {}})
    docs = {str(ref): doc for ref, doc in models.items()}
    for node in nodes:
        ref = node["id"]
        if node["type"] == "model":
            doc = docs[ref]
            lineage = doc.lineage or {}
            node["columns"] = [
                {
                    "name": name,
                    "type": kind,
                    "kind": lineage[name]["kind"] if name in lineage else None,
                    "from": [[index[rel], col, edge] for rel, col, edge in lineage[name]["from"] if rel in index]
                    if name in lineage
                    else [],
                }
                for name, kind in (doc.columns or {}).items()
            ]
        else:
            declared = node.pop("declared")
            names = list(declared) + [c for c in columns_read.get(ref, {}) if c not in declared]
            node["columns"] = [{"name": n, "type": declared.get(n, ""), "kind": None, "from": []} for n in names]
    return {
        "project": project.settings.name,
        "target": target,
        "nodes": nodes,
        "edges": sorted({(index[str(a)], index[str(b)]) for a, b in edges if str(a) in index and str(b) in index}),
    }


def with_runs(site: dict[str, Any], runs: Runs, note: str | None) -> dict[str, Any]:
    """The site data with each node's last runs, the note saying why there are none, and
    the time it is written."""
    for node in site["nodes"]:
        node["runs"] = runs.get(node["id"], [])
    site["runs_note"] = note
    site["generated_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return site


def with_audit_results(site: dict[str, Any], run_results: Path) -> dict[str, Any]:
    """The site data with each declared audit's result in the last build (its
    ``run_results.json``, when there is one): status and number of bad rows."""
    try:
        results = json.loads(run_results.read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return site
    last = {
        (audit.get("model"), audit.get("name")): audit
        for result in results
        if isinstance(result, dict)
        for audit in result.get("audits") or []
    }
    for node in site["nodes"]:
        for audit in node.get("audits") or []:
            found = last.get((node["id"], audit["name"]))
            if found is not None:
                audit["status"], audit["failing_rows"] = found.get("status"), found.get("bad_rows")
    return site


def _relative(path: Path, root: Path) -> str:
    """``path`` below ``root`` as text (a string cut: pathlib's relative_to costs ~25 us a
    call, a quarter of a second at 10,000 models)."""
    text, prefix = str(path), str(root) + "/"
    return text[len(prefix) :] if text.startswith(prefix) else text


def write_site(out: Path, data: dict[str, Any]) -> Path:
    """Write the site into ``out`` (``data`` loses its SQL texts to ``sql.js``); returns the
    page to open."""
    for name in STATIC:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ASSETS / name, out / name)
    # SQL texts are half the data: a second file, loaded once the page is interactive
    sql = {n["id"]: [n.pop("sql"), n.pop("compiled_sql")] for n in data["nodes"] if n["type"] == "model"}
    (out / "data.js").write_text(f"window.SQLORCH_DOCS = {_js(data)};\n", encoding="utf-8")
    (out / "sql.js").write_text(f"window.SQLORCH_SQL = {_js(sql)};\n", encoding="utf-8")
    return out / "index.html"


def _js(value: Any) -> str:
    """``value`` as JavaScript: JSON.parse of a string literal, which V8 reads about twice as
    fast as the same object written as a literal."""
    return f"JSON.parse({json.dumps(json.dumps(value, separators=(',', ':')))})"
