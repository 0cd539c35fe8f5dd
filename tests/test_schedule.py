"""The control plane's decisions with an injected clock: no sleeps, no warehouse.

Freshness targets and lag, ``downstream``, eager models, cron in time zones across DST
changes, due-ness with measured build times, suspension and resume; and the declarations
themselves (headers, ``sqlorch.yml``, sources YAML) with their ``path:line:col`` errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sqlorch.config import load_project_settings
from sqlorch.errors import ConfigError
from sqlorch.project.header import parse_header
from sqlorch.project.sources import load_sources
from sqlorch.refs import TableRef
from sqlorch.schedule.cron import CronSyntaxError, parse_cron
from sqlorch.schedule.due import (
    Declared,
    Graph,
    ModelControl,
    after_build,
    caught_up,
    schedule,
    stale_models,
)
from sqlorch.schedule.freshness import DOWNSTREAM, parse_duration, source_verdict

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def firings(expression: str, zone: str, start: str, count: int) -> list[str]:
    cron, moment, found = parse_cron(expression, zone), utc(start), []
    for _ in range(count):
        nxt = cron.next_after(moment)
        assert nxt is not None
        found.append(nxt.strftime("%Y-%m-%dT%H:%MZ"))
        moment = nxt
    return found


# -- durations and verdicts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "15 minutes", "0s", "5w", "-5m", "15m junk"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(text)


def test_source_verdicts() -> None:
    assert source_verdict(60, 3600, 7200) == "ok"
    assert source_verdict(3601, 3600, 7200) == "warn"
    assert source_verdict(7201, 3600, 7200) == "error"
    assert source_verdict(None, 3600, None) == "warn"  # no data at all: as late as can be
    assert source_verdict(None, None, 7200) == "error"
    assert source_verdict(99999, None, None) is None  # nothing declared: no verdict


# -- cron -------------------------------------------------------------------------------------


def test_cron_in_a_time_zone_follows_its_offset() -> None:
    # 06:00 in Berlin is 04:00 UTC in summer (CEST) and 05:00 UTC in winter (CET)
    assert firings("0 6 * * *", "Europe/Berlin", "2026-07-01T12:00:00+00:00", 2) == [
        "2026-07-02T04:00Z",
        "2026-07-03T04:00Z",
    ]
    assert firings("0 6 * * *", "Europe/Berlin", "2026-12-01T12:00:00+00:00", 1) == ["2026-12-02T05:00Z"]
    assert firings("0 6 * * *", "UTC", "2026-12-01T12:00:00+00:00", 1) == ["2026-12-02T06:00Z"]


def test_cron_across_spring_forward_fires_once_when_the_gap_ends() -> None:
    # Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night
    assert firings("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+00:00", 3) == [
        "2026-03-29T01:00Z",  # 03:00 CEST, the end of the gap
        "2026-03-30T00:30Z",  # 02:30 CEST
        "2026-03-31T00:30Z",
    ]
    # two skipped times (02:00 and 02:30) still fire once
    assert firings("0,30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+00:00", 2) == [
        "2026-03-29T01:00Z",
        "2026-03-30T00:00Z",
    ]


def test_cron_across_fall_back_fires_a_fixed_time_once() -> None:
    # Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    assert firings("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00+00:00", 2) == [
        "2026-10-25T00:30Z",  # 02:30 CEST, the first pass only
        "2026-10-26T01:30Z",  # 02:30 CET
    ]


def test_cron_every_hour_keeps_firing_through_the_repeated_hour() -> None:
    assert firings("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:50:00+00:00", 4) == [
        "2026-10-25T00:00Z",  # 02:00 CEST
        "2026-10-25T00:30Z",  # 02:30 CEST
        "2026-10-25T01:00Z",  # 02:00 CET
        "2026-10-25T01:30Z",  # 02:30 CET
    ]


def test_cron_fields() -> None:
    # both day fields restricted: either matches (the 13th, and every Friday)
    assert firings("0 0 13 * fri", "UTC", "2026-11-01T00:00:00+00:00", 3) == [
        "2026-11-06T00:00Z",
        "2026-11-13T00:00Z",
        "2026-11-20T00:00Z",
    ]
    assert firings("15 9-17/4 * * mon-fri", "UTC", "2026-11-27T16:00:00+00:00", 3) == [  # a Friday
        "2026-11-27T17:15Z",
        "2026-11-30T09:15Z",  # Monday
        "2026-11-30T13:15Z",
    ]
    assert firings("0 0 * * 7", "UTC", "2026-11-30T00:00:00+00:00", 1) == ["2026-12-06T00:00Z"]  # 7 is Sunday
    assert firings("@monthly", "UTC", "2026-11-30T00:00:00+00:00", 1) == ["2026-12-01T00:00Z"]
    assert parse_cron("0 0 30 2 *").next_after(utc("2026-01-01T00:00:00+00:00")) is None


@pytest.mark.parametrize(
    ("expression", "message", "offset"),
    [
        ("0 6 * *", "5 fields", 0),
        ("0 25 * * *", "hour 25 is out of range 0-23", 2),
        ("0 6 * foo *", "month 'foo' is not a number or jan-dec", 6),
        ("0 6 * * 1-x", "day of week 'x'", 10),
        ("5-1 * * * *", "runs backwards", 0),
        ("*/0 * * * *", "out of range", 2),
    ],
)
def test_cron_errors_point_at_the_field(expression: str, message: str, offset: int) -> None:
    with pytest.raises(CronSyntaxError, match=message) as error:
        parse_cron(expression)
    assert error.value.offset == offset


# -- declarations ---------------------------------------------------------------------------


def test_model_header_declarations() -> None:
    config = parse_header("-- freshness: 15m\n-- cron: 0 6 * * *\n-- cron_tz: Europe/Berlin\nSELECT 1", Path("m.sql"))
    assert config.freshness == 900
    assert config.cron is not None and (config.cron.text, config.cron.zone) == ("0 6 * * *", "Europe/Berlin")
    assert parse_header("-- freshness: downstream\nSELECT 1", Path("m.sql")).freshness == DOWNSTREAM


@pytest.mark.parametrize(
    ("header", "rendered"),
    [
        ("-- freshness: 15 minutes", "m.sql:1:15: error: freshness must be a duration such as 15m"),
        ("-- freshness: downstrem", "hint: did you mean 'downstream'?"),
        ("-- cron: 0 25 * * *", "m.sql:1:12: error: hour 25 is out of range 0-23"),
        ("-- cron: 0 6 * * *\n-- cron_tz: europe/berlin", "m.sql:2:13: error: unknown time zone 'europe/berlin'"),
        ("-- cron: 0 6 * * *\n-- cron_tz: Europe/Berlinn", "did you mean 'Europe/Berlin'?"),
        ("-- cron_tz: UTC", "m.sql:1:13: error: cron_tz is set but there is no cron"),
        ("-- freshnes: 5m", "m.sql:1:4: error: unknown model setting 'freshnes'\n  hint: did you mean 'freshness'?"),
    ],
)
def test_model_header_errors(header: str, rendered: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_header(header + "\nSELECT 1", Path("m.sql"))
    assert rendered in error.value.render()


def test_project_settings(tmp_path: Path) -> None:
    (tmp_path / "sqlorch.yml").write_text("default_freshness: 1h\nsuspend_after_failures: 3\n")
    settings = load_project_settings(tmp_path)
    assert (settings.default_freshness, settings.suspend_after_failures) == (3600, 3)
    (tmp_path / "sqlorch.yml").write_text("name: x\ndefault_freshness: soon\n")
    with pytest.raises(ConfigError, match="default_freshness") as error:
        load_project_settings(tmp_path)
    assert error.value.render().startswith(f"{tmp_path / 'sqlorch.yml'}:2:1: error:")
    (tmp_path / "sqlorch.yml").write_text("suspend_after_failures: 0\n")
    with pytest.raises(ConfigError, match="at least 1"):
        load_project_settings(tmp_path)


def test_source_freshness(tmp_path: Path) -> None:
    path = tmp_path / "sources.yml"
    path.write_text(
        "sources:\n"
        "  raw.events:\n"
        "    cursor: _loaded_at\n"
        "    append_only: true\n"
        "    freshness: {warn_after: 2h, error_after: 6h}\n"
        "  raw.users: {unique_key: id, loaded_at: synced_at, freshness: {error_after: 1d}}\n"
    )
    specs = load_sources([path])
    events, users = specs[TableRef("raw", "events")], specs[TableRef("raw", "users")]
    assert (events.warn_after, events.error_after, events.loaded_at_column) == (7200, 21600, "_loaded_at")
    assert (users.warn_after, users.error_after, users.loaded_at_column) == (None, 86400, "synced_at")
    path.write_text("sources:\n  raw.events:\n    freshness: {warn_after: 2h, eror_after: 6h}\n")
    with pytest.raises(ConfigError, match="unknown freshness setting 'eror_after'") as error:
        load_sources([path])
    assert "did you mean 'error_after'?" in error.value.render()
    path.write_text("sources:\n  raw.events:\n    freshness: {warn_after: 6h, error_after: 2h}\n")
    with pytest.raises(ConfigError, match="longer than its error_after"):
        load_sources([path])


# -- lag and due-ness -------------------------------------------------------------------------

# raw.events -> staging.ev -> marts.totals, and marts.other also reads staging.ev
GRAPH = Graph(
    parents={"staging.ev": set(), "marts.totals": {"staging.ev"}, "marts.other": {"staging.ev"}},
    sources={"staging.ev": {"raw.events"}, "marts.totals": set(), "marts.other": set()},
)
ALL = set(GRAPH.parents)


def plan(
    now: float,
    declared: dict[str, Declared],
    control: dict[str, ModelControl] | None = None,
    changes: dict[str, list[float]] | None = None,
    stale: set[str] | None = None,
    interval: float = 30,
    built: set[str] = ALL,
    managed: set[str] | None = None,
) -> dict[str, tuple[bool, float, float | None, str]]:
    found = schedule(
        now, interval, declared, GRAPH, control or {}, changes or {}, ALL if stale is None else stale, built, managed
    )
    return {name: (s.due, s.lag_seconds, s.next_due, s.reason) for name, s in found.items()}


def test_lag_is_measured_from_the_oldest_unreflected_change() -> None:
    control = {m: ModelControl(reflects_until=T0 - 100) for m in ALL}
    changes = {"raw.events": [T0 - 200, T0 - 50, T0 - 10]}  # the first is reflected already
    found = plan(T0, {m: Declared(3600.0) for m in ALL}, control, changes)
    assert {name: lag for name, (_, lag, _, _) in found.items()} == {m: 50 for m in ALL}
    # up to date by the watermarks: lag 0 whatever changes were seen
    assert plan(T0, {m: Declared(3600.0) for m in ALL}, control, changes, stale=set())["marts.totals"][1] == 0


def test_due_when_lag_would_pass_the_target_before_the_next_tick_and_build() -> None:
    declared = {
        "staging.ev": Declared(DOWNSTREAM),
        "marts.totals": Declared(300.0),
        "marts.other": Declared(DOWNSTREAM),
    }
    control = {m: ModelControl(reflects_until=T0 - 1, build_seconds=10.0) for m in ALL}
    changes = {"raw.events": [T0]}
    # target 300 s, tick 30 s, build 10 s (the model) + 10 s (its lagging upstream): due at lag 250
    assert plan(T0 + 249, declared, control, changes)["marts.totals"][:3] == (False, 249, T0 + 250)
    due, lag, next_due, reason = plan(T0 + 251, declared, control, changes)["marts.totals"]
    assert (due, lag, next_due) == (True, 251, T0 + 251)
    assert "target 300s" in reason
    # a slower measured build makes it due earlier
    slow = {**control, "marts.totals": ModelControl(reflects_until=T0 - 1, build_seconds=100.0)}
    assert plan(T0 + 170, declared, slow, changes)["marts.totals"][0] is True
    assert plan(T0 + 150, declared, slow, changes)["marts.totals"][0] is False


def test_downstream_takes_its_consumers_target_and_is_built_for_them() -> None:
    declared = {"staging.ev": Declared(DOWNSTREAM), "marts.totals": Declared(300.0), "marts.other": Declared(900.0)}
    control = {m: ModelControl(reflects_until=T0 - 1) for m in ALL}
    found = schedule(T0 + 1, 0, declared, GRAPH, control, {"raw.events": [T0]}, ALL, ALL)
    assert found["staging.ev"].freshness == 300  # the smallest target of its consumers
    # a downstream model whose consumers have no target (cron only) is never due on its own
    daily = parse_cron("0 6 * * *")
    lonely = {
        "staging.ev": Declared(DOWNSTREAM),
        "marts.totals": Declared(cron=daily),
        "marts.other": Declared(cron=daily),
    }
    ok = {m: ModelControl(reflects_until=T0 - 1, last_success=T0 - 1) for m in ALL}
    assert plan(T0 + 60, lonely, ok, {"raw.events": [T0]})["staging.ev"] == (False, 60, None, "not due")
    # with a consumer's target, it is due by its own lag against that target
    due = plan(T0 + 400, declared, control, {"raw.events": [T0]})
    assert due["marts.totals"][0] and due["staging.ev"][0]
    assert due["staging.ev"][3].endswith("would pass its target 300s")


def test_upstream_of_a_due_model_is_due_only_when_it_lags_or_is_missing() -> None:
    declared = {"staging.ev": Declared(3600.0), "marts.totals": Declared(60.0), "marts.other": Declared(3600.0)}
    control = {m: ModelControl(reflects_until=T0 - 1) for m in ALL}
    found = plan(T0 + 100, declared, control, {"raw.events": [T0]}, interval=0)
    assert found["marts.totals"][0] is True
    assert found["staging.ev"][:1] == (True,) and found["staging.ev"][3] == "upstream of marts.totals"
    assert found["marts.other"][0] is False  # a sibling is not pulled in
    # staging.ev up to date (only marts.totals still has to read its batch): not rebuilt
    found = plan(T0 + 100, declared, control, {"raw.events": [T0]}, stale={"marts.totals"}, interval=0)
    assert found["marts.totals"][0] is True and found["staging.ev"][0] is False


def test_eager_models_are_built_at_the_next_tick_after_a_change() -> None:
    control = {m: ModelControl(reflects_until=T0 - 1) for m in ALL}
    found = plan(T0 + 1, {}, control, {"raw.events": [T0]})
    assert all(due for due, *_ in found.values())
    assert schedule(T0 + 1, 30, {}, GRAPH, control, {"raw.events": [T0]}, ALL, ALL)["staging.ev"].freshness is None
    assert not any(due for due, *_ in plan(T0 + 1, {}, control, {"raw.events": [T0]}, stale=set()).values())


def test_models_never_built_are_due() -> None:
    found = plan(T0, {m: Declared(3600.0) for m in ALL}, stale=set(), built={"staging.ev"})
    assert found["marts.totals"][0] and found["marts.totals"][3] == "not built yet"
    assert not found["staging.ev"][0]


def test_cron_is_due_once_it_fired_since_the_last_success() -> None:
    berlin = parse_cron("0 6 * * *", "Europe/Berlin")
    declared = {m: Declared(cron=berlin) for m in ALL}
    last = utc("2026-03-28T04:00:00+00:00").timestamp()  # 05:00 CET, before that day's firing
    control = {m: ModelControl(reflects_until=last, last_success=last) for m in ALL}
    before = utc("2026-03-28T04:59:00+00:00").timestamp()
    due, _, next_due, _ = plan(before, declared, control, stale=set())["marts.totals"]
    assert (due, next_due) == (False, utc("2026-03-28T05:00:00+00:00").timestamp())  # 06:00 CET
    after = utc("2026-03-28T05:00:30+00:00").timestamp()
    assert plan(after, declared, control, stale=set())["marts.totals"][0] is True
    # succeeded at 06:00:40 CET: the next firing is 06:00 CEST, an hour earlier in UTC
    done = {m: ModelControl(last_success=after + 10) for m in ALL}
    assert (
        plan(after + 20, declared, done, stale=set())["marts.totals"][2] == utc("2026-03-29T04:00:00+00:00").timestamp()
    )


def test_unmanaged_models_are_only_built_for_the_managed_ones() -> None:
    control = {m: ModelControl(reflects_until=T0 - 1) for m in ALL}
    found = plan(T0 + 1, {}, control, {"raw.events": [T0]}, managed={"marts.totals"})
    assert found["marts.totals"][0] and found["staging.ev"][0]  # upstream of the managed one
    assert found["marts.other"] == (False, 1, None, "not selected")


def test_failures_suspend_a_model_and_its_descendants_until_resumed() -> None:
    state = ModelControl(reflects_until=T0 - 1)
    for attempt in range(1, 5):
        state = after_build(state, "error", "full", 1.0, T0 + attempt, T0, limit=5)
        assert (state.failures, state.suspended) == (attempt, False)
    state = after_build(state, "error", "full", 1.0, T0 + 5, T0, limit=5)
    assert (state.failures, state.suspended) == (5, True)
    control = {"staging.ev": state, "marts.totals": ModelControl(reflects_until=T0 - 1)}
    found = schedule(T0 + 10, 30, {}, GRAPH, control, {"raw.events": [T0]}, ALL, ALL)
    assert [(s.due, s.suspended, s.suspended_by) for s in found.values()] == [
        (False, True, None),
        (False, True, "staging.ev"),
        (False, True, "staging.ev"),
    ]
    assert found["marts.totals"].next_due is None and found["marts.totals"].reason.endswith("staging.ev is suspended")
    # resume (what `sqlorch resume` writes): due again at once, failures start over
    resumed = {**control, "staging.ev": ModelControl(reflects_until=T0 - 1)}
    assert all(s.due for s in schedule(T0 + 10, 30, {}, GRAPH, resumed, {"raw.events": [T0]}, ALL, ALL).values())


def test_a_success_resets_failures_and_measures_the_build() -> None:
    state = ModelControl(failures=3, build_seconds=4.0)
    done = after_build(state, "success", "incremental", 2.5, T0 + 9, T0, limit=5)
    assert done == ModelControl(reflects_until=T0, last_success=T0 + 9, failures=0, build_seconds=2.5)
    skipped = after_build(state, "success", "skip", 0.01, T0 + 9, T0, limit=5)
    assert skipped.build_seconds == 4.0  # a skip measures nothing about building
    assert after_build(state, "skipped", "skip", 0, T0, T0, limit=5) == state  # upstream failed: not its failure


def test_stale_models_follow_pending_batches_downstream() -> None:
    inputs = {"staging.ev": ["raw.events"], "marts.totals": ["staging.ev"], "marts.other": ["staging.ev"]}
    pending = {("marts.other", "staging.ev")}
    assert stale_models(GRAPH, inputs, lambda m, i: (m, i) in pending) == {"marts.other"}
    pending = {("staging.ev", "raw.events")}
    assert stale_models(GRAPH, inputs, lambda m, i: (m, i) in pending) == ALL


def test_a_model_built_outside_run_catches_up_without_a_stale_lag() -> None:
    # run built everything at T0; a change at T0+10; a manual `sqlorch build` consumed it
    control = {m: ModelControl(reflects_until=T0, last_success=T0) for m in ALL}
    changes = {"raw.events": [T0 + 10]}
    current = caught_up(GRAPH, control, changes, stale=set(), built=ALL, checked_at=T0 + 20)
    assert {m: c.reflects_until for m, c in current.items()} == {m: T0 + 20 for m in ALL}
    # a later change then lags from its own first-seen time, not from the one consumed
    control = {**control, **current}
    found = plan(T0 + 130, {m: Declared(3600.0) for m in ALL}, control, {"raw.events": [T0 + 10, T0 + 100]})
    assert found["marts.totals"][1] == 30
    # the steady state writes nothing: stale models wait, caught-up ones are left alone
    assert caught_up(GRAPH, control, {"raw.events": [T0 + 10, T0 + 100]}, ALL, ALL, T0 + 130) == {}
    assert caught_up(GRAPH, control, {"raw.events": [T0 + 10]}, set(), ALL, T0 + 130) == {}
