"""The only module that knows Jinja: ``var``, ``env_var`` and project macros.

Jinja is imported on first use (~50 ms): a project whose files hold no ``{{``/``{%`` and no
macros never loads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlorch.config import read_utf8
from sqlorch.errors import TemplateError

if TYPE_CHECKING:
    import jinja2

_MISSING = object()

# Every environment variable a template asked for in this process, set or not: what a
# compile's outcome depends on besides the files (sqlorch.compile_stamp records them).
ENV_VARS_READ: set[str] = set()


def needs_rendering(text: str) -> bool:
    return "{{" in text or "{%" in text


def _make_env(path: Path | str, variables: dict[str, Any]) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

    def var(name: str, default: Any = _MISSING) -> Any:
        if name in variables:
            return variables[name]
        if default is _MISSING:
            raise TemplateError(
                f"var '{name}' is not defined",
                path=path,
                hint="define it under 'vars:' in sqlorch.yml or pass --vars",
            )
        return default

    def env_var(name: str, default: Any = _MISSING) -> Any:
        ENV_VARS_READ.add(name)
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is _MISSING:
            raise TemplateError(
                f"environment variable '{name}' is not set",
                path=path,
                hint=f"export {name}=... or give a default: env_var('{name}', 'value')",
            )
        return default

    env.globals.update(var=var, env_var=env_var)
    return env


def load_macros(macro_files: list[Path], variables: dict[str, Any]) -> dict[str, Any]:
    """Every ``{% macro %}`` in ``macros/*.sql``, callable from any model by name."""
    macros: dict[str, Any] = {}
    if not macro_files:
        return macros
    import jinja2

    for path in macro_files:
        env = _make_env(path, variables)
        try:
            module = env.from_string(read_utf8(path)).module
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(error.message or "template syntax error", path=path, line=error.lineno) from None
        macros.update({name: getattr(module, name) for name in dir(module) if not name.startswith("_")})
    return macros


def render_string(
    text: str,
    path: Path | str,
    variables: dict[str, Any],
    macros: dict[str, Any] | None = None,
) -> str:
    import jinja2

    env = _make_env(path, variables)
    env.globals.update(macros or {})
    try:
        return env.from_string(text).render()
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(error.message or "template syntax error", path=path, line=error.lineno) from None
    except jinja2.UndefinedError as error:
        raise TemplateError(str(error.message), path=path) from None
