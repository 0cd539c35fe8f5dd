"""A small generic DAG: topological order, ancestors, descendants, cycle detection."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlorch.errors import GraphError

T = TypeVar("T", bound=Hashable)


@dataclass
class DAG(Generic[T]):
    """``parents[n]`` are the nodes ``n`` reads from."""

    parents: dict[T, set[T]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._order: list[T] | None = None
        self.children: dict[T, set[T]] = {node: set() for node in self.parents}
        for node, parents in self.parents.items():
            for parent in parents:
                self.children.setdefault(parent, set())
                self.parents.setdefault(parent, set())
            for parent in parents:
                self.children[parent].add(node)

    @property
    def nodes(self) -> set[T]:
        return set(self.parents)

    def find_cycle(self) -> list[T] | None:
        """One cycle as a path ``[a, b, ..., a]``, or None."""
        state: dict[T, int] = {}
        stack: list[T] = []

        def visit(node: T) -> list[T] | None:
            state[node] = 1
            stack.append(node)
            for parent in sorted(self.parents[node], key=str):
                if state.get(parent) == 1:
                    return [*stack[stack.index(parent) :], parent]
                if parent not in state:
                    found = visit(parent)
                    if found:
                        return found
            stack.pop()
            state[node] = 2
            return None

        for node in sorted(self.parents, key=str):
            if node not in state:
                found = visit(node)
                if found:
                    return list(reversed(found))
        return None

    def topological_order(self) -> list[T]:
        """Parents before children, ties broken by name so every run builds in one order.
        Computed once: the graph does not change after it is built."""
        if self._order is None:
            names = {node: str(node) for node in self.parents}
            remaining = {node: len(parents) for node, parents in self.parents.items()}
            tiebreak = itertools.count()  # nodes themselves need not be comparable
            ready = [(names[node], next(tiebreak), node) for node in self.parents if remaining[node] == 0]
            heapq.heapify(ready)
            order: list[T] = []
            while ready:
                node = heapq.heappop(ready)[2]
                order.append(node)
                for child in self.children[node]:
                    remaining[child] -= 1
                    if remaining[child] == 0:
                        heapq.heappush(ready, (names[child], next(tiebreak), child))
            if len(order) < len(self.parents):
                cycle = self.find_cycle() or []
                raise GraphError("dependency cycle: " + " -> ".join(str(node) for node in cycle))
            self._order = order
        return list(self._order)

    def ancestors(self, nodes: Iterable[T]) -> set[T]:
        return self._walk(nodes, self.parents)

    def descendants(self, nodes: Iterable[T]) -> set[T]:
        return self._walk(nodes, self.children)

    @staticmethod
    def _walk(start: Iterable[T], edges: dict[T, set[T]]) -> set[T]:
        seen: set[T] = set()
        todo = [n for s in start for n in edges.get(s, ())]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return seen
