-- Row-preserving staging model, incremental by event time. Late events (up to
-- three days, see bench/delta.py) are picked up by re-running the last 3 daily
-- intervals whenever a new interval is processed.
MODEL (
  name staging.stg_events,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column event_date,
    lookback 3
  ),
  grain event_id
);

SELECT
  event_id,
  user_id,
  ts,
  CAST(ts AS DATE) AS event_date,
  UPPER(COALESCE(country, 'ZZ')) AS country,
  CAST(amount AS DECIMAL(18, 2)) AS amount,
  _loaded_at
FROM raw.events
WHERE
  user_id IS NOT NULL
  AND amount IS NOT NULL
  AND ts BETWEEN @start_ts AND @end_ts
