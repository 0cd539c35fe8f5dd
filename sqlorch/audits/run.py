"""Running a model's audits against a subject and deciding whether the write may go on.

Each audit is one ``count(*)`` over its bad rows; only a failing audit reads a sample.
A failing blocking audit raises ``AuditFailed`` before the write commits, so the
published table, its change log and its watermarks stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.audits.calls import AuditCall
from sqlorch.audits.declared import DeclaredAudits
from sqlorch.audits.subject import Subject
from sqlorch.errors import SqlorchError
from sqlorch.refs import TableRef

MODES = ("off", "warn", "on")
SAMPLE_ROWS = 10


@dataclass
class AuditResult:
    name: str  # the call as written
    model: str
    status: str  # "pass" | "fail" (blocked the write) | "warn" (failed, did not block)
    blocking: bool
    bad_rows: int
    sample: list[list[Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"audit {self.name} on {self.model}: {self.bad_rows} bad row(s)"
        if self.sample:
            names = self.columns or [""] * len(self.sample[0])
            shown = "; ".join(
                ", ".join(f"{c}={v!r}" if c else repr(v) for c, v in zip(names, row, strict=False))
                for row in self.sample
            )
            text += f", e.g. {shown}"
        return text


class AuditFailed(SqlorchError):
    """A blocking audit found bad rows: nothing of the step was published."""

    def __init__(self, results: list[AuditResult], where: str) -> None:
        self.results = results
        failed = [r for r in results if r.status == "fail"]
        super().__init__(
            "; ".join(r.describe() for r in failed),
            hint=f"{where}; fix the data (or the audit) and build again: the change stays pending",
        )


def _sample_columns(query: exp.Select) -> list[str]:
    """Names for the sample's values; none where the audit selects ``*`` (custom audits)."""
    if any(isinstance(s, exp.Star) for s in query.selects):
        return []
    return [s.alias_or_name for s in query.selects]


@dataclass
class ModelAudits:
    """The audits of one model in one build, and their results so far."""

    model: str
    calls: list[AuditCall]
    declared: DeclaredAudits
    relation_of: Callable[[exp.Table], TableRef]
    results: list[AuditResult] = field(default_factory=list)
    notify: Callable[[AuditResult], None] | None = None  # each result as soon as it is known
    inherited: list[AuditResult] = field(default_factory=list)  # results of its sources' audits

    def check(self, adapter: Adapter, rows: TableRef, columns: list[str], rest: exp.Select | None, where: str) -> None:
        """Run every audit over ``rows`` (and ``rest``); raise ``AuditFailed`` if a blocking one fails."""
        subject = Subject(rows, columns, self.relation_of, rest)
        results = []
        for call in self.calls:
            bad = self.declared.query(call, subject)
            count = int(adapter.fetch(exp.select(exp.func("count", exp.Star())).from_(bad.subquery("bad")))[0][0])
            sample: list[list[Any]] = []
            if count:
                sample = [list(row) for row in adapter.fetch(bad.limit(SAMPLE_ROWS))]
            status = "pass" if not count else "fail" if call.blocking else "warn"
            results.append(
                AuditResult(call.text, self.model, status, call.blocking, count, sample, _sample_columns(bad))
            )
            if self.notify is not None:
                self.notify(results[-1])
        self.results = [*self.inherited, *results]
        if any(r.status == "fail" for r in results):
            raise AuditFailed(self.results, where)


def model_audits(
    calls: list[AuditCall] | None,
    name: str,
    mode: str,
    declared: DeclaredAudits,
    relation_of: Callable[[exp.Table], TableRef],
    notify: Callable[[AuditResult], None] | None = None,
) -> ModelAudits | None:
    """The audits to run for one model or source under ``--audits mode`` (``warn``: none blocks)."""
    if mode == "off" or not calls:
        return None
    if mode == "warn":
        calls = [AuditCall(c.name, c.args, c.kwargs, False, c.text, c.path, c.line, c.col) for c in calls]
    return ModelAudits(name, calls, declared, relation_of, notify=notify)


def explain_audits(
    audits: ModelAudits | None, rows: TableRef, columns: list[str], dialect: str
) -> list[tuple[str, str]]:
    """``plan --explain``'s view of the audits: each bad-row query over the rows about to be
    published (an incremental step also checks ``unique`` and ``row_count`` against the
    stored rows it keeps)."""
    if audits is None:
        return []
    subject = Subject(rows, columns, audits.relation_of)
    return [
        (
            f"audit {call.text} ({'blocks' if call.blocking else 'warns'}), before the write commits: its bad rows",
            audits.declared.query(call, subject).sql(dialect=dialect, pretty=True),
        )
        for call in audits.calls
    ]
