"""Rendering of plans and build progress; imported only by cli.py.

On a terminal (or with ``FORCE_COLOR`` / ``TTY_COMPATIBLE=1``, as rich decides) output goes
through rich, in colour. Anywhere else (CI logs, pipes, files) rich would write the same
words without styles, so lines are written as plain text instead, without loading rich at
all (~40 ms of a no-op build). Text that wraps (a plan) is laid out here for
``terminal_width()``, not by rich, so it is the same styled or plain.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from sqlorch.analysis.lineage_graph import Impact, LineageResult
from sqlorch.audits.run import AuditResult
from sqlorch.execution.results import ModelResult, RunResult
from sqlorch.planning.chunks import planned_chunks
from sqlorch.planning.steps import INSERT_ONLY, KeptState, Plan, Step

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from sqlorch.refs import TableRef
    from sqlorch.unittests.runner import UnitTestResult

ACTION_STYLE = {"skip": "dim", "incremental": "green", "full": "yellow", "error": "red", "skipped": "dim"}
STATUS_STYLE = {"success": "green", "error": "red", "skipped": "dim"}
AUDIT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


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

            self._rich = Console(stderr=self.stderr, highlight=False)  # width: COLUMNS, else the terminal's
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


PLAN_GAP = "  "
PLAN_INDENT = "    "  # a step's reason, under its row
_QUIET = ("skip", "skipped")  # nothing runs: the reason fits where the strategy would be


def terminal_width() -> int:
    """``COLUMNS`` when set (piped output included), else the terminal's width, else 80."""
    return shutil.get_terminal_size((80, 24)).columns


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text`` wrapped to ``width`` columns, the first line after ``first``, the others after
    ``rest``; a word longer than a line (a long name) is broken rather than overflowing."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False) or [
        first.rstrip()
    ]


