"""Where sqlorch writes in a project folder: ``target/`` (compiled SQL, manifest, run
results, caches). In a dbt project that folder holds dbt's own ``manifest.json`` and
``run_results.json``, which ``dbt --state`` and ``dbt retry`` read, so sqlorch writes to
``target/sqlorch/`` there and both tools can run in one folder.

Imports nothing: the compile fast path (``compile_stamp``) uses it before loading anything.
"""

from __future__ import annotations

from pathlib import Path


def output_dir(root: Path) -> Path:
    if (root / "dbt_project.yml").is_file():
        return root / "target" / "sqlorch"
    return root / "target"
