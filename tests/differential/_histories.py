"""Random histories over a copy of a corpus, built by sqlorch: what the differential tests
of one strategy (kept groups, signed deltas, window tails) share. Before each build, ``plan``
says what will run; after it, every model is compared with its SQL evaluated from scratch
(``_harness.check_exact``, which never touches sqlorch)."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from _harness import History, check_exact

from sqlorch import api
from sqlorch.api import Options
from sqlorch.execution.results import ModelResult


def corpus_histories(
    corpus: Path,
    seed: int,
    tmp: Path,
    steps: int,
    rebuild_when_cheaper: bool = True,
    more_changes: Callable[[History, int], None] | None = None,
    after_build: Callable[[int, list[ModelResult]], list[str]] | None = None,
) -> tuple[list[str], dict[str, set[str]]]:
    """``steps`` random changes (``History.step``, then ``more_changes(history, step)``) after
    a first build. Returns the problems (a failed model, a build unlike its plan, a model
    unlike its SQL from scratch, what ``after_build(step, results)`` finds) and the
    strategies each model ran."""
    project = tmp / "project"
    shutil.copytree(corpus, project)
    db = project / "warehouse.duckdb"
    history = History(db, random.Random(seed))
    history.create()
    options = Options(project_dir=project, rebuild_when_cheaper=rebuild_when_cheaper)
    problems: list[str] = []
    strategies: dict[str, set[str]] = defaultdict(set)
    for step in range(steps + 1):
        if step:
            history.log.clear()
            history.step()
            if more_changes is not None:
                more_changes(history, step)
        planned = {str(s.ref): (s.action, s.strategy) for s in api.plan(options).steps}
        results = api.build(options).results
        for r in results:
            strategies[r.model].add(r.strategy)
            if r.status == "error":
                problems.append(f"step {step} {r.model}: {r.error}")
            elif planned.get(r.model) != (r.action, r.strategy):
                problems.append(f"step {step} {r.model}: planned {planned.get(r.model)}, ran {(r.action, r.strategy)}")
        problems += [f"seed {seed} step {step} changes {history.log}\n{m}" for m in check_exact(db, project)]
        problems += after_build(step, results) if after_build is not None else []
    return problems, strategies
