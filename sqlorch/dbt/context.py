"""The Jinja that dbt models are written in: ``ref``, ``source``, ``config``, ``this``,
``is_incremental``, ``var``, ``env_var``, ``target``, ``log``, ``exceptions``, ``return``
and the project's macros.

One environment serves the whole project; the functions read which node is being
rendered from a stack (a ``ref`` to an ephemeral model renders that model inside the
caller). A project is rendered twice, as dbt does: a *parse* pass collects every node's
``config(...)`` (its schema decides the relation names ``ref`` prints), then a *compile*
pass renders the SQL. ``is_incremental()`` is always false: sqlorch maintains the model's
full query exactly, so the hand-written branch is never needed.
"""

from __future__ import annotations

import datetime
import difflib
import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from sqlorch.config import read_utf8
from sqlorch.dbt.cross_db import CrossDatabase
from sqlorch.dbt.profiles import DbtTarget
from sqlorch.errors import TemplateError
from sqlorch.project.templating import (
    compile_template,
    env_var,
    make_environment,
    make_var,
    render_template,
    template_module,
)
from sqlorch.refs import TableRef

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger("sqlorch.dbt.log")

EPHEMERAL_PREFIX = "__dbt__cte__"
# ``{% test name(model, column_name) %}`` defines a generic test: a macro ``test_<name>``
# (as in dbt); sqlorch does not run it, and reports the tests that use it as skipped.
_TEST_BLOCK = re.compile(r"(\{%-?\s*)test\s+(\w+)")
_END_TEST = re.compile(r"(\{%-?\s*)endtest(\s*-?%\})")


@dataclass(frozen=True)
class Relation:
    """What ``ref``, ``source`` and ``this`` return: prints as the quoted relation name."""

    ref: TableRef
    dialect: str

    @property
    def schema(self) -> str:
        return self.ref.schema

    @property
    def identifier(self) -> str:
        return self.ref.name

    name = identifier

    @property
    def database(self) -> str | None:
        return self.ref.catalog

    def __str__(self) -> str:
        table = exp.table_(
            exp.to_identifier(self.ref.name),
            db=exp.to_identifier(self.ref.schema) if self.ref.schema else None,
            catalog=exp.to_identifier(self.ref.catalog) if self.ref.catalog else None,
        )
        return table.sql(dialect=self.dialect)


@dataclass
class Node:
    """A model (or seed) of the project, and what rendering found out about it."""

    name: str
    path: Path
    fqn: list[str]
    resource_type: str = "model"
    config: dict[str, Any] = field(default_factory=dict)  # tree + properties: before config()
    file_config: dict[str, Any] = field(default_factory=dict)  # from {{ config(...) }}
    relation: TableRef | None = None
    materialized: str = "view"
    template: jinja2.Template | None = None
    uses_is_incremental: bool = False
    sql: str | None = None  # compiled SQL, without the CTEs of ephemeral models it reads
    ctes: list[tuple[str, str]] = field(default_factory=list)  # ephemeral CTEs it needs, in order


class _Return(Exception):  # control flow: dbt's ``return()``
    def __init__(self, value: Any) -> None:
        self.value = value


def _compiler_error(message: str, *_: Any) -> None:
    raise TemplateError(str(message))


class _Config:
    """``config(...)`` records settings; ``config.get(key, default)`` reads them."""

    def __init__(self, renderer: DbtRenderer) -> None:
        self.renderer = renderer

    def __call__(self, *args: Any, **settings: Any) -> str:
        if args and isinstance(args[0], dict):
            settings = {**args[0], **settings}
        self.renderer.current.file_config.update(settings)
        return ""

    def get(self, key: str, default: Any = None) -> Any:
        node = self.renderer.current
        return {**node.config, **node.file_config}.get(key, default)

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise TemplateError(f"config '{key}' is required here")
        return value


class _This:
    def __init__(self, renderer: DbtRenderer) -> None:
        self.renderer = renderer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.renderer.relation_of(self.renderer.current), name)

    def __str__(self) -> str:
        return str(self.renderer.relation_of(self.renderer.current))


