"""Does ``build`` run what ``plan`` said? Plan, then build, at every step of several histories,
on DuckDB and on each local stand-in (the issue 10 target: 100% the same action and strategy).

    python bench/plan_vs_build.py [--targets duckdb postgres snowflake bigquery] [--json OUT]

Histories, each a plan before every build, compared model by model:

- ``demo``: the demo project (models/ + seeds/) on every target: first build, an order
  appended to the seed CSV, an order's amount changed, an order removed.
- ``schema-events``: the adapter suite's random history of data changes with a source
  schema event per step (tests/adapters/test_schema_event_histories.py), on every target.
- ``differential``: the DuckDB differential corpus (tests/differential) over its three
  seeded histories.

A model counts as ``same`` when the build ran the action and strategy the plan showed; as
``branch`` when the plan held a choice (``Choice``: its outcome depends on what an upstream
step writes) and the build ran another of the plan's branches, chosen by its rule and
recorded in run_results.json; as ``differs`` otherwise (a failure of the target). The
stand-ins need ``bash tests/standins/setup.sh`` (``scripts/test`` runs it).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "differential")]

from sqlorch import api  # noqa: E402
from sqlorch.planning.steps import Choice, Plan  # noqa: E402

TARGETS = ["duckdb", "postgres", "snowflake", "bigquery"]


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (target, history, verdict)
        self.notes: list[str] = []

    def compare(self, target: str, history: str, step: int, plan: Plan, result: Any) -> None:
        planned = {str(s.ref): s for s in plan.steps}
        for ran in result.results:
            step_plan = planned.get(ran.model)
            if step_plan is None:
                continue
            if (step_plan.action, step_plan.strategy) == (ran.action, ran.strategy):
                verdict = "same"
            elif any(
                (branch.action, branch.strategy) == (ran.action, ran.strategy)
                for item in step_plan.statements
                if isinstance(item, Choice)
                for branch in item.branches
            ):
                verdict = "branch"
                self.notes.append(f"{target} {history} step {step} {ran.model}: branch {ran.branch}")
            else:
                verdict = "differs"
                self.notes.append(
                    f"{target} {history} step {step} {ran.model}: plan {step_plan.action}/{step_plan.strategy}, "
                    f"build {ran.action}/{ran.strategy}: {ran.reason}"
                )
            self.counts[(target, history, verdict)] += 1


def plan_then_build(tally: Tally, target: str, history: str, step: int, options: api.Options) -> None:
    plan = api.plan(options)
    result = api.build(options)
    failed = [f"{r.model}: {r.error}" for r in result.results if r.status == "error"]
    if failed:
        raise SystemExit(f"{target} {history} step {step}: build failed: {failed}")
    tally.compare(target, history, step, plan, result)


@contextmanager
def warehouse_of(kind: str, folder: Path) -> Iterator[Any]:
    """One isolated target, as the adapter suite makes them (its server started here)."""
    from tests.adapters import conftest

    server = None
    if kind != "duckdb":
        from standins import servers

        server = {"postgres": servers.start_postgres, "snowflake": servers.start_snowflake}.get(
            kind, servers.start_bigquery
        )()
    try:
        warehouse = conftest.Warehouse(kind, conftest._settings(kind, server, folder), folder / "profiles")
        warehouse.write_profiles()
        yield warehouse
        warehouse.close_all()
    finally:
        if server is not None:
            server.stop()


def demo(tally: Tally, kind: str, warehouse: Any, folder: Path) -> None:
    project = folder / "demo"
    shutil.copytree(REPO / "models", project / "models")
    shutil.copytree(REPO / "seeds", project / "seeds")
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir)
    orders = project / "seeds" / "orders.csv"
    edits: list[Callable[[str], str]] = [
        lambda text: text,
        lambda text: text + "1011,4,2024-03-06,completed,55.00\n",
        lambda text: text.replace("1002,2,2024-03-01,completed,80.00", "1002,2,2024-03-01,completed,81.00"),
        lambda text: "".join(line for line in text.splitlines(keepends=True) if not line.startswith("1003,")),
    ]
    for step, edit in enumerate(edits):
        orders.write_text(edit(orders.read_text()))
        plan_then_build(tally, kind, "demo", step, options)


def schema_events(tally: Tally, kind: str, warehouse: Any, folder: Path) -> None:
    from tests.adapters import test_schema_event_histories as events
    from tests.conftest import write_files

    project = write_files(folder / "history", events.PROJECT)
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir)
    history = events.SchemaHistory(warehouse.connect(), seed=7)
    history.create()
    names = events.EVENTS_OF[kind]
    for step, event in enumerate(["create", *random.Random(7).sample(names, len(names))]):
        if step:
            history.adapter = warehouse.connect()
            history.step(event)
        warehouse.close_all()  # DuckDB: plan opens the file read-only, alone
        plan_then_build(tally, kind, "schema-events", step, options)


def differential(tally: Tally, folder: Path) -> None:
    from _harness import SCHEMA_EVENTS, History, make_project

    for index, seed in enumerate((11, 22, 33)):  # the suite's seeds, with its schema events at steps 2 and 4
        schema_event = {2: SCHEMA_EVENTS[2 * index], 4: SCHEMA_EVENTS[2 * index + 1]}
        project = make_project(folder / f"seed{seed}")
        history = History(project / "warehouse.duckdb", random.Random(seed))
        history.create()
        options = api.Options(project_dir=project, threads=2)
        for step in range(7):
            if step:
                history.log.clear()
                if step in schema_event:
                    history.schema_event(schema_event[step])
                history.step()
            plan_then_build(tally, "duckdb", "differential", step, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=TARGETS)
    parser.add_argument("--json", type=Path, help="write the counts here too")
    args = parser.parse_args()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="sqlorch-plan-vs-build-") as tmp:
        for kind in args.targets:
            for name, history in (("demo", demo), ("schema-events", schema_events)):
                folder = Path(tmp) / kind / name
                folder.mkdir(parents=True)
                with warehouse_of(kind, folder) as warehouse:
                    history(tally, kind, warehouse, folder)
                print_counts(tally, kind, name)
        if "duckdb" in args.targets:
            differential(tally, Path(tmp) / "differential")
            print_counts(tally, "duckdb", "differential")
    for note in tally.notes:
        print(f"  {note}")
    total = Counter(verdict for (_, _, verdict) in tally.counts.elements())
    models = sum(total.values())
    print(
        f"all: {models} model steps; same {total['same']}, another planned branch {total['branch']}, "
        f"differs {total['differs']}: action and strategy as planned (a branch the plan held) "
        f"{(total['same'] + total['branch']) / models:.1%}"
    )
    if args.json:
        rows = [{"target": t, "history": h, "verdict": v, "models": n} for (t, h, v), n in sorted(tally.counts.items())]
        args.json.write_text(json.dumps({"counts": rows, "notes": tally.notes}, indent=2))
    if total["differs"]:
        raise SystemExit(1)


def print_counts(tally: Tally, kind: str, history: str) -> None:
    counts = {v: n for (t, h, v), n in tally.counts.items() if (t, h) == (kind, history)}
    print(f"{kind:9} {history:14} " + ", ".join(f"{v} {counts.get(v, 0)}" for v in ("same", "branch", "differs")))


if __name__ == "__main__":
    main()
