"""Seeded generator for the benchmark's raw tables.

Writes ``raw.events`` and ``raw.users`` into a DuckDB file, entirely in SQL
(``range()`` plus an integer hash), so 10M events take seconds.

The random numbers come from a 32-bit integer hash (lowbias32) written in plain
UBIGINT arithmetic rather than DuckDB's ``hash()``: ``hash()`` may change between
DuckDB releases, and the benchmark runs peers on DuckDB 1.5 and sqlorch on 2.x, so
every engine must produce the very same rows from the same seed.

    python bench/datagen.py --db /tmp/bench.duckdb --events 10000000 --seed 42
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import duckdb

YEAR_START = "2024-01-01"
YEAR_SECONDS = 366 * 86400  # 2024 is a leap year
MAX_JITTER_MS = 120_000
SIGNUP_START = "2023-01-01"
SIGNUP_SPAN_SECONDS = 730 * 86400
COUNTRIES = (
    "US", "GB", "DE", "FR", "IN", "BR", "CA", "AU", "JP", "ES",
    "IT", "NL", "MX", "SE", "PL", "KR", "ZA", "NG", "AR", "NZ",
)  # fmt: skip
PLANS = ("free", "basic", "pro", "enterprise")
DEFAULT_USERS = 200_000
DEFAULT_SEED = 42

MACROS = """
CREATE OR REPLACE TEMP MACRO bench_mix(v) AS
    (xor(v, v >> 16) * 2146121005::UBIGINT) % 4294967296::UBIGINT;
CREATE OR REPLACE TEMP MACRO bench_mix2(v) AS
    (xor(v, v >> 15) * 2221713035::UBIGINT) % 4294967296::UBIGINT;
CREATE OR REPLACE TEMP MACRO bench_fin(v) AS xor(v, v >> 16);
-- h(x, salt): a uniform 32-bit integer from a non-negative integer and a 32-bit salt.
CREATE OR REPLACE TEMP MACRO bench_h(x, salt) AS
    bench_fin(bench_mix2(bench_mix(xor(CAST(x AS UBIGINT) % 4294967296::UBIGINT,
                                       CAST(salt AS UBIGINT)))));
-- u(x, salt): a uniform DOUBLE in [0, 1).
CREATE OR REPLACE TEMP MACRO bench_u(x, salt) AS CAST(bench_h(x, salt) AS DOUBLE) / 4294967296.0;
"""


def salt(*parts: object) -> int:
    """A 32-bit salt derived from the seed, the step and the stream name."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MACROS)


def event_attribute_exprs(idx: str, seed: int, stream: str, n_users: str) -> dict[str, str]:
    """SQL expressions for user_id, country and amount of the event with index ``idx``.

    ``stream`` separates the random streams of the initial load and of each delta;
    ``n_users`` is a SQL expression for the number of users.
    """

    def u(name: str) -> str:
        return f"bench_u({idx}, {salt(seed, stream, name)})"

    def h(name: str) -> str:
        return f"bench_h({idx}, {salt(seed, stream, name)})"

    countries = sql_list(COUNTRIES)
    pick = f"{countries}[1 + CAST(floor(20 * {u('country')} * {u('country')}) AS INTEGER)]"
    user_id = f"""CASE
            WHEN {u("user_null")} < 0.001 THEN NULL
            -- 70% uniform over all users, 30% skewed toward low ids (heavy users)
            WHEN {u("user_mode")} < 0.7 THEN 1 + CAST({h("user_a")} % {n_users} AS BIGINT)
            ELSE 1 + CAST(floor({n_users} * {u("user_b")} * {u("user_c")}) AS BIGINT)
        END"""
    country = f"""CASE
            WHEN {u("country_null")} < 0.005 THEN NULL
            WHEN {u("country_lower")} < 0.02 THEN lower({pick})
            ELSE {pick}
        END"""
    amount = f"""CASE
            WHEN {u("amount_null")} < 0.01 THEN NULL
            WHEN {u("amount_refund")} < 0.01 THEN CAST(-CAST({h("amount")} % 25000 AS BIGINT) / 100 AS DECIMAL(12, 2))
            ELSE CAST(CAST({h("amount")} % 25000 AS BIGINT) / 100 AS DECIMAL(12, 2))
        END"""
    return {"user_id": user_id, "country": country, "amount": amount}


