"""The control plane's state in ``_sqlorch``, beside the build state (``store.py``).

Tables (times are epoch seconds, DOUBLE, so every warehouse stores them alike):

- ``control_models``: per model what scheduling needs: ``reflects_until`` (every source
  change first seen up to then is in its table), ``last_success``, consecutive
  ``failures``, ``suspended`` (0/1), ``build_seconds`` (the last measured build).
- ``source_changes``: per source the batches ``run`` captured, with when each was first
  seen: the origin of every model's lag. Rows every model reflects are pruned.
- ``run_ledger``: one row per ``run`` build (``kind`` ``run``: its due models and plan
  summary as JSON) and per model step in it (``kind`` ``step``), with timestamps.
- ``heartbeat``: the one running ``run`` process per target: who, its interval, its last tick.

One query reads the models, changes and heartbeat; a tick that found nothing writes only
the heartbeat (one DELETE and one INSERT, in one transaction).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.refs import TableRef
from sqlorch.schedule.due import ModelControl
from sqlorch.state.store import STATE_SCHEMA, state_table

_TABLES: dict[str, dict[str, str]] = {
    "control_models": {
        "model": "TEXT",
        "reflects_until": "DOUBLE",
        "last_success": "DOUBLE",
        "failures": "BIGINT",
        "suspended": "BIGINT",
        "build_seconds": "DOUBLE",
    },
    "source_changes": {"source": "TEXT", "batch": "BIGINT", "first_seen": "DOUBLE"},
    "run_ledger": {
        "run_id": "TEXT",
        "kind": "TEXT",  # run | step
        "model": "TEXT",
        "status": "TEXT",
        "action": "TEXT",
        "strategy": "TEXT",
        "reason": "TEXT",
        "rows": "BIGINT",
        "started": "DOUBLE",
        "finished": "DOUBLE",
        "seconds": "DOUBLE",
        "summary": "TEXT",
    },
    "heartbeat": {"owner": "TEXT", "host": "TEXT", "pid": "BIGINT", "interval": "DOUBLE", "at": "DOUBLE"},
}
CONTROL_TABLES = [state_table(name) for name in _TABLES]
LEDGER = state_table("run_ledger")
LEDGER_COLUMNS = list(_TABLES["run_ledger"])
_WIDTH = max(len(columns) for name, columns in _TABLES.items() if name != "run_ledger")


@dataclass(frozen=True)
class Heartbeat:
    owner: str
    host: str
    pid: int
    interval: float
    at: float


@dataclass
class ControlState:
    models: dict[str, ModelControl] = field(default_factory=dict)
    changes: dict[str, dict[int, float]] = field(default_factory=dict)  # source -> batch -> first seen
    heartbeat: Heartbeat | None = None

    def first_seen(self) -> dict[str, list[float]]:
        return {source: sorted(batches.values()) for source, batches in self.changes.items()}


def ensure_control(adapter: Adapter, existing: Collection[TableRef] = ()) -> None:
    """Create the control tables that ``existing`` (tables known to exist) does not hold."""
    missing = [name for name in _TABLES if state_table(name) not in existing]
    if not missing:
        return
    adapter.ensure_schema(STATE_SCHEMA)
    for name in missing:
        columns = [
            exp.ColumnDef(this=exp.to_identifier(column, quoted=True), kind=exp.DataType.build(kind))
            for column, kind in _TABLES[name].items()
        ]
        schema = exp.Schema(this=state_table(name).to_table(), expressions=columns)
        adapter.execute(exp.Create(this=schema, kind="TABLE", exists=True))


def _text(column: str | None) -> exp.Expr:
    value: exp.Expr = exp.column(column, quoted=True) if column else exp.null()
    return exp.cast(value, exp.DataType.build("TEXT"))


def _tagged(tag: str, name: str) -> exp.Select:
    columns: list[str | None] = [*_TABLES[name]]
    columns += [None] * (_WIDTH - len(columns))
    return exp.select(exp.Literal.string(tag), *(_text(c) for c in columns)).from_(state_table(name).to_table())


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def load_control(adapter: Adapter) -> ControlState:
    """The control state in one query (the tables must exist: ``ensure_control``)."""
    query = exp.union(
        exp.union(_tagged("m", "control_models"), _tagged("c", "source_changes"), distinct=False),
        _tagged("h", "heartbeat"),
        distinct=False,
    )
    state = ControlState()
    for tag, *row in adapter.fetch(query):
        if tag == "m":
            model, reflects, success, failures, suspended, seconds = row[:6]
            state.models[model] = ModelControl(
                _number(reflects), _number(success), int(float(failures or 0)), bool(float(suspended or 0)),
                _number(seconds),
            )  # fmt: skip
        elif tag == "c":
            source, batch, seen = row[:3]
            state.changes.setdefault(source, {})[int(float(batch))] = float(seen)
        else:
            owner, host, pid, interval, at = row[:5]
            state.heartbeat = Heartbeat(owner, host, int(float(pid)), float(interval), float(at))
    return state


def _eq(column: str, value: Any) -> exp.Expr:
    return exp.EQ(this=exp.column(column, quoted=True), expression=exp.convert(value))


def _in(column: str, values: Iterable[Any]) -> exp.Expr:
    return exp.column(column, quoted=True).isin(*(exp.convert(v) for v in values))


def save_models(adapter: Adapter, models: Mapping[str, ModelControl]) -> None:
    """Replace the rows of ``models`` (call inside a transaction)."""
    if not models:
        return
    table = state_table("control_models")
    adapter.execute(exp.delete(table.to_table(), where=_in("model", sorted(models))))
    rows = [
        (name, c.reflects_until, c.last_success, c.failures, int(c.suspended), c.build_seconds)
        for name, c in sorted(models.items())
    ]
    adapter.insert_rows(table, list(_TABLES["control_models"]), rows)


def record_changes(adapter: Adapter, changes: Mapping[str, Mapping[int, float]]) -> None:
    """Add first-seen times of new batches (``source -> batch -> time``)."""
    rows = [(source, batch, seen) for source, batches in sorted(changes.items()) for batch, seen in batches.items()]
    if rows:
        adapter.insert_rows(state_table("source_changes"), list(_TABLES["source_changes"]), rows)


def prune_changes(adapter: Adapter, source: str, upto: float) -> None:
    """Forget a source's changes first seen by ``upto``: every model reading it reflects them."""
    condition = exp.and_(_eq("source", source), exp.column("first_seen", quoted=True) <= exp.convert(upto))
    adapter.execute(exp.delete(state_table("source_changes").to_table(), where=condition))


