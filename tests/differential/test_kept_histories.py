"""Differential test of models recomputed from kept groups (``rewrites/kept_aggregates.py``):
an aggregated CTE read joined and in a scalar subquery over it (TPC-H Q15's shape), a NULL
group key with MIN and HAVING, and a share of a total. Random histories of inserts, updates
and deletes (rows moving between groups, groups emptied, the maximum moving, source schema
changes); after each build every model equals a from-scratch evaluation of its SQL, and each
took the strategy (the cost model is off: on data this small it rebuilds)."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from _harness import History, check_exact, model_files

from sqlorch import api
from sqlorch.api import Options
from sqlorch.planning.steps import KEPT_GROUPS

CORPUS = Path(__file__).parent / "kept_corpus"
STEPS = 6


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kept_group_histories_are_exact(seed: int, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(CORPUS, project)
    db = project / "warehouse.duckdb"
    history = History(db, random.Random(seed))
    history.create()
    options = Options(project_dir=project, rebuild_when_cheaper=False)
    problems: list[str] = []
    strategies: dict[str, set[str]] = defaultdict(set)
    for step in range(STEPS + 1):
        if step:
            history.log.clear()
            history.step()
        planned = {str(s.ref): (s.action, s.strategy) for s in api.plan(options).steps}
        for r in api.build(options).results:
            strategies[r.model].add(r.strategy)
            if r.status == "error":
                problems.append(f"step {step} {r.model}: {r.error}")
            elif planned.get(r.model) != (r.action, r.strategy):
                problems.append(f"step {step} {r.model}: planned {planned.get(r.model)}, ran {(r.action, r.strategy)}")
        problems += [f"seed {seed} step {step} changes {history.log}\n{m}" for m in check_exact(db, project)]
    assert not problems, "\n\n".join(problems)
    missing = sorted(m for m in model_files(CORPUS) if KEPT_GROUPS not in strategies[m])
    assert not missing, f"never recomputed from kept groups: {missing} ({dict(strategies)})"
