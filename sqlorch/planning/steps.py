"""The plan as data: one typed step per selected node, printable and testable offline."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlorch.refs import TableRef


@dataclass
class Step:
    ref: TableRef
    kind: str  # "model" | "seed"
    materialized: str  # "incremental" | "table" | "view" | "seed"
    action: str  # "skip" | "incremental" | "full"
    reason: str
    strategy: str = ""  # "merge keys" | "delete+insert keys" | "rebuild" | "replace view" | ...
    key: list[str] | None = None
    estimated_changed_rows: int | None = None
    estimated_full_rows: int | None = None
    appends_only: bool = False  # the change this step will record only adds rows (a seed's diff)
    depends_on: list[TableRef] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = str(self.ref)
        data["depends_on"] = [str(r) for r in self.depends_on]
        del data["ref"]
        return data


@dataclass
class SourceChange:
    """One source's capture: what ``plan`` predicts (read-only) and ``build`` records in
    ``_sqlorch.batches``, the same numbers when the source does not change in between."""

    source: str
    capture: str  # "append-only" | "keyed" | "fingerprint" (nothing declared)
    change: str  # "none" | "append" | "delta" | "full" (captured whole: consumers rebuild) | "missing"
    rows: int  # change-log rows: new rows, or old and new images (0 for "full")
    batches: int  # batches recorded (a keyed source diffed whole after its cursor diff: 2)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    steps: list[Step]  # in dependency order
    sources: list[SourceChange] = field(default_factory=list)  # the selected models' sources, by name

    def to_json(self) -> dict[str, Any]:
        return {"steps": [step.to_json() for step in self.steps], "sources": [s.to_json() for s in self.sources]}
