"""The only module that knows Jinja: ``var``, ``env_var``, project macros, and the
environment the dbt layer (``sqlorch.dbt``) renders its projects with.

Jinja is imported on first use (~50 ms): a project whose files hold no ``{{``/``{%`` and no
macros never loads it. Every template is compiled with its file name, so an error raised
while rendering (an undefined name, a failing ``ref``, a macro that raises) is reported at
the line of the template that caused it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlorch.config import read_utf8
from sqlorch.errors import SqlorchError, TemplateError

if TYPE_CHECKING:
    import jinja2

_MISSING = object()

# The names ``env_var`` is asked for inside ``reading_env_vars()``, set or not.
_ENV_VARS_READ: ContextVar[set[str] | None] = ContextVar("env_vars_read", default=None)


@contextmanager
def reading_env_vars() -> Iterator[set[str]]:
    """The environment variables templates read inside the block, set or not: what a
    compile's outcome depends on besides the files (``sqlorch.compile_stamp`` records them)."""
    names: set[str] = set()
    token = _ENV_VARS_READ.set(names)
    try:
        yield names
    finally:
        _ENV_VARS_READ.reset(token)


def needs_rendering(text: str) -> bool:
    return "{{" in text or "{%" in text


def make_var(variables: dict[str, Any], path: Path | str, hint: str) -> Callable[..., Any]:
    """``var(name, default)``: a project variable, or an error naming it."""

    def var(name: str, default: Any = _MISSING) -> Any:
        if name in variables:
            return variables[name]
        if default is _MISSING:
            raise TemplateError(f"var '{name}' is not defined", path=path, hint=hint)
        return default

    return var


def env_var(name: str, default: Any = _MISSING) -> Any:
    """``env_var(name, default)``: the variable's value, recorded for the compile stamp."""
    names = _ENV_VARS_READ.get()
    if names is not None:
        names.add(name)
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is _MISSING:
        raise TemplateError(
            f"environment variable '{name}' is not set",
            hint=f"export {name}=... or give a default: env_var('{name}', 'value')",
        )
    return default


def make_environment(extensions: tuple[str, ...] = ()) -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, extensions=list(extensions))


def _make_env(path: Path | str, variables: dict[str, Any]) -> jinja2.Environment:
    env = make_environment()
    env.globals.update(
        var=make_var(variables, path, "define it under 'vars:' in sqlorch.yml or pass --vars"), env_var=env_var
    )
    return env


def compile_template(env: jinja2.Environment, text: str, path: Path | str) -> jinja2.Template:
    """A template that knows its file: its frames in a traceback carry ``path`` and lines."""
    import jinja2

    try:
        code = env.compile(text, name=str(path), filename=str(path))
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(error.message or "template syntax error", path=path, line=error.lineno) from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def template_frames(error: BaseException, paths: set[str]) -> list[tuple[str, int]]:
    """``(path, line)`` of every frame of a template in ``paths``, outermost first (Jinja
    rewrites a rendering error's traceback so its frames carry the template lines; other
    frames are mapped back through their template)."""
    frames: list[tuple[str, int]] = []
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in paths and tb.tb_lineno is not None:
            # a frame of compiled template code (not yet rewritten) maps its Python line back
            template = tb.tb_frame.f_globals.get("__jinja_template__")
            line = template.get_corresponding_lineno(tb.tb_lineno) if template is not None else tb.tb_lineno
            frames.append((filename, line))
        tb = tb.tb_next
    return frames


def render_template(
    template: jinja2.Template, path: Path | str, context: dict[str, Any] | None = None, paths: set[str] | None = None
) -> str:
    """Render; any error becomes a TemplateError at the innermost template line in
    ``paths`` (default: this template's own file), with where it was called from."""
    import jinja2

    known = paths or {str(path)}
    try:
        return template.render(context or {})
    except (SqlorchError, jinja2.TemplateError) as error:
        if isinstance(error, SqlorchError) and error.line is not None:
            raise  # located already, by the rendering of a template this one includes
        frames = template_frames(error, known | {str(path)})
        where, line = frames[-1] if frames else (str(path), None)
        if isinstance(error, SqlorchError):
            message, hint = error.message, error.hint
        elif isinstance(error, jinja2.TemplateSyntaxError):
            message, hint, line = error.message or "template syntax error", None, error.lineno
        else:
            message, hint = str(error.message if hasattr(error, "message") else error), None
        if len(frames) > 1:
            called = ", ".join(f"{p}:{n}" for p, n in frames[:-1])
            hint = f"called from {called}" + (f"; {hint}" if hint else "")
        raise TemplateError(message, path=where, line=line, hint=hint) from None


def template_module(template: jinja2.Template, path: Path | str) -> Any:
    """The template's macros (its top level rendered once), errors at their line."""
    import jinja2

    try:
        return template.module
    except (SqlorchError, jinja2.TemplateError) as error:
        frames = template_frames(error, {str(path)})
        message = error.message if isinstance(error, SqlorchError) else str(error)
        raise TemplateError(message, path=path, line=frames[-1][1] if frames else None) from None


def load_macros(macro_files: list[Path], variables: dict[str, Any]) -> dict[str, Any]:
    """Every ``{% macro %}`` in ``macros/*.sql``, callable from any model by name."""
    macros: dict[str, Any] = {}
    for path in macro_files:
        env = _make_env(path, variables)
        module = template_module(compile_template(env, read_utf8(path), path), path)
        macros.update({name: getattr(module, name) for name in dir(module) if not name.startswith("_")})
    return macros


def render_string(
    text: str,
    path: Path | str,
    variables: dict[str, Any],
    macros: dict[str, Any] | None = None,
) -> str:
    env = _make_env(path, variables)
    env.globals.update(macros or {})
    return render_template(compile_template(env, text, path), path)