def beat(adapter: Adapter, heartbeat: Heartbeat) -> None:
    """The running process's heartbeat: the only write of a tick that found nothing."""
    table = state_table("heartbeat")
    with adapter.transaction():
        adapter.execute(exp.delete(table.to_table()))
        adapter.insert_rows(
            table,
            list(_TABLES["heartbeat"]),
            [(heartbeat.owner, heartbeat.host, heartbeat.pid, heartbeat.interval, heartbeat.at)],
        )


def clear_heartbeat(adapter: Adapter, owner: str) -> None:
    """A process stopping says so: ``status`` then shows no running ``run``."""
    adapter.execute(exp.delete(state_table("heartbeat").to_table(), where=_eq("owner", owner)))


@dataclass(frozen=True)
class LedgerRow:
    run_id: str
    kind: str
    model: str | None
    status: str
    action: str | None = None
    strategy: str | None = None
    reason: str | None = None
    rows: int | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    summary: dict[str, Any] | None = None

    def values(self) -> tuple[Any, ...]:
        summary = json.dumps(self.summary, sort_keys=True) if self.summary is not None else None
        return (
            self.run_id, self.kind, self.model, self.status, self.action, self.strategy, self.reason,
            self.rows, self.started, self.finished, self.seconds, summary,
        )  # fmt: skip


def append_ledger(adapter: Adapter, rows: list[LedgerRow]) -> None:
    if rows:
        adapter.insert_rows(LEDGER, LEDGER_COLUMNS, [row.values() for row in rows])


def load_ledger(adapter: Adapter) -> list[dict[str, Any]]:
    """Every ledger row, oldest first (by start time)."""
    query = exp.select(*(exp.column(c, quoted=True) for c in LEDGER_COLUMNS)).from_(LEDGER.to_table())
    rows = [dict(zip(LEDGER_COLUMNS, row, strict=True)) for row in adapter.fetch(query)]
    return sorted(rows, key=lambda row: (float(row["started"] or 0), row["kind"] != "run"))
