"""The control-plane commands: ``run``, ``status``, ``suspend``, ``resume``.

Kept beside ``cli.py`` (which registers them with ``register``) and built on its
option types, ``_options`` and ``_fail``, so they read and fail like every other command.

``run`` works on a thread of its own; the main thread only waits and takes the signals.
SIGTERM or SIGINT stops the build that is running (its statements interrupted, its
transactions rolled back: every model before or after its step), records the run in the
ledger, removes the heartbeat and exits: 0 for SIGTERM (a service manager's ordinary
stop), 130 for Ctrl-C. A second signal exits at once, which every target survives as it
survives a crash.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sqlorch.errors import SqlorchError

if TYPE_CHECKING:
    from sqlorch.api_run import Runner, StatusReport, Tick
    from sqlorch.cli import Audits, Debug, Exclude, ProfilesDir, ProjectDir, Select, TargetOpt, Threads, Vars
    from sqlorch.execution.stop import StopRequest


_SHARED = ("ProjectDir", "ProfilesDir", "TargetOpt", "Select", "Exclude", "Threads", "Vars", "Audits", "Debug")
Interval = Annotated[str, typer.Option("--interval", help="Time between ticks, e.g. 30s, 5m.")]
Once = Annotated[bool, typer.Option("--once", help="One tick, then exit (for an outside scheduler).")]
Port = Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1:PORT.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable status.")]
ModelArg = Annotated[str, typer.Argument(help="A model, e.g. marts.daily_revenue.")]
_cli: ModuleType  # the CLI module, set by register()


def register(app: typer.Typer, cli: ModuleType) -> None:
    """Add the commands to ``app``. ``cli`` is the CLI module (``sqlorch.cli``, or
    ``__main__`` under ``python -m sqlorch.cli``): its option types and helpers are shared,
    and typer evaluates the commands' annotations in this module's globals."""
    global _cli
    _cli = cli
    globals().update({name: getattr(cli, name) for name in _SHARED})
    for command in (run, status, suspend, resume):
        app.command()(command)


def run(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    threads: Threads = 4,
    vars: Vars = None,
    audits: Audits = "on",
    interval: Interval = "30s",
    once: Once = False,
    metrics_port: Port = None,
    debug: Debug = False,
) -> None:
    """Keep every selected model within its freshness target: watch the sources, build what is due."""
    from dataclasses import replace

    from sqlorch.api_run import Runner
    from sqlorch.schedule.freshness import parse_duration

    try:
        options = _cli._options(project_dir, profiles_dir, target, select, exclude, False, threads, vars)
        options = replace(options, audits=_cli._audit_mode(audits))
        try:
            seconds = parse_duration(interval)
        except ValueError as error:
            raise SqlorchError(f"--interval: {error}") from None
        runner = Runner(options, seconds)
        runner.load()  # a broken project fails now, not on the first tick
        metrics = _metrics(metrics_port) if metrics_port is not None else None
    except Exception as error:  # noqa: BLE001
        _cli._fail(error, debug)
    raise typer.Exit(_loop(runner, once, metrics, debug))


def status(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    as_json: AsJson = False,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Per model: freshness target, lag, last success, next due, failures, suspension; per source: its verdict."""
    from sqlorch import api_run

    try:
        report = api_run.status(_cli._options(project_dir, profiles_dir, target, select, exclude, vars_=vars))
    except Exception as error:  # noqa: BLE001
        _cli._fail(error, debug)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        _render_status(report)


def _suspension(suspend: bool, model: str, project_dir: Path, profiles_dir: Path | None, target: str | None,
                vars_: str | None, debug: bool) -> None:  # fmt: skip
    from sqlorch import api_run
    from sqlorch.console import console

    try:
        options = _cli._options(project_dir, profiles_dir, target, None, None, vars_=vars_)
        message = api_run.set_suspended(options, model, suspend)
    except Exception as error:  # noqa: BLE001
        _cli._fail(error, debug)
    console.line(message)


