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
    # the cost model's estimates (``planning/cost.py``): rows in the cost model's terms
    # (read: inputs and scans; written: table and change log) of the form the step runs
    estimated_affected_keys: int | None = None
    estimated_rows_read: int | None = None
    estimated_rows_written: int | None = None
    cost_incremental: float | None = None  # seconds, learned from the model's runs
    cost_full: float | None = None
    cost_winner: str = ""  # "incremental" | "full" | "" (not compared: a skip, a shape with no exact rewrite)
    estimated_log_rows: int | None = None  # rows the step puts in its change log: its consumers' change
    # a rebuild diffs its old and new rows into its change log (consumers read a delta); off
    # where no consumer could use it: none exists, or every one rebuilds in this plan
    rebuild_diffs: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = str(self.ref)
        data["depends_on"] = [str(r) for r in self.depends_on]
        del data["ref"]
        return data


@dataclass
class Plan:
    steps: list[Step]  # in dependency order

    def to_json(self) -> dict[str, Any]:
        return {"steps": [step.to_json() for step in self.steps]}
