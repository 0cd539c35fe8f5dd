"""A keyed source with a cursor records its shadow's fingerprint moved by the batch
(``capture._shadow_fingerprint``, ``adapters.base.fingerprint_moved``) instead of hashing the
whole shadow again, and checks its narrow diffs the same way (``_fingerprint_after``). Each
warehouse combines its fingerprint's parts its own way (sums; XORs on Snowflake and
BigQuery), so on every target: after updates, inserts, a delete and a NULL key, the
recorded fingerprint is the one the shadow has when hashed whole, the narrow diffs were
taken (no whole diff), the next build finds nothing, and the models equal their SQL."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest
from sqlglot import exp

from sqlorch.adapters.base import Adapter, fingerprint_moved
from sqlorch.refs import TableRef
from sqlorch.state.store import shadow_table, state_table
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build, create_table
from tests.conftest import write_files

ITEMS = TableRef("raw", "items")
COLUMNS = {"id": "BIGINT", "cat": "BIGINT", "price": "DECIMAL(12, 2)", "name": "VARCHAR", "stamp": "BIGINT"}
PROJECT = {
    "models/sources.yml": "sources:\n  raw.items: {unique_key: id, cursor: stamp}\n",
    "models/marts/by_cat.sql": "SELECT cat, count(*) AS n, sum(price) AS total FROM raw.items GROUP BY cat",
    "models/marts/items.sql": "SELECT id, cat, price, name FROM raw.items",
}


def _recorded(adapter: Adapter) -> str:
    query = (
        exp.select(exp.column("fingerprint", quoted=True))
        .from_(state_table("relations").to_table())
        .where(exp.column("relation", quoted=True).eq(exp.Literal.string("raw.items")))
    )
    return str(adapter.fetch(query)[0][0])


def _assert_recorded_describes_the_shadow(adapter: Adapter, kind: str) -> None:
    whole = adapter.fingerprint(shadow_table(ITEMS), list(COLUMNS))
    assert _recorded(adapter) == whole, kind


def test_the_recorded_fingerprint_moves_with_each_batch(
    warehouse: Warehouse, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ITEMS, COLUMNS)
    adapter.insert_rows(ITEMS, list(COLUMNS), [(i, i % 5, Decimal(i) / 4, f"n{i}", 1) for i in range(1, 201)])
    build(warehouse, project)
    _assert_recorded_describes_the_shadow(adapter, warehouse.kind)

    caplog.set_level(logging.WARNING, logger="sqlorch.execution.capture")
    # updates and inserts past the cursor (one with a NULL key): the narrowest diff
    adapter.execute(
        exp.update(
            ITEMS.to_table(),
            {"price": exp.Literal.number(0), "stamp": exp.Literal.number(2)},
            where=exp.column("id").isin(5, 77),
        )
    )
    adapter.insert_rows(ITEMS, list(COLUMNS), [(1000, 1, Decimal("2.00"), "new", 2), (None, 2, None, "null", 2)])
    build(warehouse, project)
    _assert_recorded_describes_the_shadow(adapter, warehouse.kind)
    # a delete: taken with the rows from the last cursor value on, still not a whole diff
    adapter.execute(exp.delete(ITEMS.to_table(), where=exp.column("id", quoted=True).eq(12)))
    adapter.execute(
        exp.update(ITEMS.to_table(), {"name": exp.Literal.string("x"), "stamp": exp.Literal.number(3)}, where="id = 1")
    )
    build(warehouse, project)
    _assert_recorded_describes_the_shadow(adapter, warehouse.kind)
    assert "diffed by key" not in caplog.text, caplog.text
    assert_models_match_their_sql(warehouse, project)

    # nothing changed: the source's fingerprint equals the recorded one, nothing is captured
    before = _recorded(adapter)
    build(warehouse, project)
    assert _recorded(adapter) == before


@pytest.mark.parametrize(
    ("parts", "whole", "removed", "added", "moved"),
    [
        (("sum", "sum"), "5:100", "2:30", "1:7", "4:77"),
        (("sum", "xor", "sum"), "3:-6:10", "1:5:4", "2:-1:9", "4:0:15"),
        (("sum", "sum"), "2:10", "2:10", "0:0", "0:0"),
    ],
)
def test_fingerprint_parts_combine_by_their_kind(
    parts: tuple[str, ...], whole: str, removed: str, added: str, moved: str
) -> None:
    assert fingerprint_moved(whole, removed, added, parts) == moved
