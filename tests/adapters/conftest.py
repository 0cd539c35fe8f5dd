"""Warehouses for the adapter conformance suite: DuckDB plus the three local stand-ins.

Each server starts once per session (on first use); every test gets an isolated namespace
on it (its own Postgres database, Snowflake database, or an emptied BigQuery project), and
a ``profiles.yml`` target for it. Stand-ins that are not installed skip their tests, unless
``SQLORCH_STANDINS_REQUIRED=1``, which turns a skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sqlorch.adapters.base import Adapter
from sqlorch.adapters.registry import connect
from sqlorch.config import Target

TARGETS = ["duckdb", "postgres", "snowflake", "bigquery"]
REQUIRED = os.environ.get("SQLORCH_STANDINS_REQUIRED") == "1"


@dataclass
class Warehouse:
    """One isolated target: its profiles.yml settings and a way to connect to it."""

    kind: str
    settings: dict[str, Any]
    profiles_dir: Path
    adapters: list[Adapter] = field(default_factory=list)

    def target(self, **overrides: Any) -> Target:
        settings = {**self.settings, **overrides}
        return Target(name=self.kind, type=self.kind, settings=settings, database=settings.get("database"))

    def connect(self, **overrides: Any) -> Adapter:
        adapter = connect(self.target(**overrides))
        self.adapters.append(adapter)
        return adapter

    def close_all(self) -> None:
        """Close every adapter a test opened (DuckDB: releases the file lock for other processes)."""
        while self.adapters:
            with contextlib.suppress(Exception):
                self.adapters.pop().close()

    def write_profiles(self, folder: Path | None = None, **overrides: Any) -> Path:
        folder = folder or self.profiles_dir
        folder.mkdir(parents=True, exist_ok=True)
        profile = {"target": self.kind, "targets": {self.kind: {"type": self.kind, **self.settings, **overrides}}}
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))
        return folder


class _Servers:
    """Stand-in servers started on first use and stopped at the end of the session."""

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}
        self.failed: dict[str, str] = {}

    def get(self, kind: str) -> Any:
        if kind in self.failed:
            self._unavailable(kind, self.failed[kind])
        if kind not in self.running:
            try:
                from standins import servers

                starter = {
                    "postgres": servers.start_postgres,
                    "snowflake": servers.start_snowflake,
                    "bigquery": servers.start_bigquery,
                }[kind]
                self.running[kind] = starter()
            except Exception as error:  # noqa: BLE001 - StandinNotInstalled, StandinError, a missing client
                self.failed[kind] = f"{type(error).__name__}: {error}"
                self._unavailable(kind, self.failed[kind])
        return self.running[kind]

    @staticmethod
    def _unavailable(kind: str, why: str) -> None:
        if REQUIRED:
            pytest.fail(f"{kind} stand-in required (SQLORCH_STANDINS_REQUIRED=1) but unavailable: {why}")
        pytest.skip(f"{kind} stand-in unavailable: {why}")

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def standin_servers() -> Iterator[_Servers]:
    registry = _Servers()
    yield registry
    registry.stop()


def _need_client(kind: str) -> None:
    module = {"postgres": "psycopg", "snowflake": "snowflake.connector", "bigquery": "google.cloud.bigquery"}[kind]
    try:
        __import__(module)
    except ImportError as error:
        _Servers._unavailable(kind, f"client library missing: {error}")


def _settings(kind: str, server: Any, tmp_path: Path) -> dict[str, Any]:
    """A fresh, isolated namespace on the server, as profiles.yml settings."""
    unique = "t" + uuid.uuid4().hex[:10]
    if kind == "duckdb":
        return {"path": str(tmp_path / "warehouse.duckdb")}
    params = server.client_params()
    if kind == "postgres":
        import psycopg

        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{unique}"')
        return {"host": params["host"], "port": params["port"], "user": params["user"], "dbname": unique}
    if kind == "snowflake":
        # fakesnow: all sessions of one server share one DuckDB; a database per test isolates them.
        return {
            "account": params["account"],
            "user": params["user"],
            "password": params["password"],
            "database": unique,
            "host": params["host"],
            "port": params["port"],
            "protocol": params["protocol"],
            # fakesnow answers some unsupported statements with HTTP 500, which the connector
            # retries until network_timeout: keep it short so such a failure is quick.
            "network_timeout": 10,
        }
    from google.cloud import bigquery

    # bqemulator has one project per server: empty it so each test starts clean.
    client = bigquery.Client(**params)
    for dataset in client.list_datasets():
        client.delete_dataset(dataset.dataset_id, delete_contents=True, not_found_ok=True)
    return {"project": params["project"], "api_endpoint": params["client_options"]["api_endpoint"], "location": "US"}


def _warehouse(kind: str, standin_servers: _Servers, tmp_path: Path) -> Iterator[Warehouse]:
    server = None
    if kind != "duckdb":
        _need_client(kind)
        server = standin_servers.get(kind)
    result = Warehouse(kind, _settings(kind, server, tmp_path), tmp_path / "profiles")
    yield result
    result.close_all()


@pytest.fixture(params=TARGETS)
def warehouse(request: pytest.FixtureRequest, standin_servers: _Servers, tmp_path: Path) -> Iterator[Warehouse]:
    yield from _warehouse(request.param, standin_servers, tmp_path)


@pytest.fixture(params=[kind for kind in TARGETS if kind != "duckdb"])
def networked_warehouse(
    request: pytest.FixtureRequest, standin_servers: _Servers, tmp_path: Path
) -> Iterator[Warehouse]:
    """The targets reached over a network, with credentials (DuckDB is a local file)."""
    yield from _warehouse(request.param, standin_servers, tmp_path)


@pytest.fixture(params=["duckdb", "postgres", "bigquery"])
def crashable_warehouse(
    request: pytest.FixtureRequest, standin_servers: _Servers, tmp_path: Path
) -> Iterator[Warehouse]:
    """Snowflake is left out: after a client is killed mid-build, the fakesnow server
    answers HTTP 500 to the next builds' statements (seen here; its sessions share one
    in-process database), which is the stand-in's failure, not a state sqlorch left."""
    yield from _warehouse(request.param, standin_servers, tmp_path)


@pytest.fixture
def server_of(standin_servers: _Servers) -> Any:
    return standin_servers.get
