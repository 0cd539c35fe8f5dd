-- description: row_number and a running COUNT of a column, the partition renamed, a nullable group column
-- materialized: incremental
WITH w AS (
    SELECT user_id, country, ts, amount,
           row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS rn,
           count(country) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS seen
    FROM raw.events
),
b AS (SELECT user_id, country, ts, amount, seen, rn % 4 AS block FROM w)
SELECT user_id AS uid, country, block, count(*) AS n, max(seen) AS most_seen, min(amount) AS low, sum(amount) AS total
FROM b
GROUP BY user_id, country, block
