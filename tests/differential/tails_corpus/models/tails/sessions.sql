-- description: the events benchmark's sessions: lag and a running SUM through two CTEs, grouped by user and session
-- materialized: incremental
WITH ordered AS (
    SELECT user_id, event_id, ts, amount,
           lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts
    FROM raw.events
),
numbered AS (
    SELECT user_id, ts, amount,
           CAST(sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 2 HOUR THEN 1 ELSE 0 END)
               OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               AS BIGINT) AS session_number
    FROM ordered
)
SELECT user_id, session_number, min(ts) AS started, max(ts) AS ended, count(*) AS events, sum(amount) AS revenue
FROM numbered
GROUP BY user_id, session_number
