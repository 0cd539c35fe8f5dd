-- Lifetime totals, recomputed for every user with events in the processed
-- intervals (plus the 3-day lookback for late events) and merged by user_id.
MODEL (
  name marts.user_totals,
  kind INCREMENTAL_BY_UNIQUE_KEY (
    unique_key user_id,
    lookback 3
  ),
  grain user_id
);

WITH touched AS (
  SELECT DISTINCT
    user_id
  FROM staging.stg_events
  WHERE
    event_date BETWEEN @start_ds AND @end_ds
)
SELECT
  e.user_id,
  COUNT(*) AS events,
  SUM(e.amount) AS revenue,
  MIN(e.ts) AS first_event_ts,
  MAX(e.ts) AS last_event_ts
FROM staging.stg_events AS e
WHERE
  e.user_id IN (SELECT user_id FROM touched)
GROUP BY
  e.user_id
