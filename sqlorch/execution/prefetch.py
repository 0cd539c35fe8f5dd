"""The statements of a transaction group's later steps, built and rendered while its
earlier ones run.

A step's statements are built when first read (``Branch.statements``) and rendered for
the target when run, both in Python, and they are run by the warehouse's driver, which
releases the GIL while the statement runs (DuckDB does, and a remote warehouse's driver
waits on the network). In a group of many small steps (a chain of models committed
together) building and rendering cost about half as much as running, so one background
thread builds the branch each step most likely takes (the one the plan's estimates select) and
renders its statements while the executor runs the steps before it. The executor waits
for a step's building before it reads the step's statements, so no branch is ever built
or rendered by two threads at once; a step that takes another branch builds it as before.

The values building reads were all fixed when the plan was made (``planning/steps.py``)
and rendering is a function of the statement, so the text is the same whichever thread
makes it and whenever. A statement that binds values when it runs (``placeholders``) is
rendered when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from sqlglot import exp

from sqlorch.planning.steps import Choice, Item, Statement, Step

# While the background thread builds, the thread running statements must get the GIL back
# as soon as its statement returns: Python's default switch interval (5 ms) would let a
# busy builder hold it for several statements' time.
SWITCH_INTERVAL = 0.0005


class StatementPrefetch:
    def __init__(self, pool: ThreadPoolExecutor, render: Callable[[exp.Expr], str]) -> None:
        self.pool = pool
        self.render = render
        self.pending: dict[int, Future[None]] = {}
        self.texts: dict[int, str] = {}  # by id() of a ``Statement`` of the plan, alive all build long

    def ahead(self, steps: list[Step]) -> None:
        """Build and render the statements of ``steps``, in their order."""
        for step in steps:
            self.pending[id(step)] = self.pool.submit(self._build, step.statements)

    def ready(self, step: Step) -> None:
        """Wait until ``step``'s building is done. A builder's error is not raised here: the
        executor builds that branch again when it reads it, and fails the step as it would have."""
        future = self.pending.pop(id(step), None)
        if future is not None:
            future.exception()

    def text(self, item: Statement) -> str | None:
        """The statement's text, if rendered ahead."""
        return self.texts.pop(id(item), None)

    def _build(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Choice):
                self._build(item.branches[item.expected].statements)
            elif (
                isinstance(item, Statement)
                and item.kind == "execute"
                and item.sql is not None
                and not item.grouped  # in a group, its row or the group's statements run instead
                and not item.placeholders
            ):
                self.texts[id(item)] = self.render(item.sql)


@contextmanager
def statement_prefetch(render: Callable[[exp.Expr], str]) -> Iterator[StatementPrefetch]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlorch-prefetch")
    try:
        yield StatementPrefetch(pool, render)
    finally:
        pool.shutdown(cancel_futures=True)  # a stopped build builds no more
        sys.setswitchinterval(previous)