def generate(
    db: Path,
    events: int,
    users: int = DEFAULT_USERS,
    seed: int = DEFAULT_SEED,
    storage_version: str | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Create (replace) raw.events and raw.users in ``db``; returns timings in seconds."""
    if events < 1 or users < 1:
        raise ValueError("--events and --users must be positive")
    db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    options = f" (STORAGE_VERSION '{storage_version}')" if storage_version else ""
    path_literal = str(db).replace("'", "''")
    con.execute(f"ATTACH '{path_literal}' AS bench{options}")
    con.execute("USE bench")
    install_macros(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    plans = sql_list(PLANS)
    countries = sql_list(COUNTRIES)
    con.execute(f"""
        CREATE OR REPLACE TABLE raw.users AS
        SELECT
            CAST(i + 1 AS BIGINT) AS user_id,
            TIMESTAMP '{SIGNUP_START}'
                + to_seconds(CAST(floor({SIGNUP_SPAN_SECONDS} * bench_u(i, {salt(seed, "users", "signup")})) AS BIGINT))
                AS signup_ts,
            {plans}[CASE
                WHEN bench_u(i, {salt(seed, "users", "plan")}) < 0.60 THEN 1
                WHEN bench_u(i, {salt(seed, "users", "plan")}) < 0.85 THEN 2
                WHEN bench_u(i, {salt(seed, "users", "plan")}) < 0.97 THEN 3
                ELSE 4 END] AS plan,
            {countries}[1 + CAST(floor(20 * bench_u(i, {salt(seed, "users", "country")})
                                        * bench_u(i, {salt(seed, "users", "country")})) AS INTEGER)] AS country
        FROM range({users}) AS r(i)

    """)
    timings["users"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    attrs = event_attribute_exprs("i", seed, "events", str(users))
    span = YEAR_SECONDS - MAX_JITTER_MS // 1000
    con.execute(f"""
        CREATE OR REPLACE TABLE raw.events AS
        WITH base AS (
            SELECT
                i,
                TIMESTAMP '{YEAR_START}'
                    + to_milliseconds(
                        CAST(floor(i * {span}.0 / {events}) AS BIGINT) * 1000
                        + CAST(bench_h(i, {salt(seed, "events", "jitter")}) % {MAX_JITTER_MS} AS BIGINT)
                    ) AS ts
            FROM range({events}) AS r(i)
        )
        SELECT
            CAST(i + 1 AS BIGINT) AS event_id,
            {attrs["user_id"]} AS user_id,
            ts,
            {attrs["country"]} AS country,
            {attrs["amount"]} AS amount,
            -- hourly loads: a row lands 1h to 1h10m after the hour it happened in
            date_trunc('hour', ts) + INTERVAL 1 HOUR
                + to_seconds(CAST(bench_h(i, {salt(seed, "events", "loaded")}) % 600 AS BIGINT)) AS _loaded_at
        FROM base

    """)
    timings["events"] = time.perf_counter() - t0
    con.execute("CHECKPOINT")
    con.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db",
        type=Path,
        required=True,
        help="DuckDB file to write (tables are replaced)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="number of raw.events rows (default 100000)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=DEFAULT_USERS,
        help=f"number of raw.users rows (default {DEFAULT_USERS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--storage-version",
        default=os.environ.get("SQLORCH_BENCH_STORAGE_VERSION"),
        help="DuckDB STORAGE_VERSION for a new file, e.g. v1.4.0 so that older DuckDB releases can open it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="DuckDB threads (default: DuckDB's own)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    timings = generate(args.db, args.events, args.users, args.seed, args.storage_version, args.threads)
    total = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
    print(f"wrote {args.db}: {args.events} events, {args.users} users (seed {args.seed}) in {total:.2f}s ({parts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
