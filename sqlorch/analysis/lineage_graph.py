"""Column lineage across models: upstream down to source columns, downstream to every
column a change can reach.

Each model's lineage (``analysis/lineage.py``) names the columns of its direct inputs; this
joins them into one graph. A walk keeps, per column reached, the strongest kind over all
paths, where a path is as weak as its weakest edge (``passthrough`` < ``transformed`` <
``filter``); a column is visited again only when reached with a stronger kind, so a walk
costs at most three visits per column however wide the project.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlorch.analysis.lineage import EDGE_KINDS, RANK, ColumnId, LineageJson
from sqlorch.errors import GraphError


@dataclass(frozen=True)
class Reached:
    column: ColumnId
    kind: str  # the strongest kind over the paths from the start
    depth: int  # edges on the shortest path
    via: ColumnId  # the column it was first reached from


class LineageGraph:
    """Direct edges between columns, both ways. ``models`` maps a model's name to its
    lineage (the manifest's shape); a relation that is not a model (a source or a seed)
    ends a walk upstream."""

    def __init__(self, models: Mapping[str, LineageJson]) -> None:
        self.models = models
        self.up: dict[ColumnId, list[tuple[ColumnId, int]]] = {}
        self.down: dict[ColumnId, list[tuple[ColumnId, int]]] = {}
        for model, columns in models.items():
            for name, lineage in columns.items():
                target = (model, name)
                edges = [((relation, column), RANK[kind]) for relation, column, kind in lineage["from"]]
                self.up[target] = edges
                for source, rank in edges:
                    self.down.setdefault(source, []).append((target, rank))

    def is_model(self, relation: str) -> bool:
        return relation in self.models

    def columns_of(self, relation: str) -> list[str]:
        """A model's columns; for a source or seed, the columns some model reads."""
        if relation in self.models:
            return list(self.models[relation])
        return sorted({column for rel, column in self.down if rel == relation})

    def find(self, text: str) -> ColumnId:
        """``schema.model.column`` (or ``model.column`` when the name is unique) as a column."""
        relation, _, column = text.strip().lower().rpartition(".")
        if not relation or not column:
            raise GraphError(f"'{text}' is not MODEL.COLUMN", hint="for example: marts.daily_revenue.revenue")
        relations = set(self.models) | {rel for rel, _ in self.down}
        matches = [relation] if relation in relations else [r for r in relations if r.rpartition(".")[2] == relation]
        if not matches:
            close = difflib.get_close_matches(relation, sorted(relations), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "name it as schema.model.column"
            raise GraphError(f"no model or source named '{relation}'", hint=hint)
        if len(matches) > 1:
            raise GraphError(f"'{relation}' is ambiguous: it could be {', '.join(sorted(matches))}")
        columns = self.columns_of(matches[0])
        if column not in columns:
            what = "has no column" if matches[0] in self.models else "has no column read by any model named"
            raise GraphError(f"{matches[0]} {what} '{column}'", hint=f"its columns: {', '.join(columns)}")
        return (matches[0], column)

    def upstream(self, column: ColumnId) -> list[Reached]:
        return _walk(self.up, column)

    def downstream(self, column: ColumnId) -> list[Reached]:
        return _walk(self.down, column)

    def direct(self, column: ColumnId, downstream: bool = False) -> list[tuple[ColumnId, str]]:
        edges = (self.down if downstream else self.up).get(column, [])
        return [(other, EDGE_KINDS[rank]) for other, rank in edges]


def _walk(edges: Mapping[ColumnId, list[tuple[ColumnId, int]]], start: ColumnId) -> list[Reached]:
    """Every column reachable from ``start``, in breadth-first order of first arrival."""
    best: dict[ColumnId, int] = {start: -1}
    first: dict[ColumnId, tuple[int, ColumnId]] = {}
    queue: deque[tuple[ColumnId, int, int]] = deque([(start, -1, 0)])
    while queue:
        column, rank, depth = queue.popleft()
        if rank > best[column]:
            continue  # a stronger path reached it since
        for other, edge in edges.get(column, ()):
            path = max(rank, edge)
            if other == start or path >= best.get(other, len(EDGE_KINDS)):
                continue
            best[other] = path
            first.setdefault(other, (depth + 1, column))
            queue.append((other, path, depth + 1))
    return [Reached(column, EDGE_KINDS[best[column]], depth, via) for column, (depth, via) in first.items()]


@dataclass
class LineageResult:
    """One column's lineage across the project: the columns reached, and the graph to
    draw the paths from."""

    column: ColumnId
    kind: str | None  # the column's own kind; None for a source or seed column
    downstream: bool
    reached: list[Reached]
    graph: LineageGraph

    def to_json(self) -> dict[str, Any]:
        names = {self.column, *(r.column for r in self.reached)}
        edges = []  # [upstream relation, column, downstream relation, column, kind], among the columns reached
        for column in sorted(names):
            for other, kind in self.graph.direct(column):
                if other in names:
                    edges.append([*other, *column, kind])
        return {
            "column": ".".join(self.column),
            "kind": self.kind,
            "direction": "downstream" if self.downstream else "upstream",
            "columns": [
                {
                    "relation": r.column[0],
                    "column": r.column[1],
                    "kind": r.kind,
                    "depth": r.depth,
                    "model": self.graph.is_model(r.column[0]),
                }
                for r in self.reached
            ],
            "edges": edges,
        }


@dataclass
class Impact:
    """A model whose SQL (or settings) changed since it was last built, and the columns
    downstream that may change with it: every column its columns reach by lineage."""

    model: str
    columns: list[Reached]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "columns": [{"relation": r.column[0], "column": r.column[1], "kind": r.kind} for r in self.columns],
        }
