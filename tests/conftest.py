"""Shared fixtures: write small projects into tmp_path and run the CLI in-process."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sqlorch.cli import app

REPO = Path(__file__).resolve().parent.parent


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under root (text is dedented); returns root."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / "models").mkdir(exist_ok=True)
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    def make(files: dict[str, str]) -> Path:
        return write_files(tmp_path / "project", files)

    return make


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """A copy of the demo project at the repo root (models/ and seeds/)."""
    root = tmp_path / "demo"
    root.mkdir()
    shutil.copytree(REPO / "models", root / "models")
    shutil.copytree(REPO / "seeds", root / "seeds")
    return root


class Run:
    def __init__(self, exit_code: int, output: str, exception: BaseException | None) -> None:
        self.exit_code = exit_code
        self.output = output
        self.exception = exception


def run_cli(*args: str | Path) -> Run:
    """Run ``sqlorch <args>`` in-process; output is stdout and stderr together."""
    runner = CliRunner()
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return Run(result.exit_code, result.output, exception)


@pytest.fixture
def cli() -> Callable[..., Run]:
    return run_cli


def assert_error(run: Run, *fragments: str) -> None:
    """An error run: exit 1, no traceback, every fragment in the output."""
    assert run.exception is None, f"unexpected exception {run.exception!r}\n{run.output}"
    assert run.exit_code == 1, run.output
    assert "Traceback" not in run.output, run.output
    assert "internal error" not in run.output, run.output
    for fragment in fragments:
        assert fragment in run.output, f"{fragment!r} not in:\n{run.output}"
