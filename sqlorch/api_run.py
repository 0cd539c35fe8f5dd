"""Composition of the control plane: ``sqlorch run``'s ticks, ``status``, ``suspend`` and
``resume``. Returns data, never prints or exits; the decisions are ``sqlorch.schedule``'s.

A tick: capture every source of the managed models (the build's own capture, which for an
unchanged source is one cheap query and no write), record when each new change was first
seen, work out what is due, write the heartbeat. When something is due, build exactly the
due models through ``api.build`` (a selection), then record each model's outcome, the
ledger rows and the first-seen times of changes the build's own capture found.

Seam for the one-writer lease and the retries (another part of issue 12): ``_build`` is
the one place a tick builds, and ``_connect`` the one place it connects.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch import api
from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.api import Options, Session, open_session
from sqlorch.compile_stamp import inputs_digest
from sqlorch.config import find_profiles
from sqlorch.errors import GraphError, SqlorchError
from sqlorch.execution.executor import Listener
from sqlorch.execution.results import RunResult
from sqlorch.execution.stop import StopRequest
from sqlorch.graph.selection import select_nodes
from sqlorch.refs import TableRef
from sqlorch.schedule.due import (
    Declared,
    Graph,
    ModelControl,
    ModelStatus,
    after_build,
    caught_up,
    iso,
    schedule,
    stale_models,
)
from sqlorch.schedule.freshness import source_verdict
from sqlorch.state.control import (
    CONTROL_TABLES,
    ControlState,
    Heartbeat,
    LedgerRow,
    append_ledger,
    beat,
    clear_heartbeat,
    ensure_control,
    load_control,
    prune_changes,
    record_changes,
    save_models,
)
from sqlorch.state.lease import LEASE, Holder, acquire_lease, lost_error, read_holder
from sqlorch.state.store import STATE_TABLES, StateSnapshot, load_snapshot

Clock = Callable[[], float]


@dataclass
class Tick:
    """What one tick saw and did."""

    checked_at: float
    statuses: dict[str, ModelStatus]
    changed: list[str]  # sources with a change first seen in this tick
    due: list[str]  # the models built (empty: nothing was due)
    result: RunResult | None = None
    seconds: float = 0.0  # the whole tick, wall clock
    interrupted: bool = False


def _declared(session: Session) -> dict[str, Declared]:
    default = session.project.settings.default_freshness
    found = {}
    for ref, model in session.project.models.items():
        config = model.config
        freshness = config.freshness if config.freshness is not None or config.cron is not None else default
        found[str(ref)] = Declared(freshness, config.cron)
    return found


def _graph(session: Session) -> Graph:
    models = session.project.models
    return Graph(
        parents={str(ref): {str(p) for p in m.depends_on if p in models} for ref, m in models.items()},
        sources={str(ref): {str(s) for s in m.sources} for ref, m in models.items()},
    )


def _managed(session: Session) -> set[str]:
    return {str(ref) for ref in session.selected if ref in session.project.models}


def _stale(session: Session, snapshot: StateSnapshot) -> set[str]:
    inputs = {str(ref): [str(i) for i in m.inputs] for ref, m in session.project.models.items()}
    return stale_models(_graph(session), inputs, lambda model, name: snapshot.pending(model, name) is not None)


def _statuses(
    session: Session, snapshot: StateSnapshot, control: ControlState, now: float, interval: float
) -> dict[str, ModelStatus]:
    graph = _graph(session)
    stale = _stale(session, snapshot)
    built = {name for name in graph.parents if name in snapshot.relations}
    return schedule(
        now, interval, _declared(session), graph, control.models, control.first_seen(), stale, built,
        _managed(session),
    )  # fmt: skip


def _new_changes(snapshot: StateSnapshot, control: ControlState, sources: set[str], seen: float) -> dict[str, int]:
    """Sources whose latest batch is past the last one recorded: one row each (the batch
    and every one before it were first seen by ``seen``)."""
    found = {}
    for source in sorted(sources):
        latest = snapshot.latest_batch.get(source, 0)
        if latest > max(control.changes.get(source, {0: 0.0}), default=0):
            found[source] = latest
    return found


class Runner:
    """One ``sqlorch run`` process: the project (reloaded when its files change), the
    interval, the clock. ``tick`` is one pass; the caller loops and sleeps."""

    def __init__(self, options: Options, interval: float, clock: Clock = time.time) -> None:
        self.options = options
        self.interval = interval
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.session: Session | None = None
        self._digest: str | None = None
        self._full_pass = True  # at start and after the project changed: build every managed model once

    def load(self) -> Session:
        """The project, loaded again when a file it reads changed since the last tick."""
        root = self.options.project_dir.resolve()
        try:
            digest: str | None = inputs_digest(root, find_profiles(root, self.options.profiles_dir), "run")
        except SqlorchError:
            digest = None
        if self.session is None or digest is None or digest != self._digest:
            self.session = open_session(self.options)
            if self._digest is not None:
                self._full_pass = True
            self._digest = digest
        return self.session

    def _connect(self, session: Session) -> Adapter:
        return connect(session.target)

    def tick(
        self,
        stop: StopRequest | None = None,
        listener: Listener | None = None,
        announce: Callable[[Tick, dict[str, str]], None] | None = None,
    ) -> Tick:
        """One pass, holding the target's lease from the source check to the last record
        (the build inside takes it again, granted to this process), so no other ``build``
        or ``run`` captures or writes in between. ``announce`` hears of a build before it
        starts: the due models and why each is due. A lost lease stops the tick as Ctrl-C
        does, and is then reported as an error."""
        started = self.clock()
        session = self.load()
        with ExitStack() as held:
            checked_at = self.clock()
            adapter = self._connect(session)
            held.callback(adapter.close)  # after the lease's release: its connection is a fork of this one
            if stop is not None:
                stop.attach(adapter)  # a signal while waiting for the lease or capturing ends the tick
            expiry = session.project.settings.lease_expiry
            on_lost = stop.stop if stop is not None else None
            lease = held.enter_context(acquire_lease(adapter, "run", self.options.lease_wait, expiry, on_lost))
            changed, statuses = self._check(adapter, session, checked_at)
            due = sorted(name for name, status in statuses.items() if status.due)
            if self._full_pass:
                due = sorted(name for name in _managed(session) if not statuses[name].suspended)
            tick = Tick(checked_at, statuses, sorted(changed), due)
            if due and not (stop is not None and stop.stopped):
                why = {name: "start-up or project change" if self._full_pass else statuses[name].reason for name in due}
                if announce is not None:
                    announce(tick, why)
                tick.result = self._build(session, due, why, stop, listener)
                tick.interrupted = stop is not None and stop.stopped
                self._full_pass = self._full_pass and tick.interrupted
        if lease.lost.is_set():
            raise lost_error()
        tick.seconds = self.clock() - started
        return tick

    def _check(
        self, adapter: Adapter, session: Session, checked_at: float
    ) -> tuple[dict[str, int], dict[str, ModelStatus]]:
        """Capture the sources, record first-seen times, beat: the sources changed and the statuses."""
        snapshot, known = api.check_sources(adapter, session, CONTROL_TABLES)
        ensure_control(adapter, known)
        control = load_control(adapter)
        sources = {s for name, found in _graph(session).sources.items() if name in _managed(session) for s in found}
        changed = _new_changes(snapshot, control, sources, checked_at)
        graph = _graph(session)
        built = {name for name in graph.parents if name in snapshot.relations}
        first_seen = control.first_seen()
        for source in changed:
            first_seen.setdefault(source, []).append(checked_at)
        current = caught_up(graph, control.models, first_seen, _stale(session, snapshot), built, checked_at)
        if changed or current:
            with adapter.transaction():
                record_changes(adapter, {source: {batch: checked_at} for source, batch in changed.items()})
                save_models(adapter, current)
            control = load_control(adapter)
        statuses = _statuses(session, snapshot, control, checked_at, self.interval)
        beat(adapter, Heartbeat(self.owner, socket.gethostname(), os.getpid(), self.interval, checked_at))
        return changed, statuses

    def _build(
        self,
        session: Session,
        due: list[str],
        reasons: dict[str, str],
        stop: StopRequest | None,
        listener: Listener | None,
    ) -> RunResult:
        """Build the due models, then record their outcomes. A build that fails as a whole
        (the warehouse unreachable, a broken profile) is recorded in the ledger and fails the
        tick, but counts against no model: an outage must not suspend every model."""
        run_id = uuid.uuid4().hex[:12]
        started = self.clock()
        failure: SqlorchError | None = None
        try:
            result = api.build(replace(self.options, select=" ".join(due), exclude=None), listener, stop)
        except SqlorchError as error:
            failure = error
            result = RunResult(run_id, [])
        finished = self.clock()
        self._record(session, run_id, due, reasons, result, failure, started, finished, stop)
        if failure is not None:
            raise failure
        return result

    def _record(
        self,
        session: Session,
        run_id: str,
        due: list[str],
        reasons: dict[str, str],
        result: RunResult,
        failure: SqlorchError | None,
        started: float,
        finished: float,
        stop: StopRequest | None,
    ) -> None:
        limit = session.project.settings.suspend_after_failures
        interrupted = stop is not None and stop.stopped
        adapter = self._connect(session)
        try:
            snapshot = load_snapshot(adapter)
            control = load_control(adapter)
            sources = {s for found in _graph(session).sources.values() for s in found}
            changed = _new_changes(snapshot, control, sources, started)  # found by the build's own capture
            updated: dict[str, ModelControl] = {}
            outcomes = {r.model: r for r in result.results}
            for name in due:
                state = control.models.get(name, ModelControl())
                item = outcomes.get(name)
                if item is not None and not (interrupted and item.status != "success"):
                    updated[name] = after_build(state, item.status, item.action, item.seconds, finished, started, limit)
            status = "interrupted" if interrupted else "error" if failure or result.failed else "success"
            summary = {
                "due": reasons,
                "actions": _counts(r.action for r in result.results if r.status == "success"),
                "statuses": _counts(r.status for r in result.results),
                "error": failure.render() if failure else None,
            }
            rows = [LedgerRow(run_id, "run", None, status, started=started, finished=finished,
                              seconds=finished - started, summary=summary)]  # fmt: skip
            rows += [
                LedgerRow(run_id, "step", r.model, r.status, r.action, r.strategy, r.reason, r.rows,
                          started, finished, r.seconds)
                for r in result.results
            ]  # fmt: skip
            with adapter.transaction():
                record_changes(adapter, {source: {batch: started} for source, batch in changed.items()})
                save_models(adapter, updated)
                append_ledger(adapter, rows)
            self._prune(adapter, session, {**control.models, **updated}, control, snapshot)
        finally:
            adapter.close()

    def _prune(
        self,
        adapter: Adapter,
        session: Session,
        models: dict[str, ModelControl],
        control: ControlState,
        snapshot: StateSnapshot,
    ) -> None:
        """Forget changes every model reading the source reflects, keeping each source's
        latest row (a source's age, for its freshness verdict, is measured from it)."""
        graph = _graph(session)
        readers: dict[str, list[str]] = {}
        for model in graph.parents:
            for source in graph.all_sources(model):
                readers.setdefault(source, []).append(model)
        for source, batches in control.changes.items():
            reflected = [models.get(m, ModelControl()).reflects_until for m in readers.get(source, [])]
            if len(batches) < 2 or not reflected or any(r is None for r in reflected):
                continue
            upto = min(r for r in reflected if r is not None)
            latest = max(batches)
            if any(seen <= upto for batch, seen in batches.items() if batch != latest):
                prune_changes(adapter, source, min(upto, batches[latest] - 1e-6))

    def close(self) -> None:
        """The process stops: its heartbeat goes, so ``status`` shows no ``run``."""
        if self.session is None:
            return
        adapter = self._connect(self.session)
        try:
            if all(table in adapter.columns_many(CONTROL_TABLES) for table in CONTROL_TABLES):
                clear_heartbeat(adapter, self.owner)
        finally:
            adapter.close()


def _counts(values: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in values:
        found[value] = found.get(value, 0) + 1
    return found


@dataclass
class SourceStatus:
    source: str
    loaded_at: str | None  # the column the age is read from; None: from the changes run saw
    newest: float | None  # when its newest data was loaded (or its latest change first seen)
    age_seconds: float | None
    warn_after: float | None
    error_after: float | None
    verdict: str | None  # ok | warn | error; None: no freshness declared

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded_at": self.loaded_at,
            "newest": iso(self.newest),
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
            "warn_after": self.warn_after,
            "error_after": self.error_after,
            "verdict": self.verdict,
        }


@dataclass
class StatusReport:
    target: str
    now: float
    models: list[ModelStatus]
    sources: list[SourceStatus]
    heartbeat: Heartbeat | None
    note: str | None = None  # why there is no state to show
    extra: dict[str, Any] = field(default_factory=dict)
    lease: Holder | None = None  # the build or run holding the target's lease (``state/lease.py``)

    def to_json(self) -> dict[str, Any]:
        beat_json = None
        if self.heartbeat is not None:
            beat_json = {
                "owner": self.heartbeat.owner,
                "interval_seconds": self.heartbeat.interval,
                "at": iso(self.heartbeat.at),
                "seconds_ago": round(self.now - self.heartbeat.at, 3),
            }
        return {
            "target": self.target,
            "now": iso(self.now),
            "run": beat_json,
            "models": [status.to_json() for status in self.models],
            "sources": [source.to_json() for source in self.sources],
            "note": self.note,
            "lease": _lease_json(self.lease),
        }


def _lease_json(holder: Holder | None) -> dict[str, Any] | None:
    if holder is None:
        return None
    return {
        "owner": holder.owner,
        "host": holder.host,
        "pid": holder.pid,
        "command": holder.command,
        "since": holder.since,
        "heartbeat": holder.heartbeat,
        "expiry_seconds": holder.expiry,
    }


def _epoch(value: Any) -> float | None:
    """A loaded-at value as epoch seconds; None when it is not a time (an integer cursor)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return _epoch(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _source_statuses(
    adapter: Adapter | None, session: Session, known: dict[TableRef, Any], control: ControlState, now: float
) -> list[SourceStatus]:
    found = []
    sources = sorted({s for ref in session.selected if (m := session.project.models.get(ref)) for s in m.sources})
    for ref in sources:
        spec = session.project.sources.get(ref)
        column = spec.loaded_at_column if spec else None
        newest = None
        if adapter is not None and column and ref in known and column in known[ref]:
            value = adapter.fetch(exp.select(exp.Max(this=exp.column(column, quoted=True))).from_(ref.to_table()))
            newest = _epoch(value[0][0]) if value else None
            if newest is None and value and value[0][0] is not None:
                column = None  # not a time: measure from the changes run saw
        else:
            column = None
        if column is None:
            newest = max(control.changes.get(str(ref), {}).values(), default=None)
        warn, error = (spec.warn_after, spec.error_after) if spec else (None, None)
        age = None if newest is None else max(0.0, now - newest)
        found.append(SourceStatus(str(ref), column, newest, age, warn, error, source_verdict(age, warn, error)))
    return found


def status(options: Options, clock: Clock = time.time) -> StatusReport:
    """``sqlorch status``: read-only; a DuckDB file that does not exist is not created."""
    session = open_session(options)
    now = clock()
    path = session.target.settings.get("path")
    if session.target.type == "duckdb" and path and not str(path).startswith(":") and not Path(path).exists():
        statuses = _statuses(session, StateSnapshot(), ControlState(), now, 0.0)
        models = [statuses[name] for name in sorted(_managed(session))]
        note = f"{Path(path).name} does not exist yet: nothing has been built"
        return StatusReport(session.target.name, now, models, _source_statuses(None, session, {}, ControlState(), now),
                            None, note)  # fmt: skip
    adapter = connect(session.target)
    try:
        sources = [s for ref in session.selected if (m := session.project.models.get(ref)) for s in m.sources]
        known = adapter.columns_many([*STATE_TABLES, *CONTROL_TABLES, LEASE, *sources])
        snapshot = load_snapshot(adapter) if all(t in known for t in STATE_TABLES) else StateSnapshot()
        control = load_control(adapter) if all(t in known for t in CONTROL_TABLES) else ControlState()
        interval = control.heartbeat.interval if control.heartbeat else 0.0
        statuses = _statuses(session, snapshot, control, now, interval)
        source_statuses = _source_statuses(adapter, session, known, control, now)
        lease = read_holder(adapter) if LEASE in known else None
    finally:
        adapter.close()
    models = [statuses[name] for name in sorted(_managed(session))]
    return StatusReport(session.target.name, now, models, source_statuses, control.heartbeat, lease=lease)


def set_suspended(options: Options, name: str, suspended: bool) -> str:
    """``sqlorch suspend|resume MODEL``; returns what was done, for the CLI to print."""
    session = open_session(replace(options, select=None, exclude=None))
    refs = [ref for ref in select_nodes(session.project, session.dag, name, None) if ref in session.project.models]
    if len(refs) != 1:
        raise GraphError(f"'{name}' is not one model", hint="name a model, e.g. marts.daily_revenue")
    model = str(refs[0])
    adapter = connect(session.target)
    try:
        ensure_control(adapter, adapter.columns_many(CONTROL_TABLES))
        control = load_control(adapter)
        state = control.models.get(model, ModelControl())
        if not suspended and not state.suspended:
            blockers = sorted(
                a for a in _graph(session).ancestors(model) if control.models.get(a, ModelControl()).suspended
            )
            if blockers:
                raise SqlorchError(
                    f"{model} is suspended because upstream {blockers[0]} is",
                    hint=f"resume {blockers[0]}: its descendants resume with it",
                )
            return f"{model} is not suspended"
        if suspended and state.suspended:
            return f"{model} is already suspended"
        with adapter.transaction():
            save_models(
                adapter, {model: replace(state, suspended=suspended, failures=0 if not suspended else state.failures)}
            )
    finally:
        adapter.close()
    if suspended:
        return f"suspended {model} and its descendants: sqlorch run builds none of them until `sqlorch resume {model}`"
    return f"resumed {model}: sqlorch run builds it again when it is due"
