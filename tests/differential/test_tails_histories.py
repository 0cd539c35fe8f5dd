"""Differential test of window chains extended at their partitions' ends
(``rewrites/window_tails.py``): the events benchmark's sessions, a row_number chain with a
nullable group column, and a chain ordered by a key with ties. Random histories of events
appended (at partition ends and late), deleted, updated, moved to another user, given a NULL
user or timestamp; after each build every model equals a from-scratch evaluation of its SQL,
and each took the strategy (the cost model is off: on data this small it rebuilds)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from _harness import History, model_files
from _histories import corpus_histories

from sqlorch.planning.steps import WINDOW_TAILS

CORPUS = Path(__file__).parent / "tails_corpus"
STEPS = 6


def _events_changed(history: History, step: int) -> None:
    """Deletes, updates, moves and NULLs among the events (``History.step`` only appends them)."""
    rng = history.rng
    with duckdb.connect(str(history.db)) as con:
        ids = [r[0] for r in con.execute("SELECT event_id FROM raw.events").fetchall()]
        for eid in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
            kind = rng.choice(["delete", "amount", "move", "null user", "null ts", "later"])
            statement = {
                "delete": "DELETE FROM raw.events WHERE event_id = ?",
                "amount": "UPDATE raw.events SET amount = amount + 1 WHERE event_id = ?",
                "move": f"UPDATE raw.events SET user_id = {rng.randint(1, 25)} WHERE event_id = ?",
                "null user": "UPDATE raw.events SET user_id = NULL WHERE event_id = ?",
                "null ts": "UPDATE raw.events SET ts = NULL WHERE event_id = ?",
                "later": "UPDATE raw.events SET ts = ts + INTERVAL 40 DAY WHERE event_id = ?",
            }[kind]
            con.execute(statement, [eid])
            history.log.append(f"events {kind} {eid}")


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_window_tail_histories_are_exact(seed: int, tmp_path: Path) -> None:
    problems, strategies = corpus_histories(
        CORPUS, seed, tmp_path, STEPS, rebuild_when_cheaper=False, more_changes=_events_changed
    )
    assert not problems, "\n\n".join(problems)
    missing = sorted(m for m in model_files(CORPUS) if WINDOW_TAILS not in strategies[m])
    assert not missing, f"never extended at partition ends: {missing} ({dict(strategies)})"
