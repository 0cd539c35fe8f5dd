"""Rendering of plans and build progress; imported only by cli.py.

On a terminal (or with ``FORCE_COLOR`` / ``TTY_COMPATIBLE=1``, as rich decides) output goes
through rich, in colour. Anywhere else (CI logs, pipes, files) rich would write the same
words without styles, so a build's progress lines are written as plain text instead,
without loading rich at all (~40 ms of a no-op build). Plans and other output use rich.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from sqlorch.analysis.lineage_graph import Impact, LineageResult
from sqlorch.audits.run import AuditResult
from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.planning.steps import Plan, Step

if TYPE_CHECKING:
    from rich.console import Console

    from sqlorch.unittests.runner import UnitTestResult

ACTION_STYLE = {"skip": "dim", "incremental": "green", "full": "yellow", "error": "red", "skipped": "dim"}
STATUS_STYLE = {"success": "green", "error": "red", "skipped": "dim"}
AUDIT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}

_WIDTH = None if sys.stdout.isatty() else 160  # keep logs of CI runs on one line per model


def _styled(stream: TextIO) -> bool:
    """Whether rich would style output to ``stream`` (its ``Console.is_terminal`` rules)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False


class Output:
    """One output stream: a rich Console made on first use, or plain lines where rich
    would not style them."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._rich: Console | None = None

    @property
    def rich(self) -> Console:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(stderr=self.stderr, highlight=False, width=_WIDTH)
        return self._rich

    def print(self, *objects: Any, **options: Any) -> None:
        self.rich.print(*objects, **options)

    def print_exception(self, **options: Any) -> None:
        self.rich.print_exception(**options)

    def line(self, *parts: str | tuple[str, str]) -> None:
        """One line of text parts, each plain or ``(text, rich style)``; styles apply only
        where rich would style the stream."""
        stream = sys.stderr if self.stderr else sys.stdout
        if not _styled(stream):
            stream.write("".join(part if isinstance(part, str) else part[0] for part in parts) + "\n")
            return
        from rich.text import Text

        self.rich.print(Text.assemble(*parts), overflow="fold")


console = Output()
errors = Output(stderr=True)


def _costs(step: Step) -> str:
    """The cost model's two estimates (``planning/cost.py``), the cheaper one starred."""
    if step.cost_full is None:
        return "-"
    incremental = "-" if step.cost_incremental is None else f"{step.cost_incremental:.2g}"
    mark = {"incremental": ("*", ""), "full": ("", "*")}.get(step.cost_winner, ("", ""))
    return f"{incremental}{mark[0]}/{step.cost_full:.2g}{mark[1]}"


def render_plan(plan: Plan) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="plan", show_lines=False)
    for column in ("model", "action", "strategy", "key", "changed rows", "input rows", "cost s (inc/full)", "reason"):
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
            _costs(step),
            Text(step.reason),  # plain text: a reason may quote SQL or a path with brackets
        )
    console.print(table)


def progress_listener(event: str, item: ModelResult | Step | AuditResult) -> None:
    if event == "audit" and isinstance(item, AuditResult):
        console.line(
            ("audit   ", "bold"), (f"{item.status:<5}", AUDIT_STYLE.get(item.status, "")), f" {item.model}: {item.name}"
        )
        return
    if event != "done" or not isinstance(item, ModelResult):
        return
    rows = "-" if item.rows is None else str(item.rows)
    console.line(
        (f"{item.status:<8}", STATUS_STYLE.get(item.status, "")),
        " ",
        (f"{item.action:<11}", ACTION_STYLE.get(item.action, "")),
        f" {item.model:<32} rows={rows:<7} {item.seconds:5.2f}s ",
        (item.reason, "dim"),
    )
    if item.error:
        errors.line((item.error, "red"))


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
    console.line()
    _render_audits(result)
    detail = f" ({detail})" if detail else ""  # nothing succeeded: no actions to break down
    console.line(("done", "bold"), f": {summary}{detail} in {seconds:.2f}s of model time")


