"""Per-model results of a build, and ``target/run_results.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelResult:
    model: str
    status: str  # "success" | "error" | "skipped"
    action: str  # "full" | "incremental" | "skip"
    reason: str
    rows: int | None = None  # rows written to the model's table; see README "How a build decides"
    seconds: float = 0.0
    error: str | None = None
    audits: list[dict[str, Any]] = field(default_factory=list)  # name, model, status, bad_rows, sample
    strategy: str = ""  # the strategy actually run, the plan's vocabulary ("" for a skip)
    estimated_rows: int | None = None  # the plan's estimate of changed input rows
    rows_written: int | None = None  # same as ``rows``, under the name the plan's estimates use
    branch: str | None = None  # where the plan held a choice: the branch taken and its rule
    chunks: int | None = None  # where the plan held chunks of keys: how many ran (``planning/chunks.py``)


@dataclass
class RunResult:
    run_id: str
    results: list[ModelResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.status == "error" for r in self.results)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"run_id": self.run_id, "results": [asdict(r) for r in self.results]}
        path.write_text(json.dumps(payload, indent=2, default=str))
