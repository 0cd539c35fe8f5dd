"""Running one unit test: a scratch project holding only the model under test, its inputs
as tables of the given rows, built on an embedded DuckDB file by the real build.

The model's SQL is transpiled from the project's dialect to DuckDB (a Snowflake model is
tested on a laptop). Each input is declared a source keyed on all its columns, so a
``change:`` is captured as inserts and deletes and the second build is incremental where
the planner can make it so; its result must equal both ``expect`` and the model's SQL run
from scratch over the changed inputs.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.analysis.schemas import Schema
from sqlorch.config import Target
from sqlorch.execution.statements import columns_of, select_from
from sqlorch.planning.key_match import null_safe_equal
from sqlorch.project.loader import Project, make_resolver
from sqlorch.project.model import Model
from sqlorch.refs import TableRef
from sqlorch.unittests.spec import Row, UnitTest

EXPECTED = TableRef("_sqlorch_test", "expected")
_PYTHON_TYPES: list[tuple[type, str]] = [
    (bool, "BOOLEAN"),
    (int, "BIGINT"),
    (float, "DOUBLE"),
    (Decimal, "DOUBLE"),
    (dt.datetime, "TIMESTAMP"),
    (dt.date, "DATE"),
]


@dataclass
class UnitTestResult:
    name: str
    model: str
    status: str  # "pass" | "fail"
    lines: list[str] = field(default_factory=list)  # the row-level diff, or why it failed
    action: str | None = None  # the incremental build's action, for tests with a change


def _type_of(values: list[Any]) -> str:
    for value in values:
        if value is None:
            continue
        for python_type, sql_type in _PYTHON_TYPES:
            if isinstance(value, python_type):
                return sql_type
        return "VARCHAR"
    return "VARCHAR"


def _input_schema(ref: TableRef, declared: Schema | None, rows: list[Row], dialect: str) -> dict[str, str]:
    """DuckDB column types of an input: declared or compiled types, else guessed from the rows."""
    names = list(declared or {}) or list(dict.fromkeys(c for row in rows for c in row))
    schema = {}
    for name in names:
        declared_type = (declared or {}).get(name, "UNKNOWN")
        if declared_type.upper() != "UNKNOWN":
            schema[name] = exp.DataType.build(declared_type, dialect=dialect).sql("duckdb")
        else:
            schema[name] = _type_of([row.get(name) for row in rows])
    return schema


def _model_sql(model: Model, project: Project) -> str:
    """The model's SQL with every input fully qualified, in DuckDB's dialect."""
    resolve = make_resolver(project)
    tree = model.ast.copy()
    for table in tree.find_all(exp.Table):
        ref = resolve(table)
        if ref in model.inputs:
            table.set("this", exp.to_identifier(ref.name))
            table.set("db", exp.to_identifier(ref.schema))
            table.set("catalog", None)
    return tree.sql(dialect="duckdb", pretty=True)


def _create(adapter: Adapter, table: TableRef, schema: dict[str, str]) -> None:
    adapter.ensure_schema(table.schema)
    columns = [
        exp.ColumnDef(this=exp.to_identifier(n, quoted=True), kind=exp.DataType.build(t, dialect="duckdb"))
        for n, t in schema.items()
    ]
    adapter.execute(exp.Create(this=exp.Schema(this=table.to_table(), expressions=columns), kind="TABLE", replace=True))


def _insert(adapter: Adapter, table: TableRef, names: list[str], rows: list[Row]) -> None:
    if rows:
        adapter.insert_rows(table, names, [tuple(row.get(n) for n in names) for row in rows])


def _delete(adapter: Adapter, table: TableRef, names: list[str], row: Row) -> None:
    """One copy of ``row`` (a DELETE would remove every copy: delete all, put back the rest)."""
    match = null_safe_equal((exp.column(n, quoted=True), exp.convert(row.get(n))) for n in names)
    copies = adapter.fetch(exp.select(exp.func("count", exp.Star())).from_(table.to_table()).where(match))[0][0]
    if not copies:
        raise ValueError(f"no row {row} in {table} to delete")
    adapter.execute(exp.delete(table.to_table(), where=match))
    _insert(adapter, table, names, [row] * (int(copies) - 1))


def _diff(adapter: Adapter, actual: exp.Query, expected: exp.Query, names: list[str]) -> list[str]:
    """Row-level difference of two queries as multisets: ``- row`` missing, ``+ row`` unexpected."""
    lines = []
    for sign, left, right in (("-", expected, actual), ("+", actual, expected)):
        query = exp.except_(
            exp.select(*columns_of(names, "l")).from_(left.subquery("l")),
            exp.select(*columns_of(names, "r")).from_(right.subquery("r")),
            distinct=False,
        )
        for row in adapter.fetch(query):
            lines.append(f"{sign} " + ", ".join(f"{n}={v!r}" for n, v in zip(names, row, strict=True)))
    return lines


def _expected_rows(adapter: Adapter, rows: list[Row], types: dict[str, exp.DataType]) -> tuple[exp.Query, list[str]]:
    names = [n for n in types if any(n in row for row in rows)] if rows else list(types)
    _create(adapter, EXPECTED, {n: types[n].sql("duckdb") for n in names})
    _insert(adapter, EXPECTED, names, rows)
    return select_from(EXPECTED, names), names


class _Scratch:
    """The scratch project folder and its DuckDB file."""

    def __init__(self, folder: Path, test: UnitTest, model_sql: str, schemas: dict[TableRef, dict[str, str]]) -> None:
        self.root = folder
        self.test = test
        self.schemas = schemas
        path = folder / "models" / test.model.schema / f"{test.model.name}.sql"
        path.parent.mkdir(parents=True)
        path.write_text(model_sql + "\n")
        sources = {str(ref): {"unique_key": list(schema)} for ref, schema in schemas.items()}
        (folder / "models" / "sources.yml").write_text(yaml.safe_dump({"sources": sources}))
        profile = {"target": "test", "targets": {"test": {"type": "duckdb", "path": str(folder / "test.duckdb")}}}
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))
        self.target = Target("test", "duckdb", {"path": str(folder / "test.duckdb")})

    def adapter(self) -> Adapter:
        return connect(self.target)

    def build(self) -> tuple[str, str | None]:
        """(action, error) of the model in one build."""
        from sqlorch import api

        result = api.build(
            api.Options(project_dir=self.root, profiles_dir=self.root, threads=1, rebuild_when_cheaper=False)
        )
        item = next(r for r in result.results if r.model == str(self.test.model))
        return f"{item.action} ({item.reason})", item.error


def run_unit_test(test: UnitTest, project: Project, schemas: dict[TableRef, Schema | None]) -> UnitTestResult:
    """``schemas``: the known columns (and types, in the project's dialect) of the model's inputs."""
    model = project.models[test.model]
    dialect = project.settings.dialect
    result = UnitTestResult(test.name, str(test.model), "fail")
    everything = {ref: list(test.given.get(ref, [])) for ref in sorted(model.inputs)}
    for ref, change in (test.change or {}).items():
        everything[ref] += change.insert
    input_schemas = {ref: _input_schema(ref, schemas.get(ref), rows, dialect) for ref, rows in everything.items()}
    missing = [str(ref) for ref, schema in input_schemas.items() if not schema]
    if missing:
        result.lines = [f"give rows for {', '.join(missing)}: their columns are not known without a warehouse"]
        return result
    with tempfile.TemporaryDirectory(prefix="sqlorch-test-") as folder:
        scratch = _Scratch(Path(folder), test, _model_sql(model, project), input_schemas)
        adapter = scratch.adapter()
        try:
            for ref, schema in input_schemas.items():
                _create(adapter, ref, schema)
                _insert(adapter, ref, list(schema), test.given.get(ref, []))
        finally:
            adapter.close()
        action, error = scratch.build()
        if error is None and test.change is not None:
            adapter = scratch.adapter()
            try:
                for ref, change in test.change.items():
                    for row in change.delete:
                        _delete(adapter, ref, list(input_schemas[ref]), row)
                    _insert(adapter, ref, list(input_schemas[ref]), change.insert)
            except ValueError as problem:
                result.lines = [f"change: {problem}"]
                return result
            finally:
                adapter.close()
            action, error = scratch.build()
            result.action = action
        if error is not None:
            result.lines = [error]
            return result
        adapter = scratch.adapter()
        try:
            result.lines = _compare(adapter, test, scratch, _model_sql(model, project))
        finally:
            adapter.close()
    result.status = "fail" if result.lines else "pass"
    return result


def _compare(adapter: Adapter, test: UnitTest, scratch: _Scratch, model_sql: str) -> list[str]:
    import sqlglot

    built = test.model
    types = adapter.columns(built) or {}
    expected, names = _expected_rows(adapter, test.expect, types)
    actual = select_from(built, names)
    lines = _diff(adapter, actual, expected, names)
    if test.change is not None:
        fresh = sqlglot.parse_one(model_sql, read="duckdb")
        assert isinstance(fresh, exp.Query)
        everything = list(types)
        rebuilt = exp.select(*columns_of(everything, "f")).from_(fresh.subquery("f"))
        differs = _diff(adapter, select_from(built, everything), rebuilt, everything)
        if differs:
            lines += ["the incremental build differs from a full rebuild (- full rebuild, + incremental):", *differs]
    return lines