def _rows(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def plan_lines(plan: Plan, width: int) -> list[list[str | tuple[str, str]]]:
    """The plan as lines of at most ``width`` columns (each line a list of text parts, plain
    or ``(text, style)``): a row per step (model, action, strategy, estimated changed rows)
    and the step's reason under it; a skip's reason takes the place of the strategy. The key
    has a line of its own under the reason of an incremental step that works by key (never
    inside the reason), and so have the cost model's two estimates where it compared them
    (the winner first); the input rows, the depends-on list and the statements are in
    ``plan --json`` and ``plan --explain``.

    A model name longer than its column is never cut (it is what ``--explain`` takes): it
    gets a line of its own and its row continues on the next. An error's reason is one line
    whatever its length, so its ``path:line:col`` stays whole for editors and terminals."""
    runs = [step for step in plan.steps if step.action not in _QUIET]
    action_w = max((len(step.action) for step in plan.steps), default=0)
    strategy_w = max((len(step.strategy) for step in runs), default=0)
    rows_w = max((len(_rows(step.estimated_changed_rows)) for step in runs), default=0)
    action_w, strategy_w, rows_w = max(action_w, 6), max(strategy_w, 8), max(rows_w, 7)  # the headers
    longest = max((len(str(step.ref)) for step in plan.steps), default=0)
    model_w = max(5, min(longest, width - action_w - strategy_w - rows_w - 3 * len(PLAN_GAP)))
    gap = PLAN_GAP

    def row(model: str, action: str, style: str, strategy: str = "", rows: str = "") -> list[str | tuple[str, str]]:
        """Padded cells; a row without strategy and rows ends after the action."""
        tail = f"{gap}{strategy.ljust(strategy_w)}{gap}{rows.rjust(rows_w)}" if strategy or rows else ""
        return [f"{model.ljust(model_w)}{gap}", (action.ljust(action_w), style), tail.rstrip()]

    lines: list[list[str | tuple[str, str]]] = [
        [("".join(map(_plain, row("model", "action", "", "strategy", "changed"))), "bold")]
    ]
    aside = " " * (model_w + len(gap) + action_w + len(gap))  # where a skip's reason goes
    for step in plan.steps:
        name, style = str(step.ref), ACTION_STYLE.get(step.action, "")
        if len(name) > model_w:  # never cut: the name goes on a line of its own
            lines += [[part] for part in _wrap(name, width, "", "")]
            name = ""
        if step.action in _QUIET:
            first, *more = _wrap(step.reason, width, aside, aside)
            lines.append([*row(name, step.action, style), gap, (first.lstrip(), "dim")])
            lines += [[(line, "dim")] for line in more]
            continue
        lines.append(row(name, step.action, style, step.strategy, _rows(step.estimated_changed_rows)))
        if step.action == "error":
            lines.append([PLAN_INDENT, (step.reason, "red")])
            continue
        details = [step.reason]
        if step.key and step.action == "incremental" and step.strategy != INSERT_ONLY:  # the key decides the work
            details.append(f"key: {', '.join(step.key)}")
        chunks = planned_chunks(step.statements) if step.action == "incremental" else None
        if chunks is not None:  # a change over max_batch_rows (planning/chunks.py)
            estimate = chunks.count(step.estimated_changed_rows or 0)
            details.append(f"in chunks of keys: {estimate} estimated, of {chunks.rows_per_chunk} changed rows each")
        if step.cost_incremental is not None and step.cost_full is not None:  # the cost model compared both
            details.append(f"cost: {_costs(step.cost_incremental, step.cost_full, step.cost_winner)}")
        if step.kept_state is not None and step.action == "incremental":
            details.append(f"state: {_kept(step.kept_state)}")
            details += [f"state: {_kept(replace(step.kept_state, table=t, rows=n))}" for t, n in step.kept_state.more]
            details += [
                f"DISTINCT values: {_kept_values(t, n, step.kept_state.current)}" for t, n in step.kept_state.values
            ]
        lines += [[(line, "dim")] for text in details for line in _wrap(text, width, PLAN_INDENT, PLAN_INDENT)]
    counts: dict[str, int] = {}
    for step in plan.steps:
        counts[step.action] = counts.get(step.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    lines.append([])
    lines += [[line] for line in _wrap(f"plan: {summary}", width, "", "  ")]
    return lines


def _kept(state: KeptState) -> str:
    if state.rows is None:
        return f"{state.table}, built by this step from the inputs"
    groups = f"{state.table}, {state.rows:,} {state.unit}{'s' if state.rows != 1 else ''}"
    return groups if state.current else f"{groups}, out of date: rebuilt from the inputs"


def _kept_values(table: str, rows: int | None, current: bool) -> str:
    if rows is None:
        return f"{table}, built by this step from the inputs"
    pairs = f"{table}, {rows:,} (group, value) pair{'s' if rows != 1 else ''}"
    return pairs if current else f"{pairs}, out of date: rebuilt from the inputs"


def _costs(incremental: float, full: float, winner: str) -> str:
    """The cost model's two estimates, the winner first: ``incremental 0.01 s < full 0.2 s``."""
    costs = [("incremental", incremental), ("full", full)]
    if winner == "full":
        costs.reverse()
    (first, first_s), (second, second_s) = costs
    relation = "<" if first_s < second_s else "=" if first_s == second_s else ">"  # ">": not chosen by cost
    return f"{first} {first_s:.2g} s {relation} {second} {second_s:.2g} s"


def _plain(part: str | tuple[str, str]) -> str:
    return part if isinstance(part, str) else part[0]


def source_lines(plan: Plan, width: int) -> list[list[str | tuple[str, str]]]:
    """The sources whose capture will record something, before the models: the change the
    build will record (predicted read-only), its change-log rows, and why under it."""
    changed = [source for source in plan.sources if source.change != "none"]
    if not changed:
        return []
    name_w = max(len("source"), *(len(source.source) for source in changed))
    lines: list[list[str | tuple[str, str]]] = [[(f"{'source'.ljust(name_w)}{PLAN_GAP}change{PLAN_GAP}rows", "bold")]]
    for source in changed:
        rows = "-" if source.change in ("full", "missing") else _rows(source.rows)
        lines.append([f"{source.source.ljust(name_w)}{PLAN_GAP}{source.change.ljust(6)}{PLAN_GAP}{rows}"])
        lines += [[(line, "dim")] for line in _wrap(source.reason, width, PLAN_INDENT, PLAN_INDENT) if source.reason]
    return [*lines, []]


def render_plan(plan: Plan) -> None:
    width = terminal_width()
    for parts in [*source_lines(plan, width), *plan_lines(plan, width)]:
        console.line(*parts)


def result_parts(item: ModelResult) -> list[str | tuple[str, str]]:
    """One finished model: status, action, name, rows written, seconds, reason."""
    rows = "-" if item.rows is None else str(item.rows)
    return [
        (f"{item.status:<8}", STATUS_STYLE.get(item.status, "")),
        " ",
        (f"{item.action:<11}", ACTION_STYLE.get(item.action, "")),
        f" {item.model:<32} rows={rows:<7} {item.seconds:5.2f}s ",
        (item.reason, "dim"),
    ]


def counter(done: int, total: int) -> str:
    """``[ 3/40]``: models finished of those selected, padded so the lines align."""
    return f"[{done:>{len(str(total))}}/{total}]"


SHOWN_RUNNING = 3  # names on the live line; past it, "and N more"


def activity(capturing: str | None, running: list[str], done: int, total: int) -> str:
    """What the build is doing now, for the live line under the finished models."""
    if capturing is not None:
        return f"capturing {capturing}…"
    if not running:
        return "preparing…" if done == 0 else f"{counter(done, total)} finishing…"
    if len(running) > SHOWN_RUNNING:  # a transaction group runs up to 100 models at once
        names = f"{', '.join(running[: SHOWN_RUNNING - 1])} and {len(running) - SHOWN_RUNNING + 1} more"
    else:
        names = ", ".join(running)
    return f"{counter(done, total)} {names}…"


class BuildProgress:
    """A build's output, as its listener. Everywhere a line per finished model and per
    audit. On a terminal each of those lines starts with the count of finished models
    (``[12/40]``), and a live line under them says what runs now (``capturing raw.orders…``,
    the models running) and the time since the build started; it disappears when the build
    ends. Elsewhere (pipes, CI logs, tests) the lines are plain and the same as ever.

    Called from the build's worker threads: the counts are kept under a lock."""

    def __init__(self, total: Callable[[], int]) -> None:
        self.total = total  # the number of selected nodes, known once the project is loaded
        self.live = _styled(sys.stdout)
        self.lock = threading.Lock()
        self.done = 0
        self.running: list[str] = []
        self.capturing: str | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BuildProgress:
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.table import Column

            self._bar = Progress(
                SpinnerColumn(),
                TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=console.rich,
                transient=True,
            )
            self._task = self._bar.add_task("preparing…", total=None)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live line (idempotent: also called just before a forced exit)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _show(self) -> None:
        if self._bar is not None and self._task is not None:
            text = activity(self.capturing, self.running, self.done, self.total())
            self._bar.update(self._task, description=text, refresh=True)

    def source(self, ref: TableRef) -> None:
        """Called before each source's capture."""
        with self.lock:
            self.capturing = str(ref)
            self._show()

    def __call__(self, event: str, item: ModelResult | Step | AuditResult) -> None:
        if event == "audit" and isinstance(item, AuditResult):
            status = (f"{item.status:<5}", AUDIT_STYLE.get(item.status, ""))
            console.line(("audit   ", "bold"), status, f" {item.model}: {item.name}")
            return
        with self.lock:
            self.capturing = None
            if event == "start" and isinstance(item, Step):
                self.running.append(str(item.ref))
            elif event == "done" and isinstance(item, ModelResult):
                self.done += 1
                if item.model in self.running:
                    self.running.remove(item.model)
                parts = result_parts(item)
                if self.live:
                    parts = [(counter(self.done, self.total()) + " ", "bold"), *parts]
                console.line(*parts)
                if item.error:
                    errors.line((item.error, "red"))
            self._show()


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
        width = terminal_width()
        console.line()
        head = f"{impact.model} changed: {len(impact.columns)} downstream columns in {len(by_model)} models may change"
        first, *more = _wrap(head, width, "", "  ")
        console.line((first[: len(impact.model)], "bold"), first[len(impact.model) :])
        for line in more:
            console.line(line)
        for model, columns in by_model.items():
            prefix = f"  {model}: "
            first, *more = _wrap(prefix + ", ".join(columns), width, "", "    ")
            console.line(first[: len(prefix)], (first[len(prefix) :], "dim"))
            for line in more:
                console.line((line, "dim"))
