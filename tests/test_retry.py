"""Retries of a step that fails with a transient error (execution/retry.py): the backoff
schedule on an injected random draw, and ``retry_step`` against real DuckDB errors (a
write-write conflict between two connections is DuckDB's transient error), with the
pauses recorded instead of slept. A dropped Postgres connection, end to end:
tests/adapters/test_retry_postgres.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.config import Target
from sqlorch.errors import SqlorchError
from sqlorch.execution.retry import RetryPolicy, retry_step


def test_the_pause_doubles_up_to_the_cap_with_equal_jitter() -> None:
    policy = RetryPolicy(attempts=8, base=1.0, cap=8.0)
    low = [policy.delay(attempt, lambda: 0.0) for attempt in range(1, 7)]
    high = [policy.delay(attempt, lambda: 0.999999) for attempt in range(1, 7)]
    assert low == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [round(d, 3) for d in high] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.delay(3, lambda: 0.5) == 3.0  # 4 s ceiling, three quarters of it


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[Adapter]:
    adapter = connect(Target("dev", "duckdb", {"path": str(tmp_path / "warehouse.duckdb")}, None))
    adapter.execute(exp.Create(this=exp.to_table("t"), kind="TABLE", expression=exp.select("1 AS a")))
    yield adapter
    adapter.close()


class Conflicting:
    """A step that updates a row another connection holds uncommitted for its first
    ``times`` tries: a real ``TransactionContext Error: Conflict on update``."""

    def __init__(self, adapter: Adapter, times: int) -> None:
        self.adapter, self.other, self.times, self.tries = adapter, adapter.fork(), times, 0

    def __call__(self) -> int:
        self.tries += 1
        if self.tries <= self.times:
            self.other.execute(exp.Command(this="BEGIN"))
            self.other.execute(exp.update("t", {"a": exp.Literal.number(2)}))
        try:
            return self.adapter.execute(exp.update("t", {"a": exp.Literal.number(self.tries * 10)})) or 0
        finally:
            if self.tries <= self.times:
                self.other.execute(exp.Command(this="ROLLBACK"))


def value(adapter: Adapter) -> int:
    return int(adapter.fetch(exp.select("a").from_("t"))[0][0])


def test_a_transient_error_is_retried_after_the_backoff(adapter: Adapter) -> None:
    step, pauses = Conflicting(adapter, times=2), []
    policy = RetryPolicy(attempts=3, base=2.0)
    retry_step(step, adapter, policy, "m", lambda: False, draw=lambda: 0.0, wait=lambda s: pauses.append(s) or False)
    assert step.tries == 3
    assert pauses == [1.0, 2.0]
    assert value(adapter) == 30  # the third try's write, once


def test_the_last_try_fails_with_the_error(adapter: Adapter) -> None:
    step, pauses = Conflicting(adapter, times=5), []
    with pytest.raises(SqlorchError, match="Conflict"):
        retry_step(step, adapter, RetryPolicy(attempts=3), "m", lambda: False, wait=lambda s: pauses.append(s) or False)
    assert step.tries == 3 and len(pauses) == 2
    assert value(adapter) == 1


def test_a_permanent_error_is_not_retried(adapter: Adapter) -> None:
    tries = []

    def step() -> None:
        tries.append(1)
        adapter.execute(exp.update("t", {"a": exp.column("no_such_column")}))

    with pytest.raises(SqlorchError, match="no_such_column"):
        retry_step(step, adapter, RetryPolicy(attempts=3), "m", lambda: False, wait=lambda s: False)
    assert len(tries) == 1


def test_a_stopped_build_is_not_retried(adapter: Adapter) -> None:
    step = Conflicting(adapter, times=1)
    with pytest.raises(SqlorchError, match="Conflict"):
        retry_step(step, adapter, RetryPolicy(attempts=3), "m", lambda: False, wait=lambda s: True)
    assert step.tries == 1


def test_a_step_that_committed_is_not_run_twice(adapter: Adapter) -> None:
    step = Conflicting(adapter, times=1)
    with pytest.raises(SqlorchError, match="after m committed, so it is not run again"):
        retry_step(step, adapter, RetryPolicy(attempts=3), "m", lambda: True, wait=lambda s: False)
    assert step.tries == 1


def test_out_of_memory_is_tried_once_more_with_less_parallelism(adapter: Adapter) -> None:
    """Not transient (no backoff, no third try), but DuckDB can need less: one thread, no
    insertion order kept; the step is tried once more at once with that, then fails."""
    adapter.execute(sqlglot.parse_one("SET memory_limit = '20MB'", read="duckdb"))
    adapter.execute(sqlglot.parse_one("SET threads = 2", read="duckdb"))
    tries, pauses = [], []

    def step() -> None:
        tries.append(1)
        adapter.execute(sqlglot.parse_one("CREATE TABLE big AS SELECT list(range) AS l FROM range(10000000)"))

    with pytest.raises(SqlorchError, match="Out of Memory"):
        retry_step(step, adapter, RetryPolicy(attempts=3), "m", lambda: False, wait=lambda s: pauses.append(s) or False)
    assert len(tries) == 2 and pauses == []
    setting = "SELECT current_setting('threads'), current_setting('preserve_insertion_order')"
    assert adapter.fetch(sqlglot.parse_one(setting)) == [(1, False)]
