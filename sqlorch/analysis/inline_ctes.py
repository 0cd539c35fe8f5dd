"""Replace every CTE reference with its definition as a derived table.

Afterwards each base-table occurrence appears exactly once in the tree, so a rewrite that
substitutes one occurrence (and only that one) cannot silently touch a CTE read twice.
"""

from __future__ import annotations

from sqlglot import exp


class RecursiveCTE(ValueError):
    pass


def alias_identifier(source: exp.Expr) -> exp.Identifier:
    """The name a table or derived table is known by in its query, as written (quoting
    and case kept), for the subquery that replaces it: a rebuilt identifier would lose the
    quotes of a name like "order" or "my table" and read as SQL."""
    alias = source.args.get("alias")
    node = alias.this if isinstance(alias, exp.TableAlias) and alias.this else source.this
    if isinstance(node, exp.Identifier):
        return node.copy()
    return exp.to_identifier(source.alias_or_name, quoted=True)


def _replace_references(tree: exp.Expr, definitions: dict[str, exp.Expr]) -> exp.Expr:
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if table.db or name not in definitions or not isinstance(table.this, exp.Identifier):
            continue
        subquery = exp.Subquery(
            this=definitions[name].copy(),
            alias=exp.TableAlias(this=alias_identifier(table)),
        )
        if table is tree:
            return subquery
        table.replace(subquery)
    return tree


def inline_ctes(query: exp.Query) -> exp.Query:
    query = query.copy()
    while True:
        with_ = next(query.find_all(exp.With), None)
        if with_ is None:
            return query
        if with_.args.get("recursive"):
            raise RecursiveCTE("recursive CTE")
        owner = with_.parent
        assert owner is not None
        definitions: dict[str, exp.Expr] = {}
        for cte in with_.expressions:
            definitions[cte.alias_or_name.lower()] = _replace_references(cte.this.copy(), definitions)
        with_.pop()
        _replace_references(owner, definitions)
