"""Rows scanned by one TPC-H refresh step on Postgres (issue 11): the figure that matters on a
warehouse, where a delta's cost is what it reads.

    python bench/tpch_postgres.py --sf 0.1            # section printed
    python bench/tpch_postgres.py --sf 0.1 --write-results

Two versions compared: run each with ``--label NAME --save FILE`` (its own checkout on
PYTHONPATH, interleaved: A B A B), then any run with ``--compare FILE...`` lists every saved
run in the section, each with its own load average and its incremental/full ratios, which
are taken within one run (both builds saw the same machine).

``--per-statement`` also logs every statement of the incremental build with its plan and
actual rows (``auto_explain``, ``log_analyze``) and lists the statements that read the most
rows, per table: where the rows read come from. The plans' instrumentation slows the build,
so the times of such a run are not comparable with another's.

The Postgres stand-in (tests/standins: a real PostgreSQL 18 server) holds the TPC-H tables of
bench/tpch.py as ``raw.*`` with their primary keys and an index on each join column a TPC-H
query correlates or joins on, as a Postgres schema for these queries would have. After a cold
``sqlorch build --target pg`` of the 22 models, one step (RF1 + RF2 of 0.1% of the orders, as in
bench/tpch.py) is built incrementally, then the same data again with ``--full-refresh``.

Rows scanned are Postgres's own counters, per table, over each build: ``pg_stat_user_tables``
(``seq_tup_read``: rows read by sequential scans; ``idx_tup_fetch``: rows fetched through an
index) and ``pg_statio_user_tables`` (heap blocks hit or read: the BUFFERS of EXPLAIN). They are
the sums EXPLAIN (ANALYZE, BUFFERS) would show statement by statement, summed over every
statement of the build (sqlorch's connections report them when they close, at the end of the
build process). After each build every model table is compared with its query evaluated from
scratch on the same server (``EXCEPT ALL`` both ways).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import sqlglot

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from report import replace_section  # noqa: E402
from tpch import PROJECT, TABLES, generate  # noqa: E402

from tests.standins import servers  # noqa: E402

PRIMARY_KEYS = {
    "orders": ["o_orderkey"],
    "lineitem": ["l_orderkey", "l_linenumber"],
    "customer": ["c_custkey"],
    "part": ["p_partkey"],
    "supplier": ["s_suppkey"],
    "partsupp": ["ps_partkey", "ps_suppkey"],
    "nation": ["n_nationkey"],
    "region": ["r_regionkey"],
}
JOIN_INDEXES = {
    "lineitem": [["l_partkey", "l_suppkey"], ["l_suppkey"]],
    "orders": [["o_custkey"]],
    "partsupp": [["ps_suppkey"]],
    "customer": [["c_nationkey"]],
    "supplier": [["s_nationkey"]],
}


def _ident(name: str) -> str:
    return sqlglot.exp.to_identifier(name, quoted=True).sql("postgres")


def load(conn: Any, data: Path) -> None:
    """The Parquet tables into ``raw.*`` through CSV COPY, keys and join indexes, analysed."""
    conn.execute("CREATE SCHEMA raw")
    with duckdb.connect() as duck, tempfile.TemporaryDirectory() as scratch:
        for table in TABLES:
            parquet = str(data / f"{table}.parquet")
            columns = duck.execute("DESCRIBE SELECT * FROM read_parquet(?)", [parquet]).fetchall()
            ddl = ", ".join(
                f"{_ident(name)} {sqlglot.exp.DataType.build(kind, dialect='duckdb').sql('postgres')}"
                for name, kind, *_ in columns
            )
            conn.execute(f"CREATE TABLE raw.{_ident(table)} ({ddl})")
            csv = Path(scratch) / f"{table}.csv"
            duck.execute(f"COPY (SELECT * FROM read_parquet(?)) TO '{csv}' (HEADER false)", [parquet])
            with conn.cursor() as cur, cur.copy(f"COPY raw.{_ident(table)} FROM STDIN WITH (FORMAT csv)") as copy:
                with csv.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        copy.write(chunk)
            keys = ", ".join(_ident(c) for c in PRIMARY_KEYS[table])
            conn.execute(f"ALTER TABLE raw.{_ident(table)} ADD PRIMARY KEY ({keys})")
            for columns_ in JOIN_INDEXES.get(table, []):
                conn.execute(f"CREATE INDEX ON raw.{_ident(table)} ({', '.join(_ident(c) for c in columns_)})")
    conn.execute("ANALYZE")


def refresh(conn: Any, step: int) -> dict[str, int]:
    """RF1 + RF2 of 0.1% of the orders (bench/tpch.py's step, in Postgres SQL)."""
    orders = conn.execute("SELECT count(*) FROM raw.orders").fetchone()[0]
    n = max(1, orders // 1000)
    with conn.transaction():
        conn.execute("SELECT setseed(%s)", [((step * 7919) % 1000) / 1000])
        top = conn.execute("SELECT max(o_orderkey) FROM raw.orders").fetchone()[0]
        conn.execute(
            "CREATE TEMP TABLE picked ON COMMIT DROP AS SELECT o_orderkey, row_number() OVER () AS i "
            "FROM (SELECT o_orderkey FROM raw.orders ORDER BY random() LIMIT %s) s",
            [n],
        )
        order_columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
            "AND table_name = 'orders' ORDER BY ordinal_position").fetchall()]  # fmt: skip
        line_columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' "
            "AND table_name = 'lineitem' ORDER BY ordinal_position").fetchall()]  # fmt: skip
        new_order = ", ".join(f"{top} + p.i" if c == "o_orderkey" else f"o.{_ident(c)}" for c in order_columns)
        new_line = ", ".join(f"{top} + p.i" if c == "l_orderkey" else f"l.{_ident(c)}" for c in line_columns)
        conn.execute(f"INSERT INTO raw.orders SELECT {new_order} FROM raw.orders o JOIN picked p USING (o_orderkey)")
        inserted = conn.execute(
            f"INSERT INTO raw.lineitem SELECT {new_line} FROM raw.lineitem l "
            "JOIN picked p ON l.l_orderkey = p.o_orderkey"
        ).rowcount
        conn.execute(
            "CREATE TEMP TABLE doomed ON COMMIT DROP AS SELECT o_orderkey FROM raw.orders "
            "WHERE o_orderkey <= %s ORDER BY random() LIMIT %s",
            [top, n],
        )
        deleted = conn.execute("DELETE FROM raw.lineitem WHERE l_orderkey IN (SELECT o_orderkey FROM doomed)").rowcount
        conn.execute("DELETE FROM raw.orders WHERE o_orderkey IN (SELECT o_orderkey FROM doomed)")
    return {"orders": 2 * n, "lineitems": inserted + deleted}


