-- description: sessions: windows over a CTE chain, partitioned by user (the key filter is pushed into the first CTE)
WITH ordered AS (
    SELECT user_id, event_id, ts, amount,
           lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts
    FROM raw.events
),
numbered AS (
    SELECT user_id, ts, amount,
           sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 2 HOUR THEN 1 ELSE 0 END)
               OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
    FROM ordered
)
SELECT user_id, session, min(ts) AS started, count(*) AS events, sum(amount) AS revenue
FROM numbered
GROUP BY user_id, session
