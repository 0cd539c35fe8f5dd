"""Which warehouse relations sqlorch created, and may therefore write, replace or drop.

``_sqlorch.owned`` holds one row per physical relation (``schema.name`` as ``TableRef``
renders it) that a build created. A relation is claimed (its row committed) just before
the statement that creates it runs: a build killed in between leaves a claim on a
relation that does not exist, which is harmless; the opposite order would leave a table
the next build refuses to touch.

Upgrades: projects built before this table existed have rows in ``_sqlorch.relations``
for every model and seed they built. While ``owned`` is empty, the physical relations of
the project's current models and seeds that have such a row are recorded as owned; after
that only claims count.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.refs import TableRef
from sqlorch.state.store import STATE_SCHEMA, state_table

OWNED = state_table("owned")


def read_owned(adapter: Adapter, existing: Collection[TableRef], legacy: Iterable[TableRef]) -> set[str]:
    """The relations sqlorch owns, read-only (``plan``): with no ``owned`` table yet, or an
    empty one, ``legacy``, which is what the next build's ``load_owned`` records."""
    owned = _fetch_owned(adapter) if OWNED in existing else set()
    return owned or {str(ref) for ref in legacy}


def _fetch_owned(adapter: Adapter) -> set[str]:
    query = exp.select(exp.column("relation", quoted=True)).from_(OWNED.to_table())
    return {str(row[0]) for row in adapter.fetch(query)}


def load_owned(adapter: Adapter, existing: Collection[TableRef], legacy: Iterable[TableRef]) -> set[str]:
    """The relations sqlorch owns, creating the table on first use. While it is empty,
    ``legacy`` (what an earlier version built) is recorded as owned: checked on every
    build rather than once, so a build killed mid-upgrade repeats it."""
    owned: set[str] = set()
    if OWNED not in existing:
        adapter.ensure_schema(STATE_SCHEMA)
        column = exp.ColumnDef(this=exp.to_identifier("relation", quoted=True), kind=exp.DataType.build("TEXT"))
        adapter.execute(
            exp.Create(this=exp.Schema(this=OWNED.to_table(), expressions=[column]), kind="TABLE", exists=True)
        )
    else:
        owned = _fetch_owned(adapter)
    if not owned:
        rows = [(str(ref),) for ref in sorted(set(legacy))]
        if rows:
            adapter.insert_rows(OWNED, ["relation"], rows)
        owned = {row[0] for row in rows}
    return owned


def claim_statement(relation: TableRef) -> exp.Insert:
    """Record ``relation`` as created by sqlorch: a plan runs it on its own (committed at
    once), before the statement that creates the relation."""
    return exp.insert(
        exp.values([(str(relation),)]), OWNED.to_table(), columns=[exp.to_identifier("relation", quoted=True)]
    )


def not_owned_message(relation: TableRef) -> str:
    return (
        f"{relation} already exists in the warehouse and was not created by sqlorch: "
        "sqlorch never writes, replaces or drops a relation it does not own"
    )
