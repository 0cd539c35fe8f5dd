"""Skipping a compile whose inputs did not change.

``sqlorch compile`` is a function of the project's files (``models/``, ``macros/``,
``audits/``, ``tests/``, ``seeds/``, ``sqlorch.yml``; for a dbt project ``dbt_project.yml``
and every folder), the profiles file, the command's options (target, selection, vars), the
environment variables its templates read with ``env_var()``, and the code of sqlorch and
sqlglot. A successful compile records a digest of all of them in
``target/cache/compile_stamp.json``; the next compile that computes the same digest, and
finds the manifest and every compiled file it wrote still in place, has nothing to do and
returns without loading a model or the planning and execution code.

Files are compared by path, size and modification time, as make and ninja do: touching a
file only costs one normal compile, which the parse and compile caches keep cheap.
Environment variables are recorded by name; their values enter the digest hashed and are
never written. A template that reads a variable only when another one is set is still
exact: the first variable is recorded, and changing it changes the digest.

This module imports nothing heavy: it runs before the decision to load the project.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from sqlorch.outputs import output_dir

INPUT_FOLDERS = ("models", "macros", "seeds", "audits", "tests")  # audits/, tests/: compile checks them too
PROJECT_FILES = ("sqlorch.yml", "dbt_project.yml")
# A dbt project names its folders in dbt_project.yml (read only by the full load): every
# folder of the project counts, except the ones dbt and sqlorch write to.
_NOT_INPUTS = {"target", "logs", "dbt_packages", ".git", ".venv"}
_VERSION = "1"


def _stamp_file(root: Path) -> Path:
    return output_dir(root) / "cache" / "compile_stamp.json"


def _stat_line(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return f"{path}\0missing"
    return f"{path}\0{info.st_size}\0{info.st_mtime_ns}"


def _tree_files(folder: str) -> list[str]:
    found: list[str] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        found.extend(os.path.join(directory, name) for name in sorted(files))
    return found


def _code_folders() -> list[str]:
    """sqlorch's own package and sqlglot's, located without importing sqlglot's modules."""
    folders = [os.path.dirname(__file__)]
    spec = importlib.util.find_spec("sqlglot")
    if spec is not None and spec.origin:
        folders.append(os.path.dirname(spec.origin))
    return folders


def inputs_digest(root: Path, profiles: Path | None, options: str) -> str:
    """Every file compile reads, sqlorch's and sqlglot's code, and the options. Taken before
    the project is loaded, so a file edited during a compile makes the next one run."""
    lines = [f"{_VERSION}\0{options}"]
    lines += [_stat_line(str(root / name)) for name in PROJECT_FILES]
    lines += [_stat_line(str(profiles)) if profiles else "no profiles"]
    for folder in _input_folders(root):
        lines += [_stat_line(path) for path in _tree_files(str(root / folder))]
    for folder in _code_folders():
        lines += [_stat_line(path) for path in _tree_files(folder) if path.endswith((".py", ".so"))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _input_folders(root: Path) -> list[str]:
    if not (root / "dbt_project.yml").is_file():
        return list(INPUT_FOLDERS)
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and entry.name not in _NOT_INPUTS)


def with_environment(files_digest: str, env_names: list[str]) -> str:
    """``files_digest`` (from ``inputs_digest``) plus the values of the variables named."""
    lines = [files_digest]
    for name in sorted(env_names):
        value = os.environ.get(name)
        lines.append(f"{name}\0" + (hashlib.sha256(value.encode()).hexdigest() if value is not None else "unset"))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _compiled_files(root: Path) -> list[str]:
    compiled = output_dir(root) / "compiled"
    return sorted(os.path.relpath(path, compiled) for path in _tree_files(str(compiled)))


def unchanged_models(root: Path, files_digest: str) -> int | None:
    """The number of models compiled last time, if nothing compile reads has changed since
    and its outputs are all in place; otherwise None."""
    try:
        stamp = json.loads(_stamp_file(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != _VERSION:
        return None
    if stamp.get("digest") != with_environment(files_digest, list(stamp.get("env", []))):
        return None
    if not (output_dir(root) / "manifest.json").exists():
        return None
    if not set(stamp.get("outputs", [])) <= set(_compiled_files(root)):
        return None
    models = stamp.get("models")
    return models if isinstance(models, int) else None


def record_compile(root: Path, files_digest: str, env_names: set[str], models: int) -> None:
    """Write the stamp of a successful compile (a failure to write it only costs speed)."""
    stamp = {
        "version": _VERSION,
        "digest": with_environment(files_digest, sorted(env_names)),
        "env": sorted(env_names),
        "models": models,
        "outputs": _compiled_files(root),
    }
    try:
        _stamp_file(root).parent.mkdir(parents=True, exist_ok=True)
        _stamp_file(root).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError:
        pass
