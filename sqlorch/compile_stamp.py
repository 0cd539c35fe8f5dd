"""Skipping a compile whose inputs did not change.

``sqlorch compile`` is a function of the project's files (``models/``, ``macros/``,
``seeds/``, ``sqlorch.yml``), the profiles file, the command's options (target, selection,
vars), the environment variables its templates read with ``env_var()``, and the code of
sqlorch and sqlglot. A successful compile records a digest of all of them in
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

STAMP_FILE = Path("target") / "cache" / "compile_stamp.json"
INPUT_FOLDERS = ("models", "macros", "seeds")
PROJECT_FILES = ("sqlorch.yml",)
_VERSION = "1"


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
    for folder in INPUT_FOLDERS:
        lines += [_stat_line(path) for path in _tree_files(str(root / folder))]
    for folder in _code_folders():
        lines += [_stat_line(path) for path in _tree_files(folder) if path.endswith((".py", ".so"))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def with_environment(files_digest: str, env_names: list[str]) -> str:
    """``files_digest`` (from ``inputs_digest``) plus the values of the variables named."""
    lines = [files_digest]
    for name in sorted(env_names):
        value = os.environ.get(name)
        lines.append(f"{name}\0" + (hashlib.sha256(value.encode()).hexdigest() if value is not None else "unset"))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _compiled_files(root: Path) -> list[str]:
    compiled = root / "target" / "compiled"
    return sorted(os.path.relpath(path, compiled) for path in _tree_files(str(compiled)))


def unchanged_models(root: Path, files_digest: str) -> int | None:
    """The number of models compiled last time, if nothing compile reads has changed since
    and its outputs are all in place; otherwise None."""
    try:
        stamp = json.loads((root / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("version") != _VERSION:
        return None
    if stamp.get("digest") != with_environment(files_digest, list(stamp.get("env", []))):
        return None
    if not (root / "target" / "manifest.json").exists():
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
        (root / STAMP_FILE).parent.mkdir(parents=True, exist_ok=True)
        (root / STAMP_FILE).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError:
        pass
