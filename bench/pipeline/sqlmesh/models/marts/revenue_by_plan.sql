-- Days are recomputed when new or late events arrive for them; a change of a
-- user's plan in raw.users does not reprocess older days (no time column to
-- drive it), which is what an INCREMENTAL_BY_TIME_RANGE model accepts.
MODEL (
  name marts.revenue_by_plan,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column event_date,
    lookback 3
  ),
  grain (event_date, plan)
);

SELECT
  e.event_date,
  u.plan,
  COUNT(*) AS events,
  COUNT(DISTINCT e.user_id) AS users,
  SUM(e.amount) AS revenue
FROM staging.stg_events AS e
JOIN raw.users AS u
  ON e.user_id = u.user_id
WHERE
  e.event_date BETWEEN @start_ds AND @end_ds
GROUP BY
  e.event_date,
  u.plan
