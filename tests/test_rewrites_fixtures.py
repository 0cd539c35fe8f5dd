"""The planner and the rewrites as fixture pairs, no warehouse: a model's SQL, its sources,
a state and a change in, the decision and the exact statements of its step out
(``tests/fixtures/rewrites/*.sql``, one case per file, like sqlglot's optimizer fixtures).

A fixture file:

    -- target: duckdb                       (the adapter whose dialect and capabilities plan)
    -- source raw.orders: {unique_key: order_id, columns: {order_id: INT, amount: INT}}
    -- upstream staging.stg: SELECT ...      (other models, one line each; built and unchanged)
    -- change raw.orders: delta 3            (a batch past every consumer's watermark)
    -- input_rows: 10                        (optional: every relation's row count, for the rebuild rule)
    -- read_by: nothing                      (optional: no model reads the change logs)
    -- state_current: marts.totals derived   (optional: that state's record matches batch 1)
    -- model marts.totals
    SELECT ...                               (the model under test)
    -- expect: incremental | merge keys
    <the step's statements, one per line; a choice's branches under "-- branch" lines>

The state is that of a build that already ran: every model recorded with its compiled
fingerprint and columns, every input's batch 1 consumed. ``SQLORCH_WRITE_FIXTURES=1``
rewrites the expected part from what the planner says now (then review the diff).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import yaml

from sqlorch import api
from sqlorch.adapters.registry import _ADAPTERS
from sqlorch.planning.planner import build_plan
from sqlorch.planning.step_statements import StepTarget
from sqlorch.planning.steps import Choice, Item, Step
from sqlorch.project.loader import make_resolver
from sqlorch.refs import TableRef
from sqlorch.state.store import RelationState, StateSnapshot, change_log

FIXTURES = Path(__file__).parent / "fixtures" / "rewrites"
WRITE = os.environ.get("SQLORCH_WRITE_FIXTURES") == "1"


def _parse(text: str) -> tuple[dict[str, list[str]], str, str, list[str]]:
    """(headers by key, the model's name, its SQL, the expected lines)."""
    head, _, expected = text.partition("-- expect: ")
    headers: dict[str, list[str]] = {}
    sql: list[str] = []
    model = ""
    for line in head.splitlines():
        if model:
            sql.append(line)
        elif line.startswith("-- model "):
            model = line.removeprefix("-- model ").strip()
        elif line.startswith("-- "):
            key, _, value = line[3:].partition(" ")
            headers.setdefault(key.rstrip(":"), []).append(value.strip())
    return headers, model, "\n".join(sql).strip() + "\n", expected.splitlines()


def _render(items: list[Item], dialect: str) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, Choice):
            for branch in item.branches:
                rule = " and ".join(r.describe() for r in branch.rules) or "otherwise"
                out.append(f"-- branch {branch.name} when {rule}: {branch.action} | {branch.strategy}")
                out += _render(branch.statements, dialect)
            out.append("-- end of choice")
        else:
            out.append(item.render(dialect) if item.kind != "audit" else "-- audits")
    return out


def _plan(path: Path, tmp_path: Path) -> tuple[Step, str]:
    headers, model, sql, _ = _parse(path.read_text())
    kind = headers.get("target", ["duckdb"])[0]
    module, name, _ = _ADAPTERS[kind]
    adapter_class = getattr(importlib.import_module(module), name)
    sources = {}
    for line in headers.get("source", []):
        ref, _, spec = line.partition(": ")
        sources[ref] = yaml.safe_load(spec)
    files = {"models/sources.yml": yaml.safe_dump({"sources": sources})}
    for line in headers.get("upstream", []):
        ref, _, upstream_sql = line.partition(": ")
        schema, table = ref.split(".")
        files[f"models/{schema}/{table}.sql"] = upstream_sql + "\n"
    schema, table = model.split(".")
    files[f"models/{schema}/{table}.sql"] = sql
    project_dir = tmp_path / path.stem
    for file, text in files.items():
        (project_dir / file).parent.mkdir(parents=True, exist_ok=True)
        (project_dir / file).write_text(text)
    (project_dir / "profiles.yml").write_text(
        yaml.safe_dump({"target": "t", "targets": {"t": {"type": "duckdb", "path": "w.duckdb"}}})
    )
    options = api.Options(project_dir=project_dir)
    compiled, _ = api.compile_only(options)
    session = api.open_session(options)
    project = session.project
    # the state after a build: every model recorded and built, each input's batch 1 consumed
    snapshot = StateSnapshot()
    columns: dict[TableRef, list[str]] = {}
    for ref, spec in project.sources.items():
        columns[ref] = list(spec.columns)
        snapshot.record_batch(str(ref), 1, "full", 0)
    for ref, item in compiled.items():
        assert item.columns is not None, ref
        columns[ref] = [c.lower() for c in item.columns]
        inputs = {str(input_ref): schema for input_ref, schema in (item.input_schemas or {}).items()}
        snapshot.relations[str(ref)] = RelationState(
            item.fingerprint, dict.fromkeys(columns[ref], ""), item.keys.key, None, inputs=inputs
        )
        snapshot.record_batch(str(ref), 1, "full", 0)
        for input_ref in item.model.inputs:
            snapshot.watermarks[(str(ref), str(input_ref))] = 1
    for name in headers.get("state_current", []):  # a kept state's record at the model's batch 1
        snapshot.aggregate_states[name] = 1
    for line in headers.get("change", []):
        ref, _, change = line.partition(": ")
        change_kind, rows = change.split()
        snapshot.record_batch(ref, 2, change_kind, int(rows))
    catalog: dict[TableRef, dict[str, str]] = {}
    for ref in [*project.sources, *compiled]:
        relation = session.physical_of.get(ref, ref)
        catalog[relation] = dict.fromkeys(columns[ref], "INTEGER")
        catalog[change_log(ref)] = {}
    target = StepTarget(
        dialect=adapter_class.dialect,
        physical_of=session.physical_of,
        input_columns=columns,
        default_schema=project.settings.default_schema,
        resolve=make_resolver(project),
        catalog=catalog,
        owned={str(relation) for relation in session.physical_of.values()},
        audited=set(),
        # "-- read_by: nothing": no model of the project reads the model under test
        consumed=frozenset() if headers.get("read_by") == ["nothing"] else None,
    )
    relations = [*project.sources, *compiled]
    input_rows = {r: int(headers["input_rows"][0]) for r in relations} if "input_rows" in headers else {}
    plan = build_plan(
        project,
        session.order,
        compiled,
        snapshot,
        {},
        {},
        set(compiled),
        input_rows,
        False,
        adapter_class.capabilities,
        target,
    )
    step = next(s for s in plan.steps if str(s.ref) == model)
    return step, plan.dialect


CASES = sorted(FIXTURES.glob("*.sql"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fixture(path: Path, tmp_path: Path) -> None:
    step, dialect = _plan(path, tmp_path)
    got = [f"{step.action} | {step.strategy}", *_render(step.statements, dialect)]
    text = path.read_text()
    if WRITE:
        path.write_text(text.partition("-- expect: ")[0] + "-- expect: " + "\n".join(got) + "\n")
    _, _, _, expected = _parse(text)
    assert got == expected, "\n".join(got)


def test_there_are_fixtures_for_every_strategy() -> None:
    from sqlorch.planning.rewrites.strategies import STRATEGIES

    decisions = {_parse(path.read_text())[3][0] for path in CASES}
    for strategy in STRATEGIES:
        assert any(line.endswith(f"| {strategy.name}") for line in decisions), strategy.name
