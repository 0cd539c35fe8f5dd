"""The one NULL-safe key match: a NULL key pairs with a NULL key, on a real DuckDB."""

from __future__ import annotations

import duckdb
from sqlglot import exp

from sqlorch.planning.key_match import null_safe_equal, null_safe_match


def test_columns_are_matched_null_safe_by_alias() -> None:
    assert null_safe_match("t", "s", ["a", "b"]).sql("duckdb") == (
        '"t"."a" IS NOT DISTINCT FROM "s"."a" AND "t"."b" IS NOT DISTINCT FROM "s"."b"'
    )
    assert null_safe_match("t", "s", ["a"], ["k_a"]).sql("duckdb") == '"t"."a" IS NOT DISTINCT FROM "s"."k_a"'
    assert null_safe_equal([]).sql("duckdb") == "TRUE"  # an empty key (one-row aggregate) matches its row


def test_null_keys_pair_up_in_a_join() -> None:
    left = exp.select("*").from_("(VALUES (1, 'x'), (NULL, 'y'), (3, NULL)) AS t(a, b)")
    query = left.join("(VALUES (1, 'x'), (NULL, 'y'), (3, 'z')) AS s(a, b)", on=null_safe_match("t", "s", ["a", "b"]))
    with duckdb.connect() as con:
        rows = con.sql(query.select("t.a", "t.b", append=False).sql("duckdb")).fetchall()
    assert sorted(rows, key=str) == [(1, "x"), (None, "y")]  # (3, NULL) has no partner: NULL is not 'z'
