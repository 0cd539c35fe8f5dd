"""One error hierarchy for everything a user can get wrong.

Every error sqlorch raises on purpose is a ``SqlorchError``; ``cli.py`` renders it as
``path:line:col: error: message`` (plus an optional hint) and exits 1. Any other exception
reaching the CLI is a bug and is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SqlorchError(Exception):
    message: str
    path: Path | str | None = None
    line: int | None = None
    col: int | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        location = ""
        if self.path is not None:
            location = str(self.path)
            if self.line is not None:
                location += f":{self.line}"
                if self.col is not None:
                    location += f":{self.col}"
            location += ": "
        text = f"{location}error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(SqlorchError):
    """profiles.yml, project settings, YAML source files, model headers."""


class TemplateError(SqlorchError):
    """Jinja rendering of a model (unknown var, unset env var, syntax)."""


class ParseError(SqlorchError):
    """Model SQL that sqlglot cannot parse, or that is not a single SELECT."""


class GraphError(SqlorchError):
    """Cycles, ambiguous or duplicate relations, unknown selectors."""


class CompileError(SqlorchError):
    """Unknown columns or tables found while checking a model."""


class AdapterError(SqlorchError):
    """Anything a warehouse or its driver reported; never carries a secret."""


class LockError(SqlorchError):
    """Another build holds the target's lock."""


class ErrorGroup(SqlorchError):
    """Several independent errors found in one pass (compile reports all of them)."""

    def __init__(self, errors: list[SqlorchError]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s)")

    def render(self) -> str:
        return "\n".join(error.render() for error in self.errors)
