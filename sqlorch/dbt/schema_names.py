"""Where dbt puts a node: ``<target schema>`` or ``<target schema>_<custom schema>`` (dbt's
default ``generate_schema_name``), or what the project's own override of that macro says."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlorch.dbt.context import DbtRenderer, Node


def node_view(node: Node, config: dict[str, Any]) -> SimpleNamespace:
    """The ``node`` argument dbt passes to ``generate_schema_name``."""
    return SimpleNamespace(
        name=node.name,
        fqn=node.fqn,
        resource_type=node.resource_type,
        config=config,
        original_file_path=str(node.path),
        unique_id=f"{node.resource_type}.{node.fqn[0]}.{node.name}",
    )


def generate_schema_name(renderer: DbtRenderer, custom: str | None, node: Node, config: dict[str, Any]) -> str:
    if "generate_schema_name" in renderer.macros:
        return renderer.call_macro("generate_schema_name", custom, node_view(node, config), node=node)
    base = renderer.target.schema
    return base if custom is None else f"{base}_{str(custom).strip()}"
