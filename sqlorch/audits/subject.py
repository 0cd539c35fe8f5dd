"""What an audit reads: the rows a step is about to publish, and the stored rows that stay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from sqlorch.refs import TableRef


@dataclass(frozen=True)
class Subject:
    """A full build audits the whole new table: ``rows`` is it and ``rest`` is None. An
    incremental step audits ``rows``, the rows it is about to write, and checks ``unique``,
    ``relationships`` and ``row_count`` against ``rest``, the stored rows it keeps, so a
    passing audit reads the affected rows rather than the table."""

    rows: TableRef
    columns: list[str]
    relation_of: Callable[[exp.Table], TableRef]  # a table named in an audit -> the physical relation
    rest: exp.Select | None = None

    def select_rows(self, alias: str = "a") -> exp.Select:
        return exp.select(*[exp.column(c, table=alias, quoted=True) for c in self.columns]).from_(
            self.rows.to_table(alias=alias)
        )

    def whole(self) -> exp.Select | exp.Union:
        """Every row of the table as it will be after the write."""
        rows = self.select_rows()
        return rows if self.rest is None else exp.union(rows, self.rest, distinct=False)


def physical_resolver(
    resolve: Callable[[exp.Table], TableRef | None], physical_of: dict[TableRef, TableRef]
) -> Callable[[exp.Table], TableRef]:
    """A table named in an audit -> where it lives: a model's or seed's physical relation, else the source."""

    def relation_of(table: exp.Table) -> TableRef:
        ref = resolve(table)
        assert ref is not None  # the project resolver names every table
        return physical_of.get(ref, ref)

    return relation_of
