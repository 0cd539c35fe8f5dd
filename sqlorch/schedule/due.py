"""Which models are due, given the time, the declarations and the control state: pure.

Lag: a model that reflects every source change captured so far lags 0. Otherwise its lag
is now minus the first-seen time of the oldest change to any of its (transitive) sources
that it does not reflect yet, as Snowflake measures lag from the root tables. A model
reflects every change first seen up to ``reflects_until``: the time its last successful
build in ``run`` checked the sources.

A model is due when it is not suspended and one of these holds:

- it has not been built yet;
- its cron fired since its last success;
- it lags, and its lag at the end of the next tick's build would pass its target: lag +
  the tick interval + the build seconds measured for it and its lagging ancestors >
  target. A model with no target and no cron is eager (target 0: built at the next tick
  after any change); ``downstream`` takes the smallest target of its consumers and, with
  no consumer that has one, is built only for them (as Snowflake's DOWNSTREAM);
- it is upstream of a due model that needs it (the build selects ``+model``).

A model failing ``limit`` times in a row is suspended, and so is everything downstream of
it, until ``resume``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlorch.schedule.cron import CronSchedule
from sqlorch.schedule.freshness import DOWNSTREAM, Freshness

DEFAULT_SUSPEND_AFTER = 5  # consecutive failures, as Snowflake suspends a dynamic table


@dataclass(frozen=True)
class Declared:
    """A model's schedule as declared, ``default_freshness`` already applied."""

    freshness: Freshness | None = None
    cron: CronSchedule | None = None


@dataclass(frozen=True)
class ModelControl:
    """A model's control state as kept in ``_sqlorch.control_models`` (times: epoch seconds)."""

    reflects_until: float | None = None
    last_success: float | None = None
    failures: int = 0
    suspended: bool = False
    build_seconds: float | None = None


@dataclass(frozen=True)
class Graph:
    """The managed models: their upstream models and their direct sources (names)."""

    parents: Mapping[str, set[str]]
    sources: Mapping[str, set[str]]

    def ancestors(self, model: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.parents.get(model, ()))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.parents.get(name, ()))
        return seen

    def children(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {name: set() for name in self.parents}
        for child, parents in self.parents.items():
            for parent in parents:
                found.setdefault(parent, set()).add(child)
        return found

    def all_sources(self, model: str) -> set[str]:
        found = set(self.sources.get(model, ()))
        for ancestor in self.ancestors(model):
            found |= self.sources.get(ancestor, set())
        return found


@dataclass(frozen=True)
class ModelStatus:
    model: str
    freshness: float | None  # target seconds (downstream resolved), None for eager or cron only
    lag_seconds: float
    last_success: float | None
    next_due: float | None
    consecutive_failures: int
    suspended: bool
    suspended_by: str | None  # the suspended ancestor, when the suspension is inherited
    due: bool
    reason: str  # why it is due, or why not

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "freshness": self.freshness,
            "lag_seconds": round(self.lag_seconds, 3),
            "last_success": iso(self.last_success),
            "next_due": iso(self.next_due),
            "consecutive_failures": self.consecutive_failures,
            "suspended": self.suspended,
            "suspended_by": self.suspended_by,
            "due": self.due,
            "reason": self.reason,
        }


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def stale_models(graph: Graph, inputs: Mapping[str, Iterable[str]], pending: Callable[[str, str], bool]) -> set[str]:
    """Models with an input batch they have not consumed, or an upstream model that has."""
    memo: dict[str, bool] = {}

    def stale(model: str) -> bool:
        if model not in memo:
            memo[model] = False  # a cycle cannot occur (the DAG is checked); this only guards recursion
            memo[model] = any(pending(model, name) for name in inputs.get(model, ())) or any(
                stale(parent) for parent in graph.parents.get(model, ())
            )
        return memo[model]

    return {model for model in graph.parents if stale(model)}


def targets(declared: Mapping[str, Declared], graph: Graph) -> dict[str, float | None]:
    """Each model's lag target in seconds: 0 for eager, None for none (cron only, or
    downstream of no consumer with a target)."""
    children = graph.children()
    memo: dict[str, float | None] = {}

    def target(model: str) -> float | None:
        if model not in memo:
            memo[model] = None
            spec = declared.get(model, Declared())
            if spec.freshness == DOWNSTREAM:
                wanted = [t for child in children.get(model, ()) if (t := target(child)) is not None]
                memo[model] = min(wanted) if wanted else None
            elif spec.freshness is not None:
                memo[model] = float(spec.freshness)
            elif spec.cron is None:
                memo[model] = 0.0
        return memo[model]

    return {model: target(model) for model in graph.parents}


