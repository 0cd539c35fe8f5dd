"""Benchmarks time sqlorch as it runs installed: with its modules' bytecode written.

``pip install`` compiles a package's bytecode at install time. Where PYTHONDONTWRITEBYTECODE
is set (this sandbox sets it), a checkout imported from source never writes it, so every
timed ``sqlorch`` process would compile ~120 modules first: 0.33-0.38 s of imports against
0.19-0.22 s with bytecode, a tenth of a small build's time that no user pays.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path


def compile_bytecode() -> None:
    """Write the bytecode of the sqlorch that ``python -m sqlorch.cli`` imports."""
    spec = importlib.util.find_spec("sqlorch")
    assert spec is not None and spec.origin is not None
    compileall.compile_dir(Path(spec.origin).parent, quiet=1)