def sqlorch_build(project: Path, full_refresh: bool) -> float:
    command = [sys.executable, "-m", "sqlorch.cli", "build", "--project-dir", str(project), "--target", "pg"]
    if full_refresh:
        command.append("--full-refresh")
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"build failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def counters(conn: Any) -> dict[str, dict[str, int]]:
    """Rows and blocks each table was read for since the last reset, by schema.table."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT t.schemaname, t.relname, coalesce(t.seq_tup_read, 0), coalesce(t.idx_tup_fetch, 0), "
        "coalesce(t.seq_scan, 0), coalesce(t.idx_scan, 0), "
        "coalesce(io.heap_blks_hit, 0) + coalesce(io.heap_blks_read, 0) "
        "+ coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0) "
        "FROM pg_stat_user_tables t JOIN pg_statio_user_tables io USING (relid)"
    ).fetchall()
    return {
        f"{schema}.{name}": {
            "seq_rows": seq,
            "index_rows": idx,
            "seq_scans": scans,
            "index_scans": iscans,
            "blocks": blocks,
        }
        for schema, name, seq, idx, scans, iscans, blocks in rows
    }


def measured_build(conn: Any, project: Path, full_refresh: bool) -> tuple[float, dict[str, dict[str, int]]]:
    conn.execute("SELECT pg_stat_reset()")
    seconds = sqlorch_build(project, full_refresh)
    time.sleep(1.5)  # the build's backends report their counters as they exit
    return seconds, counters(conn)


def slowest_statements(log: Path, since: int, most: int = 8) -> list[tuple[float, str]]:
    """The build's statements that took 100 ms or more (the server logs them with their
    duration, ``log_min_duration_statement``), slowest first, from byte ``since`` of the log."""
    found = []
    text = log.read_bytes()[since:].decode(errors="replace")
    for match in re.finditer(r"duration: ([\d.]+) ms\s+statement: (.*?)(?=\n\S|\Z)", text, re.DOTALL):
        found.append((float(match.group(1)) / 1000, " ".join(match.group(2).split())))
    return sorted(found, reverse=True)[:most]


AUTO_EXPLAIN = {
    "session_preload_libraries": "'auto_explain'",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_timing": "off",
    "auto_explain.log_nested_statements": "on",
}
SCAN = re.compile(
    r"(?:Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan) on (\S+)(?: \w+)?[^\n]*?"
    r"actual rows=([\d.]+) loops=(\d+)"
)


def rows_per_statement(log: Path, since: int, most: int = 15) -> list[tuple[int, str, str]]:
    """(rows, table, statement) for the scans ``auto_explain`` logged from byte ``since``,
    most rows first: each scan node's actual rows times its loops (a parallel scan's loops
    are its workers), added up per statement and table."""
    text = log.read_bytes()[since:].decode(errors="replace")
    found: dict[tuple[str, str], float] = {}
    for block in re.split(r"\n(?=\S[^\n]*LOG:  duration:)", text):
        query = re.search(r"Query Text: (.*)", block)
        if query is None:
            continue
        statement = " ".join(query.group(1).split())
        for scan in SCAN.finditer(block):
            key = (scan.group(1), statement)
            found[key] = found.get(key, 0.0) + float(scan.group(2)) * int(scan.group(3))
    ranked = sorted(((round(rows), table, statement) for (table, statement), rows in found.items()), reverse=True)
    return ranked[:most]


def mismatches(conn: Any) -> list[str]:
    """Models whose table differs from their query evaluated now (EXCEPT ALL both ways)."""
    wrong = []
    for path in sorted((PROJECT / "models" / "tpch").glob("q*.sql")):
        query = sqlglot.transpile(path.read_text(), read="duckdb", write="postgres")[0]
        table = f"tpch.{_ident(path.stem)}"
        differing = conn.execute(
            f"SELECT count(*) FROM ((SELECT * FROM {table} EXCEPT ALL ({query})) "
            f"UNION ALL (({query}) EXCEPT ALL SELECT * FROM {table})) d"
        ).fetchone()[0]
        if differing:
            stored = conn.execute(f"SELECT * FROM {table} EXCEPT ALL ({query}) LIMIT 2").fetchall()
            evaluated = conn.execute(f"({query}) EXCEPT ALL SELECT * FROM {table} LIMIT 2").fetchall()
            wrong.append(f"{path.stem}: {differing} rows differ (stored {stored}, evaluated now {evaluated})")
    return wrong


def _sum(stats: dict[str, dict[str, int]], prefix: str, field: str) -> int:
    return sum(v[field] for k, v in stats.items() if k.startswith(prefix))


def report(result: dict[str, Any], command: str) -> str:
    inc, full = result["incremental"], result["full"]
    lines = [
        "## TPC-H refresh step on Postgres: rows scanned (issue 11)",
        "",
        f"- Command: `{command}`",
        f"- Date: {result['date']}; PostgreSQL {result['version']} (the stand-in, tests/standins); "
        f"1-minute load average {result['load']:.1f}",
        f"- Scale factor {result['sf']:g}: {result['rows']['orders']:,} orders, {result['rows']['lineitem']:,} "
        f"lineitems; the step changed {result['changed']['orders']:,} orders and "
        f"{result['changed']['lineitems']:,} lineitems",
        "- `raw.*` have their primary keys and an index on each join column (bench/tpch_postgres.py)",
        f"- Mismatches after the cold build, the step and the full refresh: {result['wrong'] or 'none'}",
        "",
        "| read by the build | incremental step | `--full-refresh` of the same data |",
        "|---|---|---|",
        f"| wall time | {inc['seconds']:.2f} s | {full['seconds']:.2f} s |",
    ]
    for label, prefix in (
        ("sources `raw.*`", "raw."),
        ("models `tpch.*`", "tpch."),
        ("state `_sqlorch.*`", "_sqlorch."),
    ):
        for field, what in (("seq_rows", "rows, sequential scans"), ("index_rows", "rows, through an index")):
            measured = (_sum(inc["tables"], prefix, field), _sum(full["tables"], prefix, field))
            lines.append(f"| {label}: {what} | {measured[0]:,} | {measured[1]:,} |")
    total_inc = _sum(inc["tables"], "", "seq_rows") + _sum(inc["tables"], "", "index_rows")
    total_full = _sum(full["tables"], "", "seq_rows") + _sum(full["tables"], "", "index_rows")
    lines += [
        f"| all tables: rows read | {total_inc:,} | {total_full:,} |",
        f"| all tables: blocks (heap and index, hit or read) | {_sum(inc['tables'], '', 'blocks'):,} | "
        f"{_sum(full['tables'], '', 'blocks'):,} |",
        "",
        f"The incremental step read {total_inc / max(total_full, 1):.1%} of the rows the full refresh read.",
        "",
        "Sources read by the incremental step, per table:",
        "",
        "| table | rows, sequential scans | rows, through an index | sequential scans | index scans |",
        "|---|---|---|---|---|",
    ]
    for name, v in sorted(inc["tables"].items()):
        if name.startswith("raw.") and (v["seq_rows"] or v["index_rows"]):
            lines.append(
                f"| {name} | {v['seq_rows']:,} | {v['index_rows']:,} | {v['seq_scans']} | {v['index_scans']} |"
            )
    slowest = result.get("slowest", [])
    lines += [
        "",
        f"The incremental step's slowest statements (the server's log, statements of 100 ms or more; "
        f"{sum(t for t, _ in slowest):.1f} s in these {len(slowest)}):",
        "",
        "| seconds | statement (start) |",
        "|---|---|",
    ]
    lines += [f"| {t:.2f} | `{text[:160].replace('|', '/')}` |" for t, text in slowest]
    scans = result.get("per_statement", [])
    if scans:
        lines += [
            "",
            "Rows read by the incremental step's statements, per table (`--per-statement`: each scan's "
            f"actual rows from `auto_explain`; the {len(scans)} largest):",
            "",
            "| rows | table | statement (start) |",
            "|---|---|---|",
        ]
        lines += [f"| {rows:,} | {table} | `{text[:120].replace('|', '/')}` |" for rows, table, text in scans]
    return "\n".join(lines) + "\n"


def _rows_read(build: dict[str, Any]) -> int:
    return _sum(build["tables"], "", "seq_rows") + _sum(build["tables"], "", "index_rows")


def comparison(runs: list[dict[str, Any]]) -> str:
    """Saved runs side by side, in the order run: what each build took and read."""
    lines = [
        "",
        "Runs compared (in the order run; each ratio within its own run):",
        "",
        "| run | date | load (1 min) | incremental | `--full-refresh` | incremental / full, time | "
        "rows read: incremental / full | slowest statements, sum | mismatches |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        inc, full = run["incremental"], run["full"]
        rows_inc, rows_full = _rows_read(inc), _rows_read(full)
        slowest = sum(t for t, _ in run.get("slowest", []))
        lines.append(
            f"| {run.get('label', '?')} | {run['date']} | {run['load']:.1f} | {inc['seconds']:.2f} s | "
            f"{full['seconds']:.2f} s | {inc['seconds'] / full['seconds']:.2f} | "
            f"{rows_inc:,} / {rows_full:,} ({rows_inc / max(rows_full, 1):.1%}) | {slowest:.1f} s | "
            f"{len(run['wrong']) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def run(sf: float, per_statement: bool = False) -> dict[str, Any]:
    import datetime as dt

    import psycopg

    data = generate(sf)
    with servers.start_postgres() as server, tempfile.TemporaryDirectory() as work:
        params = server.client_params()
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("CREATE DATABASE tpch")
        conn = psycopg.connect(**{**params, "dbname": "tpch"}, autocommit=True)
        _say("loading raw.*")
        load(conn, data)
        project = Path(work) / "project"
        subprocess.run(["cp", "-r", str(PROJECT), str(project)], check=True)
        (project / "profiles.yml").write_text(
            "target: pg\ntargets:\n  pg:\n    type: postgres\n"
            f"    host: {params['host']}\n    port: {params['port']}\n    user: {params['user']}\n    dbname: tpch\n"
        )
        result: dict[str, Any] = {"sf": sf, "wrong": []}
        _say("cold build")
        result["cold_seconds"] = sqlorch_build(project, full_refresh=False)
        _say(f"cold build took {result['cold_seconds']:.1f} s; checking")
        result["wrong"] += [f"cold: {w}" for w in mismatches(conn)]
        result["changed"] = refresh(conn, 1)
        _say(f"step changed {result['changed']}; incremental build")
        conn.execute("ALTER SYSTEM SET log_min_duration_statement = 100")
        for name, value in AUTO_EXPLAIN.items() if per_statement else ():
            conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        conn.execute("SELECT pg_reload_conf()")
        since = server.log_path.stat().st_size
        seconds, tables = measured_build(conn, project, full_refresh=False)
        result["slowest"] = slowest_statements(server.log_path, since)
        if per_statement:
            result["per_statement"] = rows_per_statement(server.log_path, since)
        for name in ["log_min_duration_statement", *(AUTO_EXPLAIN if per_statement else ())]:
            conn.execute(f"ALTER SYSTEM RESET {name}")
        conn.execute("SELECT pg_reload_conf()")
        _say(f"incremental build took {seconds:.1f} s; checking")
        result["incremental"] = {"seconds": seconds, "tables": tables}
        result["load"] = os.getloadavg()[0]
        result["wrong"] += [f"step: {w}" for w in mismatches(conn)]
        _say("full refresh")
        seconds, tables = measured_build(conn, project, full_refresh=True)
        result["full"] = {"seconds": seconds, "tables": tables}
        result["wrong"] += [f"full refresh: {w}" for w in mismatches(conn)]
        result["rows"] = {
            t: conn.execute(f"SELECT count(*) FROM raw.{_ident(t)}").fetchone()[0] for t in ("orders", "lineitem")
        }
        result["version"] = conn.execute("SHOW server_version").fetchone()[0]
        result["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        conn.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.1)
    parser.add_argument("--write-results", action="store_true", help="write the section into bench/RESULTS.md")
    parser.add_argument("--label", default="", help="this run's name in a comparison (a branch, a commit)")
    parser.add_argument("--save", type=Path, help="write this run's measurements to this JSON file")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="saved runs to list with this one")
    parser.add_argument("--per-statement", action="store_true", help="rows read per statement (auto_explain; slower)")
    args = parser.parse_args(argv)
    result = {**run(args.sf, args.per_statement), "label": args.label}
    if args.save is not None:
        args.save.write_text(json.dumps(result, indent=1))
    command = f"python bench/tpch_postgres.py --sf {args.sf:g}" + (" --per-statement" if args.per_statement else "")
    section = report(result, command)
    if args.compare:
        section += comparison([json.loads(path.read_text()) for path in args.compare] + [result])
    print(section)
    if args.write_results:
        marked = f"<!-- tpch_postgres:start -->\n{section}<!-- tpch_postgres:end -->\n"
        replace_section(HERE / "RESULTS.md", marked)
    return 1 if result["wrong"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