def _render_audits(result: RunResult) -> None:
    """Audits that did not pass, with their bad-row count and sample, then the tally."""
    # a source's audits are reported with every model reading it: show them once
    unique = {(audit["model"], audit["name"]): audit for item in result.results for audit in item.audits}
    audits = list(unique.values())
    if not audits:
        return
    for audit in audits:
        if audit["status"] == "pass":
            continue
        console.line(
            (f"audit {audit['status']}", AUDIT_STYLE[audit["status"]]),
            f" {audit['model']}: {audit['name']}: {audit['bad_rows']} bad row(s)",
        )
        if audit["sample"]:
            if audit["columns"]:
                console.line("  " + ", ".join(audit["columns"]))
            for row in audit["sample"]:
                console.line("  " + ", ".join("NULL" if value is None else str(value) for value in row))
    tally: dict[str, int] = {}
    for audit in audits:
        tally[audit["status"]] = tally.get(audit["status"], 0) + 1
    console.line(("audits", "bold"), ": " + ", ".join(f"{n} {status}" for status, n in sorted(tally.items())))


def render_unit_tests(results: list[UnitTestResult]) -> None:
    for result in results:
        style = "green" if result.status == "pass" else "red"
        after = f" (second build: {result.action})" if result.action else ""
        console.line((f"{result.status:<5}", style), f" {result.model}: {result.name}{after}")
        for line in result.lines:
            console.line("    ", (line, "red" if line.startswith(("-", "+")) else ""))
    passed = sum(result.status == "pass" for result in results)
    console.line()
    console.line(("done", "bold"), f": {passed} passed, {len(results) - passed} failed")


KIND_STYLE = {"passthrough": "green", "transformed": "cyan", "filter": "dim", "literal": "magenta"}


def render_lineage(result: LineageResult) -> None:
    """The column, then its direct inputs (or consumers) as a tree; a column met again is
    named with ``(above)`` rather than expanded twice. Then the columns at the ends."""
    graph, downstream = result.graph, result.downstream
    name = ".".join(result.column)
    console.line((name, "bold"), " ", (result.kind or "source column", KIND_STYLE.get(result.kind or "", "")))
    shown = {result.column}

    def branch(column: tuple[str, str], indent: str) -> None:
        edges = sorted(graph.direct(column, downstream), key=lambda e: (e[1] == "filter", e[0]))
        for i, (other, kind) in enumerate(edges):
            last = i == len(edges) - 1
            again = other in shown
            role = "" if graph.is_model(other[0]) else "  (source)"
            console.line(
                indent + ("└─ " if last else "├─ "),
                ".".join(other),
                "  ",
                (kind, KIND_STYLE.get(kind, "")),
                (role + ("  (above)" if again else ""), "dim"),
            )
            if not again:
                shown.add(other)
                branch(other, indent + ("   " if last else "│  "))

    branch(result.column, "")
    if not result.reached:
        console.line(("no downstream columns" if downstream else "no upstream columns", "dim"))
        return
    ends = [r for r in result.reached if not graph.direct(r.column, downstream)]
    title = "columns at the end of the lineage" if downstream else "source columns"
    console.line()
    console.line((f"{title} ({len(ends)}):", "bold"))
    for end in ends:
        console.line("  ", ".".join(end.column), "  ", (end.kind, KIND_STYLE.get(end.kind, "")))


def render_impact(impacts: list[Impact]) -> None:
    """After the plan: per model whose SQL changed, the downstream columns that may change."""
    for impact in impacts:
        by_model: dict[str, list[str]] = {}
        for reached in impact.columns:
            by_model.setdefault(reached.column[0], []).append(reached.column[1])
        console.line()
        console.line(
            (impact.model, "bold"),
            f" changed: {len(impact.columns)} downstream columns in {len(by_model)} models may change",
        )
        for model, columns in by_model.items():
            console.line(f"  {model}: ", (", ".join(columns), "dim"))
