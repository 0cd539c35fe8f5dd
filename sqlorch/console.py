"""Rich rendering of plans and build progress; imported only by cli.py."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.planning.steps import Plan, Step

ACTION_STYLE = {"skip": "dim", "incremental": "green", "full": "yellow"}
STATUS_STYLE = {"success": "green", "error": "red", "skipped": "dim"}

import sys  # noqa: E402

_WIDTH = None if sys.stdout.isatty() else 160  # keep logs of CI runs on one line per model
console = Console(highlight=False, width=_WIDTH)
errors = Console(stderr=True, highlight=False, width=_WIDTH)


def render_plan(plan: Plan) -> None:
    table = Table(title="plan", show_lines=False)
    for column in ("model", "action", "strategy", "key", "changed rows", "input rows", "reason"):
        table.add_column(column)
    for step in plan.steps:
        style = ACTION_STYLE.get(step.action, "")
        table.add_row(
            str(step.ref),
            f"[{style}]{step.action}[/]",
            step.strategy,
            ", ".join(step.key) if step.key else "-",
            str(step.estimated_changed_rows if step.estimated_changed_rows is not None else "-"),
            str(step.estimated_full_rows if step.estimated_full_rows is not None else "-"),
            step.reason,
        )
    console.print(table)


def progress_listener(event: str, item: ModelResult | Step) -> None:
    if event != "done" or not isinstance(item, ModelResult):
        return
    style = STATUS_STYLE.get(item.status, "")
    action = ACTION_STYLE.get(item.action, "")
    rows = "-" if item.rows is None else str(item.rows)
    console.print(
        f"[{style}]{item.status:<8}[/] [{action}]{item.action:<11}[/] {item.model:<32} "
        f"rows={rows:<7} {item.seconds:5.2f}s [dim]{item.reason}[/]",
        overflow="fold",
    )
    if item.error:
        errors.print(f"[red]{item.error}[/]")


def render_summary(result: RunResult) -> None:
    counts: dict[str, int] = {}
    for item in result.results:
        counts[item.status] = counts.get(item.status, 0) + 1
    actions: dict[str, int] = {}
    for item in result.results:
        if item.status == "success":
            actions[item.action] = actions.get(item.action, 0) + 1
    seconds = sum(item.seconds for item in result.results)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    detail = ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
    console.print(f"\n[bold]done[/]: {summary} ({detail}) in {seconds:.2f}s of model time")
