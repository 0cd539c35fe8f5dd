"""Collecting the audits a project declares: model headers (``audits``, ``audits_warn``),
YAML files under ``models/`` (``models:`` and ``sources:`` entries with the same two keys)
and custom audits in ``audits/``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlglot import exp

from sqlorch.audits.builtins import BUILTINS
from sqlorch.audits.calls import AuditCall, parse_audit_calls
from sqlorch.audits.custom import CustomAudit, build_custom, load_custom_audits
from sqlorch.audits.subject import Subject
from sqlorch.config import read_utf8
from sqlorch.errors import ConfigError, ErrorGroup, SqlorchError
from sqlorch.project.discover import discover_files
from sqlorch.project.loader import Project, make_resolver
from sqlorch.refs import TableRef

AUDIT_KEYS = {"audits": True, "audits_warn": False}  # key -> blocking


@dataclass
class DeclaredAudits:
    models: dict[TableRef, list[AuditCall]] = field(default_factory=dict)
    sources: dict[TableRef, list[AuditCall]] = field(default_factory=dict)
    custom: dict[str, CustomAudit] = field(default_factory=dict)

    def query(self, call: AuditCall, subject: Subject) -> exp.Select:
        """The bad rows of ``call`` over ``subject``."""
        if call.name in BUILTINS:
            return BUILTINS[call.name](call, subject)
        if call.name in self.custom:
            return build_custom(call, self.custom[call.name], subject)
        known = sorted([*BUILTINS, *self.custom])
        raise call.error(
            f"unknown audit '{call.name}'",
            hint=f"known audits: {', '.join(known)}; custom ones go in audits/<name>.sql",
        )


def audit_parents(calls: list[AuditCall], resolve: Callable[[exp.Table], TableRef | None]) -> set[TableRef]:
    """Relations ``relationships`` audits compare against: a model among them must be built
    (in this build) before the audited model, like an input."""
    parents = set()
    for call in calls:
        if call.name == "relationships" and len(call.args) == 2 and isinstance(call.args[1], exp.Column):
            parent = call.args[1]
            ref = (
                resolve(exp.Table(this=parent.args["table"].copy(), db=parent.args.get("db"))) if parent.table else None
            )
            if ref is not None:
                parents.add(ref)
    return parents


def _yaml_entries(path: Path, dialect: str) -> list[tuple[str, yaml.Node, list[AuditCall]]]:
    """``(section, relation name, calls)`` for every ``audits``/``audits_warn`` list in one
    YAML file, each call located at its own line and column."""
    try:
        root = yaml.compose(read_utf8(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []  # the source loader reports YAML syntax errors
    found: list[tuple[str, yaml.Node, list[AuditCall]]] = []
    if not isinstance(root, yaml.MappingNode):
        return found
    for section_key, section in root.value:
        if section_key.value not in ("models", "sources") or not isinstance(section, yaml.MappingNode):
            continue
        for name_node, settings in section.value:
            if not isinstance(settings, yaml.MappingNode):
                continue
            for key_node, value in settings.value:
                if key_node.value not in AUDIT_KEYS:
                    continue
                items = value.value if isinstance(value, yaml.SequenceNode) else [value]
                calls = []
                for item in items:
                    if not isinstance(item, yaml.ScalarNode):
                        raise ConfigError(
                            f"'{key_node.value}' must be a list of audit calls",
                            path=path,
                            line=item.start_mark.line + 1,
                            col=item.start_mark.column + 1,
                        )
                    quoted = 1 if item.style in ("'", '"') else 0
                    calls += parse_audit_calls(
                        str(item.value),
                        dialect,
                        AUDIT_KEYS[key_node.value],
                        path,
                        item.start_mark.line + 1,
                        item.start_mark.column + 1 + quoted,
                    )
                found.append((section_key.value, name_node, calls))
    return found


def _relation(name: str, project: Project, resolve: Callable[[exp.Table], TableRef]) -> TableRef:
    parts = name.lower().split(".")
    table = exp.Table(this=exp.to_identifier(parts[-1]), db=exp.to_identifier(parts[-2]) if len(parts) > 1 else None)
    return resolve(table)


def declared_audits(project: Project) -> DeclaredAudits:
    """Every audit of the project, parsed; all syntax and placement errors at once."""
    dialect = project.settings.dialect
    declared = DeclaredAudits(custom=load_custom_audits(project.root, dialect))
    errors: list[SqlorchError] = []
    for ref, model in project.models.items():
        for key, blocking in AUDIT_KEYS.items():
            value = getattr(model.config, key)
            if value is None:
                continue
            try:
                calls = parse_audit_calls(value.text, dialect, blocking, model.path, value.line, value.col)
            except SqlorchError as error:
                errors.append(error)
                continue
            declared.models.setdefault(ref, []).extend(calls)
    resolve = make_resolver(project)
    for path in discover_files(project.root).yaml_files:
        try:
            entries = _yaml_entries(path, dialect)
        except SqlorchError as error:
            errors.append(error)
            continue
        for section, node, calls in entries:
            ref = _relation(str(node.value), project, resolve)
            if section == "models" and ref not in project.models:
                line, col = node.start_mark.line + 1, node.start_mark.column + 1
                errors.append(ConfigError(f"audits for unknown model '{node.value}'", path=path, line=line, col=col))
                continue
            target = declared.models if section == "models" else declared.sources
            target.setdefault(ref, []).extend(calls)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return declared
