"""Point every reference to a model or seed at its physical relation on the target."""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.project.dependencies import table_references
from sqlorch.refs import TableRef


def rename_relations(
    query: exp.Query, physical: dict[TableRef, TableRef], default_schema: str, copy: bool = True
) -> exp.Query:
    """Return a copy of ``query`` (``query`` itself, renamed in place, when not ``copy``: a
    tree the caller just built) whose model/seed references use physical names.

    ``physical`` maps project relations (``staging.orders``) to where they live on the
    target. Bare names resolve through their unique project relation. Aliases are kept (or
    added as the bare name) so column references like ``orders.id`` stay valid.
    """
    query = query.copy() if copy else query
    # indexed at the first bare name only: ``physical`` may hold every model of the project
    by_name: dict[str, list[TableRef]] | None = None
    for source in table_references(query):
        name = source.name.lower()
        if source.db:
            ref = TableRef(schema=source.db.lower(), name=name, catalog=source.catalog.lower() or None)
            target = physical.get(ref)
        else:
            if by_name is None:
                by_name = {}
                for ref in physical:
                    by_name.setdefault(ref.name, []).append(ref)
            candidates = by_name.get(name, [])
            target = physical[candidates[0]] if len(candidates) == 1 else None
        if target is None:
            continue
        replacement = target.to_table()
        replacement.set("alias", exp.TableAlias(this=alias_identifier(source)))
        for key in ("joins", "laterals", "pivots", "sample", "hints"):
            if source.args.get(key):
                replacement.set(key, source.args[key])
        source.replace(replacement)
    return query
