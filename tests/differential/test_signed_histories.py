"""Differential tests of aggregates maintained from signed deltas (strategy ``fold signed
deltas``): random histories of inserts, updates and deletes (rows moving between groups, NULL
group keys, groups vanishing, FILTER/CASE, HAVING, a one-row aggregate, joins whose both sides
change), an incremental build after every step, every model compared with a from-scratch
evaluation of its SQL. Each model must have taken the strategy, so the path is exercised."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from _harness import History, model_files
from _histories import corpus_histories

from sqlorch.planning.steps import SIGNED_DELTAS

CORPUS = Path(__file__).parent / "signed_corpus"
STEPS = 6


def _group_emptied(history: History, step: int) -> None:
    """At step 3 a group emptied at once: every line of sku 'a' deleted."""
    if step == 3:
        with duckdb.connect(str(history.db)) as con:
            con.execute("DELETE FROM raw.items WHERE sku = 'a'")
        history.log.append("items delete sku a")


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_signed_histories_are_exact(seed: int, tmp_path: Path) -> None:
    problems, strategies = corpus_histories(CORPUS, seed, tmp_path, STEPS, more_changes=_group_emptied)
    assert not problems, "\n\n".join(problems)
    models = model_files(CORPUS)
    missing = sorted(m for m in models if SIGNED_DELTAS not in strategies[m])
    assert not missing, f"never maintained from signed deltas: {missing} ({dict(strategies)})"
