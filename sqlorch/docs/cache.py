"""The site data of the last ``sqlorch docs``, reused while nothing it was built from has
changed: the same inputs as a compile (``compile_stamp.inputs_digest``: the project's
files, profiles, options, sqlorch's and sqlglot's code, and the environment variables the
templates read). A warm ``sqlorch docs`` of 10,000 models then loads no model: it reads
this file, asks the warehouse for the run ledger and writes the site. The runs are never
cached: they change without the project changing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlorch.compile_stamp import with_environment
from sqlorch.outputs import output_dir


def _cache_file(root: Path) -> Path:
    return output_dir(root) / "cache" / "docs.json"


def load_site(root: Path, files_digest: str) -> dict[str, Any] | None:
    try:
        cached = json.loads(_cache_file(root).read_text(encoding="utf-8"))
        if cached["digest"] == with_environment(files_digest, list(cached["env"])):
            site: dict[str, Any] = cached["site"]
            return site
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def save_site(root: Path, files_digest: str, env_names: set[str], site: dict[str, Any]) -> None:
    """Remember the site data (a failure to write only costs speed next time)."""
    payload = {"digest": with_environment(files_digest, sorted(env_names)), "env": sorted(env_names), "site": site}
    try:
        _cache_file(root).parent.mkdir(parents=True, exist_ok=True)
        _cache_file(root).write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
    except OSError:
        pass
