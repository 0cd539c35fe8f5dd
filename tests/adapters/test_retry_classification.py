"""Each adapter classifies its driver's real errors: a mistake in the SQL is permanent, a
dropped connection, a server error (5xx) or a write conflict is transient
(``Adapter.is_transient``; what to do about it is execution/retry.py's)."""

from __future__ import annotations

import psycopg
import pytest
from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.errors import AdapterError
from tests.adapters.conftest import Warehouse


def failure(adapter: Adapter, statement: exp.Expr) -> AdapterError:
    with pytest.raises(AdapterError) as raised:
        adapter.fetch(statement)
    return raised.value


def test_a_mistake_in_the_sql_is_not_transient(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    error = failure(adapter, exp.select("*").from_(exp.to_table("no_such_schema.no_such_table")))
    assert not adapter.is_transient(error)


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_postgres_a_terminated_backend_is_transient_and_reconnected(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    pid = adapter.fetch(exp.select(exp.func("pg_backend_pid")))[0][0]
    settings = {k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")}
    with psycopg.connect(**settings, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    error = failure(adapter, exp.select("1"))
    assert adapter.is_transient(error)
    adapter.reconnect()
    assert adapter.fetch(exp.select("1")) == [(1,)]


@pytest.mark.parametrize("warehouse", ["snowflake"], indirect=True)
def test_snowflake_a_server_error_is_transient(warehouse: Warehouse) -> None:
    """fakesnow answers HTTP 500 to a hash it cannot encode (tests/standins/README.md);
    the connector retries it until network_timeout, then raises."""
    adapter = warehouse.connect(network_timeout=2)
    error = failure(adapter, exp.select(exp.Anonymous(this="HASH", expressions=[exp.Literal.string("a")])))
    assert "500" in error.message
    assert adapter.is_transient(error)


@pytest.mark.parametrize("warehouse", ["bigquery"], indirect=True)
def test_bigquery_an_unreachable_endpoint_is_transient(warehouse: Warehouse) -> None:
    adapter = warehouse.connect(api_endpoint="http://127.0.0.1:9", timeout=2)  # the discard port: refused
    error = failure(adapter, exp.select("1"))
    assert adapter.is_transient(error)
