"""The import direction of DESIGN.md / STYLE.md, checked by reading the imports with ast.

Core code never imports a warehouse driver; adapters never import the project, graph or
planning layers; nothing but the CLI imports ``cli``, ``console`` or ``api``; and
``sqlorch --help`` loads no driver.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sqlorch"
DRIVERS = ("duckdb", "_duckdb", "psycopg", "snowflake", "google")  # _duckdb: the DuckDB extension module
DRIVER_HOMES = {
    "adapters/duckdb.py": ("duckdb", "_duckdb"),
    "adapters/postgres.py": ("psycopg",),
    "adapters/snowflake.py": ("snowflake",),
    "adapters/bigquery.py": ("google",),
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules() -> dict[str, set[str]]:
    return {str(path.relative_to(PACKAGE)): imports_of(path) for path in PACKAGE.rglob("*.py")}


def test_only_each_adapter_imports_its_driver() -> None:
    offenders = {
        (module, name)
        for module, names in modules().items()
        for name in names
        if name.split(".")[0] in DRIVERS and name.split(".")[0] not in DRIVER_HOMES.get(module, ())
    }
    assert not offenders, offenders


def test_adapters_make_no_planning_decisions() -> None:
    forbidden = ("sqlorch.project", "sqlorch.graph", "sqlorch.planning", "sqlorch.execution")
    offenders = {
        (module, name)
        for module, names in modules().items()
        if module.startswith("adapters/")
        for name in names
        if name.startswith(forbidden)
    }
    assert not offenders, offenders


def test_planning_never_calls_an_adapter() -> None:
    offenders = {
        (module, name)
        for module, names in modules().items()
        if module.startswith("planning/")
        for name in names
        if name.startswith("sqlorch.adapters") and name != "sqlorch.adapters.base"
    }
    assert not offenders, offenders


def test_nothing_imports_the_front_ends() -> None:
    # cli_run.py holds the control-plane commands, api_run.py their composition (on api)
    front = ("sqlorch.cli", "sqlorch.console", "sqlorch.api", "sqlorch.cli_run", "sqlorch.api_run")
    importers = {
        "cli.py": front,
        "cli_run.py": front,
        "api_run.py": ("sqlorch.api",),
        "metrics.py": ("sqlorch.api_run",),
    }
    offenders = {
        (module, name)
        for module, names in modules().items()
        for name in names
        if name in front and name not in importers.get(module, ())
    }
    assert not offenders, offenders


def test_help_loads_no_driver() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sqlorch.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r}))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
