"""Unit-test files: ``tests/*.yml`` of the project.

    tests:
      - name: completed orders only
        model: marts.customer_orders
        given:                                   # rows per input; inputs left out are empty
          intermediate.int_orders_enriched:
            - {order_id: 1, customer_id: 7, status: completed, amount: 10}
        change:                                  # optional: then an incremental build
          intermediate.int_orders_enriched:
            insert: [{order_id: 2, customer_id: 7, status: completed, amount: 5}]
            delete: [{order_id: 1, customer_id: 7, status: completed, amount: 10}]
            update: [{old: {...}, new: {...}}]
        expect:                                  # the model's rows (after the change, if any)
          - {customer_id: 7, order_id: 2, order_number: 1}

Rows may name a subset of columns (others are NULL in ``given``, not compared in ``expect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlglot import exp

from sqlorch.config import read_utf8
from sqlorch.errors import ConfigError, ErrorGroup, SqlorchError
from sqlorch.project.loader import Project, make_resolver
from sqlorch.refs import TableRef

Row = dict[str, Any]
TEST_KEYS = {"name", "model", "given", "change", "expect", "description"}
CHANGE_KEYS = {"insert", "delete", "update"}


@dataclass
class Located:
    """A value with the place it was written, for ``path:line:col`` errors."""

    path: Path
    line: int
    col: int

    def error(self, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line, col=self.col, hint=hint)


@dataclass
class InputChange:
    insert: list[Row] = field(default_factory=list)
    delete: list[Row] = field(default_factory=list)


@dataclass
class UnitTest:
    name: str
    model: TableRef
    given: dict[TableRef, list[Row]]
    expect: list[Row]
    change: dict[TableRef, InputChange] | None
    where: Located
    row_places: list[tuple[TableRef | None, Row, Located]] = field(default_factory=list)  # for column checks


def _at(path: Path, node: yaml.Node) -> Located:
    return Located(path, node.start_mark.line + 1, node.start_mark.column + 1)


def _pairs(node: yaml.Node, path: Path, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _at(path, node).error(f"{what} must be a mapping")
    return list(node.value)


def _rows(node: yaml.Node, path: Path, what: str) -> list[tuple[Row, Located]]:
    if not isinstance(node, yaml.SequenceNode):
        raise _at(path, node).error(f"{what} must be a list of rows")
    rows = []
    for item in node.value:
        if not isinstance(item, yaml.MappingNode):
            raise _at(path, item).error(f"each row of {what} must be a mapping of column: value")
        value = yaml.SafeLoader("").construct_mapping(item, deep=True)
        rows.append(({str(k).lower(): v for k, v in value.items()}, _at(path, item)))
    return rows


def _relation(name_node: yaml.Node, path: Path, project: Project) -> TableRef:
    name = str(name_node.value).lower()
    parts = name.split(".")
    if not all(parts) or len(parts) > 3:
        raise _at(path, name_node).error(f"'{name}' is not a relation name")
    table = exp.Table(this=exp.to_identifier(parts[-1]), db=exp.to_identifier(parts[-2]) if len(parts) > 1 else None)
    return make_resolver(project)(table)


def _test(path: Path, node: yaml.Node, project: Project) -> UnitTest:
    where = _at(path, node)
    fields = {str(k.value): v for k, v in _pairs(node, path, "a unit test")}
    keys = {str(k.value): k for k, _ in _pairs(node, path, "a unit test")}
    unknown = set(fields) - TEST_KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise _at(path, keys[name]).error(
            f"unknown unit-test key '{name}'", hint=f"known keys: {', '.join(sorted(TEST_KEYS))}"
        )
    for required in ("name", "model", "expect"):
        if required not in fields:
            raise where.error(f"a unit test needs '{required}:'")
    model = _relation(fields["model"], path, project)
    if model not in project.models:
        raise _at(path, fields["model"]).error(f"unknown model '{fields['model'].value}'")
    test = UnitTest(str(fields["name"].value), model, {}, [], None, where)
    inputs = project.models[model].inputs
    for name_node, rows_node in _pairs(fields.get("given") or yaml.MappingNode("", []), path, "given"):
        ref = _relation(name_node, path, project)
        if ref not in inputs:
            raise _at(path, name_node).error(
                f"{ref} is not an input of {model}", hint=f"its inputs: {', '.join(sorted(map(str, inputs)))}"
            )
        rows = _rows(rows_node, path, f"given {ref}")
        test.given[ref] = [row for row, _ in rows]
        test.row_places += [(ref, row, at) for row, at in rows]
    expect = _rows(fields["expect"], path, "expect")
    test.expect = [row for row, _ in expect]
    test.row_places += [(None, row, at) for row, at in expect]
    if "change" in fields:
        test.change = {}
        for name_node, change_node in _pairs(fields["change"], path, "change"):
            ref = _relation(name_node, path, project)
            if ref not in inputs:
                raise _at(path, name_node).error(f"{ref} is not an input of {model}")
            change = test.change.setdefault(ref, InputChange())
            for kind_node, rows_node in _pairs(change_node, path, f"change of {ref}"):
                kind = str(kind_node.value)
                if kind not in CHANGE_KEYS:
                    raise _at(path, kind_node).error(f"unknown change '{kind}'", hint="insert, delete or update")
                if kind == "update":
                    for pair, at in _rows(rows_node, path, "update"):
                        if set(pair) != {"old", "new"} or not all(isinstance(v, dict) for v in pair.values()):
                            raise at.error("each update is {old: {row}, new: {row}}")
                        old = {str(k).lower(): v for k, v in pair["old"].items()}
                        new = {str(k).lower(): v for k, v in pair["new"].items()}
                        change.delete.append(old)
                        change.insert.append(new)
                        test.row_places += [(ref, old, at), (ref, new, at)]
                    continue
                rows = _rows(rows_node, path, f"{kind} of {ref}")
                getattr(change, kind).extend(row for row, _ in rows)
                test.row_places += [(ref, row, at) for row, at in rows]
    return test


def load_unit_tests(project: Project) -> list[UnitTest]:
    """Every unit test in the project's ``tests/*.yml``; all mistakes at once."""
    tests: list[UnitTest] = []
    errors: list[SqlorchError] = []
    for path in sorted([*(project.root / "tests").glob("*.yml"), *(project.root / "tests").glob("*.yaml")]):
        try:
            root = yaml.compose(read_utf8(path), Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            errors.append(
                ConfigError(
                    f"invalid YAML: {error.problem}",
                    path=path,
                    line=mark.line + 1 if mark else None,
                    col=mark.column + 1 if mark else None,
                )
            )
            continue
        if root is None:
            continue
        try:
            section = dict((str(k.value), v) for k, v in _pairs(root, path, "a unit-test file")).get("tests")
            if not isinstance(section, yaml.SequenceNode):
                raise _at(path, root).error("a unit-test file holds 'tests:', a list of tests")
        except SqlorchError as error:
            errors.append(error)
            continue
        for node in section.value:
            try:
                tests.append(_test(path, node, project))
            except SqlorchError as error:
                errors.append(error)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
    return tests


def check_unit_test_columns(tests: list[UnitTest], columns_of: dict[TableRef, list[str]]) -> None:
    """Unknown columns in ``given``/``change`` rows (against the input's columns) and in
    ``expect`` rows (against the model's), where those columns are known."""
    errors: list[SqlorchError] = []
    for test in tests:
        for ref, row, at in test.row_places:
            known = columns_of.get(ref if ref is not None else test.model)
            unknown = [c for c in row if known and c not in known]
            if unknown:
                owner = ref if ref is not None else test.model
                errors.append(
                    at.error(f"unknown column '{unknown[0]}' of {owner}", hint=f"columns: {', '.join(known or [])}")
                )
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorGroup(errors)
