"""The nodes of a project: models, seeds and declared sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp

from sqlorch.project.header import ModelConfig
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


@dataclass
class Model:
    ref: TableRef
    path: Path
    config: ModelConfig
    sql: str  # rendered SQL, as written (dialect of the project)
    ast: exp.Query
    depends_on: set[TableRef] = field(default_factory=set)  # models and seeds
    sources: set[TableRef] = field(default_factory=set)  # everything else

    @property
    def name(self) -> str:
        return str(self.ref)

    @property
    def inputs(self) -> set[TableRef]:
        return self.depends_on | self.sources


@dataclass(frozen=True)
class Seed:
    ref: TableRef
    path: Path
