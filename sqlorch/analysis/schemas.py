"""Column checking and output schemas, inferred from declared sources and upstream models.

A model is checked only where every relation it reads has a known schema (declared
``columns:``, a seed's CSV header, an upstream model's output, or the warehouse when one is
connected); otherwise its columns cannot be known without a warehouse and it is left to
the build.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sqlorch.errors import CompileError
from sqlorch.refs import TableRef

Schema = dict[str, str]  # column -> SQL type ("UNKNOWN" where not known)
SchemaMap = dict[TableRef, Schema]


_TYPES: dict[tuple[str, str], exp.DataType] = {}


def _data_type(text: str, dialect: str) -> exp.DataType:
    """Parsed once per type string: sqlglot would otherwise parse it at every lookup."""
    found = _TYPES.get((text, dialect))
    if found is None:
        try:
            found = exp.DataType.build(text, dialect=dialect) if text != "UNKNOWN" else exp.DataType.build("unknown")
        except SqlglotError:
            found = exp.DataType.build("unknown")
        _TYPES[(text, dialect)] = found
    return found


def mapping_schema(schemas: SchemaMap, dialect: str) -> MappingSchema:
    """A sqlglot schema of already normalised (lower-case) names and parsed types."""
    nested: dict[str, object] = {}
    for ref, columns in schemas.items():
        tables = nested.setdefault(ref.schema, {})
        assert isinstance(tables, dict)
        tables[ref.name] = {name: _data_type(t, dialect) for name, t in columns.items()}
    return MappingSchema(nested, dialect=dialect, normalize=False)


def _read_by(query: exp.Expr, schemas: SchemaMap) -> SchemaMap:
    """Only the schemas of tables the query names: sqlglot normalises every table of the
    schema it is given, so passing the whole project makes compile quadratic."""
    names = {table.name.lower() for table in query.find_all(exp.Table)}
    return {ref: columns for ref, columns in schemas.items() if ref.name in names}


def _locate(query: exp.Expr, column: str) -> tuple[int | None, int | None]:
    for node in query.find_all(exp.Column):
        if node.name.lower() == column.lower():
            meta = node.this.meta if isinstance(node.this, exp.Expr) else {}
            if "line" in meta:
                return meta["line"], meta["col"] - len(node.name) + 1
    return None, None


def qualify_query(query: exp.Query, schemas: SchemaMap, dialect: str, path: Path) -> exp.Query:
    """Qualify every column (expanding ``*``); unknown columns become CompileErrors."""
    try:
        qualified = qualify(
            query.copy(),
            schema=mapping_schema(_read_by(query, schemas), dialect),
            dialect=dialect,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as error:
        message = str(error).split(". Line")[0]
        match = re.search(r"[Cc]olumn:? '?\"?([\w$]+)\"?'?", message)
        line, col = _locate(query, match.group(1)) if match else (None, None)
        raise CompileError(f"unknown column: {message}", path=path, line=line, col=col) from None
    except SqlglotError as error:
        raise CompileError(f"cannot analyse this query: {error}", path=path) from None
    assert isinstance(qualified, exp.Query)
    return qualified


def output_schema(qualified: exp.Query, schemas: SchemaMap, path: Path, dialect: str = "duckdb") -> Schema:
    """Names and types of a qualified query's output; duplicate names are an error."""
    annotated = annotate_types(qualified, schema=mapping_schema(_read_by(qualified, schemas), dialect))
    columns: Schema = {}
    for select in annotated.selects:
        name = select.alias_or_name.lower()
        if not name:
            raise CompileError("every output column needs a name (add AS name)", path=path)
        if name in columns:
            line, col = _locate(qualified, name)
            raise CompileError(
                f"duplicate output column '{name}'",
                path=path,
                line=line,
                col=col,
                hint="give one of them another name with AS",
            )
        data_type = select.type
        columns[name] = data_type.sql() if data_type and not data_type.is_type(exp.DataType.Type.UNKNOWN) else "UNKNOWN"
    return columns
