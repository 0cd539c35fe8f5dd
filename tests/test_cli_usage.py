"""The CLI's own surface: --version, -h on every command, a bare `sqlorch`, and a top-level
help that lists each command's whole description."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tomllib

import pytest

import sqlorch
from sqlorch.cli import app
from tests.conftest import REPO, run_cli

COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands if command.callback)


def test_version_prints_the_package_version() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert sqlorch.__version__ == declared  # the one version a user sees is the one packaged
    run = run_cli("--version")
    assert run.exit_code == 0, run.output
    assert run.output == f"sqlorch {declared}\n"


def test_bare_sqlorch_prints_help_and_exits_0() -> None:
    run = run_cli()
    assert run.exit_code == 0, run.output
    assert run.output.startswith("Usage: ")
    assert "Commands:" in run.output and "  build " in run.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_h_is_help_on_every_command(command: str) -> None:
    args = [command, "-h"] if command else ["-h"]
    short, long = run_cli(*args), run_cli(*args[:-1], "--help")
    assert short.exit_code == 0, short.output
    assert short.output.startswith("Usage: ")
    assert short.output == long.output


def test_top_level_help_gives_each_command_its_whole_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = run_cli("--help").output
    assert max(len(line) for line in text.splitlines()) <= 80
    listed = " ".join(text.split("Commands:", 1)[1].split())
    assert "..." not in listed
    assert len(COMMANDS) >= 8
    for command in app.registered_commands:
        first_paragraph = inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")[0]
        assert " ".join(first_paragraph.split()) in listed, command.name


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(demo_project) -> None:
    """`sqlorch plan --explain m | head`: the reader closes the pipe; no internal error, no
    traceback (click ends the command as other command-line tools do)."""
    assert run_cli("build", "--project-dir", demo_project).exit_code == 0
    with (demo_project / "seeds/orders.csv").open("a") as csv:
        csv.write("1011,4,2024-03-06,completed,55.00\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlorch.cli",
            "plan",
            "--explain",
            "marts.daily_revenue",
            "--project-dir",
            demo_project,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10)  # what `head` reads, before it closes the pipe
    process.stdout.close()
    errors = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "internal error" not in errors and "Traceback" not in errors, errors
