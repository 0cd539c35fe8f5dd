-- description: filter + projection (row-preserving over append-only source)
SELECT event_id, user_id, ts, CAST(ts AS DATE) AS day, country, amount
FROM raw.events
WHERE amount >= 0