def suspend(
    model: ModelArg,
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Stop sqlorch run from building a model and its descendants."""
    _suspension(True, model, project_dir, profiles_dir, target, vars, debug)


def resume(
    model: ModelArg,
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Let sqlorch run build a suspended model (and its descendants) again; its failure count restarts."""
    _suspension(False, model, project_dir, profiles_dir, target, vars, debug)


class _Signalled(BaseException):
    """SIGTERM or SIGINT reached the main thread while it waits for the loop."""


def _loop(runner: Runner, once: bool, metrics: Any, debug: bool) -> int:
    """Tick until stopped; returns the exit code."""

    stopping, done = threading.Event(), threading.Event()  # an Event, not Thread.join (CPython gh-90882)
    received: list[int] = []
    current: list[StopRequest] = []
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["code"] = _ticks(runner, once, metrics, stopping, current)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = error
        finally:
            done.set()

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        raise _Signalled

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    threading.Thread(target=work, name="sqlorch-run", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except _Signalled:
        stopping.set()
        for request in current:
            request.stop()
        try:
            while not done.wait(0.1):
                pass
        except _Signalled:
            sys.stderr.write("interrupted again: exiting without waiting\n")
            sys.stderr.flush()
            os._exit(130)
    return _finish(runner, metrics, outcome, received, debug)


def _finish(runner: Runner, metrics: Any, outcome: dict[str, Any], received: list[int], debug: bool) -> int:
    try:
        runner.close()
    except SqlorchError as error:
        sys.stderr.write(f"could not remove the heartbeat: {error.render()}\n")
    if metrics is not None:
        metrics.close()
    if received:
        name = "SIGTERM" if received[0] == signal.SIGTERM else "SIGINT"
        sys.stderr.write(f"stopped by {name}: the run is recorded; the next `sqlorch run` carries on\n")
        return 0 if received[0] == signal.SIGTERM else 130
    if "error" in outcome:
        try:
            _cli._fail(outcome["error"], debug)
        except typer.Exit as exit_:
            return int(exit_.exit_code)
    return int(outcome.get("code", 0))


def _ticks(runner: Runner, once: bool, metrics: Any, stopping: threading.Event, current: list[StopRequest]) -> int:
    """The loop; returns the exit code of ``--once``. A tick that fails (the warehouse
    unreachable, a model file broken by an edit) is reported and the loop goes on: a
    service must outlive a bad minute."""
    from sqlorch.console import BuildProgress, console, errors
    from sqlorch.execution.stop import StopRequest

    session = runner.load()
    console.line(
        ("sqlorch run", "bold"),
        f": {len(session.selected)} nodes on target '{session.target.name}', "
        f"a tick every {runner.interval:g}s (pid {os.getpid()})",
    )
    while not stopping.is_set():
        started = time.monotonic()
        stop = StopRequest()
        current[:] = [stop]
        try:
            with BuildProgress(partial(_total, stop)) as progress:
                tick = runner.tick(stop, progress, _announce)
        except SqlorchError as error:
            if stopping.is_set():
                return 0  # stopped while waiting for the lease or capturing: nothing was half-done
            if once:
                raise
            errors.line((f"tick failed: {error.render()}", "red"))
        else:
            _report(tick)
            if metrics is not None:
                metrics.update(tick)
            if once or tick.interrupted:
                return 1 if tick.result is not None and tick.result.failed and not tick.interrupted else 0
        stopping.wait(max(0.0, runner.interval - (time.monotonic() - started)))
    return 0


def _total(stop: StopRequest) -> int:
    return stop.total


def _announce(tick: Tick, reasons: dict[str, str]) -> None:
    """Before a tick's build: what is built and why (a line per model)."""
    from sqlorch.console import console

    stamp = time.strftime("%H:%M:%S", time.gmtime(tick.checked_at))
    changed = f" (changed: {', '.join(tick.changed)})" if tick.changed else ""
    console.line((f"{stamp} tick", "bold"), f": building {len(tick.due)} due models{changed}")
    for name in tick.due:
        console.line(f"  {name}: ", (reasons[name], "dim"))
    sys.stdout.flush()


def _report(tick: Tick) -> None:
    from sqlorch.console import console

    if tick.result is None:
        return
    counts: dict[str, int] = {}
    for item in tick.result.results:
        counts[item.status] = counts.get(item.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    stamp = time.strftime("%H:%M:%S", time.gmtime(tick.checked_at + tick.seconds))
    console.line((f"{stamp} done", "bold"), f": {summary} in {tick.seconds:.2f}s")
    sys.stdout.flush()


def _render_status(report: StatusReport) -> None:
    from rich.table import Table
    from rich.text import Text

    from sqlorch.console import console

    if report.note:
        console.line((report.note, "dim"))
    run = report.to_json()["run"]
    console.line(
        f"sqlorch run on '{report.target}': "
        + (f"{run['owner']}, last tick {run['seconds_ago']:.0f}s ago" if run else "not running")
    )
    # who writes to the target now; on DuckDB a holder has the file open too: status waited for it
    console.line("lease: " + (f"held by {report.lease.describe()}" if report.lease else "free"))
    table = Table(title="models")
    for column in ("model", "freshness", "lag", "last success", "next due", "failures", "state"):
        table.add_column(column)
    for model in report.models:
        data = model.to_json()
        state = f"suspended ({model.suspended_by})" if model.suspended_by else "suspended" if model.suspended else ""
        table.add_row(
            model.model,
            "-" if model.freshness is None else f"{model.freshness:g}s",
            f"{model.lag_seconds:.0f}s",
            str(data["last_success"] or "-"),
            str(data["next_due"] or "-"),
            str(model.consecutive_failures),
            Text(state or model.reason),
        )
    console.print(table)
    if report.sources:
        sources = Table(title="sources")
        for column in ("source", "newest", "age", "warn after", "error after", "verdict"):
            sources.add_column(column)
        for source in report.sources:
            data = source.to_json()
            sources.add_row(
                source.source,
                str(data["newest"] or "-"),
                "-" if source.age_seconds is None else f"{source.age_seconds:.0f}s",
                "-" if source.warn_after is None else f"{source.warn_after:g}s",
                "-" if source.error_after is None else f"{source.error_after:g}s",
                source.verdict or "-",
            )
        console.print(sources)


def _metrics(port: int) -> Any:
    from sqlorch.metrics import Metrics

    return Metrics(port)
