"""``sqlorch compile``'s check of the declared audits, without a warehouse: every call
names a known audit with well-formed arguments, every column exists in the model's (or
declared source's) columns, and a ``relationships`` target is a known relation and column."""

from __future__ import annotations

from sqlglot import exp

from sqlorch.audits.calls import AuditCall
from sqlorch.audits.declared import DeclaredAudits
from sqlorch.audits.subject import Subject
from sqlorch.errors import ErrorGroup, SqlorchError
from sqlorch.planning.compiler import CompiledModel
from sqlorch.project.loader import Project, make_resolver
from sqlorch.refs import TableRef


def _columns_of(ref: TableRef, project: Project, compiled: dict[TableRef, CompiledModel]) -> list[str] | None:
    item = compiled.get(ref)
    if item is not None:
        return list(item.columns) if item.columns is not None else None
    spec = project.sources.get(ref)
    return list(spec.columns) if spec is not None and spec.columns else None


def _check_parent(call: AuditCall, project: Project, compiled: dict[TableRef, CompiledModel], parent: TableRef) -> None:
    if parent not in project.node_refs() and parent not in project.sources:
        raise call.error(f"relationships target {parent} is not a model, seed or declared source")
    column = call.args[1]
    columns = _columns_of(parent, project, compiled)
    if columns and isinstance(column, exp.Column) and column.name.lower() not in columns:
        raise call.error(f"{parent} has no column '{column.name}'", hint=f"columns: {', '.join(columns)}")


def check_audits(declared: DeclaredAudits, project: Project, compiled: dict[TableRef, CompiledModel]) -> None:
    """Raise every mistake in the declared audits at once."""
    resolve = make_resolver(project)
    errors: list[SqlorchError] = []
    attached = [(ref, call) for ref, calls in declared.models.items() for call in calls]
    attached += [(ref, call) for ref, calls in declared.sources.items() for call in calls]
    for ref, call in attached:
        parents: list[TableRef] = []

        def relation_of(table: exp.Table, found: list[TableRef] = parents) -> TableRef:
            found.append(resolve(table))
            return found[-1]

        subject = Subject(ref, _columns_of(ref, project, compiled) or [], relation_of)
        try:
            declared.query(call, subject)
            if call.name == "relationships":
                _check_parent(call, project, compiled, parents[0])
        except SqlorchError as error:
            errors.append(error)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
