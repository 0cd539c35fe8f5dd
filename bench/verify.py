"""Compare a tool's model tables with a from-scratch evaluation of the plain SQL.

Every model of the plain project (``bench/pipeline/plain/models/<schema>/<name>.sql``)
is evaluated in dependency order into a scratch DuckDB catalog, reading the
*current* source tables of the tool's database (never the tool's own model tables).
Each result is then compared with the tool's table of the same relation name as a
multiset of rows (``EXCEPT ALL`` both ways) over the plain model's columns; extra
columns a tool keeps for its own bookkeeping are ignored.

    python bench/verify.py --db .bench/runs/dbt.duckdb
    python bench/verify.py --db x.duckdb --map marts.sessions=analytics.sessions --json out.json

Exit status: 0 when every table matches, 1 when one differs or is missing.
Needs only ``duckdb``: it runs in each peer's virtual environment, so that the
DuckDB release that wrote the file also reads it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

DEFAULT_PROJECT = Path(__file__).resolve().parent / "pipeline" / "plain"


@dataclass
class Model:
    schema: str
    name: str
    sql: str
    path: Path
    depends_on: set[str] = field(default_factory=set)

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Comparison:
    model: str
    relation: str
    status: str  # "ok" | "wrong" | "missing" | "error"
    expected_rows: int = 0
    actual_rows: int = 0
    missing_rows: int = 0  # in the from-scratch result, not in the tool's table
    extra_rows: int = 0  # in the tool's table, not in the from-scratch result
    detail: str = ""
    samples: list[dict[str, object]] = field(default_factory=list)


def quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def qrel(relation: str) -> str:
    return ".".join(quote(p) for p in relation.split("."))


def load_models(project: Path) -> dict[str, Model]:
    """Models of a plain project: models/<schema>/.../<name>.sql, or models/<name>.sql in schema main."""
    root = project / "models"
    if not root.is_dir():
        raise SystemExit(f"{project}: no models/ folder")
    models: dict[str, Model] = {}
    for path in sorted(root.rglob("*.sql")):
        rel = path.relative_to(root)
        schema = rel.parts[0] if len(rel.parts) > 1 else "main"
        model = Model(schema, path.stem, path.read_text(), path)
        if model.relation in models:
            raise SystemExit(f"{path}: duplicate model {model.relation}")
        models[model.relation] = model
    for model in models.values():
        text = strip_comments(model.sql).lower()
        for other in models:
            if other != model.relation and re.search(rf"(?<![\w.]){re.escape(other)}(?![\w])", text):
                model.depends_on.add(other)
    return models


def strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", sql)


def topo_order(models: dict[str, Model]) -> list[Model]:
    order: list[Model] = []
    state: dict[str, int] = {}

    def visit(rel: str, stack: tuple[str, ...]) -> None:
        if state.get(rel) == 2:
            return
        if state.get(rel) == 1:
            raise SystemExit("dependency cycle: " + " -> ".join((*stack, rel)))
        state[rel] = 1
        for dep in sorted(models[rel].depends_on):
            visit(dep, (*stack, rel))
        state[rel] = 2
        order.append(models[rel])

    for rel in sorted(models):
        visit(rel, ())
    return order


def relations(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, tuple[str, str]]:
    """lower-case 'schema.name' -> (schema, name) for every table and view of ``catalog``."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = ?",
        [catalog],
    ).fetchall()
    return {f"{s}.{n}".lower(): (s, n) for s, n in rows}


