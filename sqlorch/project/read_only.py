"""Models are read-only queries: every node of the parsed tree must be a query node.

A model runs with the rights of the build, inside a statement sqlorch wraps around it
(``CREATE TABLE ... AS``, a MERGE source). A data-modifying CTE (``WITH d AS (DELETE ...
RETURNING *)``), ``SELECT ... INTO``, ``FOR UPDATE`` or a table function that reads files,
URLs or other databases would act on relations sqlorch does not own. So the check is an
allow-list, not a block-list: a node type sqlglot adds tomorrow, or a statement it could
only parse as an opaque ``Command``, is rejected until someone decides it is a query node.

Table functions are the one way a query reaches outside the warehouse's tables
(``read_csv``, ``glob``, ``sqlite_scan``, ``postgres_scan``, ``query``...): only pure ones
that compute rows from their arguments are allowed (``TABLE_FUNCTIONS``). Reading a file
is a source's job: load it into a table (or a seed) and read that table. DuckDB also reads
a file when a table name looks like a path (``FROM 'orders.csv'``), so such names are
rejected too. Scalar functions are the warehouse's: the few that write or reach outside
(sequences, files, session settings, the environment) are refused by name
(``SIDE_EFFECT_FUNCTIONS``); a user-defined function is trusted like the warehouse's
grants trust it.
"""

from __future__ import annotations

from pathlib import Path

from sqlglot import Dialect, exp

from sqlorch.errors import ParseError

# Clauses and leaves a SELECT is made of. Functions and operators are allowed by family
# (``_EXPRESSION_FAMILIES``); everything else (DML, DDL, INTO, FOR UPDATE, RETURNING,
# PRAGMA, SET, COPY, ATTACH, properties, commands...) is not a query node.
QUERY_NODES: frozenset[type[exp.Expr]] = frozenset(
    {
        exp.Select, exp.Union, exp.Except, exp.Intersect, exp.Subquery, exp.Values, exp.With, exp.CTE,
        exp.RecursiveWithSearch, exp.From, exp.Join, exp.Lateral, exp.Where, exp.Group, exp.Having,
        exp.Qualify, exp.Order, exp.Ordered, exp.Limit, exp.LimitOptions, exp.Offset, exp.Fetch,
        exp.Distinct, exp.Star, exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean,
        exp.Var, exp.Table, exp.TableAlias, exp.Alias, exp.Aliases, exp.Tuple, exp.Bracket, exp.Slice,
        exp.DataType, exp.DataTypeParam, exp.Interval, exp.IntervalSpan, exp.Window, exp.WindowSpec,
        exp.Pivot, exp.PivotAlias, exp.PivotAny, exp.UnpivotColumns, exp.Lambda, exp.TableSample,
        exp.Cube, exp.Rollup, exp.GroupingSets, exp.Filter, exp.WithinGroup, exp.IgnoreNulls,
        exp.RespectNulls, exp.HavingMax, exp.AtTimeZone, exp.FromTimeZone, exp.Comprehension,
        exp.National, exp.HexString, exp.ByteString, exp.BitString, exp.RawString, exp.UnicodeString,
        exp.Placeholder, exp.Parameter, exp.PositionalColumn, exp.ColumnDef, exp.HistoricalData,
        exp.Version, exp.TableFromRows, exp.JSONPath, exp.OnCondition, exp.FormatJson,
        exp.JSONColumnDef, exp.JSONSchema, exp.Hint, exp.JoinHint, exp.IndexTableHint,
        exp.WithTableHint, exp.Pseudocolumn, exp.PreWhere, exp.WithFill, exp.Introducer,
    }
)  # fmt: skip
_EXPRESSION_FAMILIES = (exp.Func, exp.Binary, exp.Unary, exp.Predicate, exp.JSONPathPart)