class DbtRenderer:
    def __init__(
        self,
        project_name: str,
        target: DbtTarget,
        variables: dict[str, Any],
        dialect: str,
        sources: dict[tuple[str, str], TableRef],
    ) -> None:
        self.project_name = project_name
        self.target = target
        self.dialect = dialect
        self.sources = sources
        self.nodes: dict[str, Node] = {}
        self.stack: list[Node] = []
        self.compiling = False
        self.template_paths: set[str] = set()
        self.macros: dict[str, Any] = {}
        self.env = make_environment(("jinja2.ext.do",))
        self.env.globals.update(
            ref=self.ref,
            source=self.source,
            config=_Config(self),
            this=_This(self),
            is_incremental=self.is_incremental,
            var=make_var(variables, "dbt_project.yml", "define it under 'vars:' in dbt_project.yml or pass --vars"),
            env_var=env_var,
            target=target,
            log=self.log,
            exceptions=SimpleNamespace(raise_compiler_error=_compiler_error, warn=lambda m, *_: log.warning("%s", m)),
            modules=SimpleNamespace(datetime=datetime, re=re, itertools=itertools),
            dbt=CrossDatabase(dialect),
            project_name=project_name,
            execute=False,
            flags=SimpleNamespace(FULL_REFRESH=False, WHICH="build"),
            **{"return": self._return},
        )

    @property
    def current(self) -> Node:
        if not self.stack:
            raise TemplateError("ref, source, config and this work only inside a model or a macro it calls")
        return self.stack[-1]

    # --- macros -------------------------------------------------------------------------

    def load_macros(self, files: list[Path]) -> None:
        for path in files:
            self.template_paths.add(str(path))
            text = _TEST_BLOCK.sub(r"\1macro test_\2", read_utf8(path))
            text = _END_TEST.sub(r"\1endmacro\2", text)
            module = template_module(compile_template(self.env, text, path), path)
            for name in dir(module):
                if not name.startswith("_"):
                    self.macros[name] = _returning(getattr(module, name))
        self.env.globals.update(self.macros)

    # --- the functions models call -------------------------------------------------------

    def ref(self, *names: str, **kwargs: Any) -> Relation | str:
        if len(names) == 2:
            package, name = names
            if package != self.project_name:
                raise TemplateError(
                    f"ref('{package}', '{name}'): packages are not supported; only '{self.project_name}'"
                )
        elif len(names) == 1:
            name = names[0]
        else:
            raise TemplateError("ref() takes a model name, or a package and a model name")
        node = self.nodes.get(str(name))
        if not self.compiling:  # the parse pass: a disabled model may ref anything
            return str(name)
        if node is None or node is self.current:
            options = difflib.get_close_matches(str(name), [n for n in self.nodes if n != self.current.name], n=1)
            hint = f"did you mean '{options[0]}'?" if options else "no model, seed or snapshot has that name"
            if node is self.current:
                raise TemplateError(f"model '{name}' refers to itself", hint="use {{ this }} for the model's own table")
            raise TemplateError(f"ref('{name}'): no enabled model or seed named '{name}'", hint=hint)
        if node.materialized == "ephemeral":
            self.render(node)
            caller = self.current
            for cte in [*node.ctes, (EPHEMERAL_PREFIX + node.name, node.sql or "")]:
                if cte[0] not in {name for name, _ in caller.ctes}:
                    caller.ctes.append(cte)
            return EPHEMERAL_PREFIX + node.name
        return self.relation_of(node)

    def source(self, source_name: str, table_name: str) -> Relation:
        ref = self.sources.get((str(source_name), str(table_name)))
        if ref is None and not self.compiling:
            return Relation(TableRef(schema=str(source_name), name=str(table_name)), self.dialect)
        if ref is None:
            known = [f"{s}.{t}" for s, t in self.sources]
            options = difflib.get_close_matches(f"{source_name}.{table_name}", known, n=1)
            hint = f"did you mean '{options[0]}'?" if options else "declare it under 'sources:' in a YAML file"
            raise TemplateError(f"source('{source_name}', '{table_name}'): no such source table", hint=hint)
        return Relation(ref, self.dialect)

    def is_incremental(self) -> bool:
        self.current.uses_is_incremental = True
        return False

    def log(self, message: Any, info: bool = False) -> str:
        if self.compiling:
            (log.warning if info else log.debug)("%s: %s", self.current.name, message)
        return ""

    @staticmethod
    def _return(value: Any) -> None:
        raise _Return(value)

    def relation_of(self, node: Node) -> Relation:
        if node.relation is None:  # the parse pass: schemas are not known yet
            return Relation(TableRef(schema="", name=node.name), self.dialect)
        return Relation(node.relation, self.dialect)

    # --- rendering -----------------------------------------------------------------------

    def render(self, node: Node) -> str:
        """The node's SQL: in the parse pass its text (configs recorded), in the compile
        pass its SQL (kept on the node, rendered once)."""
        if self.compiling and node.sql is not None:
            return node.sql
        if node.template is None:
            self.template_paths.add(str(node.path))
            node.template = compile_template(self.env, read_utf8(node.path), node.path)
        if node in self.stack:
            chain = " -> ".join(n.name for n in [*self.stack, node])
            raise TemplateError(f"ephemeral models refer to each other in a cycle: {chain}")
        self.stack.append(node)
        try:
            self.env.globals["execute"] = self.compiling
            sql = render_template(node.template, node.path, paths=self.template_paths)
        finally:
            self.stack.pop()
        if self.compiling:
            node.sql = sql
        return sql

    def call_macro(self, name: str, *args: Any, node: Node) -> str:
        """Call a project macro from Python (``generate_schema_name``) as if from ``node``."""
        self.stack.append(node)
        try:
            return str(self.macros[name](*args)).strip()
        finally:
            self.stack.pop()


def _returning(macro: Any) -> Any:
    """A macro whose ``{{ return(x) }}`` gives ``x``, as in dbt."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return macro(*args, **kwargs)
        except _Return as returned:
            return returned.value

    call.__name__ = getattr(macro, "name", "macro")
    return call