def columns(con: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str) -> list[str]:
    rows = con.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_catalog = ? AND table_schema = ? AND table_name = ? ORDER BY ordinal_position""",
        [catalog, schema, name],
    ).fetchall()
    return [r[0] for r in rows]


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def verify(
    db: Path,
    project: Path = DEFAULT_PROJECT,
    mapping: dict[str, str] | None = None,
    select: list[str] | None = None,
    scratch: Path | None = None,
    samples: int = 0,
) -> list[Comparison]:
    """Evaluate the plain models from scratch over ``db``'s sources and compare with ``db``'s tables."""
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    models = load_models(project)
    model_schemas = {m.schema.lower() for m in models.values()}
    con = duckdb.connect(str(scratch) if scratch else ":memory:")
    con.execute("SET preserve_insertion_order = false")
    # Attach under the file's own stem: views a tool created (SQLMesh's virtual layer)
    # name their catalog, which DuckDB derives from the file name.
    tool = db.stem
    scratch_catalog = "memory" if scratch is None else scratch.stem
    if tool.lower() in (scratch_catalog.lower(), "system", "temp", "main"):
        raise SystemExit(f"{db}: pick another file name, its catalog name {tool!r} is taken")
    con.execute(f"ATTACH '{str(db).replace(chr(39), chr(39) * 2)}' AS {quote(tool)} (READ_ONLY)")
    con.execute(f"USE {quote(scratch_catalog)}")

    # Sources: every relation of the tool's database outside the model schemas, as a view.
    tool_relations = relations(con, tool)
    for schema, name in tool_relations.values():
        if schema.lower() in model_schemas or schema.lower() in (
            "information_schema",
            "pg_catalog",
        ):
            continue
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        source = f"{quote(tool)}.{quote(schema)}.{quote(name)}"
        con.execute(f"CREATE OR REPLACE VIEW {quote(schema)}.{quote(name)} AS SELECT * FROM {source}")
    for schema in sorted({m.schema for m in models.values()}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    wanted = {s.lower() for s in select} if select else None
    results: list[Comparison] = []
    for model in topo_order(models):
        body = model.sql.strip().rstrip(";")
        con.execute(f"CREATE OR REPLACE TABLE {qrel(model.relation)} AS {body}\n")
        if wanted is not None and model.relation.lower() not in wanted and model.name.lower() not in wanted:
            continue
        target = mapping.get(model.relation.lower(), model.relation)
        expected = count(con, f"SELECT count(*) FROM {qrel(model.relation)}")
        found = tool_relations.get(target.lower())
        if found is None:
            results.append(
                Comparison(
                    model.relation,
                    target,
                    "missing",
                    expected,
                    detail="no such table or view",
                )
            )
            continue
        t_schema, t_name = found
        ref_cols = columns(con, scratch_catalog, model.schema, model.name)
        tool_cols = {c.lower(): c for c in columns(con, tool, t_schema, t_name)}
        absent = [c for c in ref_cols if c.lower() not in tool_cols]
        actual = count(con, f"SELECT count(*) FROM {quote(tool)}.{quote(t_schema)}.{quote(t_name)}")
        if absent:
            results.append(
                Comparison(
                    model.relation,
                    target,
                    "error",
                    expected,
                    actual,
                    detail=f"missing columns {absent}",
                )
            )
            continue
        ref_sel = ", ".join(quote(c) for c in ref_cols)
        tool_sel = ", ".join(quote(tool_cols[c.lower()]) for c in ref_cols)
        ref_q = f"SELECT {ref_sel} FROM {qrel(model.relation)}"
        tool_q = f"SELECT {tool_sel} FROM {quote(tool)}.{quote(t_schema)}.{quote(t_name)}"
        try:
            missing = count(con, f"SELECT count(*) FROM ({ref_q} EXCEPT ALL {tool_q})")
            extra = count(con, f"SELECT count(*) FROM ({tool_q} EXCEPT ALL {ref_q})")
        except duckdb.Error as exc:
            results.append(Comparison(model.relation, target, "error", expected, actual, detail=str(exc)))
            continue
        comp = Comparison(
            model.relation,
            target,
            "ok" if missing == 0 and extra == 0 else "wrong",
            expected,
            actual,
        )
        comp.missing_rows, comp.extra_rows = missing, extra
        if comp.status == "wrong" and samples > 0:
            for kind, q in (
                ("missing", f"{ref_q} EXCEPT ALL {tool_q}"),
                ("extra", f"{tool_q} EXCEPT ALL {ref_q}"),
            ):
                cur = con.execute(f"SELECT * FROM ({q}) LIMIT {int(samples)}")
                names = [d[0] for d in cur.description or []]
                for row in cur.fetchall():
                    comp.samples.append(
                        {
                            "kind": kind,
                            **{n: str(v) for n, v in zip(names, row, strict=True)},
                        }
                    )
        results.append(comp)
    con.close()
    return results


def render(results: list[Comparison]) -> str:
    lines = [f"{'model':<24} {'status':<8} {'expected':>10} {'actual':>10} {'missing':>9} {'extra':>9}"]
    for r in results:
        counts = f"{r.expected_rows:>10} {r.actual_rows:>10} {r.missing_rows:>9} {r.extra_rows:>9}"
        lines.append(f"{r.model:<24} {r.status:<8} {counts}" + (f"  {r.detail}" if r.detail else ""))
        for s in r.samples:
            lines.append("    " + json.dumps(s))
    return "\n".join(lines)


def parse_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        model, sep, relation = item.partition("=")
        if not sep or not model or not relation:
            raise SystemExit(f"--map wants model=relation, got {item!r}")
        out[model] = relation
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db",
        type=Path,
        required=True,
        help="the tool's DuckDB file (opened read-only)",
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=DEFAULT_PROJECT,
        help="plain project (default: %(default)s)",
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="MODEL=RELATION",
        help="the tool keeps MODEL (schema.name) under another relation name",
    )
    parser.add_argument("--select", action="append", default=None, help="compare only these models")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="DuckDB file for the reference (default: memory)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=0,
        help="print up to N differing rows per model and side",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not args.db.exists():
        raise SystemExit(f"{args.db}: no such file")
    t0 = time.perf_counter()
    results = verify(
        args.db,
        args.project,
        parse_map(args.map),
        args.select,
        args.scratch,
        args.samples,
    )
    elapsed = time.perf_counter() - t0
    print(render(results))
    ok = all(r.status == "ok" for r in results)
    print(f"{'all tables match' if ok else 'MISMATCH'} ({elapsed:.2f}s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"ok": ok, "seconds": elapsed, "results": [asdict(r) for r in results]},
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
