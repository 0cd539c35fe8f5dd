"""Differential test of models recomputed from kept groups (``rewrites/kept_aggregates.py``):
an aggregated CTE read joined and in a scalar subquery over it (TPC-H Q15's shape), a NULL
group key with MIN and HAVING, and a share of a total. Random histories of inserts, updates
and deletes (rows moving between groups, groups emptied, the maximum moving, source schema
changes); after each build every model equals a from-scratch evaluation of its SQL, and each
took the strategy (the cost model is off: on data this small it rebuilds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _harness import model_files
from _histories import corpus_histories

from sqlorch.planning.steps import KEPT_GROUPS

CORPUS = Path(__file__).parent / "kept_corpus"
STEPS = 6


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kept_group_histories_are_exact(seed: int, tmp_path: Path) -> None:
    problems, strategies = corpus_histories(CORPUS, seed, tmp_path, STEPS, rebuild_when_cheaper=False)
    assert not problems, "\n\n".join(problems)
    missing = sorted(m for m in model_files(CORPUS) if KEPT_GROUPS not in strategies[m])
    assert not missing, f"never recomputed from kept groups: {missing} ({dict(strategies)})"
