"""canonical_names: each identifier as sqlorch names it, by the dialect's own case rules."""

from __future__ import annotations

import pytest
from sqlglot import parse_one

from sqlorch.analysis.canonical_names import canonical_names
from sqlorch.analysis.schemas import dialect_of

QUERY = 'SELECT Id, "NAME", "Mixed", "lower" FROM Raw.T'


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        # folds unquoted names to upper case: a quoted all-upper name is that same object
        ("snowflake", 'SELECT "id", "name", "Mixed", "lower" FROM "raw"."t"'),
        # folds to lower case: a quoted name with an upper-case letter is case-sensitive
        ("postgres", 'SELECT "id", "NAME", "Mixed", "lower" FROM "raw"."t"'),
        # case-insensitive even quoted
        ("duckdb", 'SELECT "id", "name", "mixed", "lower" FROM "raw"."t"'),
        ("bigquery", "SELECT `id`, `name`, `mixed`, `lower` FROM `raw`.`t`"),
        # case-sensitive: kept as written
        ("clickhouse", 'SELECT Id, "NAME", "Mixed", "lower" FROM Raw.T'),
    ],
)
def test_canonical_names_follow_the_dialect(dialect: str, expected: str) -> None:
    sql = QUERY.replace('"', "`") if dialect == "bigquery" else QUERY
    assert canonical_names(parse_one(sql, read=dialect), dialect_of(dialect)).sql(dialect) == expected