# Table functions that only compute rows from their arguments (DuckDB, Postgres, Snowflake
# and BigQuery spellings; sqlglot parses Snowflake's FLATTEN as EXPLODE).
TABLE_FUNCTIONS = frozenset(
    {
        "range", "generate_series", "generate_subscripts", "unnest", "explode", "flatten", "generator",
        "json_each", "json_tree", "json_each_text", "jsonb_each", "jsonb_each_text", "json_array_elements",
        "jsonb_array_elements", "json_array_elements_text", "jsonb_array_elements_text",
    }
)  # fmt: skip
# Scalar functions that change state or read outside the tables: sequences, files, large
# objects, other databases, server and session control, the environment.
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "nextval", "setval", "currval", "setseed", "getenv", "set_config", "current_setting",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export",
        "lo_unlink", "lo_put", "lo_from_bytea", "dblink", "dblink_exec", "pg_terminate_backend",
        "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_advisory_lock",
        "pg_advisory_xact_lock", "pg_notify", "system$wait", "system$cancel_query", "to_file", "secret",
        "next_value_for",
    }
)  # fmt: skip
_TABLE_POSITIONS = (exp.Table, exp.From, exp.Join, exp.Lateral, exp.TableFromRows)
_PATH_CHARACTERS = frozenset("./\\:*?")


def check_read_only(query: exp.Query, sql: str, dialect: str, path: Path) -> None:
    """Raise ParseError at the first node that is not part of a read-only query.

    ``query`` must still carry sqlglot's token positions (``sql`` is the text it was parsed
    from): the error points at the offending keyword, function or name.
    """
    for node in query.walk():
        problem = _problem(node)
        if problem is not None:
            message, hint = problem
            line, col = locate(node, sql, dialect)
            raise ParseError(
                f"a model must be a read-only query, found {message}", path=path, line=line, col=col, hint=hint
            )


def _problem(node: exp.Expr) -> tuple[str, str] | None:
    """What is wrong with one node, and the hint, or None for a query node."""
    if isinstance(node, exp.Func):
        name = _function_name(node)
        # a JOIN's ON condition (``a = b AND c``: sqlglot's AND is a Func) is no table position
        if isinstance(node, exp.UDTF) or (isinstance(node.parent, _TABLE_POSITIONS) and node.arg_key == "this"):
            if name not in TABLE_FUNCTIONS:
                return (
                    f"table function {name}()",
                    "reading files, URLs or other databases is a source's job: load the data into a "
                    f"table and read that; pure table functions allowed: {', '.join(sorted(TABLE_FUNCTIONS))}",
                )
        elif name in SIDE_EFFECT_FUNCTIONS:
            return f"function {name}()", "it changes state or reads outside the warehouse's tables"
        return None
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        path_like = next((part for part in (node.catalog, node.db, node.name) if _PATH_CHARACTERS & set(part)), None)
        if path_like is not None:
            return (
                f"table name '{path_like}', which DuckDB would read as a file",
                "a table name must not look like a file path or URL; reading files is a source's job",
            )
        return None
    if type(node) in QUERY_NODES or isinstance(node, _EXPRESSION_FAMILIES):
        return None
    return describe(node), "a model is one SELECT (CTEs welcome); sqlorch alone writes the model's table"


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def describe(node: exp.Expr) -> str:
    """The statement or clause keyword as the user wrote it (DELETE, COPY, INTO), not
    sqlglot's class name."""
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    if isinstance(node, exp.Lock):
        return "FOR UPDATE" if node.args.get("update") else "FOR SHARE"
    return _KEYWORDS.get(type(node), node.key.upper())


_KEYWORDS: dict[type[exp.Expr], str] = {exp.TruncateTable: "TRUNCATE", exp.LoadData: "LOAD"}


def locate(node: exp.Expr, sql: str, dialect: str) -> tuple[int, int]:
    """Line and column where ``node`` starts: its leading keyword when it has one (DELETE,
    INSERT...), else its first positioned token (a function's or table's name)."""
    starts = [n.meta["start"] for n in node.walk() if n._meta and "start" in n.meta]
    first = min(starts) if starts else None
    keyword = describe(node).split(" ")[0] if not isinstance(node, (exp.Func, exp.Table)) else ""
    if keyword:
        tokens = [
            token
            for token in Dialect.get_or_raise(dialect).tokenize(sql)
            if token.text.upper() == keyword and (first is None or token.start < first)
        ]
        if tokens:
            return _line_col(sql, (tokens[-1] if first is not None else tokens[0]).start)
    return _line_col(sql, first) if first is not None else (1, 1)


def _line_col(sql: str, offset: int) -> tuple[int, int]:
    line_start = sql.rfind("\n", 0, offset) + 1
    return sql.count("\n", 0, offset) + 1, offset - line_start + 1
