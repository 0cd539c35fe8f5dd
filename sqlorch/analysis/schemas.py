"""Column checking and output schemas, inferred from declared sources and upstream models.

A model is checked only where every relation it reads has a known schema (declared
``columns:``, a seed's CSV header, an upstream model's output, or the warehouse when one is
connected); otherwise its columns cannot be known without a warehouse and it is left to
the build.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from sqlglot import Dialect, exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from sqlorch.analysis.canonical_names import canonical_names
from sqlorch.errors import CompileError
from sqlorch.project.parsing import strip_positions
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
        _TYPES[(text, dialect)] = strip_positions(found)
    return found


@cache
def dialect_of(name: str) -> Dialect:
    """One Dialect instance per name: sqlglot builds a new one for every string it is given."""
    return Dialect.get_or_raise(name)


def mapping_schema(schemas: SchemaMap, dialect: str) -> MappingSchema:
    """A sqlglot schema of sqlorch's canonical (lower-case) names and parsed types, for a
    query whose names ``qualify_query`` canonicalised the same way. Build it from a query's
    own inputs only: sqlglot normalises every table it is given."""
    nested: dict[str, object] = {}
    for ref, columns in schemas.items():
        tables = nested.setdefault(ref.schema, {})
        assert isinstance(tables, dict)
        tables[ref.name] = {name: _data_type(t, dialect) for name, t in columns.items()}
    return MappingSchema(nested, dialect=dialect_of(dialect), normalize=False)


def _locate(query: exp.Expr, column: str) -> tuple[int | None, int | None]:
    for node in query.find_all(exp.Column):
        if node.name.lower() == column.lower():
            meta = node.this.meta if isinstance(node.this, exp.Expr) else {}
            if "line" in meta:  # "col" is where the token ends; its length counts any quotes
                return meta["line"], meta["col"] - (meta["end"] - meta["start"])
    return None, None


def qualify_query(
    query: exp.Query,
    schema: MappingSchema,
    dialect: str,
    path: Path,
    positioned: Callable[[], exp.Expr] | None = None,
) -> exp.Query:
    """Qualify every column (expanding ``*``); unknown columns become CompileErrors, located
    in ``positioned()`` (the query with token positions) when the query has none."""
    try:
        qualified = qualify(
            canonical_names(query.copy(), dialect_of(dialect)),
            schema=schema,
            dialect=dialect_of(dialect),
            validate_qualify_columns=True,
            # Every identifier quoted (canonical_names quoted the case-insensitive ones in
            # sqlorch's lower case already): the names ``*`` expands to come from the
            # warehouse and may hold spaces, quotes or reserved words; unquoted they would
            # be read as SQL.
            quote_identifiers=True,
            identify=True,
        )
    except OptimizeError as error:
        message = str(error).split(". Line")[0]
        # "Column 'my col' could not be resolved": the name may hold spaces and quotes
        match = re.search(r"[Cc]olumn:? '(.+)'", message) or re.search(r"[Cc]olumn:? \"?([\w$]+)", message)
        located = positioned() if positioned else query
        line, col = _locate(located, match.group(1)) if match else (None, None)
        raise CompileError(f"unknown column: {message}", path=path, line=line, col=col) from None
    except SqlglotError as error:
        raise CompileError(f"cannot analyse this query: {error}", path=path) from None
    assert isinstance(qualified, exp.Query)
    return qualified


def type_changes(before: Schema, now: Schema) -> dict[str, str]:
    """The columns of both ``before`` and ``now`` whose type changed, each with ``name OLD -> NEW``.

    The texts are compared as they are: each was rendered by sqlglot from a parsed type (a
    catalog's, by the adapter in the target's dialect; an inferred one by ``output_schema``),
    so one type has one spelling (``DECIMAL(12, 2)``; Postgres' ``character varying`` is
    ``VARCHAR``). Parsing them again would take a dialect, and the project's is not the
    target's: DuckDB's reads ``VARCHAR(8)``, ``CHAR(4)`` and ``TEXT`` as one type, which
    they are not on Postgres. An UNKNOWN type (not inferred) changes nothing. Columns added
    or dropped are not here: a model naming one fails to compile, one reading ``*`` changes
    its output columns (``planner.output_columns_changed``)."""
    return {
        name: f"{name} {before[name]} -> {kind}"
        for name, kind in now.items()
        if name in before and before[name] != kind and "UNKNOWN" not in (before[name], kind)
    }


def columns_named(query: exp.Expr) -> frozenset[str] | None:
    """Every name by which ``query`` may read a column (lower case): a superset, since it
    is every identifier in it (tables and aliases too). None where the query may read a
    column it does not name: ``*`` (not ``COUNT(*)``), ``t.*``, ``COLUMNS(...)``, a
    NATURAL join, a PIVOT, a relation read as a row value (DuckDB's ``SELECT t FROM t``)."""
    if any(
        not isinstance(star.parent, exp.Count) and not _exists_projection(star) for star in query.find_all(exp.Star)
    ):
        return None
    if query.find(exp.Columns, exp.Pivot) is not None:
        return None
    if any(str(join.args.get("method") or "").upper() == "NATURAL" for join in query.find_all(exp.Join)):
        return None
    if _reads_a_row_value(query):
        return None
    return frozenset(node.name.lower() for node in query.find_all(exp.Identifier, exp.Var))


def _exists_projection(star: exp.Star) -> bool:
    """Whether ``star`` is the whole projection of an EXISTS subquery (``EXISTS (SELECT *
    FROM t WHERE ...)``, TPC-H Q4, Q21, Q22): EXISTS asks only whether a row is there, so
    the ``*`` reads no column; its WHERE names those it does read."""
    select = star.parent
    return isinstance(select, exp.Select) and select.expressions == [star] and isinstance(select.parent, exp.Exists)


def _reads_a_row_value(query: exp.Expr) -> bool:
    """Whether a column without a table qualifier is named like a relation visible where it
    stands (its scope's or an enclosing one's): DuckDB reads ``SELECT t FROM t`` as the
    whole row of ``t``. A relation is visible by its alias where it has one, so an output
    column named like a table read elsewhere (TPC-H Q8's and Q9's ``nation``) is no row.
    True where the scopes cannot be worked out."""
    try:
        scopes = traverse_scope(query)
    except (OptimizeError, SqlglotError):
        return True
    for scope in scopes:
        visible: set[str] = set()
        around: Scope | None = scope
        while around is not None:
            visible |= {name.lower() for name in around.sources}
            around = around.parent
        if any(not column.table and column.name.lower() in visible for column in scope.columns):
            return True
    return False


def columns_read(queries: Iterable[exp.Expr]) -> frozenset[str] | None:
    """``columns_named`` of several queries (the models reading one source), together."""
    names: set[str] = set()
    for query in queries:
        named = columns_named(query)
        if named is None:
            return None
        names |= named
    return frozenset(names)


def output_schema(
    qualified: exp.Query,
    schema: MappingSchema,
    path: Path,
    dialect: str = "duckdb",
    positioned: Callable[[], exp.Expr] | None = None,
) -> Schema:
    """Names and types of a qualified query's output; duplicate names are an error.

    Types are read off a copy: sqlglot renders a division for a target whose ``/`` is typed
    (Postgres, Snowflake, BigQuery) from its operands' types, so a tree left annotated here
    renders ``decimal / decimal`` as NUMERIC division where the same model read from the
    compile cache (never annotated) renders DuckDB's float division: a first build and a
    later one of the same model differed in the last digits (TPC-H Q8, Q14, Q17 on Postgres)."""
    annotated = annotate_types(qualified.copy(), schema=schema, dialect=dialect_of(dialect))
    columns: Schema = {}
    for select in annotated.selects:
        name = select.alias_or_name.lower()
        if not name:
            raise CompileError("every output column needs a name (add AS name)", path=path)
        if name in columns:
            line, col = _locate(positioned() if positioned else qualified, name)
            raise CompileError(
                f"duplicate output column '{name}'",
                path=path,
                line=line,
                col=col,
                hint="give one of them another name with AS",
            )
        data_type = select.type
        columns[name] = (
            data_type.sql(dialect_of(dialect))
            if data_type and not data_type.is_type(exp.DataType.Type.UNKNOWN)
            else "UNKNOWN"
        )
    return columns
