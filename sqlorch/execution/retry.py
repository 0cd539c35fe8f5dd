"""A step that fails with a transient error is run again, after a pause that doubles.

Running a step again is exact only where its failure left nothing behind: the adapter
classifies the error (``Adapter.is_transient``), and the step is retried only where its
writes and its bookkeeping (batch, watermarks) commit together (``capabilities.
transactions``: DuckDB, Postgres, Snowflake; DDL that Snowflake commits early only
rebuilds a table or a scratch table, which the retry rebuilds again). BigQuery runs each
statement on its own, so a step that failed part way is left to the next build, which
its write order makes exact; its client retries each request itself.

A connection that drops while COMMIT is on its way leaves the outcome unknown. Before a
retry, the step's batch is looked up: if it was recorded, the step committed, and it is
not run twice: it is reported as failed (its descendants wait for the next build, which
goes on from the committed state).

Out of memory is not transient (the same try fails the same way), but an adapter may be
able to make the next try need less (``Adapter.relieve_memory``; DuckDB: one thread, no
insertion order kept): then the step is tried once more at once, before it fails, and a
step that replaces its keys in chunks runs that try in four times as many
(``on_memory``; ``planning/chunks.py``).

The pause before try ``n + 1`` is ``base * 2 ** (n - 1)`` seconds, capped, times a random
factor in [0.5, 1) ("equal jitter"): processes that failed together do not come back
together, and none comes back at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.errors import SqlorchError
from sqlorch.state.store import state_table

LOG = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries in all (sqlorch.yml ``retry_attempts``); 1: no retry
    base: float = 1.0  # seconds, before jitter, of the first pause
    cap: float = 60.0  # longest pause, before jitter

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after try ``attempt`` (1-based) failed; ``draw`` gives [0, 1)."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return ceiling * (0.5 + draw() / 2)


def retryable(adapter: Adapter, error: SqlorchError) -> bool:
    return adapter.capabilities.transactions and adapter.is_transient(error)


def batch_recorded(adapter: Adapter, relation: str, batch: int) -> bool:
    """Whether the step that writes ``batch`` of ``relation`` committed (its batch row exists)."""
    column = exp.column
    query = (
        exp.select(exp.func("count", exp.Star()))
        .from_(state_table("batches").to_table())
        .where(column("relation", quoted=True).eq(exp.Literal.string(relation)))
        .where(column("batch", quoted=True).eq(exp.Literal.number(batch)))
    )
    return int(adapter.fetch(query)[0][0]) > 0


def retry_step(
    run: Callable[[], T],
    adapter: Adapter,
    policy: RetryPolicy,
    name: str,
    committed: Callable[[], bool],
    draw: Callable[[], float] = random.random,
    wait: Callable[[float], bool] | None = None,
    on_memory: Callable[[], None] | None = None,
) -> T:
    """``run()``, tried up to ``policy.attempts`` times while it fails with a transient error.
    The pause is waited on the adapter's interrupts (``wait`` returns True when stopped), so
    a stopped build does not sleep it out; a stopped build is never retried. ``on_memory``
    is called before the try after an out-of-memory error (the step asks for less)."""
    wait = wait or adapter.interrupts.event.wait
    attempt = 1
    relieved = False
    while True:
        try:
            if attempt > 1:
                adapter.reconnect()
                if committed():
                    raise SqlorchError(
                        f"the connection dropped after {name} committed, so it is not run again",
                        hint="its descendants were skipped; the next build goes on from what it committed",
                    )
            return run()
        except SqlorchError as error:
            if not relieved and not adapter.interrupts.event.is_set() and adapter.relieve_memory(error):
                relieved = True  # out of memory: once more at once, asking for less (not a transient error)
                LOG.warning("%s: out of memory, trying once more asking for less: %s", name, error.message)
                if on_memory is not None:
                    on_memory()
                continue
            if attempt >= policy.attempts or adapter.interrupts.event.is_set() or not retryable(adapter, error):
                raise
            pause = policy.delay(attempt, draw)
            LOG.warning(
                "%s: transient error on try %d of %d, trying again in %.1f s: %s",
                name, attempt, policy.attempts, pause, error.message,
            )  # fmt: skip
            if wait(pause):
                raise
            attempt += 1
