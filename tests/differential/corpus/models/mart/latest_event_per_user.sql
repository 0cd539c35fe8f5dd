-- description: dedup pattern (row_number() = 1 in a subquery)
SELECT event_id, user_id, ts, amount
FROM (
    SELECT event_id, user_id, ts, amount,
           row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, event_id DESC) AS rn
    FROM raw.events
) t
WHERE rn = 1