def schedule(
    now: float,
    interval: float,
    declared: Mapping[str, Declared],
    graph: Graph,
    control: Mapping[str, ModelControl],
    changes: Mapping[str, list[float]],
    stale: set[str],
    built: set[str],
    managed: set[str] | None = None,
) -> dict[str, ModelStatus]:
    """Every model's status at ``now``. ``changes``: per source the first-seen times of its
    recorded changes; ``stale``: see ``stale_models``; ``built``: models whose table
    sqlorch has built; ``managed``: the models ``run`` keeps fresh (default: all), the
    others are built only as upstream of a due one."""
    goals = targets(declared, graph)
    suspended_by = _suspensions(graph, control)
    found: dict[str, ModelStatus] = {}
    for model in graph.parents:
        state = control.get(model, ModelControl())
        spec = declared.get(model, Declared())
        oldest = _oldest_unreflected(model, graph, changes, state) if model in stale else None
        lag = max(0.0, now - oldest) if oldest is not None else 0.0
        estimate = (state.build_seconds or 0.0) + sum(
            control.get(a, ModelControl()).build_seconds or 0.0 for a in graph.ancestors(model) if a in stale
        )
        candidates: list[tuple[float, str]] = []
        if model not in built:
            candidates.append((now, "not built yet"))
        if spec.cron is not None:
            fired = _cron_due(spec.cron, state.last_success, now)
            candidates.append((fired, f"cron '{spec.cron.text}' fired" if fired <= now else f"cron '{spec.cron.text}'"))
        goal = goals[model]
        if goal is not None and oldest is not None:
            at = oldest + goal - interval - estimate
            candidates.append((max(at, now), _lag_reason(lag, goal, interval, estimate)))
        blocker = suspended_by.get(model)
        if blocker is not None:
            reason = "suspended" if blocker == model else f"suspended: upstream {blocker} is suspended"
            found[model] = _status(model, goal, spec, lag, state, None, blocker, False, reason)
            continue
        when, why = min(candidates) if candidates else (None, "up to date")
        when = None if when == float("inf") else when
        if managed is not None and model not in managed:
            when, why = None, "not selected"
        due = when is not None and when <= now
        reason = why if due or (managed is not None and model not in managed) else "not due"
        found[model] = _status(model, goal, spec, lag, state, when, None, due, reason)
    _pull_upstream(found, graph, stale, built, now)
    return found


def _status(
    model: str,
    goal: float | None,
    spec: Declared,
    lag: float,
    state: ModelControl,
    when: float | None,
    blocker: str | None,
    due: bool,
    reason: str,
) -> ModelStatus:
    shown = goal if goal and spec.freshness is not None else None  # eager (0) and cron-only show null
    return ModelStatus(
        model, shown, lag, state.last_success, when, state.failures, blocker is not None,
        blocker if blocker != model else None, due, reason,
    )  # fmt: skip


def _lag_reason(lag: float, goal: float, interval: float, estimate: float) -> str:
    if goal == 0:
        return "changed (no freshness target: built at the next tick)"
    return f"lag {lag:.0f}s + next tick {interval:g}s + build {estimate:.1f}s would pass its target {goal:g}s"


def _oldest_unreflected(
    model: str, graph: Graph, changes: Mapping[str, list[float]], state: ModelControl
) -> float | None:
    seen = [
        moment
        for source in graph.all_sources(model)
        for moment in changes.get(source, ())
        if state.reflects_until is None or moment > state.reflects_until
    ]
    return min(seen, default=None)


def _cron_due(cron: CronSchedule, last_success: float | None, now: float) -> float:
    """When the cron is next due: now if it fired since the last success (or there was none)."""
    if last_success is None:
        return now
    fire = cron.next_after(datetime.fromtimestamp(last_success, UTC))
    return float("inf") if fire is None else fire.timestamp()


def _suspensions(graph: Graph, control: Mapping[str, ModelControl]) -> dict[str, str]:
    """Suspended models and their descendants, each with the suspended model blocking it
    (itself when it is suspended; the first in name order when several are)."""
    found: dict[str, str] = {}
    for model in graph.parents:
        own = control.get(model, ModelControl()).suspended
        blocked = sorted(a for a in graph.ancestors(model) if control.get(a, ModelControl()).suspended)
        if own:
            found[model] = model
        elif blocked:
            found[model] = blocked[0]
    return found


def _pull_upstream(found: dict[str, ModelStatus], graph: Graph, stale: set[str], built: set[str], now: float) -> None:
    """Ancestors of a due model that lag or were never built are due with it."""
    for model, status in sorted(found.items()):
        if not status.due or status.reason.startswith("upstream of"):
            continue
        for ancestor in sorted(graph.ancestors(model)):
            other = found[ancestor]
            if not other.due and not other.suspended and (ancestor in stale or ancestor not in built):
                found[ancestor] = replace(other, due=True, next_due=now, reason=f"upstream of {model}")


def caught_up(
    graph: Graph,
    control: Mapping[str, ModelControl],
    changes: Mapping[str, list[float]],
    stale: set[str],
    built: set[str],
    checked_at: float,
) -> dict[str, ModelControl]:
    """Models up to date by their watermarks whose ``reflects_until`` predates a change they
    have in fact consumed (built by a ``sqlorch build`` outside ``run``, or before ``run``
    first saw them): they reflect every change seen by ``checked_at``. Without this, their
    next lag would count from a change they already hold. Empty in the steady state, so an
    idle tick writes nothing for it."""
    found = {}
    for model in graph.parents:
        if model in stale or model not in built:
            continue
        state = control.get(model, ModelControl())
        newest = max((t for source in graph.all_sources(model) for t in changes.get(source, ())), default=None)
        if newest is not None and (state.reflects_until is None or state.reflects_until < newest):
            found[model] = replace(state, reflects_until=checked_at)
    return found


def after_build(
    state: ModelControl, status: str, action: str, seconds: float, now: float, checked_at: float, limit: int
) -> ModelControl:
    """A model's control state after one build result (``success``, ``error`` or
    ``skipped``). A success reflects every change seen by ``checked_at``; a skip measures
    no build time; the ``limit``-th failure in a row suspends the model."""
    if status == "success":
        measured = state.build_seconds if action == "skip" else seconds
        return replace(state, reflects_until=checked_at, last_success=now, failures=0, build_seconds=measured)
    if status == "error":
        failures = state.failures + 1
        return replace(state, failures=failures, suspended=state.suspended or failures >= limit)
    return state
