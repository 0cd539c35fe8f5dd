"""dbt's model and seed configs, with its precedence: the ``dbt_project.yml`` tree (the
deeper the folder, the stronger), then a node's ``config:`` in a properties YAML file, then
``{{ config(...) }}`` in the file itself."""

from __future__ import annotations

from typing import Any

# Settings that are lists and accumulate down the tree instead of replacing each other.
_ADDITIVE = ("tags",)

# dbt settings that sqlorch makes unnecessary: it maintains the model's query exactly,
# rebuilds a model whose query changed, and checks a unique_key instead of merging on it.
SUPERSEDED = (
    "incremental_strategy", "on_schema_change", "full_refresh", "lookback", "batch_size", "event_time",
)  # fmt: skip
IGNORED = {
    "meta", "docs", "persist_docs", "grants", "contract", "access", "group", "quoting", "column_types",
    "description", "columns", "packages", "quote_columns", "delimiter", "database",
}  # fmt: skip
HANDLED = {"materialized", "schema", "alias", "tags", "enabled", "unique_key"}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _ADDITIVE and key in merged:
            merged[key] = [
                *as_list(merged[key]),
                *(item for item in as_list(value) if item not in as_list(merged[key])),
            ]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _own_settings(level: dict[str, Any]) -> dict[str, Any]:
    """The configs set at one level of the tree: ``+key`` always; a bare key when its value
    is not a mapping (a mapping under a bare key is a sub-folder or a node)."""
    own: dict[str, Any] = {}
    for key, value in level.items():
        name = str(key)
        if name.startswith("+"):
            own[name[1:].replace("-", "_")] = value
        elif not isinstance(value, dict):
            own[name.replace("-", "_")] = value
    return own


def tree_config(tree: dict[str, Any], project: str, fqn: list[str]) -> dict[str, Any]:
    """The settings the tree gives a node at ``fqn`` (folders, then the node name)."""
    config = _own_settings(tree)
    level = tree.get(project)
    for part in fqn:
        if not isinstance(level, dict):
            break
        config = merge(config, _own_settings(level))
        level = level.get(part)
    if isinstance(level, dict):
        config = merge(config, _own_settings(level))
    return config


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """``pre-hook`` and ``pre_hook`` are the same setting."""
    return {str(key).lstrip("+").replace("-", "_"): value for key, value in config.items()}
