"""A small generic DAG: topological order, ancestors, descendants, cycle detection."""

from __future__ import annotations

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
        cycle = self.find_cycle()
        if cycle:
            raise GraphError("dependency cycle: " + " -> ".join(str(node) for node in cycle))
        remaining = {node: len(parents) for node, parents in self.parents.items()}
        ready = sorted((node for node, count in remaining.items() if count == 0), key=str)
        order: list[T] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for child in sorted(self.children[node], key=str):
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)
        return order

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
