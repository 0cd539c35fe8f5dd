"""Audits of sources, checked on the captured change before any model reads it.

What is audited is the source as it is now, restricted to the change its consumers have
not read yet: for a keyed source, its current rows whose key changed in a pending batch
(so a bad row fixed at the source passes on the next build, while the batch itself stays
pending); for an append-only source, the appended rows; for a source with no change
capture, all of it. ``unique`` and ``row_count`` also see the rows that did not change.
A failing blocking audit fails every model reading the source (they read nothing of the
batch, and their watermarks stay); its descendants are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.audits.declared import DeclaredAudits
from sqlorch.audits.hooks import stored_rest
from sqlorch.audits.run import AuditFailed, AuditResult, model_audits
from sqlorch.execution.statements import (
    changed_rows,
    create_table_as,
    drop_table,
    execute_create,
    select_from,
)
from sqlorch.planning.key_match import null_safe_match
from sqlorch.project.loader import Project
from sqlorch.refs import TableRef
from sqlorch.state.store import StateSnapshot, change_log, work_table


@dataclass
class SourceAudits:
    """Per source: its audit results in this build, and the failure if a blocking one failed."""

    results: dict[TableRef, list[AuditResult]] = field(default_factory=dict)
    failures: dict[TableRef, AuditFailed] = field(default_factory=dict)

    def for_inputs(self, inputs: set[TableRef]) -> list[AuditResult]:
        """The results a model reading ``inputs`` reports; raises if one of them failed."""
        for ref in sorted(inputs):
            if ref in self.failures:
                raise AuditFailed(self.failures[ref].results, f"no model read the change of {ref}")
        return [result for ref in sorted(inputs) for result in self.results.get(ref, [])]


def _pending_rows(
    ref: TableRef, key: list[str], columns: list[str], log_columns: list[str] | None, after: int, upto: int
) -> tuple[exp.Select, exp.Expr | None]:
    """(the source rows to audit, the match telling them apart from the rest)."""
    if log_columns is None:
        return select_from(ref, columns), None
    if not key:
        return changed_rows(change_log(ref), [c for c in columns if c in log_columns], after, upto), None
    changed = changed_rows(change_log(ref), key, after, upto).where(null_safe_match("c", ref.name, key))
    match = exp.Exists(this=changed)
    return select_from(ref, columns, ref.name).where(match), match


def audit_sources(
    adapter: Adapter,
    declared: DeclaredAudits,
    mode: str,
    project: Project,
    consumers: dict[TableRef, list[TableRef]],
    snapshot: StateSnapshot,
    relation_of: Callable[[exp.Table], TableRef],
) -> SourceAudits:
    """Audit each declared source that has a change pending for one of ``consumers[source]``."""
    outcome = SourceAudits()
    for ref, readers in sorted(consumers.items()):
        audits = model_audits(declared.sources.get(ref), str(ref), mode, declared, relation_of)
        pending = [snapshot.pending(str(reader), str(ref)) for reader in readers]
        ranges = [p for p in pending if p is not None]
        columns = list(adapter.columns(ref) or {})
        if audits is None or not ranges or not columns:
            continue
        after, upto = min(a for a, _ in ranges), max(u for _, u in ranges)
        spec = project.sources.get(ref)
        key = list(spec.unique_key) if spec is not None else []
        log = adapter.columns(change_log(ref))
        full = log is None or snapshot.has_full_batch(str(ref), after, upto)
        rows, match = _pending_rows(ref, key, columns, None if full else list(log or {}), after, upto)
        scratch = work_table(ref, "audit")
        execute_create(adapter, create_table_as(scratch, rows))
        try:
            # appended rows (no key): unique and row_count see the appended rows only
            rest = stored_rest(ref, columns, match) if match is not None else None
            audits.check(adapter, scratch, list(adapter.columns(scratch) or {}), rest, "no model read the change")
        except AuditFailed as failure:
            outcome.failures[ref] = failure
        finally:
            adapter.execute(drop_table(scratch))
        outcome.results[ref] = audits.results
    return outcome
