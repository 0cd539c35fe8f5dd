"""The sqlorch command line: the one place errors become messages and exit codes."""

from __future__ import annotations

import gc
import inspect
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

# What a build stopped before its plan existed says (importing, loading, compiling, waiting
# for a lock): no model ran, so none is half-done.
NOTHING_STARTED = "interrupted\nno model started\n"


def _exit_at_once(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM while the CLI is still importing: nothing has started yet."""
    os.write(2, NOTHING_STARTED.encode())
    os._exit(130)


if __name__ == "__main__":  # `python -m sqlorch.cli`: covered before the imports below (main() takes over)
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, _exit_at_once)

import typer  # noqa: E402 - after the signal handlers
from typer.core import TyperGroup  # noqa: E402

from sqlorch.errors import SqlorchError  # noqa: E402

if TYPE_CHECKING:
    from typer._click import Context, HelpFormatter  # typer vendors click: no public names for these

T = TypeVar("T")


class _Commands(TyperGroup):
    """The top-level help lists each command's whole first paragraph, wrapped to the
    terminal (click would cut it at the terminal width with "...")."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports rich.markdown and markdown_it, which
    # alone costs ~0.15 s and would put `sqlorch --help` over its 0.3 s budget (issue 5).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _print_version(value: bool) -> None:
    if value:
        from sqlorch import __version__

        typer.echo(f"sqlorch {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """sqlorch: plain SQL models, built incrementally and exactly."""
    if ctx.invoked_subcommand is None:  # a bare `sqlorch` asks what it can do: not an error
        typer.echo(ctx.get_help())


ProjectDir = Annotated[Path, typer.Option("--project-dir", help="Project folder (holds models/).")]
ProfilesDir = Annotated[Path | None, typer.Option("--profiles-dir", help="Folder holding profiles.yml.")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="Target name from profiles.yml.")]
Select = Annotated[str | None, typer.Option("--select", "-s", help="Nodes: name, +name, name+, tag:x, path:p.")]
Exclude = Annotated[str | None, typer.Option("--exclude", help="Nodes to leave out (same grammar).")]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Rebuild every selected model in full.")]
Threads = Annotated[int, typer.Option("--threads", help="Models built at once.")]
Vars = Annotated[str | None, typer.Option("--vars", help="YAML mapping of vars, e.g. '{days: 7}'.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
Audits = Annotated[str, typer.Option("--audits", help="off | warn (run, never block) | on (failing audits block).")]
LeaseTimeout = Annotated[
    float, typer.Option("--lease-timeout", help="Seconds to wait while another process builds the target.", min=0)
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Fail at once if another process builds the target.")]


def _options(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: str | None,
    exclude: str | None,
    full_refresh: bool = False,
    threads: int = 4,
    vars_: str | None = None,
) -> Any:
    from sqlorch.api import Options

    parsed = None
    if vars_:
        import yaml

        try:
            parsed = yaml.safe_load(vars_)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or type(error).__name__
            raise SqlorchError(f"--vars is not valid YAML: {problem}", hint="e.g. --vars '{days: 7}'") from None
        if not isinstance(parsed, dict):
            raise SqlorchError("--vars must be a YAML mapping, e.g. '{days: 7}'")
    if threads < 1:
        raise SqlorchError(f"--threads must be at least 1, not {threads}")
    return Options(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        select=select,
        exclude=exclude,
        full_refresh=full_refresh,
        threads=threads,
        vars=parsed,
    )


def _audit_mode(value: str) -> str:
    from sqlorch.audits.run import MODES

    if value not in MODES:
        raise SqlorchError(f"--audits must be {', '.join(MODES[:-1])} or {MODES[-1]}, not '{value}'")
    return value


def _fail(error: BaseException, debug: bool) -> None:
    from sqlorch.console import errors

    if isinstance(error, BrokenPipeError):  # `sqlorch plan --explain m | head`: click ends it quietly
        raise error
    if debug:
        errors.print_exception()
    if isinstance(error, SqlorchError):
        errors.print(error.render(), markup=False, soft_wrap=True)  # never break a path:line:col line
    else:
        errors.print(
            f"internal error: {type(error).__name__}: {error}\nthis is a bug in sqlorch: please report it "
            "(run with --debug for the traceback)",
            markup=False,
        )
    raise typer.Exit(1)


@app.command()
def compile(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Check every model and write target/compiled/ and target/manifest.json. No warehouse needed."""
    from sqlorch import compile_stamp

    root = project_dir.resolve()
    try:
        digest = _compile_inputs_digest(root, profiles_dir, [target, select, exclude, vars])
        unchanged = compile_stamp.unchanged_models(root, digest) if digest else None
        if unchanged is not None:  # decided before the project, or sqlorch.api, is loaded
            typer.echo(f"compiled {unchanged} models: no errors (nothing changed since the last compile)")
            return
        from sqlorch import api

        compiled, env_vars = api.compile_only(_options(project_dir, profiles_dir, target, select, exclude, vars_=vars))
        if digest:
            compile_stamp.record_compile(root, digest, env_vars, len(compiled))
    except Exception as error:  # noqa: BLE001 - the CLI is where errors become exit codes
        _fail(error, debug)
    from sqlorch.console import console

    console.print(f"compiled {len(compiled)} models: no errors")


def _compile_inputs_digest(root: Path, profiles_dir: Path | None, options: list[str | None]) -> str | None:
    """The digest of everything a compile reads, or None when it cannot be taken (the
    profiles folder is wrong: the compile itself reports that)."""
    from sqlorch import compile_stamp
    from sqlorch.config import find_profiles

    try:
        profiles = find_profiles(root, profiles_dir)
    except SqlorchError:
        return None
    return compile_stamp.inputs_digest(root, profiles, json.dumps(options))


@app.command()
def plan(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    full_refresh: FullRefresh = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable plan.")] = False,
    explain: Annotated[str | None, typer.Option("--explain", help="Print a model's statements.")] = None,
    vars: Vars = None,
    audits: Audits = "on",
    debug: Debug = False,
) -> None:
    """Show what a build would do per model: skip, incremental or full, and why."""
    from dataclasses import replace

    from sqlorch import api
    from sqlorch.console import console, render_impact, render_plan
    from sqlorch.execution.stop import StopRequest

    try:
        options = _options(project_dir, profiles_dir, target, select, exclude, full_refresh, vars_=vars)
        options = replace(options, audits=_audit_mode(audits))
        if explain:
            for title, sql in api.explain(options, explain):
                console.line((f"-- {title}", "bold"))
                console.line(sql)  # piped: as is, never wrapped inside a literal
            return
        stop = StopRequest()
        planned = _stoppable(lambda: api.plan_with_impact(options, stop), stop)
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    if stop.stopped or planned is None:
        _interrupted()
    result, impact = planned
    if as_json:
        sys.stdout.write(json.dumps({**result.to_json(), "impact": [i.to_json() for i in impact]}, indent=2) + "\n")
    else:
        render_plan(result)
        render_impact(impact)
    if any(step.action == "error" for step in result.steps):
        raise typer.Exit(1)  # a model that cannot build fails CI at plan time too


@app.command()
def build(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    full_refresh: FullRefresh = False,
    threads: Threads = 4,
    vars: Vars = None,
    audits: Audits = "on",
    lease_timeout: LeaseTimeout = 300.0,
    no_wait: NoWait = False,
    debug: Debug = False,
) -> None:
    """Bring every selected model up to date, in dependency order."""
    from dataclasses import replace

    from sqlorch import api
    from sqlorch.console import BuildProgress, render_summary
    from sqlorch.execution.stop import StopRequest

    stop = StopRequest()
    try:
        options = _options(project_dir, profiles_dir, target, select, exclude, full_refresh, threads, vars)
        options = replace(options, audits=_audit_mode(audits), lease_wait=0.0 if no_wait else lease_timeout)
        with BuildProgress(lambda: stop.total) as progress:
            result = _stoppable(lambda: api.build(options, progress, stop, progress.source), stop, progress.close)
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    if stop.stopped or result is None:
        finished = [r.model for r in result.results if r.status == "success"] if result else []
        _interrupted(
            f"{len(finished)} of {stop.total} models finished" + (f": {', '.join(finished)}" if finished else "")
        )
    render_summary(result)
    if result.failed:
        raise typer.Exit(1)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. Not a KeyboardInterrupt: click turns that into "Aborted!", exit 1."""


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted


def _interrupted(detail: str | None = None) -> NoReturn:
    sys.stderr.write("interrupted\n" + (f"{detail}\n" if detail else ""))
    sys.stderr.flush()
    raise typer.Exit(130)


def _stoppable(run: Callable[[], T], stop: Any, before_exit: Callable[[], None] = lambda: None) -> T | None:
    """``run()`` on a worker thread, this (main) thread left to take signals: on the first,
    the build is stopped (running statements interrupted, transactions rolled back) and
    waited for; a second one exits at once, which every target survives as it does a crash.
    Returns None when the build was stopped before it had a result. ``before_exit`` runs
    before an exit at once (it puts the terminal back as it was)."""
    outcome: dict[str, Any] = {}
    # An Event, not Thread.join: a join interrupted by a signal can leave is_alive() False
    # while the thread still runs (CPython gh-90882).
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=work, name="sqlorch-build", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except Interrupted:
        stop.stop()
        if not stop.connected:
            # Loading, compiling or waiting for a lock: nothing to undo. Exit without the
            # interpreter's shutdown, which would abort the thread inside the driver's connect.
            before_exit()
            sys.stdout.flush()
            sys.stderr.write(f"interrupted\n0 of {stop.total} models finished\n" if stop.total else NOTHING_STARTED)
            sys.stderr.flush()
            os._exit(130)
        try:
            while not done.wait(0.1):
                pass
        except Interrupted:
            before_exit()
            sys.stderr.write("interrupted\ninterrupted again: exiting without waiting\n")
            sys.stderr.flush()
            os._exit(130)
    if "error" in outcome and not stop.stopped:
        raise outcome["error"]
    return cast("T | None", outcome.get("value"))


@app.command("ls")
def ls(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """List the selected models and seeds: relation, kind, materialization, file. No warehouse needed."""
    from sqlorch import api

    try:
        nodes = api.list_nodes(_options(project_dir, profiles_dir, target, select, exclude, vars_=vars))
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    if as_json:
        sys.stdout.write(json.dumps([node.to_json() for node in nodes], indent=2) + "\n")
        return
    for node in nodes:
        typer.echo(f"{node.relation:<40} {node.kind:<5} {node.materialized:<12} {node.path}")


@app.command("test")
def test_(
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    select: Select = None,
    exclude: Exclude = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Run the unit tests in tests/*.yml on embedded DuckDB. No warehouse needed."""
    from sqlorch import api
    from sqlorch.console import render_unit_tests

    try:
        results = api.unit_test(_options(project_dir, profiles_dir, target, select, exclude, vars_=vars))
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    render_unit_tests(results)
    if any(result.status != "pass" for result in results):
        raise typer.Exit(1)


@app.command()
def migrate(
    from_dbt: Annotated[Path, typer.Option("--from-dbt", help="Folder to write the plain sqlorch project to.")],
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Write a dbt project as plain sqlorch models: relation names instead of ref(), settings as header comments."""
    from sqlorch import api
    from sqlorch.console import console

    try:
        lost = api.migrate_from_dbt(_options(project_dir, profiles_dir, target, None, None, vars_=vars), from_dbt)
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    for item in lost:
        console.line(("not carried over: ", "yellow"), item)
    console.line(f"wrote {from_dbt}")


@app.command()
def lineage(
    column: Annotated[str, typer.Argument(help="MODEL.COLUMN, e.g. marts.daily_revenue.revenue")],
    downstream: Annotated[bool, typer.Option("--downstream", help="The columns a change would affect.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable lineage.")] = False,
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Show the columns a column is computed from, down to source columns (or, with --downstream, those it feeds)."""
    from sqlorch import api
    from sqlorch.console import render_lineage

    try:
        result = api.lineage(_options(project_dir, profiles_dir, target, None, None, vars_=vars), column, downstream)
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        render_lineage(result)


@app.command()
def docs(
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the site (default target/docs).")] = None,
    project_dir: ProjectDir = Path("."),
    profiles_dir: ProfilesDir = None,
    target: TargetOpt = None,
    vars: Vars = None,
    debug: Debug = False,
) -> None:
    """Write a static site of the project (DAG, columns, lineage, runs) that opens from file://."""
    from sqlorch import api
    from sqlorch.console import console

    try:
        digest = _compile_inputs_digest(project_dir.resolve(), profiles_dir, ["docs", target, vars])
        result = api.docs(_options(project_dir, profiles_dir, target, None, None, vars_=vars), out, digest)
    except Exception as error:  # noqa: BLE001
        _fail(error, debug)
    if result.runs_note:
        console.line((result.runs_note, "dim"))
    console.line(f"wrote the docs of {result.nodes} relations: open {result.page.resolve().as_uri()}")


__import__("sqlorch.cli_run").cli_run.register(app, sys.modules[__name__])  # run, status, suspend, resume


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # sqlglot warns, echoing the model's SQL, before it parses a statement as an opaque
    # command; sqlorch reports such a model as an error of its own at the right line.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    try:
        app()
    except Interrupted:
        sys.stderr.write(NOTHING_STARTED)
        sys.exit(130)
    finally:
        # The interpreter ends with a full garbage collection over every object still alive
        # (all of sqlglot's, ~50 ms); the process is exiting, so freeze them out of its reach.
        gc.freeze()


if __name__ == "__main__":
    main()
