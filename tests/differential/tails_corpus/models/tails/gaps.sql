-- description: ordered by ts alone (ties): lag and a running SUM over the default RANGE frame
-- materialized: incremental
SELECT user_id, gaps, count(*) AS n, max(ts) AS last_ts, sum(amount) AS total
FROM (
    SELECT user_id, ts, amount,
           sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 3 HOUR THEN 1 ELSE 0 END)
               OVER (PARTITION BY user_id ORDER BY ts) AS gaps
    FROM (SELECT user_id, ts, amount, lag(ts) OVER (PARTITION BY user_id ORDER BY ts) AS prev_ts FROM raw.events) AS o
) AS g
GROUP BY user_id, gaps
