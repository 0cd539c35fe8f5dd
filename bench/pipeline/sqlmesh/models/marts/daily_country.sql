MODEL (
  name marts.daily_country,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column event_date,
    lookback 3
  ),
  grain (event_date, country)
);

SELECT
  event_date,
  country,
  COUNT(*) AS events,
  COUNT(DISTINCT user_id) AS users,
  SUM(amount) AS revenue
FROM staging.stg_events
WHERE
  event_date BETWEEN @start_ds AND @end_ds
GROUP BY
  event_date,
  country
