"""The nodes of a project: models, seeds and declared sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch.project.dependencies import position, table_ref, table_references
from sqlorch.project.header import ModelConfig
from sqlorch.project.parsing import parse_model_sql, strip_positions
from sqlorch.project.seeds import read_seed, seed_fingerprint
from sqlorch.refs import TableRef


@dataclass(frozen=True)
class SourceSpec:
    """A source described in YAML: how its changes are found, and its columns if given."""

    ref: TableRef
    cursor: str | None = None
    unique_key: tuple[str, ...] = ()
    append_only: bool = False
    columns: dict[str, str] | None = None
    path: Path | None = None
    warn_after: float | None = None  # freshness (seconds): how late the source itself may be
    error_after: float | None = None
    loaded_at: str | None = None  # the column saying when a row was loaded; default: the cursor
    # dbt's loaded_at_field is checked where dbt checks it, when freshness is measured: a
    # source-level one often names a column some tables lack (status then measures from
    # the changes it saw), so it never stops a build
    loaded_at_checked: bool = True

    @property
    def loaded_at_column(self) -> str | None:
        return self.loaded_at or self.cursor


@dataclass
class Model:
    ref: TableRef
    path: Path
    config: ModelConfig
    sql: str  # rendered SQL, as written (dialect of the project)
    dialect: str
    tables: tuple[TableRef, ...]  # every table the SQL reads as written (schema "" when bare)
    depends_on: set[TableRef] = field(default_factory=set)  # models and seeds
    sources: set[TableRef] = field(default_factory=set)  # everything else

    @cached_property
    def ast(self) -> exp.Query:
        """The parsed query without token positions (cheap to copy). Parsed on first use: a
        warm compile takes ``tables`` from its parse cache and never needs the tree."""
        return strip_positions(parse_model_sql(self.sql, self.dialect, self.path))

    def positioned(self) -> exp.Query:
        """The query with token positions, parsed again: only error messages need them, so
        the working tree does not carry them."""
        return parse_model_sql(self.sql, self.dialect, self.path)

    def locate_table(self, ref: TableRef) -> tuple[int | None, int | None]:
        """Line and column of the first reference to ``ref`` as written (schema "" if bare)."""
        for table in table_references(self.positioned()):
            if table_ref(table) == ref:
                return position(table)
        return None, None

    @property
    def name(self) -> str:
        return str(self.ref)

    @property
    def inputs(self) -> set[TableRef]:
        return self.depends_on | self.sources


@dataclass(frozen=True)
class Seed:
    """A CSV file loaded as a table; the settings are dbt's ``seeds:`` configs."""

    ref: TableRef
    path: Path
    delimiter: str = ","
    column_types: tuple[tuple[str, str], ...] = ()

    def read(self) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
        return read_seed(self.path, self.delimiter, dict(self.column_types))

    def fingerprint(self) -> str:
        """Changes with the file and with the settings, so a new column type reloads it."""
        settings = "" if (self.delimiter, self.column_types) == (",", ()) else repr((self.delimiter, self.column_types))
        return seed_fingerprint(self.path, settings)
