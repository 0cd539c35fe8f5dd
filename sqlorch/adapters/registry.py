"""Adapters by target type, imported only when that target is used."""

from __future__ import annotations

import importlib

from sqlorch.adapters.base import Adapter
from sqlorch.config import Target
from sqlorch.errors import ConfigError

_ADAPTERS = {
    "duckdb": ("sqlorch.adapters.duckdb", "DuckDBAdapter", None),
    "snowflake": ("sqlorch.adapters.snowflake", "SnowflakeAdapter", "snowflake"),
    "bigquery": ("sqlorch.adapters.bigquery", "BigQueryAdapter", "bigquery"),
    "postgres": ("sqlorch.adapters.postgres", "PostgresAdapter", "postgres"),
}


def connect(target: Target, read_only: bool = False, lock_timeout: float | None = None) -> Adapter:
    """An adapter for ``target``; ``read_only`` refuses every write (``plan``, ``docs``).
    ``lock_timeout``: seconds to wait for a database file another process has open, where
    the target is one (DuckDB); the lease covers the others (``state/lease.py``)."""
    module_name, class_name, extra = _ADAPTERS[target.type]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"target '{target.name}' needs the {target.type} driver, which is not installed ({error.name})",
            hint=f"pip install 'sqlorch[{extra}]'" if extra else None,
        ) from None
    adapter_class = getattr(module, class_name)
    if lock_timeout is not None and target.type == "duckdb":
        adapter: Adapter = adapter_class(target.settings, read_only=read_only, lock_timeout=lock_timeout)
    else:
        adapter = adapter_class(target.settings, read_only=read_only)
    return adapter
