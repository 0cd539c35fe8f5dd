"""Hostile input at load, parse and option time: names, read-only models, encodings, YAML,
profiles and CLI options. Each case: exit code, message shape, no traceback, and every
table sqlorch does not own unchanged (see ``harness.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.hostile.harness import Case, run_case

SOURCES = (
    "CREATE SCHEMA raw",
    "CREATE TABLE raw.customers AS SELECT range AS customer_id, 'c' || range AS name, "
    "TIMESTAMP '2024-01-01' + INTERVAL (range) HOUR AS updated_at FROM range(50)",
    "CREATE TABLE raw.orders AS SELECT range AS order_id, range % 50 AS customer_id, range * 1.5 AS amount "
    "FROM range(200)",
    'CREATE TABLE raw.odd ("order" INT, "my col" VARCHAR, "we""ird" VARCHAR, "Größe" VARCHAR, '
    '"true as c; delete from raw.customers; select true as c --" INT)',
    "INSERT INTO raw.odd VALUES (1, 'a b', 'x\"y', 'L', 1), (2, 'c', 'z', 'M', 2)",
)
GOOD = {"models/staging/stg_orders.sql": "SELECT order_id, customer_id, amount FROM raw.orders"}
REPORT6 = "true as c; delete from raw.customers; select true as c --"


def at(path: str, line: int | None = None, col: int | None = None) -> str:
    """The ``path:line:col: error:`` regex for a project file (any line/col when None)."""
    where = rf"{line}:{col}" if line is not None else r"\d+:\d+"
    return rf"{re.escape(path)}:{where}: error: "


def model(sql: str, path: str = "models/marts/m.sql") -> dict[str, str | bytes]:
    return {**GOOD, path: sql}


def read_only_case(id: str, sql: str, found: str, line: int, col: int, command: str = "build") -> Case:
    return Case(
        id, model(sql), (command,), expect=(found,), location=at("models/marts/m.sql", line, col), sources_sql=SOURCES
    )


CASES = [
    # report 6: SQL through a file name, and through a column name that `*` expands to
    Case("report6-file-name-build", {**GOOD, f"models/marts/{REPORT6}.sql": "SELECT 1 AS c",
                                     "models/marts/reader.sql": f'SELECT * FROM marts."{REPORT6}"'},
         ("build",), expect=("model file name", "is not a plain identifier"),
         location=at(f"models/marts/{REPORT6}.sql", 1, 1), sources_sql=SOURCES),
    Case("report6-file-name-compile", {**GOOD, f"models/marts/{REPORT6}.sql": "SELECT 1 AS c"}, ("compile",),
         expect=("is not a plain identifier",), location=at(f"models/marts/{REPORT6}.sql", 1, 1)),
    Case("report6-star-expands-hostile-column", model("SELECT * FROM raw.odd"), ("build",), expect_exit=0,
         sources_sql=SOURCES, before=(("build",),)),
    Case("quoted-columns-by-name", model('SELECT "order", "my col", "we""ird", "Größe" FROM raw.odd WHERE "order" > 0'),
         ("build",), expect_exit=0, sources_sql=SOURCES),
    # report 7 and the other statements a model must not hold
    read_only_case("report7-delete-in-cte-build",
                   "WITH d AS (DELETE FROM raw.orders WHERE order_id < 10 RETURNING *) SELECT * FROM d",
                   "found DELETE", 1, 12),
    read_only_case("report7-delete-in-cte-plan", "WITH d AS (\n  DELETE FROM raw.orders RETURNING *)\nSELECT * FROM d",
                   "found DELETE", 2, 3, command="plan"),
    read_only_case("report7-delete-in-cte-compile", "WITH d AS (DELETE FROM raw.orders RETURNING *) SELECT * FROM d",
                   "found DELETE", 1, 12, command="compile"),
    read_only_case("insert-in-cte", "WITH i AS (INSERT INTO raw.orders VALUES (1, 1, 1) RETURNING *) SELECT * FROM i",
                   "found INSERT", 1, 12),
    read_only_case("update-in-cte", "WITH u AS (UPDATE raw.customers SET name = 'x' RETURNING *) SELECT * FROM u",
                   "found UPDATE", 1, 12),
    read_only_case("merge-in-cte", "WITH m AS (MERGE INTO raw.orders o USING raw.customers c ON o.customer_id = "
                   "c.customer_id WHEN MATCHED THEN DELETE) SELECT 1 AS a", "found MERGE", 1, 12),
    read_only_case("create-in-cte", "WITH c AS (CREATE TABLE raw.x AS SELECT 1) SELECT 1 AS a", "found CREATE", 1, 12),
    read_only_case("drop-in-cte", "WITH d AS (DROP TABLE raw.orders) SELECT 1 AS a", "found DROP", 1, 12),
    read_only_case("update-in-subquery", "SELECT * FROM (UPDATE raw.orders SET amount = 0 RETURNING *) AS u",
                   "syntax error", 1, 26),
    read_only_case("alter-in-cte", "WITH d AS (ALTER TABLE raw.orders ADD COLUMN x INT) SELECT 1 AS a",
                   "syntax error", 1, 65),
    read_only_case("select-into", "SELECT * INTO raw.copy FROM raw.orders", "found INTO", 1, 10),
    read_only_case("copy-to-file", "COPY (SELECT * FROM raw.customers) TO 'out.csv'", "found COPY", 1, 1),
    read_only_case("attach", "ATTACH 'other.duckdb' AS other", "found ATTACH", 1, 1),
    read_only_case("pragma", "PRAGMA enable_profiling", "found PRAGMA", 1, 1),
    read_only_case("set", "SET threads = 1", "found SET", 1, 1),
    read_only_case("call", "CALL pragma_version()", "found CALL", 1, 1),
    read_only_case("install", "INSTALL httpfs", "found INSTALL", 1, 1),
    read_only_case("load", "LOAD httpfs", "found LOAD", 1, 1),
    read_only_case("export", "EXPORT DATABASE 'out'", "syntax error", 1, 17),
    read_only_case("two-statements", "SELECT 1 AS a;\nDELETE FROM raw.orders", "found 2 statements", 2, 1),
    read_only_case("read-csv", "SELECT * FROM read_csv('/etc/passwd')", "table function read_csv()", 1, 15),
    read_only_case("glob-in-subquery", "SELECT order_id FROM raw.orders WHERE 'x' IN (SELECT file FROM glob('/*'))",
                   "table function glob()", 1, 64),
    read_only_case("sqlite-scan", "SELECT * FROM sqlite_scan('other.db', 't')", "table function sqlite_scan()", 1, 15),
    read_only_case("file-as-table", "SELECT * FROM 'https://example.com/x.parquet'", "would read as a file", 1, 15),
    read_only_case("nextval", "SELECT nextval('seq') AS n", "function nextval()", 1, 8),
    # file and folder names
    Case("name-with-quote", model("SELECT 1 AS a", 'models/marts/we"ird.sql'), ("compile",),
         expect=("is not a plain identifier",), location=at('models/marts/we"ird.sql', 1, 1)),
    Case("name-with-semicolon", model("SELECT 1 AS a", "models/marts/a;b.sql"), ("build",),
         expect=("is not a plain identifier",), location=at("models/marts/a;b.sql", 1, 1), sources_sql=SOURCES),
    Case("name-with-space", model("SELECT 1 AS a", "models/marts/my model.sql"), ("plan",),
         expect=("is not a plain identifier",), location=at("models/marts/my model.sql", 1, 1), sources_sql=SOURCES),
    Case("name-with-comment-marker", model("SELECT 1 AS a", "models/marts/a -- b.sql"), ("build",),
         expect=("is not a plain identifier",), location=at("models/marts/a -- b.sql", 1, 1), sources_sql=SOURCES),
    Case("name-with-block-comment", model("SELECT 1 AS a", "models/marts/a*b.sql"), ("build",),
         expect=("is not a plain identifier",), location=at("models/marts/a*b.sql", 1, 1), sources_sql=SOURCES),
    Case("name-unicode", model("SELECT 1 AS a", "models/marts/größe.sql"), ("compile",),
         expect=("is not a plain identifier",), location=at("models/marts/größe.sql", 1, 1)),
    Case("schema-folder-with-space", model("SELECT 1 AS a", "models/my marts/m.sql"), ("build",),
         expect=("schema folder name 'my marts'",), location=at("models/my marts/m.sql", 1, 1), sources_sql=SOURCES),
    Case("seed-name-with-space", {**GOOD, "seeds/my seed.csv": "id\n1\n"}, ("build",),
         expect=("seed file name 'my seed'",), location=r"seeds/my seed\.csv: error: ", sources_sql=SOURCES),
    # encodings
    Case("latin-1-model", model(b"-- caf\xe9\nSELECT 1 AS a"), ("build",), expect=("not UTF-8",),
         location=at("models/marts/m.sql", 1, 7), sources_sql=SOURCES),
    Case("bom-model-accepted", model(b"\xef\xbb\xbf-- tags: x\nSELECT order_id FROM raw.orders"), ("build",),
         expect_exit=0, sources_sql=SOURCES),
    Case("latin-1-yaml", {**GOOD, "models/sources.yml": b"sources:\n  raw.caf\xe9: {}\n"}, ("compile",),
         expect=("not UTF-8",), location=at("models/sources.yml", 2, 10)),
    Case("latin-1-seed", {**GOOD, "seeds/people.csv": b"id,name\n1,caf\xe9\n"}, ("build",), expect=("not UTF-8",),
         location=at("seeds/people.csv", 2, 6), sources_sql=SOURCES),
    Case("bom-seed-accepted", {**GOOD, "seeds/people.csv": b"\xef\xbb\xbfid,name\n1,ada\n",
                               "models/marts/m.sql": "SELECT id, name FROM seeds.people"}, ("build",), expect_exit=0,
         sources_sql=SOURCES),
    Case("latin-1-macro", {**GOOD, "macros/m.sql": b"{% macro x() %}caf\xe9{% endmacro %}"}, ("compile",),
         expect=("not UTF-8",), location=at("macros/m.sql", 1, 19)),
    Case("latin-1-custom-audit", {**GOOD, "audits/odd.sql": b"SELECT * FROM this WHERE :column = 'caf\xe9'"},
         ("compile",), expect=("not UTF-8",), location=at("audits/odd.sql", 1, 40)),
    Case("latin-1-unit-test", {**GOOD, "tests/t.yml": b"tests:\n  - name: caf\xe9\n"}, ("test",),
         expect=("not UTF-8",), location=at("tests/t.yml", 2, 14)),
    # YAML
    Case("yaml-syntax", {**GOOD, "models/sources.yml": "sources:\n  raw.orders:\n    cursor: x\n   bad: [\n"},
         ("build",), expect=("invalid YAML",), location=at("models/sources.yml"), sources_sql=SOURCES),
    Case("yaml-wrong-shape", {**GOOD, "models/sources.yml": "sources:\n  - raw.orders\n"}, ("compile",),
         expect=("'sources:' must map",), location=r"models/sources\.yml:\d+: error: "),
    Case("yaml-settings-not-mapping", {**GOOD, "models/sources.yml": "sources:\n  raw.orders: [cursor]\n"},
         ("compile",), expect=("must be a mapping",), location=r"models/sources\.yml:2: error: "),
    Case("source-unknown-key", {**GOOD, "models/sources.yml": "sources:\n  raw.orders:\n    uniqe_key: order_id\n"},
         ("build",), expect=("unknown source setting 'uniqe_key'", "did you mean 'unique_key'?"),
         location=at("models/sources.yml", 3, 5), sources_sql=SOURCES),
    Case("yaml-unknown-top-level-key", {**GOOD, "models/sources.yml": "source:\n  raw.orders: {cursor: x}\n"},
         ("compile",), expect=("unknown key 'source'", "did you mean 'sources'?"),
         location=at("models/sources.yml", 1, 1)),
    Case("project-unknown-key", {**GOOD, "sqlorch.yml": "name: p\nseed_shema: s\n"}, ("compile",),
         expect=("unknown setting 'seed_shema'", "did you mean 'seed_schema'?"), location=at("sqlorch.yml", 2, 1)),
    Case("project-not-mapping", {**GOOD, "sqlorch.yml": "- name\n"}, ("compile",),
         expect=("expected a mapping",), location=at("sqlorch.yml", 1, 1)),
    Case("declared-cursor-missing", {**GOOD, "models/sources.yml": "sources:\n  raw.orders:\n    cursor: loaded_at\n"
                                     "    columns: {order_id: int, amount: double}\n"},
         ("compile",), expect=("cursor 'loaded_at' of source raw.orders is not one of its columns",),
         location=at("models/sources.yml", 3, 5)),
    Case("warehouse-unique-key-missing", {**GOOD, "models/sources.yml": "sources:\n  raw.orders:\n"
                                          "    unique_key: [order_id, line_no]\n"},
         ("build",), expect=("unique_key 'line_no' of source raw.orders",), location=at("models/sources.yml", 3, 5),
         sources_sql=SOURCES),
    # profiles
    Case("profile-unknown-key", {**GOOD, "profiles.yml": "target: dev\ntargets:\n  dev:\n    type: duckdb\n"
                                 "    treads: 2\n"},
         ("build",), expect=("unknown duckdb setting 'treads'", "did you mean 'threads'?"),
         location=at("profiles.yml", 5, 5), sources_sql=SOURCES),
    Case("profile-unknown-type", {**GOOD, "profiles.yml": "target: dev\ntargets:\n  dev: {type: oracle}\n"},
         ("build",), expect=("has type 'oracle'", "type must be one of"), location=at("profiles.yml"),
         sources_sql=SOURCES),
    Case("profile-missing-target", {**GOOD, "profiles.yml": "target: dev\ntargets:\n  dev: {type: duckdb}\n"},
         ("build", "--target", "prod"), expect=("unknown target 'prod'", "targets defined: dev"),
         location=r"profiles\.yml: error: ", sources_sql=SOURCES),
    Case("profile-default-target-missing", {**GOOD, "profiles.yml": "target: dve\ntargets:\n  dev: {type: duckdb}\n"},
         ("build",), expect=("unknown target 'dve'", "did you mean 'dev'?"), location=at("profiles.yml", 1, 1),
         sources_sql=SOURCES),
    Case("profile-without-targets", {**GOOD, "profiles.yml": "target: dev\n"}, ("compile",),
         expect=("'targets:'",), location=at("profiles.yml", 1, 1)),
    # options
    Case("vars-not-yaml", GOOD, ("build", "--vars", "{days: [7"), expect=("--vars is not valid YAML",),
         location=r"(?m)^error: --vars", sources_sql=SOURCES, before=(("build",),)),
    Case("vars-not-mapping", GOOD, ("build", "--vars", "[1, 2]"), expect=("--vars must be a YAML mapping",),
         location=r"(?m)^error: --vars", sources_sql=SOURCES),
    Case("threads-zero", GOOD, ("build", "--threads", "0"), expect=("--threads must be at least 1, not 0",),
         location=r"(?m)^error: --threads", sources_sql=SOURCES, before=(("build",),)),
    Case("threads-negative", GOOD, ("build", "--threads", "-3"), expect=("--threads must be at least 1",),
         sources_sql=SOURCES),
    Case("select-nothing", GOOD, ("build", "--select", "stg_order"), expect=("matches no model", "`sqlorch ls`"),
         sources_sql=SOURCES),
    Case("ls-select-nothing", GOOD, ("ls", "--select", "tag:nope"), expect=("matches no tag", "`sqlorch ls`")),
    Case("exclude-everything", GOOD, ("plan", "--exclude", "staging.stg_orders"),
         expect=("leave nothing selected", "sqlorch ls"), sources_sql=SOURCES),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_load_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)
