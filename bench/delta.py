"""Apply one benchmark delta to the raw tables of a DuckDB file.

A delta is the next day's load:

* appends ``--events-fraction`` (default 0.1%) of the current event count as new
  events, or exactly ``--new-events`` (the benchmark's scaling check compares builds
  at two scales after deltas of the same size). Let D be the day after the newest event's day; 95% of the new events
  happen on day D, 5% are late: they happened in the three days before D
  ([D - 3 days, D)). All of them get ``_loaded_at`` after every existing one
  (D + 1 day + 1 hour, plus up to 10 minutes), so ``raw.events`` stays append-only
  with respect to its cursor;
* changes the plan of ``--users-fraction`` (default 0.1%) of the users
  (``raw.users`` has no cursor: only its key says which row changed).

The delta depends only on the seed, the step number and the table's current
content, so two copies of the same database stay identical when given the same
steps. Each applied step is recorded in ``bench_meta.delta_log``; applying a step
twice is refused unless ``--force``.

    python bench/delta.py --db /tmp/bench.duckdb --step 1 --seed 42
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import duckdb
from datagen import (
    DEFAULT_SEED,
    PLANS,
    event_attribute_exprs,
    install_macros,
    salt,
    sql_list,
)

LATE_FRACTION = 0.05
LATE_DAYS = 3


def apply_delta(
    db: Path,
    step: int,
    seed: int = DEFAULT_SEED,
    events_fraction: float = 0.001,
    users_fraction: float = 0.001,
    force: bool = False,
    new_events: int | None = None,
) -> dict[str, object]:
    """Apply delta ``step`` to ``db`` in one transaction; returns a summary."""
    con = duckdb.connect(str(db))
    try:
        install_macros(con)
        con.execute("CREATE SCHEMA IF NOT EXISTS bench_meta")
        con.execute("""
            CREATE TABLE IF NOT EXISTS bench_meta.delta_log (
                step INTEGER, seed BIGINT, new_events BIGINT, late_events BIGINT,
                updated_users BIGINT, applied_at TIMESTAMP
            )
        """)
        done = con.execute("SELECT count(*) FROM bench_meta.delta_log WHERE step = ?", [step]).fetchone()
        if done and done[0] and not force:
            raise SystemExit(f"delta step {step} was already applied to {db} (use --force to apply it again)")

        stats = con.execute("""
            SELECT count(*), max(event_id), CAST(max(ts) AS DATE), max(_loaded_at) FROM raw.events
        """).fetchone()
        n_users_row = con.execute("SELECT count(*), max(user_id) FROM raw.users").fetchone()
        assert stats is not None and n_users_row is not None
        n_events, max_id, max_day, max_loaded = stats
        n_users, max_user = n_users_row
        if not n_events or not n_users:
            raise SystemExit(f"{db}: raw.events and raw.users must not be empty")
        n_new = new_events if new_events is not None else max(1, round(n_events * events_fraction))
        if n_new < 1:
            raise SystemExit("--new-events must be positive")
        n_upd = max(1, round(n_users * users_fraction))
        stream = f"delta-{step}"

        con.execute("BEGIN TRANSACTION")
        attrs = event_attribute_exprs("i", seed, stream, str(max_user))
        late = f"bench_u(i, {salt(seed, stream, 'late')}) < {LATE_FRACTION}"
        offset_ms = f"CAST(bench_h(i, {salt(seed, stream, 'offset')}) AS BIGINT)"
        con.execute(
            f"""
            INSERT INTO raw.events (event_id, user_id, ts, country, amount, _loaded_at)
            WITH params AS (
                SELECT CAST(? AS DATE) + 1 AS d, CAST(? AS TIMESTAMP) AS max_loaded
            ),
            base AS (
                SELECT
                    i,
                    CASE WHEN {late}
                        THEN d - INTERVAL {LATE_DAYS} DAY + to_milliseconds({offset_ms} % {LATE_DAYS * 86_400_000})
                        ELSE d + to_milliseconds({offset_ms} % 86400000)
                    END AS ts,
                    greatest(max_loaded, d + INTERVAL 1 DAY) + INTERVAL 1 HOUR
                        + to_seconds(CAST(bench_h(i, {salt(seed, stream, "loaded")}) % 600 AS BIGINT)) AS _loaded_at
                FROM range({n_new}) AS r(i), params
            )
            SELECT
                CAST(? + 1 + i AS BIGINT),
                {attrs["user_id"]},
                CAST(ts AS TIMESTAMP),
                {attrs["country"]},
                {attrs["amount"]},
                CAST(_loaded_at AS TIMESTAMP)
            FROM base
            ORDER BY i
            """,
            [max_day, max_loaded, max_id],
        )
        late_row = con.execute(
            "SELECT count(*) FROM raw.events WHERE event_id > ? AND CAST(ts AS DATE) <= ?",
            [max_id, max_day],
        ).fetchone()
        n_late = late_row[0] if late_row else 0

        plans = sql_list(PLANS)
        con.execute(f"""
            UPDATE raw.users AS u
            SET plan = {plans}[1 + (coalesce(list_position({plans}, u.plan), 1) - 1 + 1
                                     + CAST(bench_h(u.user_id, {salt(seed, stream, "newplan")}) % 3 AS INTEGER)) % 4]
            WHERE u.user_id IN (
                SELECT user_id FROM raw.users
                ORDER BY bench_h(user_id, {salt(seed, stream, "pick")}), user_id
                LIMIT {n_upd}
            )
        """)
        con.execute(
            "INSERT INTO bench_meta.delta_log VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP)",
            [step, seed, n_new, n_late, n_upd],
        )
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
        return {
            "step": step,
            "new_events": n_new,
            "late_events": n_late,
            "updated_users": n_upd,
            "new_day": str(max_day + datetime.timedelta(days=1)),
        }
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--db",
        type=Path,
        required=True,
        help="DuckDB file holding raw.events and raw.users",
    )
    parser.add_argument("--step", type=int, default=1, help="delta step number (default 1)")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--events-fraction",
        type=float,
        default=0.001,
        help="new events / current events",
    )
    parser.add_argument(
        "--users-fraction",
        type=float,
        default=0.001,
        help="users whose plan changes / users",
    )
    parser.add_argument(
        "--new-events",
        type=int,
        default=None,
        help="append exactly this many events (overrides --events-fraction)",
    )
    parser.add_argument("--force", action="store_true", help="apply a step that was already applied")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    summary = apply_delta(
        args.db,
        args.step,
        args.seed,
        args.events_fraction,
        args.users_fraction,
        args.force,
        args.new_events,
    )
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**summary, "seconds": round(elapsed, 3)}))
        return 0
    print(
        f"applied delta step {summary['step']} to {args.db} in {elapsed:.2f}s: "
        f"{summary['new_events']} new events ({summary['late_events']} late), "
        f"{summary['updated_users']} users changed plan"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
