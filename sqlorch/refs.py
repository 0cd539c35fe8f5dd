"""TableRef: the name of one relation, built and printed through sqlglot."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp


@dataclass(frozen=True, order=True)
class TableRef:
    """A relation name as the user writes it: ``schema.name`` (optionally ``catalog``).

    Parts are kept as written in the project (normalised to lower case for unquoted
    names); adapters decide how a part is quoted or case-folded on their warehouse.
    """

    schema: str
    name: str
    catalog: str | None = None

    @classmethod
    def from_table(cls, table: exp.Table, default_schema: str = "main") -> TableRef:
        return cls(
            schema=table.db or default_schema,
            name=table.name,
            catalog=table.catalog or None,
        )

    def to_table(self, alias: str | None = None, quoted: bool = True) -> exp.Table:
        return exp.table_(
            self.name,
            db=self.schema,
            catalog=self.catalog,
            quoted=quoted,
            alias=alias,
        )

    def with_schema(self, schema: str) -> TableRef:
        return TableRef(schema=schema, name=self.name, catalog=self.catalog)

    def __str__(self) -> str:
        parts = [part for part in (self.catalog, self.schema, self.name) if part]
        return ".".join(parts)
