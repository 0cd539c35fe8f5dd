-- Sessions of every user with events in the processed intervals (plus the
-- 3-day lookback), recomputed over the user's whole history and merged by
-- (user_id, session_number).
MODEL (
  name marts.sessions,
  kind INCREMENTAL_BY_UNIQUE_KEY (
    unique_key (user_id, session_number),
    lookback 3
  ),
  grain (user_id, session_number)
);

WITH touched AS (
  SELECT DISTINCT
    user_id
  FROM staging.stg_events
  WHERE
    event_date BETWEEN @start_ds AND @end_ds
),
ordered AS (
  SELECT
    user_id,
    event_id,
    ts,
    amount,
    LAG(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts
  FROM staging.stg_events
  WHERE
    user_id IN (SELECT user_id FROM touched)
),
numbered AS (
  SELECT
    user_id,
    ts,
    amount,
    CAST(
      SUM(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL '30' MINUTE THEN 1 ELSE 0 END)
        OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
      AS BIGINT
    ) AS session_number
  FROM ordered
)
SELECT
  user_id,
  session_number,
  MIN(ts) AS session_start,
  MAX(ts) AS session_end,
  COUNT(*) AS events,
  SUM(amount) AS revenue
FROM numbered
GROUP BY
  user_id,
  session_number
